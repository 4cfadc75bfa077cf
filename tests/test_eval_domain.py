"""The `domain` feature network: trains on real clips, reads their attributes, round-trips, and gives fvd[domain]."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from evaluation.features import get_feature_extractor
from evaluation.features.domain import load_domain_classifier, save_domain_classifier
from evaluation.features.domain_train import attribute_accuracy
from evaluation.metrics.frechet import frechet_distance
from evaluation.features.realclips import load_real_clips, split_by_product
from evaluation.metrics.stats import gaussian_from_features

import _eval_world as _world


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(eval_world):
    return eval_world


@pytest.fixture(scope="module")
def real(world):
    return load_real_clips(world.root, _world.FRAMES, *_world.SIZE)


def test_classifier_reads_attributes_of_unseen_products(world):
    rep = world.domain_report
    assert rep.clips_val >= 16 and rep.clips_train >= 64
    # Colour and category are what conditioning must carry; both far above the majority-class guess.
    for name in ("colour", "category"):
        assert rep.val_accuracy[name] >= 0.7, rep.val_accuracy
        assert rep.val_accuracy[name] > rep.chance[name] + 0.3, (rep.val_accuracy, rep.chance)
    assert set(rep.val_accuracy) == {"category", "colour", "pattern"}
    # Pattern comes from the texture branch: the main trunk alone learns each (category, colour) pair's pattern
    # among the training products and reads held-out products below the constant guess (0.13 vs 0.29).
    assert rep.val_accuracy["pattern"] >= 0.6 and rep.val_accuracy["pattern"] > rep.chance["pattern"] + 0.25, rep


def test_split_keeps_products_apart(real):
    train, val = split_by_product(real.product_ids, 0.2, seed=0)
    assert len(train) + len(val) == len(real) and len(val) > 0
    assert not {real.product_ids[i] for i in train} & {real.product_ids[i] for i in val}


def test_save_load_round_trip_and_tamper_detection(world, real, tmp_path):
    model, info = load_domain_classifier(world.domain)
    assert len(info["sha256"]) == 64 and info["report"]["val_accuracy"]["colour"] >= 0.7
    with torch.no_grad():
        before = model(model.prepare(real.video[:8]))[0]
    path = tmp_path / "copy.safetensors"
    assert save_domain_classifier(model, path) == info["sha256"]  # same weights → same hash
    again, info2 = load_domain_classifier(path)
    with torch.no_grad():
        assert torch.equal(before, again(again.prepare(real.video[:8]))[0])
    assert info2["config"] == model.config
    # Flip one byte inside the tensor data: the recorded sha256 no longer matches.
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        load_domain_classifier(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_domain_classifier(tmp_path / "missing.safetensors")


def test_registry_features_and_resizing(world, real):
    ext = get_feature_extractor("domain", weights=world.domain)
    assert ext.kind == "video" and ext.dim == 128 and ext.metric_tag == "domain"
    feats = ext.features(real.video[:6])
    assert feats.dtype == torch.float64 and feats.shape == (6, 128) and torch.isfinite(feats).all()
    # Another size and length is resized (space) and resampled (time) to what the network reads.
    big = torch.nn.functional.interpolate(real.video[:2].flatten(0, 1).float(), size=(64, 64), mode="nearest")
    big = big.to(torch.uint8).view(2, _world.FRAMES, 3, 64, 64).repeat_interleave(2, dim=1)  # 16 frames
    out = ext.features(big)
    assert out.shape == (2, 128)
    assert torch.allclose(out, feats[:2], atol=0.35 * feats[:2].abs().max().item())
    proto = ext.protocol()
    assert proto["weights_sha256"] == load_domain_classifier(world.domain)[1]["sha256"]
    assert proto["resize_mode"] and proto["frames"] == _world.FRAMES
    with pytest.raises(ValueError, match="uint8"):
        ext.features(real.video[:2].float())


def test_fvd_domain_ranks_degradations(world, real):
    """Real vs real (disjoint halves) is closer than real vs blurred, frozen or noise clips of the other half."""
    ext = get_feature_extractor("domain", weights=world.domain)
    half = len(real) // 2
    ref = gaussian_from_features(ext.features(real.video[:half]))
    other = real.video[half:]

    def fd(video):
        g = gaussian_from_features(ext.features(video))
        return frechet_distance(ref.mu, ref.sigma, g.mu, g.sigma)

    flat = other.flatten(0, 1).float()
    blurred = F.interpolate(F.interpolate(flat, scale_factor=0.25, mode="area"), size=_world.SIZE, mode="bilinear")
    blurred = blurred.round().to(torch.uint8).view(other.shape)
    frozen = other[:, :1].expand_as(other).contiguous()  # no motion at all
    noise = torch.randint(0, 256, other.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    same = fd(other)
    assert fd(blurred) > 1.5 * same and fd(frozen) > 1.5 * same and fd(noise) > 5 * same, same


def test_accuracy_on_recoloured_clips_drops(world, real):
    model, _ = load_domain_classifier(world.domain)
    labels = real.labels()
    plain = attribute_accuracy(model, real.video, labels)
    recoloured = attribute_accuracy(model, real.video[:, :, [2, 0, 1]], labels)
    assert plain["colour"] > 0.8 and recoloured["colour"] < plain["colour"] - 0.3


def test_bad_datasets_are_named(tmp_path, world):
    root = tmp_path / "noattr"
    shutil.copytree(world.root, root)
    clips = pd.read_csv(root / "clips.csv", dtype=str)
    # the untouched copy loads, so each error below comes from the one thing broken
    assert load_real_clips(root, 4, 32, 32).clip_ids == list(clips["clip_id"])
    clips[["clip_id", "path", "product_id"]].to_csv(root / "clips.csv", index=False)
    with pytest.raises(ValueError, match=r"clips\.csv.*no attribute columns"):
        load_real_clips(root, 4, 32, 32)
    clips.loc[3, "colour"] = ""
    clips.to_csv(root / "clips.csv", index=False)
    with pytest.raises(ValueError, match=r"row 5 .*'colour'"):
        load_real_clips(root, 4, 32, 32)
    # a sample decodes only its rows, and an error in it still names the csv row
    sample = load_real_clips(root, 4, 32, 32, rows=[7, 0, 9])
    assert sample.clip_ids == [clips["clip_id"][i] for i in (0, 7, 9)] and len(sample.video) == 3
    with pytest.raises(ValueError, match=r"row 5 .*'colour'"):
        load_real_clips(root, 4, 32, 32, rows=[3, 8])

