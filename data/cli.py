"""`reelgan-data`: build, check and embed product-clip datasets. A thin shell over data.synth, data.contract,
data.preferences and data.persona; every subcommand ends with a summary."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from data.io import progress

# Piped into a log or a test, rich would assume 80 columns and fold every table cell; a wide console keeps each
# problem on one greppable line.
console = Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=240)

EPILOG = """\
The dataset folder (docs/data.md):
  clips/ + clips.csv (clip_id, path, product_id, [attributes], [split])
  interactions.csv (user_id, clip_id, event=view|click|add_to_cart|purchase, timestamp, [split=train|test])
  users.csv (optional: user_id, persona, [split=train|heldout])

Typical run (the shop's own videos, or the synthetic world):
  reelgan-data import shop_videos/ runs/shop --products shop_videos/products.csv --fit pad
  reelgan-data synth runs/world --clips 1000 --users 300 --seed 0
  reelgan-data check runs/world
  reelgan-data embed runs/world --dim 32
  reelgan-data shard runs/world runs/world-shards --size 64x64      # for multi-GPU training: --data.root runs/world-shards
"""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        assert h > 0 and w > 0
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f"--size expects HxW with positive integers, e.g. 64x64 or 64x96; got {text!r}")
    return h, w



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
    with progress(console=console, transient=False) as bar:
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


def cmd_embed(args) -> int:
    from data.embed import embed_dataset

    with console.status("fitting preference embeddings"):
        report = embed_dataset(args.dataset, dim=args.dim, epochs=args.epochs, seed=args.seed,
                               import_file=args.import_file, ids_file=args.ids_file, persona=not args.no_persona,
                               affinities=args.affinities)
    ranking = report["ranking"]
    if "mf" in ranking and ranking["users"] == 0:
        console.print(f"[yellow]held-out ranking not measurable: {ranking['reason']}[/yellow]")
    elif "mf" in ranking:
        k = ranking["k"]
        table = Table(title=f"held-out ranking ({ranking['users']} users; relevant = {ranking['relevant']})")
        for col in ("model", f"Recall@{k}", f"NDCG@{k}"):
            table.add_column(col)
        for name in ("mf", "popularity"):
            table.add_row(name, f"{ranking[name][f'recall@{k}']:.4f}", f"{ranking[name][f'ndcg@{k}']:.4f}")
        console.print(table)
    persona = report["persona"]
    if "skipped" not in persona:
        table = Table(title=f"persona map on {persona['heldout_users']} held-out users")
        for col in ("predictor", "mean cosine", "median rank", "top-10 hit rate"):
            table.add_column(col)
        for name in ("persona_map", "mean_vector"):
            m = persona[name]
            table.add_row(name, f"{m['cosine']:.3f}", f"{m['median_rank']:.0f} / {persona['candidates']}",
                          f"{m['top10']:.3f}")
        console.print(table)
    out = Path(args.dataset) / "embeddings"
    _summary(f"embed → {out}", {
        "source": report["source"], "users × dim": f"{report['users']} × {report['dim']}", "hash": report["hash"][:16],
        "beats popularity": ranking.get("beats_popularity", ranking.get("skipped")),
        "attribute affinities": report["affinities"].get("skipped") or
        f"{len(report['affinities']['columns'])} appended to {report['affinities']['factors_dim']} factors",
        "persona map": persona.get("skipped", "persona_map.safetensors"),
        "report": out / "embed_report.json", "seconds": report["seconds"],
    })
    if "mf" in ranking and ranking["beats_popularity"] is False:
        console.print("[yellow]warning: the embeddings do not beat popularity on held-out interactions[/yellow]")
    return 0


def cmd_import(args) -> int:
    from data.catalogue import ImportSettings, import_catalogue
    from data.contract import DatasetError

    try:
        settings = ImportSettings(size=args.size, fit=args.fit, fps=args.fps, clip_seconds=args.clip_seconds,
                                  max_clips=args.max_clips_per_video, min_frames=args.min_frames)
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        return 2
    started = time.perf_counter()
    try:
        with progress(console=console, transient=False) as bar:
            task = bar.add_task("probe + transcode videos", total=None)
            result = import_catalogue(args.source_dir, args.dataset, products=args.products, settings=settings,
                                      progress=lambda done, total, name: bar.update(
                                          task, completed=done, total=total,
                                          description=f"probe + transcode {name[-40:]}" if name else "done"))
    except DatasetError as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True)
        return 1
    if result.skipped:
        table = Table(title=f"{len(result.skipped)} file(s) not used")
        for col in ("file", "why", "how to fix"):
            table.add_column(col, overflow="fold")
        for s in result.skipped:
            table.add_row(s.file, s.reason, s.fix)
        console.print(table)
    rotated = sum(1 for r in result.rows if r["rotation"] not in ("0", ""))
    _summary(f"import {args.source_dir} → {args.dataset}", {
        "clips": len(result.rows), "from videos": result.sources, "encoded / reused": f"{result.written} / "
        f"{result.reused}", "files not used": len(result.skipped), "rotated clips (turned upright)": rotated,
        "size (HxW), fit, fps": f"{args.size[0]}x{args.size[1]}, {args.fit}, {args.fps}",
        "report": Path(args.dataset) / "import_report.json", "wall time (s)": round(time.perf_counter() - started, 1),
        "next": f"add {Path(args.dataset) / 'interactions.csv'}, then reelgan-data check {args.dataset}",
    })
    return 0


def cmd_check(args) -> int:
    from data.checks import check_dataset

    with progress(console=console, transient=False) as bar:
        task = bar.add_task("decode clips", total=None)
        report = check_dataset(args.dataset, decode=not args.no_decode,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    if report.problems:
        table = Table(title=f"{len(report.problems)} problem(s) in {args.dataset}")
        for col in ("", "file", "row", "field", "what is wrong", "how to fix"):
            table.add_column(col, overflow="fold")
        for p in report.problems[: args.max_rows]:
            table.add_row("[red]FATAL[/red]" if p.fatal else "[yellow]warn[/yellow]", Path(p.file).name,
                          "" if p.row is None else str(p.row), p.field or "", p.message, p.fix)
        console.print(table)
        if len(report.problems) > args.max_rows:
            console.print(f"... and {len(report.problems) - args.max_rows} more (raise --max-rows to see them)")
    _summary(f"check {args.dataset}", {
        **report.stats, "fatal problems": len(report.fatal), "warnings": len(report.problems) - len(report.fatal),
        "verdict": "[green]usable[/green]" if report.usable else "[red]UNUSABLE: fix the FATAL rows[/red]",
    })
    return 0 if report.usable else 1


def cmd_shard(args) -> int:
    from data.shards import ShardError, write_shards

    try:
        info = write_shards(args.dataset, args.out, args.size, max_frames=args.max_frames,
                            clips_per_chunk=args.clips_per_chunk, val_fraction=args.val_fraction, seed=args.seed,
                            workers=args.workers, embeddings=args.embeddings)
    except ShardError as err:
        console.print(f"[red]error:[/red] {err}", soft_wrap=True)
        return 2
    clips = info["clips"]
    _summary(f"shard → {args.out}", {
        "train clips": clips["train"], "val clips": clips["val"], "skipped (undecodable)": clips["skipped"],
        "without a conditioning user": clips["without_positive_user"],
        "size (HxW)": f"{info['height']}x{info['width']}", "frames kept per clip (max)": info["max_frames"],
        "embeddings": f"{info['embeddings']['path']} ({info['embeddings']['hash'][:16]})",
        "wall time (s)": info["seconds"],
        "next": f"reelgan-train fit -c CONFIG --data.root {args.out} --data.height {info['height']} "
                f"--data.width {info['width']}",
    })
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelgan-data", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{synth,import,check,embed,shard}")

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
    p = sub.add_parser("import", help="turn a folder of the shop's own videos into a dataset folder",
                       description="Probe every video under SOURCE_DIR (PyAV), turn it upright (rotation metadata), "
                       "resample it to --fps, cut long videos into clips, frame them to --size (--fit crop|pad|"
                       "resize), transcode to mp4 and write DATASET/clips/ and DATASET/clips.csv with the product "
                       "attributes of products.csv joined. Re-runs reuse unchanged clips. Every file that cannot be "
                       "used is listed with the reason (also in DATASET/import_report.json).")
    p.add_argument("source_dir", type=Path, help="folder of videos (.mp4 .mov .webm .gif .mkv .avi .m4v), searched "
                   "recursively")
    p.add_argument("dataset", type=Path, help="dataset folder to write (created)")
    p.add_argument("--products", type=Path, help="CSV: file (relative to SOURCE_DIR), product_id, [attribute "
                   "columns]; without it each video is its own product")
    p.add_argument("--size", type=_size, default=(256, 256), help="HxW of the written clips (train at any size "
                   "below it)")
    p.add_argument("--fit", choices=("crop", "pad", "resize"), default="crop",
                   help="crop: fill the frame, cut the edges; pad: whole frame, black bars; resize: whole frame, "
                   "stretched")
    p.add_argument("--fps", type=int, default=8, help="frame rate of the written clips")
    p.add_argument("--clip-seconds", type=float, default=4.0, help="length of one clip")
    p.add_argument("--max-clips-per-video", type=int, default=3, help="clips cut from one long video")
    p.add_argument("--min-frames", type=int, default=8, help="shorter clips are not used")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("check", help="validate a dataset folder and decode every clip",
                       description="Report every problem (file, row = CSV line, field, what is wrong, how to fix). "
                       "Exit status 1 when the dataset is unusable: missing file or column, duplicate ids, clip "
                       "paths that do not exist, interactions naming unknown clips or events, no usable clips. "
                       "Clips that fail to decode are warnings (training skips them).")
    p.add_argument("dataset", type=Path, help="dataset folder")
    p.add_argument("--no-decode", action="store_true", help="skip decoding the clips (CSV checks only)")
    p.add_argument("--max-rows", type=int, default=50, help="problems shown in the table (all are counted)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("embed", help="fit (or import) user preference embeddings and the persona map",
                       description="Fit BPR matrix factorisation on the train interactions (events weighted by "
                       "strength), report held-out Recall@10/NDCG@10 against popularity, and fit the persona map "
                       "(MiniLM → preference space) when users.csv has personas. Or --import external user "
                       "vectors (npy + --ids, csv, parquet). Writes DATASET/embeddings/.")
    p.add_argument("dataset", type=Path, help="dataset folder")
    p.add_argument("--dim", type=int, default=32, help="embedding dimension of the MF fit")
    p.add_argument("--affinities", action=argparse.BooleanOptionalAction, default=None,
                   help="append each user's attribute affinities (share of engagement per category, colour, ... "
                        "value) to the vectors: they make a shopper's style readable from the condition. "
                        "Default: on for a fit, off for --import")
    p.add_argument("--epochs", type=int, default=30, help="BPR epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the fit")
    p.add_argument("--import", dest="import_file", help="external user vectors: .npy (with --ids), .csv or .parquet")
    p.add_argument("--ids", dest="ids_file", help="user ids for an .npy import: one per line, row order")
    p.add_argument("--no-persona", action="store_true", help="skip the persona map")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("shard", help="decode and resize every clip once into litdata streaming shards",
                       description="Write OUT/ (docs/data.md): litdata chunks of decoded, resized uint8 clips with "
                       "clip_id, product_id, attributes and conditioning users, split into train/ and val/, plus a "
                       "copy of the embeddings and reelgan-shards.json. Train from it with --data.root OUT: each "
                       "rank streams its own chunks. Safe to re-run: OUT is replaced only when the new shards are "
                       "complete.")
    p.add_argument("dataset", type=Path, help="dataset folder (embedded: run `reelgan-data embed` first)")
    p.add_argument("out", type=Path, help="shard folder (created or replaced)")
    p.add_argument("--size", type=_size, default=(64, 64), help="frame size HxW of the training run, e.g. 64x64")
    p.add_argument("--max-frames", type=int, default=128, help="frames kept per clip (from the start)")
    p.add_argument("--clips-per-chunk", type=int, default=256,
                   help="clips per chunk file; ranks × workers should not exceed the number of chunks")
    p.add_argument("--val-fraction", type=float, default=0.0, help="fraction of products held out for val/")
    p.add_argument("--seed", type=int, default=0, help="seed of the product split")
    p.add_argument("--workers", type=int, default=2, help="decode processes")
    p.add_argument("--embeddings", type=Path, help="preferences.safetensors (default DATASET/embeddings/...)")
    p.set_defaults(func=cmd_shard)
    return parser


def main(argv: list[str] | None = None) -> int:
    from data.contract import DatasetError
    from data.video import VideoError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DatasetError, VideoError, FileNotFoundError) as err:  # they name the file and the fix: no traceback
        console.print(f"[red]reelgan-data {args.command}: error:[/red] {err}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
