"""What the `reelgan-eval` subcommands share: common arguments, default file places, JSON output, progress bars.

Default places inside the dataset folder (derived artefacts, like embeddings/):
    DATASET/evaluation/domain.safetensors       the domain classifier (`reelgan-eval domain`)
    DATASET/evaluation/engagement.safetensors   the engagement model (`reelgan-eval engagement`)
    DATASET/evaluation/stats/                   cached real-side feature statistics
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


def domain_path(dataset: str | Path) -> Path:
    return Path(dataset) / "evaluation" / "domain.safetensors"


def engagement_path(dataset: str | Path) -> Path:
    return Path(dataset) / "evaluation" / "engagement.safetensors"


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
                   help="torch CPU threads (0 = torch's default). The evaluation networks are small: a second "
                        "thread gains little, and on a busy machine it made training ~9x slower (measured)")


def add_domain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", type=Path, help="domain classifier file (default DATASET/evaluation/domain.safetensors; "
                                               "trained there first if missing)")


def ensure_domain(dataset: Path, path: Path | None, progress: bool = True) -> Path:
    """The domain classifier file: the given one, or the dataset's default, trained now if it does not exist."""
    if path is not None:
        return path
    path = domain_path(dataset)
    if not path.is_file():
        from evaluation.features.domain_train import train_domain_classifier

        console.print(f"[yellow]no domain classifier at {path}: training one on {dataset}'s real clips "
                      "(`reelgan-eval domain` does this explicitly)")
        train_domain_classifier(dataset, out=path, progress=progress)
    return path


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
