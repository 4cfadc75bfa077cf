"""The report: one self-contained HTML page, checked in a real headless Chromium (console, images, screenshot)."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evaluation.report.build import build_report, discover
from evaluation.slot.gate import SlotConfig, gate_and_rank
from evaluation.slot.store import write_slot
from data.io import write_json as atomic_write_json
from generate.manifest import merge_manifest
from data.video import write_video
from generate.writers import write_clip

import _chromium
COLOURS = {"red": (210, 35, 40), "blue": (35, 75, 210), "green": (45, 160, 60)}


def _clip(rgb, seed, t=8, h=32, w=32) -> np.ndarray:
    """A moving coloured square on grey: uint8 (T, H, W, C)."""
    rng = np.random.default_rng(seed)
    frames = np.full((t, h, w, 3), 128, np.uint8)
    for i in range(t):
        x = (i * 3 + seed) % (w - 10)
        frames[i, 8:22, x:x + 10] = rgb
    return np.clip(frames.astype(int) + rng.integers(-4, 5, frames.shape), 0, 255).astype(np.uint8)


def make_run(tmp_path):
    run = tmp_path / "run"
    log = run / "train" / "lightning_logs" / "version_0"
    log.mkdir(parents=True)
    steps = np.arange(0, 400, 5)
    frame = pd.DataFrame({"step": steps, "epoch": steps // 100, "train/loss_g": 2 + np.sin(steps / 30),
                          "train/loss_d": 1 + 0.3 * np.cos(steps / 20), "val/fvd[domain]": np.nan})
    frame.loc[frame["step"] % 100 == 0, "val/fvd[domain]"] = [400, 250, 180, 150]
    frame.to_csv(log / "metrics.csv", index=False)
    (run / "eval").mkdir()
    atomic_write_json(run / "eval" / "fvd_domain.json", {
        "metric": "fvd[domain]", "value": 151.2, "protocol": {"network": "domain", "weights_sha256": "ab" * 32,
                                                              "frames": 16, "clips": {"real": 256, "fake": 256}}})
    atomic_write_json(run / "eval" / "align.json", {
        "alignment": {"hidden_truth": {"colour": {"hit_rate": 0.61, "hit_rate_se": 0.03, "shuffled": 0.14, "random": 0.125,
                                                  "uniform": 0.125, "head": {"draw": 0.587, "mode": 0.913,
                                                                             "rendered": 0.804}},
                                       "pattern": {"hit_rate": 0.35, "shuffled": 0.27, "random": 0.25}},
                      "revealed": {"colour": {"hit_rate": 0.5, "shuffled": 0.2, "random": 0.13}}},
        "per_user": {u: {"colour": [0.8 if v == u else 0.1 for v in COLOURS]} for u in COLOURS},
        "ceilings": {"hidden_truth": {"colour": {"sampling": 0.66, "mode": 0.97, "users": 3}}},
        "favourites": {"hidden_truth": {u: {"colour": [u]} for u in COLOURS}}, "dataset": str(run / "world"),
        "vocab": {"colour": list(COLOURS)}, "truncation": 1.0,
        "quality": {"sharpness": {"ratio": 0.523}, "motion": {"ratio": 0.971}, "seed_diversity": 28.8,
                    "generated_clips": 6, "real_clips": 3}})
    (run / "world" / "clips").mkdir(parents=True)
    for k, (colour, rgb) in enumerate(COLOURS.items()):       # one real catalogue clip per colour
        write_video(run / "world" / "clips" / f"c{k}.mp4", _clip(rgb, 7 + k))
    pd.DataFrame({"clip_id": [f"c{k}" for k in range(3)], "path": [f"clips/c{k}.mp4" for k in range(3)],
                  "product_id": ["p0", "p1", "p2"], "colour": list(COLOURS)}).to_csv(run / "world" / "clips.csv",
                                                                                     index=False)
    atomic_write_json(run / "world" / "hidden_truth.json", {"users": {u: {"colour": u} for u in COLOURS}})
    samples = run / "samples"
    entries = []
    for k, (user, rgb) in enumerate(COLOURS.items()):
        for seed in range(2):
            files = write_clip(_clip(rgb, seed), samples / user, f"{user}-seed{seed:04d}", ["gif", "grid"], fps=8)
            entries.append({"user": user, "source": "user", "folder": user, "seed": seed, "files": files,
                            "truncation": 1.0, "frames": 8})
    atomic_write_json(samples / "manifest.json", merge_manifest(None, {"made": "test"}, entries))
    rows = [{"user_id": u, "candidate": c, "seed": c, "clip": f"slot/{u}/{c}.mp4",
             "scores": {"engagement": 0.1 * c, "realism": 0.5, "alignment": 0.2 + 0.1 * c}}
            for u in COLOURS for c in range(4)]
    ranked = gate_and_rank(rows, SlotConfig(candidates=4), None)
    ranked.append({"user_id": "nobody", "candidate": None, "seed": None, "clip": "clips/c00001.mp4", "scores": {},
                   "passed": False, "reasons": ["fallback: no candidate passed the gate"], "rank": None,
                   "served": True, "fallback": "c00001"})
    write_slot(ranked, run / "slot")
    vocab = {"colour": list(COLOURS)}
    atomic_write_json(run / "slot" / "slot_check.json", {
        "arms": {"slot": {"mean": 0.5}, "popular": {"mean": 0.3}, "random_generated": {"mean": 0.25}},
        "verdict": "slot 0.500 beats both", "attributes": {"vocab": vocab, "users": {
            u: {"colour": {"probs": [0.8 if v == u else 0.1 for v in COLOURS], "preferred": u}} for u in COLOURS}}})
    return run


def test_report_is_self_contained_and_complete(tmp_path):
    run = make_run(tmp_path)
    inputs = discover(run)
    assert len(inputs.train_logs) == 1 and len(inputs.metrics) == 2 and inputs.slot and inputs.slot_check
    out = build_report(inputs, run / "report.html")
    page = (run / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r'(href|src)="(https?:|//|file:)', page)
    # curves, 2 alignment bar charts, 2 colour heatmaps, 3 held-out users × (2 generated + 1 real of their
    # favourite colour), 6 sample GIFs, slot check
    assert out["images"] == 21
    gifs = [s for s in srcs if s.startswith("data:image/gif")]
    assert len(gifs) == 15
    assert "0.61 ± 0.03 of a possible 0.66" in page and "likes colour: red" in page and "real c0" in page
    assert "<b>Sampling ceiling</b>" in page and "&lt;b&gt;" not in page    # the ceilings' legend is markup, not text
    assert all(f"<td>{x}</td>" in page for x in ("0.587", "0.913", "0.804"))  # the head's own hit, rendering
    assert all(f"<td>{x}</td>" in page for x in ("0.523", "0.971", "28.8"))   # sharpness, motion ÷ real, diversity
    first = Image.open(io.BytesIO(base64.b64decode(gifs[0].split(",", 1)[1])))
    assert first.n_frames == 8  # really animated
    md = (run / "report.md").read_text()
    assert "fvd\\[domain\\]**: 151.2" in md and "alignment\\[colour\\]**: 0.61" in md and "slot expected engagement" in md
    assert [h["name"] for h in out["headlines"]] == ["fvd[domain]", "alignment[colour]", "slot expected engagement"]
    assert "1 user(s) fell back to the popular clip" in page and "<td>fallback</td>" in page


@pytest.mark.skipif(_chromium.chromium_path() is None, reason="chromium not installed (scripts/install_chromium.sh)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = make_run(tmp_path)
    out = build_report(discover(run), run / "report.html")
    res = _chromium.check_page(run / "report.html", tmp_path / "report.png")
    assert res["console_errors"] == [] and res["exceptions"] == [] and res["log_errors"] == []
    assert res["failed_requests"] == []
    assert len(res["images"]) == out["images"]
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in res["images"]), res["images"]
    assert res["title"].startswith("ReelGAN report")
    shot = np.asarray(Image.open(tmp_path / "report.png").convert("RGB"))
    assert shot.shape[1] == 1200 and shot.shape[0] > 900 and shot.std() > 10  # a real page, not a blank one

    # The checker itself must catch what it is there to catch: a console error and an image that cannot decode.
    bad = (run / "report.html").read_text().replace("<body>", "<body><script>console.error('planted')</script>", 1)
    bad = re.sub(r'src="data:image/png;base64,[^"]{0,40}', 'src="data:image/png;base64,AAAA', bad, count=1)
    (run / "bad.html").write_text(bad)
    res = _chromium.check_page(run / "bad.html", tmp_path / "bad.png")
    assert res["console_errors"] == ["planted"]
    assert sum(i["naturalWidth"] == 0 for i in res["images"]) == 1


HOSTILE = "$\\frac{a$ <script>alert(1)</script> & \"quoted\""


def test_hostile_text_in_run_files_is_escaped_and_plotted_as_plain_text(tmp_path):
    """User ids that matplotlib would parse as math, and markup in every manifest / slot value that reaches the
    page (user, source, truncation, seed, rank, scores, reasons, clip), come out as escaped text."""
    import json

    run = make_run(tmp_path)
    manifest = json.loads((run / "samples" / "manifest.json").read_text())
    for e in manifest["clips"]:
        e.update(user=HOSTILE, source=HOSTILE, truncation=HOSTILE, seed=f"<i>{e['seed']}</i>")
    atomic_write_json(run / "samples" / "manifest.json", manifest)
    align = json.loads((run / "eval" / "align.json").read_text())
    align["per_user"] = {HOSTILE: align["per_user"]["red"], **align["per_user"]}
    align["favourites"]["hidden_truth"][HOSTILE] = {"colour": ["red"]}
    atomic_write_json(run / "eval" / "align.json", align)
    rows = [json.loads(line) for line in (run / "slot" / "slot.jsonl").read_text().splitlines()]
    for r in rows:
        r.update(user_id=HOSTILE, rank=r["rank"] and "<b>1</b>", clip=f"<img src=x>{r['clip']}",
                 scores={k: HOSTILE for k in r["scores"]}, reasons=[HOSTILE])
    (run / "slot" / "slot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    check = json.loads((run / "slot" / "slot_check.json").read_text())
    check["verdict"] = HOSTILE
    check["attributes"]["users"][HOSTILE] = check["attributes"]["users"]["red"]
    atomic_write_json(run / "slot" / "slot_check.json", check)

    build_report(discover(run), run / "report.html")
    page = (run / "report.html").read_text()
    assert "<script>" not in page and "<b>1</b>" not in page and "<i>0</i>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "$\\frac{a$" in page
    assert "&lt;b&gt;1&lt;/b&gt;" in page and "&lt;i&gt;0&lt;/i&gt;" in page


def test_hostile_metric_names_are_inert_in_the_markdown_summary(tmp_path):
    """Markup in a metric name, a string value, a metrics file name and the slot verdict stays text in report.md,
    rendered by a real CommonMark renderer with raw HTML on: no tag, no link, no image, no heading, no extra cell."""
    import json

    from markdown_it import MarkdownIt

    run = make_run(tmp_path)
    evil = "fvd](http://evil.example)<img src=x onerror=alert(1)> ![p](http://evil.example/p.png) a|b\n# pwned *x*"
    atomic_write_json(run / "eval" / "evil[x](http:e).json", {"metrics": {evil: 1.5, "other": {"value": evil}}})
    check = json.loads((run / "slot" / "slot_check.json").read_text())
    check["verdict"] = "<script>alert(1)</script> [click](http://evil.example)"
    atomic_write_json(run / "slot" / "slot_check.json", check)
    build_report(discover(run), run / "report.html")
    text = (run / "report.md").read_text()
    rendered = MarkdownIt().enable("table").render(text)
    assert "<img" not in rendered and "<script" not in rendered and "<a " not in rendered
    assert "pwned" in rendered and "<h1>pwned" not in rendered and "<em>x</em>" not in rendered
    row = next(line for line in rendered.split("<tr>") if "pwned" in line)
    assert row.count("<td>") == 2                       # the | in the name did not split the table row
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered and "evil[x](http:e).json" in rendered
