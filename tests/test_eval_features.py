"""Feature registry and the offline networks: layouts, weights rules, preprocessing, pretrained sanity."""
import numpy as np
import pytest
import torch

from evaluation.features import (FeatureExtractor, available_feature_extractors, get_feature_extractor,
                                 register_feature_extractor)
from evaluation.features.base import check_video
from evaluation.features.resize import resize_tf1_bilinear


# ----------------------------------------------------------------------------- registry and base
class _MeanColour(FeatureExtractor):
    name, tag, dim, kind = "test-mean-colour", "mean-colour", 3, "frame"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.weights_sha256, self.resize_mode, self.standard = "0" * 64, "none", True

    def _frames(self, frames):
        return frames.float().mean((2, 3))


def test_registry_names_and_errors():
    assert {"inception-fid", "i3d-fvd", "effnet-lite0", "domain"} <= set(available_feature_extractors())
    register_feature_extractor(_MeanColour.name, _MeanColour)
    register_feature_extractor(_MeanColour.name, _MeanColour)  # same class again: no-op
    ext = get_feature_extractor("test-mean-colour", batch_size=2)
    video = torch.arange(2 * 3 * 3 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 3, 2, 2)
    feats = ext.features(video)  # 6 frames through batches of 2, clip-major rows
    assert feats.dtype == torch.float64 and feats.shape == (6, 3)
    assert torch.equal(feats[4], video[1, 1].double().mean((1, 2)))
    with pytest.raises(KeyError, match="available: .*inception-fid"):
        get_feature_extractor("inceptoin")
    with pytest.raises(ValueError, match="already registered"):
        register_feature_extractor("test-mean-colour", type("Other", (_MeanColour,), {}))
    with pytest.raises(ValueError, match="registered as"):
        register_feature_extractor("another-name", _MeanColour)
    with pytest.raises(TypeError):
        register_feature_extractor("x", dict)


def test_video_input_is_checked():
    with pytest.raises(ValueError, match=r"uint8 video \(B, T, 3, H, W\).*model_to_uint8"):
        check_video(torch.zeros(1, 2, 3, 8, 8), "inception-fid")
    with pytest.raises(ValueError, match="uint8 video"):
        check_video(torch.zeros(1, 2, 8, 8, 3, dtype=torch.uint8), "inception-fid")


def test_tf1_bilinear_resize_matches_the_tf_sampling_rule():
    x = torch.tensor([[0.0, 10.0], [20.0, 40.0]])
    # 2 → 4: source coordinate = dst · 2/4 = 0, .5, 1, 1.5 (clamped to the last pixel beyond it)
    expected = torch.tensor([[0, 5, 10, 10], [10, 17.5, 25, 25], [20, 30, 40, 40], [20, 30, 40, 40]])
    assert torch.allclose(resize_tf1_bilinear(x, 4), expected)
    img = torch.rand(2, 3, 5, 7)
    assert torch.equal(resize_tf1_bilinear(img, 5, 7), img)
    out = resize_tf1_bilinear(img, 9, 4)  # arbitrary down/up-sampling against a loop over output pixels
    for i in range(9):
        for j in range(4):
            sy, sx = i * 5 / 9, j * 7 / 4
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            dy, dx = sy - y0, sx - x0
            top = img[..., y0, x0] + (img[..., y0, x1] - img[..., y0, x0]) * dx
            bot = img[..., y1, x0] + (img[..., y1, x1] - img[..., y1, x0]) * dx
            assert torch.allclose(out[..., i, j], top + (bot - top) * dy, atol=1e-6)


# ----------------------------------------------------------------------------- inception-fid
@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    from evaluation.features.inception import write_random_weights

    path = tmp_path_factory.mktemp("inc") / "pt_inception-random.pth"
    write_random_weights(path, seed=1, calibration_images=2)
    return path


def test_inception_layout_is_the_pt_inception_file(inception_file):
    state = torch.load(inception_file, weights_only=True)
    assert len(state) == 472
    convs = [k for k in state if k.endswith(".conv.weight")]
    assert len(convs) == 94 and not any("num_batches_tracked" in k or "Aux" in k for k in state)
    assert state["fc.weight"].shape == (1008, 2048) and state["Mixed_7c.branch_pool.conv.weight"].shape[0] == 192
    ext = get_feature_extractor("inception-fid", weights=inception_file, expected_sha256=None)
    assert type(ext.net).__module__ == "torch_fidelity.feature_extractor_inceptionv3"  # the library's network
    assert ext.net.Mixed_5b.branch_pool.bn.eps == 1e-3
    assert ext.metric_tag == f"inception@{ext.weights_sha256[:8]}" and not ext.standard
    assert ext.protocol()["resize_mode"] == "tf1-bilinear"


def test_inception_weights_rules(inception_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(FileNotFoundError) as err:
        get_feature_extractor("inception-fid")
    msg = str(err.value)
    assert "torch-home/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth" in msg and "pytorch-fid" in msg
    with pytest.raises(ValueError, match="does not match the expected 6726825d"):
        get_feature_extractor("inception-fid", weights=inception_file)
    # the hub cache is searched when no path is given
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "pt_inception-2015-12-05-6726825d.pth").write_bytes(inception_file.read_bytes())
    ext = get_feature_extractor("inception-fid", expected_sha256=None, resize="pytorch-fid")
    assert ext.weights_path.startswith(str(hub)) and ext.resize_mode == "pytorch-fid"
    state = torch.load(inception_file, weights_only=True)
    state.pop("Mixed_6b.branch7x7_2.bn.running_var")
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ValueError, match="broken.pth: not a pt_inception .*Mixed_6b.branch7x7_2.bn.running_var"):
        get_feature_extractor("inception-fid", weights=broken, expected_sha256=None)


def test_inception_never_downloads(inception_file, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def no_download(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download its weights")

    monkeypatch.setattr(tfi, "load_state_dict_from_url", no_download)
    ext = get_feature_extractor("inception-fid", weights=inception_file, expected_sha256=None)
    frames = torch.randint(0, 256, (1, 2, 3, 40, 30), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    feats = ext.features(frames)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64 and feats.abs().mean() > 0.05


# ----------------------------------------------------------------------------- effnet-lite0
@pytest.fixture(scope="module")
def effnet():
    return get_feature_extractor("effnet-lite0")


def _synthetic_images(size=224):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = torch.full((3, size, size), 255)
    inside = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 < (size // 4) ** 2
    disk[1][inside], disk[2][inside] = 20, 20                                # red ball on white
    check = ((yy // 16 + xx // 16) % 2 * 255).expand(3, -1, -1)             # checkerboard
    stripes = torch.stack([(xx // 8) % 2 * 255, torch.full_like(xx, 128), 255 - (xx // 8) % 2 * 255])
    return torch.stack([disk, check, stripes]).clamp(0, 255).to(torch.uint8)


def test_effnet_loads_strictly_and_records_its_file(effnet):
    assert effnet.dim == 1280 and effnet.kind == "frame" and effnet.metric_tag == "effnet-lite0"
    assert len(effnet.weights_sha256) == 64 and effnet.weights_sha256.startswith("57934424")
    assert effnet.net.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)


def test_effnet_input_range_matches_its_stem_statistics(effnet):
    # The stem BN's running mean ≈ stem conv applied to the mean ImageNet pixel in the network's input range
    # (read from the shipped file itself, before any mapping or folding).
    from evaluation.features.effnet import MEAN, STD

    state = torch.load(effnet.weights_path, map_location="cpu", weights_only=True)
    mean_pixel = (torch.tensor([0.485, 0.456, 0.406]) - torch.tensor(MEAN)) / torch.tensor(STD)
    predicted = state["_conv_stem.weight"].sum((2, 3)) @ mean_pixel
    corr = torch.corrcoef(torch.stack([predicted, state["_bn0.running_mean"]]))[0, 1]
    assert corr > 0.9


def test_effnet_imagenet_predictions_are_not_degenerate(effnet):
    probs = effnet.logits(_synthetic_images()).softmax(1)
    top = probs.argmax(1)
    assert len(set(top.tolist())) == 3  # three different pictures, three different classes
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    assert (entropy < np.log(1000) - 0.5).all()
    assert probs[0].max() > 0.1  # a confident call on the ball (≥ 100× chance)
    # ImageNet 904 "window screen" / 905 "window shade" for the stripes
    assert {904, 905} & set(probs[2].topk(5).indices.tolist())


def test_effnet_features_are_per_frame_and_clip_major(effnet):
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (2, 3, 3, 24, 32), generator=g, dtype=torch.uint8)
    feats = effnet.features(video)
    assert feats.shape == (6, 1280) and feats.dtype == torch.float64 and torch.isfinite(feats).all()
    single = effnet.features(video[1:2, 2:3])
    assert torch.allclose(feats[5], single[0], atol=1e-5)
    assert not torch.allclose(feats[0], feats[1])
    # BN folding (the default) is the same function up to fp32 rounding
    assert effnet.protocol()["folded_bn"] == 49
    plain = get_feature_extractor("effnet-lite0", fold_bn=False)
    assert torch.allclose(plain.features(video[:1]), feats[:3], atol=1e-4, rtol=1e-5)


# ----------------------------------------------------------------------------- i3d-fvd
def test_i3d_layout_matches_the_pytorch_fvd_ports(tmp_path):
    from evaluation.features.i3d import InceptionI3d

    state = InceptionI3d().state_dict()
    shapes = {"Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7), "Conv3d_2c_3x3.bn.running_mean": (192,),
              "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3), "Mixed_4f.b3b.bn.weight": (128,),
              "Mixed_5c.b0.conv3d.weight": (384, 832, 1, 1, 1), "logits.conv3d.weight": (400, 1024, 1, 1, 1),
              "logits.conv3d.bias": (400,)}
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert len([k for k in state if k.endswith("conv3d.weight")]) == 4 + 9 * 6  # stem units + 9 Mixed × 6 units
    # files with and without BN counters both load; a renamed key does not
    with_counters, without = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(state, with_counters)
    torch.save({k: v for k, v in state.items() if "num_batches" not in k}, without)
    for path in (with_counters, without):
        ext = get_feature_extractor("i3d-fvd", weights=path)
        assert ext.metric_tag.startswith("i3d@") and ext.protocol()["bn_eps"] == 1e-3
    renamed = {k.replace("Mixed_3b.b0.", "Mixed_3b.branch0."): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="Mixed_3b.b0"):
        get_feature_extractor("i3d-fvd", weights=tmp_path / "c.pt")
    pinned = get_feature_extractor("i3d-fvd", weights=without, expected_sha256=ext.weights_sha256[:12])
    assert pinned.metric_tag == "i3d"


def test_i3d_logits_per_clip(tmp_path):
    from evaluation.features.i3d import InceptionI3d

    torch.manual_seed(0)
    torch.save(InceptionI3d().state_dict(), tmp_path / "i3d.pt")
    ext = get_feature_extractor("i3d-fvd", weights=tmp_path / "i3d.pt")
    g = torch.Generator().manual_seed(1)
    video = torch.randint(0, 256, (2, 9, 3, 16, 16), generator=g, dtype=torch.uint8)
    feats = ext.features(video)
    assert feats.shape == (2, 400) and torch.isfinite(feats).all() and not torch.allclose(feats[0], feats[1])
    with pytest.raises(ValueError, match="at least 9 frames"):
        ext.features(video[:, :8])
