"""`reelgan-data`: build, check and embed product-clip datasets. A thin shell over data.synth, data.contract,
data.preferences and data.persona; every subcommand ends with a summary."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()

EPILOG = """\
The dataset folder (docs/data.md):
  clips/ + clips.csv (clip_id, path, product_id, [attributes], [split])
  interactions.csv (user_id, clip_id, event=view|click|add_to_cart|purchase, timestamp, [split=train|test])
  users.csv (optional: user_id, persona, [split=train|heldout])

Typical run:
  reelgan-data synth runs/world --clips 1000 --users 300 --seed 0
  reelgan-data check runs/world
  reelgan-data embed runs/world --dim 32
"""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        assert h > 0 and w > 0
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f"--size expects HxW with positive integers, e.g. 64x64 or 64x96; got {text!r}")
    return h, w


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _summary(title: str, rows: dict) -> None:
    table = Table(title=f"summary: {title}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows.items():
        table.add_row(str(k), str(v))
    console.print(table)


def cmd_synth(args) -> int:
    from data.synth import make_world

    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("render + encode clips", total=args.clips)
        world = make_world(args.out, clips=args.clips, users=args.users, size=args.size, frames=args.frames,
                           seed=args.seed, fps=args.fps, workers=args.workers,
                           progress=lambda done, total: bar.update(task, completed=done))
    _summary(f"synth → {args.out}", {
        "clips": world["clips"], "products": world["products"], "users": world["users"],
        "held-out users": world["counts"]["heldout_users"], "size (HxW×T)": f"{args.size[0]}x{args.size[1]}×{args.frames}",
        "interactions": world["counts"]["interactions"],
        "events": ", ".join(f"{e} {world['counts'].get(e, 0)}" for e in ("view", "click", "add_to_cart", "purchase")),
        "seed": args.seed, "wall time (s)": round(time.perf_counter() - started, 1),
        "next": f"reelgan-data check {args.out}",
    })
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelgan-data", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{synth,check,embed}")

    p = sub.add_parser("synth", help="write the synthetic try-on world (clips, users, interactions, hidden truth)",
                       description="Render product try-on clips (≥4 categories × 8 colours × 4 patterns), users with "
                       "hidden preferences and their interactions from a choice model. Same seed → same files.")
    p.add_argument("out", type=Path, help="output dataset folder (created)")
    p.add_argument("--clips", type=int, default=1000, help="number of clips (products repeat after 128)")
    p.add_argument("--users", type=int, default=300, help="number of users (15%% become held-out users)")
    p.add_argument("--size", type=_size, default=(64, 64), help="frame size HxW, e.g. 64x64 or 64x96")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--fps", type=int, default=8, help="frame rate written in the files")
    p.add_argument("--seed", type=int, default=0, help="the one seed for everything")
    p.add_argument("--workers", type=int, default=2, help="render processes")
    p.set_defaults(func=cmd_synth)
    _add_check(sub)
    _add_embed(sub)
    return parser


def _add_check(sub) -> None:
    try:
        from data.cli_check import add_parser
    except ImportError:
        return
    add_parser(sub)


def _add_embed(sub) -> None:
    try:
        from data.cli_embed import add_parser
    except ImportError:
        return
    add_parser(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
