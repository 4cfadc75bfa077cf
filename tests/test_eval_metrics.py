"""compute_fid / compute_fvd end to end on real mp4 files: names, pinned protocol, real-statistics cache, repeats."""
import json

import numpy as np
import pytest
import torch

from data.video import read_clip, write_video
from evaluation.features import FeatureExtractor, get_feature_extractor, register_feature_extractor
from evaluation.metrics.compute import (compute_fid, compute_fvd, feature_stats, format_result, frechet_metric, mean_std,
                                repeat_metric)
from evaluation.metrics.stats import gaussian_from_features
from evaluation.metrics.frechet import frechet_distance


class _ClipMoments(FeatureExtractor):
    """A cheap, real video network for the pipeline tests: per-clip colour means, spreads and motion energy."""

    name, tag, dim, kind = "test-clip-moments", "clip-moments", 9, "video"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.weights_sha256, self.resize_mode, self.standard = "f" * 64, "native", True

    def _clips(self, video):
        x = video.double() / 255.0
        motion = (x[:, 1:] - x[:, :-1]).abs().mean((1, 3, 4))
        return torch.cat([x.mean((1, 3, 4)), x.std((1, 3, 4)), motion], 1)


register_feature_extractor(_ClipMoments.name, _ClipMoments)


def _write_clips(folder, n, seed, brightness):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        t = np.arange(6)[:, None, None, None]
        yy, xx = np.mgrid[0:32, 0:32]
        wave = np.sin((xx[None, ..., None] + 3 * t * (i + 1)) / 4.0 + rng.uniform(0, 6, size=3))
        frames = np.clip(brightness + 60 * wave + rng.normal(0, 8, (6, 32, 32, 3)), 0, 255).astype(np.uint8)
        paths.append(write_video(folder / f"clip{i}.mp4", frames))
    return paths


def _batches(paths, frames=4, batch=3):
    """Decoded mp4s → uint8 (B, T, 3, H, W) batches, as the CLI will feed them."""
    for i in range(0, len(paths), batch):
        clips = [read_clip(p, frames, start=0, size=(32, 32)) for p in paths[i:i + batch]]
        yield torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).contiguous()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    (root / "real").mkdir()
    (root / "fake").mkdir()
    return _write_clips(root / "real", 6, 0, 110), _write_clips(root / "fake", 6, 1, 150)


def test_compute_fvd_pins_the_protocol_and_caches_the_real_side(clips, tmp_path):
    real, fake = clips
    key = {"dataset": "unit", "frames": 4, "stride": 1, "clips": 6}
    res = compute_fvd(lambda: _batches(real), _batches(fake), "test-clip-moments", cache_dir=tmp_path,
                      real_key=key, frames=4, stride=1, offset=0, seeds=[7, 8])
    assert res["metric"] == "fvd[clip-moments]" and res["value"] > 0
    proto = res["protocol"]
    assert proto["covariance_normalisation"] == "n" and proto["real_clips"] == proto["fake_rows"] == 6
    assert proto["frames"] == 4 and proto["seeds"] == [7, 8] and proto["network"]["resize_mode"] == "native"
    assert proto["real_stats_cache"].endswith(".safetensors") and len(proto["real_stats_sha256"]) == 64
    json.dumps(res)  # the result is JSON as is
    # same value as the direct formula on the same features
    ext = get_feature_extractor("test-clip-moments")
    f_real = torch.cat([ext.features(b) for b in _batches(real)])
    f_fake = torch.cat([ext.features(b) for b in _batches(fake)])
    g1, g2 = gaussian_from_features(f_real, "n"), gaussian_from_features(f_fake, "n")
    assert res["value"] == pytest.approx(frechet_distance(g1.mu, g1.sigma, g2.mu, g2.sigma), rel=1e-10)

    def must_not_decode():
        raise AssertionError("the cached real side was decoded again")

    again = compute_fvd(must_not_decode, _batches(fake), "test-clip-moments", cache_dir=tmp_path, real_key=key)
    assert again["value"] == res["value"]
    assert again["protocol"]["real_stats_sha256"] == proto["real_stats_sha256"]
    # another real-data description or normalisation never reuses stale numbers silently
    other = compute_fvd(lambda: _batches(real[:4]), _batches(fake), "test-clip-moments", cache_dir=tmp_path,
                        real_key={**key, "clips": 4}, normalisation="n-1")
    assert other["protocol"]["real_stats_sha256"] != proto["real_stats_sha256"]
    assert other["protocol"]["covariance_normalisation"] == "n-1"
    with pytest.raises(ValueError, match="needs real_key"):
        compute_fvd(_batches(real), _batches(fake), "test-clip-moments", cache_dir=tmp_path)


def test_compute_fid_with_effnet_on_decoded_clips(clips):
    real, fake = clips
    ext = get_feature_extractor("effnet-lite0")
    res = compute_fid(_batches(real, frames=2), _batches(fake, frames=2), ext, max_clips=4, frames=2)
    assert res["metric"] == "fid[effnet-lite0]"
    assert res["protocol"]["real_rows"] == 8 and res["protocol"]["real_clips"] == 4  # 4 clips × 2 frames
    assert res["protocol"]["frechet_route"] == "pivoted-cholesky"  # 8 rows in 1280-d: singular, handled exactly
    assert res["value"] > 0 and np.isfinite(res["value"])
    with pytest.raises(ValueError, match="fvd needs a video network"):
        compute_fvd(_batches(real), _batches(fake), "effnet-lite0")
    with pytest.raises(ValueError, match="empty iterable"):
        compute_fid([], _batches(fake), ext)


def test_repeats_and_per_group_stats(clips):
    real, fake = clips
    ext = get_feature_extractor("test-clip-moments")
    fakes = {0: fake[:3], 1: fake[3:], 2: real[3:]}
    rep = repeat_metric(lambda s: compute_fvd(_batches(real), _batches(fakes[s]), ext, seeds=[s]), [0, 1, 2])
    assert rep["metric"] == "fvd[clip-moments]" and rep["seeds"] == [0, 1, 2] and "seeds" not in rep["protocol"]
    assert rep["mean"] == pytest.approx(np.mean(rep["values"])) and rep["std"] == pytest.approx(
        np.std(rep["values"], ddof=1))
    assert format_result(rep).startswith("fvd[clip-moments] = ") and "± " in format_result(rep)
    assert mean_std([2.0]) == {"mean": 2.0, "std": 0.0, "n": 1, "ddof": 1, "values": [2.0]}
    # the per-group API used by conditional FVD
    r_stats, r_clips = feature_stats(_batches(real), ext, "n")
    f_stats, f_clips = feature_stats(_batches(fake[:3]), ext, "n")
    group = frechet_metric("fvd", r_stats, f_stats, ext, r_clips, f_clips, "0" * 64, extra={"group": "u1"})
    assert group["value"] == pytest.approx(rep["values"][0], rel=1e-12) and group["protocol"]["extra"]["group"] == "u1"
