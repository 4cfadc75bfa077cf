"""Projected image discriminator (Sauer et al., NeurIPS 2021): D works in the feature space of a frozen,
ImageNet-pretrained EfficientNet-Lite0, which makes a GAN learn recognisable images from far fewer samples.

    frames (N, 3, H, W) in [-1, 1] → resize × `upsample` → frozen EfficientNet-Lite0 stages →
    features at strides 4, 8, 16 → fixed random 1×1 cross-channel mixing (CCM) → fixed random top-down
    cross-scale mixing (CSM) → one small trained D per scale → projection-conditioned logit per scale.

Only the per-scale Ds and their projection heads train; the backbone, CCM and CSM stay fixed (Projected GAN's
"random projections", which stop D from focusing on a few features). The backbone runs in eval mode forever
(its BatchNorms keep ImageNet statistics). Judge models trained with it by `fvd[domain]`, never by
`fid[effnet-lite0]`: this D has seen those features (Kynkäänniemi et al., ICLR 2023).
Same interface as gan.discriminators.ImageDiscriminator: features(video, frame_index) → per-scale (B, k, F)
features; score(features, cond) → (B, k · scales) logits, so each scale's D has its own loss term.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gan.discriminators import draw_frames
from gan.layers import ProjectionHead

# EfficientNet-Lite0 stages whose outputs are used, with their channels and strides.
STAGES = {1: (24, 4), 2: (40, 8), 4: (112, 16)}


def _frozen_conv(in_ch: int, out_ch: int, kernel: int, seed: int) -> nn.Conv2d:
    """A random conv that never trains (CCM/CSM): Kaiming-initialised from its own seed, so it is reproducible."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2 / (in_ch * kernel * kernel)))
        conv.bias.zero_()
    return conv.requires_grad_(False)


class _ScaleDiscriminator(nn.Module):
    """Strided 4×4 convs (spectral norm, leaky ReLU) from one feature scale down to ≤ 4×4, then pooled to F."""

    def __init__(self, in_ch: int, size: int, width: int, features: int):
        super().__init__()
        layers, ch = [], in_ch
        while size > 4:
            layers += [spectral_norm(nn.Conv2d(ch, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
            ch, size = width, size // 2
        layers += [spectral_norm(nn.Conv2d(ch, width, 3, 1, 1)), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.fc = spectral_norm(nn.Linear(width, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, h, w) → (N, F)
        return F.leaky_relu(self.fc(self.net(x).mean(dim=(2, 3))), 0.2)


class ProjectedImageDiscriminator(nn.Module):
    r1_part = None  # R1 smooths no part of it: Projected GAN trains without R1, spectral norm keeps its Ds smooth

    def __init__(
        self,
        cond_dim: int,                      # size of the preference vector
        height: int,                        # frame height
        width: int,                         # frame width
        frames_per_clip: int = 2,           # k frames scored per clip
        upsample: float = 2.0,              # frames are resized by this before the backbone (32 px → 64 px)
        proj_channels: Sequence[int] = (32, 64, 128),  # CCM output channels per scale (strides 4, 8, 16)
        width_per_scale: int = 64,          # channels of each small per-scale D
        features: int = 128,                # feature size fed to each projection head
        backbone: nn.Module | None = None,  # a timm tf_efficientnet_lite0 with weights; None: the packaged one
    ):
        super().__init__()
        if backbone is None:
            from data.pretrained import build_effnet_lite0  # the packaged ImageNet weights (data opens files)

            backbone = build_effnet_lite0()
        self.frames_per_clip = int(frames_per_clip)
        self.feature_dim = int(features) * len(STAGES)
        self.size = (int(round(height * upsample)), int(round(width * upsample)))
        if min(self.size) < 32:
            raise ValueError(f"projected D input {self.size} is too small for stride-16 features; raise upsample")
        last = max(STAGES)
        self.backbone = nn.Sequential(backbone.conv_stem, backbone.bn1,
                                      *[backbone.blocks[i] for i in range(last + 1)]).eval().requires_grad_(False)
        proj_channels = [int(c) for c in proj_channels]
        if len(proj_channels) != len(STAGES):
            raise ValueError(f"proj_channels must list {len(STAGES)} widths (strides 4, 8, 16), got {proj_channels}")
        self.ccm = nn.ModuleList([_frozen_conv(c, p, 1, seed=10 + i)
                                  for i, ((c, _), p) in enumerate(zip(STAGES.values(), proj_channels))])
        # CSM: coarser scale upsampled, projected to this scale's channels (fixed), added, then a fixed 3×3 conv.
        self.csm_up = nn.ModuleList([_frozen_conv(proj_channels[i + 1], proj_channels[i], 1, seed=20 + i)
                                     for i in range(len(proj_channels) - 1)])
        self.csm_mix = nn.ModuleList([_frozen_conv(p, p, 3, seed=30 + i) for i, p in enumerate(proj_channels)])
        sizes = [max(self.size) // s for _, s in STAGES.values()]
        self.discs = nn.ModuleList([_ScaleDiscriminator(p, s, width_per_scale, features)
                                    for p, s in zip(proj_channels, sizes)])
        self.heads = nn.ModuleList([ProjectionHead(features, cond_dim) for _ in proj_channels])

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # ImageNet BatchNorm statistics stay fixed
        return self

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """frames (N, 3, H, W) in [-1, 1] (the EfficientNet-Lite input range) → mixed features per scale."""
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        feats, layers = [], list(self.backbone)
        x = layers[1](layers[0](x))
        for i, block in enumerate(layers[2:]):
            x = block(x)
            if i in STAGES:
                feats.append(x)
        mixed = [ccm(f) for ccm, f in zip(self.ccm, feats)]
        out = [None] * len(mixed)
        out[-1] = self.csm_mix[-1](mixed[-1])
        for i in range(len(mixed) - 2, -1, -1):  # top-down: coarse context into finer scales
            up = F.interpolate(self.csm_up[i](out[i + 1]), size=mixed[i].shape[-2:], mode="bilinear",
                               align_corners=False)
            out[i] = self.csm_mix[i](mixed[i] + up)
        return out

    def features(self, video: torch.Tensor, frame_index: torch.Tensor | None = None) -> list[torch.Tensor]:
        """video (B, T, C, H, W), frame_index (B, k) long → per scale (B, k, F)."""
        B = video.shape[0]
        frame_index = draw_frames(video, self.frames_per_clip) if frame_index is None else frame_index
        frames = video[torch.arange(B, device=video.device)[:, None], frame_index].flatten(0, 1)
        k = frame_index.shape[1]
        return [d(f).reshape(B, k, -1) for d, f in zip(self.discs, self._pyramid(frames))]

    def condition_embedding(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """cond (B, E) → per scale φ(cond) (B, F): made once per batch for `score` and `pairwise`."""
        return [head.condition_embedding(cond) for head in self.heads]

    def score(self, feats: list[torch.Tensor], cond: torch.Tensor,
              phi: list[torch.Tensor] | None = None) -> torch.Tensor:
        """per-scale (B, k, F), cond (B, E) [per-scale φ(cond)] → logits (B, k · scales)."""
        B, k = feats[0].shape[:2]
        phi = [head.condition_embedding(cond, h.dtype) for head, h in zip(self.heads, feats)] if phi is None else phi
        return torch.cat([head(h.flatten(0, 1), phi=p.repeat_interleave(k, dim=0)).reshape(B, k)
                          for head, h, p in zip(self.heads, feats, phi)], dim=1)

    def frame_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """per-scale (B, k, F) → (B, k, F · scales)."""
        return torch.cat(feats, dim=2)

    def pairwise(self, feats: list[torch.Tensor], cond: torch.Tensor,
                 phi: list[torch.Tensor] | None = None) -> torch.Tensor:
        """per-scale (B, k, F), cond (B, E) [per-scale φ(cond)] → (B, k · scales, B) cosines of every frame with
        every condition."""
        B, k = feats[0].shape[:2]
        phi = [None] * len(self.heads) if phi is None else phi
        return torch.cat([head.pairwise(h.flatten(0, 1), cond, p).reshape(B, k, -1)
                          for head, h, p in zip(self.heads, feats, phi)], dim=1)

    def forward(self, video: torch.Tensor, cond: torch.Tensor, frame_index: torch.Tensor | None = None):
        return self.score(self.features(video, frame_index), cond)
