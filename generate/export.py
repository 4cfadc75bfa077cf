"""`reelgan-generate export`: the EMA generator and its config as one safetensors file (no pickle anywhere).

Layout: tensors = the generator's state_dict (its parameters and persistent buffers; the truncation anchor codes
are a non-persistent buffer, rebuilt identically from a fixed seed, so they are not in the file); metadata
(str → str) = {"format", "generator_config" (JSON), "embeddings_hash", "source_sha256", "source"}. Loading
(generate.loading.load_exported) rebuilds `gan.generator.VideoGenerator(**config)` and loads the tensors strictly,
so a clip from the export is bit-identical to the same clip from the checkpoint (tests/test_generate_export.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from data.io import atomic_path, file_sha256
from generate.loading import EXPORT_FORMAT, load_exported, load_generator, read_export_metadata

__all__ = ["EXPORT_FORMAT", "export_generator", "load_exported", "read_export_metadata"]


def export_generator(checkpoint: str | Path, out: str | Path) -> dict:
    """Checkpoint (.ckpt) → safetensors at `out`, written atomically. Returns what was written."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: the export must end in .safetensors")
    generator, info = load_generator(checkpoint, device="cpu")
    return save_generator(generator, out, info.get("embeddings_hash"), info.get("sha256"), Path(checkpoint).name,
                          info.get("trained_against"))


def save_generator(generator, out: str | Path, embeddings_hash: str | None = None, source_sha256: str | None = None,
                   source: str = "", trained_against: list[str] | None = None) -> dict:
    """A VideoGenerator (weights + .config) → safetensors at `out`, atomically; what `export` writes."""
    out = Path(out)
    # clone(): safetensors refuses tensors that share storage, and a state_dict may alias (tied weights)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in generator.state_dict().items()}
    metadata = {
        "format": EXPORT_FORMAT,
        "generator_config": json.dumps(generator.config, sort_keys=True),
        "embeddings_hash": str(embeddings_hash or ""),
        "source_sha256": str(source_sha256 or ""),
        "source": source,
        "trained_against": ",".join(trained_against or []),  # feature networks that trained G
    }
    with atomic_path(out) as tmp:  # temp file beside `out`, then os.replace
        save_file(tensors, str(tmp), metadata=metadata)
    return {"path": str(out), "sha256": file_sha256(out), "tensors": len(tensors),
            "parameters": int(sum(v.numel() for v in tensors.values())), **metadata}
