"""Differentiable augmentation for the discriminators, with one parameter draw per *clip* (shared by its frames).

- DiffAugment (Zhao et al. 2020): colour (brightness, saturation, contrast), translation (±1/8, zero pad),
  cutout (one ½-size square). Each transform is applied to a clip with probability p (ADA-style), so at p < 1
  the augmented distribution still identifies the real one and augmentation does not leak into samples.
- ADA controller (Karras et al. 2020): p moves by sign(r_t − target) · images / speed_images, where
  r_t = E[sign(D_real)] over the last interval.
- Optional Diffusion-GAN instance noise (Wang et al. 2022): x_t = DDPMScheduler.add_noise(x, ε, t),
  t ~ U{0 … round(p · t_max)} per clip, applied to real and fake alike.
All draws use the generator passed in, so the training RNG is one stream the module saves and restores.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

POLICIES = ("colour", "translation", "cutout")


def _rand(shape, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)


def _colour(x, gen):
    B = x.shape[0]
    mean_c = x.mean(dim=2, keepdim=True)
    x = x + (_rand((B, 1, 1, 1, 1), x, gen) - 0.5)                                      # brightness
    x = (x - mean_c) * (_rand((B, 1, 1, 1, 1), x, gen) * 2) + mean_c                    # saturation
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    return (x - mean) * (_rand((B, 1, 1, 1, 1), x, gen) + 0.5) + mean                   # contrast


def _translation(x, gen, ratio: float = 0.125):
    B, T, C, H, W = x.shape
    shift = torch.stack([torch.round((_rand((B,), x, gen).float() * 2 - 1) * ratio * W),
                         torch.round((_rand((B,), x, gen).float() * 2 - 1) * ratio * H)], dim=1)  # pixels (B, 2)
    theta = torch.zeros(B, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shift[:, 0] / W
    theta[:, 1, 2] = -2 * shift[:, 1] / H
    theta = theta.repeat_interleave(T, dim=0).to(x.dtype)
    flat = x.reshape(B * T, C, H, W)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    return F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False).reshape(x.shape)


def _cutout(x, gen, ratio: float = 0.5):
    B, T, C, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = (_rand((B,), x, gen).float() * (H + 1 - ch % 2)).long()
    cx = (_rand((B,), x, gen).float() * (W + 1 - cw % 2)).long()
    ys = torch.arange(H, device=x.device)[None, :]
    xs = torch.arange(W, device=x.device)[None, :]
    inside_y = ((ys >= (cy - ch // 2)[:, None]) & (ys < (cy - ch // 2 + ch)[:, None]))        # (B, H)
    inside_x = ((xs >= (cx - cw // 2)[:, None]) & (xs < (cx - cw // 2 + cw)[:, None]))        # (B, W)
    mask = ~(inside_y[:, :, None] & inside_x[:, None, :])                                     # (B, H, W)
    return x * mask[:, None, None].to(x.dtype)


_TRANSFORMS = {"colour": _colour, "translation": _translation, "cutout": _cutout}


def diff_augment(video: torch.Tensor, p: float, policy: Sequence[str] = POLICIES,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """video (B, T, C, H, W) → same shape; each transform hits a clip with probability p, same on every frame."""
    unknown = [name for name in policy if name not in _TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; the policy may contain {list(POLICIES)}")
    if p <= 0 or not policy:
        return video
    B = video.shape[0]
    for name in policy:
        apply = (_rand((B,), video, generator).float() < p).to(video.dtype)[:, None, None, None, None]
        augmented = _TRANSFORMS[name](video, generator)
        video = video + apply * (augmented - video)
    return video


def ada_adjust(p: float, rt: float, target: float, images: int, speed_images: float) -> float:
    """One ADA step: raise p when D is over-confident on reals (r_t > target), lower it otherwise."""
    step = (1.0 if rt > target else -1.0 if rt < target else 0.0) * images / max(speed_images, 1.0)
    return float(min(max(p + step, 0.0), 1.0))


class InstanceNoise:
    """Diffusion-GAN instance noise through diffusers' DDPMScheduler (imported only when used)."""

    def __init__(self, num_train_timesteps: int = 1000, t_max: int = 200, beta_schedule: str = "linear"):
        from diffusers import DDPMScheduler  # heavy import: only runs with model.diffusion_noise=true

        self.scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        self.t_max = int(t_max)

    def __call__(self, video: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """video (B, T, C, H, W) → noised video, t drawn per clip in [0, round(p · t_max)]."""
        top = int(round(p * self.t_max))
        if top <= 0:
            return video
        B = video.shape[0]
        t = (torch.rand(B, generator=generator, device=video.device) * (top + 1)).long().clamp(max=top)
        noise = torch.randn(video.shape, generator=generator, device=video.device, dtype=torch.float32)
        return self.scheduler.add_noise(video, noise.to(video.dtype), t).to(video.dtype)
