"""Pick the demo's held-out users: N users whose *revealed* favourite colours (train interactions, event-weighted)
differ, so the samples and the alignment figure can show the conditioning. Prints comma-separated ids.

    python scripts/demo_pick_users.py DATASET [N]
"""
from __future__ import annotations

import sys

import numpy as np

from data.contract import load_dataset
from data.preferences import PreferenceEmbeddings
from evaluation.personalisation.preferences import revealed_preferences


def pick(root: str, n: int = 3) -> list[str]:
    ds = load_dataset(root)
    emb = PreferenceEmbeddings.load(ds.root / "embeddings" / "preferences.safetensors")
    users = sorted(u for u in ds.heldout_users if u in emb)
    if len(users) < n:
        raise SystemExit(f"{root}: only {len(users)} held-out users with a vector; need {n}")
    colours = sorted(set(ds.clips["colour"])) if "colour" in ds.clips else []
    prefs = revealed_preferences(ds.interactions, ds.clips, {"colour": colours}, users) if colours else {}
    chosen, seen = [], set()
    # most decided users first (largest share on their favourite colour), one per colour
    for u in sorted(users, key=lambda u: -prefs[u]["colour"].max() if prefs else 0):
        fav = int(np.argmax(prefs[u]["colour"])) if prefs else None
        if fav not in seen or not prefs:
            chosen.append(u)
            seen.add(fav)
        if len(chosen) == n:
            break
    return chosen + [u for u in users if u not in chosen][: n - len(chosen)]


if __name__ == "__main__":
    print(",".join(pick(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)))
