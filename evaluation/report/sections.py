"""The report's sections: each turns one kind of run output into an HTML fragment (and Markdown lines).

Escaping is by construction: a fragment is a markupsafe.Markup built by `html(template, *values)`, which escapes
every value that is not itself Markup (the same rule jinja2's autoescape applies to the page in build.py). Text
from run files (user ids, personas, manifest and slot values) can only reach the page as an escaped value.
"""
from __future__ import annotations

import base64
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from evaluation.report import plots as plots


@dataclass
class Section:
    title: str
    html: Markup


def html(template: str, *args, **kwargs) -> Markup:
    """An HTML fragment: `template` is trusted markup written here; every argument is escaped unless Markup."""
    return Markup(template).format(*args, **kwargs)


def join(parts, sep: str = "") -> Markup:
    """Fragments joined; plain strings among them are escaped."""
    return Markup(sep).join(parts)


def img_tag(data: bytes, mime: str, alt: str, cls: str = "") -> Markup:
    """An <img> with the bytes inlined as a data URI: the page needs no other file."""
    b64 = base64.b64encode(data).decode("ascii")
    if cls:
        return html('<img class="{}" alt="{}" src="data:{};base64,{}">', cls, alt, mime, b64)
    return html('<img alt="{}" src="data:{};base64,{}">', alt, mime, b64)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _fmt_pm(value, spread) -> str:
    """"value ± spread" (a std or standard error) when the spread is a number, else the value alone."""
    if isinstance(spread, (int, float)) and not isinstance(spread, bool):
        return f"{_fmt(value)} ± {_fmt(spread)}"
    return _fmt(value)


def _reason(data, key: str) -> str:
    """The reason a result JSON gives for an undefined figure (a `reasons` mapping anywhere inside it)."""
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("reasons"), dict) and isinstance(node["reasons"].get(key), str):
                return node["reasons"][key]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return "not computable on this data (see the JSON)"


def _table(header: list[str], rows: list[list]) -> Markup:
    """Cells that are Markup go in as they are; anything else is escaped text."""
    head = join(html("<th>{}</th>", h) for h in header)
    body = join(html("<tr>{}</tr>", join(html("<td>{}</td>", c) for c in r)) for r in rows)
    return html("<table><tr>{}</tr>{}</table>", head, body)


def _missing(what: str, how: str) -> Markup:
    return html('<p class="sub">No {} in this run. {}</p>', what, how)


# ---------------------------------------------------------------- training curves
def training_section(logs: list[Path], run: Path) -> Section:
    figs = []
    for log in logs:
        try:
            frame = pd.read_csv(log)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            figs.append(html('<p class="fail">{}: unreadable CSV ({})</p>', log, e))
            continue
        title = str(log.relative_to(run)) if log.is_relative_to(run) else str(log)
        png = plots.training_curves(frame, title)
        if png:
            figs.append(html("<figure>{}<figcaption>{}: {} rows</figcaption></figure>",
                             img_tag(png, "image/png", "training curves " + title), title, len(frame)))
    if not figs:
        return Section("Training curves", _missing("training log (metrics.csv)", "Train with the CSV logger."))
    return Section("Training curves", join(figs, "\n"))


# ---------------------------------------------------------------- metrics
def load_metrics(paths: list[Path]) -> list[dict]:
    """[{file, data}] for every readable metrics JSON; an unreadable one is reported, not fatal."""
    out = []
    for p in paths:
        try:
            out.append({"file": p, "data": json.loads(Path(p).read_text())})
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            out.append({"file": p, "data": None, "error": f"{type(e).__name__}: {e}"})
    return out


def metric_values(data: dict) -> dict[str, float | str]:
    """The named values of one metrics JSON: `{"metric": name, "value": v}`, a `metrics` dict, or top-level numbers."""
    vals: dict[str, float | str] = {}
    if isinstance(data.get("metric"), str) and "value" in data:
        vals[data["metric"]] = data["value"]
        if "std" in data and data["std"] is not None:
            vals[data["metric"]] = _fmt_pm(data["value"], data["std"])
    if isinstance(data.get("metrics"), dict):
        for k, v in data["metrics"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[k] = v
            elif v is None:  # undefined: say why, never "nan"
                vals[k] = f"undefined: {_reason(data, k)}"
            elif isinstance(v, dict) and "value" in v:
                vals[k] = v["value"] if v.get("std") is None else _fmt_pm(v["value"], v["std"])
    if not vals:
        vals = {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return vals


def _protocol_html(protocol) -> Markup:
    if not isinstance(protocol, dict):
        return Markup("")
    items = join(html("<tr><td>{}</td><td><code>{}</code></td></tr>", k, json.dumps(v) if not isinstance(v, str)
                      else v) for k, v in protocol.items())
    return html("<details><summary>protocol</summary><table>{}</table></details>", items)


def metrics_section(metrics: list[dict]) -> Section:
    if not metrics:
        return Section("Metrics", _missing("metrics JSON", "Run reelgan-eval fid/fvd/align/engagement --out RUN/eval/X.json."))
    rows = []
    for m in metrics:
        name = Path(m["file"]).name
        if m["data"] is None:
            rows.append([name, html('<span class="fail">{}</span>', m["error"]), ""])
            continue
        vals = metric_values(m["data"])
        cells = join((html("<b>{}</b> = {}", k, _fmt(v)) for k, v in vals.items()), "<br>") or Markup("—")
        if m["data"].get("biased_judge"):
            cells += html('<br><span class="fail">{}</span>', m["data"]["biased_judge"])
        floor = (m["data"].get("floor") or {}).get("value")
        if isinstance(floor, (int, float)):
            cells += html("<br>real-vs-real floor = {} ({})", _fmt(floor), m["data"]["floor"].get("note", ""))
        rows.append([name, cells, _protocol_html(m["data"].get("protocol"))])
    note = Markup('<p class="sub">Metric names carry their feature network (fid[inception], fvd[domain], …); '
                  "each row's protocol pins network, weights sha256, resize, frames, stride, clip counts, covariance "
                  "normalisation, seeds and the real-statistics hash.</p>")
    return Section("Metrics", note + _table(["file", "values", "pinned protocol"], rows))


# ---------------------------------------------------------------- alignment
def alignment_section(metrics: list[dict], check: dict | None = None, truth: dict | None = None,
                      table: Markup = Markup("")) -> Section:
    from evaluation.report.alignment import alignment_figures

    figs = [f for m in metrics if m["data"] is not None for f in alignment_figures(m["data"], truth)]
    if check:
        figs += alignment_figures({"attributes": check.get("attributes")})
    if not figs:
        return Section("Preference alignment", _missing("alignment results", "Run reelgan-eval align --out RUN/eval/align.json."))
    return Section("Preference alignment", table + join((html("<figure>{}<figcaption>{}</figcaption></figure>",
                                                              img_tag(png, "image/png", cap), cap)
                                                         for cap, png in figs), "\n"))


# ---------------------------------------------------------------- samples
def _gif_bytes(folder: Path, files: dict, frames_hint: int) -> tuple[bytes, str] | None:
    if "gif" in files and (folder / files["gif"]).is_file():
        return (folder / files["gif"]).read_bytes(), "image/gif"
    for fmt in ("mp4", "webm"):
        if fmt in files and (folder / files[fmt]).is_file():
            from data.video import read_clip, write_video

            clip = read_clip(folder / files[fmt], num_frames=frames_hint, start=0)
            with tempfile.TemporaryDirectory() as tmp:
                return write_video(Path(tmp) / "clip.gif", clip, fps=8).read_bytes(), "image/gif"
    if "grid" in files and (folder / files["grid"]).is_file():
        return (folder / files["grid"]).read_bytes(), "image/png"
    return None


def samples_section(manifests: list[Path], max_users: int, clips_per_user: int) -> Section:
    blocks = []
    shown = 0
    for mpath in manifests:
        data = json.loads(mpath.read_text())
        if data.get("format", "").split("/")[0] != "reelgan-generate-manifest":
            continue
        by_user: dict[str, list[dict]] = {}
        for e in data.get("clips", []):
            by_user.setdefault(e["folder"], []).append(e)
        for folder, entries in by_user.items():
            if shown >= max_users:
                break
            shown += 1
            tiles = []
            for e in sorted(entries, key=lambda e: e["seed"])[:clips_per_user]:
                got = _gif_bytes(mpath.parent / folder, e["files"], e.get("frames", 16))
                if got:
                    alt = f"{e['user']} seed {e['seed']}"
                    tiles.append(html('<div class="clip">{}<br>seed {}</div>', img_tag(got[0], got[1], alt),
                                      e["seed"]))
            who = entries[0]
            blocks.append(html('<h3>{} <span class="sub">({}, truncation {})</span></h3><div class="clips">{}</div>',
                               who["user"], who["source"], who.get("truncation"), join(tiles)))
    if not blocks:
        return Section("Samples", _missing("generated samples (manifest.json)", "Run reelgan-generate --outdir RUN/samples."))
    return Section("Samples per user", join(blocks, "\n"))


# ---------------------------------------------------------------- slot
def load_slot(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {i} is not JSON ({e}); re-run reelgan-eval slot") from e
    return rows


def slot_section(rows: list[dict], check: dict | None, run: Path) -> Section:
    if not rows:
        return Section("Recommendation slot", _missing("slot", "Run reelgan-eval slot."))
    users = list(dict.fromkeys(r["user_id"] for r in rows))
    fallbacks = sum(bool(r.get("fallback")) for r in rows)
    rows_c = [r for r in rows if not r.get("fallback")]
    passed = sum(r["passed"] for r in rows_c)
    reasons: dict[str, int] = {}
    for r in rows_c:
        for why in r.get("reasons", []):
            key = why.split(" ")[0]
            reasons[key] = reasons.get(key, 0) + 1
    parts = [html("<p>{} users, {} candidate clips, {} passed the gate ({:.0%}); {} user(s) fell back to the popular "
                  "clip. Failures by check: {}.</p>", len(users), len(rows_c), passed, passed / max(1, len(rows_c)),
                  fallbacks, ", ".join(f"{k} {v}" for k, v in reasons.items()) or "none")]
    if check:
        parts.append(_slot_check_html(check))
    served = [r for r in rows if r.get("served")]
    score_keys = list(dict.fromkeys(k for r in served for k in r.get("scores", {})))
    table_rows = [[r["user_id"], r["rank"] if r.get("rank") else ("fallback" if r.get("fallback") else "—"),
                   Path(str(r["clip"])).name] + [_fmt(r.get("scores", {}).get(k, "—")) for k in score_keys]
                  for r in served[:60]]
    parts.append(Markup("<p>Served clips (rank 1 of the passing candidates; <i>fallback</i> = no candidate passed "
                        "the gate, the most popular catalogue clip is served):</p>"))
    parts.append(_table(["user", "rank", "clip"] + score_keys, table_rows))
    return Section("Recommendation slot", join(parts, "\n"))


def _slot_check_html(check: dict) -> Markup:
    arms = check.get("arms", {})
    label = {"slot": "slot (served)", "popular": "most popular clip", "random_generated": "random generated clip",
             "best_candidate": "best candidate (oracle)"}
    png = plots.grouped_bars({"expected engagement": {label.get(k, k): v["mean"] for k, v in arms.items()}},
                             "offline check: expected engagement under the hidden truth", "P(engage)")
    return html("<figure>{}<figcaption>{}</figcaption></figure>", img_tag(png, "image/png", "slot offline check"),
                check.get("verdict", ""))


# ---------------------------------------------------------------- headlines + markdown
def headlines(metrics: list[dict], check: dict | None) -> list[dict]:
    from evaluation.report.alignment import alignment_headline

    out = []
    for m in metrics:
        if m["data"] is None:
            continue
        for k, v in metric_values(m["data"]).items():
            if k.startswith("fvd[domain]") and not any(h["name"] == "fvd[domain]" for h in out):
                out.append({"name": "fvd[domain]", "value": v, "display": _fmt(v),
                            "note": "domain-classifier FVD, generated vs real (lower is better)"})
    for m in metrics:
        h = alignment_headline(m["data"]) if m["data"] is not None else None
        if h and not any(x["name"] == h["name"] for x in out):
            out.append(h)
    if check and "arms" in check:
        a = check["arms"]
        slot, pop, rnd = a["slot"]["mean"], a["popular"]["mean"], a["random_generated"]["mean"]
        out.append({"name": "slot expected engagement", "value": slot,
                    "display": f"{slot:.3f}",
                    "note": f"vs most-popular clip {pop:.3f} ({(slot / pop - 1):+.0%}), random generated {rnd:.3f}"})
    return out


_MD_ACTIVE = re.compile(r"([\\`*_\[\]<>!|~&#])")


def md(value) -> str:
    """Any text from a run's files as inert Markdown: one line, every inline-active character backslash-escaped
    (links, images, raw HTML, emphasis, code, table cells, entities), as the HTML page escapes it."""
    return _MD_ACTIVE.sub(r"\\\1", " ".join(_fmt(value).split()))


def markdown_summary(inputs, heads, metrics, slot_rows, check, out_html: Path, made: str) -> str:
    """The report's Markdown summary; every value read from the run's files goes through `md`."""
    lines = [f"# ReelGAN report: {md(inputs.run.name)}", "", f"Made {made} by `reelgan-eval report`. "
             f"Full page: {md(out_html.name)} (self-contained HTML).", "", "## Headline figures", ""]
    lines += [f"- **{md(h['name'])}**: {md(h['display'])} ({md(h['note'])})" for h in heads] or ["- none available"]
    lines += ["", "## Metrics", "", "| file | values |", "|---|---|"]
    for m in metrics:
        vals = metric_values(m["data"]) if m["data"] is not None else {"error": m.get("error")}
        lines.append(f"| {md(Path(m['file']).name)} | " + "; ".join(f"{md(k)} = {md(v)}" for k, v in vals.items())
                     + " |")
    if slot_rows:
        cands = [r for r in slot_rows if not r.get("fallback")]
        fallbacks = len(slot_rows) - len(cands)
        lines += ["", "## Slot", "", f"{len(cands)} candidates, {sum(r['passed'] for r in cands)} passed the gate, "
                  f"{len({r['user_id'] for r in slot_rows})} users served ({fallbacks} with the popular-clip fallback)."]
        if check:
            lines.append("")
            lines.append(md(check.get("verdict", "")))
    lines += ["", f"Inputs: {len(inputs.train_logs)} training log(s), {len(inputs.metrics)} metrics file(s), "
              f"{len(inputs.manifests)} sample manifest(s).", ""]
    return "\n".join(lines)
