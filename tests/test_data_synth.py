"""The synthetic try-on world: determinism, contents, rendering and the choice model."""
import json

import numpy as np
import pandas as pd
import pytest

from data.cli import main
from data.synth import ATTRIBUTES, COLOUR_RGB, _interactions, _users, make_world, products, sample_look
from data.synth_render import render_clip
from data.video import read_clip


def _world(path, seed=0, **kw):
    args = dict(clips=24, users=12, size=(24, 32), frames=6, seed=seed, workers=1)
    args.update(kw)
    make_world(path, **args)
    return path


def test_same_seed_same_files_whatever_the_worker_count(tmp_path):
    a, b = _world(tmp_path / "a", workers=1), _world(tmp_path / "b", workers=2)
    c = _world(tmp_path / "c", seed=1)
    for name in ("clips.csv", "interactions.csv", "users.csv", "hidden_truth.json", "world.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for clip in sorted((a / "clips").iterdir()):  # byte-identical mp4s (see synth._prepare_render_process)
        assert clip.read_bytes() == (b / "clips" / clip.name).read_bytes(), clip.name
    assert (a / "interactions.csv").read_bytes() != (c / "interactions.csv").read_bytes()
    da = read_clip(a / "clips/c00000.mp4", 6, start=0, size=None).astype(float)
    assert np.abs(da - read_clip(c / "clips/c00000.mp4", 6, start=0, size=None)).mean() > 5


def test_world_files_follow_the_contract(tmp_path):
    root = _world(tmp_path / "w", clips=70, users=20, workers=2)
    clips = pd.read_csv(root / "clips.csv", dtype=str)
    inter = pd.read_csv(root / "interactions.csv", dtype=str)
    users = pd.read_csv(root / "users.csv", dtype=str)
    world = json.loads((root / "world.json").read_text())
    truth = json.loads((root / "hidden_truth.json").read_text())
    assert list(clips.columns) == ["clip_id", "path", "product_id", "category", "colour", "pattern"]
    assert clips["clip_id"].is_unique and all((root / p).is_file() for p in clips["path"])
    assert read_clip(root / clips["path"][0], 6, start=0, size=None).shape == (6, 24, 32, 3)
    assert set(inter["event"]) <= {"view", "click", "add_to_cart", "purchase"} and set(inter["split"]) == {"train", "test"}
    assert set(inter["clip_id"]) <= set(clips["clip_id"])
    views = inter[inter["event"] == "view"].groupby("user_id").size()
    assert views.between(30, 60).all()
    assert set(users["split"]) == {"train", "heldout"} and set(truth["users"]) == set(users["user_id"])
    assert world["attributes"] == ATTRIBUTES and world["seed"] == 0
    assert len(ATTRIBUTES["category"]) >= 4 and len(ATTRIBUTES["colour"]) == 8 and len(ATTRIBUTES["pattern"]) == 4
    assert users["persona"].str.len().gt(10).all()
    for uid, persona in zip(users["user_id"], users["persona"]):
        assert truth["users"][uid]["colour"] in persona  # the strongest preference is always named


def test_rendered_garment_shows_its_colour_and_the_clip_moves():
    row = products().iloc[0].to_dict()
    counts = {}
    for colour in ("red", "blue"):
        clip = render_clip(sample_look({**row, "colour": colour, "category": "dress"}, 0, 3), 8, 48, 48).astype(int)
        target = np.array(COLOUR_RGB[colour])
        counts[colour] = (np.abs(clip - target).sum(-1) < 60).mean(axis=(1, 2))
        assert np.abs(np.diff(clip, axis=0)).mean() > 1.0, "frames should differ (turn, sway, camera)"
    assert counts["red"].min() > 0.03 and counts["blue"].min() > 0.03


def test_choice_model_rewards_preferred_attributes():
    rng = np.random.default_rng(0)
    clips = products()
    clips["clip_id"] = [f"c{i}" for i in range(len(clips))]
    _, truth = _users(rng, 300, 0.15)
    inter = _interactions(np.random.default_rng(1), truth, clips, 0.2)
    attrs = clips.set_index("clip_id")
    inter = inter.join(attrs, on="clip_id")
    for attribute in ("colour", "category", "pattern"):
        liked = inter[attribute].to_numpy() == inter["user_id"].map(lambda u: truth[u][attribute]).to_numpy()
        views = inter["event"] == "view"
        buys = inter["event"] == "purchase"
        rate_liked = buys[liked].sum() / views[liked].sum()
        rate_other = buys[~liked].sum() / views[~liked].sum()
        assert rate_liked > 1.5 * rate_other, (attribute, rate_liked, rate_other)
    colour_lift = _lift(inter, truth, "colour")
    assert colour_lift > _lift(inter, truth, "pattern"), "colour must be the strongest signal"


def _lift(inter, truth, attribute):
    liked = inter[attribute].to_numpy() == inter["user_id"].map(lambda u: truth[u][attribute]).to_numpy()
    buys = (inter["event"] == "purchase").to_numpy()
    views = (inter["event"] == "view").to_numpy()
    return (buys[liked].sum() / views[liked].sum()) / (buys[~liked].sum() / views[~liked].sum())


def test_synth_cli_writes_a_world_and_rejects_bad_size(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "w"), "--clips", "8", "--users", "4", "--size", "16x24", "--frames", "4",
                 "--workers", "1"]) == 0
    assert "summary: synth" in capsys.readouterr().out
    assert len(list((tmp_path / "w" / "clips").glob("*.mp4"))) == 8
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path / "x"), "--size", "64by64"])
    assert "HxW" in capsys.readouterr().err
