"""reelgan-generate --devices N through Lightning's predict loop: 2 real CPU processes (DDP, gloo) write exactly
the clips 1 process writes, each rank a manifest shard, rank 0 one merged manifest with the options recorded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.preferences import PreferenceEmbeddings

import _tiny_gan as _tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    ids = [f"u{i:04d}" for i in range(10)]
    PreferenceEmbeddings(ids, rng.normal(size=(len(ids), 8)), source="test").save(root / "prefs.safetensors")
    return {"ckpt": _tiny.tiny_checkpoint(), "prefs": root / "prefs.safetensors"}


def _cli(world, out, *extra):
    cmd = [sys.executable, "-m", "generate.cli", "--checkpoint", str(world["ckpt"]), "--preferences",
           str(world["prefs"]), "--outdir", str(out), "--no-progress", "--allow-embeddings-mismatch",
           "--user", "u0001,u0002,u0003", "--seeds", "0-4", "--format", "grid,mp4", "--device", "cpu", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


def _grids(out, manifest) -> dict:
    return {(e["user"], e["seed"]): np.asarray(Image.open(out / e["folder"] / e["files"]["grid"]))
            for e in manifest["clips"]}


def test_two_processes_write_the_clips_of_one(world, tmp_path):
    one = _cli(world, tmp_path / "one")
    two = _cli(world, tmp_path / "two", "--devices", "2", "--strategy", "ddp")
    a, b = _grids(tmp_path / "one", one), _grids(tmp_path / "two", two)
    assert len(a) == 15 and set(a) == set(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key                  # bit-identical per (user, seed)
    run = two["runs"][-1]
    assert run["devices"] == 2 and run["strategy"] == "DDPStrategy"
    assert sorted(r["rank"] for r in run["timings"]["per_rank"]) == [0, 1]   # two ranks wrote shards
    assert run["forward_batch"] == one["runs"][-1]["forward_batch"] == 8
    assert run["precision"] == "fp32"
    assert [(e["user"], e["seed"]) for e in two["clips"]] == [(e["user"], e["seed"]) for e in one["clips"]]
    assert not list((tmp_path / "two").glob(".manifest-rank*.json")), "rank 0 removes the merged shards"
    for e in two["clips"]:
        assert (tmp_path / "two" / e["folder"] / e["files"]["mp4"]).stat().st_size > 0


def test_forward_batch_and_precision_are_recorded_and_change_only_what_they_should(world, tmp_path):
    fb4 = _cli(world, tmp_path / "fb4", "--forward-batch", "4", "--batch-size", "3")
    again = _cli(world, tmp_path / "fb4b", "--forward-batch", "4", "--batch-size", "9")
    assert fb4["runs"][-1]["forward_batch"] == 4
    a, b = _grids(tmp_path / "fb4", fb4), _grids(tmp_path / "fb4b", again)
    assert all(np.array_equal(a[k], b[k]) for k in a)               # same forward batch: same clips
    bf16 = _cli(world, tmp_path / "bf16", "--precision", "bf16")
    assert bf16["runs"][-1]["precision"] == "bf16"
    ref = _grids(tmp_path / "bf16", bf16)
    assert set(ref) == set(a) and all(r.shape == a[k].shape for k, r in ref.items())
