"""`check_dataset` and `reelgan-data check` on a good world and on each kind of broken dataset."""
import shutil

import pandas as pd
import pytest

from data import testing as bad
from data.cli import main
from data.checks import check_dataset
from data.contract import load_dataset
from data.synth import make_world


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    make_world(root, clips=12, users=6, size=(16, 16), frames=4, seed=0, workers=1)
    return root


@pytest.fixture
def world(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "world")


def _edit(path, fn):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(frame).to_csv(path, index=False)


def _fatal(report, field=None):
    return [p for p in report.problems if p.fatal and (field is None or p.field == field)]


def test_good_world_is_usable_and_cli_exits_zero(world, capsys):
    report = check_dataset(world)
    assert report.usable and report.problems == [] and report.stats["decodable_clips"] == 12
    assert main(["check", str(world)]) == 0
    assert "usable" in capsys.readouterr().out


def test_missing_column(world, capsys):
    _edit(world / "interactions.csv", lambda f: f.drop(columns=["event"]))
    report = check_dataset(world)
    assert not report.usable
    problem = report.problems[0]
    assert problem.file.endswith("interactions.csv") and "missing column(s) event" in problem.message
    assert main(["check", str(world)]) == 1
    out = capsys.readouterr().out
    assert "FATAL" in out and "UNUSABLE" in out


def test_missing_csv_is_reported_with_the_other_file(world):
    (world / "clips.csv").unlink()
    _edit(world / "interactions.csv", lambda f: f.drop(columns=["timestamp"]))
    messages = " | ".join(p.file + ": " + p.message for p in check_dataset(world).problems)
    assert "clips.csv: file not found" in messages and "missing column(s) timestamp" in messages


def test_duplicate_ids_unknown_paths_unknown_clips_and_bad_events(world):
    def clips(f):
        f.loc[3, "clip_id"] = f.loc[2, "clip_id"]
        f.loc[5, "path"] = "clips/nowhere.mp4"
        return f

    def inter(f):
        f.loc[0, "clip_id"] = "c99999"
        f.loc[1, "event"] = "like"
        f.loc[2, "split"] = "maybe"
        return f

    _edit(world / "clips.csv", clips)
    _edit(world / "interactions.csv", inter)
    report = check_dataset(world, decode=False)
    assert not report.usable
    found = {(p.file.split("/")[-1], p.row, p.field) for p in _fatal(report)}
    assert ("clips.csv", 5, "clip_id") in found          # CSV line 5 = data row 3
    assert ("clips.csv", 7, "path") in found
    assert ("interactions.csv", 2, "clip_id") in found
    assert ("interactions.csv", 3, "event") in found
    assert ("interactions.csv", 4, "split") in found
    event = next(p for p in report.problems if p.field == "event")
    assert "'like'" in event.message and "purchase" in event.fix


def test_broken_clips_are_warnings_until_none_decode(world, capsys):
    clips = pd.read_csv(world / "clips.csv", dtype=str)
    bad.corrupt_in_place(world / clips["path"][0])
    bad.truncated_mp4(world / clips["path"][1])
    report = check_dataset(world)
    assert report.usable and report.stats["decodable_clips"] == 10
    broken = [p for p in report.problems if p.field == "path"]
    assert len(broken) == 2 and not any(p.fatal for p in broken)
    assert clips["path"][0].split("/")[-1] in broken[0].message and "re-encode" in broken[0].fix
    for i, path in enumerate(clips["path"]):
        bad.random_bytes(world / path, seed=i)
    report = check_dataset(world)
    assert not report.usable and "no usable clips" in _fatal(report)[-1].message
    assert main(["check", str(world)]) == 1


def test_users_csv_problems(world):
    _edit(world / "users.csv", lambda f: pd.concat([f, f.iloc[[0]]]).assign(split=lambda d: d["split"].where(
        d.index != 1, "later")))
    report = check_dataset(world, decode=False)
    fields = {(p.field, p.fatal) for p in report.problems if p.file.endswith("users.csv")}
    assert ("user_id", True) in fields and ("split", True) in fields


def test_no_split_column_holds_out_each_users_last_new_engaged_clip(world):
    """A funnel: the last *event* is a purchase of a clip viewed long before; the held-out item is the last clip
    the user engaged with that was new to them, with all of its events, so ranking can score it."""
    rows = [("u1", "c0", "view", 1), ("u1", "c1", "view", 2), ("u1", "c1", "click", 3), ("u1", "c2", "view", 4),
            ("u1", "c0", "purchase", 5),
            ("u2", "c0", "view", 1), ("u2", "c1", "view", 2),                       # views only: no test clip
            ("u3", "c3", "view", 1), ("u3", "c3", "click", 2),                      # one clip only: kept for train
            ("u4", "c4", "click", 1_700_000_000), ("u4", "c5", "purchase", "2024-01-01T00:00:00Z")]
    clips = pd.read_csv(world / "clips.csv", dtype=str)["clip_id"].tolist()
    table = pd.DataFrame(rows, columns=["user_id", "clip_id", "event", "timestamp"])
    table["clip_id"] = table["clip_id"].map(lambda c: clips[int(c[1:])])
    table.to_csv(world / "interactions.csv", index=False)
    inter = load_dataset(world).interactions
    test = inter[inter["split"] == "test"]
    assert sorted(zip(test["user_id"], test["event"])) == [("u1", "click"), ("u1", "view"), ("u4", "purchase")]
    assert set(test.loc[test["user_id"] == "u1", "clip_id"]) == {clips[1]}
    train = inter[inter["split"] == "train"]
    for user, clip in zip(test["user_id"], test["clip_id"]):
        assert not ((train["user_id"] == user) & (train["clip_id"] == clip)).any()
    assert check_dataset(world, decode=False).usable


def test_default_split_leaves_ranking_measurable(world):
    """On the synthetic funnel without a split column, held-out ranking has users (it had none with the old
    last-event split) and every figure is a number."""
    from data.bpr import evaluate_ranking, fit_bpr

    _edit(world / "interactions.csv", lambda f: f.drop(columns=["split"]))
    ds = load_dataset(world)
    ranking = evaluate_ranking(ds, fit_bpr(ds, dim=4, epochs=2, seed=0))
    assert ranking["users"] >= 3 and "reason" not in ranking
    assert all(isinstance(v, float) for m in ("mf", "popularity") for v in ranking[m].values())


def test_help_explains_each_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("synth", "check", "embed", "interactions.csv", "Typical run"):
        assert word in out
    for sub in ("synth", "check", "embed"):
        with pytest.raises(SystemExit):
            main([sub, "--help"])
        assert "usage: reelgan-data " + sub in capsys.readouterr().out


def test_suspicious_timestamps_are_flagged(world):
    def edit(f):
        f = f.copy()
        f.loc[0, "timestamp"] = "1700000000000"        # epoch milliseconds
        f.loc[1, "timestamp"] = "13/05/2024 18:30"     # not ISO: day/month order guessed
        f.loc[2, "timestamp"] = "-5"
        f.loc[3, "timestamp"] = "inf"
        f.loc[4, "timestamp"] = "4102444800"           # 2100
        return f
    _edit(world / "interactions.csv", edit)
    report = check_dataset(world, decode=False)
    by_row = {p.row: p for p in report.problems if p.field == "timestamp"}
    assert "milliseconds" in by_row[2].message and "divide by 1000" in by_row[2].fix
    assert "not ISO 8601" in by_row[3].message and "2024-05-13T18:30" in by_row[3].message
    assert "before 1970" in by_row[4].message
    assert "not a finite time" in by_row[5].message and not by_row[5].fatal  # the world has a split column
    assert "future" in by_row[6].message and "2100" in by_row[6].message
    assert not any(by_row[r].fatal for r in (2, 3, 4, 6)) and set(by_row) == {2, 3, 4, 5, 6}
    _edit(world / "interactions.csv", lambda f: f.drop(columns=["split"]))
    assert any(p.row == 5 and p.fatal for p in check_dataset(world, decode=False).problems)


def test_paths_leaving_the_dataset_are_flagged(world, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    clips = pd.read_csv(world / "clips.csv", dtype=str)
    shutil.copy(world / clips.at[0, "path"], outside / "a.mp4")
    shutil.copy(world / clips.at[1, "path"], outside / "b.mp4")
    (world / "clips" / "linked.mp4").symlink_to(outside / "b.mp4")

    def edit(f):
        f = f.copy()
        f.loc[0, "path"] = str(outside / "a.mp4")
        f.loc[1, "path"] = "clips/linked.mp4"
        f.loc[2, "path"] = "../elsewhere/a.mp4"
        return f
    _edit(world / "clips.csv", edit)
    report = check_dataset(world, decode=False)
    by_row = {p.row: p for p in report.problems if p.field == "path"}
    assert "absolute path" in by_row[2].message
    assert "symlink" in by_row[3].message and str(outside) in by_row[3].message
    assert "leads outside the dataset folder" in by_row[4].message
    assert report.usable  # warnings: the files exist and decode


def test_rotation_metadata_is_reported(world):
    clips = pd.read_csv(world / "clips.csv", dtype=str)
    bad.phone_clip(world / clips.at[0, "path"], seconds=1.0, fps=8, rotate=90)
    report = check_dataset(world)
    rotated = [p for p in report.problems if "rotation metadata" in p.message]
    assert len(rotated) == 1 and rotated[0].row == 2 and "90°" in rotated[0].message and not rotated[0].fatal


def test_embed_on_a_folder_that_is_not_a_dataset_is_one_message(tmp_path, capsys):
    assert main(["embed", str(tmp_path / "nowhere")]) == 2
    out = capsys.readouterr().out
    assert "not a folder" in out and "Fix:" in out and "Traceback" not in out
