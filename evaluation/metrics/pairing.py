"""Real clips and the conditions to generate their fake counterparts with, drawn the way training draws them.

A real clip is paired with a user among its click-or-stronger train interactions, in proportion to the event
strength (as data.datamodule does; held-out users never condition), or with a random train user when nobody
clicked it. Generating one fake clip per pair gives real and fake sets with the same condition mix.
"""
from __future__ import annotations

import numpy as np
import torch

from data.contract import EVENT_WEIGHTS
from evaluation.metrics.stats import rank_and_world
from evaluation.features.realclips import decode_or_skip, say_skipped


def sample_clip_ids(ds, n: int, rng: np.random.Generator) -> list[str]:
    """A seeded subset of min(n, catalogue) clip ids, in catalogue order."""
    ids = list(ds.clips["clip_id"])
    n = min(int(n), len(ids))
    if n < 2:
        raise ValueError(f"{ds.root / 'clips.csv'}: need at least 2 clips for Fréchet statistics, have {len(ids)}")
    return [ids[i] for i in sorted(rng.permutation(len(ids))[:n])]


def paired_conditions(ds, embeddings, clip_ids: list[str], rng: np.random.Generator) -> tuple[torch.Tensor, list[str]]:
    """One condition per clip → (float32 (N, E) L2-normalised, user ids)."""
    inter = ds.interactions[ds.interactions["valid"] & (ds.interactions["split"] == "train")]
    inter = inter[~inter["user_id"].isin(ds.heldout_users) & inter["user_id"].isin(set(embeddings.user_ids))]
    pos = inter[inter["weight"] >= EVENT_WEIGHTS["click"]].groupby(["clip_id", "user_id"])["weight"].max()
    clicked = set(pos.index.get_level_values(0))
    train_users = sorted(set(inter["user_id"]))
    if not train_users:
        raise ValueError(f"{ds.root / 'interactions.csv'}: no train user with a preference vector to condition on")
    users = []
    for c in clip_ids:
        if c in clicked:
            w = pos.loc[c]
            users.append(str(rng.choice(w.index.to_numpy(), p=(w / w.sum()).to_numpy())))
        else:
            users.append(str(rng.choice(train_users)))
    return embeddings.conditions(users), users


def decode_clips(ds, clip_ids: list[str], frames: int, stride: int, size: tuple[int, int],
                 skipped: list[dict] | None = None) -> torch.Tensor:
    """Decode clips from frame 0 → uint8 (N', T, C, H, W) (the metrics input layout). Clips that do not decode
    are left out and noted in `skipped` (and on stderr), as training skips them; N' ≥ 2 or ValueError."""
    files = dict(zip(ds.clips["clip_id"], ds.clips["file"]))
    skipped = [] if skipped is None else skipped
    arrays = [decode_or_skip(files[c], c, skipped, num_frames=frames, stride=stride, start=0, size=size)
              for c in clip_ids]
    clips = [torch.from_numpy(a).permute(0, 3, 1, 2) for a in arrays if a is not None]
    if len(clips) < min(2, len(clip_ids)):  # a batch of one (the last of a split) is fine when it decodes
        raise ValueError(f"{ds.root / 'clips.csv'}: only {len(clips)} of {len(clip_ids)} sampled clips decode; "
                         "run `reelgan-data check` and fix the files")
    say_skipped(skipped, f"{ds.root}")
    return torch.stack(clips)


def rank_batches(n: int, batch_size: int) -> list[int]:
    """Start indices of this rank's batches of n items: batch b (items b·B … b·B+B-1) goes to rank b mod W.

    Whole batches, cut where one process cuts them: a network sees exactly the batches it sees in one process,
    so features (and the statistics summed over ranks) do not depend on the number of processes.
    """
    rank, world = rank_and_world()
    return [i for i in range(0, n, batch_size) if (i // batch_size) % world == rank]
