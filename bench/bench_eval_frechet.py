"""Fréchet distance: ReelGAN's Cholesky + eigvalsh against the peers' own functions, on the same statistics.

    ours           evaluation.frechet.frechet_distance (Cholesky of Σ1, eigvalsh of Lᵀ Σ2 L)
    pytorch-fid    pytorch_fid.fid_score.calculate_frechet_distance (scipy.linalg.sqrtm of Σ1 Σ2)
    torch-fidelity torch_fidelity.metric_fid.fid_statistics_to_metric (numpy eigvals of Σ1 Σ2)
    torchmetrics   torchmetrics.image.fid._compute_fid (torch.linalg.eigvals of Σ1 Σ2, float64)
    tf-gan-svd     TF-GAN's trace_sqrt_product (SVD square roots; the original FVD), with --with-svd

Statistics: float64 mean/covariance of N correlated, ReLU-like random features per dimension d (full rank when
N > d), plus one rank-deficient case (N < d), where an exact reference is also computed (`exact_from_features`).
Time is the best of --repeats runs, wall and CPU (the machine is shared: see load_avg_1m in the JSON).
Prints a table and writes bench/results/bench_eval_frechet.json.

    .venv/bin/python bench/bench_eval_frechet.py [--dims 400,1280,2048] [--n 4096] [--repeats 3] [--with-svd]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _eval_common import print_table, write_results  # noqa: E402

from evaluation.metrics.frechet import frechet_distance, frechet_terms  # noqa: E402


def features(n: int, d: int, seed: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mix + shift, 0.0)


def exact_from_features(fa: np.ndarray, fb: np.ndarray) -> float:
    """For N < d, an exact reference: with centred features Ai, Σi = AiᵀAi/(ni−1), and the non-zero eigenvalues of
    Σ1Σ2 are the squared singular values of A1A2ᵀ/√((n1−1)(n2−1)); tr√(Σ1Σ2) is that (n1, n2) matrix's nuclear
    norm. No round-off eigenvalues (which the peers take square roots of) enter."""
    ca, cb = fa - fa.mean(0), fb - fb.mean(0)
    tr_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt((len(fa) - 1) * (len(fb) - 1))
    diff = fa.mean(0) - fb.mean(0)
    tr = (ca * ca).sum() / (len(fa) - 1) + (cb * cb).sum() / (len(fb) - 1)
    return float(diff @ diff + tr - 2 * tr_sqrt)


def methods(with_svd: bool) -> dict:
    out = {"ours": lambda m1, s1, m2, s2: frechet_distance(m1, s1, m2, s2)}
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
        out["pytorch-fid (sqrtm)"] = calculate_frechet_distance
    except ImportError:
        out["scipy sqrtm (ours)"] = lambda m1, s1, m2, s2: frechet_distance(m1, s1, m2, s2, method="sqrtm")
    try:
        from torch_fidelity.metric_fid import fid_statistics_to_metric
        out["torch-fidelity (eigvals)"] = lambda m1, s1, m2, s2: fid_statistics_to_metric(
            {"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2}, False)["frechet_inception_distance"]
    except ImportError:
        pass
    try:
        from torchmetrics.image.fid import _compute_fid
        t = torch.from_numpy
        out["torchmetrics (eigvals)"] = lambda m1, s1, m2, s2: float(_compute_fid(t(m1), t(s1), t(m2), t(s2)))
    except ImportError:
        pass
    if with_svd:
        out["tf-gan svd"] = lambda m1, s1, m2, s2: frechet_distance(m1, s1, m2, s2, method="svd")
    return out


def timed(fn, args, repeats: int) -> tuple[float, float, float]:
    """(best wall seconds, CPU seconds of that run, value). CPU time is less sensitive to a shared machine."""
    best, cpu, value = float("inf"), float("nan"), float("nan")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(fn(*args))
        wall = time.perf_counter() - start
        if wall < best:
            best, cpu = wall, time.process_time() - start_cpu
    return best, cpu, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", default="400,1280,2048", help="feature dimensions d")
    p.add_argument("--n", type=int, default=4096, help="samples per set (full-rank cases)")
    p.add_argument("--rank-deficient-n", type=int, default=512, help="samples for the extra N < d case (0: skip)")
    p.add_argument("--repeats", type=int, default=3, help="best-of runs for ours")
    p.add_argument("--peer-repeats", type=int, default=1, help="best-of runs for the peers (they are slow)")
    p.add_argument("--with-svd", action="store_true", help="also time TF-GAN's SVD formula")
    args = p.parse_args()
    dims = [int(x) for x in args.dims.split(",")]
    cases = [(d, args.n) for d in dims]
    if args.rank_deficient_n:
        cases.append((max(dims), args.rank_deficient_n))
    rows = []
    for d, n in cases:
        fa, fb = features(n, d, 0, 0.0), features(n, d, 1, 0.1)
        stats = (fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
        exact = exact_from_features(fa, fb) if n <= d else None
        route = frechet_terms(*stats)["route"]
        results = {}
        for name, fn in methods(args.with_svd).items():
            reps = args.repeats if name == "ours" else args.peer_repeats
            results[name] = timed(fn, stats, reps)
        ref_name = next(k for k in results if "sqrtm" in k)
        ref_t, ref_cpu, ref_v = results[ref_name]
        for name, (sec, cpu, value) in results.items():
            rows.append({"d": d, "n": n, "method": name, "route": route if name == "ours" else "",
                         "seconds": round(sec, 4), "cpu_seconds": round(cpu, 4),
                         "speedup_vs_sqrtm": round(ref_t / sec, 1), "cpu_speedup_vs_sqrtm": round(ref_cpu / cpu, 1),
                         "value": round(value, 6), "rel_diff_vs_sqrtm": f"{abs(value - ref_v) / abs(ref_v):.1e}",
                         "rel_err_vs_exact": "" if exact is None else f"{abs(value - exact) / exact:.1e}"})
        print_table([r for r in rows if r["d"] == d and r["n"] == n],
                    ["d", "n", "method", "route", "seconds", "cpu_seconds", "speedup_vs_sqrtm", "cpu_speedup_vs_sqrtm",
                     "rel_diff_vs_sqrtm", "rel_err_vs_exact"])
        print()
    write_results("bench_eval_frechet", {"command": " ".join(sys.argv), "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
