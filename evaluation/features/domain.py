"""The `domain` feature network: a small video classifier trained on a dataset's own real clips.

It predicts the product attributes of clips.csv (synthetic world: category, colour, pattern), one head each.
- Its penultimate features (B, feature_dim) give `fvd[domain]`: a Fréchet distance in a space that knows
  what matters in *this* catalogue, trained in a minute on the CPU.
- Its predictions give attribute accuracy (and so preference alignment and the classification-accuracy score).
- Its spatiotemporal feature map (B, T, h, w, C) is what the engagement model attends over.

Network: a per-frame 2D conv encoder (shared over time, stride-2 convs down to a 4×4 grid), one residual temporal
conv (k=3 over T), then pooling of [mean, max, mean |Δt|] (appearance, small parts, motion energy) → penultimate → heads.
Texture heads (`texture_heads`, default the `pattern` attribute) read a second, small branch instead: each colour
channel's high-pass (the pixel minus its 3×3 mean) of 4 frames → three small convs (the first at full resolution) → mean and max over
time and space. The main trunk cannot be used for pattern: on a catalogue where each product is one (category,
colour, pattern) combination, it learns the pattern of each (category, colour) pair of the training products, which is
always wrong on held-out products (0.13 against a constant guess's 0.29 on the demo world); the branch sees only
local texture, with no layout and little colour (and trains on colour-scrambled copies: domain_train._scramble).
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
        texture_heads: tuple[str, ...] | list[str] | None = None,  # heads read by the texture branch (None: "pattern")
        texture_channels: int = 16,   # width of the texture branch's first conv (then doubles)
        texture_frames: int = 4,      # frames the texture branch reads (evenly spaced; a pattern does not move)
    ):
        super().__init__()
        if not heads or any(len(v) < 2 for v in heads.values()):
            raise ValueError(f"every head needs a vocabulary of at least 2 values, got {heads}")
        if min(height, width) < 8 or height % 4 or width % 4:
            raise ValueError(f"height and width must be multiples of 4 and ≥ 8, got {height}×{width}")
        texture_heads = [h for h in (["pattern"] if texture_heads is None else texture_heads) if h in heads]
        self.config = {"heads": {k: list(v) for k, v in heads.items()}, "frames": frames, "height": height,
                       "width": width, "channels": channels, "feature_dim": feature_dim,
                       "texture_heads": texture_heads, "texture_channels": texture_channels,
                       "texture_frames": texture_frames}
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
        tc = texture_channels
        self.texture = nn.Sequential(nn.Conv2d(3, tc, 3, padding=1), _norm(tc), nn.SiLU(),
                                     nn.Conv2d(tc, 2 * tc, 3, stride=2, padding=1), _norm(2 * tc), nn.SiLU(),
                                     nn.Conv2d(2 * tc, 2 * tc, 3, padding=1), _norm(2 * tc), nn.SiLU()) \
            if texture_heads else None
        self.texture_frames = min(int(texture_frames), frames)
        self.heads = nn.ModuleDict({k: nn.Linear(4 * tc if k in texture_heads else feature_dim, len(v))
                                    for k, v in heads.items()})
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

    def texture_features(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, C, H, W) in [-1, 1] → (B, 4·texture_channels): pooled local texture of a few frames."""
        b, t = video.shape[:2]
        idx = torch.linspace(0, t - 1, self.texture_frames).round().long().to(video.device)
        x = video.index_select(1, idx).reshape(-1, *video.shape[2:])                  # (B·t', C, H, W)
        high = x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        h = self.texture(4.0 * high)                                                  # (B·t', 2tc, H/2, W/2)
        h = h.reshape(b, -1, *h.shape[1:])
        return torch.cat([h.mean(dim=(1, 3, 4)), h.amax(dim=(1, 3, 4))], dim=1)

    def forward(self, video: torch.Tensor, texture_video: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """video (B, T, C, H, W) in [-1, 1] → (features (B, feature_dim), {attribute: logits (B, V)}).
        texture_video: the same clips as the texture branch is to see them (training passes colour-scrambled
        copies); default `video`."""
        return self.read(self.feature_map(video), video if texture_video is None else texture_video)

    def read(self, fmap: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """feature_map(video) and the clips → (features (B, feature_dim), {attribute: logits (B, V)}): for callers
        that keep the map (the engagement model's tokens)."""
        feats = self.pool(fmap)
        texture = None if self.texture is None else self.texture_features(video)
        return feats, {k: head(texture if k in self.config["texture_heads"] else feats)
                       for k, head in self.heads.items()}

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
    model = domain_from_config(config)
    model.load_state_dict(tensors, strict=True)
    info = {"sha256": digest, "config": config, "report": extra.get("report"), "dataset": extra.get("dataset"),
            "path": str(Path(path))}
    return model.to(device).eval(), info


def domain_from_config(config: dict) -> DomainClassifier:
    """The (untrained) network a saved config describes; a file written before the texture branch has none."""
    return DomainClassifier(**{"texture_heads": [], **config})


register_feature_extractor("domain", DomainFeatures)
