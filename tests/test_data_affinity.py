"""Attribute affinities: each shopper's share of engagement per attribute value, appended by `reelgan-data embed`."""
import numpy as np
import pytest

from data.affinity import attribute_affinities, with_affinities
from data.contract import load_dataset


@pytest.fixture()
def shop(tmp_path):
    (tmp_path / "clips.csv").write_text(
        "clip_id,path,product_id,category,colour\n"
        "c1,,p1,dress,red\nc2,,p2,dress,blue\nc3,,p3,jacket,red\nc4,,p4,,blue\n")
    (tmp_path / "interactions.csv").write_text(
        "user_id,clip_id,event,timestamp,split\n"
        "ann,c1,purchase,2026-01-01,train\n"      # weight 8 (the pair's strongest event counts once)
        "ann,c1,view,2026-01-02,train\n"
        "ann,c3,click,2026-01-03,train\n"         # weight 2
        "ann,c2,purchase,2026-01-04,test\n"       # test rows are never read
        "bob,c4,view,2026-01-01,train\n"          # no category: counts for colour only
        "cy,c2,click,2026-01-01,test\n")
    return load_dataset(tmp_path)


def test_shares_per_attribute_from_train_events_only(shop):
    names, a = attribute_affinities(shop, ["ann", "bob", "cy", "nobody"])
    assert names == ["category=dress", "category=jacket", "colour=blue", "colour=red"]
    np.testing.assert_allclose(a[0], [0.8, 0.2, 0.0, 1.0])        # ann: dress 8 of 10, red 10 of 10
    np.testing.assert_allclose(a[1], [0.0, 0.0, 1.0, 0.0])        # bob: only a colour is known
    assert not a[2].any() and not a[3].any()                     # test-only and unknown users: zeros


def test_appended_half_weighs_as_much_as_the_factors(shop):
    factors = np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)
    out = with_affinities(factors, np.array([[0.8, 0.2, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]], np.float32))
    assert out.shape == (2, 6)
    np.testing.assert_allclose(out[:, :2], factors)
    assert np.linalg.norm(out[0, 2:]) == pytest.approx(5.0, rel=1e-6)
    assert not out[1, 2:].any()
