"""Peak memory of the statistics against the number of samples N (d = 2048, the Inception feature size).

    streaming  evaluation.stats.GaussianStats: features arrive in batches and are folded into float64 sums
    in-memory  what pytorch-fid / torch-fidelity do: keep every feature row (float32), then np.cov (float64)

Each measurement runs in its own process, so the peak (ru_maxrss) belongs to that setting alone; the table shows
the peak above the process's baseline after imports. Features are random (memory does not depend on values).
Prints a table and writes bench/results/bench_eval_memory.json.

    .venv/bin/python bench/bench_eval_memory.py [--dim 2048] [--stream-n 1000,10000,50000] [--naive-n 1000,10000,20000]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(mode: str, n: int, d: int, batch: int) -> None:
    import numpy as np
    import torch

    from evaluation.metrics.stats import GaussianStats

    g = torch.Generator().manual_seed(0)
    torch.randn(8, d, generator=g)  # touch the allocator before the baseline
    base = _peak_mb()
    start = time.perf_counter()
    if mode == "streaming":
        stats = GaussianStats(d)
        for i in range(0, n, batch):
            stats.update(torch.randn(min(batch, n - i), d, generator=g))
        sigma = stats.compute().sigma
    else:
        rows = [torch.randn(min(batch, n - i), d, generator=g).numpy() for i in range(0, n, batch)]
        feats = np.concatenate(rows)
        del rows
        sigma = np.cov(feats, rowvar=False)
    print(json.dumps({"mode": mode, "n": n, "d": d, "baseline_mb": round(base, 1), "peak_mb": round(_peak_mb(), 1),
                      "extra_mb": round(_peak_mb() - base, 1), "seconds": round(time.perf_counter() - start, 2),
                      "sigma_finite": bool(np.isfinite(sigma).all())}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--batch", type=int, default=256, help="features per update")
    p.add_argument("--stream-n", default="1000,10000,50000")
    p.add_argument("--naive-n", default="1000,10000,20000")
    p.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.dim, args.batch)
        return
    from _eval_common import print_table, write_results

    rows = []
    plan = [("streaming", int(n)) for n in args.stream_n.split(",")] + [("in-memory", int(n))
                                                                         for n in args.naive_n.split(",")]
    for mode, n in plan:
        out = subprocess.run([sys.executable, __file__, "--dim", str(args.dim), "--batch", str(args.batch),
                              "--child", mode, str(n)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["state_mb_theory"] = round((args.dim * args.dim + args.dim + 1) * 8 / 2**20, 1) if mode == "streaming" \
            else round((n * args.dim * 4 + n * args.dim * 8 + args.dim**2 * 8) / 2**20, 1)
        rows.append(row)
        print(f"{mode:10s} N={n:>7d}  extra {row['extra_mb']:8.1f} MB  ({row['seconds']} s)", flush=True)
    print()
    print_table(rows, ["mode", "n", "d", "extra_mb", "state_mb_theory", "peak_mb", "baseline_mb", "seconds"])
    write_results("bench_eval_memory", {"command": " ".join(sys.argv), "args": vars(args), "rows": rows,
                                        "note": "state_mb_theory: streaming = float64 sums (d² + d + 1); in-memory "
                                                "= float32 rows + np.cov's float64 centred copy + Σ"})


if __name__ == "__main__":
    main()
