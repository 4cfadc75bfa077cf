"""`reelgan-eval report`: the argument parser over evaluation.report.build."""
from __future__ import annotations

import argparse
from pathlib import Path

from data.io import write_json
from evaluation.report.build import build_report, discover


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="one self-contained HTML report (+ Markdown summary) of a run",
        description="Collect a run's training logs, metrics JSON, generated samples and slot into one HTML file "
                    "with every image inlined (opens offline), and a Markdown summary beside it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="run folder (training logs, eval/, samples, slot/ inside)")
    p.add_argument("--metrics-dir", default=None, help="folder of metrics JSON files (default RUN/eval)")
    p.add_argument("--out", default=None, help="HTML path (default RUN/report.html); the .md goes beside it")
    p.add_argument("--max-users", type=int, default=8, help="users shown in the samples section")
    p.add_argument("--clips-per-user", type=int, default=4, help="animated clips shown per user")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    inputs = discover(args.run, args.metrics_dir)
    out = Path(args.out) if args.out else Path(args.run) / "report.html"
    summary = build_report(inputs, out, max_users=args.max_users, clips_per_user=args.clips_per_user)
    write_json(out.with_suffix(".json"), summary)  # the headline figures, machine-readable (demo.sh)
    print(f"report: {summary['html']} ({summary['bytes'] / 1e6:.1f} MB, {summary['images']} images)")
    print(f"summary: {summary['markdown']}")
    for h in summary["headlines"]:
        print(f"  {h['name']}: {h['display']}  ({h['note']})")
    return 0
