"""Report parts that put a held-out shopper's generated clips next to what the data says they like.

- `ceilings_table`: every align JSON's hit rates (classifier and, on the synthetic world, the pixel colour reader)
  beside the shuffled control, the data's ceilings and the preference head's own hit, so a reader sees "0.55 of a
  possible 0.66" and where the rest is lost; `quality_table`: sharpness, motion and seed diversity against real.
- `heldout_section`: for the held-out users that `reelgan-generate` made clips for, those clips beside real
  catalogue clips of the user's favourite category and pattern (and colour) (from the align JSON's favourites).
Reads only files other stages wrote: align JSONs, generation manifests and the dataset's clips.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from evaluation.report.sections import Section, _fmt, _fmt_pm, _gif_bytes, _missing, _table, html, img_tag, join

_SOURCE = ("hidden_truth", "revealed")


def _aligns(metrics: list[dict]) -> list[dict]:
    return [m for m in metrics if isinstance(m.get("data"), dict) and isinstance(m["data"].get("alignment"), dict)]


def ceilings_table(metrics: list[dict]) -> Markup:
    rows = []
    for m in _aligns(metrics):
        d = m["data"]
        for source in _SOURCE:
            for attr, v in (d["alignment"].get(source) or {}).items():
                ceil = (d.get("ceilings", {}).get(source) or {}).get(attr, {})
                reader = v.get("colour_reader") or v.get("pattern_reader") or {}
                head = v.get("head") or {}
                hit, samp = _fmt_pm(v.get("hit_rate"), v.get("hit_rate_se")), ceil.get("sampling")
                of = f"{hit} of a possible {_fmt(samp)}" if samp else hit
                rows.append([Path(m["file"]).name, _fmt(d.get("truncation")), source.replace("_", " "), attr, of,
                             _fmt_pm(reader.get("hit_rate"), reader.get("hit_rate_se")), _fmt(v.get("shuffled")),
                             _fmt(reader.get("shuffled")), _fmt(head.get("draw")), _fmt(head.get("mode")),
                             _fmt(head.get("rendered")), _fmt(v.get("random")), _fmt(samp), _fmt(ceil.get("mode"))])
    if not rows:
        return Markup("")
    # Markup + Markup: a plain str on the left of a Markup would be escaped, showing the tags as text.
    return Markup("<p>Hit rate = share of held-out users' generated clips that show the user's favourite value. "
            "<b>Sampling ceiling</b>: what a perfect conditional generator reaches at truncation 1 on this data; "
            "<b>mode ceiling</b>: what it reaches by truncating towards each user's mean style. The readers are "
            "pixel judges that ReelGAN never trains (synthetic world only): colour from the palette, pattern from "
            "the garment's texture. <b>Head draw / mode</b>: the preference head's own picks (before any pixel is "
            "made) against the favourite; <b>rendered</b>: share of clips that show what the head told G. ± is the "
            "standard error over users.</p>") + _table(
                ["file", "truncation", "favourite", "attribute", "hit (classifier)", "hit (reader)",
                 "shuffled (classifier)", "shuffled (reader)", "head draw", "head mode", "rendered", "random clip",
                 "sampling ceiling", "mode ceiling"],
                rows)


def quality_table(metrics: list[dict]) -> Markup:
    """Sharpness and motion of the held-out shoppers' clips against real clips, and their seed diversity."""
    rows = []
    for m in _aligns(metrics):
        q = m["data"].get("quality") or {}
        if q:
            sharp, move = q.get("sharpness") or {}, q.get("motion") or {}
            rows.append([Path(m["file"]).name, _fmt(m["data"].get("truncation")), _fmt(sharp.get("ratio")),
                         _fmt(move.get("ratio")), _fmt(q.get("seed_diversity")), str(q.get("generated_clips")),
                         str(q.get("real_clips"))])
    if not rows:
        return Markup("")
    return Markup("<p><b>Sharpness</b>: mean |Laplacian| of the luma, generated ÷ real (same size); <b>motion</b>: "
                  "mean |frame difference|, generated ÷ real clips at the training stride; <b>seed diversity</b>: "
                  "mean |pixel difference| (0-255) between a shopper's own clips, averaged over shoppers.</p>") + _table(
        ["file", "truncation", "sharpness ÷ real", "motion ÷ real", "seed diversity", "generated clips", "real clips"],
        rows)


def _real_gifs(dataset: Path, favourites: dict, frames: int, limit: int = 2) -> list[tuple[bytes, str]]:
    """Up to `limit` catalogue clips with the user's favourite category and pattern (and colour where the catalogue
    has such a clip; each narrowing that would leave none is skipped)."""
    from data.video import read_clip, write_video

    clips = pd.read_csv(dataset / "clips.csv", dtype=str, keep_default_na=False)
    pick = clips
    for attr in ("category", "pattern", "colour"):
        if attr in clips.columns and favourites.get(attr):
            narrower = pick[pick[attr].isin(favourites[attr])]
            if len(narrower):
                pick = narrower
    out = []
    for row in pick.sort_values("clip_id").head(limit).itertuples():
        clip = read_clip(dataset / row.path, num_frames=frames, start=0)
        with tempfile.TemporaryDirectory() as tmp:
            out.append((write_video(Path(tmp) / "clip.gif", clip, fps=8).read_bytes(), f"real {row.clip_id}"))
    return out


def heldout_section(manifests: list[Path], metrics: list[dict], max_users: int = 4, clips: int = 4) -> Section:
    title = "Held-out shoppers: generated vs what they like"
    aligns = _aligns(metrics)
    favourites, dataset = {}, None
    for m in aligns:
        for source in reversed(_SOURCE):  # hidden truth wins where both exist
            favourites.update((m["data"].get("favourites") or {}).get(source) or {})
        dataset = dataset or m["data"].get("dataset")
    if not favourites or not dataset or not Path(dataset, "clips.csv").is_file():
        return Section(title, _missing("align JSON with favourites and its dataset",
                                       "Run reelgan-eval align --out RUN/eval/align.json."))
    blocks = []
    for mpath in manifests:
        data = json.loads(Path(mpath).read_text())
        by_user: dict[str, list[dict]] = {}
        for e in data.get("clips", []):
            if e.get("user") in favourites:
                by_user.setdefault(e["user"], []).append(e)
        for user, entries in sorted(by_user.items())[: max_users - len(blocks)]:
            fav = favourites[user]
            tiles = []
            for e in sorted(entries, key=lambda e: e["seed"])[:clips]:
                got = _gif_bytes(Path(mpath).parent / e["folder"], e["files"], e.get("frames", 16))
                if got:
                    seed = e["seed"]
                    tiles.append(html('<div class="clip">{}<br>generated, seed {}</div>',
                                      img_tag(got[0], got[1], f"{user} seed {seed}"), seed))
            frames = int(entries[0].get("frames", 16))
            for gif, alt in _real_gifs(Path(dataset), fav, frames):
                tiles.append(html('<div class="clip real">{}<br>{}</div>', img_tag(gif, "image/gif", alt), alt))
            likes = ", ".join(f"{a}: {'/'.join(v)}" for a, v in fav.items())
            blocks.append(html('<h3>{} <span class="sub">likes {}</span></h3><div class="clips">{}</div>', user,
                               likes, join(tiles)))
    if not blocks:
        return Section(title, _missing("generated clips for held-out users",
                                       "Run reelgan-generate --user HELDOUT_ID --outdir RUN/samples."))
    return Section(title, Markup("<p>Each row: a held-out shopper's generated clips (left) and real catalogue clips "
                                 "of their favourite category and pattern, and colour where one exists (right).</p>") + join(blocks, "\n"))
