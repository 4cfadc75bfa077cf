"""`reelgan-data import` on hostile sources, with real files and processes: symlinks out of SOURCE_DIR,
header-forged videos, and an import killed mid-way with other settings."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from data.catalogue import ImportSettings, import_catalogue
from data.testing import huge_frame_size, phone_clip

SETTINGS = ImportSettings(size=(32, 32), fit="crop", fps=8, clip_seconds=1.0, max_clips=2, min_frames=4)


def _skipped(result) -> dict[str, str]:
    return {Path(s.file).name: s.reason for s in result.skipped}


def test_symlinks_out_of_source_are_refused_without_products(tmp_path):
    src, elsewhere = tmp_path / "shop", tmp_path / "elsewhere"
    src.mkdir(), elsewhere.mkdir()
    phone_clip(src / "boots.mp4", seconds=1.0)
    phone_clip(elsewhere / "private.mp4", seconds=1.0)
    (src / "private.mp4").symlink_to(elsewhere / "private.mp4")          # a video elsewhere
    (src / "passwd.mp4").symlink_to("/etc/passwd")                       # a system file, as a video suffix
    (src / "again.mp4").symlink_to(src / "boots.mp4")                    # inside SOURCE_DIR: fine
    result = import_catalogue(src, tmp_path / "ds", settings=SETTINGS)
    clips = pd.read_csv(tmp_path / "ds" / "clips.csv", dtype=str)
    assert sorted(set(clips["source"])) == ["again.mp4", "boots.mp4"]
    skipped = _skipped(result)
    assert skipped["private.mp4"] == skipped["passwd.mp4"] == "a symlink that leads outside SOURCE_DIR"


def test_a_huge_declared_frame_size_is_skipped_as_undecodable(tmp_path):
    """20000×20000 in the Matroska and JPEG headers probes as 0×0 (it raised ZeroDivisionError and ended the
    import); in the JPEG headers only, no frame decodes (it was reported as "too short")."""
    src = tmp_path / "shop"
    src.mkdir()
    phone_clip(src / "boots.mp4", seconds=1.0)
    huge_frame_size(src / "forged.mkv")
    huge_frame_size(src / "frames.mkv", header_too=False)
    result = import_catalogue(src, tmp_path / "ds", settings=SETTINGS)
    assert [r["source"] for r in result.rows] == ["boots.mp4"]
    skipped = _skipped(result)
    assert skipped["forged.mkv"].startswith("undecodable: probes as 0x0"), skipped
    assert skipped["frames.mkv"].startswith("undecodable: no frame decodes"), skipped
    report = (tmp_path / "ds" / "import_report.json").read_text()
    assert "forged.mkv" in report and "frames.mkv" in report
