"""Framing a clip to the target size: `crop`, `pad` or `resize`, with torchvision.transforms.v2 on video tensors.

- crop:   scale to cover the target keeping the aspect ratio, then centre-crop (loses the edges of a 9:16 clip
          framed to a square).
- pad:    scale to fit inside the target keeping the aspect ratio, then pad with black bars (keeps the whole frame).
- resize: scale straight to the target (keeps the whole frame, stretches it).
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from data.video import cover_size

FITS = ("crop", "pad", "resize")


def fit_size(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[int, int]:
    """Largest size with the source aspect ratio that fits inside (dst_h, dst_w)."""
    scale = min(dst_h / src_h, dst_w / src_w)
    return min(dst_h, max(1, round(src_h * scale))), min(dst_w, max(1, round(src_w * scale)))


def framing_transform(src_hw: tuple[int, int], size: tuple[int, int], fit: str) -> v2.Transform:
    """The v2 transform that frames a (T, C, H, W) video of spatial size `src_hw` to `size` = (H, W)."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    h, w = size
    if fit == "resize":
        return v2.Resize((h, w), antialias=True)
    if fit == "crop":
        return v2.Compose([v2.Resize(cover_size(*src_hw, h, w), antialias=True), v2.CenterCrop((h, w))])
    fh, fw = fit_size(*src_hw, h, w)
    top, left = (h - fh) // 2, (w - fw) // 2
    return v2.Compose([v2.Resize((fh, fw), antialias=True),
                       v2.Pad([left, top, w - fw - left, h - fh - top], fill=0)])


def frame_video(frames: np.ndarray, size: tuple[int, int], fit: str) -> np.ndarray:
    """uint8 (T, H, W, C) → uint8 (T, size[0], size[1], C), framed by `fit`."""
    video = tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))  # (T, C, H, W)
    out = framing_transform(tuple(video.shape[-2:]), size, fit)(video)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())
