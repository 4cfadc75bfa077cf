"""`reelgan-data import` on hostile sources, with real files and processes: symlinks out of SOURCE_DIR,
header-forged videos, and an import killed mid-way with other settings."""
from __future__ import annotations

import json
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
    assert str(tmp_path) not in report                  # paths relative to the dataset, not this machine's
    assert json.loads(report)["source_dir"] == "../shop"


KILL_AT = """
import os, signal, sys
from data.catalogue import ImportSettings, import_catalogue
def progress(done, total, file):
    if done == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)   # mid-import, after that many source videos
import_catalogue(sys.argv[1], sys.argv[2], settings=ImportSettings(size=(16, 16), fit="pad", fps=8, clip_seconds=1.0,
                 max_clips=2, min_frames=4), progress=progress)
"""


def test_a_reimport_killed_with_other_settings_leaves_no_mixed_dataset(tmp_path):
    """A complete 32×32 crop import; a 16×16 pad re-import SIGKILLed after 3 of 6 videos; a re-run with the first
    settings: every clip is 32×32 and matches clips.csv (it reused 64×64 clips as 256×256 ones before)."""
    import signal
    import subprocess
    import sys

    from data.io import file_sha256
    from data.video import probe

    src, ds = tmp_path / "shop", tmp_path / "ds"
    src.mkdir()
    for i in range(6):
        phone_clip(src / f"v{i}.mp4", seconds=1.0, fps=24 + i, height=48, width=32)
    first = import_catalogue(src, ds, settings=SETTINGS)
    before = (ds / "clips.csv").read_bytes()
    killed = subprocess.run([sys.executable, "-c", KILL_AT, str(src), str(ds), "3"], capture_output=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert (ds / "clips.csv").read_bytes() == before                     # the old dataset, untouched
    again = import_catalogue(src, ds, settings=SETTINGS)
    assert (again.written, again.reused) == (0, len(first.rows))
    clips = pd.read_csv(ds / "clips.csv", dtype=str)
    for row in clips.itertuples():
        facts = probe(ds / row.path)
        assert (facts["width"], facts["height"], row.fit) == (32, 32, "crop")
        assert file_sha256(ds / row.path) == row.clip_sha256
    assert sorted(p.name for p in (ds / "clips").iterdir()) == sorted(Path(p).name for p in clips["path"])
    # a clip file changed since clips.csv recorded it is re-encoded, not reused
    with open(ds / clips["path"][0], "ab") as f:
        f.write(b"\0")
    third = import_catalogue(src, ds, settings=SETTINGS)
    assert (third.written, third.reused) == (1, len(first.rows) - 1)
