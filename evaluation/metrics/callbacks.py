"""In-training fvd[domain]: a Lightning callback that measures the EMA generator every N batches and logs it.

Add it to a training YAML by class path:

    trainer:
      callbacks:
        - class_path: evaluation.metrics.callbacks.DomainFVD
          init_args: {every_n_steps: 250, clips: 128}

The real side is fixed at fit start: `clips` real clips (seeded subset) decoded at the generator's size, their
domain features reduced to Gaussian statistics once. The fake side uses the same paired conditions and the same
seeds every time, so the curve moves only because the generator does. The dataset and embeddings come from the
datamodule (ProductClipDataModule) unless given. The domain classifier is the dataset cache's domain.safetensors,
trained there at fit start if missing (a minute on the CPU) unless `domain` names another file.

Under DDP every rank measures: each decodes and generates its share of the batches (batch b on rank b mod W:
the batches one process would make, so the features are the same), and GaussianStats, a torchmetrics Metric with
float64 sums, adds the shares over the process group. So every rank holds the same value, logs it to its `callback_metrics`, and
`ModelCheckpoint(monitor="fvd[domain]")` reaches its save barrier on every rank. With a shard folder as
`data.root`, the dataset is the folder the shards were written from.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pytorch_lightning import Callback

from evaluation.metrics.frechet import frechet_distance
from evaluation.metrics.stats import GaussianStats

METRIC = "fvd[domain]"


class DomainFVD(Callback):
    def __init__(self, every_n_steps: int = 250, clips: int = 128, domain: str | None = None,
                 dataset: str | None = None, embeddings: str | None = None, seed: int = 0, batch_size: int = 16,
                 truncation: float = 1.0, normalisation: str = "n", at_start: bool = False, at_end: bool = True):
        """every_n_steps: batches between measurements (ReelGAN's batches_seen; not optimiser steps);
        clips: clips per side; domain / dataset / embeddings: files (defaults: see module docstring);
        seed: picks the real clips, their conditions and the fake seeds; at_start / at_end: also measure before
        training / when it stops (max_steps, max_time) unless that batch was just measured."""
        if every_n_steps < 1 or clips < 2:
            raise ValueError(f"DomainFVD needs every_n_steps >= 1 and clips >= 2, got {every_n_steps}, {clips}")
        self.every_n_steps, self.clips, self.seed, self.batch_size = int(every_n_steps), int(clips), int(seed), int(batch_size)
        self.domain, self.dataset, self.embeddings = domain, dataset, embeddings
        self.truncation, self.normalisation = float(truncation), normalisation
        self.at_start, self.at_end = at_start, at_end
        self.history: list[tuple[int, float]] = []
        self._ready = False

    # ------------------------------------------------------------------ set-up (once)
    def _prepare(self, trainer, pl_module) -> None:
        from data.contract import load_dataset
        from data.preferences import PreferenceEmbeddings
        from evaluation.features.domain import DomainFeatures
        from evaluation.features.domain import load_domain_classifier
        from evaluation.features.domain_train import ensure_domain
        from evaluation.metrics.pairing import decode_clips, paired_conditions, rank_batches, sample_clip_ids

        dm = trainer.datamodule
        if not self.dataset and dm is None:
            raise ValueError("DomainFVD: no datamodule to take the dataset from; pass init_args.dataset")
        shard_info = getattr(dm, "shard_info", None)
        root = Path(self.dataset or (shard_info["source"] if shard_info else getattr(dm, "root", "") or ""))
        emb_path = Path(self.embeddings) if self.embeddings else Path(getattr(dm, "embeddings_path", root /
                                                                           "embeddings" / "preferences.safetensors"))
        ds = load_dataset(root)
        emb = PreferenceEmbeddings.load(emb_path)
        domain = Path(self.domain) if self.domain else None
        if trainer.is_global_zero:          # one rank trains a missing classifier; the others wait and load it
            ensure_domain(root, domain, False)
        trainer.strategy.barrier()
        model, _ = load_domain_classifier(ensure_domain(root, domain, False))
        self.extractor = DomainFeatures(model=model)
        g = pl_module.generator_ema
        rng = np.random.default_rng(self.seed)
        clip_ids = sample_clip_ids(ds, self.clips, rng)
        self.conditions, _ = paired_conditions(ds, emb, clip_ids, rng)
        self.seeds = list(range(self.seed, self.seed + len(clip_ids)))
        self.mine = rank_batches(len(clip_ids), self.batch_size)  # this rank's batches (all, in one process)
        stats = self._stats(pl_module)
        for i in self.mine:                                # a batch at a time: never the whole set in memory
            real = decode_clips(ds, clip_ids[i:i + self.batch_size], g.frames, 1, (g.height, g.width))
            stats.update(self.extractor.features(real))
        self.real = stats.merged().compute()               # every rank's sums
        self._ready = True

    def _stats(self, pl_module) -> GaussianStats:
        # on the module's device, where the process group's backend can reduce it (gloo: CPU, nccl: GPU)
        return GaussianStats(self.extractor.dim, self.normalisation).to(pl_module.device)

    # ------------------------------------------------------------------ one measurement
    @torch.no_grad()
    def measure(self, pl_module) -> float:
        """fvd[domain] of the current EMA generator (same conditions and seeds every call)."""
        from data.tensors import model_to_uint8
        from generate.sampler import generate_clips

        g = pl_module.generator_ema
        was_training = g.training
        device = next(g.parameters()).device
        stats = self._stats(pl_module)
        for i in self.mine:
            video = generate_clips(g, self.conditions[i:i + self.batch_size], self.seeds[i:i + self.batch_size],
                                   self.truncation, self.batch_size, device)  # (B, T, C, H, W) in [-1, 1]
            stats.update(self.extractor.features(model_to_uint8(video)))
        g.train(was_training)
        fake = stats.merged().compute()
        return frechet_distance(self.real.mu, self.real.sigma, fake.mu, fake.sigma)

    def _log(self, trainer, pl_module) -> None:
        if not self._ready:
            self._prepare(trainer, pl_module)
        value = self.measure(pl_module)
        step = getattr(pl_module, "seen_batches", trainer.global_step)
        self.history.append((step, value))
        # Straight to the loggers (also valid outside a training_step, e.g. at fit start); callback_metrics
        # lets ModelCheckpoint(monitor="fvd[domain]") keep the best checkpoint.
        trainer.callback_metrics[METRIC] = torch.tensor(value)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({METRIC: value}, step=trainer.global_step)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.at_start:
            self._log(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        batches = getattr(pl_module, "seen_batches", batch_idx + 1)
        if batches > 0 and batches % self.every_n_steps == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        step = getattr(pl_module, "seen_batches", trainer.global_step)
        if self.at_end and (not self.history or self.history[-1][0] != step):
            self._log(trainer, pl_module)
