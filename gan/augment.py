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

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

POLICIES = ("colour", "translation", "cutout")


def _per_clip(r: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return r.view(-1, 1, 1, 1, 1).to(like.dtype)


def _colour(x, r):
    brightness, saturation, contrast = (_per_clip(v, x) for v in r)
    mean_c = x.mean(dim=2, keepdim=True)
    x = x + (brightness - 0.5)
    x = (x - mean_c) * (saturation * 2) + mean_c
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    return (x - mean) * (contrast + 0.5) + mean


def _translation(x, r, ratio: float = 0.125):
    B, T, C, H, W = x.shape
    shift = torch.round((torch.stack(r, dim=1).float() * 2 - 1) * x.new_tensor([ratio * W, ratio * H]).float())
    offset = shift * shift.new_tensor([-2 / W, -2 / H])                                      # (B, 2) grid units
    theta = torch.cat([torch.eye(2, device=x.device).expand(B, 2, 2), offset[:, :, None]], dim=2)   # (B, 2, 3)
    theta = theta[:, None].expand(B, T, 2, 3).reshape(B * T, 2, 3).to(x.dtype)
    flat = x.reshape(B * T, C, H, W)
    grid = F.affine_grid(theta, [B * T, C, H, W], align_corners=False)
    return F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False).reshape(x.shape)


def _cutout(x, r, ratio: float = 0.5):
    B, T, C, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    top = (r[0].float() * (H + 1 - ch % 2)).long() - ch // 2
    left = (r[1].float() * (W + 1 - cw % 2)).long() - cw // 2
    ys, xs = torch.arange(H, device=x.device), torch.arange(W, device=x.device)
    inside_y = (ys >= top[:, None]) & (ys < (top + ch)[:, None])                               # (B, H)
    inside_x = (xs >= left[:, None]) & (xs < (left + cw)[:, None])                             # (B, W)
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])                                     # (B, H, W)
    return x * keep.view(B, 1, 1, H, W).to(x.dtype)


# name → (uniforms drawn per clip, transform(video, those uniforms))
_TRANSFORMS = {"colour": (3, _colour), "translation": (2, _translation), "cutout": (2, _cutout)}


def _check_policy(policy: Sequence[str]) -> None:
    unknown = [name for name in policy if name not in _TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; the policy may contain {list(POLICIES)}")


def draw_augment(batch: int, p: float, policy: Sequence[str] = POLICIES, generator: torch.Generator | None = None,
                 device=None, dtype: torch.dtype = torch.float32) -> tuple | None:
    """The random half of diff_augment: per transform, whether it hits each clip (probability p) and its
    uniforms. None at p = 0; else (policy, uniforms (R, B) in the video's dtype, hits (R, B) bool), one row per
    draw: each transform's hit row, then its own rows.

    One rand call for every draw of the batch (drawn in float32 and rounded to the video's dtype, so bf16 and fp32
    runs draw alike). On the CPU it is the same stream, in the same order, as one (B,) draw per row; two batches'
    draws side by side (`cat_draws`) augment their concatenation exactly as two passes would."""
    _check_policy(policy)
    if p <= 0:
        return None
    rows = sum(1 + _TRANSFORMS[name][0] for name in policy)
    uniforms = torch.rand((rows, batch), generator=generator, device=device, dtype=torch.float32).to(dtype)
    return tuple(policy), uniforms, uniforms.float() < p


def apply_augment(video: torch.Tensor, draws: tuple | None) -> torch.Tensor:
    """The deterministic half: video (B, T, C, H, W) → same shape, each drawn transform where it hit."""
    if draws is None:
        return video
    policy, uniforms, hits = draws
    rows, hit_rows = uniforms.unbind(0), hits.unbind(0)
    at = 0
    for name in policy:
        n, transform = _TRANSFORMS[name]
        augmented = transform(video, rows[at + 1:at + 1 + n])
        video = torch.where(hit_rows[at].view(-1, 1, 1, 1, 1), augmented, video)
        at += 1 + n
    return video


def cat_draws(a: tuple | None, b: tuple | None) -> tuple | None:
    """Draws for batch a followed by batch b (the same transforms, batch dims concatenated)."""
    if a is None:
        return None
    return a[0], torch.cat([a[1], b[1]], dim=1), torch.cat([a[2], b[2]], dim=1)


def diff_augment(video: torch.Tensor, p: float, policy: Sequence[str] = POLICIES,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """video (B, T, C, H, W) → same shape; each transform hits a clip with probability p, same on every frame."""
    draws = draw_augment(video.shape[0], p, policy, generator, video.device, video.dtype)
    return apply_augment(video, draws)


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

    def draw(self, shape, p: float, generator: torch.Generator | None = None, device=None):
        """→ (t (B,), noise of `shape`) or None when p gives no noise; t drawn per clip in [0, round(p · t_max)]."""
        top = int(round(p * self.t_max))
        if top <= 0:
            return None
        t = (torch.rand(shape[0], generator=generator, device=device) * (top + 1)).long().clamp(max=top)
        return t, torch.randn(shape, generator=generator, device=device, dtype=torch.float32)

    def apply(self, video: torch.Tensor, drawn) -> torch.Tensor:
        if drawn is None:
            return video
        t, noise = drawn
        return self.scheduler.add_noise(video, noise.to(video.dtype), t).to(video.dtype)

    def __call__(self, video: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """video (B, T, C, H, W) → noised video."""
        return self.apply(video, self.draw(video.shape, p, generator, video.device))


class ClipAugment:
    """What the Ds see of a batch: DiffAugment at the current p, then optional instance noise, all from one RNG.

    `draw(video)` takes the random numbers and `apply(video, draws)` uses them, so the loss can draw for fakes,
    then for reals (the order of two separate passes), and augment both in one pass. Calling it does both.
    """

    def __init__(self, policy: Sequence[str], p: Callable[[], float], generator: Callable[[], torch.Generator],
                 noise: InstanceNoise | None = None):
        _check_policy(policy)
        self.policy, self.p, self.generator, self.noise = tuple(policy), p, generator, noise

    def draw(self, video: torch.Tensor):
        p, g = self.p(), self.generator()
        draws = draw_augment(video.shape[0], p, self.policy, g, video.device, video.dtype)
        noise = self.noise.draw(video.shape, p, g, video.device) if self.noise is not None else None
        return draws, noise

    def apply(self, video: torch.Tensor, drawn) -> torch.Tensor:
        draws, noise = drawn
        video = apply_augment(video, draws)
        return self.noise.apply(video, noise) if self.noise is not None else video

    @staticmethod
    def cat(a, b):
        noise = None if a[1] is None else tuple(torch.cat([x, y]) for x, y in zip(a[1], b[1]))
        return cat_draws(a[0], b[0]), noise

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        return self.apply(video, self.draw(video))
