"""The engagement model: trained on train interactions, it beats popularity, MF and random on held-out ones,
scores generated-style (float) clips, follows the hidden preferences, and round-trips through safetensors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from data.contract import load_dataset
from data.preferences import PreferenceEmbeddings
from data.tensors import uint8_to_model
from evaluation.personalisation.engagement import EngagementScorer, EngagementTrainConfig, clip_inputs, train_engagement_model
from evaluation.personalisation.engagement_eval import evaluate_engagement
from evaluation.features.domain import load_domain_classifier
from evaluation.features.realclips import load_real_clips

import _eval_world as _world


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    world = _world.eval_world()
    ds = load_dataset(world.root)
    emb = PreferenceEmbeddings.load(world.embeddings)
    domain, _ = load_domain_classifier(world.domain)
    real = load_real_clips(world.root, domain.frames, domain.height, domain.width)
    model, summary = train_engagement_model(ds.interactions, emb, domain, real.clip_ids, real.video,
                                            EngagementTrainConfig(steps=900, seed=0))
    return world, ds, emb, EngagementScorer(model, domain), real, summary


def test_beats_popularity_mf_and_random_on_heldout(setup):
    _, ds, emb, scorer, real, summary = setup
    assert summary["pairs"] > 1000 and 0.1 < summary["click_rate"] < 0.9
    report = evaluate_engagement(scorer, clip_inputs(scorer.domain, real.video), ds.interactions, emb, real.clip_ids)
    m = report["methods"]
    assert report["users"] >= 50 and m["engagement"]["users"]["auc[click]"] >= 50
    print({k: (round(v["auc[click]"], 4), round(v["ndcg@10"], 4)) for k, v in m.items()})
    for base in ("popularity", "mf", "random"):
        assert m["engagement"]["auc[click]"] > m[base]["auc[click]"], (base, m)
        assert m["engagement"]["ndcg@10"] > m[base]["ndcg@10"], (base, m)
        assert report["beats"][base]
    assert 0.4 < m["random"]["auc[click]"] < 0.6  # the protocol itself is unbiased
    json.dumps(report)  # JSON-ready


def test_scores_follow_hidden_colour_preference(setup):
    """Averaged over users, clips in the user's hidden favourite colour get a higher P(click)."""
    world, ds, emb, scorer, real, _ = setup
    truth = json.loads((world.root / "hidden_truth.json").read_text())["users"]
    users = [u for u in emb.user_ids if u in truth][:40]
    colours = np.array(real.attributes["colour"])
    tokens, attrs = clip_inputs(scorer.domain, real.video)
    gaps = []
    for u in users:
        cond = emb.conditions([u]).expand(len(real), -1)
        p = scorer.score_inputs(tokens, attrs, cond)["click"]
        liked = colours == truth[u]["colour"]
        gaps.append(p[liked].mean() - p[~liked].mean())
    assert np.mean(gaps) > 0.05 and np.mean(np.array(gaps) > 0) > 0.75, np.round(gaps, 3)


def test_score_accepts_model_range_video_and_orders_probabilities(setup):
    _, _, emb, scorer, real, _ = setup
    cond = emb.conditions(emb.user_ids[:6])
    from_uint8 = scorer.score(cond, real.video[:6])
    from_float = scorer.score(cond, uint8_to_model(real.video[:6]))  # (B, T, C, H, W) in [-1, 1]
    for key in ("click", "purchase"):
        assert from_uint8[key].shape == (6,) and from_uint8[key].dtype == np.float64
        np.testing.assert_allclose(from_uint8[key], from_float[key], atol=1e-5)
    assert ((0 <= from_uint8["purchase"]) & (from_uint8["purchase"] <= from_uint8["click"]) & (from_uint8["click"] <= 1)).all()
    # Scoring is per pair: the same pair gives the same score in any batch.
    alone = scorer.score(cond[2:3], real.video[2:3])
    np.testing.assert_allclose(alone["click"], from_uint8["click"][2:3], rtol=1e-5)
    with pytest.raises(ValueError, match="user_conditions"):
        scorer.score(cond[:, :3], real.video[:6])
    with pytest.raises(ValueError, match="one per condition"):
        scorer.score(cond, real.video[:5])


def test_save_load_round_trip(setup, tmp_path):
    _, _, emb, scorer, real, _ = setup
    path = tmp_path / "engagement.safetensors"
    digest = scorer.save(path, extra={"embeddings_hash": emb.hash})
    loaded = EngagementScorer.load(path)
    assert loaded.info["sha256"] == digest and loaded.info["embeddings_hash"] == emb.hash
    cond = emb.conditions(emb.user_ids[:4])
    a, b = scorer.score(cond, real.video[:4]), loaded.score(cond, real.video[:4])
    np.testing.assert_array_equal(a["click"], b["click"])
    with pytest.raises(ValueError, match="reelgan-engagement"):
        load_domain_classifier(path)  # a model file of another kind is refused by name


def test_undefined_figures_are_null_with_reasons_never_nan():
    """No held-out user with a relevant clip: every figure is null with its reason, and the JSON stays strict."""
    import json as _json

    import numpy as _np

    from evaluation.cli_common import finite_or_null
    from evaluation.personalisation.engagement_eval import ranking_report

    from scipy.sparse import csr_matrix

    scores = _np.random.default_rng(0).random((3, 6))
    out = ranking_report(lambda rows: scores[rows], csr_matrix((3, 6), dtype=bool), csr_matrix((3, 6)))
    assert out["auc[click]"] is None and out["ndcg@10"] is None and out["users"]["auc[click]"] == 0
    assert "held-out" in out["reasons"]["auc[click]"]
    _json.dumps(out, allow_nan=False)
    clean = finite_or_null({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2.0}})
    assert clean["a"] is None and clean["b"] == [1.0, None] and clean["undefined"]["fields"] == ["a", "b[1]"]
    _json.dumps(clean, allow_nan=False)
