"""Train the domain classifier (the network, and saving and loading it, are in domain.py).

Training uses the dataset's real clips only, split by product (clips of one product never straddle train and
val). Augmentations keep the attributes: horizontal flip, time reversal, and a mild blur (generated clips are
softer than real ones, and the classifier must still read them).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from data.io import track
from evaluation.features.domain import DomainClassifier, save_domain_classifier
from evaluation.features.realclips import RealClips, load_real_clips, split_by_product


@dataclass
class DomainTrainConfig:
    frames: int = 8           # clip length the classifier reads
    height: int = 32          # frame size it reads
    width: int = 32
    channels: int = 32        # first conv width
    feature_dim: int = 128    # fvd[domain] feature dimension
    steps: int = 600          # optimiser steps (≈ 9,600 clip presentations: enough at 100 or 10,000 clips)
    batch_size: int = 16
    lr: float = 3e-3          # AdamW, cosine decay to 0
    weight_decay: float = 1e-4
    val_fraction: float = 0.2 # share of products held out to measure accuracy
    blur_p: float = 0.2       # share of training clips softened (generated clips are softer than real ones)
    texture_scramble: bool = True  # the texture branch trains on colour-scrambled clips (see _scramble)
    seed: int = 0
    attributes: list[str] | None = None  # default: every attribute column of clips.csv


@dataclass
class DomainTrainReport:
    clips_train: int
    clips_val: int
    val_accuracy: dict[str, float]    # per attribute, on held-out products
    train_accuracy: dict[str, float]
    chance: dict[str, float]          # majority-class accuracy on val (what a constant guess gets)
    seconds: float
    config: dict = field(default_factory=dict)
    skipped_clips: int = 0            # real clips that did not decode (left out, as training does)


def _augment(x: torch.Tensor, gen: torch.Generator, blur_p: float) -> torch.Tensor:
    """x (B, T, C, H, W) in [-1, 1] → same, with per-clip flip / time reversal / blur."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
    rev = torch.rand(b, generator=gen) < 0.5
    x = torch.where(rev[:, None, None, None, None], x.flip(1), x)
    blur = torch.rand(b, generator=gen) < blur_p
    if blur.any():
        t, c, h, w = x.shape[1:]
        small = F.interpolate(x.reshape(-1, c, h, w), scale_factor=0.5, mode="bilinear", align_corners=False,
                              antialias=True)
        soft = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).reshape(x.shape)
        x = torch.where(blur[:, None, None, None, None], soft, x)
    return x


def _scramble(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x (B, T, C, H, W) in [-1, 1] → same, each clip's colour channels permuted and scaled by random gains in
    [0.5, 1.5]: a garment's colour (and with it its product) no longer shows, its texture does."""
    b, t, c = x.shape[:3]
    perm = torch.stack([torch.randperm(c, generator=gen) for _ in range(b)])          # (B, C)
    gain = 0.5 + torch.rand(b, c, generator=gen)                                      # (B, C)
    y = torch.gather(x, 2, perm[:, None, :, None, None].expand(-1, t, -1, *x.shape[3:]))
    return ((y + 1) * gain[:, None, :, None, None] - 1).clamp(-1, 1)


@torch.no_grad()
def attribute_accuracy(model: DomainClassifier, video: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy per attribute of `model` on clips `video` (uint8 or float, any size) with integer labels."""
    if video.shape[0] == 0:
        raise ValueError("attribute_accuracy needs at least one clip")
    model.eval()
    probs = model.predict(video)
    return {k: float((probs[k].argmax(1) == labels[k].cpu()).float().mean()) for k in labels}


def train_domain_classifier(root: str | os.PathLike | None = None, config: DomainTrainConfig | None = None,
                            out: str | os.PathLike | None = None, clips: RealClips | None = None,
                            progress: bool = False) -> tuple[DomainClassifier, DomainTrainReport]:
    """Train the classifier on DATASET's real clips; optionally save it to `out` (.safetensors).

    Pass `clips` (already decoded at the config's size) to skip decoding. Returns (model in eval mode, report).
    """
    cfg = config or DomainTrainConfig()
    t0 = time.perf_counter()
    if clips is None:
        if root is None:
            raise ValueError("train_domain_classifier needs a dataset root or decoded clips")
        clips = load_real_clips(root, cfg.frames, cfg.height, cfg.width, cfg.attributes, progress=progress)
    with torch.random.fork_rng():  # seeded parameter init without touching the caller's RNG state
        torch.manual_seed(cfg.seed)
        model = DomainClassifier(clips.vocab, cfg.frames, cfg.height, cfg.width, cfg.channels, cfg.feature_dim)
    labels = clips.labels()
    train_idx, val_idx = split_by_product(clips.product_ids, cfg.val_fraction, cfg.seed)
    video = clips.video  # uint8 (N, T, C, H, W): made float one batch at a time (a quarter of the memory)
    fit_classifier(model, video, labels, train_idx, cfg, progress)
    val_labels = {k: v[val_idx] for k, v in labels.items()}
    report = DomainTrainReport(
        clips_train=len(train_idx), clips_val=len(val_idx),
        val_accuracy=attribute_accuracy(model, video[val_idx], val_labels),
        train_accuracy=attribute_accuracy(model, video[train_idx], {k: v[train_idx] for k, v in labels.items()}),
        chance={k: float(torch.bincount(v, minlength=len(clips.vocab[k])).max() / len(v)) for k, v in val_labels.items()},
        seconds=time.perf_counter() - t0, config=asdict(cfg), skipped_clips=len(clips.skipped or []),
    )
    if out is not None:
        save_domain_classifier(model, out, report, dataset=str(clips.root))
    return model, report


def fit_classifier(model: DomainClassifier, video: torch.Tensor, labels: dict[str, torch.Tensor], train_idx,
                   cfg: DomainTrainConfig, progress: bool = False, what: str = "train domain classifier") -> None:
    """The training recipe, on clips `video[train_idx]` (uint8) with integer labels per attribute: real clips for
    the domain classifier, generated ones for the classification-accuracy score. Leaves the model in eval mode."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    for idx in track(epoch_batches(torch.as_tensor(train_idx), cfg.batch_size, cfg.steps, gen), what, progress,
                     total=cfg.steps):
        model.train()
        x = _augment(model.prepare(video[idx]), gen, cfg.blur_p)
        _, logits = model(x, _scramble(x, gen) if cfg.texture_scramble and model.texture is not None else None)
        loss = sum(F.cross_entropy(logits[k], labels[k][idx]) for k in logits) / len(logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def domain_path(dataset: str | os.PathLike) -> Path:
    """Where `reelgan-eval domain` keeps a dataset's classifier: its cache folder (never inside the dataset)."""
    from evaluation.cli_common import artefact_dir

    return artefact_dir(dataset) / "domain.safetensors"


def ensure_domain(dataset: str | os.PathLike, path: str | os.PathLike | None, progress: bool = True) -> Path:
    """The domain classifier file: the given one, or the dataset's default, trained now if it does not exist."""
    if path is not None:
        return Path(path)
    path = domain_path(dataset)
    if not path.is_file():
        from rich.console import Console

        Console(stderr=True).print(f"[yellow]no domain classifier at {path}: training one on {dataset}'s real clips "
                                   "(`reelgan-eval domain` does this explicitly)")
        train_domain_classifier(dataset, out=path, progress=progress)
    return path


def epoch_batches(items: torch.Tensor, batch_size: int, steps: int, gen: torch.Generator):
    """`steps` batches of `items`, reshuffled every pass (the last batch of a pass may be short)."""
    done = 0
    while done < steps:
        order = items[torch.randperm(len(items), generator=gen)]
        for i in range(0, len(order), batch_size):
            yield order[i : i + batch_size]
            done += 1
            if done >= steps:
                return


def classifier_trust(report: dict | None, attributes=None) -> dict:
    """How far to trust what the domain classifier says, per attribute: validation accuracy (held-out products)
    against chance (the majority class of the same validation clips). Every metric and gate that reads the
    classifier carries this block. `better_than_chance` is False at or below chance: on a small catalogue the
    classifier can score below chance and its features then say nothing about the attribute.

    → {"attributes": {a: {val_accuracy, chance, better_than_chance}}, "val_clips", "untrusted": [a...], "note"};
    with no report (an older file), every attribute is untrusted.
    """
    if not report or not report.get("val_accuracy"):
        names = list(attributes or [])
        return {"attributes": {}, "val_clips": None, "untrusted": names or ["(all)"],
                "note": "validation accuracy unknown (the file has no training report): retrain it with "
                        "`reelgan-eval domain` / `reelgan-eval engagement`"}
    names = list(attributes) if attributes is not None else list(report["val_accuracy"])
    table, untrusted = {}, []
    for a in names:
        acc, chance = report["val_accuracy"].get(a), report.get("chance", {}).get(a)
        ok = acc is not None and chance is not None and acc > chance
        table[a] = {"val_accuracy": acc, "chance": chance, "better_than_chance": ok}
        if not ok:
            untrusted.append(a)
    note = ("better than chance on every attribute" if not untrusted else
            "no better than chance on " + ", ".join(f"{a} ({_pct(table.get(a, {}).get('val_accuracy'))} vs chance "
                                                    f"{_pct(table.get(a, {}).get('chance'))})" for a in untrusted)
            + ": what it says about these is noise; more clips per attribute value are needed")
    return {"attributes": table, "val_clips": report.get("clips_val"), "untrusted": untrusted, "note": note}


def _pct(x) -> str:
    return "?" if x is None else f"{x:.2f}"
