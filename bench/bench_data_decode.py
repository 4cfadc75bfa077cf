"""Claims: decoding is fast enough not to starve CPU training: clips/s at 64×64×16 through the DataLoader; and a
clip late in a long video is read by seeking, not by decoding from frame 0.

Measures ProductClipDataModule(cache_clips=False) with 1 and 2 workers (every clip decoded with PyAV on each
draw), and read_clip in the main process as a reference. Then read_clip on one long 256×256 30 fps H.264 video
(x264's default GOP of 250 frames, and a camera-like 1 s GOP), clips from its last 5 s and from random training
starts, with seek=False (decode from frame 0, as before) and seek=True (the first read includes building the frame
index). Prints tables and writes bench/results/bench_data_decode.json. Other jobs on the machine lower the figures;
the load average is recorded.

    .venv/bin/python bench/bench_data_decode.py [--clips 256] [--epochs 3] [--long-seconds 60] [--parts loader long]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from data import io
from data.bpr import fit_bpr
from data.contract import load_dataset
from data.datamodule import ProductClipDataModule
from data.synth import make_world
from data import video
from data.testing import long_video
from data.video import read_clip


def loader_rate(root: Path, workers: int, epochs: int, batch_size: int) -> dict:
    dm = ProductClipDataModule(str(root), frames=16, height=64, width=64, batch_size=batch_size,
                               num_workers=workers, cache_clips=False, val_fraction=0.0)
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up and the first batch are not throughput
    clips, t0 = 0, time.perf_counter()
    for batch in it:
        clips += len(batch[0])
    for _ in range(epochs - 1):
        for batch in loader:
            clips += len(batch[0])
    wall = time.perf_counter() - t0
    return {"workers": workers, "clips": clips, "seconds": round(wall, 3), "clips_per_second": round(clips / wall, 1)}


def long_video_rates(tmp: Path, seconds: float, clips: int) -> list[dict]:
    """clips/s of read_clip (16 frames, 64×64) on one long video: late clips and random starts, before/after."""
    rows = []
    for gop in (250, 30):
        path = long_video(tmp / f"long-gop{gop}.mp4", seconds=seconds, fps=30, height=256, width=256, gop=gop)
        n = int(round(seconds * 30))
        draws = {"late (last 5 s)": np.random.default_rng(0).integers(n - 150, n - 16, clips),
                 "random start": np.random.default_rng(1).integers(0, n - 16, clips)}
        for where, starts in draws.items():
            for seek in (False, True):
                video._cached_index.cache_clear()  # the index build counts, once per file as in a fresh worker
                t0 = time.perf_counter()
                for start in starts:
                    read_clip(path, 16, start=int(start), size=(64, 64), seek=seek)
                wall = time.perf_counter() - t0
                rows.append({"video": f"{seconds:g} s 256x256 30 fps, GOP {gop}", "gop": gop, "clips_from": where,
                             "seek": seek, "clips": clips, "seconds": round(wall, 3),
                             "clips_per_second": round(clips / wall, 2)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--long-seconds", type=float, default=60.0, help="length of the long video")
    parser.add_argument("--long-clips", type=int, default=10, help="clips read per long-video row")
    parser.add_argument("--parts", nargs="+", choices=("loader", "long"), default=["loader", "long"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_data_decode.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows, long_rows = [], []
    with tempfile.TemporaryDirectory(prefix="reelgan-bench-decode-") as tmp:
        if "loader" in args.parts:
            root = Path(tmp) / "world"
            make_world(root, clips=args.clips, users=200, size=(64, 64), frames=16, seed=0, workers=2)
            fit_bpr(load_dataset(root), dim=16, epochs=5).save(root / "embeddings" / "preferences.safetensors")
            files = sorted((root / "clips").glob("*.mp4"))
            rng = np.random.default_rng(0)
            t0 = time.perf_counter()
            for f in files:
                read_clip(f, 16, rng=rng, size=(64, 64))
            direct = {"workers": 0, "clips": len(files), "seconds": round(time.perf_counter() - t0, 3)}
            direct["clips_per_second"] = round(len(files) / direct["seconds"], 1)
            rows = [direct] + [loader_rate(root, w, args.epochs, args.batch_size) for w in (1, 2)]
        if "long" in args.parts:
            long_rows = long_video_rates(Path(tmp), args.long_seconds, args.long_clips)
    result = {
        "benchmark": "bench_data_decode", "parts": args.parts,
        "claim": "decode throughput at 64x64x16, DataLoader with 1 and 2 workers; "
                 "late clips of a long video by seeking",
        "command": " ".join([".venv/bin/python", "bench/bench_data_decode.py", *sys.argv[1:]]),
        "clip": "synthetic mp4 (libx264 crf 18, yuv420p), 16 frames 64x64, sampled 16 frames stride 1, no cache",
        "batch_size": args.batch_size, "results": rows,
        "long_video": {"clip": "16 frames stride 1 at 64x64 from a 256x256 libx264 (preset fast, B-frames) mp4",
                       "results": long_rows},
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    table = Table(title="decode 64×64×16 clips (PyAV, no cache)")
    for col in ("path", "workers", "clips", "seconds", "clips/s"):
        table.add_column(col)
    for row in rows:
        path = "read_clip (main process)" if row["workers"] == 0 else "DataLoader"
        table.add_row(path, str(row["workers"]), str(row["clips"]), f"{row['seconds']:.2f}", f"{row['clips_per_second']}")
    console = Console()
    if rows:
        console.print(table)
    if long_rows:
        long_table = Table(title="read_clip on one long video: decode from frame 0 vs seek")
        for col in ("video", "clips from", "seek", "clips", "seconds", "clips/s"):
            long_table.add_column(col)
        for row in long_rows:
            long_table.add_row(row["video"], row["clips_from"], str(row["seek"]), str(row["clips"]),
                               f"{row['seconds']:.2f}", f"{row['clips_per_second']}")
        console.print(long_table)
    print(f"load average before/after: {load_before[0]:.1f} / {result['loadavg_after'][0]:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
