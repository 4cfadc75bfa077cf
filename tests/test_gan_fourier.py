"""G's position (Fourier) features: their values, their learned per-frame shift, and their place in the generator."""
import math

import pytest
import torch

from gan.fourier import FourierFeatures
from gan.generator import VideoGenerator
from gan.seeds import latents_for_seeds

SMALL = dict(content_dim=16, motion_noise_dim=4, w_dim=32, embed_dim=8, mapping_layers=2,
             channels=(32, 32, 16, 8), truncation_anchors=16)


def test_features_are_sin_and_cos_of_each_pixel_centre_at_the_chosen_periods():
    f = FourierFeatures(3, 8, 12, w_dim=4, periods=(2.5, 10.0))
    out = f(torch.randn(2, 4))
    assert out.shape == (2, 12, 8, 12)
    periods = [2.5, 5.0, 10.0]                        # geometric between the two ends
    x = torch.arange(12) + 0.5
    y = torch.arange(8) + 0.5
    for i, p in enumerate(periods):                   # shift starts at zero: every w gives the same phase
        torch.testing.assert_close(out[1, i], torch.sin(2 * math.pi * x / p).expand(8, 12))       # along x
        torch.testing.assert_close(out[0, 3 + i], torch.sin(2 * math.pi * y / p)[:, None].expand(8, 12))
        torch.testing.assert_close(out[0, 6 + i], torch.cos(2 * math.pi * x / p).expand(8, 12))


def test_a_learned_shift_translates_the_features():
    f = FourierFeatures(2, 16, 16, w_dim=3, periods=(3.0, 7.0))
    with torch.no_grad():
        f.shift.bias.copy_(torch.tensor([2.0, -1.0]))     # (dx, dy) in pixels, whatever w
    moved, still = f(torch.zeros(1, 3)), FourierFeatures(2, 16, 16, w_dim=3, periods=(3.0, 7.0))(torch.zeros(1, 3))
    # a pixel's features are the unshifted ones two columns right and one row up
    torch.testing.assert_close(moved[0, :, 1:, :-2], still[0, :, :-1, 2:], atol=1e-5, rtol=0)
    assert not torch.allclose(moved, still)


@pytest.mark.parametrize("periods", [(1.5, 4.0), (6.0, 3.0)])
def test_periods_that_alias_or_are_reversed_are_refused(periods):
    with pytest.raises(ValueError, match="shortest >= 2 px"):
        FourierFeatures(2, 8, 8, w_dim=4, periods=periods)


def test_the_generator_feeds_them_to_its_full_size_level_and_stays_deterministic():
    plain = VideoGenerator(6, 4, 16, 16, **SMALL)
    g = VideoGenerator(6, 4, 16, 16, **SMALL, fourier_features=2)
    assert not any(k.startswith("fourier") for k in plain.state_dict())   # off: the old checkpoints' keys
    top = g.convs[-1][1].conv
    assert top.weight.shape[1] == 8 + g.fourier.channels == 16             # the full-size level's second conv
    z, c = latents_for_seeds([5, 6], g.z_dim), torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    video = g(z, c)
    assert torch.equal(video, g(z, c))
    rebuilt = VideoGenerator(**g.config)
    rebuilt.load_state_dict(g.state_dict())
    assert torch.equal(rebuilt(z, c), video)
    assert torch.equal(g(z, c, truncation=0.7), g(z, c, truncation=0.7))
    video.square().mean().backward()              # the shift learns from the clips (its bias gets a gradient)
    assert g.fourier.shift.bias.grad.abs().sum() > 0
