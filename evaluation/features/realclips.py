"""The dataset's real clips with their attribute labels, decoded once at the evaluation size.

Used by the domain classifier (training, real accuracy), the engagement model (clip tokens) and the
personalisation metrics (revealed preferences). Clips are decoded from a fixed start (frame 0) so that every
run sees the same frames.
"""
from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import sys

from data.io import track
from data.contract import attribute_columns, load_dataset
from data.video import VideoError, read_clip


def decode_or_skip(path, clip_id: str, skipped: list[dict], **read_kw) -> np.ndarray | None:
    """read_clip(path, **read_kw), or None after noting {clip_id, file, reason} in `skipped` when the file does not
    decode: evaluation skips such clips and counts them, as training does (`reelgan-data check` lists them)."""
    try:
        return read_clip(path, **read_kw)
    except VideoError as err:
        skipped.append({"clip_id": str(clip_id), "file": str(path), "reason": err.problem})
        return None


def say_skipped(skipped: list[dict], where: str) -> None:
    """One line on stderr: how many clips were skipped, the first one and why."""
    if skipped:
        first = skipped[0]
        print(f"warning: {where}: skipped {len(skipped)} clip(s) that do not decode (e.g. {first['clip_id']}: "
              f"{first['file']}: {first['reason']}); `reelgan-data check` lists them", file=sys.stderr)


@dataclass
class RealClips:
    """Decoded clips and their labels.

    video: uint8 (N, T, C, H, W); attributes: {name: [value per clip]}; vocab: {name: [values in class order]}.
    """

    root: Path
    clip_ids: list[str]
    product_ids: list[str]
    video: torch.Tensor
    attributes: dict[str, list[str]]
    vocab: dict[str, list[str]]
    skipped: list[dict] | None = None   # clips that did not decode: {clip_id, file, reason}

    def __len__(self) -> int:
        return len(self.clip_ids)

    def labels(self) -> dict[str, torch.Tensor]:
        """{attribute: long (N,)} class indices in `vocab` order."""
        out = {}
        for name, values in self.attributes.items():
            index = {v: i for i, v in enumerate(self.vocab[name])}
            out[name] = torch.tensor([index[v] for v in values], dtype=torch.long)
        return out


def attribute_vocab(root: Path, clips: pd.DataFrame, names: list[str]) -> dict[str, list[str]]:
    """Vocabulary per attribute: world.json's order when the dataset has one (synthetic), else sorted values."""
    world = {}
    wpath = Path(root) / "world.json"
    if wpath.is_file():
        world = json.loads(wpath.read_text()).get("attributes", {}) or {}
    vocab = {}
    for name in names:
        seen = sorted({str(v) for v in clips[name] if str(v) != ""})
        declared = [str(v) for v in world.get(name, [])]
        extra = [v for v in seen if v not in declared]
        vocab[name] = declared + extra if declared else seen
    return vocab


def load_real_clips(root: str | os.PathLike, frames: int, height: int, width: int,
                    attributes: list[str] | None = None, progress: bool = False,
                    rows: Sequence[int] | None = None, sample: int | None = None, seed: int = 0) -> RealClips:
    """Decode every clip of DATASET/clips.csv (or only `rows`, 0-based row indices) → RealClips (uint8 (N, T, C, H, W)).

    attributes: which attribute columns to label (default: all non-reserved columns of clips.csv).
    rows: a subset to decode, so that a large catalogue is not decoded to use a few clips.
    sample: decode a seeded random subset of this many rows (`seed`) instead (the dataset files are read once either way).
    A clip with a missing attribute value is an error naming the row and the fix.
    """
    root = Path(root)
    clips = load_dataset(root).clips
    if sample is not None:
        rows = np.random.default_rng(seed).permutation(len(clips))[:sample]
    if rows is not None:
        clips = clips.iloc[sorted(int(r) for r in rows)]   # keeps the index: errors name the csv row
    paths = [Path(f) for f in clips["file"]]
    names = list(attributes) if attributes is not None else attribute_columns(clips)
    if not names:
        raise ValueError(f"{root / 'clips.csv'}: no attribute columns (e.g. category, colour, pattern); "
                         "the domain classifier needs at least one labelled attribute column")
    for name in names:
        if name not in clips.columns:
            raise ValueError(f"{root / 'clips.csv'}: attribute column {name!r} is missing; "
                             f"columns are {list(clips.columns)}")
        missing = clips.index[clips[name].astype(str).str.strip() == ""].tolist()
        if missing:
            raise ValueError(f"{root / 'clips.csv'}: row {missing[0] + 2} has no value in column {name!r}; "
                             "fill it in or remove the row")
    videos, kept, skipped = [], [], []
    for i, path in enumerate(track(paths, "decode real clips", progress)):
        arr = decode_or_skip(path, clips["clip_id"].iloc[i], skipped, num_frames=frames, stride=1, start=0,
                             size=(height, width))
        if arr is not None:
            videos.append(torch.from_numpy(arr).permute(0, 3, 1, 2))  # (T, H, W, C) → (T, C, H, W)
            kept.append(i)
    if not videos:
        raise ValueError(f"{root / 'clips.csv'}: no clip decodes (e.g. {skipped[0]['file']}: {skipped[0]['reason']}); "
                         "run `reelgan-data check` and fix the files")
    say_skipped(skipped, f"{root}")
    vocab = attribute_vocab(root, clips, names)
    clips = clips.iloc[kept]
    product = clips["product_id"] if "product_id" in clips.columns else clips["clip_id"]
    return RealClips(
        root=root,
        clip_ids=[str(c) for c in clips["clip_id"]],
        product_ids=[str(p) for p in product],
        video=torch.stack(videos),
        attributes={n: [str(v) for v in clips[n]] for n in names},
        vocab=vocab,
        skipped=skipped,
    )


def split_by_product(product_ids: list[str], val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/val split that keeps all clips of one product on the same side (no leakage).

    A product goes to val when a seeded hash of its id falls below `val_fraction`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    u = np.array([(zlib.crc32(f"{seed}:{p}".encode()) % 10_000) / 10_000 for p in product_ids])
    val = u < val_fraction
    if val.all() or not val.any():  # tiny sets: fall back to a seeded permutation of products
        products = sorted(set(product_ids))
        rng = np.random.default_rng(seed)
        k = max(1, min(len(products) - 1, round(val_fraction * len(products))))
        chosen = set(rng.permutation(products)[:k].tolist())
        val = np.array([p in chosen for p in product_ids])
    return np.flatnonzero(~val), np.flatnonzero(val)
