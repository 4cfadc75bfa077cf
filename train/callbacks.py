"""Training callbacks: non-finite and divergence guards, fixed sample grid to mp4, a progress bar that shows clips/s.

Checkpoints are Lightning's own ModelCheckpoint (every_n_train_steps + save_last), configured in the YAML.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, RichProgressBar

from data.tensors import model_to_uint8
from gan.generator import RGB_OUTPUTS
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


def logging_batch(trainer: pl.Trainer) -> bool:
    """True on the batches where Lightning writes the logs: the batches where a callback may read the device."""
    return bool(trainer._logger_connector.should_update_logs)


def _largest_abs(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """0-d on the device: the largest |x| over all the tensors, from one foreach pass. NaN and Inf propagate
    through both maxima, so the result is finite exactly when every tensor is."""
    return torch.stack(torch._foreach_norm(list(tensors), float("inf"))).amax()


def _non_finite(values: torch.Tensor) -> torch.Tensor:
    """Elementwise: is each value NaN/Inf? x − x is 0 for every finite x and NaN for ±Inf and NaN."""
    return (values - values).ne(0)


class NonFiniteGuard(Callback):
    """Stops the run at NaN/Inf gradients or losses, and never lets a checkpoint hold them.

    Each optimiser step and each batch's losses OR one fused flag on the device (no read). The flag is read
    on logging batches, before every checkpoint save (on_save_checkpoint runs before the file is written, and
    raising there writes nothing) and at the end of training. So `last.ckpt` is the last good state, and on a
    GPU the step never waits for the host. When a batch since the last read held NaN/Inf in its conditions, the
    message names the users and points at the data, not the learning rate.
    """

    def __init__(self):
        self._largest: tuple[list, list] = ([], [])     # per step / batch since the last read: the largest |x| of
                                                        # [gradients, losses], 0-d on the device
        self._since_step = 0
        self._batches: list = []                         # (conditions, user ids) of the batches since the last read

    def _mark(self, index: int, tensors: Sequence[torch.Tensor]) -> None:
        if tensors:                                      # kept, not combined: the check waits for the read
            self._largest[index].append(_largest_abs(tensors))

    def _read(self, trainer: pl.Trainer) -> None:
        """The one host read: raise if anything went non-finite since the last read."""
        largest, batches = self._largest, self._batches
        self._largest, self._batches, since = ([], []), [], self._since_step
        self._since_step = trainer.global_step
        if not any(largest):
            return
        bad = _non_finite(torch.stack(largest[0] + largest[1]))                  # gradients' rows, then losses'
        if not bool(bad.any()):
            return
        what = "gradient" if bool(bad[:len(largest[0])].any()) else "loss"
        pl_module = trainer.lightning_module
        where = (f"non-finite {what} between global steps {since} and {trainer.global_step} "
                 f"(images seen {getattr(pl_module, 'seen_images', -1)})")
        inputs = next((found for found in map(_non_finite_inputs, batches) if found), None)
        if inputs:
            fix = (f"{inputs}. The data is at fault, not the training: run `reelgan-data check DATASET` and refit "
                   "or re-import the embeddings (`reelgan-data embed`)")
        else:
            fix = ("Fixes: lower model.lr_g/model.lr_d, raise model.r1_gamma, or try trainer.precision=32-true")
        raise NonFiniteLossError(f"{where}. Training stopped. {fix}. {_checkpoint_note(trainer, good=True)}.")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if isinstance(batch, (list, tuple)) and len(batch) > 2:   # the conditions and ids only: small
            self._batches.append((None, *batch[1:4]))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._mark(0, [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(outputs, dict):
            self._mark(1, [v for v in outputs.values() if torch.is_tensor(v)])
        if logging_batch(trainer):
            self._read(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._read(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._read(trainer)


class DivergenceGuard(Callback):
    """Stops a run that diverged while staying finite (e.g. model.lr_g far too high).

    Three signs, checked every `every_n_batches` batches (the only batches where it reads the device):
    - a generator weight beyond `max_weight` in absolute value (equalised-lr weights start near N(0, 1));
    - |loss| beyond `max_loss` at any batch since the last check (GAN losses here are softplus terms of order 1,
      plus R1; a running max is kept on the device);
    - sample-diversity collapse: G makes clips for `seeds` with one fixed condition and the mean absolute
      difference between them *before the output tanh* falls below `min_diversity`. Measured before the tanh, a
      saturated G (every pixel at ±1) still shows whether its seeds differ; after it, they would all read 0.
    A check that finds `warn_saturated` or more of the output pixels at ±1 warns once, naming the cause: the
    seeds may still differ, but the frames are flat colours and a saturated tanh passes little gradient.
    A run stops after `patience` consecutive failed checks (a GAN can dip for one check and recover). Before
    it stops, G's clips for the seeds go to RUN/samples/diverged_stepN.png so the failing state can be seen,
    and the message names the likely cause. The decision is shared across processes (DDP): all ranks stop.
    """

    def __init__(self, max_weight: float = 1000.0, max_loss: float = 1000.0, min_diversity: float = 1e-3,
                 every_n_batches: int = 25, seeds: Sequence[int] = (0, 1, 2, 3), patience: int = 3,
                 warn_saturated: float = 0.9):
        self.max_weight, self.max_loss, self.min_diversity = float(max_weight), float(max_loss), float(min_diversity)
        self.warn_saturated, self._warned = float(warn_saturated), False
        self.every_n_batches, self.seeds = int(every_n_batches), [int(s) for s in seeds]
        self.patience = max(1, int(patience))
        self._loss_max: torch.Tensor | None = None
        self._failures: list[str] = []

    def _latents(self, generator, condition: torch.Tensor):
        device = next(generator.parameters()).device
        z = latents_for_seeds(self.seeds, generator.z_dim).to(device)
        return z, condition.reshape(1, -1).to(device).expand(len(self.seeds), -1)

    def probe(self, generator, condition: torch.Tensor) -> tuple[float, float]:
        """One forward of G for the seeds and one condition (E,) → (diversity, saturated):
        - diversity: mean |x_i − x_j| over seed pairs of G's raw (pre-tanh) output; 0 = every seed gives the same
          clip;
        - saturated: the share of output values beyond ±0.99 after G's last step (tanh or clamp), from the same
          raw output; near 1 means G's output is saturated.
        One host read for both."""
        z, cond = self._latents(generator, condition)
        with torch.no_grad():
            raw = generator(z, cond, raw=True).float()
            video = raw.flatten(1)                                                    # (S, T·C·H·W)
            spread = torch.cdist(video, video, p=1).sum() / (len(self.seeds) * (len(self.seeds) - 1)
                                                              * video.shape[1])
            saturated = (RGB_OUTPUTS[generator.rgb_output](raw).abs() > 0.99).float().mean()
            spread, saturated = torch.stack([spread, saturated]).tolist()
        return spread, saturated

    def _check(self, trainer, pl_module, batch) -> str | None:
        largest_loss = float(self._loss_max) if self._loss_max is not None else 0.0
        self._loss_max = None
        if largest_loss > self.max_loss:
            return f"a loss reached |{largest_loss:.4g}|, beyond {self.max_loss:g} (loss explosion)"
        with torch.no_grad():
            norms = torch._foreach_norm(list(pl_module.generator.parameters()), float("inf"))
        largest = float(torch.stack(norms).max())
        if largest > self.max_weight:
            return f"the largest generator weight is {largest:.4g} (limit {self.max_weight:g})"
        spread, saturated = self.probe(pl_module.generator, batch[1][0])
        if spread < self.min_diversity:
            return (f"sample diversity collapsed: seeds {self.seeds} give clips whose pre-tanh outputs differ by "
                    f"{spread:.2e} on average (limit {self.min_diversity:g}); {saturated:.0%} of output pixels "
                    "are saturated")
        if saturated >= self.warn_saturated and not self._warned and trainer.is_global_zero:
            # not a stop: the seeds still differ and the run may leave it, but its frames are flat colours
            self._warned = True
            warnings.warn(f"at global step {trainer.global_step}, {saturated:.0%} of G's output pixels are "
                          f"saturated (real clips: well under 1 %); the frames are flat colours. "
                          f"{_saturation_fix(pl_module.hparams)}", stacklevel=2)
        return None

    def _save_failing_samples(self, trainer, pl_module, batch) -> Path | None:
        if not trainer.is_global_zero:
            return None
        import imageio.v3 as iio

        clips = render_grid(pl_module.generator, batch[1][:1].float(), self.seeds)[0]     # (S, T, C, H, W)
        frames = clips[:, clips.shape[1] // 2].transpose(0, 2, 3, 1)                        # middle frames
        path = Path(trainer.default_root_dir) / "samples" / f"diverged_step{trainer.global_step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, np.concatenate(list(frames), axis=1))
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(outputs, dict):
            losses = [v.abs().max().float() for v in outputs.values() if torch.is_tensor(v)]
            if losses:
                top = torch.stack(losses).max()
                self._loss_max = top if self._loss_max is None else torch.maximum(self._loss_max, top)
        if self.every_n_batches <= 0 or pl_module.seen_batches % self.every_n_batches:
            return
        reason = self._check(trainer, pl_module, batch)
        self._failures = self._failures + [reason] if reason else []
        stop = len(self._failures) >= self.patience or (reason is not None and "loss explosion" in reason)
        if not trainer.strategy.reduce_boolean_decision(stop, all=False):
            return
        h = pl_module.hparams
        reason = reason or "another process diverged"
        samples = self._save_failing_samples(trainer, pl_module, batch)
        if "saturated" in reason:
            fix = _saturation_fix(h)
        else:
            fix = (f"Fixes: lower model.lr_g (now {h.get('lr_g')}) and model.lr_d (now {h.get('lr_d')}), "
                   f"or raise model.r1_gamma (now {h.get('r1_gamma')})")
        checks = f" ({len(self._failures)} checks in a row)" if len(self._failures) > 1 else ""
        seen = f" The failing state's samples: {samples}." if samples else ""
        raise DivergenceError(
            f"training diverged at global step {trainer.global_step}: {reason}{checks}. Training stopped. "
            f"{fix}.{seen} {_checkpoint_note(trainer, good=False)}.")


def _saturation_fix(h) -> str:
    """What to change when G's output saturates, most likely cause first (docs/training.md, bench_stability)."""
    return (f"The output saturated (tanh at ±1). On the CPU proxy of tryon-128-gpu the cause was the "
            f"condition-contrastive term: model.contrastive_weight=0 (now {h.get('contrastive_weight')}) kept "
            f"the output unsaturated. Other levers: StyleGAN2's linear output model.rgb_output=linear (now "
            f"{h.get('rgb_output', 'tanh')}), model.mapping_lr_mul=0.01 (now {h.get('mapping_lr_mul')}), lower "
            f"model.lr_g (now {h.get('lr_g')}) and model.lr_d (now {h.get('lr_d')})")


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
    the same shoppers and latents as training goes on. With a WandbLogger the mp4 is also logged. `at_start`
    also renders before the first batch; it is off by default because it decodes real clips and runs G before
    training starts, which delays the first batch.
    """

    def __init__(self, every_n_steps: int = 200, users: int = 4, seeds: Sequence[int] = (0, 1, 2, 3),
                 user_ids: Sequence[str] | None = None, truncation: float = 1.0, fps: int = 8,
                 at_start: bool = False, real_clips: int = 2, min_row_px: int = 256):
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
            # A shopper with fewer engaged clips than real_clips gets black tiles: every row keeps one width.
            blank = np.zeros((dm.frames, 3, *dm.size), np.uint8)
            self._real.append(np.stack(clips + [blank] * (self.real_clips - len(clips))) if self.real_clips
                              else np.zeros((0, dm.frames, 3, *dm.size), np.uint8))

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
        if self.at_start and pl_module.seen_batches == 0:
            self.render(trainer, pl_module, "step_000000")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        batches = pl_module.seen_batches
        if self.every_n_steps > 0 and batches % self.every_n_steps == 0:
            self.render(trainer, pl_module, f"step_{batches:06d}")

    def on_train_end(self, trainer, pl_module) -> None:
        self.render(trainer, pl_module, "final")


class ClipsPerSecondProgressBar(RichProgressBar):
    """Rich progress bar for step-bounded GAN training: one bar over the whole run (batches done / planned, not
    per epoch, which is 1-2 batches on a small catalogue), the optimiser step against max_steps, the epoch, and
    throughput in clips/s (over all processes, smoothed) with the images seen.

    It redraws every `refresh_rate` batches and reads the losses (device tensors) only then: a read per batch
    would stall a GPU every step. Counters come from the module's Python mirrors, never from its buffers."""

    def __init__(self, smoothing: float = 0.9, refresh_rate: int = 10, **kwargs):
        super().__init__(refresh_rate=refresh_rate, **kwargs)
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
                                 completed=pl_module.seen_batches)

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._last = (time.perf_counter(), pl_module.seen_images)     # the first redraw has a rate already

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass  # one bar for the whole run; Rich's epoch-end redraw would read the losses on an arbitrary batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        batches = pl_module.seen_batches
        if batches % self.refresh_rate:
            return
        now, seen = time.perf_counter(), pl_module.seen_images
        if self._last is not None and now > self._last[0]:
            rate = (seen - self._last[1]) / (now - self._last[0])
            self._rate = rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
        self._last = (now, seen)
        if self.is_disabled:
            return
        if self.train_progress_bar_id is None:  # resumed mid-epoch
            self._initialize_train_progress_bar_id()
            self.progress.update(self.train_progress_bar_id, total=self.planned_batches(trainer, pl_module))
        self._update(self.train_progress_bar_id, batches)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        for name, value in getattr(pl_module, "progress_values", {}).items():
            metrics[name] = f"{float(value):.3f}"
        limit = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        metrics["step"] = f"{trainer.global_step}{limit}"
        metrics["epoch"] = trainer.current_epoch
        if self._rate is not None:
            metrics["clips/s"] = f"{self._rate:.1f}"
        metrics["images"] = pl_module.seen_images
        return metrics
