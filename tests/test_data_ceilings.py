"""The ceilings a conditional generator can reach, computed by hand on a two-clip catalogue."""
import pandas as pd
import pytest

from data.ceilings import conditional_ceilings

CLIPS = pd.DataFrame({"clip_id": ["red1", "blue1"], "colour": ["red", "blue"]})


def _inter(rows):
    return pd.DataFrame(rows, columns=["user_id", "clip_id", "weight", "split"])


def test_sampling_and_mode_follow_the_datamodules_pairing():
    inter = _inter([("u1", "red1", 2.0, "train"), ("u1", "blue1", 8.0, "train"), ("u2", "blue1", 2.0, "train"),
                    ("u1", "red1", 8.0, "test"),        # test events never count
                    ("u2", "red1", 1.0, "train")])      # a view is exposure, not preference
    # W(red1) = 2, W(blue1) = 8 + 2: p(red1 | u1) ∝ 2/2, p(blue1 | u1) ∝ 8/10 → red mass 1 / 1.8
    out = conditional_ceilings(inter, CLIPS, "colour", {"u1": {"red"}})
    assert out["users"] == 1 and out["sampling"] == pytest.approx(1 / 1.8) and out["mode"] == 1.0
    out = conditional_ceilings(inter, CLIPS, "colour", {"u1": {"blue"}, "u2": {"red"}})
    assert out["sampling"] == pytest.approx((0.8 / 1.8 + 0.0) / 2) and out["mode"] == 0.0


def test_no_positive_interactions_is_undefined_not_nan():
    out = conditional_ceilings(_inter([("u1", "red1", 1.0, "train")]), CLIPS, "colour", {"u1": {"red"}})
    assert out["users"] == 0 and out["sampling"] is None and "undefined" in out["note"]
    with pytest.raises(ValueError, match="no column 'pattern'"):
        conditional_ceilings(_inter([]), CLIPS, "pattern", {})
