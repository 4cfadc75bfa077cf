"""Generation throughput on the CPU: clips/s at 64×64×16, fp32 against bf16 autocast, and the real CLI path
(`reelgan-generate`, mp4 files + manifest) with 1 process and with 2 processes (`--devices 2 --strategy ddp`).

The generator is the demo-cpu architecture (configs/demo-cpu.yaml model section when present, else the
VideoGenerator defaults), with random weights: speed does not depend on training. Seeds → latents → clips
exactly as `reelgan-generate` does it (gan.seeds), timed after one warm-up batch; uint8 conversion included.
Prints a table and writes bench/results/bench_generate.json.

    .venv/bin/python bench/bench_generate.py [--seconds 8] [--batch-sizes 1,16] [--cli-clips 96]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from data.tensors import model_to_uint8
from data import io
from gan.generator import VideoGenerator
from gan.seeds import latents_for_seeds
from generate.export import save_generator

ROOT = Path(__file__).resolve().parents[1]
# ReelGAN module kwarg → VideoGenerator kwarg
_MAP = {"motion": "motion", "content_dim": "content_dim", "motion_noise_dim": "motion_noise_dim", "w_dim": "w_dim",
        "embed_dim": "embed_dim", "mapping_layers": "mapping_layers", "g_channels": "channels",
        "motion_kwargs": "motion_kwargs", "cond_dim": "cond_dim"}


def generator_kwargs(config: Path | None) -> tuple[dict, str]:
    kw = {"cond_dim": 32}
    source = "VideoGenerator defaults"
    if config and config.is_file():
        model = (yaml.safe_load(config.read_text()) or {}).get("model", {}) or {}
        model = model.get("init_args", model)
        kw.update({_MAP[k]: v for k, v in model.items() if k in _MAP and v is not None})
        source = str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config)
    return {**kw, "frames": 16, "height": 64, "width": 64}, source


def measure(g: VideoGenerator, batch: int, precision: str, seconds: float) -> dict:
    cond = torch.nn.functional.normalize(torch.randn(batch, g.cond_dim, generator=torch.Generator().manual_seed(0)), dim=1)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else torch.no_grad
    seed, clips, runs = 0, 0, 0

    def once():
        nonlocal seed
        z = latents_for_seeds(list(range(seed, seed + batch)), g.z_dim)
        seed += batch
        with torch.no_grad(), ctx():
            return model_to_uint8(g(z, cond, truncation=1.0))

    once()  # warm-up: allocator, oneDNN kernels
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 2:
        out = once()
        clips += out.shape[0]
        runs += 1
    wall = time.perf_counter() - start
    return {"precision": precision, "batch": batch, "clips": clips, "seconds": round(wall, 3),
            "clips_per_s": round(clips / wall, 3), "ms_per_clip": round(1000 * wall / clips, 2)}


def cli_rows(g: VideoGenerator, clips: int) -> list[dict]:
    """Wall time of `reelgan-generate` (start-up, generation, mp4 encoding, manifest) with 1 and 2 processes.

    1 process runs torch with 2 threads; 2 processes run 1 thread each (the same 2 cores)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="reelgan-bench-generate-") as tmp:
        tmp = Path(tmp)
        save_generator(g, tmp / "G.safetensors")
        shoppers = np.random.default_rng(0).normal(size=(8, g.cond_dim)).astype(np.float32)
        np.save(tmp / "shoppers.npy", shoppers / np.linalg.norm(shoppers, axis=1, keepdims=True))
        base = [sys.executable, "-m", "generate.cli", "--checkpoint", str(tmp / "G.safetensors"), "--embedding",
                str(tmp / "shoppers.npy"), "--num", str(max(1, clips // 8)), "--format", "mp4", "--device", "cpu",
                "--no-progress"]
        for procs, threads, extra in ((1, 2, []), (2, 1, ["--devices", "2", "--strategy", "ddp"])):
            out = tmp / f"out{procs}"
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
            t0 = time.perf_counter()
            subprocess.run(base + ["--outdir", str(out)] + extra, cwd=ROOT, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - t0
            run = json.loads((out / "manifest.json").read_text())["runs"][-1]
            rows.append({"processes": procs, "threads_each": threads, "clips": run["clips"],
                         "wall_s": round(wall, 2), "clips_per_s_wall": round(run["clips"] / wall, 2),
                         "generate_s": run["timings"]["generate_s"], "write_s": run["timings"]["write_s"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per setting")
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "demo-cpu.yaml")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--cli-clips", type=int, default=96, help="clips per CLI run (8 shoppers × seeds)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kw, source = generator_kwargs(args.config)
    torch.manual_seed(0)
    g = VideoGenerator(**kw).eval().requires_grad_(False)
    # bf16 changes numerics: record how far a clip moves (in uint8 levels) next to the speed-up
    z = latents_for_seeds(list(range(4)), g.z_dim)
    c = torch.nn.functional.normalize(torch.randn(4, g.cond_dim), dim=1)
    with torch.no_grad():
        ref = model_to_uint8(g(z, c)).int()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model_to_uint8(g(z, c)).int()
    rows = [measure(g, int(b), prec, args.seconds) for b in args.batch_sizes.split(",") for prec in ("fp32", "bf16")]
    cli = cli_rows(g, args.cli_clips)
    result = {
        "bench": "bench_generate", "what": "clips/s at 64x64x16 (T×H×W), seeds→latents→G_ema→uint8, CPU",
        "generator": {"source": source, "config": g.config,
                      "parameters": int(sum(p.numel() for p in g.parameters()))},
        "bf16_vs_fp32_uint8_diff": {"max": int((ref - low).abs().max()), "mean": float((ref - low).abs().float().mean())},
        "rows": rows, "cli": cli, "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_at_start": os.getloadavg()[0],
        "note": "other engineers may share these 2 cores; see load_average_at_start",
    }
    print(f"{'precision':>9} {'batch':>5} {'clips/s':>9} {'ms/clip':>9}")
    for r in rows:
        print(f"{r['precision']:>9} {r['batch']:>5} {r['clips_per_s']:>9.2f} {r['ms_per_clip']:>9.1f}")
    print(f"{'CLI procs':>9} {'clips':>5} {'wall s':>9} {'clips/s':>9}")
    for r in cli:
        print(f"{r['processes']:>9} {r['clips']:>5} {r['wall_s']:>9.1f} {r['clips_per_s_wall']:>9.2f}")
    print(f"bf16 vs fp32: max |Δ| {result['bf16_vs_fp32_uint8_diff']['max']} uint8 levels, mean "
          f"{result['bf16_vs_fp32_uint8_diff']['mean']:.2f}; generator from {source}, "
          f"{result['generator']['parameters']:,} parameters")
    out = ROOT / "bench" / "results" / "bench_generate.json"
    io.write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
