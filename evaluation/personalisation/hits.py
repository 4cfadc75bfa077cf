"""Hit rates of held-out users' generated clips, with their standard error over users."""
from __future__ import annotations

import numpy as np


def hit_stats(hits: np.ndarray) -> tuple[float, float | None]:
    """hits (U, K) bool → (hit rate, its standard error over users: std of the users' own rates / √U; None for
    one user). Users are the sampling unit: a user's K clips share the user's preferences, so they are not K
    independent trials of the population's rate."""
    per_user = np.asarray(hits, dtype=np.float64).reshape(len(hits), -1).mean(1)
    se = float(per_user.std(ddof=1) / np.sqrt(len(per_user))) if len(per_user) > 1 else None
    return float(per_user.mean()), se


def reader_hit_rates(predictions: dict[str, np.ndarray], favourites: np.ndarray, k: int) -> dict:
    """A pixel reader's verdicts {"own" | "shuffled": (U·K,) value index, -1 = unreadable} against each user's
    favourite index favourites (U,) → {hit_rate, hit_rate_se, shuffled, shuffled_se, unreadable} (JSON)."""
    fav = np.asarray(favourites)[:, None]
    out = {}
    for name, pred in predictions.items():
        pred = np.asarray(pred).reshape(len(fav), k)
        key = "hit_rate" if name == "own" else name
        out[key], out[f"{key}_se"] = hit_stats(pred == fav)
        if name == "own":
            out["unreadable"] = float((pred == -1).mean())
    return out
