"""Discriminators, augmentation, ADA controller, losses: behaviour on small tensors."""
import pytest
import torch

from gan.augment import InstanceNoise, ada_adjust, diff_augment
from gan.discriminators import ImageDiscriminator, VideoDiscriminator
from gan.losses import ReelGANLoss

E = 5


def _video(b=4, t=8, h=16, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=g) * 2 - 1


def _discriminators(t=8, h=16, w=24, kind="2plus1d"):
    torch.manual_seed(0)
    img = ImageDiscriminator(E, h, w, frames_per_clip=2, channels=(8, 8, 16, 16), features=16)
    vid = VideoDiscriminator(E, t, h, w, kind=kind, channels=(8, 16, 16), features=16)
    return img, vid


@pytest.mark.parametrize("kind", ["2plus1d", "3d"])
def test_discriminator_shapes_and_projection(kind):
    img, vid = _discriminators(kind=kind)
    x, c = _video(), torch.nn.functional.normalize(torch.randn(4, E), dim=1)
    idx = torch.tensor([[0, 7]] * 4)
    assert img(x, c, idx).shape == (4, 2) and vid(x, c).shape == (4, 1)
    # the score depends on the condition through the projection head
    assert not torch.allclose(vid(x, c), vid(x, c.roll(1, 0)))
    # the image D only looks at the frames it is given
    x2 = x.clone()
    x2[:, 3] = 0
    assert torch.equal(img(x, c, idx), img(x2, c, idx))


def test_video_d_needs_enough_frames():
    with pytest.raises(ValueError, match="at least 4"):
        VideoDiscriminator(E, 3, 16, 16)


def test_augmentation_is_shared_across_frames_and_p_controls_it():
    x = _video().repeat(1, 1, 1, 1, 1)
    x[:, :] = x[:, :1]                                # a clip of identical frames stays identical
    g = torch.Generator().manual_seed(1)
    y = diff_augment(x, 1.0, generator=g)
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert torch.allclose(y[:, 1:], y[:, :1].expand_as(y[:, 1:]))
    assert torch.equal(diff_augment(x, 0.0, generator=g), x)
    # gradient flows through every transform (DiffAugment)
    x.requires_grad_(True)
    diff_augment(x, 1.0, generator=g).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown augmentation"):
        diff_augment(x, 0.5, policy=["hue"])


def test_ada_adjust_steers_towards_target():
    assert ada_adjust(0.2, rt=0.9, target=0.6, images=1000, speed_images=10_000) == pytest.approx(0.3)
    assert ada_adjust(0.2, rt=0.1, target=0.6, images=1000, speed_images=10_000) == pytest.approx(0.1)
    assert ada_adjust(0.0, rt=0.1, target=0.6, images=1000, speed_images=10) == 0.0
    assert ada_adjust(0.99, rt=1.0, target=0.6, images=1000, speed_images=10) == 1.0


def test_instance_noise_uses_ddpm_add_noise():
    noise = InstanceNoise(t_max=100)
    x = _video(b=64)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(noise(x, 0.0, generator=g), x)
    y = noise(x, 1.0, generator=g)
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert (y - x).abs().mean() < 1.0  # t <= 100 of 1000 linear-beta steps: still mostly signal


def test_loss_phases_and_mismatch_negatives():
    img, vid = _discriminators()
    g = torch.Generator().manual_seed(0)
    loss = ReelGANLoss(img, vid, augment=lambda v: diff_augment(v, 0.5, generator=g),
                       frame_index=lambda b, t: torch.randint(t, (b, 2), generator=g),
                       r1_gamma=2.0, r1_interval=4, mismatch_weight=1.0)
    real, fake = _video(seed=1), _video(seed=2).requires_grad_(True)
    c = torch.nn.functional.normalize(torch.randn(4, E), dim=1)
    d_loss, logs, real_logits = loss.d_main(real, fake.detach(), c)
    assert real_logits.shape == (4, 3) and "loss/d_mismatch" in logs
    d_loss.backward()
    assert all(p.grad is not None for p in img.head.embed.parameters())
    g_loss, _ = loss.g_main(fake, c)
    g_loss.backward()
    assert fake.grad.abs().sum() > 0
    r1, logs = loss.d_reg(real, c)
    assert r1.item() == pytest.approx(logs["loss/r1_penalty"].item() * 2.0 / 2 * 4, rel=1e-5)
    img.zero_grad()
    r1.backward()                                     # double backward reaches D's weights
    assert img.from_rgb.weight.grad.abs().sum() > 0


def test_a_training_window_trains_on_that_many_frames_and_still_generates_whole_clips():
    import warnings

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from _tiny_gan import TINY, _Clips, _collate
    from gan.module import ReelGAN

    with pytest.raises(ValueError, match="train_window=3 must be 0"):
        ReelGAN(**{**TINY, "frames": 8}, train_window=3)
    torch.manual_seed(0)
    model = ReelGAN(**{**TINY, "frames": 8}, train_window=4)
    seen, features = [], model.video_discriminator.features
    model.video_discriminator.features = lambda video: (seen.append(video.shape[1]), features(video))[1]
    loader = DataLoader(_Clips(frames=8), batch_size=4, collate_fn=_collate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl.Trainer(max_steps=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(model, loader)
    assert seen and set(seen) == {4}           # real and fake windows of 4 of the clip's 8 frames
    z = torch.randn(2, model.generator.z_dim)
    assert model.generator_ema(z, torch.nn.functional.normalize(torch.randn(2, 8), dim=1)).shape[1] == 8


def test_unrolled_cpu_gru_is_nn_gru_and_batched_affines_are_the_layers():
    """The CPU motion GRU runs nn.GRU's equations over its own parameters (one input projection for all frames),
    and G's styles come from one matmul over the concatenated affines: both the same functions, gradients too."""
    from gan.layers import EqualLinear, batched_affines
    from gan.motion import GRUMotion

    torch.manual_seed(0)
    motion = GRUMotion(w_dim=12, noise_dim=3, channels=4, frames=5, hidden=6).double()
    w = torch.randn(4, 12, dtype=torch.double, requires_grad=True)
    noise = torch.randn(4, 5, 3, dtype=torch.double)
    ours, _ = motion(w, noise, None)
    codes, _ = motion.gru(noise, torch.tanh(motion.init_state(w)).unsqueeze(0))
    reference = w[:, None, :] + motion.to_style(codes)
    torch.testing.assert_close(ours, reference)
    params = [w, *motion.gru.parameters()]
    for a, b in zip(torch.autograd.grad(ours.sin().sum(), params), torch.autograd.grad(reference.sin().sum(), params)):
        torch.testing.assert_close(a, b)

    affines = [EqualLinear(12, n, bias_init=1.0).double() for n in (5, 3, 7)]
    for layer, out in zip(affines, batched_affines(affines, w).split([5, 3, 7], dim=1)):
        torch.testing.assert_close(out, layer(w))
    with pytest.raises(ValueError, match="one weight scale"):
        batched_affines([EqualLinear(12, 3), EqualLinear(8, 3)], w)


def test_the_diversity_term_rewards_clips_of_one_condition_that_differ_with_z_up_to_its_cap():
    from _tiny_gan import TINY
    from gan.module import ReelGAN

    torch.manual_seed(0)
    model = ReelGAN(**TINY, diversity_weight=1.0, diversity_rows=0.5, diversity_cap=10.0)
    z, cond = torch.randn(4, model.generator.z_dim), torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    fake = model.generator(z, cond)
    spread = model._seed_spread(z, fake, cond, None, None)
    assert 0 < float(spread) < 10.0
    spread.backward()                                          # the reward trains G
    assert model.generator.mapping.net[0].weight.grad.abs().sum() > 0
    model.hparams.diversity_cap = 1e-4
    assert float(model._seed_spread(z, fake.detach(), cond, None, None)) == pytest.approx(1e-4)
    model.hparams.diversity_cap = 10.0
    still = torch.zeros_like(fake)                             # a G that ignores z earns nothing
    model.generator.forward = lambda *a, **k: still[:a[0].shape[0]]
    assert float(model._seed_spread(z, still, cond, None, None)) == 0.0
