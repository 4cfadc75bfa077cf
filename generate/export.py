"""`reelgan-generate export`: the EMA generator and its config as one safetensors file (no pickle anywhere).

Layout: tensors = the generator's state_dict (parameters and buffers, e.g. the average style code used by
truncation); metadata (str → str) = {"format", "generator_config" (JSON), "embeddings_hash", "source_sha256",
"source"}. Loading rebuilds `gan.generator.VideoGenerator(**config)` and loads the tensors strictly, so a clip from
the export is bit-identical to the same clip from the checkpoint (tests/test_generate_export.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from data.io import atomic_path
from data.io import file_sha256

EXPORT_FORMAT = "reelgan-generator/1"


def export_generator(checkpoint: str | Path, out: str | Path) -> dict:
    """Checkpoint (.ckpt) → safetensors at `out`, written atomically. Returns what was written."""
    from generate.loading import load_generator

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: the export must end in .safetensors")
    generator, info = load_generator(checkpoint, device="cpu")
    # clone(): safetensors refuses tensors that share storage, and a state_dict may alias (tied weights)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in generator.state_dict().items()}
    metadata = {
        "format": EXPORT_FORMAT,
        "generator_config": json.dumps(info["config"], sort_keys=True),
        "embeddings_hash": str(info.get("embeddings_hash") or ""),
        "source_sha256": str(info.get("sha256") or ""),
        "source": Path(checkpoint).name,
    }
    with atomic_path(out) as tmp:  # temp file beside `out`, then os.replace
        save_file(tensors, str(tmp), metadata=metadata)
    return {"path": str(out), "sha256": file_sha256(out), "tensors": len(tensors),
            "parameters": int(sum(v.numel() for v in tensors.values())), **metadata}


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

    from gan.generator import VideoGenerator

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
            "embeddings_hash": meta.get("embeddings_hash") or None, "source_sha256": meta.get("source_sha256")}
    return generator, info
