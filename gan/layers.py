"""Building blocks shared by the generator and the discriminators.

Equalised learning rate (weights stored N(0, 1), scaled at run time by 1/sqrt(fan_in)) as in StyleGAN2, so
Adam sees the same effective step size in every layer whatever its width.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; `lr_mul` slows the mapping network as in StyleGAN."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activation else x


class EqualConv2d(nn.Module):
    """Plain conv with equalised learning rate (discriminator and motion blocks)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.stride, self.padding = stride, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution, in the 'non-fused' form (scale activations, shared conv, scale outputs).

    The non-fused form runs one ordinary conv for the whole batch instead of a grouped conv per sample, which is
    much faster on CPUs. x: (N, in, H, W), w: (N, w_dim) → (N, out, H', W') with H' = 2H when `up`.
    """

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, kernel: int = 3, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # style starts at 1: identity modulation
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate, self.up, self.padding = demodulate, up, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (N, in)
        weight = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # ||w_oi * s_i||_2 over (in, kh, kw) for each sample and output channel.
            dcoefs = (weight.square().sum(dim=(2, 3))[None] * styles.square()[:, None, :]).sum(dim=2)
            x = x * (dcoefs + 1e-8).rsqrt()[:, :, None, None].to(x.dtype)
        return x + self.bias[None, :, None, None].to(x.dtype)


class StyledConv(nn.Module):
    """Modulated conv + bias + leaky ReLU (gain √2). No noise inputs: the generator is deterministic in (z, c)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, w_dim, up=up)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x, w), 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    """1×1 modulated conv without demodulation → 3 channels (skip-architecture output)."""

    def __init__(self, in_ch: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, w_dim, kernel=1, demodulate=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w)


class Block2Plus1D(nn.Module):
    """Factorised (2+1)D residual block: spatial k×k conv per frame, then temporal k conv per pixel (S3D).

    x: (B, C, T, H, W) → (B, C_out, T', H', W'); `stride` = (temporal, spatial) downsampling by 2 when set.
    """

    def __init__(self, in_ch: int, out_ch: int, temporal_stride: int = 1, spatial_stride: int = 1,
                 kernel: int = 3):
        super().__init__()
        p = kernel // 2
        self.spatial = nn.Conv3d(in_ch, out_ch, (1, kernel, kernel), (1, spatial_stride, spatial_stride), (0, p, p))
        self.temporal = nn.Conv3d(out_ch, out_ch, (kernel, 1, 1), (temporal_stride, 1, 1), (p, 0, 0))
        self.skip = (nn.Conv3d(in_ch, out_ch, 1, (temporal_stride, spatial_stride, spatial_stride), bias=False)
                     if (in_ch != out_ch or temporal_stride > 1 or spatial_stride > 1) else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.temporal(F.leaky_relu(self.spatial(x), 0.2))
        return (F.leaky_relu(h, 0.2) + self.skip(x)) / math.sqrt(2)


class Block3D(nn.Module):
    """Full 3×3×3 residual block (MoCoGAN-style video D), same interface as Block2Plus1D."""

    def __init__(self, in_ch: int, out_ch: int, temporal_stride: int = 1, spatial_stride: int = 1,
                 kernel: int = 3):
        super().__init__()
        stride = (temporal_stride, spatial_stride, spatial_stride)
        self.conv1 = nn.Conv3d(in_ch, out_ch, kernel, 1, kernel // 2)
        self.conv2 = nn.Conv3d(out_ch, out_ch, kernel, stride, kernel // 2)
        self.skip = (nn.Conv3d(in_ch, out_ch, 1, stride, bias=False)
                     if (in_ch != out_ch or max(stride) > 1) else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        return (F.leaky_relu(h, 0.2) + self.skip(x)) / math.sqrt(2)


class ProjectionHead(nn.Module):
    """Projection discriminator output (Miyato & Koyama 2018) for a continuous condition.

    logit = ψ(h) + <φ(c), h>: h (N, F) features, c (N, E) condition → (N,). φ is linear, so the score is
    smooth in the user vector and nearby users share what D learns.
    """

    def __init__(self, features: int, cond_dim: int):
        super().__init__()
        self.unconditional = EqualLinear(features, 1)
        self.embed = EqualLinear(cond_dim, features)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        proj = (self.embed(cond.to(h.dtype)) * h).sum(dim=1) / math.sqrt(h.shape[1])
        return self.unconditional(h).squeeze(1) + proj

    def pairwise(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """h (N, F), cond (M, E) → cosine(h_n, φ(c_m)) (N, M): which condition each feature fits (2C loss)."""
        return F.normalize(h.float(), dim=1) @ F.normalize(self.embed(cond.to(h.dtype)).float(), dim=1).T
