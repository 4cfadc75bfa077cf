"""Clip shards: a dataset folder decoded once into litdata's streaming format, for training past one machine.

OUT/
  reelgan-shards.json         format, sizes, counts, split, attribute vocabulary, the embeddings hash, where it
                              came from
  embeddings/preferences.safetensors   copied from the dataset, so the shard folder is all training needs
  train/  val/                litdata chunks (index.json + chunk-*.bin): one item per clip =
                              {video uint8 (N, H, W, C), clip_id, product_id, attributes (JSON), users (JSON),
                               probs float64 (U,)}; and entries.json: the split's clips without video (clip_id,
                              source file, product_id, users, probs), for callbacks that pick users and clips

Why litdata (docs/data.md): its StreamingDataset gives each rank and worker disjoint chunks, and its
StreamingDataLoader is stateful, so Lightning resumes mid-epoch from the checkpoint.
"""
from __future__ import annotations

import ctypes
import glob
import json
import os
import re
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from litdata import StreamingDataLoader, StreamingDataset, optimize
from litdata.streaming.sampler import ChunkedIndex

from data.io import write_json
from data.conditioning import (attribute_labels_of, attribute_vocabulary, conditioning_entries, draw_rng, make_item,
                               split_entries)
from data.contract import load_dataset
from data.preferences import PreferenceEmbeddings
from data.video import VideoError, decode_frames, sample_frames

FORMAT = "reelgan-shards/1"
INFO_FILE = "reelgan-shards.json"
EMBEDDINGS = Path("embeddings") / "preferences.safetensors"
SPLITS = ("train", "val")
ENTRIES = "entries.json"


class ShardError(ValueError):
    """A shard folder cannot be used; the message names the file and the fix."""


# The litdata data formats `write_shards` writes (video and probs: numpy arrays; the rest: str). Any other one
# (pickle, and the serializers that unpickle, torch.load or import on read) is refused before litdata opens a chunk.
DATA_FORMATS = re.compile(r"numpy|str|no_header_numpy:\d+")


def is_shard_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / INFO_FILE).is_file()


def _leaf_names(spec, n: int) -> list[str]:
    """The item field of each data_format entry (`write_shards` items are flat dicts), else `data_format[i]`."""
    try:
        keys = json.loads(json.loads(spec)[1]["context"]) if isinstance(spec, str) else None
    except (ValueError, TypeError, KeyError, IndexError):
        keys = None
    if isinstance(keys, list) and len(keys) == n:
        return [f"field {k!r}" for k in keys]
    return [f"data_format[{i}]" for i in range(n)]


def check_split_index(split_dir: str | os.PathLike) -> None:
    """Refuse a split whose index.json declares anything `reelgan-data shard` does not write: shard folders come
    from shared buckets, and litdata deserialises each field by the format its index.json names (`pickle` runs
    code). Called before litdata reads index.json or opens a chunk; raises ShardError naming the file and field."""
    file = Path(split_dir) / "index.json"
    fix = "use shards you made with `reelgan-data shard DATASET OUT`, or re-make them from a dataset you trust"
    try:
        index = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ShardError(f"{file}: unreadable ({err}). Fix: {fix}")
    config = index.get("config") if isinstance(index, dict) else None
    if not isinstance(config, dict) or not isinstance(index.get("chunks"), list) or "shards" in index:
        raise ShardError(f"{file}: not a litdata chunk index as `reelgan-data shard` writes (`config` and `chunks`). "
                         f"Fix: {fix}")
    formats = config.get("data_format")
    if not isinstance(formats, list) or not formats:
        raise ShardError(f"{file}: config.data_format is missing. Fix: {fix}")
    for name, fmt in zip(_leaf_names(config.get("data_spec"), len(formats)), formats):
        if not isinstance(fmt, str) or not DATA_FORMATS.fullmatch(fmt):
            raise ShardError(f"{file}: {name} has data format {fmt!r}; ReelGAN shards hold only numpy, str and "
                             f"no_header_numpy fields, and a shard folder must never run code. Fix: {fix}")
    for key in ("compression", "encryption"):
        if config.get(key) is not None:
            raise ShardError(f"{file}: config.{key} is {config[key]!r}; `reelgan-data shard` writes none. Fix: {fix}")
    for chunk in index["chunks"]:
        name = chunk.get("filename") if isinstance(chunk, dict) else None
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise ShardError(f"{file}: chunk filename {name!r} is not a file name inside {Path(split_dir).name}/. "
                             f"Fix: {fix}")


def read_shard_info(path: str | os.PathLike) -> dict:
    """The shard folder's reelgan-shards.json, checked, with every split's index.json (check_split_index)."""
    file = Path(path) / INFO_FILE
    try:
        info = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ShardError(f"{file}: unreadable ({err}). Fix: re-run `reelgan-data shard DATASET {path}`")
    if info.get("format") != FORMAT:
        raise ShardError(f"{file}: format {info.get('format')!r}, expected {FORMAT!r}. "
                         f"Fix: re-run `reelgan-data shard DATASET {path}` with this version")
    if isinstance(info.get("source"), str):  # the dataset it came from: relative to the shard folder since v0.3
        info["source"] = str((Path(path) / info["source"]).resolve())
    for split in SPLITS:  # the splits the datamodule opens
        if (Path(path) / split / "index.json").is_file():
            check_split_index(Path(path) / split)
    return info


def _die_with_parent(parent: int) -> None:
    """In a process other than `parent` (the `reelgan-data shard` process): be SIGKILLed when its parent dies
    (Linux prctl PR_SET_PDEATHSIG), and exit now if `parent` already has. Without it, a SIGKILLed run leaves its
    litdata workers running as orphans that keep writing into the partial folder."""
    if os.getpid() == parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if not _alive(parent):  # it died before prctl
        os._exit(1)


class _ClipItems:
    """litdata's fn: one clip → zero items (it does not decode: warned, counted later) or one item. Every process
    litdata spawns (workers, chunk writers) unpickles it first, and from then on dies with its parent."""

    def __init__(self, entries: list[dict], size: tuple[int, int], max_frames: int):
        self.entries, self.size, self.max_frames, self.parent = entries, size, max_frames, os.getpid()

    def __setstate__(self, state: dict) -> None:  # (multiprocessing.parent_process() is not set yet here)
        self.__dict__.update(state)
        _die_with_parent(self.parent)

    def __call__(self, index: int):
        yield from _clip_item(index, self.entries, self.size, self.max_frames)


def _clip_item(index: int, entries: list[dict], size: tuple[int, int], max_frames: int):
    entry = entries[index]
    try:
        frames, n, _ = decode_frames(entry["file"], size, max_frames=max_frames)
    except VideoError as err:
        warnings.warn(f"skipping clip {entry['clip_id']}: {err}", RuntimeWarning, stacklevel=2)
        return
    yield {"video": np.stack([frames[i] for i in range(n)]), "clip_id": entry["clip_id"],
           "product_id": entry["product_id"], "attributes": json.dumps(entry["attributes"]),
           "users": json.dumps(entry["users"]), "probs": np.asarray(entry["probs"], np.float64)}


def _count_items(split_dir: Path) -> int:
    index = json.loads((split_dir / "index.json").read_text())
    return int(sum(chunk["chunk_size"] for chunk in index["chunks"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_dead_partials(out: Path) -> None:
    """Remove `.OUT.partial-<pid>` and `.OUT.old-<pid>` folders of runs whose process is gone (a SIGKILL leaves
    them; an old folder goes back to OUT if the run died between its two renames); those of a live run (another
    `reelgan-data shard` into OUT) are left alone."""
    for folder in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-*")):
        kind, _, pid = folder.name[len(out.name) + 2:].rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if kind == "old" and not out.exists():
            os.replace(folder, out)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def write_shards(dataset: str | os.PathLike, out: str | os.PathLike, size: tuple[int, int], max_frames: int = 128,
                 clips_per_chunk: int = 64, val_fraction: float = 0.0, seed: int = 0, workers: int = 1,
                 embeddings: str | os.PathLike | None = None) -> dict:
    """Decode, resize and write every conditionable clip of DATASET into OUT; returns the info written.

    Safe to re-run: the shards are built in a temporary sibling folder that replaces OUT only when complete, and
    an existing OUT is replaced only if it is a shard folder.
    """
    dataset, out = Path(dataset), Path(out)
    _remove_dead_partials(out)
    if out.exists() and any(out.iterdir()) and not is_shard_folder(out):
        raise ShardError(f"{out}: exists and is not a ReelGAN shard folder (no {INFO_FILE}). "
                         "Fix: choose a new or empty output folder")
    if clips_per_chunk < 1 or max_frames < 1:
        raise ValueError("clips_per_chunk and max_frames must be >= 1")
    started = time.perf_counter()
    emb_path = Path(embeddings) if embeddings else dataset / EMBEDDINGS
    if not emb_path.is_file():
        raise ShardError(f"{emb_path}: not found. Fix: run `reelgan-data embed {dataset}` first")
    ds = load_dataset(dataset)
    emb = PreferenceEmbeddings.load(emb_path)
    entries, no_condition = conditioning_entries(ds, emb.user_ids)
    if not entries:
        raise ShardError(f"{dataset}: no clip has a positive train interaction by a non-held-out user. "
                         "Fix: run `reelgan-data check` and `reelgan-data embed`")
    splits = dict(zip(SPLITS, split_entries(entries, ds.clips, val_fraction, seed)))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()     # before any worker starts: a run killed at any point leaves its partial folder for the next
    try:
        counts = {}
        for name, part in splits.items():
            counts[name] = 0
            if not part:
                continue
            work = _ClipItems(part, tuple(size), max_frames)
            # inputs are row numbers (not paths): litdata must not treat the clip files as its own inputs
            optimize(fn=work, inputs=list(range(len(part))), output_dir=str(tmp / name),
                     chunk_size=clips_per_chunk, num_workers=max(1, workers), reorder_files=False,
                     keep_data_ordered=True, start_method="spawn")
            counts[name] = _count_items(tmp / name)
            write_json(tmp / name / ENTRIES, [{"clip_id": e["clip_id"], "file": e["file"], "product_id": e["product_id"],
                                               "users": e["users"], "probs": [float(p) for p in e["probs"]],
                                               "attributes": {k: str(v) for k, v in e["attributes"].items()}}
                                              for e in part])
        (tmp / EMBEDDINGS).parent.mkdir(parents=True)
        shutil.copy2(emb_path, tmp / EMBEDDINGS)
        # relative to OUT (read_shard_info makes it absolute again): no absolute path of this machine in the file
        info = {"format": FORMAT, "source": os.path.relpath(dataset.resolve(), out.resolve()),
                "height": int(size[0]), "width": int(size[1]),
                "max_frames": max_frames, "clips_per_chunk": clips_per_chunk, "seed": seed,
                "val_fraction": val_fraction, "clips": {**counts, "in_dataset": len(ds.clips),
                                                        "without_positive_user": no_condition,
                                                        "skipped": sum(map(len, splits.values())) - sum(counts.values())},
                "attribute_vocab": attribute_vocabulary(ds.clips),
                "embeddings": {"path": str(EMBEDDINGS), "hash": emb.hash, "dim": emb.dim, "source": emb.source},
                "seconds": round(time.perf_counter() - started, 2)}
        write_json(tmp / INFO_FILE, info)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


class ShardClipDataset(StreamingDataset):
    """A split of a shard folder as training items (uint8 video (T, C, H, W), condition (E,), user_id, clip_id).

    litdata assigns disjoint chunks to each rank and worker and shuffles per epoch from `seed`; the start frame
    and the conditioning user come from data.conditioning.draw_rng, so the stream is a function of the seed.
    """

    def __init__(self, split_dir: str | os.PathLike, conditions: np.ndarray, user_rows: dict[str, int],
                 attribute_vocab: dict[str, list[str]], frames: int, stride: int, train: bool, seed: int):
        check_split_index(split_dir)
        super().__init__(input_dir=str(split_dir), shuffle=train, drop_last=train, seed=seed)
        # prefixed names: litdata's own attributes (seed, shuffle, transform, ...) must stay untouched
        self.reel_conditions, self.reel_rows, self.reel_vocab = conditions, user_rows, attribute_vocab
        self.reel_frames, self.reel_stride, self.reel_train, self.reel_seed = frames, stride, train, seed
        self.reel_dir = str(split_dir)

    @property
    def entries(self) -> list[dict]:
        """The split's clips without video (clip_id, source file, product_id, users, probs, attributes; shards
        written before attributes were added lack them), read on first use: what train.callbacks.SampleGrid picks
        its shoppers and real clips from, and ProductClipDataModule.preference_pairs reads."""
        if getattr(self, "_reel_entries", None) is None:
            self._reel_entries = json.loads((Path(self.reel_dir) / ENTRIES).read_text())
        return self._reel_entries

    def __getitem__(self, index):
        item = super().__getitem__(index)
        number = index.index if isinstance(index, ChunkedIndex) else int(index)
        rng = draw_rng(self.reel_seed, number, self.current_epoch if self.reel_train else None)
        video = item["video"]
        clip = sample_frames(video, len(video), self.reel_frames, self.reel_stride,
                             None if self.reel_train else 0, rng, path=f"{self.reel_dir}:{item['clip_id']}")
        users, probs = json.loads(item["users"]), item["probs"]
        known = [i for i, u in enumerate(users) if u in self.reel_rows]
        if not known:
            raise ShardError(f"{self.reel_dir}: clip {item['clip_id']} has no conditioning user in these embeddings. "
                             "Fix: re-shard with the embeddings you train with (`reelgan-data shard --embeddings`)")
        if len(known) < len(users):
            users, probs = [users[i] for i in known], probs[known] / probs[known].sum()
        labels = attribute_labels_of(json.loads(item["attributes"]), self.reel_vocab)
        return make_item(clip, rng, users, probs, lambda u: self.reel_conditions[self.reel_rows[u]], item["clip_id"],
                         labels)


class ShardLoader(StreamingDataLoader):
    """litdata's StreamingDataLoader, for Lightning's resume: after `load_state_dict`, litdata replays the saved
    position on every new iterator until one runs to its end, but Lightning stops an epoch after len(loader)
    batches without exhausting it, so the resumed epoch would be replayed. Here only the first iterator after a
    restore replays it; the next one starts the next epoch, as in an uninterrupted run."""

    def __iter__(self):
        if getattr(self, "_reel_replayed", False):
            self.restore = False
        self._reel_replayed = bool(self.restore)
        return super().__iter__()
