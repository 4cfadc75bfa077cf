"""Distributed metrics with real processes (CPU DDP over gloo): `reelgan-eval fvd --devices 2` equals one process
to 1e-10, and the in-training fvd[domain] callback measures on every rank, so ModelCheckpoint can monitor it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import _eval_world
import _tiny_gan as _tiny

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
           PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))


@pytest.fixture(scope="module")
def ckpt(eval_world):
    return _tiny.tiny_checkpoint(cond_dim=_eval_world.DIM)


def _fvd(world, ckpt, tmp, *extra) -> dict:
    out = tmp / "fvd.json"
    cmd = [sys.executable, "-m", "evaluation.cli", "fvd", "--checkpoint", str(ckpt), "--dataset", str(world.root),
           "--domain", str(world.domain), "--clips", "40", "--batch-size", "8", "--cache-dir", str(tmp / "stats"),
           "--no-progress", "--out", str(out), *extra]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_fvd_with_two_processes_equals_one(eval_world, ckpt, tmp_path):
    one = _fvd(eval_world, ckpt, tmp_path / "one")
    two = _fvd(eval_world, ckpt, tmp_path / "two", "--devices", "2")
    assert one["metric"] == two["metric"] == "fvd[domain]"
    assert abs(one["value"] - two["value"]) <= 1e-10 * max(1.0, abs(one["value"]))
    for side in ("real", "fake"):
        assert one["protocol"][f"{side}_clips"] == two["protocol"][f"{side}_clips"] == 40
    assert len(list((tmp_path / "two" / "stats").iterdir())) == 1        # one writer of the real cache
    again = _fvd(eval_world, ckpt, tmp_path / "two", "--devices", "2")   # cache hit: no double counting
    assert abs(again["value"] - one["value"]) <= 1e-10 * max(1.0, abs(one["value"]))


def _align(world, ckpt, tmp, *extra) -> dict:
    out = tmp / "align.json"
    cmd = [sys.executable, "-m", "evaluation.cli", "align", "--checkpoint", str(ckpt), "--dataset", str(world.root),
           "--domain", str(world.domain), "--clips-per-user", "3", "--max-users", "5", "--cas-clips", "24",
           "--cas-steps", "12", "--quality-clips", "16",
           "--no-progress", "--out", str(out), *extra]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_align_with_two_processes_equals_one(eval_world, ckpt, tmp_path):
    one = _align(eval_world, ckpt, tmp_path / "one")
    two = _align(eval_world, ckpt, tmp_path / "two", "--devices", "2")   # 15 clips per run: uneven shares
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["users"] == two["users"] and len(one["users"]) == 5
    assert one["metrics"] == two["metrics"] and one["per_user"] == two["per_user"]
    assert one["cas"] == two["cas"] and one["config"]["cas_steps"] == 12       # CAS too, at the steps asked


TRAIN_SCRIPT = """
import json, sys, warnings
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
import _eval_world
import _tiny_gan as _tiny
from evaluation.metrics.callbacks import DomainFVD
from gan.module import ReelGAN

devices, root, domain, embeddings, out = int(sys.argv[1]), *sys.argv[2:6]
warnings.simplefilter("ignore")
torch.manual_seed(0)
model = ReelGAN(**{**_tiny.TINY, "cond_dim": _eval_world.DIM, "motion": "gru"})
loader = DataLoader(_tiny._Clips(n=16, cond_dim=_eval_world.DIM, frames=_tiny.TINY["frames"], size=_tiny.TINY["height"]),
                    batch_size=4, collate_fn=_tiny._collate)
fvd = DomainFVD(every_n_steps=2, clips=12, dataset=root, domain=domain, embeddings=embeddings, at_start=True)
best = pl.callbacks.ModelCheckpoint(dirpath=out + "/ckpt", monitor="fvd[domain]", mode="min", save_top_k=1,
                                    every_n_train_steps=4)
trainer = pl.Trainer(max_steps=8, accelerator="cpu", devices=devices, logger=False, callbacks=[fvd, best],
                     strategy="ddp_find_unused_parameters_true" if devices > 1 else "auto",
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
trainer.fit(model, loader)
json.dump({"history": fvd.history, "best": best.best_model_path, "score": float(best.best_model_score)},
          open(f"{out}/rank{trainer.global_rank}.json", "w"))
"""


def test_domain_fvd_callback_under_ddp_feeds_a_monitoring_checkpoint(eval_world, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"d{devices}"
        out.mkdir()
        result = subprocess.run([sys.executable, str(script), str(devices), str(eval_world.root),
                                 str(eval_world.domain), str(eval_world.embeddings), str(out)],
                                cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)  # a hang fails here
        assert result.returncode == 0, result.stderr[-3000:]
        runs[devices] = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    r0, r1 = runs[2]
    assert r0["history"] == r1["history"] and len(r0["history"]) >= 3      # every rank measured, same values
    assert r0["best"] and Path(r0["best"]).is_file() and r0["score"] == r1["score"]
    # before any step both runs have the same generator: the 2-process value equals the 1-process one
    start1, start2 = runs[1][0]["history"][0][1], r0["history"][0][1]
    assert abs(start1 - start2) <= 1e-10 * max(1.0, abs(start1))
