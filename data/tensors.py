"""The one place that converts video between the edge layout and the model layout.

Edges (decode, encode, metrics input): uint8, (T, H, W, C) for one clip or (B, T, C, H, W) for a batch.
Models: float, (B, T, C, H, W), in [-1, 1].
"""
from __future__ import annotations

import numpy as np
import torch


def clip_to_model(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, C) → float (T, C, H, W) in [-1, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 (T, H, W, C) frames, got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def model_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """float (..., C, H, W) in [-1, 1] → uint8 of the same layout (rounded, clamped)."""
    return video.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def uint8_to_model(video: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, H, W) → float in [-1, 1], same layout."""
    if video.dtype != torch.uint8:
        raise ValueError(f"expected uint8 video, got {video.dtype}")
    return video.float().div(127.5).sub(1.0)


def model_to_clip(video: torch.Tensor) -> np.ndarray:
    """float (T, C, H, W) in [-1, 1] → uint8 numpy (T, H, W, C), ready to encode."""
    if video.ndim != 4:
        raise ValueError(f"expected one clip (T, C, H, W), got {tuple(video.shape)}")
    return model_to_uint8(video).permute(0, 2, 3, 1).contiguous().cpu().numpy()
