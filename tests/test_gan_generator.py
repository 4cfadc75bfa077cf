"""The generator: shapes for every motion module and non-square sizes, determinism, truncation, bad input."""
import pytest
import torch

from gan.generator import VideoGenerator
from gan.motion import MOTION_MODULES
from gan.seeds import latents_for_seeds
from generate.sampler import generate_clips

SMALL = dict(content_dim=16, motion_noise_dim=4, w_dim=32, embed_dim=8, mapping_layers=2,
             channels=(32, 32, 16, 8), truncation_anchors=16)


@pytest.mark.parametrize("motion", sorted(MOTION_MODULES))
@pytest.mark.parametrize("frames,height,width", [(8, 32, 32), (4, 48, 64), (5, 16, 40)])
def test_shapes_range_and_motion(motion, frames, height, width):
    torch.manual_seed(0)
    kw = {"motion_kwargs": {"heads": 2}} if motion == "attention" else {}
    g = VideoGenerator(6, frames, height, width, motion=motion, **SMALL, **kw)
    z, c = latents_for_seeds([1, 2], g.z_dim), torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    video = g(z, c)
    assert video.shape == (2, frames, 3, height, width)
    assert video.abs().max() <= 1.0
    # frames differ (the motion module moves the clip) and the clip reacts to the motion part of z only
    assert (video[:, 1:] - video[:, :-1]).abs().mean() > 1e-4
    z2 = z.clone()
    z2[:, g.content_dim:] = torch.randn_like(z2[:, g.content_dim:])
    assert not torch.allclose(g(z2, c), video)
    video.float().mean().backward()     # every parameter that shapes the output gets a gradient
    assert all(p.grad is not None for p in g.parameters() if p.requires_grad)


def test_deterministic_no_hidden_noise_and_condition_matters():
    g = VideoGenerator(6, 4, 16, 16, **SMALL)
    z, c = latents_for_seeds([3, 4], g.z_dim), torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    assert torch.equal(g(z, c), g(z, c))
    assert not torch.allclose(g(z, c), g(z, c.flip(0)))
    assert g.config["channels"] == [32, 32, 16, 8]
    rebuilt = VideoGenerator(**g.config)
    rebuilt.load_state_dict(g.state_dict())
    assert torch.equal(rebuilt(z, c), g(z, c))


@pytest.mark.parametrize("motion", sorted(MOTION_MODULES))
def test_a_training_window_is_exactly_those_frames_of_the_whole_clip(motion):
    torch.manual_seed(0)
    kw = {"motion_kwargs": {"heads": 2}} if motion == "attention" else {}
    g = VideoGenerator(6, 8, 16, 16, motion=motion, **SMALL, **kw)
    z, c = latents_for_seeds([1, 2], g.z_dim), torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    whole = g(z, c)
    for start, length in ((0, 4), (3, 5), (4, 4)):
        torch.testing.assert_close(g(z, c, window=(start, length)), whole[:, start:start + length])
    with pytest.raises(ValueError, match="not inside the clip's 8 frames"):
        g(z, c, window=(5, 4))


def test_truncation_pulls_towards_the_condition_mean():
    torch.manual_seed(1)
    g = VideoGenerator(6, 4, 16, 16, **SMALL, truncation_from_level=0)     # every level: StyleGAN's truncation
    c = torch.nn.functional.normalize(torch.randn(1, 6), dim=1).repeat(8, 1)
    z = latents_for_seeds(list(range(8)), g.z_dim)
    spread = {psi: g(z, c, truncation=psi).std(dim=0).mean().item() for psi in (1.0, 0.5, 0.0)}
    assert spread[0.0] < spread[0.5] < spread[1.0]
    # psi = 0 puts every z of one user at the condition's mean w: the content code no longer matters, only the
    # motion noise does (two z that share their motion noise give the same clip), and at psi = 1 it does matter
    other = z.clone()
    other[:, :g.content_dim] = latents_for_seeds(list(range(100, 108)), g.content_dim)
    with torch.no_grad():
        assert torch.equal(g(z, c, truncation=0.0), g(other, c, truncation=0.0))
        assert not torch.allclose(g(z, c), g(other, c))
    # the mean w of a condition does not depend on the rows beside it
    assert torch.allclose(g.average_w(c)[3], g.average_w(c[:1])[0], atol=1e-6)


def test_truncation_from_a_level_keeps_the_seeds_coarse_levels():
    torch.manual_seed(1)
    every = VideoGenerator(6, 4, 16, 16, **SMALL, truncation_from_level=0)
    fine = VideoGenerator(**{**every.config, "truncation_from_level": 2})
    fine.load_state_dict(every.state_dict())
    c = torch.nn.functional.normalize(torch.randn(1, 6), dim=1).repeat(8, 1)
    z = latents_for_seeds(list(range(8)), every.z_dim)
    other = z.clone()
    other[:, :every.content_dim] = latents_for_seeds(list(range(100, 108)), every.content_dim)
    with torch.no_grad():
        assert torch.equal(fine(z, c), every(z, c))                  # no truncation: the same clips
        # at psi = 0 the content code still shapes the coarse levels (pose), so two z differ, and the seeds
        # spread more than under a pull of every level, but less than untruncated
        assert not torch.allclose(fine(z, c, truncation=0.0), fine(other, c, truncation=0.0))
        spread = {name: g(z, c, truncation=0.0).std(dim=0).mean().item() for name, g in (("all", every),
                                                                                       ("fine", fine))}
        assert spread["all"] < spread["fine"] < every(z, c).std(dim=0).mean().item()
    with pytest.raises(ValueError, match="truncation_from_level=4"):
        VideoGenerator(6, 4, 16, 16, **SMALL, truncation_from_level=4)


def test_same_seed_same_clip_whatever_the_batch_size():
    g = VideoGenerator(6, 4, 16, 24, motion="sep3d", **SMALL)
    cond = torch.nn.functional.normalize(torch.randn(5, 6), dim=1)
    seeds = [10, 11, 12, 13, 14]
    full = generate_clips(g, cond, seeds, truncation=0.7, batch_size=5)
    ones = generate_clips(g, cond, seeds, truncation=0.7, batch_size=1)
    twos = generate_clips(g, cond, seeds, truncation=0.7, batch_size=2)
    torch.testing.assert_close(full, ones, atol=1e-5, rtol=0)
    torch.testing.assert_close(full, twos, atol=1e-5, rtol=0)
    alone = generate_clips(g, cond[3:4], [13], truncation=0.7, batch_size=4)
    torch.testing.assert_close(alone[0], full[3], atol=1e-5, rtol=0)


def test_latents_for_seeds_rows_are_independent_of_batch():
    a = latents_for_seeds([5, 6, 7], 9)
    assert a.shape == (3, 9) and a.dtype == torch.float32
    assert torch.equal(latents_for_seeds([6], 9)[0], a[1])
    assert not torch.equal(a[0], a[1])
    with pytest.raises(TypeError, match="seeds"):
        latents_for_seeds(5, 9)
    with pytest.raises(ValueError, match="seeds\\[1\\]"):
        latents_for_seeds([1, -2], 9)


@pytest.mark.parametrize("kwargs,field", [(dict(height=36), "height=36"), (dict(width=20), "width=20"),
                                          (dict(frames=0), "frames=0"), (dict(motion="lstm"), "lstm"),
                                          (dict(motion="sep3d", motion_kwargs={"hidden": 8}), "hidden")])
def test_bad_sizes_name_the_field(kwargs, field):
    args = dict(cond_dim=6, frames=4, height=16, width=16) | kwargs
    with pytest.raises(ValueError, match=field):
        VideoGenerator(**args, **SMALL)


def test_wrong_input_shapes_are_explained():
    g = VideoGenerator(6, 4, 16, 16, **SMALL)
    with pytest.raises(ValueError, match="z must be"):
        g(torch.zeros(2, 3), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="cond_dim"):
        g(torch.zeros(2, g.z_dim), torch.zeros(2, 7))


def test_attributes_are_drawn_from_the_shoppers_head_by_the_seed_and_its_mode_under_truncation():
    torch.manual_seed(2)
    g = VideoGenerator(6, 4, 16, 16, **SMALL, attribute_classes=[3, 5])
    assert g.z_dim == 16 + 4 * 4 + 2                         # one draw per attribute at the end of z
    with torch.no_grad():                                    # a shopper who likes value 4 of attribute 1 (p ≈ 0.6)
        g.preference.linear.weight.zero_()
        g.preference.linear.bias.copy_(torch.tensor([0., 0., 0., 0., 0., 0., 0., 1.8]))
    c = torch.nn.functional.normalize(torch.randn(1, 6), dim=1).repeat(400, 1)
    z = latents_for_seeds(list(range(400)), g.z_dim)
    drawn = g.attributes_for(z, c)
    share = (drawn[:, 1] == 4).float().mean().item()
    assert 0.5 < share < 0.7 and set(drawn[:, 0].tolist()) == {0, 1, 2}     # draws follow p(a | shopper)
    assert (g.attributes_for(z, c, truncation=0.7)[:, 1] == 4).all()        # truncation takes the mode
    assert torch.equal(g.attributes_for(z[:3], c[:3]), drawn[:3])           # the seed fixes the draw
    # a given value wins over the draw, -1 leaves it to the head, and the clip follows the attributes
    fixed = g.attributes_for(z[:4], c[:4], attributes=torch.tensor([[2, -1]] * 4))
    assert fixed[:, 0].tolist() == [2] * 4 and torch.equal(fixed[:, 1], drawn[:4, 1])
    with torch.no_grad():
        a = g(z[:2], c[:2], attributes=torch.tensor([[0, 0], [0, 0]]))
        b = g(z[:2], c[:2], attributes=torch.tensor([[0, 3], [0, 3]]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="beyond"):
        g(z[:1], c[:1], attributes=torch.tensor([[3, 0]]))
    # the head learns p(attribute | shopper) from the paired clips' labels; -1 labels are ignored
    labels = torch.tensor([[1, 4], [1, -1]])
    opt = torch.optim.Adam(g.preference.parameters(), lr=0.05)
    for _ in range(100):
        loss = g.preference.loss(c[:2], labels)
        opt.zero_grad(); loss.backward(); opt.step()
    assert g.attributes_for(z[:1], c[:1], truncation=0.5).tolist() == [[1, 4]]
