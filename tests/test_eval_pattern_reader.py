"""The independent garment-pattern reader: calibrated on real clips, it names the pattern of products it never saw."""
import numpy as np
import pytest
import torch

from evaluation.features.realclips import load_real_clips, split_by_product
from evaluation.personalisation.pattern_reader import (FEATURES, PATTERNS, PatternReader, at_size, held_out_accuracy,
                                                       pattern_features, reader_hits)

import _eval_world as _world


@pytest.fixture(scope="module")
def real(eval_world):
    return load_real_clips(eval_world.root, _world.FRAMES, *_world.SIZE)


def test_reads_the_pattern_of_held_out_real_products(real):
    patterns = real.attributes["pattern"]
    train, test = split_by_product(real.product_ids, 0.2, seed=0)
    # 27 of 31 clips of products it was not calibrated on (demo world at 32 px: 61 of 62)
    assert held_out_accuracy(real.video, patterns, train, test) >= 0.8
    reader = PatternReader.calibrate(real.video, patterns)
    pred = reader.read(real.video)
    assert np.mean([p >= 0 and PATTERNS[p] == q for p, q in zip(pred, patterns)]) >= 0.8
    # every pattern is named right on most of its clips: none is folded into another
    for k, name in enumerate(PATTERNS):
        mine = np.array(patterns) == name
        assert (pred[mine] == k).mean() >= 0.6, (name, np.bincount(pred[mine] + 1))


def test_texture_numbers_of_drawn_stripes_and_a_plain_garment_and_the_hit_rates(real):
    plain = torch.full((1, 2, 3, 16, 16), 128, dtype=torch.uint8)
    plain[..., 0, 4:12, 4:12], plain[..., 1, 4:12, 4:12], plain[..., 2, 4:12, 4:12] = 35, 75, 210   # blue garment
    striped = plain.clone()
    striped[:, :, 0, 4:12:2, 4:12], striped[:, :, 1, 4:12:2, 4:12], striped[:, :, 2, 4:12:2, 4:12] = 151, 167, 222
    f = pattern_features(torch.cat([plain, striped]))
    assert f.shape == (2, len(FEATURES))
    assert f[0, 1] < 0.05 and f[1, 1] > 0.5 and f[1, 4] > 0.8      # rows alternate: vertical change, none across
    grey = torch.full((1, 2, 3, 16, 16), 128, dtype=torch.uint8)
    assert np.isnan(pattern_features(grey)).all()
    small = at_size(real.video, 16, 16)
    assert small.shape[-2:] == (16, 16) and small.dtype == torch.uint8
    video = real.video[:6]
    hits = reader_hits({"own": video, "shuffled": video.flip(0)}, [real.attributes["pattern"][i] for i in (0, 2, 4)], 2,
                       real.video, real.attributes["pattern"], real.product_ids)
    assert hits["real_accuracy_heldout"] >= 0.8 and hits["size"] == [32, 32]
    assert 0.5 <= hits["hit_rate"] <= 1.0 and hits["hit_rate"] > 0.0   # each user's first clip is its favourite
