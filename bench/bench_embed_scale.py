"""Claim: preference embeddings fit at shop scale on one machine: a synthetic log of 10⁶ users × 10⁵ clips ×
10⁷ events embeds (BPR fit + held-out Recall/NDCG against popularity) with peak RSS ≤ 4 GB.

The log is built in memory exactly as `data.contract.load_dataset` returns it (categorical ids; CSV parsing is
not part of the claim): every user has events, clip popularity is Zipf-like, events are view/click/add_to_cart/
purchase (70/20/7/3 %), each user's last event is held out. The fit and the ranking are the real
`data.bpr.fit_bpr` (sparse pair set, dense Adam factors) and `data.bpr.evaluate_ranking` (CSR, torchmetrics, a
seeded sample of users). Peak RSS is the kernel's high-water mark of this process. Prints a table and writes
bench/results/bench_embed_scale.json; other jobs on the machine change the time, not the memory.

    .venv/bin/python bench/bench_embed_scale.py [--users 1000000] [--clips 100000] [--events 10000000]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _results import machine_block, save  # noqa: E402
from data.bpr import evaluate_ranking, fit_bpr
from data.contract import EVENT_WEIGHTS, Dataset

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ("view", "click", "add_to_cart", "purchase")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_log(users: int, clips: int, events: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users, dtype=np.int32), -(-events // users))[:events]
    rng.shuffle(user)
    popularity = 1.0 / (np.arange(clips) + 10.0)
    clip = rng.choice(clips, size=events, p=popularity / popularity.sum()).astype(np.int32)
    event = rng.choice(len(EVENTS), size=events, p=[0.70, 0.20, 0.07, 0.03]).astype(np.int8)
    ts = rng.permutation(events).astype(np.int64)
    order = np.lexsort((ts, user))                       # per user by time: the last one is held out
    last = np.ones(events, bool)
    last[:-1] = user[order][1:] != user[order][:-1]
    split = np.zeros(events, np.int8)
    split[order[last]] = 1
    clip_ids = pd.Index([f"c{i:06d}" for i in range(clips)])
    inter = pd.DataFrame({
        "user_id": pd.Categorical.from_codes(user, pd.Index([f"u{i:07d}" for i in range(users)])),
        "clip_id": pd.Categorical.from_codes(clip, clip_ids),
        "event": pd.Categorical.from_codes(event, list(EVENTS)),
        "timestamp": ts,
        "split": pd.Categorical.from_codes(split, ["train", "test"]),
    })
    inter["weight"] = np.asarray([EVENT_WEIGHTS[e] for e in EVENTS])[event]
    inter["valid"] = True
    clips_frame = pd.DataFrame({"clip_id": clip_ids, "path": "", "product_id": [f"p{i // 4:06d}" for i in range(clips)],
                                "file": ""})
    return Dataset(root=Path("synthetic-log"), clips=clips_frame, interactions=inter, users=None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--clips", type=int, default=100_000)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=65536, help="BPR pairs per step")
    p.add_argument("--eval-users", type=int, default=20_000, help="seeded sample of users for Recall/NDCG")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_embed_scale.json")
    args = p.parse_args()
    load_before = os.getloadavg()
    timings = {}
    t0 = time.perf_counter()
    ds = synthetic_log(args.users, args.clips, args.events)
    timings["build_log_s"] = round(time.perf_counter() - t0, 1)
    rss_log = peak_rss_mib()
    t0 = time.perf_counter()
    emb = fit_bpr(ds, dim=args.dim, epochs=args.epochs, batch_size=args.batch_size)
    timings["fit_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    ranking = evaluate_ranking(ds, emb, max_users=args.eval_users)
    timings["ranking_s"] = round(time.perf_counter() - t0, 1)
    peak = peak_rss_mib()
    result = {
        "benchmark": "bench_embed_scale",
        "claim": "10^6 users x 10^5 clips x 10^7 events embed with peak RSS <= 4 GB",
        "command": " ".join([".venv/bin/python", "bench/bench_embed_scale.py", *sys.argv[1:]]),
        "log": {"users": args.users, "clips": args.clips, "events": args.events, "train_pairs": emb.meta["train_pairs"],
                "vectors": len(emb.user_ids)},
        "fit": {"dim": args.dim, "epochs": args.epochs, "batch_size": args.batch_size, "by": "product"},
        "ranking": ranking, "timings": timings, "total_s": round(sum(timings.values()), 1),
        "peak_rss_mib": round(peak, 1), "peak_rss_after_building_log_mib": round(rss_log, 1),
        "target_mib": 4096, "within_target": peak <= 4096,
        **machine_block(load_before),
    }
    k = ranking["k"]
    print(f"{args.users:,} users × {args.clips:,} clips × {args.events:,} events")
    print(f"{'stage':<12} {'seconds':>8}")
    for name, s in timings.items():
        print(f"{name:<12} {s:>8.1f}")
    print(f"peak RSS {peak:,.0f} MiB (target 4,096; {rss_log:,.0f} MiB after building the log)")
    print(f"ranking on {ranking['users']:,} users: MF NDCG@{k} {ranking['mf'][f'ndcg@{k}']:.4f}, "
          f"popularity {ranking['popularity'][f'ndcg@{k}']:.4f}")
    return save(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
