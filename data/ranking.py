"""Top-k ranking figures of held-out interactions: NDCG@k and Recall@k (one definition for every package).

Not torchmetrics' `retrieval_normalized_dcg`: that one averages the gain over tied scores, and popularity rankings
are full of ties. Here ties keep catalogue order (a stable sort), as every ReelGAN figure so far has.
"""
from __future__ import annotations

import numpy as np


def ndcg_recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> tuple[float, float]:
    """scores (C,), relevant bool (C,) with at least one True → (NDCG@k, Recall@k) of the top k by score.

    Binary gain; the ideal DCG puts min(#relevant, k) relevant items first.
    """
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    hits = np.asarray(relevant)[top].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    n_relevant = int(np.count_nonzero(relevant))
    ideal = discounts[: min(n_relevant, k)].sum()
    return float((hits * discounts[: len(hits)]).sum() / ideal), float(hits.sum() / n_relevant)
