"""`reelgan-eval report`: one self-contained HTML page (every image inlined as base64) and a Markdown summary.

Inputs are found inside the run folder (each can be overridden):
- training logs: every `metrics.csv` (Lightning CSVLogger) under RUN → loss and fvd[...] curves against the step;
- metrics: `RUN/eval/*.json` written by `reelgan-eval fid/fvd/align/engagement` → table + pinned protocol;
- alignment: the `align` JSON → per-attribute plots (see evaluation/report_sections.py);
- samples: every `manifest.json` written by `reelgan-generate` under RUN → animated GIFs per user;
- slot: `slot.jsonl` and `slot_check.json` written by `reelgan-eval slot` → served clips and the offline check.
The page has no script and no external request, so it opens anywhere, offline.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment
from markupsafe import Markup

from data.io import write_text
from evaluation.report import sections
from evaluation.report.heldout import ceilings_table, heldout_section, quality_table


@dataclass
class ReportInputs:
    run: Path
    train_logs: list[Path] = field(default_factory=list)
    metrics: list[Path] = field(default_factory=list)
    manifests: list[Path] = field(default_factory=list)
    slot: Path | None = None
    slot_check: Path | None = None
    truth: Path | None = None  # hidden_truth.json of a synthetic world: boxes the favourites in the heatmaps


def discover(run: str | Path, metrics_dir: str | Path | None = None) -> ReportInputs:
    """Find the report's inputs inside RUN (see the module docstring)."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist; pass the --run given to the demo or to training")
    mdir = Path(metrics_dir) if metrics_dir else run / "eval"
    slot = next(iter(sorted(run.rglob("slot.jsonl"))), None)
    check = next(iter(sorted(run.rglob("slot_check.json"))), None)
    return ReportInputs(
        run=run,
        train_logs=sorted(run.rglob("metrics.csv")),
        metrics=sorted(p for p in mdir.glob("*.json")) if mdir.is_dir() else [],
        # sample manifests; the slot's candidate clips (slot/clips/manifest.json) belong to the slot section
        manifests=sorted(m for m in run.rglob("manifest.json") if not (m.parent.parent / "slot.jsonl").exists()),
        slot=slot,
        slot_check=check,
        truth=next(iter(sorted(run.rglob("hidden_truth.json"))), None),
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:2em}
.sub{color:#666;font-size:.9em}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:12px 16px;min-width:220px;flex:1}
.card .v{font-size:1.8em;font-weight:600}.card .n{color:#555;font-size:.85em}
table{border-collapse:collapse;margin:8px 0;font-size:.85em}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.pass{color:#1a7f37;font-weight:600}.fail{color:#b42318}
.clips{display:flex;flex-wrap:wrap;gap:10px}.clip{text-align:center;font-size:.75em}
.clip img{width:128px;image-rendering:pixelated;border:1px solid #ccc}
figure{margin:8px 0}figure img{max-width:100%}figcaption{font-size:.8em;color:#555}
details{margin:4px 0}code{font-size:.85em}
"""


# The page skeleton. autoescape: every value is escaped unless it is Markup (the sections' fragments, built with
# evaluation.report.sections.html, which escapes their values the same way).
_PAGE = Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,"><title>ReelGAN report: {{ run_name }}</title><style>{{ css }}</style></head><body>
<h1>ReelGAN report</h1><div class="sub">run <code>{{ run }}</code> · made {{ made }} by <code>reelgan-eval report</code></div>
<div class="cards">{% for h in heads %}<div class="card"><div class="n">{{ h.name }}</div><div class="v">{{ h.display }}</div>\
<div class="n">{{ h.note }}</div></div>{% endfor %}</div>
{% for s in sections %}<h2>{{ s.title }}</h2>
{{ s.html }}
{% endfor %}</body></html>
""")


def build_report(inputs: ReportInputs, out_html: str | Path, out_md: str | Path | None = None,
                 max_users: int = 8, clips_per_user: int = 4) -> dict:
    """Write the HTML page (and Markdown summary beside it); return {headlines, sections, images, paths}."""
    t0 = time.perf_counter()
    out_html = Path(out_html)
    out_md = Path(out_md) if out_md else out_html.with_suffix(".md")
    metrics = sections.load_metrics(inputs.metrics)
    slot_rows = sections.load_slot(inputs.slot) if inputs.slot else []
    check = json.loads(inputs.slot_check.read_text()) if inputs.slot_check else None
    heads = sections.headlines(metrics, check)
    truth = json.loads(inputs.truth.read_text())["users"] if inputs.truth else None

    parts: list[sections.Section] = [
        sections.training_section(inputs.train_logs, inputs.run),
        sections.metrics_section(metrics),
        sections.alignment_section(metrics, check, truth, ceilings_table(metrics) + quality_table(metrics)),
        heldout_section(inputs.manifests, metrics),
        sections.samples_section(inputs.manifests, max_users, clips_per_user),
        sections.slot_section(slot_rows, check, inputs.run),
    ]
    made = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    # no favicon request (icon = data:), no script: the page makes no request at all
    page = _PAGE.render(run_name=inputs.run.name, run=str(inputs.run), made=made, css=Markup(_CSS), heads=heads,
                        sections=[{"title": s.title, "html": Markup(s.html)} for s in parts])
    write_text(out_html, page)
    md = sections.markdown_summary(inputs, heads, metrics, slot_rows, check, out_html, made)
    write_text(out_md, md)
    return {
        "html": str(out_html), "markdown": str(out_md), "headlines": heads,
        "sections": [s.title for s in parts], "images": page.count("<img "), "bytes": len(page),
        "seconds": round(time.perf_counter() - t0, 2),
    }
