"""Does the tryon-128-gpu recipe saturate G? Its mapping, learning rates, Adam betas, ToRGB and precision, trained
through the real CLI with every guard on, probed every 25 batches for G's pre-tanh seed diversity and the share of
saturated output pixels (bench/_stability_probe.py).

On a CPU it runs smaller (64×64, batch 4, a 4-frame training window, the config's widths): the recipe's parts that
decide saturation are kept, the cost is not. On a GPU, the config as shipped (128×128, batch 32, whole clips).
Variants: the config as it is, and with the listed overrides. Prints a table and writes JSON.

    python bench/bench_stability.py [--batches 300] [--runs 1] [--variant shipped] [--variant mapping01]
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

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _results import machine_block, save  # noqa: E402
from bench_gpu import CUDA, PY, env, make_world  # noqa: E402

VARIANTS = {"shipped": {}, "mapping01": {"mapping_lr_mul": 0.01}, "mapping1": {"mapping_lr_mul": 1.0},
            "mapping1-beta09": {"mapping_lr_mul": 1.0, "betas_g": [0.9, 0.99], "betas_d": [0.9, 0.99]},
            "tanh": {"rgb_output": "tanh"}, "linear": {"rgb_output": "linear"},
            "rgb-demod": {"rgb_demodulate": True}, "rgb-demod-linear": {"rgb_demodulate": True, "rgb_output": "linear"},
            "no-aux": {"contrastive_weight": 0.0, "attribute_weight": 0.0}, "no-attr": {"attribute_weight": 0.0},
            "contrastive05": {"contrastive_weight": 0.5}, "tau05": {"contrastive_temperature": 0.5},
            "no-contrastive": {"contrastive_weight": 0.0},
            "no-contrastive-lr002": {"contrastive_weight": 0.0, "lr_g": 0.002, "lr_d": 0.002},
            "no-contrastive-gamma10": {"contrastive_weight": 0.0, "r1_gamma": 10.0}}


def run(variant: str, seed: int, world: Path, tmp: Path, args) -> dict:
    cfg = yaml.safe_load((ROOT / "configs" / "tryon-128-gpu.yaml").read_text())
    out = tmp / f"{variant}-{seed}"
    t = cfg["trainer"]
    t.update(default_root_dir=str(out), max_steps=2 * args.batches, logger=False, enable_checkpointing=False)
    t["callbacks"] = [c for c in t["callbacks"] if not c["class_path"].endswith(("RunCheckpoint", "SampleGrid"))]
    t["callbacks"].append({"class_path": "_stability_probe.SaturationProbe"})
    cfg["seed_everything"] = seed
    cfg["model"].update(seed=seed, **VARIANTS[variant])
    cfg["data"].update(root=str(world))
    if not CUDA:
        t["accelerator"] = "cpu"
        cfg["data"].update(height=args.size, width=args.size, batch_size=args.batch, num_workers=0)
        cfg["model"]["train_window"] = 4
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    probe = out / "probe.json"
    start = time.time()
    proc = subprocess.run([PY, "-m", "train.cli", "fit", "-c", str(out / "config.yaml")], cwd=ROOT, text=True,
                          capture_output=True, env=env({"BENCH_PROBE_OUT": str(probe)}))
    rows = json.loads(probe.read_text()) if probe.exists() else []
    stopped = next((line for line in proc.stderr.splitlines() if "diverged" in line or "non-finite" in line), None)
    return {"variant": variant, "seed": seed, "exit": proc.returncode, "guard_stop": stopped, "seconds": time.time() - start,
            "batches_probed": [r["batch"] for r in rows],
            "min_diversity_pre_tanh": min((r["diversity_pre_tanh"] for r in rows), default=None),
            "max_saturated": max((r["saturated"] for r in rows), default=None), "probe": rows,
            "error": proc.stderr[-1500:] if proc.returncode and not stopped else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2000 if CUDA else 300)
    parser.add_argument("--runs", type=int, default=3 if CUDA else 1, help="seeds per variant")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="default: shipped")
    parser.add_argument("--size", type=int, default=64, help="CPU only")
    parser.add_argument("--batch", type=int, default=4, help="CPU only")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_stability.json"))
    args = parser.parse_args()
    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp), 128 if CUDA else args.size, 256 if CUDA else 64)
        for variant in args.variant or ["shipped"]:
            for seed in range(args.runs):
                r = run(variant, seed, world, Path(tmp), args)
                results.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "probe"}), flush=True)
    print(f"\n{'variant':10s} {'seed':>4s} {'batches':>8s} {'min diversity':>14s} {'max saturated':>14s} guard stop")
    for r in results:
        print(f"{r['variant']:10s} {r['seed']:4d} {(r['batches_probed'] or [0])[-1]:8d} "
              f"{r['min_diversity_pre_tanh'] or float('nan'):14.4f} {r['max_saturated'] or float('nan'):14.3f} "
              f"{r['guard_stop'] or 'none'}")
    result = {"device": torch.cuda.get_device_name() if CUDA else "cpu", "batches": args.batches,
              "guard_min_diversity": 1e-3, "runs": results, **machine_block(load)}
    return save(result, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
