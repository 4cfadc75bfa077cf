"""Offline check of the slot on the synthetic world: expected engagement under the hidden truth.

For user u and a clip whose attributes are known only as the domain classifier's probabilities p_a(v), the
expected engagement is
    E[P(click)] = Σ_{v_cat, v_col, v_pat} Π_a p_a(v_a) · E_ε[σ(α + β·(U_u(v) + ε))],   ε ~ N(0, noise_sd²)
with U_u the hidden utility of data.synth (`hidden_truth.json`) and (α, β) the click logit of its choice model;
the ε expectation is Gauss–Hermite quadrature. A catalogue clip has exact attributes (p is one-hot).
The slot is compared with two baselines a shop would otherwise serve:
    popular           the catalogue clip with the most event-weighted training interactions, for everyone;
    random_generated  one of the user's K generated candidates at random (its expectation: the mean over K).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from data.contract import EVENT_WEIGHTS
from data.synth import utility


class HiddenTruth:
    """hidden_truth.json of a synthetic world: per-user preferred attribute values and weights."""

    def __init__(self, path: str | Path, attributes: dict[str, list[str]]):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no hidden truth; the offline slot check needs a synthetic world "
                                    "(reelgan-data synth writes hidden_truth.json)")
        data = json.loads(path.read_text())
        self.users: dict = data["users"]
        self.choice: dict = data["choice_model"]
        self.attributes = {a: list(v) for a, v in attributes.items()}
        self.names = list(self.attributes)
        # every attribute combination, and its one-hot index per attribute
        self.combos = list(itertools.product(*[range(len(self.attributes[a])) for a in self.names]))
        self._gh_x, self._gh_w = np.polynomial.hermite_e.hermegauss(15)  # E over N(0,1)
        self._gh_w = self._gh_w / self._gh_w.sum()

    def _utility(self, user_id: str) -> np.ndarray:
        """Noise-free utility of every attribute combination for the user: (n_combos,), by the world's own
        choice model (data.synth.utility)."""
        values = {a: np.array([self.attributes[a][combo[j]] for combo in self.combos], dtype=object)
                  for j, a in enumerate(self.names)}
        return utility(self.users[user_id], values)

    def click_probability(self, user_id: str) -> np.ndarray:
        """E_ε P(click | view) for every combination: (n_combos,)."""
        alpha, beta = self.choice["click"]
        sd = float(self.choice.get("noise_sd", 0.0))
        z = alpha + beta * (self._utility(user_id)[:, None] + sd * self._gh_x[None, :])
        return (1.0 / (1.0 + np.exp(-z))) @ self._gh_w

    def expected_engagement(self, user_id: str, probs: dict[str, np.ndarray]) -> np.ndarray:
        """probs[attribute]: (N, V_a) clip attribute probabilities → expected P(click) per clip (N,)."""
        if user_id not in self.users:
            raise KeyError(f"user {user_id!r} is not in the hidden truth; the slot check runs on synthetic-world users")
        pc = self.click_probability(user_id)
        n = len(next(iter(probs.values())))
        joint = np.ones((n, len(self.combos)))
        for j, a in enumerate(self.names):
            p = np.asarray(probs[a], dtype=np.float64)
            joint *= p[:, [c[j] for c in self.combos]]
        return joint @ pc

    def one_hot(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        """Catalogue rows with attribute columns → exact one-hot 'probabilities'."""
        out = {}
        for a in self.names:
            idx = rows[a].map({v: i for i, v in enumerate(self.attributes[a])}).to_numpy()
            out[a] = np.eye(len(self.attributes[a]))[idx]
        return out


def most_popular_clip(clips: pd.DataFrame, interactions: pd.DataFrame) -> pd.Series:
    """The catalogue clip with the largest event-weighted count of training interactions."""
    train = interactions[interactions["split"] != "test"] if "split" in interactions else interactions
    score = train.assign(w=train["event"].map(EVENT_WEIGHTS).fillna(0.0)).groupby("clip_id")["w"].sum()
    best = score.sort_values(ascending=False, kind="stable").index[0]
    return clips.set_index("clip_id").loc[best].rename(best)


def compare_arms(truth: HiddenTruth, slot_rows: list[dict], candidate_probs: dict[str, dict[str, np.ndarray]],
                 popular: pd.Series) -> dict:
    """Expected engagement per user of: the served slot clip(s), the popular clip, a random generated candidate.

    slot_rows: rows of slot.jsonl (candidate index `candidate`, `served`, `fallback`);
    candidate_probs[user][attribute]: (K, V) attribute probabilities of the user's K candidates.
    A user whose gate passed nothing is served the popular clip (the slot's documented fallback).
    """
    pop_probs = truth.one_hot(popular.to_frame().T.assign(**{a: [popular[a]] for a in truth.names}))
    per_user = {}
    for user, probs in candidate_probs.items():
        e = truth.expected_engagement(user, probs)
        pop = float(truth.expected_engagement(user, pop_probs)[0])
        served = [r["candidate"] for r in slot_rows if r["user_id"] == user and r.get("served")]
        per_user[user] = {"slot": float(np.mean(e[served])) if served else pop, "fallback": not served,
                          "popular": pop, "random_generated": float(np.mean(e)), "best_candidate": float(np.max(e))}
    arms = {}
    for arm in ("slot", "popular", "random_generated", "best_candidate"):
        v = np.array([u[arm] for u in per_user.values()])
        arms[arm] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    d_pop = np.array([u["slot"] - u["popular"] for u in per_user.values()])
    d_rnd = np.array([u["slot"] - u["random_generated"] for u in per_user.values()])
    beats = bool(d_pop.mean() > 0 and d_rnd.mean() > 0)
    return {
        "measure": "expected P(click | view) under hidden_truth.json (Gauss-Hermite over the utility noise); "
                   "generated clips' attributes from the domain classifier's probabilities",
        "users": len(per_user), "fallbacks": int(sum(u["fallback"] for u in per_user.values())),
        "popular_clip": {"clip_id": str(popular.name), **{a: str(popular[a]) for a in truth.names}},
        "arms": arms,
        "lift": {"vs_popular": float(d_pop.mean()), "vs_random_generated": float(d_rnd.mean()),
                 "users_better_than_popular": int((d_pop > 0).sum()),
                 "users_better_than_random": int((d_rnd > 0).sum())},
        "beats_both": beats,
        "verdict": (f"slot {arms['slot']['mean']:.3f} vs popular {arms['popular']['mean']:.3f} and random generated "
                    f"{arms['random_generated']['mean']:.3f} expected P(click) over {len(per_user)} users: "
                    + ("the slot beats both baselines." if beats else "the slot does NOT beat both baselines.")),
        "per_user": per_user,
    }
