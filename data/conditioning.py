"""Who may condition which clip, the train/val split, and the randomness of one draw: shared by the folder
datamodule and the shard format, so both give the same kind of item.

A clip's conditioning users are its positive train interactions (click or stronger) by users who are not held
out and who have a preference vector; a user is drawn in proportion to the strength of their strongest event.
"""
from __future__ import annotations

import numpy as np

from data.contract import EVENT_WEIGHTS, Dataset, attribute_columns

POSITIVE_MIN_WEIGHT = EVENT_WEIGHTS["click"]  # a view is exposure, not preference
MAX_ATTRIBUTE_VALUES = 64  # a column with more distinct values is an id or free text, not a product attribute


def attribute_vocabulary(clips) -> dict[str, list[str]]:
    """clips.csv → {attribute column: sorted values}: the columns beyond the contract's ids with 2 to
    MAX_ATTRIBUTE_VALUES distinct non-empty values (category, colour, pattern in the synthetic world)."""
    vocab = {}
    for column in attribute_columns(clips):  # not ids, not the import's provenance (fit, rotation, ...)
        values = sorted({str(v) for v in clips[column] if str(v).strip()})
        if 2 <= len(values) <= MAX_ATTRIBUTE_VALUES:
            vocab[column] = values
    return vocab


def attribute_labels_of(attributes: dict, vocab: dict[str, list[str]]) -> tuple[int, ...]:
    """A clip's {attribute: value} → one class index per vocabulary attribute, -1 where it has no known value."""
    return tuple(vocab[a].index(str(attributes[a])) if str(attributes.get(a)) in vocab[a] else -1 for a in vocab)


def conditioning_entries(ds: Dataset, user_ids) -> tuple[list[dict], int]:
    """One entry per clip that has a conditioning user: {clip_id, file, product_id, attributes, users, probs}.

    Returns (entries in clips.csv order, number of clips without any conditioning user).
    """
    inter = ds.interactions
    pos = inter[inter["valid"] & (inter["split"] == "train") & (inter["weight"] >= POSITIVE_MIN_WEIGHT)]
    pos = pos[~pos["user_id"].isin(ds.heldout_users) & pos["user_id"].isin(set(user_ids))]
    pos = pos.groupby(["clip_id", "user_id"], as_index=False)["weight"].max()
    by_clip = {c: g for c, g in pos.groupby("clip_id")}
    attributes = attribute_columns(ds.clips)
    entries, no_condition = [], 0
    for clip in ds.clips.to_dict("records"):
        g = by_clip.get(clip["clip_id"])
        if g is None:
            no_condition += 1
            continue
        w = g["weight"].to_numpy(np.float64)
        entries.append({"clip_id": clip["clip_id"], "file": clip["file"], "product_id": clip["product_id"],
                        "attributes": {c: clip[c] for c in attributes},
                        "users": list(g["user_id"]), "probs": w / w.sum()})
    return entries, no_condition


def split_entries(entries: list[dict], clips, val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """By product (all clips of a product on one side), or by clips.csv `split` when it names val clips."""
    if "split" in clips.columns and (clips["split"] == "val").any():
        val_ids = set(clips.loc[clips["split"] == "val", "clip_id"])
        return [e for e in entries if e["clip_id"] not in val_ids], [e for e in entries if e["clip_id"] in val_ids]
    products = sorted({e["product_id"] for e in entries})
    rng = np.random.default_rng([seed, 7])
    n_val = int(round(val_fraction * len(products)))
    if val_fraction > 0 and len(products) > 1:
        n_val = min(max(n_val, 1), len(products) - 1)
    val_products = set(rng.permutation(products)[:n_val].tolist()) if n_val else set()
    return ([e for e in entries if e["product_id"] not in val_products],
            [e for e in entries if e["product_id"] in val_products])


def draw_rng(seed: int, index: int, epoch: int | None) -> np.random.Generator:
    """The randomness of one item (start frame, conditioning user): a pure function of (seed, epoch, index), so
    a resumed run, another worker count or another rank layout draws exactly the same item.
    epoch=None: an evaluation draw, fixed per index."""
    return np.random.default_rng([seed, index] if epoch is None else [seed, epoch, index])


def make_item(clip: np.ndarray, rng: np.random.Generator, users: list[str], probs, condition_of, clip_id: str,
              labels: tuple[int, ...]):
    """clip uint8 (T, H, W, C) → (uint8 (T, C, H, W), condition (E,), user_id, clip_id, attribute labels int64 (A,)),
    all numpy; condition_of(user) → its condition row.

    Items stay uint8 (4x less to copy between processes) and numpy: `data.datamodule.collate` makes one tensor per
    field. With data.num_workers 0 items are made in the training process, where per-item torch ops would add
    dozens of dispatches to every batch.
    """
    pick = int(rng.choice(len(users), p=probs))
    return (np.ascontiguousarray(clip.transpose(0, 3, 1, 2)), np.asarray(condition_of(users[pick])), users[pick],
            clip_id, np.asarray(labels, dtype=np.int64))
