"""Load a trained generator from a file: a Lightning .ckpt written by `reelgan-train` (EMA weights), or a
.safetensors written by `reelgan-generate export` (read by generate.export.load_exported, no pickle).

Checkpoints are read with torch.load(weights_only=True): only tensors, numbers, strings, lists and dicts.
"""
from __future__ import annotations

from pathlib import Path

import torch

from data.io import file_sha256
from gan.build import generator_from_checkpoint
from gan.generator import VideoGenerator


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[VideoGenerator, dict]:
    """path to a ReelGAN .ckpt (or exported .safetensors) → (VideoGenerator in eval mode on `device`, info dict).

    info: sha256 (of the file), config (the generator's constructor kwargs), embeddings_hash, path, kind,
    images_seen, global_step.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint. Fix: pass RUN/checkpoints/last.ckpt of a "
                                "`reelgan-train fit` run")
    if path.suffix == ".safetensors":
        from generate.export import load_exported

        return load_exported(path, device=device)
    if path.suffix != ".ckpt":
        raise ValueError(f"{path}: unsupported generator file type {path.suffix!r}; expected a Lightning .ckpt "
                         "or a .safetensors from `reelgan-generate export`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt zip, truncated write, or a pickle with arbitrary objects
        raise ValueError(f"{path}: cannot be read as a weights-only checkpoint ({type(err).__name__}: {err}). "
                         "Fix: use a checkpoint written by reelgan-train (or re-save it)") from err
    try:
        generator = generator_from_checkpoint(ckpt)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    reel = ckpt["reelgan"]
    info = {"path": str(path), "kind": "lightning-ckpt", "sha256": file_sha256(path),
            "config": dict(reel["generator_config"]), "embeddings_hash": reel.get("embeddings_hash", ""),
            "images_seen": int(reel.get("images_seen", 0)), "global_step": int(ckpt.get("global_step", 0))}
    return generator.to(device), info
