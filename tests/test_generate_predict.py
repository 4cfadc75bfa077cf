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
    """One publish path: a 2-process run into the outdir of a 1-process run writes the same clips in the same layout
    (runs/<run id>/<target>/…) through the same staging folder and manifest switch, and supersedes the first run."""
    out = tmp_path / "out"
    one = _cli(world, out)
    a = _grids(out, one)
    two = _cli(world, out, "--devices", "2", "--strategy", "ddp")
    b = _grids(out, two)
    assert len(a) == 15 and set(a) == set(b)
    for key in a:
        assert np.array_equal(a[key], b[key]), key                  # bit-identical per (user, seed)
    first, run = two["runs"]
    assert first["devices"] == 1 and run["devices"] == 2 and run["strategy"] == "DDPStrategy"
    assert sorted(r["rank"] for r in run["timings"]["per_rank"]) == [0, 1]   # two ranks wrote shards
    assert run["forward_batch"] == one["runs"][-1]["forward_batch"] == 8
    assert run["precision"] == "fp32"
    assert [(e["user"], e["seed"]) for e in two["clips"]] == [(e["user"], e["seed"]) for e in one["clips"]]
    layout = lambda m, rid: [e["folder"].replace(rid, "RUN") for e in m["clips"]]  # noqa: E731
    assert layout(two, run["run_id"]) == layout(one, first["run_id"]) == [
        f"runs/RUN/{e['user']}" for e in one["clips"]]
    assert {e["folder"].split("/")[1] for e in two["clips"]} == {run["run_id"]}
    # published by the run folder's switch: only the new run folder is left, no staging, no shard, no stray folder
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".staging", "manifest.json", "runs"]
    assert [p.name for p in (out / "runs").iterdir()] == [run["run_id"]] and not any((out / ".staging").iterdir())
    assert not list(out.rglob(".manifest-rank*.json")), "rank 0 removes the merged shards"
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "runs").rglob("*") if p.is_file())
    assert on_disk == sorted(f"{e['folder']}/{f}" for e in two["clips"] for f in e["files"].values())
    assert run["checkpoint"]["path"] == Path(world["ckpt"]).name    # no absolute path of this machine


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
