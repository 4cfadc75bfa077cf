"""Sparse interactions: PairSet membership, CSR triples, and the torchmetrics ranking against a by-hand one."""
import numpy as np
import pytest
import torch

from data.ranking import ranking_metrics
from data.sparse import PairSet, csr_rows


def test_pair_set_answers_membership_like_a_dense_matrix():
    rng = np.random.default_rng(0)
    u, c = rng.integers(0, 50, 400), rng.integers(0, 70, 400)
    dense = np.zeros((50, 70), bool)
    dense[u, c] = True
    pairs = PairSet(u, c, 70)
    qu, qc = torch.from_numpy(rng.integers(0, 50, 5000)), torch.from_numpy(rng.integers(0, 70, 5000))
    assert torch.equal(pairs.contains(qu, qc), torch.from_numpy(dense[qu.numpy(), qc.numpy()]))
    assert len(pairs) == dense.sum()
    assert not PairSet([], [], 70).contains(qu[:3], qc[:3]).any()


def test_csr_rows_keep_the_strongest_event_per_pair():
    m = csr_rows([0, 0, 1, 0], [2, 2, 0, 1], [1.0, 8.0, 2.0, 4.0], (2, 3))
    assert m.toarray().tolist() == [[0, 4, 8], [2, 0, 0]] and m.dtype == np.float64


def _by_hand(scores, seen, relevant, k):
    """The per-user protocol written out: candidates = not seen; stable descending order; binary gains."""
    recall, ndcg = [], []
    for s, m, rel in zip(scores, seen, relevant):
        top = np.argsort(-np.where(m, -np.inf, s), kind="stable")[:k]
        hits = rel[top].astype(float)
        discounts = 1 / np.log2(np.arange(2, k + 2))
        recall.append(hits.sum() / rel.sum())
        ndcg.append((hits * discounts).sum() / discounts[: min(int(rel.sum()), k)].sum())
    return np.mean(recall), np.mean(ndcg)


@pytest.mark.parametrize("ties", [False, True])
def test_ranking_metrics_match_the_protocol_by_hand(ties):
    rng = np.random.default_rng(1)
    U, C, k = 37, 60, 5
    scores = rng.integers(0, 4, (U, C)).astype(float) if ties else rng.normal(size=(U, C))
    seen = rng.random((U, C)) < 0.2
    relevant = (rng.random((U, C)) < 0.08) & ~seen
    relevant[np.arange(U), rng.integers(0, C, U)] = True
    relevant &= ~seen
    rows = np.flatnonzero(relevant.any(1))
    to_csr = lambda a: csr_rows(*np.nonzero(a), np.ones(a.sum()), (U, C))  # noqa: E731
    got = ranking_metrics(lambda r: scores[r], rows, to_csr(seen), to_csr(relevant), k=k, batch=8)
    recall, ndcg = _by_hand(scores[rows], seen[rows], relevant[rows], k)
    assert got["users"] == len(rows)
    assert got[f"recall@{k}"] == pytest.approx(recall, abs=1e-6)
    assert got[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)
