"""Resize kernels shared by the feature networks (their choice is part of the pinned protocol)."""
from __future__ import annotations

import torch


def _tf1_axis(n_in: int, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.arange(n_out, dtype=torch.float32, device=device) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = src.floor().long()
    hi = (lo + 1).clamp_max(n_in - 1)
    return lo, hi, src - lo.float()


def resize_tf1_bilinear(x: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """TF1.x `tf.image.resize_bilinear(align_corners=False)` (no half-pixel offset: source = dst · in/out).

    x: float (..., H, W) → (..., height, width). Interpolates along W, then along H, in float32 like the TF kernel.
    Used by TF FID (Inception, via torch-fidelity/torchmetrics) and the original FVD (I3D).
    """
    width = height if width is None else width
    ylo, yhi, dy = _tf1_axis(x.shape[-2], height, x.device)
    xlo, xhi, dx = _tf1_axis(x.shape[-1], width, x.device)
    top, bottom = x[..., ylo, :], x[..., yhi, :]
    top = top[..., xlo] + (top[..., xhi] - top[..., xlo]) * dx
    bottom = bottom[..., xlo] + (bottom[..., xhi] - bottom[..., xlo]) * dx
    return top + (bottom - top) * dy[:, None]
