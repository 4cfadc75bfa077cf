"""Claim: training memory does not grow with the catalogue when it streams from shards, and shards feed clips
faster than decoding mp4 files.

1. Peak RSS of one training process (`reelgan-train fit`, configs/demo-cpu.yaml, 20 optimiser steps, no
   loader workers) on synthetic worlds of 1k and 20k clips (32×32×8): from shards (`reelgan-data shard`), and
   from the dataset folder with the in-memory clip cache for contrast. Target: shards grow ≤ 15 %.
2. Clips/s of the train loader over the 1k world: shards against mp4 decoding (folder, no cache), 1 and 2
   workers, in steady state, with each epoch's start-up (to its first batch) reported apart: litdata starts its
   workers anew each epoch (spawn), the folder loader keeps them (persistent_workers).
Prints tables and writes bench/results/bench_data_scale.json. Other jobs on the machine lower the speeds (not
the memory); the load average is recorded.

    .venv/bin/python bench/bench_data_scale.py [--sizes 1000,20000] [--steps 20] [--epochs 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from _results import machine_block, save  # noqa: E402
from data.bpr import fit_bpr
from data.contract import load_dataset
from data.datamodule import ProductClipDataModule
from data.shards import write_shards
from data.synth import make_world

ROOT = Path(__file__).resolve().parents[1]
SIZE, FRAMES = (32, 32), 8


def build(tmp: Path, clips: int) -> tuple[Path, Path, float]:
    root, shards = tmp / f"world{clips}", tmp / f"shards{clips}"
    make_world(root, clips=clips, users=max(300, clips // 20), size=SIZE, frames=FRAMES, seed=0, workers=2)
    fit_bpr(load_dataset(root), dim=16, epochs=3).save(root / "embeddings" / "preferences.safetensors")
    t0 = time.perf_counter()
    write_shards(root, shards, SIZE, clips_per_chunk=256, workers=2)
    return root, shards, round(time.perf_counter() - t0, 1)


def train_peak_rss(root: Path, run: Path, steps: int, cache: bool) -> dict:
    """Peak resident memory (MiB) of a real `reelgan-train fit` process, from the kernel's rusage of the child."""
    cmd = [sys.executable, "-m", "train.cli", "fit", "-c", str(ROOT / "configs" / "demo-cpu.yaml"),
           "--data.root", str(root), "--data.stride", "1", "--data.num_workers", "0",
           "--data.cache_clips", str(cache).lower(), "--trainer.max_steps", str(steps), "--trainer.max_time", "null",
           "--trainer.default_root_dir", str(run)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    if proc.returncode:
        raise RuntimeError(f"training failed: {' '.join(cmd)}\n{err[-3000:]}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(time.perf_counter() - t0, 1)}


def loader_rate(root: Path, workers: int, epochs: int, batch_size: int = 16) -> dict:
    """Clips/s of the train loader. Each epoch is timed in two parts: start-up (iterator creation to the first
    batch: worker processes, index files) and steady state (the remaining batches)."""
    dm = ProductClipDataModule(str(root), frames=FRAMES, height=SIZE[0], width=SIZE[1], batch_size=batch_size,
                               num_workers=workers, cache_clips=False, val_fraction=0.0)
    loader = dm.train_dataloader()
    clips, steady, startup = 0, 0.0, []
    for _ in range(epochs):
        t0 = time.perf_counter()
        first = None
        for batch in loader:
            if first is None:
                first = time.perf_counter()
                startup.append(round(first - t0, 3))
                continue
            clips += len(batch[0])
        steady += time.perf_counter() - first
    return {"workers": workers, "clips": clips, "steady_seconds": round(steady, 3),
            "clips_per_second": round(clips / steady, 1), "startup_seconds_per_epoch": startup}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,20000", help="catalogue sizes (clips)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per training process")
    parser.add_argument("--epochs", type=int, default=2, help="loader epochs for clips/s")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_data_scale.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    memory, speed = [], []
    with tempfile.TemporaryDirectory(prefix="reelgan-bench-scale-") as tmp:
        tmp = Path(tmp)
        for n in sizes:
            root, shards, shard_s = build(tmp, n)
            for source, path, cache in (("shards", shards, False), ("folder + clip cache", root, True)):
                row = train_peak_rss(path, tmp / f"run-{n}-{cache}", args.steps, cache)
                memory.append({"clips": n, "source": source, **row, **({"shard_s": shard_s} if not cache else {})})
            if n == sizes[0]:
                for source, path in (("shards", shards), ("mp4 (decode per draw)", root)):
                    speed += [{"source": source, **loader_rate(path, w, args.epochs)} for w in (1, 2)]
    growth = {}
    for source in ("shards", "folder + clip cache"):
        rows = [r for r in memory if r["source"] == source]
        growth[source] = round(rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"] - 1, 4)
    result = {
        "benchmark": "bench_data_scale",
        "claim": "peak RSS of one training process at 1k vs 20k clips (shards: growth <= 15%); shard vs mp4 clips/s",
        "command": " ".join([".venv/bin/python", "bench/bench_data_scale.py", *sys.argv[1:]]),
        "clip": f"synthetic, {SIZE[0]}x{SIZE[1]}x{FRAMES}, libx264 mp4; training: configs/demo-cpu.yaml, stride 1",
        "memory": memory, "growth": growth, "growth_target": 0.15,
        "shards_within_target": growth["shards"] <= 0.15, "loader": speed,
        **machine_block(load_before),
    }
    console = Console()
    table = Table(title="peak RSS of one training process")
    for col in ("clips", "source", "peak RSS (MiB)", "seconds"):
        table.add_column(col)
    for r in memory:
        table.add_row(str(r["clips"]), r["source"], f"{r['peak_rss_mib']:.0f}", f"{r['seconds']:.0f}")
    console.print(table)
    console.print(f"growth {sizes[0]} → {sizes[-1]} clips: " +
                  ", ".join(f"{k} {100 * v:+.1f} %" for k, v in growth.items()))
    table = Table(title=f"train loader clips/s ({sizes[0]} clips)")
    for col in ("source", "workers", "clips", "clips/s (steady)", "start-up s per epoch"):
        table.add_column(col)
    for r in speed:
        table.add_row(r["source"], str(r["workers"]), str(r["clips"]), f"{r['clips_per_second']}",
                      ", ".join(f"{x:.2f}" for x in r["startup_seconds_per_epoch"]))
    console.print(table)
    return save(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
