"""What the `reelgan-eval` subcommands share: common arguments, the provenance block, JSON output.

A leaf: it imports no evaluation room, so every room's cli.py can use it. What evaluation derives from a dataset
goes to a cache folder, never into the dataset (which may be read-only, shared, or versioned):
    CACHE/domain.safetensors       evaluation.features.domain_train.domain_path (`reelgan-eval domain`)
    CACHE/engagement.safetensors   evaluation.personalisation.engagement.engagement_path
    CACHE/stats/                   cached real-side feature statistics (evaluation.metrics)
CACHE = `artefact_dir(DATASET)`; --domain / --engagement / --model-out / --cache-dir choose other places.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import platform
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from data.io import dumps, file_sha256, write_json

console = Console(stderr=True)


def artefact_dir(dataset: str | Path) -> Path:
    """The cache folder of one dataset: $REELGAN_CACHE (default $XDG_CACHE_HOME/reelgan, i.e. ~/.cache/reelgan)
    /eval/<dataset name>-<12 hex>, the hex over the dataset's absolute path and its clips.csv and interactions.csv
    bytes, so an edited catalogue gets fresh models and statistics instead of stale ones."""
    ds = Path(dataset).resolve()
    base = os.environ.get("REELGAN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "reelgan"
    h = hashlib.sha256(str(ds).encode())
    for name in ("clips.csv", "interactions.csv"):
        if (ds / name).is_file():
            h.update(file_sha256(ds / name).encode())
    return Path(base) / "eval" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', ds.name) or 'dataset'}-{h.hexdigest()[:12]}"


def embeddings_path(dataset: str | Path) -> Path:
    return Path(dataset) / "embeddings" / "preferences.safetensors"


def add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "--data", dest="dataset", type=Path, required=True,
                   help="dataset folder (clips.csv, interactions.csv, embeddings/; see docs/INTERFACES.md)")


def add_checkpoint(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--checkpoint", type=Path, required=required,
                   help="generator: a reelgan-train .ckpt or a `reelgan-generate export` .safetensors")


def add_output(p: argparse.ArgumentParser, threads: int = 0) -> None:
    p.add_argument("--out", type=Path, help="write the JSON result here (atomically), e.g. RUN/eval/align.json; "
                                            "it is always printed to stdout too")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="the one seed: generation seeds and every sampling draw")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    p.add_argument("--threads", type=int, default=threads,
                   help="torch CPU threads (0 = torch's default). The evaluation networks are small: extra threads "
                        "gain little, and they compete with a training run on a shared machine")


def add_devices(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=1,
                   help="processes sharing the work (CPU processes, or one per GPU with --device cuda): Lightning "
                        "Fabric DDP; their float64 feature sums are added through torchmetrics, rank 0 writes")
    p.add_argument("--num-nodes", type=int, default=1, help="machines for --devices (under SLURM: #SBATCH --nodes)")


def launch_devices(args) -> None:
    """--devices N > 1: start N processes (this one becomes rank 0) with a gloo process group: the metric states
    are small float64 CPU tensors, so gloo serves them on GPU nodes too. --device cuda → cuda:<local rank>."""
    if getattr(args, "devices", 1) <= 1 and getattr(args, "num_nodes", 1) <= 1:
        return
    from lightning_fabric import Fabric
    from lightning_fabric.strategies import DDPStrategy

    cuda = str(args.device).startswith("cuda")
    fabric = Fabric(accelerator="cuda" if cuda else "cpu", devices=args.devices, num_nodes=args.num_nodes,
                    strategy=DDPStrategy(process_group_backend="gloo"))
    fabric.launch()
    if cuda:
        args.device = f"cuda:{fabric.local_rank}"


def barrier() -> None:
    """Wait for every process of a --devices run (nothing to wait for in one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def add_domain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", type=Path, help="domain classifier file (default: the dataset's cache folder, "
                                               "see docs/evaluation.md; trained there first if missing)")


def made_by(args, **fields) -> dict:
    """The provenance block every result JSON starts with."""
    return {"made_by": f"reelgan-eval {args.command}", "command": " ".join(["reelgan-eval", *sys.argv[1:]]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
            "torch": torch.__version__, **fields}


def finite_or_null(result: dict) -> dict:
    """Strict JSON: every non-finite float becomes null, and its path is listed under `undefined` with the reason
    (a safety net; metrics that know why they are undefined say so next to the value)."""
    undefined: list[str] = []

    def walk(x, path: str):
        if isinstance(x, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, float) and not math.isfinite(x):
            undefined.append(path)
            return None
        return x

    clean = walk(result, "")
    if undefined:
        clean["undefined"] = {"fields": undefined, "reason": "not a finite number (NaN or infinity): too few "
                              "samples, or a degenerate input; see the metric's own reasons"}
    return clean


def emit(result: dict, out: Path | None) -> None:
    """Print the JSON to stdout and write it to `out` (atomically) when given; strict JSON either way."""
    result = finite_or_null(result)
    if out is not None:
        write_json(out, result)
        console.print(f"[green]wrote {out}")
    print(dumps(result, indent=2))
