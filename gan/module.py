"""ReelGAN: the LightningModule that trains the conditional video GAN (manual optimisation).

It owns generator, generator_ema, image_discriminator and video_discriminator. The Trainer owns devices,
precision, checkpoint files and logging; this module opens no files and picks no device. Its training state is
all in the checkpoint: weights, optimisers (Lightning), EMA, ADA p, image counter and every RNG stream.
"""
from __future__ import annotations

import copy
import inspect
import random
import re
from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from gan.augment import POLICIES, ClipAugment, InstanceNoise, ada_adjust
from gan.discriminators import AttributeHead, VideoDiscriminator
from gan.image_discriminators import build_image_discriminator
from data.tensors import uint8_to_model
from gan.attributes import attribute_one_hot
from gan.generator import VideoGenerator, check_video_size
from gan.losses import ReelGANLoss


class ReelGAN(pl.LightningModule):
    def __init__(
        self,
        cond_dim: int = 16,                     # preference vector size (linked from data.embedding_dim)
        frames: int = 16,                       # T (linked from data.frames)
        height: int = 64,                       # H, multiple of 8 (linked from data.height)
        width: int = 64,                        # W, multiple of 8 (linked from data.width)
        motion: str = "gru",                    # motion module: gru | sep3d | attention
        content_dim: int = 128,                 # per-clip content code in z
        motion_noise_dim: int = 16,             # per-frame motion noise in z
        w_dim: int = 256,                       # style code size
        embed_dim: int = 64,                    # condition embedding size in the mapping network
        mapping_layers: int = 4,                # mapping MLP depth
        mapping_lr_mul: float = 0.01,           # mapping learns this much slower than the rest (StyleGAN)
        g_channels: Sequence[int] = (256, 256, 128, 64),        # G widths at H/8, H/4, H/2, H
        rgb_output: str = "tanh",               # G's last step: tanh | linear (StyleGAN2: the Ds see the raw sum,
                                                # clips are clamped to [-1, 1]; no saturated tanh to get stuck in)
        rgb_demodulate: bool = False,           # demodulated ToRGB: a skip's scale no longer grows with its style
        g_fourier_features: int = 0,            # position features (sin/cos) at this many periods per axis for
                                                # G's full-size level: stripes and check at 32 px (gan/fourier.py)
        motion_kwargs: dict | None = None,      # extra motion-module kwargs, e.g. {hidden: 64}
        train_window: int = 0,                  # frames of each clip G synthesises and the Ds see in training: a
                                                # random window of this many (0 = the whole clip; generation always
                                                # makes the whole clip). Fewer frames per step = more clips per second
        d_image_kind: str = "conv",             # image D: conv (trained from scratch) | projected (frozen EffNet-Lite0)
                                                # | hybrid (both, each frame scored by each)
        d_image_channels: Sequence[int] = (64, 128, 256, 256),  # conv image D widths at H, H/2, H/4, H/8
        d_image_frames: int = 2,                # frames per clip the image D scores
        d_image_kwargs: dict | None = None,     # extra kwargs of the image D, e.g. {upsample: 2} for projected
        d_video_kind: str = "2plus1d",          # video D blocks: 2plus1d | 3d
        d_video_channels: Sequence[int] = (64, 128, 256),       # video D widths (stem, stride-2 blocks)
        d_video_downsample: int = 2,            # the video D sees clips pooled by this factor in H and W
        d_features: int = 256,                  # feature size before the projection heads
        lr_g: float = 0.002,                    # Adam learning rate of G
        lr_d: float = 0.002,                    # Adam learning rate of both Ds
        betas_g: Sequence[float] = (0.0, 0.99),  # Adam betas of G
        betas_d: Sequence[float] = (0.0, 0.99),  # Adam betas of the Ds
        r1_gamma: float = 1.0,                  # R1 weight γ (penalty γ/2·‖∇D‖²)
        r1_interval: int = 16,                  # lazy R1: every this many D steps
        mismatch_weight: float = 1.0,           # weight of (real clip, wrong user) negatives
        contrastive_weight: float = 0.0,        # weight of the in-batch condition-contrastive loss (D and G)
        contrastive_temperature: float = 0.1,   # softmax temperature of that loss
        same_user_cosine: float = 0.95,         # conditions this close count as the same user (never negatives)
        attribute_classes: Sequence[int] = (),  # classes per product attribute (linked from data.attribute_classes)
        attribute_weight: float = 0.0,          # weight of the paired product-attribute loss (ACGAN-style head)
        attribute_fake_aware: bool = False,     # that head also learns G's clips as "fake, value" (ADC-GAN), so G
                                                # must draw what real clips of the value show (gan/discriminators.py)
        video_weight: float = 1.0,              # weight of the video D's score in G's loss (its motion against a
                                                # strong image D such as the hybrid; the Ds' losses are unchanged)
        attribute_conditioning: bool = False,   # G makes clips from (shopper, product attributes) with a learned
                                                # p(attributes | shopper) head; needs data attribute labels
        preference_weight: float = 1.0,         # weight of that head's cross-entropy on the paired clips' attributes
        diversity_weight: float = 0.0,          # diversity-sensitive term (DSGAN, Yang et al. 2019): G is rewarded
                                                # for clips of one condition that differ with z; 0 = off
        diversity_rows: float = 0.25,           # share of each batch made a second time, from other z, for that term
        diversity_cap: float = 0.3,             # the reward's cap on |ΔG| / |Δz|, mean abs (the demo's seeds: ~0.2)
        preference_fit: bool = True,            # fit that head exactly (L-BFGS) on the datamodule's pairs at the
                                                # start of a new run and keep it fixed; false = SGD beside the GAN
        d_attribute_projection: bool = False,   # both Ds project on (shopper, product attributes of the clip), not
                                                # on the shopper alone: class-conditional D for the attributes
        ema_half_life_images: float = 10_000,   # G_ema half-life in training images (StyleGAN: 10 kimg)
        ema_rampup: float | None = 0.05,        # half-life ≤ rampup × images seen early on; null = off
        augment_policy: Sequence[str] = POLICIES,  # DiffAugment transforms: colour, translation, cutout
        ada_target: float = 0.6,                # ADA target for r_t = E[sign(D_real)]
        ada_interval: int = 4,                  # adjust p every this many batches
        ada_speed_images: float = 100_000,      # images for p to move 0 → 1 at full speed
        ada_p_init: float = 0.0,                # starting augmentation probability
        ada_fixed: bool = False,                # true: keep p at ada_p_init (no adaptation)
        diffusion_noise: bool = False,          # add Diffusion-GAN instance noise (t ≤ p · diffusion_t_max)
        diffusion_t_max: int = 200,             # largest DDPM timestep of the instance noise
        compile: bool | None = None,            # torch.compile G's synthesis and the Ds' features (R1 stays
                                                # eager); null = on for CUDA, off elsewhere
        compile_backend: str = "inductor",      # torch.compile backend; aot_eager captures the same graphs
                                                # without generating code (tests, debugging)
        seed: int = 0,                          # seed of the module's training RNG stream (z, frames, aug)
        embeddings_hash: str = "",              # hash of the embeddings the conditions come from (linked)
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        check_video_size(frames, height, width, min_frames=VideoDiscriminator.min_frames, prefix="model.")
        if train_window and not VideoDiscriminator.min_frames <= int(train_window) <= frames:
            raise ValueError(f"model.train_window={train_window} must be 0 (whole clip) or between "
                             f"{VideoDiscriminator.min_frames} (the video D's least) and model.frames={frames}")
        bad = [name for name in augment_policy if name not in POLICIES]
        if bad:
            raise ValueError(f"model.augment_policy has unknown entries {bad}; choose from {list(POLICIES)}")
        if attribute_conditioning and not len(attribute_classes):   # one config serves catalogues with and without
            rank_zero_warn("model.attribute_conditioning is on but the data has no product attributes (clips.csv "
                           "columns such as category, colour; data.attribute_labels true): G conditions on the "
                           "shopper only")
        self.generator = VideoGenerator(cond_dim, frames, height, width, motion=motion, content_dim=content_dim,
                                        motion_noise_dim=motion_noise_dim, w_dim=w_dim, embed_dim=embed_dim,
                                        mapping_layers=mapping_layers, mapping_lr_mul=mapping_lr_mul,
                                        channels=g_channels, motion_kwargs=motion_kwargs, rgb_output=rgb_output,
                                        rgb_demodulate=rgb_demodulate, fourier_features=g_fourier_features,
                                        attribute_classes=attribute_classes if attribute_conditioning else ())
        # G_ema is never trained, but stays in train mode: G has no mode-dependent layers (no BatchNorm or dropout),
        # so the mode changes nothing, and Lightning's warning about modules left in eval mode stays meaningful.
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        image_kwargs = dict(d_image_kwargs or {})
        if d_image_kind in ("conv", "hybrid"):              # hybrid: the widths of its pixel-space conv D
            image_kwargs.setdefault("channels", d_image_channels)
            image_kwargs.setdefault("features", d_features)
        # With d_attribute_projection the Ds' condition is [shopper ⊕ attribute one-hots] (see _d_condition).
        d_cond_dim = cond_dim + (sum(attribute_classes) if d_attribute_projection else 0)
        self.image_discriminator = build_image_discriminator(d_image_kind, cond_dim=d_cond_dim, height=height,
                                                             width=width, frames_per_clip=d_image_frames,
                                                             **image_kwargs)
        self.video_discriminator = VideoDiscriminator(d_cond_dim, frames, height, width, kind=d_video_kind,
                                                      spatial_downsample=d_video_downsample,
                                                      channels=d_video_channels, features=d_features)
        self.attribute_head = (AttributeHead(self.image_discriminator.feature_dim, attribute_classes,
                                             fake_aware=attribute_fake_aware)
                               if attribute_weight > 0 and len(attribute_classes) else None)
        self.register_buffer("ada_p", torch.tensor(float(ada_p_init)))
        self.register_buffer("ada_sign_sum", torch.tensor(0.0))      # Σ sign(D_real) since the last adjust
        self.register_buffer("ada_sign_count", torch.tensor(0.0))
        self.register_buffer("images_seen", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("batches_seen", torch.tensor(0, dtype=torch.int64))
        # Python mirrors of the buffers above: the step and the callbacks branch on these, never on the buffers
        # (reading a device tensor stalls the host). The buffers are written alongside, without a read, so the
        # checkpoint's state_dict stays what it was.
        self.augment_p = float(ada_p_init)
        self.seen_images = 0
        self.seen_batches = 0
        self._sign_count = 0
        self.progress_values: dict = {}                              # last batch's losses for the progress bar
        self.noise = InstanceNoise(t_max=diffusion_t_max) if diffusion_noise else None
        augment = ClipAugment(augment_policy, lambda: self.augment_p, self.rng, self.noise)
        self.loss = ReelGANLoss(self.image_discriminator, self.video_discriminator, augment,
                                self._frame_index, r1_gamma=r1_gamma, r1_interval=r1_interval,
                                mismatch_weight=mismatch_weight, contrastive_weight=contrastive_weight,
                                contrastive_temperature=contrastive_temperature, same_user_cosine=same_user_cosine,
                                attribute_head=self.attribute_head, attribute_weight=attribute_weight,
                                video_weight=video_weight)
        self._rng: torch.Generator | None = None
        self._rng_state: torch.Tensor | None = None                  # restored state, applied on first use
        self._preference_fitted = False                              # head fitted exactly (kept in the checkpoint)

    # ----- the training RNG stream: z, frame picks, augmentation, instance noise -----
    def rng(self) -> torch.Generator:
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device)
            if self._rng_state is not None:
                self._rng.set_state(self._rng_state)
            else:
                self._rng.manual_seed(int(self.hparams.seed) * 1_000_003 + self.global_rank)
        return self._rng

    def _frame_index(self, batch: int, frames: int) -> torch.Tensor:
        k = self.hparams.d_image_frames
        return (torch.rand(batch, k, generator=self.rng(), device=self.device) * frames).long().clamp(max=frames - 1)

    # ----- training -----
    def configure_optimizers(self):
        h = self.hparams
        d_params = [p for d in (self.image_discriminator, self.video_discriminator, self.attribute_head)
                    if d is not None for p in d.parameters() if p.requires_grad]
        # The fused kernel keeps Adam's step counts on the device: the for-loop and foreach forms read each
        # parameter's step back to the host (one sync per parameter per step). foreach where fused is unsupported.
        fused = self.device.type in _get_fused_kernels_supported_devices()
        kind = {"fused": True} if fused else {"foreach": True}
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=h.lr_g, betas=tuple(h.betas_g), **kind)
        opt_d = torch.optim.Adam(d_params, lr=h.lr_d, betas=tuple(h.betas_d), **kind)
        return [opt_g, opt_d]

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batches travel as uint8 (pinned, 4× less to copy); the float video in [-1, 1] is made on the device."""
        if isinstance(batch, (list, tuple)) and torch.is_tensor(batch[0]) and batch[0].dtype == torch.uint8:
            batch = [uint8_to_model(batch[0]), *batch[1:]]
        return batch

    def training_step(self, batch, batch_idx):
        real, cond = batch[0], batch[1]                  # (B, T, C, H, W) in [-1, 1], (B, E) L2-normalised
        labels = batch[4] if len(batch) > 4 else None    # (B, A) product attributes of the real clips, -1 unknown
        self._check_batch(real, cond)
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], self.generator.z_dim, generator=self.rng(), device=self.device)
        conditioned = self.generator.preference is not None and labels is not None
        window = None
        if self.hparams.train_window and self.hparams.train_window < real.shape[1]:   # same window for real and fake
            k = int(self.hparams.train_window)
            start = torch.randint(real.shape[1] - k + 1, (1,), generator=self.rng(), device=self.device)
            window = (start, k)                            # stays on the device: frames are gathered, not sliced
            real = real.index_select(1, start + torch.arange(k, device=self.device))
        # With attributes, G makes the paired real clip's attributes (teacher forcing; -1 = drawn by its head).
        fake = self._synthesise(z, cond, labels if conditioned else None, window)
        d_cond = self._d_condition(cond, labels)        # real clip i and fake i share it: same shopper, attributes
        same = self.loss.same_user(d_cond) if self.loss.pairs_shoppers else None   # one shopper? for both phases

        with self.toggled_optimizer(opt_d):             # Dmain (+ Dreg every r1_interval batches)
            d_loss, logs, real_logits = self.loss.d_main(real, fake.detach(), d_cond, labels, same)
            if self.seen_batches % self.hparams.r1_interval == 0:
                r1_loss, r1_logs = self.loss.d_reg(real, d_cond)
                d_loss = d_loss + r1_loss
                logs.update(r1_logs)
            self._step(opt_d, d_loss)
        with self.toggled_optimizer(opt_g):             # Gmain
            g_loss, g_logs = self.loss.g_main(fake, d_cond, labels, same)
            if self.hparams.diversity_weight > 0:
                spread = self._seed_spread(z, fake, cond, labels if conditioned else None, window)
                g_loss = g_loss - self.hparams.diversity_weight * spread
                g_logs["loss/g_diversity"] = spread.detach()
            if conditioned and self.hparams.preference_weight > 0 and not self._preference_fitted:
                preference = self.generator.preference.loss(cond, labels)
                g_loss = g_loss + self.hparams.preference_weight * preference
                g_logs["loss/g_preference"] = preference.detach()
            self._step(opt_g, g_loss)

        self._after_step(real.shape[0], real_logits)     # EMA, counters, ADA p
        logs.update(g_logs, **{"aug/p": self.augment_p, "progress/images_seen": float(self.seen_images)})
        if self._trainer is None or self.trainer._logger_connector.should_update_logs:
            # Lightning writes step logs only on these batches; logging the others would be dozens of ops for
            # nothing
            self.log_dict(logs, on_step=True, prog_bar=False)
        # The progress bar reads these (detached, on the device) when it refreshes, not every batch.
        self.progress_values = {"d": logs["loss/d"], "g": logs["loss/g"], "p": self.augment_p}
        return {"loss_d": d_loss.detach(), "loss_g": g_loss.detach()}

    def _synthesise(self, z, cond, attributes, window) -> torch.Tensor:
        """G's clips as training makes them: the datamodule's labels are in range by construction (no check's
        host read), and the Ds see a linear G's raw output."""
        return self.generator(z, cond, attributes=attributes, window=window, checked=True,
                              raw=self.generator.rgb_output == "linear")

    def _seed_spread(self, z, fake, cond, attributes, window) -> torch.Tensor:
        """Mean over the first `diversity_rows` of the batch of min(|G(z', c) − G(z, c)| / |z' − z|, cap): the
        same shopper and attributes made again from fresh z' (DSGAN's term; a projected D alone lets G make a
        shopper's clips alike, docs/training.md). The reward is capped, so G cannot buy it with noise."""
        m = max(1, int(round(len(z) * self.hparams.diversity_rows)))
        z2 = torch.randn(m, z.shape[1], generator=self.rng(), device=self.device)
        again = self._synthesise(z2, cond[:m], None if attributes is None else attributes[:m], window)
        ratio = (again - fake[:m]).abs().flatten(1).mean(1).float() / (z2 - z[:m]).abs().mean(1).float()
        return ratio.clamp(max=self.hparams.diversity_cap).mean()

    def _d_condition(self, cond: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """What the Ds are conditioned on: the shopper, or with d_attribute_projection [shopper ⊕ one-hots of the
        clip's product attributes / √A] (unknown values: zeros). Both halves have unit norm, so a rolled or
        in-batch negative differs in the shopper, the attributes or both, and two pairs count as the same only
        when both halves agree (same_user_cosine)."""
        classes = self.hparams.attribute_classes
        if not self.hparams.d_attribute_projection or not len(classes):
            return cond
        if labels is None:
            raise ValueError("model.d_attribute_projection needs the clips' product attributes in every batch "
                             "(data.attribute_labels true and attribute columns in clips.csv)")
        return torch.cat([cond, attribute_one_hot(labels, classes, cond.dtype) / len(classes) ** 0.5], dim=1)

    def _step(self, opt, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()

    @torch.no_grad()
    def _after_step(self, batch_size: int, real_logits: torch.Tensor) -> None:
        """Counters, EMA and ADA. The only read from the device is ADA's r_t, once every ada_interval batches."""
        world = self.trainer.world_size if self._trainer is not None else 1
        images = batch_size * world
        self.seen_images += images
        self.seen_batches += 1
        self.images_seen.fill_(self.seen_images)
        self.batches_seen.fill_(self.seen_batches)
        self._update_ema(images)
        h = self.hparams
        self.ada_sign_sum += real_logits.sign().sum()
        self._sign_count += real_logits.numel()
        self.ada_sign_count.fill_(self._sign_count)
        if not h.ada_fixed and self.seen_batches % h.ada_interval == 0:
            stats = torch.stack([self.ada_sign_sum, self.ada_sign_count])
            if self._trainer is not None and world > 1:
                stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
            rt = float(stats[0] / stats[1].clamp(min=1))
            self.augment_p = ada_adjust(self.augment_p, rt, h.ada_target, images * h.ada_interval,
                                        h.ada_speed_images)
            self.ada_p.fill_(self.augment_p)
            self.log("aug/rt", rt, on_step=True)
            self.ada_sign_sum.zero_()
            self._sign_count = 0
            self.ada_sign_count.zero_()

    @torch.no_grad()
    def _update_ema(self, images: int) -> None:
        """G_ema ← lerp(G, G_ema, β), β = 0.5^(images / half-life); half-life ramps up early (StyleGAN2-ADA).
        One foreach lerp over all parameters, not an op per tensor. G's buffers (truncation_z, rebuilt from a fixed
        seed, and the modulation's eps and gain columns) are constants, identical in G_ema: nothing is copied."""
        h = self.hparams
        half_life = h.ema_half_life_images
        if h.ema_rampup is not None:
            half_life = min(half_life, float(self.seen_images) * h.ema_rampup)
        beta = 0.5 ** (images / max(half_life, 1e-8))
        torch._foreach_lerp_(list(self.generator_ema.parameters()), list(self.generator.parameters()), 1 - beta)

    @torch.no_grad()
    def validation_step(self, batch, batch_idx):
        """D's scores on held-out products' clips (data.val_fraction > 0) against its scores on G_ema's clips for
        the same shoppers. Training real scores that rise while these fall is D overfitting (Karras et al. 2020)."""
        real, cond = batch[0], batch[1]
        labels = batch[4] if len(batch) > 4 else None
        self._check_batch(real, cond)
        g = torch.Generator(device=self.device).manual_seed(batch_idx)   # not the training stream: resume stays exact
        z = torch.randn(real.shape[0], self.generator_ema.z_dim, generator=g, device=self.device)
        conditioned = self.generator_ema.preference is not None and labels is not None
        fake = self.generator_ema(z, cond, attributes=labels if conditioned else None)   # the real clips' attributes
        d_cond = self._d_condition(cond, labels)
        idx = torch.linspace(0, real.shape[1] - 1, self.hparams.d_image_frames, device=self.device).round().long()
        idx = idx[None].expand(real.shape[0], -1)
        scores = {name: self.loss._scores((self.image_discriminator.features(video, idx),     # no augmentation
                                           self.video_discriminator.features(video)), d_cond).mean()
                  for name, video in (("real", real), ("fake", fake))}
        self.log_dict({"val/scores_real": scores["real"], "val/scores_fake": scores["fake"]},
                      batch_size=real.shape[0], sync_dist=True)

    def _check_batch(self, real: torch.Tensor, cond: torch.Tensor) -> None:
        h = self.hparams
        want = (h.frames, 3, h.height, h.width)
        if real.ndim != 5 or tuple(real.shape[1:]) != want:
            raise ValueError(f"batch video is {tuple(real.shape)}, the model expects (B, {', '.join(map(str, want))})"
                             f"; data.frames/height/width must match model.frames/height/width")
        if cond.ndim != 2 or cond.shape[1] != h.cond_dim:
            raise ValueError(f"batch condition has dim {cond.shape[-1]} but model.cond_dim={h.cond_dim}: the "
                             f"embeddings file does not match the model (link data.embedding_dim → model.cond_dim)")

    def compile_networks(self) -> None:
        """torch.compile the costly, once-differentiated parts: G's synthesis (G and G_ema) and both Ds' features
        for Dmain and Gmain. The modules and their state_dict stay as they are; R1's double backward and the
        validation step use the eager methods."""
        if getattr(self, "_compiled", False):
            return
        for g in (self.generator, self.generator_ema):
            g.synthesis = torch.compile(g.synthesis, dynamic=False, backend=self.hparams.compile_backend)
        self.loss.image_features = torch.compile(self.image_discriminator.features, dynamic=False,
                                                 backend=self.hparams.compile_backend)
        self.loss.video_features = torch.compile(self.video_discriminator.features, dynamic=False,
                                                 backend=self.hparams.compile_backend)
        self._compiled = True

    def on_fit_start(self) -> None:
        wanted = self.hparams.compile
        if wanted or (wanted is None and self.device.type == "cuda"):
            self.compile_networks()
        dm = getattr(self.trainer, "datamodule", None)
        dim = getattr(dm, "embedding_dim", None)
        if dim is not None and int(dim) != self.hparams.cond_dim:
            raise ValueError(f"condition dimension mismatch: data embeddings have dim {dim}, model.cond_dim="
                             f"{self.hparams.cond_dim}; rebuild the model with cond_dim={dim}")
        data_hash = getattr(dm, "embeddings_hash", None)
        if data_hash and self.hparams.embeddings_hash and data_hash != self.hparams.embeddings_hash:
            raise ValueError(f"the model was built for embeddings {self.hparams.embeddings_hash[:12]}… but the "
                             f"datamodule serves {data_hash[:12]}…; conditions would mean different users")
        if self.generator.preference is not None and self.hparams.preference_fit and self.seen_images == 0:
            self._fit_preference(dm)

    def _fit_preference(self, dm) -> None:
        """A new run: fit p(attribute | shopper) exactly on the training pairs (rank 0's fit on every rank)."""
        pairs = dm.preference_pairs() if hasattr(dm, "preference_pairs") else None
        if pairs is None:
            rank_zero_warn("model.preference_fit: the datamodule gives no (shopper, attributes) pairs (no "
                           "attribute labels, or shards written before entries.json held attributes: re-shard), "
                           "so the preference head is trained beside the GAN instead")
            return
        head = self.generator.preference
        # On the CPU: a float64 L-BFGS of a few hundred small steps, each a host decision, stalls a GPU for
        # seconds before the first batch; on the CPU it is a fraction of a second.
        fitted = copy.deepcopy(head).cpu()
        loss = fitted.fit(pairs["conditions"].cpu(), pairs["labels"].cpu(), pairs["weights"].cpu())
        state = self.trainer.strategy.broadcast({k: v.detach() for k, v in fitted.state_dict().items()}, src=0)
        head.load_state_dict(state)
        self.generator_ema.preference.load_state_dict(state)
        self._preference_fitted = True
        rank_zero_info(f"preference head fitted on {len(pairs['weights'])} (shopper, clip) pairs: weighted "
                       f"cross-entropy {loss:.4f} (summed over attributes); it stays fixed while the GAN trains")

    def on_train_start(self) -> None:
        # A resumed run gets the optimisers' saved state, learning rates included; the configured rates win,
        # and a change is said out loud rather than silently ignored.
        for opt, name in zip(self.trainer.optimizers, ("lr_g", "lr_d")):
            want = float(self.hparams[name])
            for group in opt.param_groups:
                if group["lr"] != want:
                    rank_zero_info(f"model.{name}: using {want:g} from the config instead of {group['lr']:g} "
                                   "saved in the checkpoint (Adam's moment estimates are kept)")
                    group["lr"] = want

    # ----- checkpoint state -----
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        py_state = random.getstate()
        checkpoint["reelgan"] = {
            "generator_config": self.generator.config,
            "embeddings_hash": str(self.hparams.embeddings_hash),
            "ada_p": self.augment_p,
            "images_seen": self.seen_images,
            "preference_fitted": bool(self._preference_fitted),
            "rng": {  # weights_only-safe: tensors, ints, floats, lists
                "module": self.rng().get_state().cpu(),
                "torch": torch.get_rng_state(),
                "numpy": [str(np_state[0]), torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                          int(np_state[3]), float(np_state[4])],
                "python": [int(py_state[0]), list(py_state[1]),
                           None if py_state[2] is None else float(py_state[2])],
                "rank": int(self.global_rank),
            },
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("reelgan")
        if saved is None:
            raise ValueError("this checkpoint has no 'reelgan' section: it was not written by gan.module.ReelGAN")
        stored = {"attribute_classes": [], **saved["generator_config"]}   # older configs predate attributes
        diff = {k: (stored.get(k), v) for k, v in self.generator.config.items() if stored.get(k) != v}
        if diff:
            pretty = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"cannot resume: the checkpoint is a different architecture ({pretty}); "
                             f"train with the checkpoint's settings or start a new run directory")
        mine_sd, theirs_sd = self.state_dict(), checkpoint.get("state_dict", {})
        mine, theirs = set(mine_sd), set(theirs_sd)
        if mine != theirs:  # e.g. a conv image D checkpoint resumed with d_image_kind=projected, or no attribute head
            parts = sorted({k.split(".")[0] for k in mine ^ theirs})
            raise ValueError(f"cannot resume: the checkpoint's networks differ from this config in {parts} "
                             f"({len(theirs - mine)} weights only in the checkpoint, {len(mine - theirs)} only in the "
                             "config). Train with the checkpoint's model settings (its hparams.yaml) or start a new run "
                             "directory")
        shapes = sorted(k for k in mine_sd if tuple(mine_sd[k].shape) != tuple(theirs_sd[k].shape))
        if shapes:  # e.g. d_attribute_projection switched: the Ds' projection reads another condition size
            raise ValueError(f"cannot resume: weights of other shapes in {sorted({k.split('.')[0] for k in shapes})} "
                             f"(e.g. {shapes[0]}: checkpoint {tuple(theirs_sd[shapes[0]].shape)} vs config "
                             f"{tuple(mine_sd[shapes[0]].shape)}). Train with the checkpoint's model settings (its "
                             "hparams.yaml) or start a new run directory")
        if saved["embeddings_hash"] and self.hparams.embeddings_hash and \
                saved["embeddings_hash"] != self.hparams.embeddings_hash:
            raise ValueError("cannot resume: the checkpoint was trained on other preference embeddings "
                             f"({saved['embeddings_hash'][:12]}… vs {self.hparams.embeddings_hash[:12]}…)")
        self._preference_fitted = bool(saved.get("preference_fitted", False))
        state = checkpoint.get("state_dict", {})
        self.augment_p, self.seen_images = float(saved["ada_p"]), int(saved["images_seen"])
        self.seen_batches = int(state["batches_seen"]) if "batches_seen" in state else 0
        self._sign_count = int(state["ada_sign_count"]) if "ada_sign_count" in state else 0
        rng = saved["rng"]
        if self.global_rank == rng.get("rank", 0):
            self._rng_state = rng["module"]
        else:  # only rank 0's streams are saved: other ranks re-seed deterministically from the progress
            self._rng_state = torch.Generator().manual_seed(
                int(self.hparams.seed) * 1_000_003 + self.global_rank + 7919 * saved["images_seen"]).get_state()
        self._rng = None
        torch.set_rng_state(rng["torch"])
        np.random.set_state((rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:]))
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))


def _args_doc(fn) -> str:
    """A Google-style 'Args:' section built from the one-line comment beside each keyword, so the comments in
    the signature are the single source of the `reelgan-train fit --help` texts (jsonargparse reads it)."""
    signature = inspect.getsource(fn).split("\n    ):", 1)[0]
    items = re.findall(r"^\s+(\w+): [^#\n]*#\s*(.+)$", signature, flags=re.M)
    return "Train the conditional video GAN.\n\nArgs:\n" + "\n".join(f"    {name}: {text.strip()}"
                                                                   for name, text in items)


ReelGAN.__init__.__doc__ = _args_doc(ReelGAN.__init__)
