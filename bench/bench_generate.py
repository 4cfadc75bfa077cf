"""Generation throughput: clips/s model-only and written as mp4 files, at the demo size and at 128×128×16.

Model-only: seeds → latents → G_ema → uint8 on the device, one copy back per forward (generate.sampler.
uint8_forwards, the CLI's path), forwards of the device's forward batch, timed after one warm-up forward.
To mp4: the real CLI (`python -m generate.cli --format mp4`, one process) with 0, 1 and 2 encoder processes
(`--encode-workers`), plus 2 DDP processes at the demo size; clips/s is the run's clips over the manifest's
`total_s` (the run: forwards, encoding, the sync pass and the publish; not Python's start-up or the model load,
which the `process_s` column adds). The manifest's `generate_s`, `write_s` and `encode_s` are shown beside it.

The generator has the demo-cpu widths (configs/demo-cpu.yaml model section), random weights (speed does not depend
on training); "demo" is the demo's clip size (its data section), "128" the same widths at 128×128×16. Prints a table
and writes bench/results/bench_generate.json with the load averages (other engineers share these cores).

    .venv/bin/python bench/bench_generate.py [--seconds 6] [--clips demo=256,128=24] [--workers 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import machine_block, save  # noqa: E402 (bench/, this script's folder)
from gan.generator import VideoGenerator  # noqa: E402
from generate.export import save_generator  # noqa: E402
from generate.sampler import forward_batch_for, uint8_forwards  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# ReelGAN module kwarg → VideoGenerator kwarg
_MAP = {"motion": "motion", "content_dim": "content_dim", "motion_noise_dim": "motion_noise_dim", "w_dim": "w_dim",
        "embed_dim": "embed_dim", "mapping_layers": "mapping_layers", "g_channels": "channels",
        "motion_kwargs": "motion_kwargs", "cond_dim": "cond_dim"}


def sizes(config: Path) -> tuple[dict, dict[str, tuple[int, int, int]], str]:
    """Generator kwargs from the config's model section, and the sizes {name: (T, H, W)} to measure."""
    cfg = yaml.safe_load(config.read_text()) or {} if config.is_file() else {}
    model = (cfg.get("model") or {}).get("init_args", cfg.get("model") or {})
    data = (cfg.get("data") or {}).get("init_args", cfg.get("data") or {})
    kw = {"cond_dim": 32, **{_MAP[k]: v for k, v in model.items() if k in _MAP and v is not None}}
    demo = (int(data.get("frames", 8)), int(data.get("height", 32)), int(data.get("width", 32)))
    source = str(config.relative_to(ROOT)) if config.is_file() else "VideoGenerator defaults"
    return kw, {"demo": demo, "128": (16, 128, 128)}, source


def model_only(g: VideoGenerator, device: str, seconds: float) -> dict:
    fb = forward_batch_for(device)
    cond = torch.nn.functional.normalize(torch.randn(fb, g.cond_dim, generator=torch.Generator().manual_seed(0)), dim=1)
    seed = 0

    def once() -> int:
        nonlocal seed
        clips = sum(len(f) for f in uint8_forwards(g, cond, list(range(seed, seed + fb)), device=device))
        seed += fb
        return clips

    once()  # warm-up: allocator, oneDNN / cuDNN kernels
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or clips < 2 * fb:
        clips += once()
    wall = time.perf_counter() - start
    return {"forward_batch": fb, "clips": clips, "seconds": round(wall, 3), "clips_per_s": round(clips / wall, 2)}


def to_mp4(tmp: Path, device: str, clips: int, workers: int | None, ddp: bool = False) -> dict:
    """One `reelgan-generate` run (8 shoppers × clips/8 seeds, mp4) → its manifest timings."""
    out = tmp / f"out-{workers}-{int(ddp)}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "generate.cli", "--checkpoint", str(tmp / "G.safetensors"), "--embedding",
           str(tmp / "shoppers.npy"), "--num", str(max(1, clips // 8)), "--format", "mp4", "--device", device,
           "--no-progress", "--outdir", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if ddp:
        cmd += ["--devices", "2", "--strategy", "ddp"]
        env["OMP_NUM_THREADS"] = "1"                         # 2 processes share the cores
    if workers is not None:
        cmd += ["--encode-workers", str(workers)]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    process_s = time.perf_counter() - t0
    run = json.loads((out / "manifest.json").read_text())["runs"][-1]
    t = run["timings"]
    return {"processes": 2 if ddp else 1, "encode_workers": run["encode_workers"], "clips": run["clips"],
            "forward_batch": run["forward_batch"], "clips_per_s": round(run["clips"] / t["total_s"], 2),
            "total_s": t["total_s"], "process_s": round(process_s, 2), "generate_s": t["generate_s"],
            "write_s": t["write_s"], "encode_s": t["encode_s"], "sync_s": t["sync_s"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds of model-only forwards per size")
    p.add_argument("--clips", default="demo=256,128=24", help="clips per mp4 run, per size")
    p.add_argument("--workers", default="0,1,2", help="--encode-workers values to run the CLI with")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "demo-cpu.yaml")
    args = p.parse_args()
    load_before = os.getloadavg()
    kw, shapes, source = sizes(args.config)
    clips = {k: int(v) for k, v in (item.split("=") for item in args.clips.split(","))}
    rows = []
    for name, (t, h, w) in shapes.items():
        torch.manual_seed(0)
        g = VideoGenerator(**kw, frames=t, height=h, width=w).eval().requires_grad_(False)
        row = {"size": name, "thw": [t, h, w], "parameters": int(sum(x.numel() for x in g.parameters())),
               "model_only": model_only(g.to(args.device), args.device, args.seconds), "mp4": []}
        with tempfile.TemporaryDirectory(prefix="reelgan-bench-generate-") as tmp:
            tmp = Path(tmp)
            save_generator(g.cpu(), tmp / "G.safetensors")
            shoppers = np.random.default_rng(0).normal(size=(8, g.cond_dim)).astype(np.float32)
            np.save(tmp / "shoppers.npy", shoppers / np.linalg.norm(shoppers, axis=1, keepdims=True))
            for workers in [int(x) for x in args.workers.split(",")]:
                row["mp4"].append(to_mp4(tmp, args.device, clips[name], workers))
            if name == "demo" and args.device == "cpu":
                row["mp4"].append(to_mp4(tmp, args.device, clips[name], None, ddp=True))
        rows.append(row)
    result = {"bench": "bench_generate", "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "device": args.device, "generator_source": source,
              "what": "clips/s: model-only (uint8 on the device, one copy per forward) and to mp4 files through the "
                      "CLI with 0/1/2 encoder processes; to-mp4 clips/s = clips / manifest total_s",
              "rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads(),
              **machine_block(load_before)}
    print(f"{'size':>5} {'T×H×W':>10} {'what':>16} {'fwd':>4} {'clips':>5} {'clips/s':>8} {'gen s':>6} "
          f"{'write s':>7} {'enc s':>6} {'total s':>7} {'proc s':>6}")
    for r in rows:
        thw = "×".join(map(str, r["thw"]))
        m = r["model_only"]
        print(f"{r['size']:>5} {thw:>10} {'model only':>16} {m['forward_batch']:>4} {m['clips']:>5} "
              f"{m['clips_per_s']:>8.1f}")
        for x in r["mp4"]:
            what = f"mp4 {x['processes']}p {x['encode_workers']}w"
            print(f"{r['size']:>5} {thw:>10} {what:>16} {x['forward_batch']:>4} {x['clips']:>5} {x['clips_per_s']:>8.1f} "
                  f"{x['generate_s']:>6.2f} {x['write_s']:>7.2f} {x['encode_s']:>6.2f} {x['total_s']:>7.2f} "
                  f"{x['process_s']:>6.1f}")
    return save(result, ROOT / "bench" / "results" / "bench_generate.json")


if __name__ == "__main__":
    sys.exit(main())
