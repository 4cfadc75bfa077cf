"""The conditional video generator: (z, condition) → video (B, T, C, H, W) in [-1, 1].

z = [content code (content_dim) | motion noise (frames × motion_noise_dim)], so the whole clip is fixed by
(z, condition): there is no hidden noise. The pipeline:
    mapping:   normalise(z_content) ⊕ normalise(embed(condition)) → MLP → w          (one style per clip)
    motion:    registry module (gan.motion) → per-frame styles w_t and/or moved low-res features
    synthesis: learned constant at (H/8, W/8) → 4 levels of modulated convs, ×2 up per level, RGB skips
Truncation pulls w towards the average w *of the same condition*, estimated on a fixed set of content codes,
so it trades diversity for fidelity without forgetting who the clip is for.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gan.layers import EqualLinear, StyledConv, ToRGB
from gan.motion import build_motion

LEVELS = 4  # H/8, H/4, H/2, H


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """Unit second moment per row (StyleGAN's pixel norm on vectors)."""
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


class MappingNetwork(nn.Module):
    """normalise(z_content) ⊕ normalise(embed(c)) → w (B, w_dim)."""

    def __init__(self, content_dim: int, cond_dim: int, w_dim: int, embed_dim: int, layers: int, lr_mul: float):
        super().__init__()
        self.embed = EqualLinear(cond_dim, embed_dim)
        dims = [content_dim + embed_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activation=True)
                                   for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, z_content: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([_normalise(z_content), _normalise(self.embed(cond))], dim=1))


class VideoGenerator(nn.Module):
    def __init__(
        self,
        cond_dim: int,                          # size of the preference vector (data.embedding_dim)
        frames: int,                            # T, frames per clip
        height: int,                            # H, a multiple of 8
        width: int,                             # W, a multiple of 8 (non-square is fine: 48×64)
        motion: str = "gru",                    # motion module: gru | sep3d | attention (gan.motion.MOTION_MODULES)
        content_dim: int = 128,                 # size of the per-clip content code in z
        motion_noise_dim: int = 16,             # per-frame motion noise in z
        w_dim: int = 256,                       # style code size
        embed_dim: int = 64,                    # condition embedding size inside the mapping network
        mapping_layers: int = 4,                # MLP depth of the mapping network
        mapping_lr_mul: float = 0.01,           # mapping network learns 100× slower (StyleGAN)
        channels: Sequence[int] = (256, 256, 128, 64),  # feature channels at H/8, H/4, H/2, H
        motion_kwargs: dict | None = None,      # extra kwargs for the motion module (e.g. {"hidden": 128})
        truncation_anchors: int = 256,          # content codes averaged to get each condition's mean w
    ):
        super().__init__()
        check_video_size(frames=frames, height=height, width=width)
        if int(cond_dim) < 1:
            raise ValueError(f"cond_dim must be >= 1, got {cond_dim} (it comes from data.embedding_dim)")
        channels = [int(c) for c in channels]
        if len(channels) != LEVELS or min(channels) < 1:
            raise ValueError(f"channels must list {LEVELS} positive widths (H/8, H/4, H/2, H), got {channels}")
        self.config = dict(cond_dim=int(cond_dim), frames=int(frames), height=int(height), width=int(width),
                           motion=str(motion), content_dim=int(content_dim), motion_noise_dim=int(motion_noise_dim),
                           w_dim=int(w_dim), embed_dim=int(embed_dim), mapping_layers=int(mapping_layers),
                           mapping_lr_mul=float(mapping_lr_mul), channels=channels,
                           motion_kwargs=dict(motion_kwargs or {}), truncation_anchors=int(truncation_anchors))
        self.cond_dim, self.frames, self.height, self.width = int(cond_dim), int(frames), int(height), int(width)
        self.content_dim, self.motion_noise_dim = int(content_dim), int(motion_noise_dim)
        self.z_dim = self.content_dim + self.frames * self.motion_noise_dim

        self.mapping = MappingNetwork(content_dim, cond_dim, w_dim, embed_dim, mapping_layers, mapping_lr_mul)
        self.const = nn.Parameter(torch.randn(channels[0], height // 8, width // 8))
        self.motion = build_motion(motion, w_dim=w_dim, noise_dim=motion_noise_dim, channels=channels[0],
                                   frames=frames, **(motion_kwargs or {}))
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for level, ch in enumerate(channels):
            if level == 0:
                self.convs.append(nn.ModuleList([StyledConv(ch, ch, w_dim)]))
            else:
                self.convs.append(nn.ModuleList([StyledConv(channels[level - 1], ch, w_dim, up=True),
                                                 StyledConv(ch, ch, w_dim)]))
            self.to_rgbs.append(ToRGB(ch, w_dim))
        # Fixed content codes for the per-condition mean w (not saved: rebuilt identically from the seed).
        g = torch.Generator().manual_seed(0)
        self.register_buffer("truncation_z", torch.randn(truncation_anchors, content_dim, generator=g),
                             persistent=False)

    @torch.no_grad()
    def average_w(self, cond: torch.Tensor) -> torch.Tensor:
        """cond (B, E) → (B, w_dim): mean of mapping(z_k, c) over the fixed anchor codes z_k."""
        K = self.truncation_z.shape[0]
        zs = self.truncation_z[None].expand(cond.shape[0], -1, -1).reshape(-1, self.content_dim)
        cs = cond[:, None, :].expand(-1, K, -1).reshape(-1, cond.shape[1])
        return self.mapping(zs, cs).reshape(cond.shape[0], K, -1).mean(dim=1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """z (B, z_dim), cond (B, E) → video (B, T, 3, H, W) in [-1, 1]."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}) = content {self.content_dim} + {self.frames} frames × "
                             f"{self.motion_noise_dim} motion noise; got {tuple(z.shape)}")
        if cond.ndim != 2 or cond.shape[1] != self.cond_dim or cond.shape[0] != z.shape[0]:
            raise ValueError(f"cond must be ({z.shape[0]}, {self.cond_dim}) to match z and the generator's "
                             f"cond_dim; got {tuple(cond.shape)} (does the checkpoint match the embeddings?)")
        B, T = z.shape[0], self.frames
        w = self.mapping(z[:, :self.content_dim], cond)                        # (B, w_dim)
        if truncation != 1.0:
            w = torch.lerp(self.average_w(cond).to(w.dtype), w, float(truncation))
        noise = z[:, self.content_dim:].reshape(B, T, self.motion_noise_dim)  # (B, T, motion_noise_dim)
        feats = self.const[None, None].expand(B, T, -1, -1, -1)               # (B, T, C0, H/8, W/8)
        w_frames, feats = self.motion(w, noise, feats)                          # (B, T, w_dim), same feats shape
        x = feats.reshape(B * T, *feats.shape[2:])
        ws = w_frames.reshape(B * T, -1)
        rgb = None
        for convs, to_rgb in zip(self.convs, self.to_rgbs):
            for conv in convs:
                x = conv(x, ws)
            y = to_rgb(x, ws)
            rgb = y if rgb is None else F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + y
        # The 4 RGB skips add up: scale by 1/√4 so tanh starts in its linear range.
        return torch.tanh(rgb * 0.5).reshape(B, T, 3, self.height, self.width)


def check_video_size(frames: int, height: int, width: int, min_frames: int = 1, prefix: str = "") -> None:
    """Fail early, naming the field, when a clip size cannot be generated."""
    for name, value in (("height", height), ("width", width)):
        if int(value) < 8 or int(value) % 8:
            fix = max(8, int(round(int(value) / 8)) * 8)
            raise ValueError(f"{prefix}{name}={value} is not a positive multiple of 8 (the generator starts at "
                             f"{name}/8 and doubles 3 times); use e.g. {prefix}{name}={fix}")
    if int(frames) < max(1, min_frames):
        raise ValueError(f"{prefix}frames={frames} is too few: at least {max(1, min_frames)} are needed"
                         + (" by the video discriminator (temporal kernel 3 + one stride-2 step)" if min_frames > 1
                            else ""))
