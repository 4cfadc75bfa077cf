"""Hybrid image discriminator: the projected D's frozen-feature scales plus a pixel-space conv D as one more scale.

The projected D (gan.projected) judges shape and texture in ImageNet features, which is what makes a GAN sharp in
few images; but those features hardly see hue, and alone it loses the garment colour this product is about
(docs/training.md: colour hit 0.12 against 0.49). The conv image D (gan.discriminators.ImageDiscriminator) sees
the pixels, colour included. Here both score every frame, each with its own projection head, as one image D with
1 + 3 scales: the losses treat the scales as the projected D's (one mean over the image D's logits), the attribute
head reads all of their features, and R1 smooths the pixel scale only (`r1_part`; the projected scales are kept
smooth by spectral norm, and R1 through the backbone would cost a second backward through EfficientNet).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gan.discriminators import ImageDiscriminator, draw_frames
from gan.projected import ProjectedImageDiscriminator


class HybridImageDiscriminator(nn.Module):
    def __init__(
        self,
        cond_dim: int,                                  # size of the (D's) condition
        height: int,                                    # frame height, a multiple of 8
        width: int,                                     # frame width, a multiple of 8
        frames_per_clip: int = 2,                       # k frames scored per clip (both parts score the same ones)
        channels: Sequence[int] = (64, 128, 256, 256),  # the pixel D's widths at H, H/2, H/4, H/8
        features: int = 256,                            # feature size of each scale (pixel and projected)
        projected_frames: int | None = None,            # the projected part scores the first this many of the k
                                                        # frames (None: all k); its backbone is most of the cost
        **projected_kwargs,                             # gan.projected.ProjectedImageDiscriminator's other options
    ):
        super().__init__()
        self.frames_per_clip = int(frames_per_clip)
        self.projected_frames = self.frames_per_clip if projected_frames is None else int(projected_frames)
        if not 1 <= self.projected_frames <= self.frames_per_clip:
            raise ValueError(f"projected_frames={projected_frames} must be between 1 and the frames scored per "
                             f"clip ({self.frames_per_clip})")
        self.pixel = ImageDiscriminator(cond_dim, height, width, frames_per_clip, channels, features)
        self.projected = ProjectedImageDiscriminator(cond_dim, height, width, frames_per_clip, features=features,
                                                     **projected_kwargs)
        self.feature_dim = self.pixel.feature_dim + self.projected.feature_dim

    @property
    def r1_part(self) -> nn.Module:
        """The part R1 smooths: the pixel D (a property, so it is not registered twice in the state_dict)."""
        return self.pixel

    def features(self, video: torch.Tensor, frame_index: torch.Tensor | None = None) -> list[torch.Tensor]:
        """video (B, T, C, H, W), frame_index (B, k) → [pixel (B, k, F), *projected scales (B, k', F)], k' =
        `projected_frames`."""
        frame_index = draw_frames(video, self.frames_per_clip) if frame_index is None else frame_index
        return [self.pixel.features(video, frame_index),
                *self.projected.features(video, frame_index[:, :self.projected_frames])]

    def condition_embedding(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """cond (B, E) → [pixel φ(cond), *per-scale φ(cond)]."""
        return [self.pixel.condition_embedding(cond), *self.projected.condition_embedding(cond)]

    @staticmethod
    def _phis(phi) -> tuple:
        """[pixel φ, *scale φs] or None → (the pixel D's, the projected D's)."""
        return (None, None) if phi is None else (phi[0], phi[1:])

    def score(self, feats: list[torch.Tensor], cond: torch.Tensor,
              phi: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[pixel, *scales] features, cond (B, E) [φs] → logits (B, k + k' · scales)."""
        pixel_phi, projected_phi = self._phis(phi)
        return torch.cat([self.pixel.score(feats[0], cond, pixel_phi),
                          self.projected.score(feats[1:], cond, projected_phi)], dim=1)

    def frame_features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """→ (B, k', feature_dim): every scale's features side by side for the frames both parts scored, for the
        attribute head."""
        k = feats[1].shape[1]
        return torch.cat([feats[0][:, :k], *feats[1:]], dim=2)

    def pairwise(self, feats: list[torch.Tensor], cond: torch.Tensor,
                 phi: list[torch.Tensor] | None = None) -> torch.Tensor:
        """→ (B, k + k' · scales, B) cosines of every frame, at every scale, with every condition."""
        pixel_phi, projected_phi = self._phis(phi)
        return torch.cat([self.pixel.pairwise(feats[0], cond, pixel_phi),
                          self.projected.pairwise(feats[1:], cond, projected_phi)], dim=1)

    def forward(self, video: torch.Tensor, cond: torch.Tensor, frame_index: torch.Tensor | None = None):
        return self.score(self.features(video, frame_index), cond)
