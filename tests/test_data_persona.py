"""Persona map: MiniLM text features → preference space, fitted by `reelgan-data embed`."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from data.cli import main
from data.persona import PersonaMap, ridge
from data.preferences import PreferenceEmbeddings
from data.synth import make_world


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("persona")
    make_world(root, clips=128, users=240, size=(16, 16), frames=4, seed=4, workers=2)
    assert main(["embed", str(root), "--dim", "16", "--epochs", "30"]) == 0
    return root


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    w_true = rng.normal(size=(6, 3))
    w, b, m = ridge(x, x @ w_true + 0.5, lam=1e-6)
    np.testing.assert_allclose(w, w_true, atol=1e-6)
    np.testing.assert_allclose((x - m) @ w + b, x @ w_true + 0.5, atol=1e-6)


def test_persona_map_beats_the_mean_vector_on_held_out_users(embedded):
    report = json.loads((embedded / "embeddings" / "embed_report.json").read_text())
    figures = report["persona"]
    assert figures["evaluated_on"] == "users.csv split=heldout" and figures["heldout_users"] >= 20
    assert figures["persona_map"]["cosine"] > figures["mean_vector"]["cosine"] + 0.1, figures
    assert figures["persona_map"]["median_rank"] < 0.5 * figures["mean_vector"]["median_rank"], figures
    assert figures["beats_mean_baseline"] is True


def test_saved_map_embeds_text_into_the_preference_space(embedded):
    pmap = PersonaMap.load(embedded / "embeddings" / "persona_map.safetensors")
    emb = PreferenceEmbeddings.load(embedded / "embeddings" / "preferences.safetensors")
    assert pmap.dim == emb.dim and pmap.meta["preferences_hash"] == emb.hash
    out = pmap.embed(["loves retro red dresses with dots", "always picks blue; striped jackets are my thing"])
    assert out.shape == (2, emb.dim) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    # Users who love red should sit closer to the "red" persona than users who love blue.
    truth = json.loads((embedded / "hidden_truth.json").read_text())["users"]
    users = pd.read_csv(embedded / "users.csv", dtype=str)
    vecs = emb.conditions(list(users["user_id"])).numpy()
    colours = np.array([truth[u]["colour"] for u in users["user_id"]])
    red_sim = vecs @ out[0].numpy()
    assert red_sim[colours == "red"].mean() > red_sim[colours == "blue"].mean() + 0.1


def test_missing_persona_map_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="reelgan-data embed"):
        PersonaMap.load(tmp_path / "persona_map.safetensors")
