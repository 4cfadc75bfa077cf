"""The generation manifest: its format, loading, merging, and the condition hash that ties a clip to its input.

Written atomically with `data.io.write_json`, so a reader (the slot, the report, a serving job) never sees half a
manifest.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "reelgan-generate-manifest/1"


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


def clip_key(entry: dict) -> tuple[str, int]:
    """(target folder name, seed): one listed clip per target and seed, whichever run made it."""
    return Path(entry["folder"]).name, entry["seed"]


def merge_manifest(old: dict | None, run: dict, entries: list[dict]) -> dict:
    """New run appended; entries replace old ones with the same target and seed, so re-runs never duplicate
    clips."""
    merged = {"format": MANIFEST_FORMAT, "runs": [], "clips": []}
    if old:
        merged["runs"] = list(old.get("runs", []))
        merged["clips"] = list(old.get("clips", []))
    fresh = {clip_key(e) for e in entries}
    merged["clips"] = [e for e in merged["clips"] if clip_key(e) not in fresh] + entries
    merged["runs"].append(run)
    return merged
