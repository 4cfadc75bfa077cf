"""Training callbacks: non-finite and divergence guards, fixed sample grid to mp4, a progress bar that shows clips/s.

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


class DivergenceError(RuntimeError):
    """Training diverged without a NaN: exploding weights or losses, or generator outputs that stopped varying."""


def _newest_checkpoint(trainer: pl.Trainer) -> str | None:
    """The newest checkpoint file this run has on disk, or None (nothing written yet)."""
    cb = trainer.checkpoint_callback
    candidates = [getattr(cb, "last_model_path", "") or ""]
    dirpath = getattr(cb, "dirpath", None)
    if dirpath:
        candidates.append(str(Path(dirpath) / "last.ckpt"))
    existing = [p for p in candidates if p and Path(p).is_file()]
    return existing[0] if existing else None


def _checkpoint_note(trainer: pl.Trainer, good: bool) -> str:
    path = _newest_checkpoint(trainer)
    if path is None:
        return ("No checkpoint has been written yet, so there is nothing to resume: fix the cause and start the run "
                "again")
    if good:
        return f"The last good checkpoint is {path}; after the fix, resume with --ckpt_path last"
    return (f"The newest checkpoint is {path}; it may already be affected (look at RUN/samples), so prefer an "
            "earlier RUN/checkpoints/step*.ckpt when resuming")


def _non_finite_inputs(batch) -> str | None:
    """Which part of a (video, condition, user_ids, clip_ids) batch holds NaN/Inf, naming the users or clips."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        return None
    for index, what in ((1, "preference vector (condition)"), (0, "video")):
        tensor = batch[index]
        if not torch.is_tensor(tensor) or torch.isfinite(tensor).all():
            continue
        bad = (~torch.isfinite(tensor.reshape(tensor.shape[0], -1))).any(dim=1).nonzero().flatten().tolist()
        names = batch[2 if index == 1 else 3] if len(batch) > 3 else None
        who = [str(names[i]) for i in bad[:5]] if names is not None else bad[:5]
        return f"the batch's {what} is NaN/Inf for {'users' if index == 1 else 'clips'} {who}"
    return None


class NonFiniteGuard(Callback):
    """Stops the run at the first NaN/Inf gradient or loss, before the bad update reaches the weights.

    Gradients are checked in on_before_optimizer_step (runs inside opt.step(), before the parameters move);
    the returned losses in on_train_batch_end, which runs before ModelCheckpoint (Lightning puts checkpoint
    callbacks last), so no checkpoint is written for the bad step and `last.ckpt` is the last good state.
    When the batch itself holds NaN/Inf, the message names the users or clips and points at the data, not the
    learning rate.
    """

    def __init__(self):
        self._batch = None

    def _fail(self, trainer: pl.Trainer, what: str) -> None:
        where = (f"non-finite {what} at global step {trainer.global_step} "
                 f"(images seen {int(getattr(trainer.lightning_module, 'images_seen', -1))})")
        inputs = _non_finite_inputs(self._batch)
        if inputs:
            fix = (f"{inputs}. The data is at fault, not the training: run `reelgan-data check DATASET` and refit "
                   "or re-import the embeddings (`reelgan-data embed`)")
        else:
            fix = ("Fixes: lower model.lr_g/model.lr_d, raise model.r1_gamma, or try trainer.precision=32-true")
        raise NonFiniteLossError(f"{where}. Training stopped. {fix}. {_checkpoint_note(trainer, good=True)}.")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not torch.stack([torch.isfinite(g).all() for g in grads]).all():
            self._fail(trainer, "gradient")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(outputs, dict):
            for name, value in outputs.items():
                if torch.is_tensor(value) and not torch.isfinite(value).all():
                    self._fail(trainer, f"{name}={float(value)}")


class DivergenceGuard(Callback):
    """Stops a run that diverged while staying finite (e.g. model.lr_g far too high).

    Three signs, each checked every `every_n_batches` batches (losses every batch), all cheap next to a step:
    - a generator weight beyond `max_weight` in absolute value (equalised-lr weights start near N(0, 1));
    - |loss| beyond `max_loss` (GAN losses here are softplus terms of order 1, plus R1);
    - sample-diversity collapse: G makes clips for `seeds` with one fixed condition and the mean absolute
      difference between them (in [-1, 1] units) falls below `min_diversity`, i.e. the seeds give the same clip.
    The decision is shared across processes (DDP), so every rank stops together.
    """

    def __init__(self, max_weight: float = 1000.0, max_loss: float = 1000.0, min_diversity: float = 1e-3,
                 every_n_batches: int = 25, seeds: Sequence[int] = (0, 1, 2, 3)):
        self.max_weight, self.max_loss, self.min_diversity = float(max_weight), float(max_loss), float(min_diversity)
        self.every_n_batches, self.seeds = int(every_n_batches), [int(s) for s in seeds]

    def diversity(self, generator, condition: torch.Tensor) -> float:
        """Mean |clip_i − clip_j| over seed pairs for one condition (E,): 0 = every seed gives the same clip."""
        device = next(generator.parameters()).device
        z = latents_for_seeds(self.seeds, generator.z_dim).to(device)
        cond = condition.reshape(1, -1).to(device).expand(len(self.seeds), -1)
        with torch.no_grad():
            video = generator(z, cond).float().flatten(1)                               # (S, T·C·H·W)
        return float(torch.cdist(video, video, p=1).sum() / (len(self.seeds) * (len(self.seeds) - 1)
                                                             * video.shape[1]))

    def _check(self, trainer, pl_module, outputs, batch) -> str | None:
        if isinstance(outputs, dict):
            for name, value in outputs.items():
                if torch.is_tensor(value) and value.numel() == 1 and abs(float(value)) > self.max_loss:
                    return f"{name} = {float(value):.4g} exceeds {self.max_loss:g} (loss explosion)"
        if self.every_n_batches <= 0 or int(pl_module.batches_seen) % self.every_n_batches:
            return None
        weights = [p for p in pl_module.generator.parameters()]
        largest = float(torch.stack([p.detach().abs().max() for p in weights]).max())
        if largest > self.max_weight:
            return f"the largest generator weight is {largest:.4g} (limit {self.max_weight:g})"
        spread = self.diversity(pl_module.generator, batch[1][0])
        if spread < self.min_diversity:
            return (f"sample diversity collapsed: seeds {self.seeds} give clips that differ by {spread:.2e} on "
                    f"average (limit {self.min_diversity:g})")
        return None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        reason = self._check(trainer, pl_module, outputs, batch)
        if not trainer.strategy.reduce_boolean_decision(reason is not None, all=False):
            return
        h = pl_module.hparams
        raise DivergenceError(
            f"training diverged at global step {trainer.global_step}: {reason or 'another process diverged'}. "
            f"Training stopped. Fixes: lower model.lr_g (now {h.get('lr_g')}) and model.lr_d (now {h.get('lr_d')}), "
            f"or raise model.r1_gamma (now {h.get('r1_gamma')}). {_checkpoint_note(trainer, good=False)}.")


def render_grid(generator, conditions: torch.Tensor, seeds: Sequence[int], truncation: float = 1.0) -> np.ndarray:
    """conditions (U, E), seeds S → uint8 (U, S, T, C, H, W): clip s of user u, from G with fixed latents."""
    U, S = conditions.shape[0], len(seeds)
    device = next(generator.parameters()).device
    z = latents_for_seeds(list(seeds), generator.z_dim).to(device).repeat(U, 1)         # (U·S, z_dim)
    cond = conditions.to(device).repeat_interleave(S, dim=0)                           # (U·S, E)
    with torch.no_grad():
        video = generator(z, cond, truncation=truncation).float()                      # (U·S, T, C, H, W)
    return model_to_uint8(video).reshape(U, S, *video.shape[1:]).cpu().numpy()


def _label(text: str, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 strip with `text` in it (PIL's built-in font: no font files needed)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (20, 20, 20))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(text.split("\n")):
        draw.text((6, 6 + 14 * i), line, fill=(235, 235, 235))
    return np.array(img)  # a writable copy: torch.from_numpy warns on read-only arrays


def compose_grid(rows: list[tuple[str, np.ndarray, np.ndarray]], min_row_px: int = 256,
                 label_px: int = 120) -> np.ndarray:
    """rows [(label, real uint8 (R, T, C, H, W), generated uint8 (S, T, C, H, W))] → uint8 (T, H', W', 3).

    One row per user: a label, the user's real clips, a gap, then the generated ones. Clips are upscaled by an
    integer factor (nearest) so that a row is at least `min_row_px` tall and legible.
    """
    from torchvision.utils import make_grid

    T, C, H, W = rows[0][2].shape[1:]
    scale = max(1, -(-min_row_px // H))
    out = []
    for t in range(T):
        lines = []
        for text, real, fake in rows:
            label = torch.from_numpy(_label(text, H * scale, label_px)).permute(2, 0, 1)
            parts = [make_grid(torch.from_numpy(c[:, t]), nrow=len(c), padding=0) for c in (real, fake) if len(c)]
            gap = torch.zeros(C, H, max(2, W // 4), dtype=torch.uint8)                  # real | generated
            tiles = torch.cat(parts[:1] + [gap] + parts[1:] if len(real) else [gap] + parts, dim=2)
            tiles = tiles.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            lines.append(torch.cat([label, tiles], dim=2))
        out.append(make_grid(torch.stack(lines), nrow=1, padding=4, pad_value=255).permute(1, 2, 0))
    return torch.stack(out).numpy()


class SampleGrid(Callback):
    """Every `every_n_steps` batches, render G_ema for a fixed users × seeds grid to RUN/samples/STEP.mp4 (+ a
    PNG of the middle frame).

    Each row is one shopper, labelled with their user id: `real_clips` of the clips they engaged with on the
    left, then their generated clips for the fixed seeds, upscaled to ≥ 256 px per row. Users are fixed at the
    start (evenly spaced over the datamodule's sorted training users, or `user_ids`), so successive grids show
    the same shoppers and latents as training goes on. With a WandbLogger the mp4 is also logged.
    """

    def __init__(self, every_n_steps: int = 200, users: int = 4, seeds: Sequence[int] = (0, 1, 2, 3),
                 user_ids: Sequence[str] | None = None, truncation: float = 1.0, fps: int = 8,
                 at_start: bool = True, real_clips: int = 2, min_row_px: int = 256):
        self.every_n_steps, self.users, self.seeds = int(every_n_steps), int(users), [int(s) for s in seeds]
        self.user_ids, self.truncation, self.fps, self.at_start = user_ids, truncation, fps, at_start
        self.real_clips, self.min_row_px = int(real_clips), int(min_row_px)
        self._conditions: torch.Tensor | None = None
        self._ids: list[str] = []
        self._real: list[np.ndarray] = []
        self.written: list[Path] = []

    def _pick_users(self, trainer) -> None:
        dm = trainer.datamodule
        if dm is None or getattr(dm, "train_dataset", None) is None or not hasattr(dm, "embeddings_path"):
            raise ValueError("SampleGrid needs data.datamodule.ProductClipDataModule (set up, with embeddings)")
        from data.preferences import PreferenceEmbeddings
        from data.video import read_clip

        entries = dm.train_dataset.entries
        ids = list(self.user_ids) if self.user_ids else sorted({u for e in entries for u in e["users"]})
        if not self.user_ids:
            step = max(1, len(ids) // max(1, self.users))
            ids = ids[::step][: self.users]
        self._ids = ids
        self._conditions = PreferenceEmbeddings.load(dm.embeddings_path).conditions(ids)
        self._real = []
        for user in ids:  # the clips this shopper engaged with most strongly, first frames
            mine = sorted((e for e in entries if user in e["users"]),
                          key=lambda e: (-e["probs"][e["users"].index(user)], e["clip_id"]))[: self.real_clips]
            clips = [read_clip(e["file"], dm.frames, dm.stride, start=0, size=dm.size).transpose(0, 3, 1, 2)
                     for e in mine]
            self._real.append(np.stack(clips) if clips else np.zeros((0, dm.frames, 3, *dm.size), np.uint8))

    def render(self, trainer, pl_module, tag: str) -> Path | None:
        if not trainer.is_global_zero:
            return None
        if self._conditions is None:
            self._pick_users(trainer)
        import imageio.v3 as iio

        from data.video import write_video

        fake = render_grid(pl_module.generator_ema, self._conditions, self.seeds, self.truncation)
        rows = [(f"{u}\nreal | generated\ntrunc {self.truncation:g}", real, f)
                for u, real, f in zip(self._ids, self._real, fake)]
        frames = compose_grid(rows, self.min_row_px)
        path = Path(trainer.default_root_dir) / "samples" / f"{tag}.mp4"
        write_video(path, frames, fps=self.fps)
        iio.imwrite(path.with_suffix(".png"), frames[len(frames) // 2])  # the middle frame, for a quick look
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
    """Rich progress bar for step-bounded GAN training: one bar over the whole run (batches done / planned, not
    per epoch, which is 1-2 batches on a small catalogue), the optimiser step against max_steps, the epoch, and
    throughput in clips/s (over all processes, smoothed) with the images seen."""

    def __init__(self, smoothing: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.smoothing = smoothing
        self._last: tuple[float, int] | None = None
        self._rate: float | None = None

    @staticmethod
    def planned_batches(trainer, pl_module) -> int | None:
        """Batches the run will take: max_steps counts optimiser steps (one per optimiser per batch here)."""
        if trainer.max_steps and trainer.max_steps > 0:
            per_batch = max(1, len(trainer.optimizers))
            return -(-trainer.max_steps // per_batch)
        if trainer.max_epochs and trainer.max_epochs > 0 and trainer.num_training_batches != float("inf"):
            return int(trainer.max_epochs * trainer.num_training_batches)
        return None  # time-bounded only: an open-ended bar

    def _get_train_description(self, current_epoch: int) -> str:
        return "train batches"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.is_disabled:
            return
        if self.progress is not None and self.train_progress_bar_id is not None:
            self.refresh()  # the same bar goes on through every epoch
            return
        super().on_train_epoch_start(trainer, pl_module)
        if self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, total=self.planned_batches(trainer, pl_module),
                                 completed=int(pl_module.batches_seen))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now, seen = time.perf_counter(), int(pl_module.images_seen)
        if self._last is not None and now > self._last[0]:
            rate = (seen - self._last[1]) / (now - self._last[0])
            self._rate = rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
        self._last = (now, seen)
        if self.is_disabled:
            return
        if self.train_progress_bar_id is None:  # resumed mid-epoch
            self._initialize_train_progress_bar_id()
            self.progress.update(self.train_progress_bar_id, total=self.planned_batches(trainer, pl_module))
        self._update(self.train_progress_bar_id, int(pl_module.batches_seen))
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        limit = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        metrics["step"] = f"{trainer.global_step}{limit}"
        metrics["epoch"] = trainer.current_epoch
        if self._rate is not None:
            metrics["clips/s"] = f"{self._rate:.1f}"
        metrics["images"] = int(pl_module.images_seen)
        return metrics
