"""Load a trained generator from a file: a Lightning .ckpt written by `reelgan-train` (EMA weights), or a
.safetensors written by `reelgan-generate export` (read by load_exported below, no pickle).

Checkpoints are read with torch.load(weights_only=True): only tensors, numbers, strings, lists and dicts.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from data.io import file_sha256
from gan.build import generator_from_checkpoint
from gan.generator import VideoGenerator

EXPORT_FORMAT = "reelgan-generator/1"


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[VideoGenerator, dict]:
    """path to a ReelGAN .ckpt (or exported .safetensors) → (VideoGenerator in eval mode on `device`, info dict).

    info: sha256 (of the file), config (the generator's constructor kwargs), embeddings_hash, path, kind,
    images_seen, global_step, training ({frames, stride, height, width} of the training data, when recorded).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint. Fix: pass RUN/checkpoints/last.ckpt of a "
                                "`reelgan-train fit` run")
    if path.suffix == ".safetensors":
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
    # A projected D trained G against these feature networks: a metric built on them is a biased judge.
    hp = ckpt.get("hyper_parameters") or {}
    info["trained_against"] = ["effnet-lite0"] if hp.get("d_image_kind") == "projected" else []
    # How the training clips were read (LightningCLI keeps the datamodule's arguments): evaluation defaults to the
    # same frame stride, so real clips are compared at the motion speed the generator learned.
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    info["training"] = {k: dm[k] for k in ("frames", "stride", "height", "width") if isinstance(dm.get(k), int)}
    return generator.to(device), info


def read_export_metadata(path: str | Path) -> dict:
    """The metadata of an exported generator; a file that is not one raises naming the file and the fix."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path}: not a readable safetensors file ({e}); re-run `reelgan-generate export`") from e
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path}: not a ReelGAN generator export (format {meta.get('format')!r}, expected "
                         f"{EXPORT_FORMAT!r}); make one with `reelgan-generate export --checkpoint RUN/...ckpt --out X.safetensors`")
    return meta


def load_exported(path: str | Path, device: str = "cpu"):
    """Exported safetensors → (VideoGenerator in eval mode on `device`, info dict like generate.loading's)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_export_metadata(path)
    config = json.loads(meta["generator_config"])
    generator = VideoGenerator(**config)
    state = load_file(str(path), device="cpu")
    missing, unexpected = generator.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: tensors do not match the generator config (missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}); the export and this ReelGAN version disagree — re-export")
    generator.eval().requires_grad_(False).to(device)
    info = {"path": str(path), "kind": "export", "sha256": file_sha256(path), "config": config,
            "embeddings_hash": meta.get("embeddings_hash") or None, "source_sha256": meta.get("source_sha256"),
            "trained_against": [n for n in meta.get("trained_against", "").split(",") if n]}
    return generator, info
