"""The conditioning parts of the GAN: the projected image D, the contrastive and product-attribute losses, the
same-shopper masking of negatives, and the refusal to resume a checkpoint of other networks."""
import pytest
import torch

from data.pretrained import build_effnet_lite0
from gan.discriminators import AttributeHead, ImageDiscriminator, VideoDiscriminator
from gan.image_discriminators import build_image_discriminator
from gan.losses import ReelGANLoss
from gan.module import ReelGAN
from gan.projected import ProjectedImageDiscriminator

TINY = dict(cond_dim=8, frames=4, height=16, width=16, content_dim=16, motion_noise_dim=4, w_dim=32, embed_dim=8,
            mapping_layers=2, g_channels=(32, 32, 16, 16), motion_kwargs={"hidden": 16},
            d_image_channels=(16, 16, 32, 32), d_video_channels=(16, 16, 32), d_features=32)


@pytest.fixture(scope="module")
def projected():
    torch.manual_seed(0)
    return ProjectedImageDiscriminator(8, 16, 16, upsample=2, proj_channels=(8, 8, 16), width_per_scale=8,
                                       features=16)


def test_projected_d_uses_the_packaged_imagenet_weights_frozen_and_in_eval_mode(projected):
    reference = build_effnet_lite0()
    torch.testing.assert_close(projected.backbone[0].weight, reference.conv_stem.weight)
    projected.train()
    assert not any(m.training for m in projected.backbone.modules()), "backbone BatchNorms must keep ImageNet stats"
    video = (torch.rand(2, 4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    before = projected.backbone[1].running_mean.clone()
    logits = projected(video, torch.randn(2, 8), torch.tensor([[0, 1], [2, 3]]))
    assert logits.shape == (2, 2 * 3)                                # k frames × 3 scales
    logits.sum().backward()
    assert all(p.grad is None for p in projected.backbone.parameters())
    assert all(p.grad is None for m in (projected.ccm, projected.csm_up, projected.csm_mix) for p in m.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in projected.discs.parameters())
    assert video.grad is not None and video.grad.abs().sum() > 0     # G is trained through the frozen features
    torch.testing.assert_close(projected.backbone[1].running_mean, before)


def test_image_d_registry_names_the_choices():
    assert isinstance(build_image_discriminator("conv", cond_dim=4, height=16, width=16), ImageDiscriminator)
    with pytest.raises(ValueError, match=r"d_image_kind='stylegan9'.*conv.*projected"):
        build_image_discriminator("stylegan9", cond_dim=4, height=16, width=16)


def test_hybrid_d_scores_each_frame_in_pixels_and_in_frozen_features_and_r1_smooths_only_the_pixels():
    from gan.hybrid import HybridImageDiscriminator

    torch.manual_seed(0)
    hybrid = build_image_discriminator("hybrid", cond_dim=8, height=16, width=16, channels=(8, 8, 16, 16),
                                       features=16, proj_channels=(8, 8, 16), width_per_scale=8)
    assert isinstance(hybrid, HybridImageDiscriminator)
    assert not any(k.startswith("r1_part") for k in hybrid.state_dict()), "the pixel D is saved once"
    hybrid.eval()                      # spectral norm's power iteration would move between the calls compared below
    video = torch.rand(3, 4, 3, 16, 16) * 2 - 1
    cond, idx = torch.randn(3, 8), torch.tensor([[0, 1], [2, 3], [1, 1]])
    feats = hybrid.features(video, idx)
    assert [tuple(f.shape) for f in feats] == [(3, 2, 16)] * 4          # the pixel D, then 3 projected scales
    logits = hybrid.score(feats, cond)
    assert logits.shape == (3, 2 * 4)
    # the pixel columns are the pixel D's own score of the same frames; the rest, the projected D's
    torch.testing.assert_close(logits[:, :2], hybrid.pixel(video, cond, idx))
    torch.testing.assert_close(logits[:, 2:], hybrid.projected(video, cond, idx))
    phis = hybrid.condition_embedding(cond)                            # made once, it gives the same scores
    torch.testing.assert_close(hybrid.score(feats, cond, phis), logits)
    assert hybrid.pairwise(feats, cond, phis).shape == (3, 2 * 4, 3)
    assert hybrid.frame_features(feats).shape == (3, 2, hybrid.feature_dim)

    video_d = VideoDiscriminator(8, 4, 16, 16, channels=(8, 8, 16), features=16)
    loss = ReelGANLoss(hybrid, video_d, lambda v: v, lambda b, t: torch.zeros(b, 2, dtype=torch.long), r1_gamma=1.0)
    penalty, _ = loss.d_reg(video, cond)
    penalty.backward()
    touched = lambda m: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # noqa: E731
    assert touched(hybrid.pixel) and touched(video_d)
    assert not touched(hybrid.projected), "R1 must not run through the projected scales (spectral norm smooths them)"


def test_hybrid_d_can_score_fewer_frames_in_its_costly_projected_part():
    kw = dict(cond_dim=8, height=16, width=16, channels=(8, 8, 16, 16), features=16, proj_channels=(8, 8, 16),
              width_per_scale=8)
    hybrid = build_image_discriminator("hybrid", projected_frames=1, **kw).eval()
    video, cond, idx = torch.rand(3, 4, 3, 16, 16) * 2 - 1, torch.randn(3, 8), torch.tensor([[0, 1], [2, 3], [1, 2]])
    feats = hybrid.features(video, idx)
    assert [f.shape[1] for f in feats] == [2, 1, 1, 1]
    logits = hybrid.score(feats, cond)
    assert logits.shape == (3, 2 + 3)
    torch.testing.assert_close(logits[:, 2:], hybrid.projected(video, cond, idx[:, :1]))   # the first frame only
    assert hybrid.frame_features(feats).shape == (3, 1, hybrid.feature_dim)
    with pytest.raises(ValueError, match="projected_frames=3 must be between 1 and the frames scored per clip"):
        build_image_discriminator("hybrid", projected_frames=3, **kw)


def _loss(**kw):
    torch.manual_seed(0)
    image_d = ImageDiscriminator(8, 16, 16, channels=(8, 8, 16, 16), features=16)
    video_d = VideoDiscriminator(8, 4, 16, 16, channels=(8, 8, 16), features=16)
    frames = lambda b, t: torch.zeros(b, 2, dtype=torch.long)  # noqa: E731
    return ReelGANLoss(image_d, video_d, lambda v: v, frames, **kw), image_d


def test_contrastive_loss_never_uses_the_same_shopper_as_a_negative():
    loss, _ = _loss(contrastive_weight=1.0, mismatch_weight=0.0)
    real = torch.rand(4, 4, 3, 16, 16) * 2 - 1
    same = torch.nn.functional.normalize(torch.randn(1, 8), dim=1).repeat(4, 1)
    _, logs, _ = loss.d_main(real, real, same)
    assert logs["loss/d_contrastive"].item() == pytest.approx(0.0, abs=1e-6)  # nothing to tell apart
    distinct = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    _, logs, _ = loss.d_main(real, real, distinct)
    assert logs["loss/d_contrastive"].item() > 0.1


def test_video_weight_scales_the_video_ds_term_in_gs_loss_and_leaves_the_ds_loss_alone():
    import torch.nn.functional as F

    fake, cond = torch.rand(4, 4, 3, 16, 16) * 2 - 1, torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    (plain, _), (heavy, _) = (_loss(video_weight=w)[0].g_main(fake, cond) for w in (1.0, 3.0))
    loss, _ = _loss()
    video_term = F.softplus(-loss.video_d(fake, cond)).mean()
    torch.testing.assert_close(heavy - plain, 2 * video_term)
    real = torch.rand(4, 4, 3, 16, 16) * 2 - 1
    (d_plain, _, _), (d_heavy, _, _) = (_loss(video_weight=w)[0].d_main(real, fake, cond) for w in (1.0, 3.0))
    torch.testing.assert_close(d_heavy, d_plain)


def test_mismatch_term_skips_pairs_of_the_same_shopper():
    loss, _ = _loss(mismatch_weight=1.0)
    real = torch.rand(4, 4, 3, 16, 16) * 2 - 1
    same = torch.nn.functional.normalize(torch.randn(1, 8), dim=1).repeat(4, 1)
    _, logs, _ = loss.d_main(real, real, same)
    assert logs["loss/d_mismatch"].item() == 0.0
    distinct = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    _, logs, _ = loss.d_main(real, real, distinct)
    assert logs["loss/d_mismatch"].item() > 0.1


def test_attribute_head_learns_labels_and_ignores_unknown_values():
    torch.manual_seed(0)
    head = AttributeHead(6, [3, 2])
    h = torch.randn(32, 1, 6)
    labels = torch.stack([h[:, 0, 0].gt(0).long() + h[:, 0, 1].gt(0.5).long(), h[:, 0, 2].gt(0).long()], 1)
    labels[:5, 1] = -1                                               # unknown pattern for 5 clips
    opt = torch.optim.Adam(head.parameters(), 0.05)
    first = head.loss(h, labels).item()
    for _ in range(200):
        opt.zero_grad()
        head.loss(h, labels).backward()
        opt.step()
    assert head.loss(h, labels).item() < 0.5 * first
    assert head.loss(h, torch.full_like(labels, -1)).item() == 0.0   # all unknown: no signal, no NaN


def test_g_is_pushed_towards_the_paired_clips_attributes():
    """G's attribute term is the head's CE on the fake with the paired real clip's labels."""
    loss, image_d = _loss(mismatch_weight=0.0)
    loss.attribute_head, loss.attribute_weight = AttributeHead(image_d.feature_dim, [3]), 1.0
    fake = torch.rand(4, 4, 3, 16, 16) * 2 - 1
    cond = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    _, logs = loss.g_main(fake, cond, torch.tensor([[0], [1], [2], [0]]))
    expected = loss.attribute_head.loss(image_d.features(fake, torch.zeros(4, 2, dtype=torch.long)),
                                        torch.tensor([[0], [1], [2], [0]]))
    assert logs["loss/g_attributes"].item() == pytest.approx(expected.item(), rel=1e-5)
    _, logs = loss.g_main(fake, cond, None)
    assert "loss/g_attributes" not in logs


def test_a_fake_aware_head_learns_gs_clips_as_fake_values():
    """ADC-GAN: D's head learns reals as "real, v" and G's clips as "fake, v"; G is asked for "real, v"."""
    torch.manual_seed(0)
    head = AttributeHead(4, [3], fake_aware=True)
    assert head.linear.weight.shape[0] == 6 and AttributeHead(4, [3]).linear.weight.shape[0] == 3
    labels = torch.randint(0, 3, (64, 1))
    labels[:4] = -1
    assert torch.equal(head.as_fake(labels), torch.where(labels >= 0, labels + 3, labels))
    real = torch.randn(64, 1, 4) + torch.nn.functional.one_hot(labels.clamp(min=0)[:, 0], 4)[:, None] * 3
    fake = real.clone()
    fake[..., 3] += 4.0                             # G's clips carry something real clips of the value do not
    opt = torch.optim.Adam(head.parameters(), 0.05)
    for _ in range(300):
        opt.zero_grad()
        head.loss(torch.cat([fake, real]), torch.cat([head.as_fake(labels), labels])).backward()
        opt.step()
    with torch.no_grad():
        read_real, read_fake = head.linear(real[4:, 0]).argmax(1), head.linear(fake[4:, 0]).argmax(1)
    assert (read_real == labels[4:, 0]).float().mean() > 0.9             # "real, v"
    assert (read_fake == labels[4:, 0] + 3).float().mean() > 0.9         # "fake, v": G's trick is seen
    # so asking G for "real, v" costs more on such clips than on real-looking ones
    assert head.loss(fake, labels) > head.loss(real, labels) + 1.0


def test_dmain_trains_a_fake_aware_head_on_fakes_and_gmain_asks_for_real_values():
    loss, image_d = _loss(mismatch_weight=0.0)
    loss.attribute_head, loss.attribute_weight = AttributeHead(image_d.feature_dim, [3], fake_aware=True), 1.0
    real, fake = torch.rand(4, 4, 3, 16, 16) * 2 - 1, torch.rand(4, 4, 3, 16, 16) * 2 - 1
    cond = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    labels = torch.tensor([[0], [1], [2], [-1]])
    idx = torch.zeros(4, 2, dtype=torch.long)
    head = loss.attribute_head
    _, logs, _ = loss.d_main(real, fake, cond, labels)
    expected = head.loss(torch.cat([image_d.features(fake, idx), image_d.features(real, idx)]),
                         torch.cat([head.as_fake(labels), labels]))
    assert logs["loss/d_attributes"].item() == pytest.approx(expected.item(), rel=1e-4)
    _, logs = loss.g_main(fake, cond, labels)
    assert logs["loss/g_attributes"].item() == pytest.approx(head.loss(image_d.features(fake, idx), labels).item(),
                                                             rel=1e-4)


def test_resuming_a_checkpoint_of_other_networks_is_refused_clearly():
    saved = ReelGAN(**TINY)
    ckpt = {"state_dict": saved.state_dict(), "reelgan": {"generator_config": saved.generator.config,
                                                          "embeddings_hash": "", "rng": {}}}
    other = ReelGAN(**TINY, attribute_classes=[4, 8], attribute_weight=1.0)
    with pytest.raises(ValueError, match=r"networks differ from this config in \['attribute_head'\]"):
        other.on_load_checkpoint(ckpt)


def test_attribute_projection_conditions_the_ds_on_shopper_and_attributes():
    model = ReelGAN(**TINY, attribute_classes=[2, 3], attribute_conditioning=True, d_attribute_projection=True)
    assert model.image_discriminator.head.embed.weight.shape[1] == 8 + 5
    assert model.video_discriminator.head.embed.weight.shape[1] == 8 + 5
    cond = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    labels = torch.tensor([[1, 2], [0, -1], [1, 2]])
    d_cond = model._d_condition(cond, labels)
    assert torch.equal(d_cond[:, :8], cond)
    s = 2 ** -0.5
    assert torch.allclose(d_cond[:, 8:], torch.tensor([[0, s, 0, 0, s], [s, 0, 0, 0, 0], [0, s, 0, 0, s]]))
    # the same shopper with other attributes is a negative; the same shopper and attributes is not
    same = ReelGANLoss(model.image_discriminator, model.video_discriminator, lambda x: x,
                       lambda b, t: torch.zeros(b, 1, dtype=torch.long)).same_user
    twin = torch.cat([cond[:1], cond[:1], cond[1:2]])
    assert same(model._d_condition(twin, labels)).tolist() == [[True, False, False], [False, True, False],
                                                               [False, False, True]]
    with pytest.raises(ValueError, match="d_attribute_projection needs the clips' product attributes"):
        model._d_condition(cond, None)
    plain = ReelGAN(**TINY, attribute_classes=[2, 3], attribute_conditioning=True)
    assert plain._d_condition(cond, labels) is cond


def test_resuming_with_the_attribute_projection_switched_is_refused_clearly():
    saved = ReelGAN(**TINY, attribute_classes=[2, 3], attribute_conditioning=True)
    ckpt = {"state_dict": saved.state_dict(), "reelgan": {"generator_config": saved.generator.config,
                                                          "embeddings_hash": "", "rng": {}}}
    other = ReelGAN(**TINY, attribute_classes=[2, 3], attribute_conditioning=True, d_attribute_projection=True)
    with pytest.raises(ValueError, match=r"weights of other shapes in \['image_discriminator', 'video_discriminator'\]"):
        other.on_load_checkpoint(ckpt)


def test_a_generator_trained_against_effnet_features_says_so(tmp_path):
    """load_generator reports the feature networks a projected D trained G against (they make biased judges)."""
    from generate.loading import load_generator

    model = ReelGAN(**TINY, d_image_kind="projected", d_image_kwargs={"proj_channels": [8, 8, 8],
                                                                      "width_per_scale": 8, "features": 8})
    for kind, expected in (("projected", ["effnet-lite0"]), ("hybrid", ["effnet-lite0"]), ("conv", [])):
        path = tmp_path / f"{kind}.ckpt"
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"d_image_kind": kind},
                    "reelgan": {"generator_config": model.generator.config, "embeddings_hash": ""}}, path)
        assert load_generator(path)[1]["trained_against"] == expected
