"""Training callbacks: non-finite guard, fixed sample grid to mp4, a progress bar that shows clips/s.

Checkpoints are Lightning's own ModelCheckpoint (every_n_train_steps + save_last), configured in the YAML.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, RichProgressBar

from data.tensors import model_to_uint8
from gan.seeds import latents_for_seeds


class NonFiniteLossError(FloatingPointError):
    """Training hit a NaN/Inf; raised before the optimiser step, so the weights and checkpoints stay good."""


def _last_checkpoint(trainer: pl.Trainer) -> str:
    cb = trainer.checkpoint_callback
    path = getattr(cb, "last_model_path", "") or ""
    if path:
        return path
    dirpath = getattr(cb, "dirpath", None)
    return str(Path(dirpath) / "last.ckpt") if dirpath else "(no checkpoint written yet)"


class NonFiniteGuard(Callback):
    """Stops the run at the first NaN/Inf gradient or loss, before the bad update reaches the weights.

    Gradients are checked in on_before_optimizer_step (runs inside opt.step(), before the parameters move);
    the returned losses in on_train_batch_end, which runs before ModelCheckpoint (Lightning puts checkpoint
    callbacks last), so no checkpoint is written for the bad step and `last.ckpt` is the last good state.
    """

    def _fail(self, trainer: pl.Trainer, what: str) -> None:
        raise NonFiniteLossError(
            f"non-finite {what} at global step {trainer.global_step} "
            f"(images seen {int(getattr(trainer.lightning_module, 'images_seen', -1))}). Training stopped; the last "
            f"good checkpoint is {_last_checkpoint(trainer)}. Fixes: lower model.lr_g/model.lr_d, raise "
            f"model.r1_gamma, or try trainer.precision=32-true; resume with --ckpt_path last.")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.stack([torch.isfinite(g).all() for g in grads]).all():
            self._fail(trainer, "gradient")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(outputs, dict):
            for name, value in outputs.items():
                if torch.is_tensor(value) and not torch.isfinite(value).all():
                    self._fail(trainer, f"{name}={float(value)}")


def render_grid(generator, conditions: torch.Tensor, seeds: Sequence[int], truncation: float = 1.0) -> np.ndarray:
    """conditions (U, E), seeds S → uint8 (T, U·H, S·W, 3): row u = user u, column s = seed s."""
    U, S = conditions.shape[0], len(seeds)
    device = next(generator.parameters()).device
    z = latents_for_seeds(list(seeds), generator.z_dim).to(device).repeat(U, 1)         # (U·S, z_dim)
    cond = conditions.to(device).repeat_interleave(S, dim=0)                           # (U·S, E)
    with torch.no_grad():
        video = generator(z, cond, truncation=truncation).float()                      # (U·S, T, C, H, W)
    T, C, H, W = video.shape[1:]
    grid = model_to_uint8(video).reshape(U, S, T, C, H, W).permute(2, 0, 4, 1, 5, 3)  # (T, U, H, S, W, C)
    return grid.reshape(T, U * H, S * W, C).cpu().numpy()


class SampleGrid(Callback):
    """Every `every_n_steps` batches, render G_ema for a fixed users × seeds grid to RUN/samples/*.mp4.

    Users are fixed at the start (evenly spaced over the datamodule's sorted training users, or `user_ids`),
    seeds are fixed, so successive grids show the same shoppers and latents as training goes on. The files are
    always written; with a WandbLogger they are also logged as wandb.Video(path).
    """

    def __init__(self, every_n_steps: int = 200, users: int = 4, seeds: Sequence[int] = (0, 1, 2, 3),
                 user_ids: Sequence[str] | None = None, truncation: float = 1.0, fps: int = 8,
                 at_start: bool = True):
        self.every_n_steps, self.users, self.seeds = int(every_n_steps), int(users), [int(s) for s in seeds]
        self.user_ids, self.truncation, self.fps, self.at_start = user_ids, truncation, fps, at_start
        self._conditions: torch.Tensor | None = None
        self._ids: list[str] = []
        self.written: list[Path] = []

    def _pick_users(self, trainer) -> None:
        dm = trainer.datamodule
        if dm is None or getattr(dm, "train_dataset", None) is None or not hasattr(dm, "embeddings_path"):
            raise ValueError("SampleGrid needs data.datamodule.ProductClipDataModule (set up, with embeddings)")
        from data.preferences import PreferenceEmbeddings

        ids = list(self.user_ids) if self.user_ids else sorted({u for e in dm.train_dataset.entries
                                                               for u in e["users"]})
        if not self.user_ids:
            step = max(1, len(ids) // max(1, self.users))
            ids = ids[::step][: self.users]
        self._ids = ids
        self._conditions = PreferenceEmbeddings.load(dm.embeddings_path).conditions(ids)

    def render(self, trainer, pl_module, tag: str) -> Path | None:
        if not trainer.is_global_zero:
            return None
        if self._conditions is None:
            self._pick_users(trainer)
        from data.video import write_video

        frames = render_grid(pl_module.generator_ema, self._conditions, self.seeds, self.truncation)
        path = Path(trainer.default_root_dir) / "samples" / f"{tag}.mp4"
        write_video(path, frames, fps=self.fps)
        self.written.append(path)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                import wandb

                logger.experiment.log({"samples": wandb.Video(str(path), format="mp4",
                                                              caption=f"rows {self._ids}, seeds {self.seeds}"),
                                       "trainer/global_step": trainer.global_step})
        return path

    def on_train_start(self, trainer, pl_module) -> None:
        if self.at_start and int(pl_module.batches_seen) == 0:
            self.render(trainer, pl_module, "step_000000")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        batches = int(pl_module.batches_seen)
        if self.every_n_steps > 0 and batches % self.every_n_steps == 0:
            self.render(trainer, pl_module, f"step_{batches:06d}")

    def on_train_end(self, trainer, pl_module) -> None:
        self.render(trainer, pl_module, "final")


class ClipsPerSecondProgressBar(RichProgressBar):
    """Rich progress bar with training throughput (clips/s over all processes, smoothed) and images seen."""

    def __init__(self, smoothing: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self._last: tuple[float, int] | None = None
        self._rate: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now, seen = time.perf_counter(), int(pl_module.images_seen)
        if self._last is not None and now > self._last[0]:
            rate = (seen - self._last[1]) / (now - self._last[0])
            self._rate = rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
        self._last = (now, seen)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        if self._rate is not None:
            metrics["clips/s"] = f"{self._rate:.2f}"
        metrics["images"] = int(pl_module.images_seen)
        return metrics
