"""Pixel statistics of generated clips against real ones: sharpness, motion, and seed diversity per shopper."""
import pytest
import torch
import torch.nn.functional as F

from evaluation.personalisation.quality import motion, quality_against_real, seed_diversity, sharpness


def _clips(n=4, t=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, t, 3, size, size), generator=g, dtype=torch.uint8)


def test_blur_lowers_sharpness_frozen_clips_have_no_motion_and_ratios_compare_them():
    sharp = _clips()
    soft = F.avg_pool2d(sharp.reshape(-1, 3, 16, 16).float(), 3, 1, 1).round().to(torch.uint8).reshape(sharp.shape)
    assert sharpness(soft) < 0.5 * sharpness(sharp)
    frozen = sharp[:, :1].expand(-1, 4, -1, -1, -1).contiguous()
    assert motion(frozen) == 0.0 and motion(sharp) > 50
    # a flat frame with one bright pixel: |Laplacian| 4·255 there and 255 at its 4 neighbours, over 14×14 pixels
    dot = torch.zeros(1, 2, 3, 16, 16, dtype=torch.uint8)
    dot[..., 8, 8] = 255
    assert sharpness(dot) == pytest.approx(8 * 255 / 196)
    q = quality_against_real(soft, sharp, k=2)
    assert q["sharpness"]["ratio"] == pytest.approx(sharpness(soft) / sharpness(sharp))
    assert q["motion"]["ratio"] == pytest.approx(motion(soft) / motion(sharp)) and q["motion"]["ratio"] < 1.0
    with pytest.raises(ValueError, match="same frames and size"):
        quality_against_real(soft, sharp[:, :2], k=2)


def test_seed_diversity_is_zero_for_a_shopper_whose_seeds_agree():
    a = _clips(n=1)
    same = a.expand(4, -1, -1, -1, -1).contiguous()                # 2 shoppers × 2 identical clips
    assert seed_diversity(same, 2) == 0.0
    b = torch.cat([a, a.flip(-1), a, a])                           # shopper 0's clips differ, shopper 1's do not
    one = float((a.double() - a.flip(-1).double()).abs().mean())
    assert seed_diversity(b, 2) == pytest.approx(one / 2)
    assert seed_diversity(b, 1) is None
    with pytest.raises(ValueError):
        seed_diversity(b, 3)
