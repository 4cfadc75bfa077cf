"""How generated clips look against real ones, from pixels: sharpness, motion, and how much a shopper's seeds differ.

All on uint8 (N, T, C, H, W) clips at one size, accumulated in float64, on the 0-255 scale:
- sharpness: mean |Laplacian| of the luma (4-neighbour, interior pixels). Soft frames score low.
- motion: mean |frame difference| of the luma between consecutive frames (compare clips sampled at the same
  stride: real clips at the generator's training stride).
- seed diversity: for each shopper, the mean absolute pixel difference between every pair of their K clips,
  averaged over shoppers. Truncation that fixes the attributes must leave this well above zero.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

_LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)


def _luma(video: torch.Tensor) -> torch.Tensor:
    if video.dtype != torch.uint8 or video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"expected uint8 (N, T, 3, H, W) clips, got {video.dtype} {tuple(video.shape)}")
    return torch.einsum("ntchw,c->nthw", video.double(), _LUMA)


def sharpness(video: torch.Tensor) -> float:
    """Mean |Laplacian| of the luma over interior pixels of every frame (float64)."""
    y = _luma(video)
    lap = 4 * y[..., 1:-1, 1:-1] - y[..., :-2, 1:-1] - y[..., 2:, 1:-1] - y[..., 1:-1, :-2] - y[..., 1:-1, 2:]
    return float(lap.abs().mean())


def motion(video: torch.Tensor) -> float:
    """Mean |luma difference| between consecutive frames (float64); needs at least 2 frames."""
    if video.shape[1] < 2:
        raise ValueError(f"motion needs clips of at least 2 frames, got {video.shape[1]}")
    y = _luma(video)
    return float((y[:, 1:] - y[:, :-1]).abs().mean())


def seed_diversity(video: torch.Tensor, k: int) -> float | None:
    """video (U·K, T, C, H, W): user u's clips are rows u·K … u·K+K-1 → mean over users of the mean absolute pixel
    difference between each pair of their clips (float64); None when K < 2."""
    if k < 2:
        return None
    if len(video) % k:
        raise ValueError(f"{len(video)} clips are not {k} clips per user")
    x = video.double().reshape(len(video) // k, k, -1)
    per_user = [np.mean([float((x[u, i] - x[u, j]).abs().mean()) for i, j in itertools.combinations(range(k), 2)])
                for u in range(len(x))]
    return float(np.mean(per_user))


def quality_against_real(generated: torch.Tensor, real: torch.Tensor, k: int) -> dict:
    """generated (U·K, T, C, H, W) and real clips of the same T, H, W (real at the training stride) → JSON."""
    if generated.shape[1:] != real.shape[1:]:
        raise ValueError(f"generated {tuple(generated.shape[1:])} and real {tuple(real.shape[1:])} clips must have "
                         "the same frames and size: decode the real clips at the generator's size")
    out = {}
    for name, fn in (("sharpness", sharpness), ("motion", motion)):
        g, r = fn(generated), fn(real)
        out[name] = {"generated": g, "real": r, "ratio": g / r if r > 0 else None}
    out["seed_diversity"] = seed_diversity(generated, k)
    out["definitions"] = {"sharpness": "mean |4-neighbour Laplacian| of luma (0-255)",
                          "motion": "mean |luma difference| of consecutive frames (0-255)",
                          "seed_diversity": "per shopper, mean |pixel difference| (0-255) over pairs of their "
                                            "clips; averaged over shoppers"}
    out["real_clips"], out["generated_clips"] = int(len(real)), int(len(generated))
    return out
