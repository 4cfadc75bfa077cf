"""Preference alignment, CAS and conditional FVD.

An *oracle generator* (renders, with the synthetic world's own renderer, a garment in the hidden-truth taste of
the user whose condition it is given) must score high alignment, a shuffled-condition run near the random
baseline, CAS near 1 and matched conditional FVD below mismatched. A barely trained real VideoGenerator runs
through the same code (from a real Lightning checkpoint) and must not look aligned.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from data.contract import load_dataset
from data.preferences import PreferenceEmbeddings
from data.synth import sample_look
from data.synth_render import render_clip
from data.tensors import clip_to_model
from evaluation.features.domain import load_domain_classifier
from evaluation.personalisation.alignment import (AlignmentConfig, clip_seeds, derangement, load_truth,
                                                  preference_alignment)
from evaluation.personalisation.hits import hit_stats
from evaluation.features.realclips import load_real_clips

import _eval_world as _world
import _tiny_gan as _tiny


pytestmark = pytest.mark.usefixtures("one_thread")


class OracleGenerator(nn.Module):
    """VideoGenerator-shaped: each condition row is matched to the nearest known user, and a clip of a product in
    that user's hidden favourite category/colour/pattern is rendered (the seed latent picks the look)."""

    def __init__(self, embeddings: PreferenceEmbeddings, truth: dict, frames: int, size: tuple[int, int]):
        super().__init__()
        self.users = [u for u in embeddings.user_ids if u in truth]
        self.register_buffer("conds", embeddings.conditions(self.users))
        self.truth, self.frames, (self.height, self.width) = truth, frames, size
        self.cond_dim, self.z_dim = embeddings.dim, 8

    def forward(self, z: torch.Tensor, cond: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        return self._render(z, cond, None)

    def _render(self, z, cond, attributes):
        out = []
        for i, (zi, c) in enumerate(zip(z, cond)):
            user = self.users[int((self.conds @ c).argmax())]
            row = {a: self.truth[user][a] for a in ("category", "colour", "pattern")}
            for j, (a, values) in enumerate(getattr(self, "vocab", {}).items()):
                if attributes is not None and attributes[i, j] >= 0:
                    row[a] = self.shown.get(a, {}).get(values[attributes[i, j]], values[attributes[i, j]])
            look = sample_look(row, seed=1, index=int(abs(zi[0].item()) * 1e6) % 100_000)
            out.append(clip_to_model(render_clip(look, self.frames, self.height, self.width)))
        return torch.stack(out)  # (B, T, C, H, W) in [-1, 1]


class AttributeOracle(OracleGenerator):
    """An attribute-conditioned oracle: renders the product attributes it is given (vocab order as the datamodule
    builds it), except that `shown` maps a value to another one it draws instead (a generator's confusion)."""

    def __init__(self, embeddings, truth, frames, size, vocab: dict, shown: dict | None = None):
        super().__init__(embeddings, truth, frames, size)
        self.vocab, self.shown = vocab, shown or {}
        self.attribute_classes = [len(v) for v in vocab.values()]

    def forward(self, z, cond, truncation: float = 1.0, attributes=None):
        return self._render(z, cond, attributes)


@pytest.fixture(scope="module")
def setup():
    world = _world.eval_world()
    ds = load_dataset(world.root)
    emb = PreferenceEmbeddings.load(world.embeddings)
    domain, info = load_domain_classifier(world.domain)
    real = load_real_clips(world.root, domain.frames, domain.height, domain.width)
    return world, ds, emb, domain, info, real, load_truth(world.root)


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 10, 57):
        p = derangement(n, np.random.default_rng(n))
        assert sorted(p.tolist()) == list(range(n)) and (p != np.arange(n)).all()
    with pytest.raises(ValueError):
        derangement(1, np.random.default_rng(0))


def test_each_user_gets_its_own_seeds_and_the_hit_rate_its_standard_error_over_users():
    seeds = clip_seeds(3, 2, seed=5)
    assert seeds == [5, 6, 7, 8, 9, 10]            # user i's clip j: seed + i*K + j, all distinct
    # Users are the sampling unit: user rates 1, 0, 0.5 → mean 0.5, se = std(ddof=1) / sqrt(3) = 0.5 / sqrt(3).
    rate, se = hit_stats(np.array([[1, 1], [0, 0], [1, 0]], dtype=bool))
    assert rate == pytest.approx(0.5) and se == pytest.approx(0.5 / np.sqrt(3))
    # One hit per user: no spread between users.
    assert hit_stats(np.array([[1, 0], [1, 0], [0, 1]], dtype=bool))[1] == pytest.approx(0.0)
    assert hit_stats(np.array([[1, 0]], dtype=bool)) == (0.5, None)


def test_oracle_generator_is_aligned_and_shuffling_breaks_it(setup):
    world, ds, emb, domain, info, real, truth = setup
    oracle = OracleGenerator(emb, truth, _world.FRAMES, _world.SIZE)
    res = preference_alignment(oracle, emb, ds, domain, real, AlignmentConfig(clips_per_user=3),
                               real_accuracy=info["report"]["val_accuracy"], truth=truth,
                               real_chance=info["report"]["chance"], domain_report=info["report"],
                               real_at_size=real.video)
    assert len(res["users"]) >= 10 and set(res["users"]) <= ds.heldout_users
    hid = res["alignment"]["hidden_truth"]
    assert hid["colour"]["hit_rate"] >= 0.7 and hid["category"]["hit_rate"] >= 0.6
    for a in ("colour", "category"):
        assert hid[a]["hit_rate"] > hid[a]["shuffled"] + 0.3, hid
        assert hid[a]["shuffled"] < hid[a]["random"] + 0.25
        assert abs(hid[a]["uniform"] - 1 / len(res["vocab"][a])) < 1e-9
    # CAS: a classifier trained only on the oracle's clips (labelled with each shopper's favourite) reads real clips
    assert res["cas_labels"] == "hidden_truth" and res["cas"]["colour"]["score"] > 0.5, res["cas"]
    # Revealed favourites agree with the hidden ones often enough for the oracle to score above random.
    rev = res["alignment"]["revealed"]["colour"]
    assert rev["hit_rate"] > rev["random"] + 0.2
    fvd = res["conditional_fvd"]
    assert fvd["matched_mean"] < fvd["mismatched_mean"], fvd
    # The pixel pattern reader, calibrated on the real clips, sees the oracle draw each user's favourite pattern.
    pat = hid["pattern"]["pattern_reader"]
    assert pat["hit_rate"] >= 0.7 and pat["hit_rate"] > pat["shuffled"] + 0.3, pat
    summary = res["summary"]["attributes"]
    assert summary["pattern"]["reader_hit"] == pat["hit_rate"] and summary["colour"]["hit"] == hid["colour"]["hit_rate"]
    assert summary["category"]["ceiling_mode"] == res["ceilings"]["hidden_truth"]["category"]["mode"]
    assert summary["colour"]["head_draw"] is None          # the oracle has no preference head
    # rendered by the world's own renderer: as sharp and as lively as real clips; a user's 3 seeds differ
    q = res["quality"]
    assert 0.8 < q["sharpness"]["ratio"] < 1.25 and 0.6 < q["motion"]["ratio"] < 1.6, q
    assert q["seed_diversity"] > 5.0
    json.dumps(res)


def test_untrained_generator_from_checkpoint_is_not_aligned(setup):
    from generate.loading import load_generator

    world, ds, emb, domain, info, real, truth = setup
    ckpt = _tiny.tiny_checkpoint(cond_dim=emb.dim)
    generator, _ = load_generator(ckpt)
    cfg = AlignmentConfig(clips_per_user=2, max_users=8, cas_clips=64, cas_steps=10)   # CAS is not what is read
    res = preference_alignment(generator, emb, ds, domain, real, cfg, real_accuracy=info["report"]["val_accuracy"],
                               truth=truth, domain_report=info["report"])
    assert len(res["users"]) == 8 and res["clips_per_user"] == 2 and res["seeds"] == list(range(16))
    assert res["config"]["cas_steps"] == 10
    hid = res["alignment"]["hidden_truth"]["colour"]
    assert 0 <= hid["hit_rate_se"] < 0.2 and 0 <= hid["shuffled_se"] < 0.2   # std of 8 rates in [0, 1] / √8
    # Noise clips: whatever colour the classifier guesses, it does not follow the user.
    assert hid["hit_rate"] < 0.6
    assert set(res["per_user"]) == set(res["users"])
    for probs in res["per_user"].values():
        assert abs(sum(probs["colour"]) - 1) < 1e-3


def test_cas_trains_on_generated_clips_and_exposes_a_confused_attribute(setup):
    """Ravuri & Vinyals' CAS on an attribute-conditioned generator: a classifier trained only on clips made with
    given attributes reads real clips nearly as well as one trained on real clips; a generator that draws
    jackets for "tshirt" and t-shirts for "jacket" teaches it to swap them on real clips, so category CAS falls
    while colour CAS stays."""
    from data.conditioning import attribute_vocabulary

    world, ds, emb, domain, info, real, truth = setup
    vocab = attribute_vocabulary(ds.clips)
    cfg = AlignmentConfig(clips_per_user=1, max_users=8, cas_clips=128, cas_steps=250)
    kw = dict(real_accuracy=info["report"]["val_accuracy"], real_chance=info["report"]["chance"],
              domain_report=info["report"], truth=truth)
    faithful = preference_alignment(AttributeOracle(emb, truth, _world.FRAMES, _world.SIZE, vocab),
                                    emb, ds, domain, real, cfg, **kw)
    swapped = preference_alignment(AttributeOracle(emb, truth, _world.FRAMES, _world.SIZE, vocab,
                                                   shown={"category": {"tshirt": "jacket", "jacket": "tshirt"}}),
                                   emb, ds, domain, real, cfg, **kw)
    assert faithful["cas_labels"] == "given_attributes"
    good, bad = faithful["cas"], swapped["cas"]
    for a in ("colour", "category"):
        assert good[a]["generated_clips"] == 128 and good[a]["real_test_clips"] > 0
        assert good[a]["ratio"] > 0.8, good
    assert bad["category"]["score"] < good["category"]["score"] - 0.2, (good, bad)
    assert bad["colour"]["score"] > 0.8 * good["colour"]["score"]
