"""Atomic writes and the generation manifest.

A reader (the slot, the report, a serving job) must never see half a manifest: every write goes to a temp file in
the same folder, is fsync'ed, then `os.replace`d over the target (atomic on POSIX within one filesystem). A writer
killed mid-way leaves the old file untouched and at worst a stray `.<name>.*.tmp`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "reelgan-generate-manifest/1"


def atomic_write_bytes(path: str | Path, chunks: bytes | Iterable[bytes]) -> Path:
    """Write bytes (or an iterable of chunks, for large outputs) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in [chunks] if isinstance(chunks, (bytes, bytearray)) else chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    # Serialise first: a TypeError must not leave a temp file behind, nor touch the old file.
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"manifest value of type {type(o).__name__} is not JSON-serialisable")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def condition_hash(condition: np.ndarray) -> str:
    """sha256 of the float32 condition vector (E,) as used by the generator: ties a clip to its exact input."""
    v = np.ascontiguousarray(np.asarray(condition, dtype=np.float32).reshape(-1))
    return hashlib.sha256(v.tobytes()).hexdigest()


def load_manifest(path: str | Path) -> dict | None:
    """The manifest at `path`, or None if there is none. A corrupt one raises naming the file."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it or choose another --outdir") from e
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a reelgan-generate manifest (format {data.get('format')!r}); "
                         "choose another --outdir")
    return data


def merge_manifest(old: dict | None, run: dict, entries: list[dict]) -> dict:
    """New run appended; entries replace old ones with the same (folder, seed), so re-runs never duplicate clips."""
    merged = {"format": MANIFEST_FORMAT, "runs": [], "clips": []}
    if old:
        merged["runs"] = list(old.get("runs", []))
        merged["clips"] = list(old.get("clips", []))
    fresh = {(e["folder"], e["seed"]) for e in entries}
    merged["clips"] = [e for e in merged["clips"] if (e["folder"], e["seed"]) not in fresh] + entries
    merged["runs"].append(run)
    return merged
