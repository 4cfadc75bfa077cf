"""ProductClipDataModule: (video, condition, user_id, clip_id) batches for conditional video GAN training.

video: float (B, T, C, H, W) in [-1, 1]; condition: float32 (B, E), L2-normalised preference vector of a user
drawn from the clip's positive train interactions (click or stronger), in proportion to the strength of the
user's strongest event on it. Held-out users (users.csv split=heldout) and test interactions never condition.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.context import get_spawning_popen
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from data.conditioning import (MAX_ATTRIBUTE_VALUES, POSITIVE_MIN_WEIGHT,  # noqa: F401 (re-exported)
                               attribute_labels_of, attribute_vocabulary, conditioning_entries, draw_rng, make_item,
                               split_entries)
from data.contract import CLIP_COLUMNS, DatasetError, load_dataset, read_csv
from data.preferences import PreferenceEmbeddings, read_header
from data.shards import EMBEDDINGS, ShardClipDataset, ShardError, ShardLoader, is_shard_folder, read_shard_info
from data.video import VideoError, decode_frames, read_clip, sample_frames

DEFAULT_EMBEDDINGS = EMBEDDINGS
# torchdata 0.11 calls a torch API deprecated since (torch.set_vital) each time a loader iterator starts
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")


class ClipConditionDataset(Dataset):
    """Items (uint8 video (T, C, H, W), condition (E,), user_id, clip_id) of one split of a dataset folder.

    train=True: indexed by (clip index, epoch) from EpochSampler, a random start and user per draw;
    otherwise indexed by clip index, a fixed start and user per index. Draws come from draw_rng.
    """

    def __init__(self, entries: list[dict], conditions: np.ndarray, user_rows: dict[str, int], frames: int,
                 stride: int, size: tuple[int, int], train: bool, seed: int, cache: dict | None, skipped):
        self.entries, self.conditions, self.user_rows = entries, conditions, user_rows
        self.frames, self.stride, self.size, self.train, self.seed = frames, stride, size, train, seed
        self.cache, self.skipped = cache, skipped
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def _clip(self, entry: dict, rng) -> np.ndarray:
        start = None if self.train else 0
        if self.cache is not None:
            frames = self.cache[entry["clip_id"]]
            return sample_frames(frames, len(frames), self.frames, self.stride, start, rng, path=entry["file"])
        return read_clip(entry["file"], self.frames, self.stride, start=start, rng=rng, size=self.size)

    def __getitem__(self, key):
        index, epoch = key if self.train else (key, None)
        for attempt in range(len(self.entries)):
            entry = self.entries[(index + attempt) % len(self.entries)]
            rng = draw_rng(self.seed, index + attempt, epoch)
            try:
                clip = self._clip(entry, rng)
            except VideoError as e:
                self._skip(entry, e)
                continue
            return make_item(clip, rng, entry["users"], entry["probs"],
                             lambda u: self.conditions[self.user_rows[u]], entry["clip_id"], entry["labels"])
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


class EpochSampler(DistributedSampler):
    """Yields (clip index, epoch): this rank's share of a permutation seeded by (seed, epoch).

    Lightning calls set_epoch before each epoch and, being a DistributedSampler, leaves it in place under DDP;
    the stateful loader replays it to the saved position on resume, so a resumed run sees the same items.
    """

    def __iter__(self):
        return ((index, self.epoch) for index in super().__iter__())


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
    """Items → (video uint8 (B, T, C, H, W), condition (B, E), user_ids list[str], clip_ids list[str], attribute
    labels long (B, A), -1 where a clip has no value).

    The video stays uint8 until it reaches the device (4× less to copy and pin); the model makes it float in
    [-1, 1] there (gan.module.ReelGAN.on_after_batch_transfer, with data.tensors.uint8_to_model)."""
    videos, conditions, users, clips, labels = zip(*batch)
    return (torch.from_numpy(np.stack(videos)), torch.from_numpy(np.stack(conditions)), list(users), list(clips),
            torch.from_numpy(np.stack(labels)))


class ProductClipDataModule(pl.LightningDataModule):
    """Product clips paired with the preference vectors of users who engaged with them.

    `root` is a dataset folder (decoded by the loader, or cached) or a shard folder written by
    `reelgan-data shard` (streamed with litdata: each rank and worker reads disjoint chunks). Both train loaders
    are stateful: Lightning stores their position in the checkpoint and a resumed run continues mid-epoch with
    the same items as an uninterrupted one.
    """

    def __init__(self, root: str, frames: int = 16, stride: int = 1, height: int = 64, width: int = 64,
                 batch_size: int = 16, num_workers: int = 0, seed: int = 0, embeddings: str | None = None,
                 cache_clips: bool = True, val_fraction: float = 0.1, attribute_labels: bool = True):
        """
        Args:
            root: dataset folder (clips.csv, interactions.csv, [users.csv], clips/) or shard folder.
            frames: frames per clip (T).
            stride: step between sampled frames.
            height: frame height after scale-to-cover and centre crop (a shard folder's own height).
            width: frame width (non-square allowed; a shard folder's own width).
            batch_size: clips per batch (per rank).
            num_workers: DataLoader worker processes (each opens its own decoders).
            seed: seed of the train/val split, the shuffling and the per-item sampling.
            embeddings: preferences.safetensors; default ROOT/embeddings/preferences.safetensors.
            cache_clips: dataset folder only: decode every clip once at setup and keep its frames (at most
                max(4 spans, 128)) in memory on every rank. For large catalogues use shards instead.
            val_fraction: dataset folder only: fraction of products whose clips go to validation (a shard
                folder's split is fixed when it is written).
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
        self.shard_info = read_shard_info(self.root) if is_shard_folder(self.root) else None
        if self.shard_info and (self.shard_info["height"], self.shard_info["width"]) != self.size:
            raise ShardError(f"{self.root}: shards hold {self.shard_info['height']}x{self.shard_info['width']} "
                             f"frames, data.height/width ask for {height}x{width}. Fix: set data.height "
                             f"{self.shard_info['height']} data.width {self.shard_info['width']}, or re-shard "
                             f"with --size {height}x{width}")
        self.embeddings_path = Path(embeddings) if embeddings else self.root / DEFAULT_EMBEDDINGS
        header = read_header(self.embeddings_path)  # header only: cheap, and enough for LightningCLI links
        self.embedding_dim = int(header["dim"])
        self.embeddings_hash = header["hash"]
        # Product attributes (clips.csv columns) for the model's attribute head: their sizes are linked to the model.
        vocab = self.shard_info["attribute_vocab"] if self.shard_info else \
            attribute_vocabulary(read_csv(self.root / "clips.csv", CLIP_COLUMNS))
        self.attribute_vocab = vocab if attribute_labels else {}
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
            if isinstance(dataset, ClipConditionDataset):
                dataset.skipped = self._skipped

    def preference_pairs(self) -> dict[str, torch.Tensor] | None:
        """The (shopper, clip attributes) pairs of the training stream with their probabilities, for fitting the
        model's p(attribute | shopper) head exactly: {conditions float32 (N, E), labels long (N, A), weights
        float64 (N,)}. A pair's weight is its share of the stream: 1/clips × the user's draw probability. None
        when there are no attribute labels, or the shards predate attributes in entries.json (re-shard)."""
        self.setup("fit")
        ds = self.train_dataset
        if not self.attribute_vocab or not isinstance(ds, (ClipConditionDataset, ShardClipDataset)):
            return None
        shards = isinstance(ds, ShardClipDataset)
        conditions, rows = (ds.reel_conditions, ds.reel_rows) if shards else (ds.conditions, ds.user_rows)
        picks, labels, weights = [], [], []
        entries = ds.entries
        for entry in entries:
            if "labels" in entry:
                lab = entry["labels"]
            elif "attributes" in entry:
                lab = attribute_labels_of(entry["attributes"], self.attribute_vocab)
            else:
                return None
            known = [(u, float(p)) for u, p in zip(entry["users"], entry["probs"]) if u in rows]
            total = sum(p for _, p in known)
            for user, p in known:
                picks.append(rows[user])
                labels.append(lab)
                weights.append(p / total / len(entries))
        if not picks:
            return None
        return {"conditions": torch.from_numpy(np.asarray(conditions)[picks]).float(),
                "labels": torch.tensor(labels, dtype=torch.long).reshape(len(picks), -1),
                "weights": torch.tensor(weights, dtype=torch.float64)}

    @property
    def skipped_clips(self) -> int:
        """Clips skipped because they failed to decode (at cache time or in any worker)."""
        return int(self._skipped.value)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        emb = PreferenceEmbeddings.load(self.embeddings_path)
        if emb.hash != self.embeddings_hash:
            raise RuntimeError(f"{self.embeddings_path} changed since this datamodule was built; rebuild it")
        broken = emb.nonfinite_users()
        if broken:
            raise DatasetError(f"{self.embeddings_path}: {len(broken)} user vector(s) hold NaN or Inf (e.g. "
                               f"{', '.join(repr(u) for u in broken[:3])}), so their clips cannot condition the GAN. "
                               f"Fix: refit with `reelgan-data embed {self.root}` (or fix and re-import those rows); "
                               f"`reelgan-data check {self.root}` lists the problems")
        user_rows = {u: i for i, u in enumerate(emb.user_ids)}
        if self.shard_info is not None:
            self._setup_shards(emb.normalised(), user_rows)
        else:
            self._setup_folder(emb.normalised(), user_rows)

    def _setup_shards(self, conditions: np.ndarray, user_rows: dict[str, int]) -> None:
        split = {name: self.root / name for name in ("train", "val") if (self.root / name / "index.json").is_file()}
        if "train" not in split:
            raise ShardError(f"{self.root}: no train shards. Fix: re-run `reelgan-data shard DATASET {self.root}`")
        args = (conditions, user_rows, self.attribute_vocab, self.frames, self.stride)
        self.train_dataset = ShardClipDataset(split["train"], *args, True, self.seed)
        self.val_dataset = ShardClipDataset(split["val"], *args, False, self.seed) if "val" in split else None
        counts = self.shard_info["clips"]
        self.stats = {"clips": counts["in_dataset"], "train_clips": counts["train"], "val_clips": counts["val"],
                      "clips_without_positive_user": counts["without_positive_user"],
                      "skipped_clips": counts["skipped"], "shards": str(self.root)}

    def _setup_folder(self, conditions: np.ndarray, user_rows: dict[str, int]) -> None:
        ds = load_dataset(self.root)
        entries, no_condition = conditioning_entries(ds, user_rows)
        for entry in entries:
            entry["labels"] = attribute_labels_of(entry["attributes"], self.attribute_vocab)
        cache = self._build_cache(entries) if self.cache_clips else None
        if cache is not None:
            entries = [e for e in entries if e["clip_id"] in cache]
        if not entries:
            raise DatasetError(f"{self.root}: no usable clips (decodable and with a positive train interaction by "
                               "a non-held-out user). Fix: run `reelgan-data check` and `reelgan-data embed`")
        train, val = split_entries(entries, ds.clips, self.val_fraction, self.seed)
        args = (conditions, user_rows, self.frames, self.stride, self.size)
        self.train_dataset = ClipConditionDataset(train, *args, True, self.seed, cache, self._skipped)
        self.val_dataset = ClipConditionDataset(val, *args, False, self.seed, cache, self._skipped)
        users = {u for e in entries for u in e["users"]}
        self.stats = {"clips": len(ds.clips), "train_clips": len(train), "val_clips": len(val),
                      "clips_without_positive_user": no_condition, "skipped_clips": self.skipped_clips,
                      "conditioning_users": len(users)}

    def _build_cache(self, entries: list[dict]) -> dict[str, np.ndarray]:
        """clip_id → uint8 (N, H, W, C), every frame at the training size; corrupt clips are skipped and counted.

        One thread per core: PyAV decodes without the GIL.
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
        with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
            for e, (frames, err) in zip(entries, pool.map(decode, entries)):
                if err is None:
                    cache[e["clip_id"]] = frames
                    continue
                with self._skipped.get_lock():
                    self._skipped.value += 1
                self.skipped_files.append(e["file"])
                warnings.warn(f"skipping clip {e['clip_id']}: {err}", RuntimeWarning, stacklevel=2)
        return cache

    @property
    def _pin(self) -> bool:
        """Pinned host memory when training on a GPU: the copy to the device is asynchronous and faster."""
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, train: bool):
        if self.train_dataset is None:
            self.setup()
        dataset = self.train_dataset if train else self.val_dataset
        if isinstance(dataset, ShardClipDataset) or dataset is None:
            dataset = dataset or []  # a shard folder written with no val split: an empty val loader
            if not len(dataset):
                return DataLoader([], batch_size=self.batch_size)
            return ShardLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                               collate_fn=collate, drop_last=train and len(dataset) >= self.batch_size,
                               pin_memory=self._pin, persistent_workers=self.num_workers > 0)
        drop_last = train and len(dataset) >= self.batch_size
        if not train:
            return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate,
                              persistent_workers=self.num_workers > 0, pin_memory=self._pin)
        replicas, rank = self._rank()
        sampler = EpochSampler(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=self.seed)
        return StatefulDataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                                  collate_fn=collate, drop_last=drop_last, persistent_workers=self.num_workers > 0,
                                  pin_memory=self._pin)

    def train_dataloader(self):
        return self._loader(True)

    def val_dataloader(self):
        return self._loader(False)
