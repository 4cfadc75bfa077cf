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
from gan.build import check_weights, expected_state_shapes, generator_from_checkpoint
from gan.image_discriminators import TRAINED_AGAINST
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
        raise ValueError(f"{path}: cannot be read as a weights-only checkpoint ({type(err).__name__}: "
                         f"{str(err)[:300]}). Fix: use a checkpoint written by reelgan-train (or re-save it)") from None
    try:
        generator = generator_from_checkpoint(ckpt)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"this is not a valid ReelGAN checkpoint: {path}: {err}. Fix: use "
                         "RUN/checkpoints/last.ckpt of a `reelgan-train fit` run") from None
    reel = ckpt["reelgan"]
    info = {"path": str(path), "kind": "lightning-ckpt", "sha256": file_sha256(path),
            "config": dict(generator.config), "embeddings_hash": reel.get("embeddings_hash", ""),
            "images_seen": int(reel.get("images_seen", 0)), "global_step": int(ckpt.get("global_step", 0))}
    # A projected (or hybrid) D trained G against these feature networks: a metric built on them is a biased judge.
    hp = ckpt.get("hyper_parameters") or {}
    info["trained_against"] = list(TRAINED_AGAINST.get(hp.get("d_image_kind", "conv"), []))
    # How the training clips were read (LightningCLI keeps the datamodule's arguments): evaluation defaults to the
    # same frame stride, so real clips are compared at the motion speed the generator learned.
    dm = ckpt.get("datamodule_hyper_parameters") or {}
    info["training"] = {k: dm[k] for k in ("frames", "stride", "height", "width") if isinstance(dm.get(k), int)}
    return generator.to(device), info


class InvalidExport(ValueError):
    """A file that is not a usable ReelGAN export: the message says why and how to get a good one."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"this is not a valid ReelGAN export: {path}: {reason}. Fix: re-export it with "
                         "`reelgan-generate export --checkpoint RUN/checkpoints/last.ckpt --out X.safetensors`")


def read_export_metadata(path: str | Path) -> dict:
    """The metadata of an exported generator; a file that is not one raises InvalidExport."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise InvalidExport(path, f"not a readable safetensors file ({e})") from None
    if meta.get("format") != EXPORT_FORMAT:
        raise InvalidExport(path, f"not a ReelGAN generator export (format {meta.get('format')!r}, expected "
                                  f"{EXPORT_FORMAT!r})")
    return meta


def load_exported(path: str | Path, device: str = "cpu"):
    """Exported safetensors → (VideoGenerator in eval mode on `device`, info dict like load_generator's).

    Checked before anything is built: the config (known keys, sizes within gan.build.LIMITS), then the tensor
    names and shapes from the header, then the values (finite). Any failure raises InvalidExport.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_export_metadata(path)
    if "generator_config" not in meta:
        raise InvalidExport(path, "its metadata has no generator_config")
    try:
        config = json.loads(meta["generator_config"])
        shapes = expected_state_shapes(config)
        with safe_open(str(path), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        wrong = {k: (stored.get(k), v) for k, v in shapes.items() if stored.get(k) != v}
        if wrong or set(stored) - set(shapes):
            raise ValueError(f"its tensors do not fit generator_config (name: stored vs needed "
                             f"{dict(list(wrong.items())[:5])}, unexpected {sorted(set(stored) - set(shapes))[:5]})")
        state = load_file(str(path), device="cpu")
        check_weights(state, config)
    except json.JSONDecodeError as err:
        raise InvalidExport(path, f"generator_config is not JSON ({err})") from None
    except ValueError as err:
        raise InvalidExport(path, str(err)) from None
    except Exception as err:  # safetensors' own errors for truncated data
        raise InvalidExport(path, f"its tensors cannot be read ({type(err).__name__}: {err})") from None
    generator = VideoGenerator(**config)
    generator.load_state_dict(state, strict=True)
    generator.eval().requires_grad_(False).to(device)
    info = {"path": str(path), "kind": "export", "sha256": file_sha256(path), "config": dict(generator.config),
            "embeddings_hash": meta.get("embeddings_hash") or None, "source_sha256": meta.get("source_sha256"),
            "trained_against": [n for n in meta.get("trained_against", "").split(",") if n]}
    return generator, info
