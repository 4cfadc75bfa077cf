"""read_clip seeks to the keyframe before a late clip: the frames are exactly those of a decode from frame 0, for
long and short GOPs, B-frames, open GOPs, fragmented mp4, Matroska, MPEG-TS, rotation and variable frame rate."""
import numpy as np
import pytest

from data import testing as make
from data import video
from data.video import SEEK_FROM_FRAME, frame_index, read_clip

STARTS = [1, 13, 37, 49, 50, 51, 120, 199, 200, 201, 250, 283]

CASES = {
    "long-gop.mp4": {"gop": 250},  # x264's default keyint: one keyframe in 300 frames besides frame 0
    "short-gop.mp4": {"gop": 12},
    "no-bframes.mp4": {"gop": 30, "bframes": 0},
    "open-gop.mp4": {"gop": 40, "open_gop": True},
    "fragmented.mp4": {"gop": 50, "fragmented": True},  # no sample index in the header
    "rotated.mov": {"gop": 25, "rotate": 90},
    "vfr.mkv": {"gop": 30, "vfr": True},  # no frame count in the header either
    "transport.ts": {"gop": 50},  # no index at all: the demuxer seeks by searching the file
}


@pytest.fixture
def seeks(monkeypatch):
    """Counts of _seek_decode calls that returned frames (seeked) and that gave up (fell back to frame 0)."""
    counts = {"seeked": 0, "fell_back": 0}
    original = video._seek_decode

    def spy(*args, **kwargs):
        frames = original(*args, **kwargs)
        counts["seeked" if frames is not None else "fell_back"] += 1
        return frames

    monkeypatch.setattr(video, "_seek_decode", spy)
    return counts


@pytest.mark.parametrize("name", list(CASES))
def test_seeking_gives_the_frames_of_a_decode_from_zero(tmp_path, seeks, name):
    path = make.long_video(tmp_path / name, seconds=10, **CASES[name])
    index = frame_index(path)
    assert index is not None and len(index.pts) == 300 and len(index.key_at) >= 2
    for start in STARTS:
        for stride, size in ((2, (32, 32)), (1, None)):
            sought = read_clip(path, 8, stride=stride, start=start, size=size)
            from_zero = read_clip(path, 8, stride=stride, start=start, size=size, seek=False)
            assert np.array_equal(sought, from_zero), f"{name}: start {start} stride {stride} size {size}"
    # Every start from SEEK_FROM_FRAME on, at or after the second keyframe, really seeked; none gave up.
    tried = [start for start in STARTS if start >= SEEK_FROM_FRAME]
    late = sum(2 * (start >= index.key_at[1]) for start in tried)
    assert seeks == {"seeked": late, "fell_back": 2 * len(tried) - late}
    assert late >= 2


def test_random_draws_match_and_reach_the_end(tmp_path):
    path = make.long_video(tmp_path / "long.mp4", seconds=10, gop=30)
    for seed in range(6):
        a = read_clip(path, 16, stride=3, rng=np.random.default_rng(seed), size=(16, 16))
        b = read_clip(path, 16, stride=3, rng=np.random.default_rng(seed), size=(16, 16), seek=False)
        assert np.array_equal(a, b)
    last = read_clip(path, 4, start=296, size=None)
    assert np.array_equal(last, read_clip(path, 4, start=296, size=None, seek=False))
    padded = read_clip(path, 8, start=296, size=(16, 16))  # runs past the end: holds the last frame
    assert np.array_equal(padded, read_clip(path, 8, start=296, size=(16, 16), seek=False))
    assert np.array_equal(padded[4:], np.repeat(padded[3:4], 4, axis=0))


def test_truncated_file_falls_back_to_what_decodes(tmp_path, seeks):
    path = make.long_video(tmp_path / "cut.mp4", seconds=10, gop=30, fragmented=True)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    for start in (10, 100, 250):
        a = read_clip(path, 8, start=start, size=(16, 16))
        assert np.array_equal(a, read_clip(path, 8, start=start, size=(16, 16), seek=False))


def test_the_index_is_cached_until_the_file_changes(tmp_path):
    path = make.long_video(tmp_path / "v.mp4", seconds=4, gop=20)
    first = frame_index(path)
    assert frame_index(path) is first
    make.long_video(path, seconds=5, gop=20)
    assert len(frame_index(path).pts) == 150
