"""What the training data allows a conditional generator to reach, per attribute, for a set of users.

The datamodule pairs each clip with one of its positive users (click or stronger, in proportion to event
strength), so the conditional it trains on is p(clip | u) ∝ w(u, clip) / W(clip), with W(clip) the clip's total
positive weight. For a user u and their favourite value f of an attribute:
- sampling ceiling: P(attribute(clip) = f) under p(clip | u). A perfect generator at truncation 1 shows the
  favourite this often.
- mode ceiling: [the most likely value under p(clip | u) is f]. Truncation towards the user's mean style is how a
  generator approaches it.
Both are averaged over the users that have positive train interactions. Held-out users are scored as if they
were paired like training users (their own train interactions), which is exactly what their vector encodes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data.conditioning import POSITIVE_MIN_WEIGHT


def conditional_ceilings(interactions: pd.DataFrame, clips: pd.DataFrame, attribute: str,
                         favourites: dict[str, set[str]]) -> dict:
    """interactions: the dataset's table (with `split`, `weight`, and `valid` if present); clips: clips.csv with
    the attribute column; favourites: {user: set of favourite values (ties)} → JSON-ready dict."""
    if attribute not in clips.columns:
        raise ValueError(f"clips.csv has no column {attribute!r}; ceilings need the attribute per clip")
    inter = interactions
    if "valid" in inter.columns:
        inter = inter[inter["valid"]]
    if "split" in inter.columns:
        inter = inter[inter["split"] == "train"]
    pos = inter[inter["weight"] >= POSITIVE_MIN_WEIGHT]
    pos = pos.groupby(["clip_id", "user_id"], as_index=False)["weight"].max()
    total = pos.groupby("clip_id")["weight"].sum()
    value_of = clips.set_index("clip_id")[attribute].astype(str)
    pos = pos[pos["clip_id"].isin(value_of.index)]
    sampling, mode = [], []
    for user, g in pos[pos["user_id"].isin(list(favourites))].groupby("user_id"):
        p = g["weight"].to_numpy(np.float64) / total.loc[g["clip_id"]].to_numpy(np.float64)
        mass = pd.Series(p / p.sum()).groupby(value_of.loc[g["clip_id"]].to_numpy()).sum()
        fav = favourites[user]
        sampling.append(float(mass[mass.index.isin(fav)].sum()))
        mode.append(float(mass.idxmax() in fav))
    n = len(sampling)
    return {"attribute": attribute, "users": n,
            "sampling": float(np.mean(sampling)) if n else None,
            "mode": float(np.mean(mode)) if n else None,
            "note": "p(clip | user) ∝ w(user, clip) / W(clip) over click-or-stronger train interactions"
                    + ("" if n else "; no user has positive train interactions: undefined")}
