"""ProductClipDataModule: (video, condition, user_id, clip_id) batches for conditional video GAN training.

video: float (B, T, C, H, W) in [-1, 1]; condition: float32 (B, E), L2-normalised preference vector of a user
drawn from the clip's positive train interactions (click or stronger), in proportion to the strength of the
user's strongest event on it. Held-out users (users.csv split=heldout) and test interactions never condition.
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.context import get_spawning_popen
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from data.contract import CLIP_COLUMNS, EVENT_WEIGHTS, ID_COLUMNS, DatasetError, load_dataset, read_csv
from data.preferences import PreferenceEmbeddings, read_header
from data.tensors import uint8_to_model
from data.video import VideoError, decode_frames, read_clip, sample_frames

POSITIVE_MIN_WEIGHT = EVENT_WEIGHTS["click"]  # a view is exposure, not preference
DEFAULT_EMBEDDINGS = Path("embeddings") / "preferences.safetensors"


class ClipConditionDataset(Dataset):
    """Items (uint8 video (T, C, H, W), condition (E,), user_id, clip_id) of one split.

    train=True: a random start and user per draw; otherwise a fixed start and user per index.
    """

    def __init__(self, entries: list[dict], conditions: np.ndarray, frames: int, stride: int,
                 size: tuple[int, int], train: bool, seed: int, cache: dict | None, skipped):
        self.entries, self.conditions = entries, conditions
        self.frames, self.stride, self.size, self.train, self.seed = frames, stride, size, train, seed
        self.cache, self.skipped = cache, skipped
        self._warned: set[str] = set()
        self._generator = torch.Generator().manual_seed(seed)  # main-process draws (num_workers=0)

    def __len__(self) -> int:
        return len(self.entries)

    def _rng(self, index: int) -> np.random.Generator:
        if self.train:
            # In a worker, torch's RNG is seeded from the DataLoader generator (itself seeded by `seed`); in the
            # main process the dataset's own generator is used. Either way a seed gives the same draws.
            gen = None if get_worker_info() is not None else self._generator
            return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen).item()))
        return np.random.default_rng([self.seed, index])

    def _clip(self, entry: dict, rng) -> np.ndarray:
        start = None if self.train else 0
        if self.cache is not None:
            frames = self.cache[entry["clip_id"]]
            return sample_frames(frames, len(frames), self.frames, self.stride, start, rng, path=entry["file"])
        return read_clip(entry["file"], self.frames, self.stride, start=start, rng=rng, size=self.size)

    def __getitem__(self, index: int):
        for attempt in range(len(self.entries)):
            entry = self.entries[(index + attempt) % len(self.entries)]
            rng = self._rng(index + attempt)
            try:
                clip = self._clip(entry, rng)
            except VideoError as e:
                self._skip(entry, e)
                continue
            pick = rng.choice(len(entry["users"]), p=entry["probs"])
            user_row = entry["rows"][pick]
            # Items stay uint8 (T, C, H, W) (4x less to copy between processes); `collate` makes the float batch.
            return torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous(), \
                torch.from_numpy(self.conditions[user_row]), \
                entry["users"][pick], entry["clip_id"], torch.tensor(entry["labels"], dtype=torch.long)
        raise RuntimeError("every clip in this split failed to decode; run `reelgan-data check DATASET`")

    def __getstate__(self) -> dict:
        return _portable_counter(self.__dict__, "skipped")

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(_restore_counter(state, "skipped"))

    def _skip(self, entry: dict, error: Exception) -> None:
        with self.skipped.get_lock():
            self.skipped.value += 1
        if entry["file"] not in self._warned:
            self._warned.add(entry["file"])
            warnings.warn(f"skipping clip {entry['clip_id']}: {error}", RuntimeWarning, stacklevel=2)


def _portable_counter(state: dict, key: str) -> dict:
    """A shared counter pickles only while spawning a child (which then shares it); any other pickle
    (ddp_spawn, deepcopy) carries its current value and gets a fresh counter."""
    state = dict(state)
    if get_spawning_popen() is None:
        state[key] = int(state[key].value)
    return state


def _restore_counter(state: dict, key: str) -> dict:
    if isinstance(state[key], int):
        state = {**state, key: mp.Value("i", state[key])}
    return state


def collate(batch):
    """Items → (video float (B, T, C, H, W) in [-1, 1], condition (B, E), user_ids list[str], clip_ids list[str],
    attribute labels long (B, A), -1 where a clip has no value)."""
    videos, conditions, users, clips, labels = zip(*batch)
    return uint8_to_model(torch.stack(videos)), torch.stack(conditions), list(users), list(clips), torch.stack(labels)


MAX_ATTRIBUTE_VALUES = 64  # a column with more distinct values is an id or free text, not a product attribute


def attribute_vocabulary(clips) -> dict[str, list[str]]:
    """clips.csv → {attribute column: sorted values}: the columns beyond the contract's ids with 2 to
    MAX_ATTRIBUTE_VALUES distinct non-empty values (category, colour, pattern in the synthetic world)."""
    vocab = {}
    for column in clips.columns:
        if column in ID_COLUMNS or column in ("file",):
            continue
        values = sorted({str(v) for v in clips[column] if str(v).strip()})
        if 2 <= len(values) <= MAX_ATTRIBUTE_VALUES:
            vocab[column] = values
    return vocab


class ProductClipDataModule(pl.LightningDataModule):
    """Product clips paired with the preference vectors of users who engaged with them."""

    def __init__(self, root: str, frames: int = 16, stride: int = 1, height: int = 64, width: int = 64,
                 batch_size: int = 16, num_workers: int = 0, seed: int = 0, embeddings: str | None = None,
                 cache_clips: bool = True, val_fraction: float = 0.1, attribute_labels: bool = True):
        """
        Args:
            root: dataset folder (clips.csv, interactions.csv, [users.csv], clips/).
            frames: frames per clip (T).
            stride: step between sampled frames.
            height: frame height after scale-to-cover and centre crop.
            width: frame width (non-square allowed).
            batch_size: clips per batch.
            num_workers: DataLoader worker processes (each opens its own decoders).
            seed: seed of the train/val split, the shuffling and the per-item sampling.
            embeddings: preferences.safetensors; default ROOT/embeddings/preferences.safetensors.
            cache_clips: decode every clip once at setup and keep its frames (at most max(4 spans, 128)) in memory.
            val_fraction: fraction of products whose clips go to validation.
            attribute_labels: serve each clip's product attributes (clips.csv columns) as labels for the model's
                attribute head; their vocabulary sizes are linked to model.attribute_classes.
        """
        super().__init__()
        self.save_hyperparameters()
        if frames < 1 or stride < 1 or height < 1 or width < 1 or batch_size < 1:
            raise ValueError("frames, stride, height, width and batch_size must all be >= 1")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root = Path(root)
        self.frames, self.stride, self.size = frames, stride, (height, width)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.cache_clips, self.val_fraction = cache_clips, val_fraction
        self.embeddings_path = Path(embeddings) if embeddings else self.root / DEFAULT_EMBEDDINGS
        header = read_header(self.embeddings_path)  # header only: cheap, and enough for LightningCLI links
        self.embedding_dim = int(header["dim"])
        self.embeddings_hash = header["hash"]
        # Product attributes (clips.csv columns) for the model's attribute head: their sizes are linked to the model.
        self.attribute_vocab = attribute_vocabulary(read_csv(self.root / "clips.csv", CLIP_COLUMNS)) \
            if attribute_labels else {}
        self.attribute_classes = [len(v) for v in self.attribute_vocab.values()]
        self._skipped = mp.Value("i", 0)
        self.skipped_files: list[str] = []
        self.stats: dict = {}
        self.train_dataset = self.val_dataset = None

    def __getstate__(self) -> dict:
        return _portable_counter(self.__dict__, "_skipped")

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(_restore_counter(state, "_skipped"))
        for dataset in (self.train_dataset, self.val_dataset):
            if dataset is not None:
                dataset.skipped = self._skipped

    @property
    def skipped_clips(self) -> int:
        """Clips skipped because they failed to decode (at cache time or in any worker)."""
        return int(self._skipped.value)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        ds = load_dataset(self.root)
        emb = PreferenceEmbeddings.load(self.embeddings_path)
        if emb.hash != self.embeddings_hash:
            raise RuntimeError(f"{self.embeddings_path} changed since this datamodule was built; rebuild it")
        broken = emb.nonfinite_users()
        if broken:
            raise DatasetError(f"{self.embeddings_path}: {len(broken)} user vector(s) hold NaN or Inf (e.g. "
                               f"{', '.join(repr(u) for u in broken[:3])}), so their clips cannot condition the GAN. "
                               f"Fix: refit with `reelgan-data embed {self.root}` (or fix and re-import those rows); "
                               f"`reelgan-data check {self.root}` lists the problems")
        inter = ds.interactions
        pos = inter[inter["valid"] & (inter["split"] == "train") & (inter["weight"] >= POSITIVE_MIN_WEIGHT)]
        pos = pos[~pos["user_id"].isin(ds.heldout_users) & pos["user_id"].isin(set(emb.user_ids))]
        pos = pos.groupby(["clip_id", "user_id"], as_index=False)["weight"].max()
        by_clip = {c: g for c, g in pos.groupby("clip_id")}
        index = {a: {v: i for i, v in enumerate(vocab)} for a, vocab in self.attribute_vocab.items()}
        codes = [ds.clips[a].astype(str).map(index[a]).fillna(-1).astype(int).tolist() if a in ds.clips else
                 [-1] * len(ds.clips) for a in index]
        labels_of = dict(zip(ds.clips["clip_id"], zip(*codes))) if codes else \
            {c: () for c in ds.clips["clip_id"]}
        entries, no_condition = [], 0
        for clip in ds.clips.itertuples():
            g = by_clip.get(clip.clip_id)
            if g is None:
                no_condition += 1
                continue
            w = g["weight"].to_numpy(np.float64)
            entries.append({"labels": labels_of[clip.clip_id], "clip_id": clip.clip_id, "file": clip.file, "product_id": clip.product_id,
                            "users": list(g["user_id"]), "rows": [emb.index(u) for u in g["user_id"]],
                            "probs": w / w.sum()})
        cache = self._build_cache(entries) if self.cache_clips else None
        if cache is not None:
            entries = [e for e in entries if e["clip_id"] in cache]
        if not entries:
            raise RuntimeError(f"{self.root}: no usable clips (decodable and with a positive train interaction by "
                               "a non-held-out user). Fix: run `reelgan-data check` and `reelgan-data embed`")
        train, val = self._split(entries, ds.clips)
        conditions = emb.normalised()
        args = (conditions, self.frames, self.stride, self.size)
        self.train_dataset = ClipConditionDataset(train, *args, True, self.seed, cache, self._skipped)
        self.val_dataset = ClipConditionDataset(val, *args, False, self.seed, cache, self._skipped)
        self.stats = {"clips": len(ds.clips), "train_clips": len(train), "val_clips": len(val),
                      "clips_without_positive_user": no_condition, "skipped_clips": self.skipped_clips,
                      "conditioning_users": int(pos["user_id"].nunique())}

    def _split(self, entries: list[dict], clips) -> tuple[list[dict], list[dict]]:
        """By product (all clips of a product on one side), or by clips.csv `split` when it names val clips."""
        if "split" in clips.columns and (clips["split"] == "val").any():
            val_ids = set(clips.loc[clips["split"] == "val", "clip_id"])
            return [e for e in entries if e["clip_id"] not in val_ids], [e for e in entries if e["clip_id"] in val_ids]
        products = sorted({e["product_id"] for e in entries})
        rng = np.random.default_rng([self.seed, 7])
        n_val = int(round(self.val_fraction * len(products)))
        if self.val_fraction > 0 and len(products) > 1:
            n_val = min(max(n_val, 1), len(products) - 1)
        val_products = set(rng.permutation(products)[:n_val].tolist()) if n_val else set()
        return ([e for e in entries if e["product_id"] not in val_products],
                [e for e in entries if e["product_id"] in val_products])

    def _build_cache(self, entries: list[dict]) -> dict[str, np.ndarray]:
        """clip_id → uint8 (N, H, W, C), every frame at the training size; corrupt clips are skipped and counted.

        Two threads: PyAV decodes without the GIL, so this roughly halves setup time on 2 cores.
        """
        # Long real videos: keep the first few spans only, so memory stays bounded (random starts within them).
        max_frames = max(4 * ((self.frames - 1) * self.stride + 1), 128)

        def decode(entry):
            try:
                frames, n, _ = decode_frames(entry["file"], self.size, max_frames=max_frames)
                return np.stack([frames[i] for i in range(n)]), None
            except VideoError as err:
                return None, err

        cache = {}
        with ThreadPoolExecutor(max_workers=2) as pool:
            for e, (frames, err) in zip(entries, pool.map(decode, entries)):
                if err is None:
                    cache[e["clip_id"]] = frames
                    continue
                with self._skipped.get_lock():
                    self._skipped.value += 1
                self.skipped_files.append(e["file"])
                warnings.warn(f"skipping clip {e['clip_id']}: {err}", RuntimeWarning, stacklevel=2)
        return cache

    def _loader(self, dataset, train: bool) -> DataLoader:
        if dataset is None:
            self.setup()
            dataset = self.train_dataset if train else self.val_dataset
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=train, num_workers=self.num_workers,
                          collate_fn=collate,
                          drop_last=train and len(dataset) >= self.batch_size,
                          generator=torch.Generator().manual_seed(self.seed) if train else None,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, False)
