"""The GAN objective, one method per phase (StyleGAN2-ADA's Gmain / Dmain / Dreg), each returning its loss.

Both discriminators (image D on k frames, video D on the clip) score every input; their logits add.
    Gmain: softplus(−D(aug(G(z, c)), c))                                   non-saturating logistic (the video
                                                                            D's term × video_weight)
    Dmain: softplus(D(aug(fake), c)) + softplus(−D(aug(real), c))
           + mismatch_weight · softplus(D(aug(real), c'))                  c' = the batch's conditions rolled
                                                                            by one: real clip, wrong shopper
           + attribute_weight · CE(A(h(aug(real))), product attributes of real)  ACGAN-style head A (fake-aware:
                                                                            also CE(A(h(aug(fake))), "fake, v"))
           + contrastive_weight · CE_j(cos(h(aug(real_i)), φ(c_j)) / τ; target i)  ContraGAN-style 2C term
    Gmain also gets attribute_weight · CE(A(h(aug(G(z, c_i)))), attributes of the real clip paired with c_i)
    and contrastive_weight · the same CE on its fakes: a clip made for c_i must fit c_i better than
    the batch's other shoppers, which is a far denser conditioning signal than one rolled negative.
    Dreg:  r1_interval · γ/2 · ‖∇_real D(aug(real), c)‖²                   lazy R1 (every r1_interval D steps)
                                                                            on the parts R1 smooths (D.r1_part)
The mismatch term is what stops G from ignoring the condition: a real clip is only "real" for its own user.
Pairs whose conditions are (nearly) the same user (cosine ≥ same_user_cosine) are never used as negatives:
`roll(1)` and an in-batch softmax would otherwise tell D that a clip is wrong for its own shopper.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gan.discriminators import ImageDiscriminator, VideoDiscriminator


_PER_D_WEIGHTS: dict = {}   # (k, B, video weight, dtype, device) → the column weights of `_mean_per_d`, made once


def _rows(h, start: int, stop: int | None = None):
    """A D's features in rows start … stop − 1: a tensor, or the projected D's list of per-scale tensors."""
    return [x[start:stop] for x in h] if isinstance(h, list) else h[start:stop]


def _cat_rows(*parts):
    """Row-wise concatenation of D features or φs: tensors, or the projected D's per-scale lists."""
    return [torch.cat(group) for group in zip(*parts)] if isinstance(parts[0], list) else torch.cat(parts)


def _rolled(phi):
    """φ of the batch's conditions rolled by one (the mismatch rows): a tensor, or the projected D's list."""
    return [p.roll(1, dims=0) for p in phi] if isinstance(phi, list) else phi.roll(1, dims=0)


class ReelGANLoss:
    def __init__(
        self,
        image_d: ImageDiscriminator,
        video_d: VideoDiscriminator,
        augment: Callable[[torch.Tensor], torch.Tensor],   # video → augmented video (same draw for all frames);
                                                           # a gan.augment.ClipAugment lets Dmain do one pass
        frame_index: Callable[[int, int], torch.Tensor],   # (B, T) → (B, k) frame indices for the image D
        r1_gamma: float = 1.0,                             # R1 weight γ
        r1_interval: int = 16,                             # lazy regularisation: R1 every this many D steps
        mismatch_weight: float = 1.0,                      # weight of (real clip, wrong condition) negatives
        contrastive_weight: float = 0.0,                   # weight of the in-batch condition-contrastive CE
        contrastive_temperature: float = 0.1,              # its softmax temperature τ
        same_user_cosine: float = 0.95,                    # conditions this close are the same shopper
        attribute_head=None,                               # gan.discriminators.AttributeHead or None
        attribute_weight: float = 0.0,                     # weight of the paired attribute CE (D on real, G)
        video_weight: float = 1.0,                         # weight of the video D's score in G's loss: G's
                                                           # motion against a strong image D (the Ds' own
                                                           # losses are unchanged)
    ):
        self.image_d, self.video_d = image_d, video_d
        # What Dmain and Gmain call for features; `model.compile` swaps in compiled versions. Dreg keeps the
        # modules' eager methods: AOTAutograd has no double backward, and R1 differentiates a gradient.
        self.image_features, self.video_features = image_d.features, video_d.features
        self.augment, self.frame_index = augment, frame_index
        self.r1_gamma, self.r1_interval, self.mismatch_weight = r1_gamma, r1_interval, mismatch_weight
        self.contrastive_weight, self.temperature = contrastive_weight, contrastive_temperature
        self.same_user_cosine = same_user_cosine
        self.attribute_head, self.attribute_weight = attribute_head, attribute_weight
        self.video_weight = float(video_weight)

    def _conditional_terms(self, feats, cond: torch.Tensor, labels: torch.Tensor | None, logs: dict,
                           phase: str, phis=None, same=None, fake_image_feats=None) -> torch.Tensor | float:
        """The weighted contrastive and attribute terms on (real for D, fake for G) features; logs them. phis: each
        D's φ(cond), when already made for the scores; same: `same_user(cond)`, when already made;
        fake_image_feats: in Dmain with a fake-aware head, the image D's features of the fakes, which it also learns."""
        total = 0.0
        if self.contrastive_weight > 0 and cond.shape[0] > 1:
            con = self._contrastive(feats, cond, phis, same)
            total = total + self.contrastive_weight * con
            logs[f"loss/{phase}_contrastive"] = con.detach()
        if self.attribute_head is not None and self.attribute_weight > 0 and labels is not None and labels.shape[1]:
            head, h = self.attribute_head, self.image_d.frame_features(feats[0])
            if fake_image_feats is not None:        # Dmain, fake-aware head: fakes as "fake, v", reals as "real, v"
                h = torch.cat([self.image_d.frame_features(fake_image_feats), h])
                labels = torch.cat([head.as_fake(labels), labels])
            attr = head.loss(h, labels)
            total = total + self.attribute_weight * attr
            logs[f"loss/{phase}_attributes"] = attr.detach()
        return total

    @property
    def pairs_shoppers(self) -> bool:
        """Whether a loss term asks which conditions are one shopper (the contrastive and mismatch terms)."""
        return self.contrastive_weight > 0 or self.mismatch_weight > 0

    def same_user(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, B) bool: condition pairs that are (nearly) the same shopper, the diagonal included. The training step
        makes it once per batch for Dmain and Gmain (`same=`), which share the conditions."""
        c = F.normalize(cond.float(), dim=1)
        return (c @ c.T) >= self.same_user_cosine

    def _contrastive(self, feats, cond: torch.Tensor, phis=None, same=None) -> torch.Tensor:
        """Mean CE of each clip/frame picking its own condition among the batch's (same-user others masked)."""
        same = self.same_user(cond) if same is None else same
        mask = same & ~torch.eye(len(cond), dtype=torch.bool, device=cond.device)   # positives that are not i
        target = torch.arange(len(cond), device=cond.device)
        losses = []
        for d, h, phi in zip((self.image_d, self.video_d), feats, phis or (None, None)):
            logits = d.pairwise(h, cond, phi) / self.temperature             # (B, m, B)
            logits = logits.masked_fill(mask[:, None, :], float("-inf"))
            m = logits.shape[1]
            losses.append(F.cross_entropy(logits.flatten(0, 1), target.repeat_interleave(m)))
        return sum(losses) / len(losses)

    def _augmented(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (augmented video, (B, k) frame indices for the image D): the random draws of one pass, in order."""
        video = self.augment(video)
        return video, self.frame_index(video.shape[0], video.shape[1])

    def _features(self, video: torch.Tensor):
        video, idx = self._augmented(video)
        return self.image_features(video, idx), self.video_features(video)

    def _embeddings(self, cond: torch.Tensor) -> tuple:
        """Each D's φ(cond), made once for its score and its contrastive head."""
        return self.image_d.condition_embedding(cond), self.video_d.condition_embedding(cond)

    def _scores(self, feats, cond: torch.Tensor | None = None, phis=None) -> torch.Tensor:
        """→ (B, k + 1): the image D's k frame logits and the video D's clip logit, side by side, for the conditions
        `cond` (B, E) or their embeddings `phis` (each D's φ, B rows)."""
        phis = phis or (None, None)
        return torch.cat([self.image_d.score(feats[0], cond, phis[0]),
                          self.video_d.score(feats[1], cond, phis[1])], dim=1).float()

    @staticmethod
    def _mean_per_d(logits: torch.Tensor, video_weight: float = 1.0) -> torch.Tensor:
        """Each D counts once, however many frames the image D scored: mean(image) + video_weight · mean(video), as
        one weighted sum (two ops where slices and means made five, forwards and backwards)."""
        B, k = logits.shape[0], logits.shape[1] - 1
        key = (k, B, float(video_weight), logits.dtype, logits.device)
        weights = _PER_D_WEIGHTS.get(key)
        if weights is None:
            weights = torch.full((k + 1,), 1.0 / (B * k), dtype=logits.dtype, device=logits.device)
            weights[-1] = float(video_weight) / B
            _PER_D_WEIGHTS[key] = weights
        return (logits * weights).sum()

    def g_main(self, fake: torch.Tensor, cond: torch.Tensor, labels: torch.Tensor | None = None, same=None):
        """fake (B, T, C, H, W) with grad to G; labels (B, A): attributes of the real clips paired with cond;
        same: `same_user(cond)` when already made → (loss, logs)."""
        feats = self._features(fake)
        phis = self._embeddings(cond)
        logits = self._scores(feats, cond, phis)
        loss = self._mean_per_d(F.softplus(-logits), self.video_weight)
        logs = {"scores/fake_g": logits.detach().mean()}
        loss = loss + self._conditional_terms(feats, cond, labels, logs, "g", phis, same)
        logs["loss/g"] = loss.detach()
        return loss, logs

    def d_main(self, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor, labels: torch.Tensor | None = None,
               same=None):
        """real, fake (B, T, C, H, W) (fake detached), labels (B, A) of the real clips or None, same: `same_user(cond)`
        when already made → (loss, logs, real logits (B, k+1) for ADA).

        Fakes and reals are augmented apart (the same random draws, in the same order, as one pass each) and
        then go through each D as one batch; the (fake, c), (real, c) and (real, rolled c) scores are one head
        call. The Ds have no batch statistics, so this is the same function with a third of the kernel launches.
        """
        B = real.shape[0]
        if hasattr(self.augment, "draw"):               # one augmentation pass over both, same draws as two
            fake_draws, fake_idx = self.augment.draw(fake), self.frame_index(B, fake.shape[1])
            real_draws, real_idx = self.augment.draw(real), self.frame_index(B, real.shape[1])
            both = self.augment.apply(torch.cat([fake, real]), self.augment.cat(fake_draws, real_draws))
        else:                                           # a plain video → video callable
            fake_aug, fake_idx = self._augmented(fake)
            real_aug, real_idx = self._augmented(real)
            both = torch.cat([fake_aug, real_aug])
        feats = (self.image_features(both, torch.cat([fake_idx, real_idx])), self.video_features(both))
        real_feats = tuple(_rows(h, B) for h in feats)
        mismatch = self.mismatch_weight > 0 and B > 1
        rolled = cond.roll(1, dims=0)
        scored = tuple(_cat_rows(h, _rows(h, B)) for h in feats) if mismatch else feats
        phis = self._embeddings(cond)                  # φ(cond) once per D; the rolled rows are its rows rolled
        scored_phis = tuple(_cat_rows(p, p, _rolled(p)) if mismatch else _cat_rows(p, p) for p in phis)
        logits = self._scores(scored, phis=scored_phis)                        # (2B or 3B, k+1)
        fake_logits, real_logits = logits[:B], logits[B:2 * B]
        loss = self._mean_per_d(F.softplus(fake_logits)) + self._mean_per_d(F.softplus(-real_logits))
        logs = {"scores/real": real_logits.detach().mean(), "scores/fake": fake_logits.detach().mean()}
        if mismatch:
            same = self.same_user(cond) if same is None else same
            other = (~same.roll(1, dims=1).diagonal()).float()                # clip i's condition vs i − 1's
            wrong = logits[2 * B:]
            per_clip = F.softplus(wrong) * other[:, None]                     # same-user pairs are not negatives
            mismatch = self._mean_per_d(per_clip) * len(other) / other.sum().clamp(min=1)
            loss = loss + self.mismatch_weight * mismatch
            logs["loss/d_mismatch"] = mismatch.detach()
            logs["scores/mismatch"] = wrong.detach().mean()
        fake_aware = self.attribute_head is not None and self.attribute_head.fake_aware
        loss = loss + self._conditional_terms(real_feats, cond, labels, logs, "d", phis, same,
                                              fake_image_feats=_rows(feats[0], 0, B) if fake_aware else None)
        logs["loss/d"] = loss.detach()
        return loss, logs, real_logits.detach()

    def d_reg(self, real: torch.Tensor, cond: torch.Tensor):
        """Lazy R1 on the (augmented) reals; gradient taken w.r.t. the un-augmented clip → (loss, logs)."""
        real = real.detach().requires_grad_(True)
        video = self.augment(real)
        image_d = getattr(self.image_d, "r1_part", self.image_d)   # the image D's part R1 smooths, if any
        if image_d is not None:
            logits = torch.cat([image_d.score(image_d.features(video, self.frame_index(*video.shape[:2])), cond),
                                self.video_d.score(self.video_d.features(video), cond)], dim=1).float()
            total = self._mean_per_d(logits)
        else:  # e.g. the projected D: smooth by spectral norm, and R1 through its backbone would cost a lot
            total = self.video_d.score(self.video_d.features(video), cond).float().mean()
        (grad,) = torch.autograd.grad(total * real.shape[0], real, create_graph=True)
        penalty = grad.float().square().sum(dim=(1, 2, 3, 4)).mean()
        loss = penalty * (self.r1_gamma / 2) * self.r1_interval
        return loss, {"loss/r1_penalty": penalty.detach()}
