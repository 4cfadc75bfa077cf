"""Generation runs into one --outdir: concurrent runs are all published, a killed run changes nothing.

Real `reelgan-generate` processes. Interleavings are forced with signals (SIGSTOP/SIGKILL sent once a clip file of
the run is on disk), never with sleeps, so the tests do not depend on the machine's speed.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data.preferences import PreferenceEmbeddings

import _tiny_gan as _tiny

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 840
CLIP_SUFFIXES = {".mp4", ".gif", ".png", ".webm"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    ids = [f"u{i:04d}" for i in range(6)]
    PreferenceEmbeddings(ids, rng.normal(size=(6, 8)), source="test").save(root / "preferences.safetensors")
    return {"ckpt": _tiny.tiny_checkpoint(), "prefs": root / "preferences.safetensors"}


def _cmd(world, out, user, seeds):
    return [sys.executable, "-m", "generate.cli", "--checkpoint", str(world["ckpt"]), "--preferences",
            str(world["prefs"]), "--outdir", str(out), "--no-progress", "--allow-embeddings-mismatch", "--user", user,
            "--seeds", seeds, "--format", "mp4"]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def _run(world, out, user, seeds):
    result = subprocess.run(_cmd(world, out, user, seeds), cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=WAIT_S)
    assert result.returncode == 0, result.stderr[-3000:]


def _start_and_wait_for_a_clip(world, out, user, seeds):
    before = set(_clip_files(out))
    proc = subprocess.Popen(_cmd(world, out, user, seeds), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + WAIT_S
    while not set(_clip_files(out)) - before:
        assert proc.poll() is None, f"the run ended before its first clip: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "no clip file within the time limit"
        time.sleep(0.02)
    return proc


def _clip_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.suffix in CLIP_SUFFIXES] if out.exists() else []


def _listed(out: Path) -> dict[Path, str]:
    """Every clip file the manifest lists → its sha256 (and each must exist)."""
    m = json.loads((out / "manifest.json").read_text())
    files = {}
    for e in m["clips"]:
        for name in e["files"].values():
            path = (out / e["folder"] / name).resolve()
            files[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _assert_tidy(out: Path) -> None:
    """Published state only: every clip file on disk is listed, no staging folder, no temp file."""
    assert {p.resolve() for p in _clip_files(out)} == set(_listed(out))
    assert not [p for p in out.rglob("*.tmp*")]
    assert not list((out / ".staging").iterdir()) if (out / ".staging").exists() else True


def test_concurrent_runs_into_one_outdir_are_both_listed(world, tmp_path):
    out = tmp_path / "out"
    slow = _start_and_wait_for_a_clip(world, out, "u0001", "0-59")
    os.kill(slow.pid, signal.SIGSTOP)                # run A is mid-way: it started before B and ends after it
    try:
        assert slow.poll() is None
        _run(world, out, "u0002", "0-3")            # run B starts and finishes meanwhile
    finally:
        os.kill(slow.pid, signal.SIGCONT)
    _, err = slow.communicate(timeout=WAIT_S)
    assert slow.returncode == 0, err.decode()[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["runs"]) == 2
    assert sorted({e["user"] for e in m["clips"]}) == ["u0001", "u0002"]
    assert len(m["clips"]) == 60 + 4
    _assert_tidy(out)


def test_a_killed_run_leaves_the_published_state_intact(world, tmp_path):
    out = tmp_path / "out"
    _run(world, out, "u0001", "0-3")
    manifest = (out / "manifest.json").read_bytes()
    published = _listed(out)
    (out / ".manifest.leftover.tmp.json").write_text("{")   # a temp file from an earlier crash

    proc = _start_and_wait_for_a_clip(world, out, "u0001", "0-59")  # re-makes the same clips, and more
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=WAIT_S)
    assert (out / "manifest.json").read_bytes() == manifest
    assert _listed(out) == published                  # the old clips: same files, same bytes

    _run(world, out, "u0003", "0-1")                  # the next run publishes and clears what the killed one left
    m = json.loads((out / "manifest.json").read_text())
    assert sorted((e["user"], e["seed"]) for e in m["clips"]) == [
        ("u0001", 0), ("u0001", 1), ("u0001", 2), ("u0001", 3), ("u0003", 0), ("u0003", 1)]
    assert {p: h for p, h in _listed(out).items() if p in published} == published
    _assert_tidy(out)


def test_a_rerun_replaces_its_clips_and_removes_the_superseded_run(world, tmp_path):
    out = tmp_path / "out"
    _run(world, out, "u0001", "0-1")
    first = json.loads((out / "manifest.json").read_text())["runs"][0]["run_id"]
    _run(world, out, "u0001", "0-1")
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["clips"]) == 2 and all(first not in e["folder"] for e in m["clips"])
    assert not (out / "runs" / first).exists()
    _assert_tidy(out)
