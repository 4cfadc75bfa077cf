"""Held-out evaluation of the engagement model against popularity, MF and random ranking.

Protocol (the same one `data.bpr.evaluate_ranking` uses for the embeddings, so the figures are comparable):
for every user with a preference vector and at least one held-out (`split=test`) interaction, rank every
catalogue clip the user did not touch in train. Relevant clips are held-out clips with an event of strength
≥ click (auc[click], ndcg@10, recall@10) or a purchase (auc[purchase]). AUC is per user (ties count half),
then averaged over users; NDCG@10 is binary, averaged over users.

Baselines: `popularity` (sum of each clip's train pair strengths), `mf` (the embeddings' own scorer: user·item
plus the fitted item bias, when the fit has one), `random` (a seeded permutation).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from data.ranking import ndcg_recall_at_k
from evaluation.personalisation.engagement import CLICK_MIN, PURCHASE_MIN, EngagementScorer, probabilities

K = 10


@torch.no_grad()
def catalogue_scores(scorer: EngagementScorer, tokens: torch.Tensor, attrs: torch.Tensor,
                     conditions: torch.Tensor) -> np.ndarray:
    """P(click) for every (user, clip): conditions (U, E); clip inputs (C, ...) → float64 (U, C)."""
    model = scorer.model.eval()
    encoded = model.encode_clips(tokens)  # once per clip
    out = np.empty((len(conditions), len(tokens)))
    for r, cond in enumerate(conditions):
        p_click, _ = probabilities(model(encoded, attrs, cond.expand(len(tokens), -1)))
        out[r] = p_click.double().numpy()
    return out


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Mann-Whitney AUC of `scores` for boolean `positive`; None when one class is empty."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks: ties count half
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def heldout_targets(interactions, clip_ids: list[str], users: list[str]):
    """→ (users kept, touched-in-train mask (U, C), held-out strength (U, C))."""
    c_index = {c: i for i, c in enumerate(clip_ids)}
    valid = interactions[interactions["valid"] & interactions["clip_id"].isin(c_index)]
    u_index = {u: i for i, u in enumerate(users)}
    touched = np.zeros((len(users), len(clip_ids)), bool)
    strength = np.zeros((len(users), len(clip_ids)))
    for split, target in (("train", None), ("test", strength)):
        rows = valid[(valid["split"] == split) & valid["user_id"].isin(u_index)]
        r = rows["user_id"].map(u_index).to_numpy()
        c = rows["clip_id"].map(c_index).to_numpy()
        if target is None:
            touched[r, c] = True
        else:
            np.maximum.at(target, (r, c), rows["weight"].to_numpy(dtype=float))
    return touched, strength


def popularity_scores(interactions, clip_ids: list[str]) -> np.ndarray:
    """Sum over users of the strongest train event per (user, clip): float64 (C,)."""
    c_index = {c: i for i, c in enumerate(clip_ids)}
    train = interactions[interactions["valid"] & (interactions["split"] == "train") & interactions["clip_id"].isin(c_index)]
    pairs = train.groupby(["user_id", "clip_id"], as_index=False)["weight"].max()
    out = np.zeros(len(clip_ids))
    np.add.at(out, pairs["clip_id"].map(c_index).to_numpy(), pairs["weight"].to_numpy(dtype=float))
    return out


def mf_scores(embeddings, users: list[str], clip_ids: list[str]) -> np.ndarray:
    """The embeddings' own item scores, re-ordered to `clip_ids`: float64 (U, C)."""
    pos = {c: i for i, c in enumerate(embeddings.item_ids)}
    missing = [c for c in clip_ids if c not in pos]
    if missing:
        raise ValueError(f"the embeddings have no item vector for clip {missing[0]!r} (and {len(missing) - 1} more): "
                         "refit them with `reelgan-data embed` on this dataset")
    cols = np.array([pos[c] for c in clip_ids])
    return np.stack([embeddings.item_scores(u).astype(np.float64)[cols] for u in users])


def ranking_report(scores: np.ndarray, touched: np.ndarray, strength: np.ndarray, k: int = K) -> dict:
    """scores, touched, strength: (U, C). Averages over users with at least one relevant held-out clip."""
    acc = {"auc[click]": [], "auc[purchase]": [], f"ndcg@{k}": [], f"recall@{k}": []}
    for r in range(scores.shape[0]):
        cand = ~touched[r]
        s, st = scores[r, cand], strength[r, cand]
        click, bought = st >= CLICK_MIN, st >= PURCHASE_MIN
        if click.any():
            ndcg, recall = ndcg_recall_at_k(s, click, k)
            acc[f"ndcg@{k}"].append(ndcg)
            acc[f"recall@{k}"].append(recall)
        for name, pos in (("auc[click]", click), ("auc[purchase]", bought)):
            a = _auc(s, pos)
            if a is not None:
                acc[name].append(a)
    out = {name: float(np.mean(v)) if v else None for name, v in acc.items()}  # null, never NaN
    out["users"] = {name: len(v) for name, v in acc.items()}
    relevant = {"auc[click]": "a clicked", "auc[purchase]": "a purchased"}
    reasons = {name: f"no held-out user has {relevant.get(name, 'a clicked')} clip among the candidates (catalogue "
                     "clips not touched in train) and another clip to rank it against; with no split column each "
                     "user's last newly engaged clip is held out (docs/data.md)"
               for name, v in acc.items() if not v}
    if reasons:
        out["reasons"] = reasons
    return out


def evaluate_engagement(scorer: EngagementScorer, clip_inputs: tuple[torch.Tensor, torch.Tensor], interactions,
                        embeddings, clip_ids: list[str], seed: int = 0, k: int = K) -> dict:
    """Held-out ranking figures for the engagement model and the three baselines, and whether it beats them."""
    test_users = set(interactions.loc[interactions["valid"] & (interactions["split"] == "test"), "user_id"])
    users = sorted(u for u in test_users if u in embeddings)
    if not users:
        raise ValueError("no user has both a preference vector and a held-out (split=test) interaction")
    touched, strength = heldout_targets(interactions, clip_ids, users)
    rng = np.random.default_rng(seed)
    methods = {
        "engagement": catalogue_scores(scorer, *clip_inputs, embeddings.conditions(users)),
        "mf": mf_scores(embeddings, users, clip_ids),
        "popularity": np.broadcast_to(popularity_scores(interactions, clip_ids), touched.shape),
        "random": rng.random(touched.shape),
    }
    report = {name: ranking_report(s, touched, strength, k) for name, s in methods.items()}
    ours = report["engagement"]
    def better(base: str) -> bool | None:  # None: not measurable
        pairs = [(ours[m], report[base][m]) for m in ("auc[click]", f"ndcg@{k}")]
        return None if any(a is None or b is None for a, b in pairs) else all(a > b for a, b in pairs)

    beats = {base: better(base) for base in ("popularity", "mf", "random")}
    return {"protocol": {"candidates": "catalogue clips the user did not touch in train",
                         "relevant": f"held-out clips with event strength >= {CLICK_MIN} (purchase: >= {PURCHASE_MIN})",
                         "auc": "per user, ties count half, averaged over users", "k": k,
                         "mf": "embeddings.item_scores (user·item + fitted item bias)", "random_seed": seed},
            "users": len(users), "methods": report, "beats": beats}
