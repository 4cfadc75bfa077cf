"""Atomic manifest writes: a writer killed (or failing) mid-write leaves the old manifest intact."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from data.io import write_bytes as atomic_write_bytes
from data.io import write_json as atomic_write_json
from generate.manifest import MANIFEST_FORMAT, condition_hash, load_manifest, merge_manifest

OLD = {"format": MANIFEST_FORMAT, "runs": [{"n": 1}], "clips": [{"folder": "u1", "seed": 0}]}


def test_killed_writer_leaves_old_manifest(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, OLD)
    before = path.read_bytes()
    # A real process writes a large manifest chunk by chunk, says when it is half-way, and is SIGKILLed there.
    code = textwrap.dedent(f"""
        import sys, time
        from data.io import write_bytes as atomic_write_bytes
        def chunks():
            for i in range(1000):
                yield (b'{{"clips": [' if i == 0 else b'') + b'{{"seed": %d}},' % i * 200
                if i == 500:
                    sys.stdout.write('half\\n'); sys.stdout.flush()
                    time.sleep(60)
        atomic_write_bytes({str(path)!r}, chunks())
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "half"
        tmp_files = [p for p in tmp_path.iterdir() if ".tmp" in p.name]
        assert tmp_files and tmp_files[0].stat().st_size > 100_000  # it really was mid-write
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    assert load_manifest(path) == OLD


def test_failing_writer_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, OLD)

    def chunks():
        yield b'{"half": '
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, chunks())
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        atomic_write_json(path, {"bad": object()})
    assert load_manifest(path) == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_corrupt_manifest_is_named(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"format": "reelgan-generate-manifest/1", "clips": [')
    with pytest.raises(ValueError, match="manifest.json is not valid JSON"):
        load_manifest(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a reelgan-generate manifest"):
        load_manifest(path)
    assert load_manifest(tmp_path / "absent.json") is None


def test_merge_replaces_same_clip_and_keeps_others():
    m = merge_manifest(OLD, {"n": 2}, [{"folder": "u1", "seed": 0, "v": 2}, {"folder": "u2", "seed": 0}])
    assert len(m["runs"]) == 2 and len(m["clips"]) == 2
    assert {"folder": "u1", "seed": 0, "v": 2} in m["clips"]


def test_condition_hash_is_exact():
    v = np.array([0.6, 0.8], np.float32)
    assert condition_hash(v) == condition_hash(v.astype(np.float64))
    assert condition_hash(v) != condition_hash(np.nextafter(v, 1))


def test_atomic_write_honours_umask_and_refuses_nan(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write_json(tmp_path / "m.json", OLD)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # 0666 & ~umask, as open() would give; not mkstemp's 0600
    with pytest.raises(ValueError, match="Out of range float"):
        atomic_write_json(tmp_path / "m.json", {"value": float("nan")})
    assert load_manifest(path) == OLD
