"""Checkpoints and resume: SIGKILL mid-run then --ckpt_path last; exact resume; the non-finite guard."""
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from gan.module import ReelGAN
from train.callbacks import NonFiniteGuard, NonFiniteLossError
from train_world import ROOT, TINY_MODEL, make_world, run_env, train_cmd, write_config

BATCH = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w")


def _step_ckpts(run):
    return sorted((run / "checkpoints").glob("step*.ckpt"))


def test_sigkill_mid_run_then_resume_keeps_counters_and_curve(world, tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", world, run, max_steps=2000, ckpt_every=10,
                       trainer={"logger": {"class_path": "train.loggers.RunCSVLogger",
                                           "init_args": {"save_dir": str(run), "flush_logs_every_n_steps": 1}}})
    proc = subprocess.Popen(train_cmd(cfg), cwd=ROOT, env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(_step_ckpts(run)) < 3:                 # three periodic checkpoints: 30 optimiser steps
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "training did not reach 3 checkpoints in 240 s"
        time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)                # no chance to clean up or save
    proc.wait()
    proc.stderr.close()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    step, images = ckpt["global_step"], ckpt["reelgan"]["images_seen"]
    # RunCheckpoint writes last.ckpt before each periodic file, so wherever the kill lands, `last` is at least as
    # new as the newest periodic checkpoint (once, Lightning's order left it 10 steps behind step000030.ckpt)
    newest = max(torch.load(p, weights_only=True)["global_step"] for p in _step_ckpts(run))
    assert step >= newest >= 30 and step % 10 == 0
    assert images == step // 2 * BATCH              # 2 optimiser steps (D, G) per batch
    killed = pd.read_csv(run / "metrics.csv")

    subprocess.run(train_cmd(cfg, "--ckpt_path", "last", "--trainer.max_steps", str(step + 20)), cwd=ROOT,
                   env=run_env(), check=True, capture_output=True)
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == step + 20
    assert resumed["reelgan"]["images_seen"] == images + 10 * BATCH
    assert resumed["state_dict"]["batches_seen"].item() == (step + 20) // 2

    log = pd.read_csv(run / "metrics.csv")
    new = log.iloc[len(killed):].dropna(subset=["loss/d"])
    old = killed.dropna(subset=["loss/d"])
    old = old[old["step"] < step // 2]               # rows the checkpoint covers
    assert new["step"].min() >= step // 2, "the resumed run restarted its step counter"
    curve = pd.concat([old, new])
    # counters continuous: the logged image counter is exactly (batch index + 1) × batch, across the kill
    assert (curve["progress/images_seen"] == (curve["step"] + 1) * BATCH).all()
    assert curve["step"].is_monotonic_increasing
    # loss curve continuous: the jump across the resume is of the size of the run's own batch-to-batch noise (a
    # restarted D or optimiser jumps by several units). Not "no bigger than the largest other jump": with a dozen
    # jumps, a good resume's is the largest about once in twelve runs
    d = curve["loss/d"].to_numpy()
    jumps = abs(d[1:] - d[:-1])
    boundary = len(old) - 1
    others = np.delete(jumps, boundary)
    assert jumps[boundary] <= 4 * others.mean() + 1e-6, (jumps[boundary], others)
    assert abs(new["aug/p"].iloc[0] - old["aug/p"].iloc[-1]) < 0.05   # ADA p carried over


class _FixedClips(Dataset):
    """Deterministic items, fixed order: isolates the module's own resume state from data-order effects."""

    def __init__(self, n=16, frames=8, size=32, dim=8):
        g = torch.Generator().manual_seed(0)
        self.video = torch.rand(n, frames, 3, size, size, generator=g) * 2 - 1
        self.cond = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)

    def __len__(self):
        return len(self.video)

    def __getitem__(self, i):
        return self.video[i], self.cond[i], f"u{i}", f"c{i}"


def _module(seed_init):
    torch.manual_seed(seed_init)
    return ReelGAN(cond_dim=8, frames=8, height=32, width=32, r1_interval=3, ada_interval=1,
                   ada_speed_images=64, ema_half_life_images=64, **TINY_MODEL)


def _trainer(tmp, epochs, callbacks=()):
    has_ckpt = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    return pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=has_ckpt, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", devices=1, precision="32-true",
                      default_root_dir=str(tmp), callbacks=list(callbacks))


def test_resumed_run_equals_uninterrupted(tmp_path):
    loader = lambda: DataLoader(_FixedClips(), batch_size=BATCH, shuffle=False)  # noqa: E731
    straight = _module(0)
    _trainer(tmp_path / "a", 3).fit(straight, loader())

    first = _module(0)
    trainer = _trainer(tmp_path / "b", 2)
    trainer.fit(first, loader())
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    torch.manual_seed(123)                            # a different process state: the checkpoint must restore it
    resumed = _module(99)                             # different initial weights: all must come from the ckpt
    _trainer(tmp_path / "b", 3).fit(resumed, loader(), ckpt_path=str(tmp_path / "mid.ckpt"))

    assert int(resumed.images_seen) == int(straight.images_seen) == 3 * 16
    assert float(resumed.ada_p) == float(straight.ada_p)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:                                     # G, G_ema, both Ds, buffers: bit-identical
        assert torch.equal(a[key], b[key]), key


class _Poison(pl.Callback):
    def __init__(self, at_batch):
        self.at_batch = at_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if int(pl_module.batches_seen) == self.at_batch:
            with torch.no_grad():
                next(pl_module.generator.parameters()).fill_(float("nan"))


def test_non_finite_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _module(0)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_last=True)
    trainer = _trainer(tmp_path, 10, [NonFiniteGuard(), _Poison(5), ckpt])
    with pytest.raises(NonFiniteLossError, match=r"non-finite .* last good checkpoint is .*last.ckpt"):
        trainer.fit(model, DataLoader(_FixedClips(), batch_size=BATCH))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 10                 # 5 good batches, nothing from the poisoned one
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_last_is_the_final_step_when_a_run_stops_between_periodic_checkpoints(tmp_path):
    from train.checkpoints import RunCheckpoint

    ckpt = RunCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True, save_top_k=-1,
                         filename="step{step:07d}", auto_insert_metric_name=False)
    trainer = pl.Trainer(max_steps=10, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, precision="32-true", default_root_dir=str(tmp_path),
                         callbacks=[ckpt])
    trainer.fit(_module(0), DataLoader(_FixedClips(), batch_size=BATCH))   # stops at step 10 (by max_steps here,
    # by max_time in a timed run): the newest periodic checkpoint is step 8
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step*.ckpt")) == ["step0000004.ckpt",
                                                                            "step0000008.ckpt"]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 10
