"""Fourier features: sin/cos channels of each pixel's position, for G's full-size level (issue 21's pattern).

Why: at 32 px a garment's stripes and check repeat every 3-4.5 px. The half-size level cannot hold that (its
Nyquist period is 4 output px), and 3×3 convs over a smooth, upsampled map have no phase to draw a period from,
so G drew soft, plain garments for every pattern. Given position channels at the garments' periods, the modulated
conv that reads them weights each by the style (which carries the told pattern), and leaky ReLU gates them to the
garment. As in StyleGAN3's Fourier input (Karras et al. 2021) and CIPS (Anokhin et al. 2021), the features shift
with a translation learned from each frame's style, so a pattern can move with the body instead of sticking to
the screen; the shift starts at zero.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gan.layers import EqualLinear


class FourierFeatures(nn.Module):
    """(N, w_dim) frame styles → (N, 4 · pairs, H, W): sin and cos of 2π f · (pixel + shift(w)) for `pairs`
    periods (geometric between `periods`, in pixels) along each axis. Holds only the shift's parameters."""

    def __init__(self, pairs: int, height: int, width: int, w_dim: int, periods: tuple[float, float] = (2.5, 6.0)):
        super().__init__()
        if int(pairs) < 1:
            raise ValueError(f"fourier pairs must be >= 1, got {pairs}")
        low, high = float(periods[0]), float(periods[1])
        if not 2.0 <= low <= high:
            raise ValueError(f"fourier periods {tuple(periods)} must be (shortest, longest) with shortest >= 2 px "
                             "(a shorter period aliases)")
        self.channels = 4 * int(pairs)
        steps = [i / max(int(pairs) - 1, 1) for i in range(int(pairs))]
        inverse = torch.tensor([1.0 / (low * (high / low) ** t) for t in steps])          # cycles per pixel
        zero = torch.zeros_like(inverse)
        # (2 · pairs, 2) frequencies in cycles per pixel: first along x (vertical stripes), then along y
        self.register_buffer("frequencies", torch.cat([torch.stack([inverse, zero], 1),
                                                       torch.stack([zero, inverse], 1)]), persistent=False)
        ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        grid = torch.stack([xs, ys], dim=-1).flatten(0, 1)                                  # (H·W, 2) pixels
        # each pixel centre's unshifted phase in cycles (H·W, F): fixed, so made once, not per forward
        self.register_buffer("base_phase", grid @ self.frequencies.T, persistent=False)
        self.size = (int(height), int(width))
        self.shift = EqualLinear(w_dim, 2)
        nn.init.zeros_(self.shift.weight)       # every frame starts at the same phase

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        with torch.autocast(w.device.type, enabled=False):     # phases of tens of radians: fp32, not bf16
            shift = self.shift(w.float())                                                     # (N, 2) pixels
            phase = self.base_phase[None] + (shift @ self.frequencies.T)[:, None]
            phase = phase * (2 * math.pi)                                                       # (N, H·W, F)
            features = torch.cat([phase.sin(), phase.cos()], dim=2)
        N, (H, W) = w.shape[0], self.size
        return features.transpose(1, 2).reshape(N, self.channels, H, W)
