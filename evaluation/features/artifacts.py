"""Saving and loading the evaluation models (domain classifier, engagement model) and JSON results.

A model file is one .safetensors: the tensors, plus string metadata
    format    which model and layout version ("reelgan-domain/1", "reelgan-engagement/1")
    config    JSON of the constructor kwargs (to rebuild the network without any YAML)
    sha256    hash of the tensors (names, dtypes, shapes, bytes), checked on load
    extra     JSON: how it was trained and what it measured
No pickle anywhere. Writes are atomic (data.io.atomic_path).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from data.io import atomic_path


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over sorted (name, dtype, shape, bytes): independent of file layout and metadata."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model_file(path: str | os.PathLike, fmt: str, tensors: dict[str, torch.Tensor], config: dict,
                    extra: dict | None = None) -> str:
    """Atomically write a model file; returns the tensors' sha256."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    digest = tensors_sha256(tensors)
    meta = {"format": fmt, "config": json.dumps(config, sort_keys=True), "sha256": digest,
            "extra": json.dumps(extra or {}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return digest


def load_model_file(path: str | os.PathLike, fmt: str) -> tuple[dict[str, torch.Tensor], dict, dict, str]:
    """Read a model file written by `save_model_file` → (tensors, config, extra, sha256).

    Refuses a missing file, a file of another format, and a file whose tensors do not match their hash.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"{path}: not a readable safetensors file ({e}); delete it and train it again") from e
    if meta.get("format") != fmt:
        raise ValueError(f"{path}: expected a {fmt!r} file, found format {meta.get('format')!r}")
    digest = tensors_sha256(tensors)
    if meta.get("sha256") != digest:
        raise ValueError(f"{path}: weights do not match their recorded sha256 (corrupt or edited); train it again")
    return tensors, json.loads(meta["config"]), json.loads(meta.get("extra", "{}")), digest
