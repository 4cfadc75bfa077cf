"""Held-out ranking (Recall@k, NDCG@k) through torchmetrics' retrieval metrics, a batch of users at a time.

Per user: every clip not touched in train is a candidate; relevant = the held-out clips marked in `relevant`.
A user with fewer than k candidates (a shop's first, small catalogue) has the rest of their top k empty: those
places never hold a seen clip (they count as misses), so every user gives torchmetrics exactly k ranked entries.
Scores come from `score_rows(rows) -> (B, C)`, so no (U, C) matrix is ever held. Ties rank the lower clip
column first (a stable sort), so results do not depend on the batch size. torchmetrics would average the gain
over tied scores; it never sees a tie here, because it is given rank-based scores (k..1 for the top k, 0 below).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalRecall


def ranking_metrics(score_rows, rows: np.ndarray, seen: sp.csr_matrix, relevant: sp.csr_matrix, k: int = 10,
                    batch: int = 256) -> dict:
    """rows: user rows to rank for (each with >= 1 relevant clip); seen / relevant: CSR (U, C) of those rows.

    Returns {"users", f"recall@{k}", f"ndcg@{k}"} (float64 means over users; NaN with no users).
    """
    ndcg, recall = RetrievalNormalizedDCG(top_k=k), RetrievalRecall(top_k=k)
    for lo in range(0, len(rows), batch):
        part = rows[lo: lo + batch]
        scores = torch.as_tensor(score_rows(part), dtype=torch.float64).clone()
        was_seen = torch.from_numpy(seen[part].toarray() != 0)                             # (B, C)
        scores[was_seen] = -torch.inf
        top = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]       # (B, min(k, C))
        # places past a user's candidates (a seen clip, or no clip at all when C < k) are empty: never a hit
        filled = ~was_seen.gather(1, top)
        rel = relevant[part]
        rel.eliminate_zeros()  # stored zeros are not relevant clips
        hits = (torch.from_numpy(rel.toarray()).gather(1, top) != 0) & filled
        hits = torch.nn.functional.pad(hits, (0, k - hits.shape[1]))                        # (B, k)
        misses = torch.from_numpy(np.diff(rel.indptr)) - hits.sum(1)                        # relevant beyond top k
        b = torch.arange(len(part), dtype=torch.int64) + lo
        # the top k in rank order (preds k..1), then each missed relevant clip below them (preds 0): torchmetrics
        # then sees every relevant clip of the user, as Recall and the ideal DCG need
        preds = torch.cat([torch.arange(k, 0, -1, dtype=torch.float64).repeat(len(part)),
                           torch.zeros(int(misses.sum()), dtype=torch.float64)])
        target = torch.cat([hits.reshape(-1), torch.ones(int(misses.sum()), dtype=torch.bool)])
        indexes = torch.cat([b.repeat_interleave(k), b.repeat_interleave(misses)])
        ndcg.update(preds, target, indexes=indexes)
        recall.update(preds, target, indexes=indexes)
    if len(rows) == 0:
        return {"users": 0, f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan")}
    return {"users": int(len(rows)), f"recall@{k}": float(recall.compute()), f"ndcg@{k}": float(ndcg.compute())}

