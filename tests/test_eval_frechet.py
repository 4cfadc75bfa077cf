"""Fréchet distance: exact against closed forms and against the peers' formulas, robust when N < d."""
import numpy as np
import pytest
import torch
from scipy import linalg

from evaluation.metrics.frechet import METHODS, frechet_distance, frechet_terms, trace_sqrt_product


def _features(rng, n, d, shift=0.0):
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.abs(rng.standard_normal((n, d)) @ mix) + shift  # ReLU-like, correlated, like network features


def _stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


# Independent oracles written from the papers' formulas (not our module's reference methods).
def _fd_sqrtm(m1, s1, m2, s2):  # pytorch-fid's formula
    covmean = linalg.sqrtm(s1 @ s2)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def _fd_tfgan_svd(m1, s1, m2, s2):  # TF-GAN trace_sqrt_product (original FVD)
    u, s, vh = np.linalg.svd(s1)
    root = u @ np.diag(np.sqrt(s)) @ vh
    tr = np.sqrt(np.linalg.svd(root @ s2 @ root, compute_uv=False)).sum()
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr)


def test_analytic_2048_identity_covariances():
    d = 2048
    value = frechet_distance(np.zeros(d), np.eye(d), np.ones(d), np.eye(d))
    assert value == pytest.approx(2048.0, rel=0, abs=1e-9)


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 300), rng.uniform(0.1, 3, 300)
    m1, m2 = rng.standard_normal(300), rng.standard_normal(300)
    expected = ((m1 - m2) ** 2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [64, 256])
def test_agrees_with_sqrtm_and_tfgan_svd_full_rank(d):
    rng = np.random.default_rng(d)
    (m1, s1), (m2, s2) = _stats(_features(rng, 3 * d, d)), _stats(_features(rng, 3 * d, d, 0.2))
    terms = frechet_terms(m1, s1, m2, s2)
    assert terms["route"] == "cholesky"
    for oracle in (_fd_sqrtm, _fd_tfgan_svd):
        ref = oracle(m1, s1, m2, s2)
        assert abs(terms["value"] - ref) / ref <= 1e-8, oracle.__name__
    # and every built-in reference method agrees on the trace term
    base = terms["tr_sqrt"]
    for method in METHODS:
        value, _ = trace_sqrt_product(s1, s2, method)
        assert abs(value - base) / base <= 1e-9, method


def test_rank_deficient_is_finite_real_and_matches_svd():
    rng = np.random.default_rng(1)
    d = 256
    (m1, s1), (m2, s2) = _stats(_features(rng, 40, d)), _stats(_features(rng, 30, d, 0.3))  # N << d
    assert np.linalg.matrix_rank(s1) < d
    terms = frechet_terms(m1, s1, m2, s2)
    assert terms["route"] in ("pivoted-cholesky", "eigh")
    value = terms["value"]
    assert isinstance(value, float) and np.isfinite(value) and value > 0
    ref = _fd_tfgan_svd(m1, s1, m2, s2)  # SVD square roots are well defined for singular PSD matrices
    assert abs(value - ref) / ref <= 1e-6
    assert abs(value - frechet_distance(m1, s1, m2, s2, method="eigh")) / value <= 1e-6


def test_rank_deficient_is_exact_against_the_feature_space_reference():
    """With centred features A1 (n1, d), A2 (n2, d): Σi = AiᵀAi/(ni−1), and the non-zero eigenvalues of Σ1Σ2 are
    the squared singular values of A1A2ᵀ/√((n1−1)(n2−1)), so tr√(Σ1Σ2) is that small matrix's nuclear norm: an
    exact reference with no round-off eigenvalues. Ours matches it to round-off; sqrtm/eigvals of Σ1Σ2 carry
    ~1e-8 errors from square roots of the d − N round-off eigenvalues."""
    rng = np.random.default_rng(7)
    a, b = _features(rng, 60, 256), _features(rng, 50, 256, 0.1)
    ca, cb = a - a.mean(0), b - b.mean(0)
    tr_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(59 * 49)
    (m1, s1), (m2, s2) = _stats(a), _stats(b)
    exact = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    terms = frechet_terms(m1, s1, m2, s2)
    assert terms["route"] == "pivoted-cholesky"
    assert abs(terms["value"] - exact) / exact <= 1e-11


@pytest.mark.parametrize("n,d", [(500, 64), (10, 128), (1, 32)])
def test_identical_sets_give_exactly_zero(n, d):
    rng = np.random.default_rng(n)
    x = _features(rng, n, d)
    mu = x.mean(0)
    sigma = np.cov(x, rowvar=False, bias=True) if n > 1 else np.zeros((d, d))
    assert frechet_distance(mu, sigma, mu, sigma) == 0.0


def test_never_negative_near_zero():
    rng = np.random.default_rng(5)
    x = _features(rng, 20, 64)
    m, s = _stats(x)
    for scale in (1.0, 1e-6, 1e6):
        assert frechet_distance(m * scale, s * scale**2, m * scale, s * scale**2 * (1 + 1e-15)) >= 0.0


def test_accepts_torch_float32_and_checks_shapes():
    rng = np.random.default_rng(2)
    m1, s1 = _stats(_features(rng, 200, 16))
    m2, s2 = _stats(_features(rng, 200, 16, 0.1))
    as_torch = frechet_distance(torch.tensor(m1), torch.tensor(s1), torch.tensor(m2), torch.tensor(s2))
    assert as_torch == pytest.approx(frechet_distance(m1, s1, m2, s2), rel=1e-12)
    with pytest.raises(ValueError, match="sigma2 must be"):
        frechet_distance(m1, s1, m2, s2[:8, :8])
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(m1 * np.nan, s1, m2, s2)
    with pytest.raises(ValueError, match="method must be one of"):
        frechet_distance(m1, s1, m2, s2, method="magic")
