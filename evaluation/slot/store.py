"""The slot's output files: slot.jsonl (one strict-JSON row per candidate) and slot.csv (scores as columns)."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from data.io import write_text

CSV_FIXED = ["user_id", "rank", "served", "passed", "reasons", "clip", "seed", "candidate"]


def write_slot(rows: list[dict], outdir: str | Path) -> tuple[Path, Path]:
    """slot.jsonl (one JSON row per candidate) and slot.csv (same rows, scores as columns), both atomic."""
    outdir = Path(outdir)
    rows = [_no_nan(r) for r in rows]  # strict JSON: an unknown score is null, not NaN
    jsonl = "".join(json.dumps(r, sort_keys=False, allow_nan=False) + "\n" for r in rows)
    score_keys = list(dict.fromkeys(k for r in rows for k in r["scores"]))
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in CSV_FIXED and k != "scores"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIXED + score_keys + extra)
    for r in rows:
        w.writerow([("" if r.get(k) is None else "; ".join(r[k]) if k == "reasons" else r.get(k)) for k in CSV_FIXED]
                   + [r["scores"].get(k) for k in score_keys] + [r.get(k) for k in extra])
    return write_text(outdir / "slot.jsonl", jsonl), write_text(outdir / "slot.csv", buf.getvalue())


def _no_nan(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj
