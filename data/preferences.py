"""User preference embeddings: vectors keyed by id, saved as safetensors with their ids and provenance.

Stored vectors are the raw factors (MF or imported); `conditions(ids)` returns them L2-normalised, which is the
one conditioning convention of ReelGAN (docs/INTERFACES.md). The fitter lives in data.bpr, imports in
data.embedding_import.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from data.io import atomic_path

FORMAT = "reelgan.preferences/1"


def vectors_hash(user_ids, user_vectors, item_ids, item_vectors) -> str:
    """sha256 over ids and float32 little-endian vectors: the identity of an embedding set."""
    h = hashlib.sha256()
    for ids, vecs in ((user_ids, user_vectors), (item_ids, item_vectors)):
        h.update(json.dumps(list(ids)).encode())
        h.update(np.ascontiguousarray(vecs, dtype="<f4").tobytes())
    return h.hexdigest()


class PreferenceEmbeddings:
    """user_vectors: float32 (U, E); item_vectors: float32 (I, E) or (0, E) when imported without items."""

    def __init__(self, user_ids, user_vectors, item_ids=(), item_vectors=None, source: str = "unknown",
                 meta: dict | None = None):
        self.user_ids = [str(u) for u in user_ids]
        # C order: safetensors writes an array's memory as it lies, and the hash reads it row by row, so a
        # Fortran-order import (pandas .to_numpy, a transposed .npy) would be stored scrambled
        self.user_vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
        if self.user_vectors.ndim != 2 or len(self.user_ids) != len(self.user_vectors):
            raise ValueError(f"user_vectors must be (U, E) with U = len(user_ids) = {len(self.user_ids)}, "
                             f"got {self.user_vectors.shape}")
        self.item_ids = [str(i) for i in item_ids]
        dim = self.user_vectors.shape[1]
        self.item_vectors = (np.zeros((0, dim), np.float32) if item_vectors is None
                             else np.ascontiguousarray(item_vectors, dtype=np.float32))
        if self.item_vectors.shape != (len(self.item_ids), dim):
            raise ValueError(f"item_vectors must be ({len(self.item_ids)}, {dim}), got {self.item_vectors.shape}")
        if len(set(self.user_ids)) != len(self.user_ids):
            raise ValueError("user_ids contain duplicates")
        self.source = source
        self.meta = dict(meta or {})
        self._index = {u: i for i, u in enumerate(self.user_ids)}
        self.hash = vectors_hash(self.user_ids, self.user_vectors, self.item_ids, self.item_vectors)

    @property
    def dim(self) -> int:
        return int(self.user_vectors.shape[1])

    def __contains__(self, user_id) -> bool:
        return str(user_id) in self._index

    def index(self, user_id) -> int:
        try:
            return self._index[str(user_id)]
        except KeyError:
            raise KeyError(f"user {user_id!r} has no preference vector (source {self.source}); "
                           f"known users: {len(self.user_ids)}. Fix: refit with `reelgan-data embed` or use a "
                           "persona") from None

    def nonfinite_users(self) -> list[str]:
        """Ids whose vector holds NaN or Inf (such a condition poisons the first training step)."""
        return [self.user_ids[i] for i in np.flatnonzero(~np.isfinite(self.user_vectors).all(axis=1))]

    def normalised(self) -> np.ndarray:
        """All user vectors, L2-normalised: float32 (U, E)."""
        norm = np.linalg.norm(self.user_vectors, axis=1, keepdims=True)
        return self.user_vectors / np.maximum(norm, 1e-12)

    def conditions(self, user_ids) -> torch.Tensor:
        """float32 (N, E), L2-normalised: the GAN condition for each user id."""
        rows = [self.index(u) for u in user_ids]
        return torch.from_numpy(self.normalised()[rows]).float()

    def closest_ids(self, user_id, k: int = 10) -> list[str]:
        """The k users whose condition vectors are most cosine-similar to `user_id`'s (itself excluded)."""
        vecs = self.normalised()
        i = self.index(user_id)
        sims = vecs @ vecs[i]
        sims[i] = -np.inf
        order = np.argsort(-sims, kind="stable")[: max(0, min(k, len(sims) - 1))]
        return [self.user_ids[j] for j in order]

    def item_scores(self, user_id) -> np.ndarray:
        """Raw MF scores of every item for one user: float32 (I,) (items in `item_ids` order)."""
        if len(self.item_ids) == 0:
            raise ValueError(f"embeddings from {self.source} have no item vectors, so they cannot score items")
        scores = self.item_vectors @ self.user_vectors[self.index(user_id)]
        if "item_bias" in self.meta:
            scores = scores + np.asarray(self.meta["item_bias"], np.float32)
        return scores

    # ---- files -------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Atomic safetensors write: vectors as tensors, ids and provenance in the header metadata."""
        path = Path(path)
        meta = {k: v for k, v in self.meta.items() if k != "item_bias"}
        tensors = {"user_vectors": self.user_vectors, "item_vectors": self.item_vectors}
        if "item_bias" in self.meta:
            tensors["item_bias"] = np.ascontiguousarray(self.meta["item_bias"], np.float32)
        header = {"format": FORMAT, "user_ids": json.dumps(self.user_ids), "item_ids": json.dumps(self.item_ids),
                  "source": self.source, "dim": str(self.dim), "hash": self.hash, "meta": json.dumps(meta)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=header)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PreferenceEmbeddings":
        path = Path(path)
        header = read_header(path)
        with safe_open(str(path), framework="np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(header.get("meta", "{}"))
        if "item_bias" in tensors:
            meta["item_bias"] = tensors["item_bias"]
        emb = cls(json.loads(header["user_ids"]), tensors["user_vectors"], json.loads(header["item_ids"]),
                  tensors["item_vectors"], source=header.get("source", "unknown"), meta=meta)
        if header.get("hash") and header["hash"] != emb.hash:
            raise ValueError(f"{path}: stored hash {header['hash'][:12]} does not match its vectors "
                             f"({emb.hash[:12]}): the file was altered. Fix: rerun `reelgan-data embed`")
        return emb


def read_header(path: str | Path) -> dict:
    """The metadata of a preferences file without loading its vectors (dim, hash, source, ids as JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no preference embeddings. Fix: run `reelgan-data embed DATASET` first "
                                "(it writes DATASET/embeddings/preferences.safetensors)")
    try:
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ValueError(f"{path}: not a safetensors file ({e}). Fix: rerun `reelgan-data embed`") from e
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a ReelGAN preferences file (format {header.get('format')!r}, expected "
                         f"{FORMAT!r}). Fix: write it with `reelgan-data embed` (use --import for external vectors)")
    return header
