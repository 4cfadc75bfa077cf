"""`reelgan-data import` on real encoded files: h264 mp4, vp9 webm, a .mov with audio and a space in its name, a gif,
a 9:16 clip, a clip with rotation metadata, long videos cut into clips, broken and unlisted files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.catalogue import ImportSettings, import_catalogue
from data.contract import DatasetError, attribute_columns
from data.testing import phone_clip, random_bytes, smooth_frames
from data.video import probe, read_clip, write_video

SETTINGS = ImportSettings(size=(32, 32), fit="crop", fps=8, clip_seconds=1.0, max_clips=3, min_frames=4)


def _catalogue(root: Path) -> tuple[Path, Path]:
    src = root / "shop"
    src.mkdir(parents=True)
    phone_clip(src / "boots.mp4", seconds=5.0, fps=30, height=54, width=96)             # long: cut into 3 clips
    write_video(src / "scarf.webm", smooth_frames(16, 40, 40), fps=8)                   # vp9
    phone_clip(src / "summer dress.mov", seconds=2.0, fps=25, height=96, width=54, audio=True)  # 9:16, audio
    write_video(src / "hat.gif", smooth_frames(12, 30, 30, seed=1), fps=8)
    phone_clip(src / "sideways.mp4", seconds=1.0, fps=24, height=54, width=96, rotate=-90)  # phone held upright
    phone_clip(src / "unlisted.mp4", seconds=1.0)
    random_bytes(src / "broken.mp4")
    (src / "notes.txt").write_text("not a video\n")
    products = src / "products.csv"
    pd.DataFrame({
        "file": ["boots.mp4", "scarf.webm", "summer dress.mov", "hat.gif", "sideways.mp4", "broken.mp4", "missing.mp4"],
        "product_id": ["p1", "p2", "p3", "p4", "p5", "p6", "p7"],
        "category": ["shoes", "scarf", "dress", "hat", "jacket", "shoes", "hat"],
        "colour": ["black", "red", "yellow", "blue", "green", "grey", "red"],
    }).to_csv(products, index=False)
    return src, products


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    src, products = _catalogue(root)
    result = import_catalogue(src, root / "ds", products=products, settings=SETTINGS)
    return src, products, root / "ds", result


def test_every_codec_becomes_canonical_mp4_with_attributes(imported):
    src, _, ds, result = imported
    clips = pd.read_csv(ds / "clips.csv", dtype=str, keep_default_na=False)
    per_source = clips.groupby("source")["clip_id"].count().to_dict()
    assert per_source == {"boots.mp4": 3, "scarf.webm": 2, "summer dress.mov": 2, "hat.gif": 2, "sideways.mp4": 1}
    assert clips["clip_id"].is_unique
    for row in clips.itertuples():
        facts = probe(ds / row.path)
        assert (facts["codec"], facts["width"], facts["height"], facts["fps"]) == ("h264", 32, 32, 8.0)
        assert not facts["audio"] and facts["rotation"] == 0
        assert facts["frames"] == int(row.frames) >= SETTINGS.min_frames
        assert read_clip(ds / row.path, 4, size=(32, 32)).shape == (4, 32, 32, 3)
    dress = clips[clips["source"] == "summer dress.mov"]
    assert set(dress["product_id"]) == {"p3"} and set(dress["category"]) == {"dress"}
    assert set(dress["source_size"]) == {"96x54"} and set(dress["fit"]) == {"crop"}
    assert attribute_columns(clips) == ["category", "colour"]  # provenance columns are not attributes


def test_unusable_files_are_named_with_reasons(imported):
    src, _, ds, result = imported
    reasons = {Path(s.file).name: s.reason for s in result.skipped}
    assert set(reasons) == {"broken.mp4", "missing.mp4", "unlisted.mp4", "notes.txt"}
    assert "not a readable video" in reasons["broken.mp4"]
    assert "not found" in reasons["missing.mp4"]
    assert "not listed in products.csv" in reasons["unlisted.mp4"]
    assert "not a video file" in reasons["notes.txt"]
    report = pd.read_json(ds / "import_report.json", typ="series")
    assert {Path(s["file"]).name for s in report["skipped"]} == set(reasons)


def test_long_video_is_resampled_by_time_and_cut(imported):
    """boots.mp4: 30 fps, frame k is grey 4k (bar at the top left). At 8 fps, clip c frame j shows source frame
    floor((c + j/8) * 30)."""
    _, _, ds, _ = imported
    clips = pd.read_csv(ds / "clips.csv", dtype=str).query("source == 'boots.mp4'").sort_values("clip_id")
    assert list(clips["start_s"]) == ["0", "1", "2"]
    for c, path in enumerate(clips["path"]):
        video = read_clip(ds / path, 8, start=0, size=None)
        grey = video[:, -4:, -4:, :].mean(axis=(1, 2, 3))
        expected = np.minimum(4 * np.floor((c + np.arange(8) / 8) * 30), 255)  # the ramp saturates at white
        assert np.abs(grey - expected).max() < 8, (c, grey, expected)


def test_rotation_metadata_is_applied(imported):
    """sideways.mp4 is coded landscape with a -90° display matrix: shown upright it is portrait, and the bar that
    is top-left in the coded frame is top-right on screen."""
    src, _, ds, _ = imported
    assert probe(src / "sideways.mp4")["rotation"] == 270  # PyAV reads the display matrix back
    row = pd.read_csv(ds / "clips.csv", dtype=str).query("source == 'sideways.mp4'").iloc[0]
    assert row["rotation"] == "270" and row["source_size"] == "96x54"
    frame = read_clip(ds / row["path"], 1, start=0, size=None)[0].astype(int)
    assert frame[1:4, -4:-1].mean() > 200 and frame[1:4, 1:4].mean() < 60


@pytest.mark.parametrize("fit", ["pad", "resize"])
def test_fit_of_a_portrait_clip(tmp_path, fit):
    """A 9:16 clip framed to a square: pad keeps the whole frame with black side bars, resize stretches it."""
    src = tmp_path / "src"
    src.mkdir()
    phone_clip(src / "tall.mp4", seconds=1.0, fps=8, height=96, width=54)
    settings = ImportSettings(size=(32, 32), fit=fit, fps=8, clip_seconds=1.0, max_clips=1, min_frames=4)
    import_catalogue(src, tmp_path / "ds", settings=settings)
    row = pd.read_csv(tmp_path / "ds" / "clips.csv", dtype=str).iloc[0]
    assert row["fit"] == fit and row["product_id"] == "tall"
    frame = read_clip(tmp_path / "ds" / row["path"], 1, start=0, size=None)[0].astype(int)
    side = frame[:, :5].mean()  # pad: black bar (18 px of content in the middle); resize: the bar and grey
    if fit == "pad":
        assert side < 20 and frame[2:6, 8:12].mean() > 200  # the white bar starts at the content's left edge
    else:
        assert frame[1:6, 1:5].mean() > 200 and frame[-4:, :].mean() < 60


def test_rerun_is_idempotent_and_rejoins_attributes(tmp_path):
    src, products = _catalogue(tmp_path)
    ds = tmp_path / "ds"
    old = os.umask(0o022)
    try:
        first = import_catalogue(src, ds, products=products, settings=SETTINGS)
    finally:
        os.umask(old)
    written = [ds / "clips.csv", ds / "import_report.json", *sorted((ds / "clips").iterdir())]
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o644"}  # readable by a web server, a colleague
    before = (ds / "clips.csv").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in (ds / "clips").iterdir()}
    again = import_catalogue(src, ds, products=products, settings=SETTINGS)
    assert (again.written, again.reused) == (0, len(first.rows))
    assert (ds / "clips.csv").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in (ds / "clips").iterdir()} == mtimes
    table = pd.read_csv(products, dtype=str)
    table.loc[table["file"] == "hat.gif", "colour"] = "navy"
    table.to_csv(products, index=False)
    third = import_catalogue(src, ds, products=products, settings=SETTINGS)
    assert third.written == 0
    clips = pd.read_csv(ds / "clips.csv", dtype=str)
    assert set(clips.loc[clips["source"] == "hat.gif", "colour"]) == {"navy"}
    padded = import_catalogue(src, ds, products=products,
                              settings=ImportSettings(**{**SETTINGS.__dict__, "fit": "pad"}))
    assert (padded.written, padded.reused) == (len(first.rows), 0)


def test_refuses_a_hand_written_clips_csv(tmp_path):
    src, products = _catalogue(tmp_path)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "clips.csv").write_text("clip_id,path,product_id\nc1,clips/c1.mp4,p1\n")
    with pytest.raises(DatasetError, match="not written by `reelgan-data import`"):
        import_catalogue(src, tmp_path / "ds", products=products, settings=SETTINGS)


def test_cli_lists_skipped_files_and_errors_in_one_line(tmp_path):
    src, products = _catalogue(tmp_path)
    env = {**os.environ, "COLUMNS": "200"}
    cli = [sys.executable, "-m", "data.cli", "import"]
    run = subprocess.run([*cli, str(src), str(tmp_path / "ds"), "--products", str(products), "--size", "32x32",
                          "--clip-seconds", "1", "--min-frames", "4"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    for name in ("broken.mp4", "missing.mp4", "unlisted.mp4", "notes.txt"):
        assert name in run.stdout
    assert "encoded / reused" in run.stdout and "10 / 0" in run.stdout
    bad = subprocess.run([*cli, str(tmp_path / "nowhere"), str(tmp_path / "ds2")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert bad.returncode == 1 and "Traceback" not in bad.stdout + bad.stderr
    assert "not a folder" in bad.stdout
    short = subprocess.run([*cli, str(src), str(tmp_path / "ds3"), "--clip-seconds", "0.5", "--fps", "8"],
                           capture_output=True, text=True, env=env, timeout=600)
    assert short.returncode == 2 and "Traceback" not in short.stdout + short.stderr
    assert "--clip-seconds" in short.stdout
