"""What the `reelgan-eval` subcommands share: common arguments, the provenance block, JSON output.

A leaf: it imports no evaluation room, so every room's cli.py can use it. Default places inside the dataset folder
(derived artefacts, like embeddings/) live with what writes them:
    DATASET/evaluation/domain.safetensors       evaluation.features.domain_train.domain_path (`reelgan-eval domain`)
    DATASET/evaluation/engagement.safetensors   evaluation.personalisation.engagement.engagement_path
    DATASET/evaluation/stats/                   cached real-side feature statistics (evaluation.metrics)
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from data.io import write_json

console = Console(stderr=True)


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
    p.add_argument("--domain", type=Path, help="domain classifier file (default DATASET/evaluation/domain.safetensors; "
                                               "trained there first if missing)")


def made_by(args, **fields) -> dict:
    """The provenance block every result JSON starts with."""
    return {"made_by": f"reelgan-eval {args.command}", "command": " ".join(["reelgan-eval", *sys.argv[1:]]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
            "torch": torch.__version__, **fields}


def emit(result: dict, out: Path | None) -> None:
    """Print the JSON to stdout and write it to `out` (atomically) when given."""
    if out is not None:
        write_json(out, result)
        console.print(f"[green]wrote {out}")
    print(json.dumps(result, indent=2, default=str))
