"""The generation pipeline (generate.run → generate.encode → generate.publish): the forward batch per device and
in the manifest, the same files and manifest order whatever the encoder pool, a failing encode that names its clip
and publishes nothing, one sync pass per run (fsyncs counted), and files that honour the umask."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import generate.run as run
from gan.generator import VideoGenerator
from generate.encode import encode_workers_for
from generate.sampler import forward_batch_for
from generate.targets import Target
from generate.writers import ClipEncodeError

SMALL = dict(cond_dim=8, frames=4, height=16, width=16, content_dim=16, motion_noise_dim=4, w_dim=32, embed_dim=8,
             mapping_layers=2, channels=(32, 32, 16, 16), motion_kwargs={"hidden": 16})
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return VideoGenerator(**SMALL).eval().requires_grad_(False)


def _targets(n: int = 3) -> list[Target]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, SMALL["cond_dim"])).astype(np.float32)
    return [Target(f"u{i}", "embedding", v / np.linalg.norm(v)) for i, v in enumerate(vectors)]


def _generate(generator, out: Path, workers, **kw) -> dict:
    kw = {"forward_batch": 4, "formats": ["mp4", "grid"], **kw}
    return run.generate_to_folders(generator, {"sha256": "test"}, _targets(), SEEDS, out, progress=False,
                                   encode_workers=workers, **kw)


def _files(out: Path, manifest: dict) -> list[tuple[str, int, str, str]]:
    """(user, seed, format, sha256) of every listed file, in manifest order."""
    return [(e["user"], e["seed"], fmt, hashlib.sha256((out / e["folder"] / name).read_bytes()).hexdigest())
            for e in manifest["clips"] for fmt, name in e["files"].items()]


def test_forward_batch_is_chosen_per_device_and_recorded(generator, tmp_path):
    assert forward_batch_for("cpu") == 8 and forward_batch_for("cuda") == forward_batch_for("cuda:1") == 64
    assert forward_batch_for("cuda", 16) == forward_batch_for("cpu", 16) == 16      # --forward-batch overrides
    assert encode_workers_for("cuda", 3) == 3 and encode_workers_for("cuda") >= 1
    with pytest.raises(ValueError, match="--encode-workers must be >= 0"):
        encode_workers_for("cpu", -1)
    m = _generate(generator, tmp_path / "auto", 0, forward_batch=None, batch_size=64, formats=["grid"])
    assert m["runs"][-1]["forward_batch"] == 8 and m["runs"][-1]["batch_size"] == 64   # not the batch size
    assert m["runs"][-1]["encode_workers"] == 0


def test_same_files_and_order_whatever_the_pool(generator, tmp_path):
    """Pool 0 (in process), 1 and 2 worker processes write byte-identical mp4 and PNG files, listed in job order;
    the timings keep the forwards, the encoders' work and the wall time apart."""
    runs = {w: _generate(generator, tmp_path / f"pool{w}", w) for w in (0, 1, 2)}
    files = {w: _files(tmp_path / f"pool{w}", m) for w, m in runs.items()}
    assert [(u, s) for u, s, fmt, _ in files[0] if fmt == "mp4"] == [(t.name, s) for t in _targets() for s in SEEDS]
    assert files[0] == files[1] == files[2]
    assert len({h for *_, h in files[0]}) == len(files[0])          # and the clips do differ from one another
    for w, m in runs.items():
        r = m["runs"][-1]
        assert r["encode_workers"] == w and r["forward_batch"] == 4
        t = r["timings"]
        assert {"generate_s", "write_s", "encode_s", "sync_s", "total_s", "clips_per_s"} <= set(t)
        assert t["write_s"] >= t["sync_s"] >= 0 and t["encode_s"] > 0


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_encode_names_the_clip_and_publishes_nothing(generator, tmp_path, monkeypatch, workers):
    out = tmp_path / "out"
    _generate(generator, out, 0, formats=["grid"])
    before = (out / "manifest.json").read_bytes()
    real_child_dir = run.child_dir

    def child_dir(root, name, create=True):     # a folder where u1's seed-1 mp4 must go: its encoder fails there
        folder = real_child_dir(root, name, create)
        if name == "u1":
            (folder / f"{folder.name}-seed0001.mp4").mkdir()
        return folder

    monkeypatch.setattr(run, "child_dir", child_dir)
    with pytest.raises(ClipEncodeError, match="target 'u1' seed 1"):
        _generate(generator, out, workers)
    assert (out / "manifest.json").read_bytes() == before           # the published state is untouched
    assert len(list((out / "runs").iterdir())) == 1                 # no second run folder
    assert not any((out / ".staging").iterdir())                    # and no staging folder left behind


def test_one_sync_pass_per_run_and_files_honour_the_umask(generator, tmp_path, monkeypatch):
    """fsyncs per published run = its files + its folders (staging + one per target) + runs/ + the manifest and
    OUTDIR: no per-file fsync while writing (pool 0 encodes in this process, so its writes are counted too)."""
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    old = os.umask(0o022)
    try:
        for workers in (0, 2):
            calls.clear()
            out = tmp_path / f"pool{workers}"
            m = _generate(generator, out, workers)
            files = [out / e["folder"] / name for e in m["clips"] for name in e["files"].values()]
            assert len(files) == 2 * len(_targets()) * len(SEEDS)
            assert len(calls) == len(files) + (1 + len(_targets())) + 1 + 2, workers
            assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o644)}
    finally:
        os.umask(old)
    assert json.loads((out / "manifest.json").read_text())["runs"][-1]["timings"]["sync_s"] >= 0
