"""Agreement with pytorch-fid and torch-fidelity, given the same weights file (random, calibrated weights in the
pt_inception format: the peers are never allowed to download anything).

Features: ours against each peer's network on the same frames. FID: our full 2048-d pipeline against each peer's
own statistics + distance code. The peers' O(d³) distance functions run on their statistics written in an
orthonormal basis of span{centred real and fake features, μ_real − μ_fake}: both covariances vanish outside that
span and the mean difference lies inside it, so the Fréchet distance is exactly unchanged, and the test stays
within its time budget. The peers' distance functions at full d = 2048 are compared in bench/bench_eval_frechet.py.
"""
import numpy as np
import pytest
import torch

import pytorch_fid  # noqa: F401  (a peer missing from the install must fail, not skip)
import torch_fidelity  # noqa: F401

from evaluation.features import get_feature_extractor  # noqa: E402
from evaluation.metrics.frechet import frechet_distance  # noqa: E402
from evaluation.metrics.stats import gaussian_from_features  # noqa: E402

FEATURE_TOL = 1e-4  # max abs
FID_TOL = 1e-4      # relative


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from evaluation.features.inception import write_random_weights

    path = tmp_path_factory.mktemp("peers") / "pt_inception-random.pth"
    write_random_weights(path, seed=0, calibration_images=2)
    return path


@pytest.fixture(scope="module")
def frames():
    """Two small sets of frames (real-like and shifted), uint8 (N, 3, H, W), non-square to exercise the resize."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 6, 8, generator=g)
    smooth = lambda n, shift: (torch.nn.functional.interpolate(  # noqa: E731
        base + 0.3 * torch.rand(n, 3, 6, 8, generator=g), size=(36, 48), mode="bilinear") * 200 + shift)
    return smooth(4, 0).clamp(0, 255).to(torch.uint8), smooth(4, 40).clamp(0, 255).to(torch.uint8)


def _ours(weights, resize, sets):
    ext = get_feature_extractor("inception-fid", weights=weights, expected_sha256=None, resize=resize)
    return [ext.features(x[:, None]).numpy() for x in sets]  # (N, 1, 3, H, W): one-frame clips


@pytest.fixture(scope="module")
def ours_tf1(weights, frames):
    return _ours(weights, "tf1-bilinear", frames)


def _in_span(features_a, features_b, stats_fn):
    """Each set's statistics (by the peer's own `stats_fn`) expressed in the basis described in the module doc."""
    ca, cb = features_a - features_a.mean(0), features_b - features_b.mean(0)
    q, _ = np.linalg.qr(np.concatenate([ca, cb, (features_a.mean(0) - features_b.mean(0))[None]]).T)
    return [stats_fn(f @ q) for f in (features_a, features_b)]


def _fid_ours(a, b):
    ga, gb = gaussian_from_features(a), gaussian_from_features(b)
    return frechet_distance(ga.mu, ga.sigma, gb.mu, gb.sigma)


def test_torch_fidelity_features_and_fid(weights, frames, ours_tf1):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    theirs_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                             feature_extractor_weights_path=str(weights))
    ours = ours_tf1
    with torch.no_grad():
        theirs = [theirs_net(x)[0].double().numpy() for x in frames]
    for a, b in zip(ours, theirs):
        assert np.abs(a - b).max() <= FEATURE_TOL
    assert np.abs(ours[0]).mean() > 0.05  # the random network is not dead: features carry signal
    stats = _in_span(*theirs, lambda f: fid_features_to_statistics(torch.from_numpy(f)))
    fid_theirs = fid_statistics_to_metric(stats[0], stats[1], False)["frechet_inception_distance"]
    fid_ours = _fid_ours(*ours)
    assert fid_ours > 1.0 and abs(fid_ours - fid_theirs) / fid_theirs <= FID_TOL


def test_pytorch_fid_features_and_fid(weights, frames, ours_tf1, monkeypatch):
    import pytorch_fid.inception as pfid_inception
    from pytorch_fid.fid_score import calculate_frechet_distance

    def no_download(*args, **kwargs):  # pytorch-fid asks for its URL: hand it our file instead
        return torch.load(weights, map_location="cpu", weights_only=True)

    monkeypatch.setattr(pfid_inception, "load_state_dict_from_url", no_download)
    theirs_net = pfid_inception.InceptionV3([3]).eval()
    ours = _ours(weights, "pytorch-fid", frames)
    with torch.no_grad():
        theirs = [theirs_net(x.float() / 255.0)[0].flatten(1).double().numpy() for x in frames]
    for a, b in zip(ours, theirs):
        assert np.abs(a - b).max() <= FEATURE_TOL
    (m1, s1), (m2, s2) = _in_span(*theirs, lambda f: (f.mean(0), np.cov(f, rowvar=False)))
    with np.errstate(all="ignore"):
        fid_theirs = calculate_frechet_distance(m1, s1, m2, s2)
    fid_ours = _fid_ours(*ours)
    assert fid_ours > 1.0 and abs(fid_ours - fid_theirs) / fid_theirs <= FID_TOL
    # the two preprocessing conventions really differ (which is why resize_mode is recorded)
    assert np.abs(ours[0] - ours_tf1[0]).max() > 1e-3
