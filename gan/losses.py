"""The GAN objective, one method per phase (StyleGAN2-ADA's Gmain / Dmain / Dreg), each returning its loss.

Both discriminators (image D on k frames, video D on the clip) score every input; their logits add.
    Gmain: softplus(−D(aug(G(z, c)), c))                                   non-saturating logistic
    Dmain: softplus(D(aug(fake), c)) + softplus(−D(aug(real), c))
           + mismatch_weight · softplus(D(aug(real), c'))                  c' = the batch's conditions rolled
                                                                            by one: real clip, wrong shopper
    Dreg:  r1_interval · γ/2 · ‖∇_real D(aug(real), c)‖²                   lazy R1 (every r1_interval D steps)
The mismatch term is what stops G from ignoring the condition: a real clip is only "real" for its own user.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gan.discriminators import ImageDiscriminator, VideoDiscriminator


class ReelGANLoss:
    def __init__(
        self,
        image_d: ImageDiscriminator,
        video_d: VideoDiscriminator,
        augment: Callable[[torch.Tensor], torch.Tensor],   # video → augmented video (same draw for all frames)
        frame_index: Callable[[int, int], torch.Tensor],   # (B, T) → (B, k) frame indices for the image D
        r1_gamma: float = 1.0,                             # R1 weight γ
        r1_interval: int = 16,                             # lazy regularisation: R1 every this many D steps
        mismatch_weight: float = 1.0,                      # weight of (real clip, wrong condition) negatives
    ):
        self.image_d, self.video_d = image_d, video_d
        self.augment, self.frame_index = augment, frame_index
        self.r1_gamma, self.r1_interval, self.mismatch_weight = r1_gamma, r1_interval, mismatch_weight

    def _features(self, video: torch.Tensor):
        video = self.augment(video)
        idx = self.frame_index(video.shape[0], video.shape[1])
        return self.image_d.features(video, idx), self.video_d.features(video)

    def _scores(self, feats, cond: torch.Tensor) -> torch.Tensor:
        """→ (B, k + 1): the image D's k frame logits and the video D's clip logit, side by side."""
        return torch.cat([self.image_d.score(feats[0], cond), self.video_d.score(feats[1], cond)], dim=1).float()

    @staticmethod
    def _mean_per_d(logits: torch.Tensor) -> torch.Tensor:
        """Each D counts once, however many frames the image D scored: mean(image) + mean(video)."""
        return logits[:, :-1].mean() + logits[:, -1].mean()

    def g_main(self, fake: torch.Tensor, cond: torch.Tensor):
        """fake (B, T, C, H, W) with grad to G → (loss, logs)."""
        logits = self._scores(self._features(fake), cond)
        loss = self._mean_per_d(F.softplus(-logits))
        return loss, {"loss/g": loss.detach(), "scores/fake_g": logits.detach().mean()}

    def d_main(self, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor):
        """real, fake (B, T, C, H, W) (fake detached) → (loss, logs, real logits (B, k+1) for ADA)."""
        fake_logits = self._scores(self._features(fake), cond)
        real_feats = self._features(real)
        real_logits = self._scores(real_feats, cond)
        loss = self._mean_per_d(F.softplus(fake_logits)) + self._mean_per_d(F.softplus(-real_logits))
        logs = {"scores/real": real_logits.detach().mean(), "scores/fake": fake_logits.detach().mean()}
        if self.mismatch_weight > 0 and cond.shape[0] > 1:
            wrong = self._scores(real_feats, cond.roll(1, dims=0))
            mismatch = self._mean_per_d(F.softplus(wrong))
            loss = loss + self.mismatch_weight * mismatch
            logs["loss/d_mismatch"] = mismatch.detach()
            logs["scores/mismatch"] = wrong.detach().mean()
        logs["loss/d"] = loss.detach()
        return loss, logs, real_logits.detach()

    def d_reg(self, real: torch.Tensor, cond: torch.Tensor):
        """Lazy R1 on the (augmented) reals; gradient taken w.r.t. the un-augmented clip → (loss, logs)."""
        real = real.detach().requires_grad_(True)
        logits = self._scores(self._features(real), cond)
        (grad,) = torch.autograd.grad(self._mean_per_d(logits) * real.shape[0], real, create_graph=True)
        penalty = grad.float().square().sum(dim=(1, 2, 3, 4)).mean()
        loss = penalty * (self.r1_gamma / 2) * self.r1_interval
        return loss, {"loss/r1_penalty": penalty.detach()}
