"""Implicit-feedback matrix factorisation (BPR, events weighted by strength) and its held-out evaluation.

Fitting sees only `split=train` interactions. Each (user, clip) pair weighs the strength of its strongest event
(view 1 … purchase 8); a BPR step draws positives in proportion to that weight and a uniformly random clip the
user never touched as the negative. Evaluation ranks all clips the user did not touch in train and scores the
test clips with a click or stronger (Recall@K, NDCG@K), against ranking by train popularity.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from data.contract import Dataset
from data.preferences import PreferenceEmbeddings
from data.ranking import ndcg_recall_at_k


def pair_weights(inter: pd.DataFrame) -> pd.DataFrame:
    """(user_id, clip_id, weight): the strongest event per pair."""
    return inter.groupby(["user_id", "clip_id"], as_index=False, sort=True)["weight"].max()


def fit_bpr(ds: Dataset, dim: int = 32, epochs: int = 30, lr: float = 0.03, weight_decay: float = 1e-4,
            batch_size: int = 2048, seed: int = 0, by: str = "product", log=None) -> PreferenceEmbeddings:
    """BPR-MF on the train interactions; every user with a train interaction gets a vector.

    by="product": factors are learnt per product and shared by its clips (clips are views of a product, so this
    pools their evidence); by="clip": one factor per clip. Item vectors are always saved per clip id.
    """
    if by not in ("product", "clip"):
        raise ValueError(f"by must be 'product' or 'clip', got {by!r}")
    train = ds.train_interactions
    train = train[train["valid"]]
    if train.empty:
        raise ValueError(f"{ds.root / 'interactions.csv'}: no valid train interactions to fit on. "
                         "Fix: add rows with split=train and known clip ids/events")
    clip_ids = list(ds.clips["clip_id"])
    key = ds.clips["product_id"] if by == "product" else ds.clips["clip_id"]
    clip_to_key = dict(zip(clip_ids, key))
    pairs = pair_weights(train.assign(clip_id=train["clip_id"].map(clip_to_key)))
    user_ids = sorted(pairs["user_id"].unique())
    item_ids = list(dict.fromkeys(key))
    u_index = {u: i for i, u in enumerate(user_ids)}
    i_index = {c: i for i, c in enumerate(item_ids)}
    users = torch.tensor(pairs["user_id"].map(u_index).to_numpy())
    items = torch.tensor(pairs["clip_id"].map(i_index).to_numpy())
    weights = torch.tensor(pairs["weight"].to_numpy(), dtype=torch.float64)
    touched = torch.zeros(len(user_ids), len(item_ids), dtype=torch.bool)
    touched[users, items] = True

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # index backward accumulates in thread order: one thread makes the fit reproducible
    try:
        P, Q, b = _train(users, items, weights, touched, dim, epochs, lr, weight_decay, batch_size, seed, log)
    finally:
        torch.set_num_threads(threads)
    expand = np.array([i_index[clip_to_key[c]] for c in clip_ids])
    meta = {"method": "bpr", "by": by, "dim": dim, "epochs": epochs, "lr": lr, "weight_decay": weight_decay,
            "batch_size": batch_size, "seed": seed, "train_pairs": int(len(pairs)),
            "pair_weight": "max event strength (view 1, click 2, add_to_cart 4, purchase 8)",
            "item_bias": b.numpy().astype(np.float32)[expand]}
    return PreferenceEmbeddings(user_ids, P.numpy(), clip_ids, Q.numpy()[expand], source="bpr", meta=meta)


def _train(users, items, weights, touched, dim, epochs, lr, weight_decay, batch_size, seed, log):
    """Weighted BPR with Adam; returns detached (P (U, E), Q (I, E), b (I,))."""
    n_users, n_items = touched.shape
    g = torch.Generator().manual_seed(seed)
    P = torch.nn.Parameter(torch.randn(n_users, dim, generator=g) * 0.1)
    Q = torch.nn.Parameter(torch.randn(n_items, dim, generator=g) * 0.1)
    b = torch.nn.Parameter(torch.zeros(n_items))
    opt = torch.optim.Adam([P, Q, b], lr=lr)
    steps = max(1, len(users) // batch_size)
    for epoch in range(epochs):
        total = 0.0
        for _ in range(steps):
            pick = torch.multinomial(weights, batch_size, replacement=True, generator=g)
            u, i = users[pick], items[pick]
            j = torch.randint(n_items, (batch_size,), generator=g)
            keep = ~touched[u, j]  # resampling would be exact; dropping the few collisions is close enough
            u, i, j = u[keep], i[keep], j[keep]
            x = (P[u] * (Q[i] - Q[j])).sum(1) + b[i] - b[j]
            reg = P[u].pow(2).sum(1) + Q[i].pow(2).sum(1) + Q[j].pow(2).sum(1)
            loss = torch.nn.functional.softplus(-x).mean() + weight_decay * reg.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if log is not None:
            log(epoch, total / steps)
    return P.detach(), Q.detach(), b.detach()


def evaluate_ranking(ds: Dataset, emb: PreferenceEmbeddings, k: int = 10, min_weight: float = 2.0) -> dict:
    """Held-out Recall@k / NDCG@k of MF scores and of train popularity (float64 averages over users)."""
    valid = ds.interactions[ds.interactions["valid"]]
    train, test = valid[valid["split"] == "train"], valid[valid["split"] == "test"]
    item_ids = emb.item_ids
    i_index = {c: i for i, c in enumerate(item_ids)}
    popularity = np.zeros(len(item_ids))
    np.add.at(popularity, pair_weights(train)["clip_id"].map(i_index).to_numpy(), pair_weights(train)["weight"])
    seen = train.groupby("user_id")["clip_id"].agg(set)
    relevant = pair_weights(test)
    relevant = relevant[relevant["weight"] >= min_weight].groupby("user_id")["clip_id"].agg(set)
    out = {"mf": {"recall": [], "ndcg": []}, "popularity": {"recall": [], "ndcg": []}}
    for user, rel in relevant.items():
        if user not in emb:
            continue
        mask = np.zeros(len(item_ids), bool)
        mask[[i_index[c] for c in seen.get(user, set())]] = True
        relevant_mask = np.zeros(len(item_ids), bool)
        relevant_mask[[i_index[c] for c in rel]] = True
        for name, scores in (("mf", emb.item_scores(user).astype(np.float64)), ("popularity", popularity)):
            ndcg, recall = ndcg_recall_at_k(np.where(mask, -np.inf, scores), relevant_mask, k)
            out[name]["recall"].append(recall)
            out[name]["ndcg"].append(ndcg)
    users = len(out["mf"]["recall"])
    report = {"k": k, "relevant": f"test clips with an event of strength >= {min_weight}", "users": users}
    for name, m in out.items():
        report[name] = {f"recall@{k}": float(np.mean(m["recall"])) if users else None,
                        f"ndcg@{k}": float(np.mean(m["ndcg"])) if users else None}
    if not users:  # null, never NaN: strict JSON, and the reason travels with it
        report["reason"] = (f"no user has a held-out clip with an event of strength >= {min_weight} and a vector "
                            "(check the split column of interactions.csv, or leave it out for the default split)")
    return report
