"""Per-clip scores of the slot that need no engagement model: realism and preference alignment.

realism (density): how typical a clip's domain features are among real clips. A Gaussian (mean, covariance with
    a little shrinkage) is fitted on half of the real clips; the other half gives reference Mahalanobis distances;
    a clip's realism is the share of held-out real clips that lie *further* out than it, i.e. an empirical
    p-value: real clips score ≈ Uniform(0, 1), broken or off-domain clips score ≈ 0.
alignment: the probability that the clip shows the user's revealed favourite value, averaged over attributes.
    Revealed favourites (evaluation.personalisation.preferences) come from the user's *training* interactions,
    weighted by event strength; the domain
    classifier gives the clip's attribute probabilities. A random clip scores about mean_a 1/V_a.
"""
from __future__ import annotations

import numpy as np


class DensityRealism:
    """features_real: float64 (N, d) domain features of real clips → `score(features (M, d)) -> (M,) in (0, 1]`."""

    def __init__(self, features_real: np.ndarray, shrinkage: float = 0.05, seed: int = 0):
        x = np.asarray(features_real, dtype=np.float64)
        if x.ndim != 2 or len(x) < 8:
            raise ValueError(f"density realism needs at least 8 real feature rows, got shape {x.shape}")
        perm = np.random.default_rng(seed).permutation(len(x))
        fit, ref = x[perm[: len(x) // 2]], x[perm[len(x) // 2:]]
        self.mu = fit.mean(0)
        cov = np.cov(fit, rowvar=False)
        # shrink towards the average variance: stable even when N < d
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        self._chol = np.linalg.cholesky(cov)
        self.reference = np.sort(self._distances(ref))
        self.n_fit, self.n_ref = len(fit), len(ref)

    def _distances(self, f: np.ndarray) -> np.ndarray:
        import scipy.linalg

        d = scipy.linalg.solve_triangular(self._chol, (np.asarray(f, np.float64) - self.mu).T, lower=True)
        return np.sqrt((d * d).sum(0))

    def score(self, features: np.ndarray) -> np.ndarray:
        dist = self._distances(features)
        further = len(self.reference) - np.searchsorted(self.reference, dist, side="left")
        return (further + 1.0) / (len(self.reference) + 1.0)


def alignment_scores(probs: dict[str, np.ndarray], prefs: dict[str, np.ndarray]) -> np.ndarray:
    """probs[a]: (N, V_a) clip attribute probabilities; prefs[a]: (V_a,) → (N,) P(clip shows the favourite)."""
    parts = []
    for a, q in prefs.items():
        top = np.flatnonzero(q == q.max())  # ties share the favourite place
        parts.append(np.asarray(probs[a], np.float64)[:, top].sum(1))
    return np.mean(parts, axis=0)


def random_alignment(vocab: dict[str, list[str]]) -> float:
    """What a clip with uniformly random attributes scores."""
    return float(np.mean([1.0 / len(v) for v in vocab.values()]))
