"""Revealed preferences: a user's favourite attribute values, from their event-weighted *training* interactions.

Used by preference alignment (evaluation.personalisation.alignment) and by the slot's alignment score.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data.contract import EVENT_WEIGHTS


def revealed_preferences(interactions: pd.DataFrame, clips: pd.DataFrame, vocab: dict[str, list[str]],
                         user_ids: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """{user: {attribute: distribution over vocab (V,)}} from event-weighted *training* interactions."""
    train = interactions[interactions["split"] != "test"] if "split" in interactions.columns else interactions
    train = train[train["user_id"].isin(user_ids)]
    merged = train.merge(clips[["clip_id", *vocab]], on="clip_id", how="inner")
    merged = merged.assign(w=merged["event"].map(EVENT_WEIGHTS).fillna(0.0))
    out: dict[str, dict[str, np.ndarray]] = {}
    for user in user_ids:
        mine = merged[merged["user_id"] == user]
        prefs = {}
        for a, values in vocab.items():
            q = np.array([mine.loc[mine[a] == v, "w"].sum() for v in values], dtype=np.float64)
            prefs[a] = q / q.sum() if q.sum() > 0 else np.full(len(values), 1.0 / len(values))
        out[user] = prefs
    return out


def users_without_history(interactions: pd.DataFrame, user_ids: list[str]) -> set[str]:
    """Users with no training interaction: their favourites are unknown, so their alignment is NaN (gate fails)."""
    train = interactions[interactions["split"] != "test"] if "split" in interactions.columns else interactions
    return set(user_ids) - set(train["user_id"])
