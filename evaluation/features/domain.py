"""The `domain` feature network: a small video classifier trained on a dataset's own real clips.

It predicts the product attributes of clips.csv (synthetic world: category, colour, pattern), one head each.
- Its penultimate features (B, feature_dim) give `fvd[domain]`: a Fréchet distance in a space that knows
  what matters in *this* catalogue, trained in a minute on the CPU.
- Its predictions give attribute accuracy (and so preference alignment and the classification-accuracy score).
- Its spatiotemporal feature map (B, T, h, w, C) is what the engagement model attends over.

Network: a per-frame 2D conv encoder (shared over time, stride-2 convs down to a 4×4 grid), one residual temporal
conv (k=3 over T), then pooling of [mean, max, mean |Δt|] (appearance, small parts, motion energy) → penultimate → heads.
Training, saving and loading live in `domain_train.py`; this file is the network and its registry entry.
"""
from __future__ import annotations

import math
from dataclasses import asdict
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.features import register_feature_extractor
from evaluation.features.artifacts import load_model_file, save_model_file, tensors_sha256
from evaluation.features.base import FeatureExtractor

FORMAT = "reelgan-domain/1"
# How clips of another size reach the network (recorded in every metrics JSON).
RESIZE_MODE = "space: bilinear antialias (align_corners=False); time: evenly spaced frame indices"


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class DomainClassifier(nn.Module):
    """Attribute classifier for clips. Input `video: (B, T, C, H, W) in [-1, 1]` at (frames, height, width)."""

    def __init__(
        self,
        heads: dict[str, list[str]],  # attribute name → vocabulary (class order)
        frames: int = 8,              # clip length the network reads
        height: int = 32,             # frame height it reads
        width: int = 32,              # frame width it reads
        channels: int = 32,           # width of the first conv; doubles once, then stays
        feature_dim: int = 128,       # penultimate width: the fvd[domain] feature dimension
    ):
        super().__init__()
        if not heads or any(len(v) < 2 for v in heads.values()):
            raise ValueError(f"every head needs a vocabulary of at least 2 values, got {heads}")
        if min(height, width) < 8 or height % 4 or width % 4:
            raise ValueError(f"height and width must be multiples of 4 and ≥ 8, got {height}×{width}")
        self.config = {"heads": {k: list(v) for k, v in heads.items()}, "frames": frames, "height": height,
                       "width": width, "channels": channels, "feature_dim": feature_dim}
        self.frames, self.height, self.width = frames, height, width
        # Stride-2 convs from the first layer on: the network is cheap enough to train in a test.
        downs = max(1, int(math.log2(min(height, width) // 4)))  # down to a ≈4×4 grid
        layers, c = [], 3
        for i in range(downs):
            c_out = channels * min(2 ** i, 2)
            layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), _norm(c_out), nn.SiLU()]
            c = c_out
        self.frame_encoder = nn.Sequential(*layers)
        self.token_dim = c
        self.temporal = nn.Conv3d(c, c, (3, 1, 1), padding=(1, 0, 0))
        self.temporal_norm = _norm(c)
        self.project = nn.Sequential(nn.Linear(3 * c, feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(feature_dim, len(v)) for k, v in heads.items()})
        self.grid = (height >> downs, width >> downs)

    @property
    def vocab(self) -> dict[str, list[str]]:
        return self.config["heads"]

    def feature_map(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, C, H, W) in [-1, 1] → spatiotemporal map (B, T, h, w, token_dim)."""
        b, t = video.shape[:2]
        x = self.frame_encoder(video.reshape(b * t, *video.shape[2:]))  # (B·T, c, h, w)
        x = x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, c, T, h, w)
        x = x + F.silu(self.temporal_norm(self.temporal(x)))  # residual: mixes neighbouring frames
        return x.permute(0, 2, 3, 4, 1)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, T, h, w, c) → penultimate features (B, feature_dim)."""
        mean = fmap.mean(dim=(1, 2, 3))
        peak = fmap.amax(dim=(1, 2, 3))  # a garment is a few pixels wide: its strongest response matters
        motion = (fmap[:, 1:] - fmap[:, :-1]).abs().mean(dim=(1, 2, 3)) if fmap.shape[1] > 1 else torch.zeros_like(mean)
        return self.project(torch.cat([mean, peak, motion], dim=1))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """video (B, T, C, H, W) in [-1, 1] → (features (B, feature_dim), {attribute: logits (B, V)})."""
        feats = self.pool(self.feature_map(video))
        return feats, {k: head(feats) for k, head in self.heads.items()}

    def prepare(self, video: torch.Tensor) -> torch.Tensor:
        """Any clip batch → what the network reads: float (B, frames, 3, height, width) in [-1, 1].

        Accepts uint8 (B, T, C, H, W) (metrics input) or float in [-1, 1] (model output), any T, H, W.
        """
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"expected video (B, T, 3, H, W), got {tuple(video.shape)}")
        x = video.float().div(127.5).sub(1.0) if video.dtype == torch.uint8 else video.float()
        dev = next(self.parameters()).device
        x = x.to(dev)
        b, t, c, h, w = x.shape
        if t != self.frames:
            idx = torch.linspace(0, t - 1, self.frames).round().long().to(dev)
            x = x.index_select(1, idx)
        if (h, w) != (self.height, self.width):
            x = F.interpolate(x.reshape(-1, c, h, w), size=(self.height, self.width), mode="bilinear",
                              align_corners=False, antialias=True).reshape(b, self.frames, c, self.height, self.width)
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def predict(self, video: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
        """Any clip batch (see `prepare`) → {attribute: probabilities (B, V)} (float32, CPU)."""
        outs: dict[str, list[torch.Tensor]] = {k: [] for k in self.heads}
        for i in range(0, video.shape[0], batch_size):
            _, logits = self(self.prepare(video[i : i + batch_size]))
            for k, v in logits.items():
                outs[k].append(v.softmax(-1).float().cpu())
        return {k: torch.cat(v) for k, v in outs.items()}


class DomainFeatures(FeatureExtractor):
    """Registry entry `domain`: penultimate features of a trained DomainClassifier, one row per clip.

    get_feature_extractor("domain", weights=PATH) loads the file written by `reelgan-eval domain`
    (`evaluation.features.domain_train.train_domain_classifier`); `model=` takes one already in memory.
    Metrics are named `fvd[domain]`; the classifier is per dataset, so its sha256 is what pins the number.
    """

    name = "domain"
    tag = "domain"
    kind = "video"

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 64,
                 model: DomainClassifier | None = None):
        super().__init__(device=device, batch_size=batch_size)
        if model is None:
            if weights is None:
                raise ValueError("the `domain` feature network is trained per dataset: pass weights=PATH "
                                 "(train one with `reelgan-eval domain --dataset DATASET`)")
            model, info = load_domain_classifier(weights, device=device)
            self.weights_path = info["path"]
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.weights_sha256 = tensors_sha256(self.model.state_dict())
        self.dim = int(model.config["feature_dim"])
        self.resize_mode = RESIZE_MODE
        self.standard = True  # no "official" weights exist: the recorded sha256 identifies the network

    def _clips(self, video: torch.Tensor) -> torch.Tensor:  # uint8 (B, T, 3, H, W) → (B, feature_dim)
        feats, _ = self.model(self.model.prepare(video))
        return feats

    def protocol(self) -> dict:
        return {**super().protocol(), "frames": self.model.frames, "height": self.model.height,
                "width": self.model.width}


def save_domain_classifier(model: DomainClassifier, path: str | os.PathLike, report=None,
                           dataset: str | None = None) -> str:
    """Atomic safetensors write of weights + config (+ training report); returns the weights' sha256."""
    extra = {"dataset": dataset, "report": asdict(report) if report is not None else None}
    return save_model_file(path, FORMAT, model.state_dict(), model.config, extra)


def load_domain_classifier(path: str | os.PathLike, device: str = "cpu") -> tuple[DomainClassifier, dict]:
    """→ (model in eval mode, info {"sha256", "config", "report", "dataset", "path"})."""
    tensors, config, extra, digest = load_model_file(path, FORMAT)
    model = DomainClassifier(**config)
    model.load_state_dict(tensors, strict=True)
    info = {"sha256": digest, "config": config, "report": extra.get("report"), "dataset": extra.get("dataset"),
            "path": str(Path(path))}
    return model.to(device).eval(), info


register_feature_extractor("domain", DomainFeatures)
