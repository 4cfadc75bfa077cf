"""Claim: the synthetic world renders and encodes 1,000 clips (64×64×16, mp4) in under 60 s on 2 cores.

Prints a table and writes bench/results/bench_data_synth.json. Wall time depends on what else runs on the
machine, so CPU seconds (this process + render workers) and the load average are recorded beside it.

    .venv/bin/python bench/bench_data_synth.py [--clips 1000] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from data import io
from data.synth import make_world


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_data_synth.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="reelgan-bench-synth-") as tmp:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        world = make_world(Path(tmp) / "world", clips=args.clips, users=args.users, size=(64, 64), frames=16,
                           seed=0, workers=args.workers)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        size_mb = sum(f.stat().st_size for f in (Path(tmp) / "world").rglob("*") if f.is_file()) / 2**20
    result = {
        "benchmark": "bench_data_synth", "claim": "1,000 clips 64x64x16 in < 60 s on 2 cores",
        "command": " ".join([".venv/bin/python", "bench/bench_data_synth.py", *sys.argv[1:]]),
        "clips": args.clips, "users": args.users, "workers": args.workers, "size": "64x64", "frames": 16,
        "wall_seconds": round(wall, 2), "render_seconds": world["render_seconds"], "cpu_seconds": round(cpu, 2),
        "clips_per_second": round(args.clips / wall, 1), "cpu_ms_per_clip": round(1000 * cpu / args.clips, 1),
        "meets_claim": wall < 60 * args.clips / 1000, "dataset_mb": round(size_mb, 1),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    table = Table(title="synthetic world: render + encode")
    for col in ("clips", "workers", "wall s", "CPU s", "clips/s", "CPU ms/clip", "load avg (1 min)", "< 60 s"):
        table.add_column(col)
    table.add_row(str(args.clips), str(args.workers), f"{wall:.1f}", f"{cpu:.1f}", f"{args.clips / wall:.1f}",
                  f"{result['cpu_ms_per_clip']}", f"{load_before[0]:.1f} → {result['loadavg_after'][0]:.1f}",
                  str(result["meets_claim"]))
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
