"""`reelgan-eval domain`: train the domain classifier → DATASET/evaluation/domain.safetensors (a thin shell)."""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from evaluation import cli_common as common
from evaluation.features.domain import load_domain_classifier
from evaluation.features.domain_train import classifier_trust, DomainTrainConfig, domain_path, train_domain_classifier


def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser("domain", formatter_class=fmt, help="train the domain classifier (fvd[domain], attributes)",
                              description="Train the small attribute classifier on the dataset's real clips (split "
                                          "by product) and save it with its config, sha256 and val accuracy.")
    common.add_dataset(p)
    p.add_argument("--model-out", type=Path, help="classifier file (default DATASET/evaluation/domain.safetensors)")
    p.add_argument("--frames", type=int, default=8, help="clip length the classifier reads")
    p.add_argument("--size", type=int, default=32, help="frame height = width it reads")
    p.add_argument("--steps", type=int, default=600, help="optimiser steps (batches of 16 clips)")
    common.add_output(p, threads=1)
    p.set_defaults(func=run_domain)


def run_domain(args) -> int:
    out = args.model_out or domain_path(args.dataset)
    cfg = DomainTrainConfig(frames=args.frames, height=args.size, width=args.size, steps=args.steps, seed=args.seed)
    _, report = train_domain_classifier(args.dataset, cfg, out=out, progress=not args.no_progress)
    _, info = load_domain_classifier(out)
    result = common.made_by(args, dataset=str(args.dataset), model=str(out), domain_sha256=info["sha256"],
                            metrics={f"domain_val_accuracy[{k}]": v for k, v in report.val_accuracy.items()},
                            report=asdict(report), domain_classifier=classifier_trust(asdict(report)))
    common.emit(result, args.out)
    if result["domain_classifier"]["untrusted"]:
        common.console.print(f"[yellow]warning: the domain classifier is {result['domain_classifier']['note']}")
    return 0
