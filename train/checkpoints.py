"""Checkpoint files of a training run: loaded weights-only whatever the path, saved so `last` is never stale.

- `load_checkpoint_weights_only(path)`: a local path, a URL (http/https) or any fsspec scheme (s3://, file://,
  memory://, ...) → the checkpoint dict, read with torch.load(weights_only=True). Lightning's own loader reads
  URLs with weights_only=False (it would run code from a pickle); WeightsOnlyCheckpointIO routes every Trainer
  load (--ckpt_path PATH|URL|last|hpc) through this function instead.
- RunCheckpoint: Lightning's ModelCheckpoint with three changes for a run folder: last.ckpt is written before the
  periodic step file (a kill between the two never leaves `last` behind the newest step file); it overwrites
  last.ckpt instead of writing last-v1.ckpt (a copied run folder resumes and stays current); and a SIGTERM
  (a scheduler's stop, SLURM preemption) writes last.ckpt at the batch boundary where Lightning stops. Under
  SLURMEnvironment(auto_requeue=True) it also moves Lightning's SIGUSR1 save-and-requeue to a batch boundary.
"""
from __future__ import annotations

import io
import pickle
import signal
import threading
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_info

URL_TIMEOUT_S = 120


class CheckpointRefused(ValueError):
    """A checkpoint that cannot be read with weights_only=True (or cannot be read at all); names path and fix."""


def _is_url(text: str) -> bool:
    return text.split("://", 1)[0].lower() in ("http", "https") if "://" in text else False


def load_checkpoint_weights_only(path: str | Path, map_location: Any = None) -> dict:
    """Any path or URL → the checkpoint dict; only tensors, numbers, strings, lists and dicts are ever built."""
    text = str(path)
    try:
        if _is_url(text):
            with urllib.request.urlopen(text, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 (scheme checked)
                source: Any = io.BytesIO(response.read())
            return torch.load(source, map_location=map_location, weights_only=True)
        fs = get_filesystem(text)
        with fs.open(text, "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointRefused(
            f"{text}: refused: this checkpoint holds Python objects, not only tensors ({reason[:200]}). ReelGAN "
            "loads every checkpoint weights-only, so it never runs code from one. Fix: use a checkpoint written "
            "by reelgan-train, or re-save only its tensors from a trusted copy") from None
    except (FileNotFoundError, urllib.error.URLError) as err:
        raise CheckpointRefused(f"{text}: cannot open the checkpoint ({err}). Fix: pass an existing .ckpt "
                                "(RUN/checkpoints/last.ckpt) or `--ckpt_path last`") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointRefused(f"{text}: not a readable PyTorch checkpoint ({type(err).__name__}: "
                                f"{str(err)[:200]}). Fix: pass a checkpoint written by reelgan-train") from None


class WeightsOnlyCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, except that every load is weights-only, for every path scheme."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        # weights_only is ignored on purpose: a caller asking for False must not re-open the pickle door
        return load_checkpoint_weights_only(path, map_location=map_location or (lambda storage, loc: storage))


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for RUN/checkpoints (see the module docstring); same arguments as ModelCheckpoint."""

    def __init__(self, *args, enable_version_counter: bool = False, **kwargs):
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        self._last_written_step: int | None = None
        self.saved_on_sigterm: str | None = None
        self._requeue, self._requeue_pending = None, False

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:
        if self.save_last is True:      # ("link" must point at the periodic file, so it has to come after it)
            self._save_last_checkpoint(trainer, monitor_candidates)
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        if self._last_written_step == trainer.global_step and self.save_last is True:
            return                      # already written first at this step
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_step = trainer.global_step

    def on_train_end(self, trainer, pl_module) -> None:
        # Lightning writes `last` at the end only if the run never wrote one, so a run stopped by max_time (or a
        # max_steps that is not a multiple of every_n_train_steps) kept a `last` up to a whole interval old.
        # Training ends between batches: the state is a whole step, so `last` is brought up to it.
        if self.save_last is True and self._last_written_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        else:
            super().on_train_end(trainer, pl_module)

    # ----- SLURM: Lightning's requeue handler (SLURMEnvironment(auto_requeue=True)) saves RUN/hpc_ckpt_N.ckpt
    # and calls `scontrol requeue`. Run from the signal it would save in the middle of a step (D updated, G not);
    # deferred to the next batch end it saves a whole step, like every other checkpoint.
    def on_train_start(self, trainer, pl_module) -> None:
        self._requeue, self._requeue_pending = None, False
        env = getattr(trainer.strategy, "cluster_environment", None) or \
            getattr(trainer._accelerator_connector, "cluster_environment", None)
        if isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None \
                and threading.current_thread() is threading.main_thread():
            handler = signal.getsignal(env.requeue_signal)
            if callable(handler):
                self._requeue = (env.requeue_signal, handler)
                signal.signal(env.requeue_signal, self._defer_requeue)

    def _defer_requeue(self, signum, frame) -> None:
        self._requeue_pending = True

    def _run_requeue(self) -> None:
        if getattr(self, "_requeue_pending", False) and self._requeue is not None:
            self._requeue_pending = False
            signum, handler = self._requeue
            handler(signum, None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning warns that with manual optimisation a checkpoint holds the state *after* the optimiser steps.
        # For a GAN that is the state to resume from (G, Ds, G_ema and both optimisers after the same batch), so
        # this callback, which owns the decision, drops that one warning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._run_requeue()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return super().on_exception(trainer, pl_module, exception)
        self._run_requeue()                 # SIGUSR1 then SIGTERM before the batch ended: requeue first
        # Lightning raises SIGTERMException between batches, so the state here is a whole step: resumable.
        monitor_candidates = self._monitor_candidates(trainer)
        if self.save_last and self._last_written_step != trainer.global_step:
            self._save_last_checkpoint(trainer, monitor_candidates)
        elif not self.save_last:
            self.last_model_path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
            self._save_checkpoint(trainer, self.last_model_path)
        self.saved_on_sigterm = self.last_model_path
        rank_zero_info(f"SIGTERM: saved the state at global step {trainer.global_step} to {self.last_model_path}")
