"""Streaming Gaussian statistics: exact against numpy, O(d²) state, DDP-style merge, cache files."""
import numpy as np
import pytest
import torch

from evaluation.metrics.stats import (GaussianStats, gaussian_from_features, gaussian_from_sums, load_sums, save_sums,
                              sums_hash)


def _features(seed, n, d):
    rng = np.random.default_rng(seed)
    return np.abs(rng.standard_normal((n, d)) @ rng.standard_normal((d, d))) + 3.0


@pytest.mark.parametrize("normalisation,bias", [("n-1", False), ("n", True)])
def test_streaming_matches_numpy_cov(normalisation, bias):
    x = _features(0, 257, 48).astype(np.float32).astype(np.float64)  # network features arrive as float32
    stats = GaussianStats(48, normalisation)
    for chunk in np.array_split(x, [1, 10, 100, 101]):  # uneven batches, one of size 1, one empty
        if len(chunk):
            stats.update(torch.from_numpy(chunk).float())
    g = stats.compute()
    assert g.normalisation == normalisation and g.n == 257 and g.sigma.dtype == np.float64
    np.testing.assert_allclose(g.mu, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(g.sigma, np.cov(x, rowvar=False, bias=bias), rtol=1e-10, atol=1e-10)
    assert np.array_equal(g.sigma, g.sigma.T)


def test_state_size_is_independent_of_sample_count():
    stats = GaussianStats(32)
    sizes = []
    for seed in range(3):
        stats.update(torch.from_numpy(_features(seed, 500, 32)))
        sizes.append(sum(t.numel() * t.element_size() for t in (stats.n, stats.s1, stats.s2)))
    assert sizes[0] == sizes[-1] == (1 + 32 + 32 * 32) * 8
    assert stats.s2.dtype == torch.float64


def test_merge_like_ddp_sum_equals_single_pass():
    x = _features(1, 300, 20)
    whole = GaussianStats(20)
    whole.update(torch.from_numpy(x))
    rank0, rank1 = GaussianStats(20), GaussianStats(20)
    rank0.update(torch.from_numpy(x[:120]))
    rank1.update(torch.from_numpy(x[120:]))
    rank0.merge_state(rank1)  # the same reduction ("sum") torchmetrics applies across DDP ranks
    a, b = whole.compute(), rank0.compute()
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.mu, b.mu, rtol=1e-14)
    assert all(GaussianStats(4)._reductions[k].__name__.endswith("sum") for k in ("n", "s1", "s2"))


def test_bad_input_is_refused_with_a_reason():
    stats = GaussianStats(8)
    with pytest.raises(ValueError, match=r"expects features \(N, 8\)"):
        stats.update(torch.zeros(4, 9))
    bad = torch.zeros(4, 8)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        stats.update(bad)
    stats.update(torch.ones(1, 8))
    with pytest.raises(ValueError, match="at least 2 feature rows"):
        stats.compute()
    assert gaussian_from_sums(stats.n, stats.s1, stats.s2, "n").n == 1
    with pytest.raises(ValueError, match="normalisation must be one of"):
        GaussianStats(8, "biased")


def test_cache_file_roundtrip_and_corruption(tmp_path):
    x = _features(2, 64, 16)
    stats = GaussianStats(16, "n")
    stats.update(torch.from_numpy(x))
    path = tmp_path / "sub" / "real.safetensors"
    digest = save_sums(path, stats.sums(), {"clips": 8, "dataset": "abc"})
    assert not list(path.parent.glob("*.tmp*"))  # atomic: no temp file left behind
    sums, meta, digest2 = load_sums(path)
    assert digest == digest2 == sums_hash(stats.sums()) and meta == {"clips": 8, "dataset": "abc"}
    loaded = GaussianStats(16, "n-1").load_sums(sums)  # the normalisation is chosen at read time
    np.testing.assert_allclose(loaded.compute().sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="dim"):
        GaussianStats(8).load_sums(sums)
    raw = bytearray(path.read_bytes())
    raw[-9] ^= 0xFF  # flip a byte inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        load_sums(path)


def test_gaussian_from_features_equals_stream():
    x = _features(3, 50, 6)
    g = gaussian_from_features(x, "n-1")
    np.testing.assert_allclose(g.sigma, np.cov(x, rowvar=False), rtol=1e-11)
