"""data.video on real files: round trips, sampling, and every kind of broken input."""
import numpy as np
import pytest

from data import testing as bad
from data.video import VideoError, decode_frames, probe, read_clip, write_video


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif", ".mov"])
def test_round_trip_keeps_content(tmp_path, suffix):
    frames = bad.smooth_frames(12, 32, 48)
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=8)
    clip = read_clip(path, 12, start=0, size=None)
    assert clip.shape == (12, 32, 48, 3) and clip.dtype == np.uint8
    err = np.abs(clip.astype(float) - frames.astype(float)).mean()
    assert err < 12, f"{suffix}: mean abs error {err:.1f}"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name], "atomic write left a temp file"


def test_odd_size_is_padded_to_even_for_yuv420p(tmp_path):
    path = write_video(tmp_path / "odd.mp4", bad.smooth_frames(4, 33, 47))
    info = probe(path)
    assert (info["height"], info["width"], info["pix_fmt"]) == (34, 48, "yuv420p")
    assert read_clip(path, 4, start=0, size=(20, 30)).shape == (4, 20, 30, 3)


def test_stride_and_fixed_start_pick_the_right_frames(tmp_path):
    path = bad.good_mp4(tmp_path / "ramp.mp4", n=20)
    clip = read_clip(path, 5, stride=3, start=2, size=(16, 16))
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), 10 * (2 + 3 * np.arange(5)), atol=3)


def test_random_start_is_reproducible_and_in_range(tmp_path):
    path = bad.good_mp4(tmp_path / "ramp.mp4", n=20)
    a = read_clip(path, 4, stride=2, rng=np.random.default_rng(5), size=(16, 16))
    b = read_clip(path, 4, stride=2, rng=np.random.default_rng(5), size=(16, 16))
    assert np.array_equal(a, b)
    starts = {round(read_clip(path, 4, stride=2, rng=np.random.default_rng(s), size=(8, 8))[0].mean() / 10)
              for s in range(30)}
    assert len(starts) > 3 and max(starts) <= 20 - 7


def test_short_clip_policies(tmp_path):
    path = bad.good_mp4(tmp_path / "short.mp4", n=5)
    means = lambda c: np.round(c.mean(axis=(1, 2, 3)) / 10).astype(int).tolist()  # noqa: E731
    assert means(read_clip(path, 8, start=0, size=(8, 8))) == [0, 1, 2, 3, 4, 4, 4, 4]  # pad holds the last frame
    assert means(read_clip(path, 8, start=0, size=(8, 8), short="loop")) == [0, 1, 2, 3, 4, 0, 1, 2]
    with pytest.raises(VideoError, match="fewer than the 8 needed"):
        read_clip(path, 8, start=0, size=(8, 8), short="error")


@pytest.mark.parametrize("maker,problem", [
    (bad.truncated_mp4, "truncated, corrupt or not a video"),
    (bad.random_bytes, "truncated, corrupt or not a video"),
    (bad.zero_frame, "zero frames"),
])
def test_unreadable_files_raise_video_error_naming_file_and_fix(tmp_path, maker, problem):
    path = maker(tmp_path / "broken.mp4")
    with pytest.raises(VideoError) as info:
        read_clip(path, 4, size=(16, 16))
    text = str(info.value)
    assert str(path) in text and problem in text and "Fix:" in text


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        read_clip(tmp_path / "empty.mp4", 4)
    with pytest.raises(VideoError, match="file not found.*clips.csv"):
        read_clip(tmp_path / "nope.mp4", 4)


def test_truncated_stream_keeps_the_frames_that_decode(tmp_path):
    path = bad.truncated_stream(tmp_path / "cut.mkv", n=48, keep=0.6)
    frames, seen, _ = decode_frames(path, size=(8, 8))
    assert 0 < seen < 48
    assert read_clip(path, 16, rng=np.random.default_rng(0), size=(16, 16)).shape == (16, 16, 16, 3)


def test_grayscale_becomes_rgb(tmp_path):
    clip = read_clip(bad.grayscale(tmp_path / "gray.mkv"), 8, start=0, size=(16, 16))
    assert clip.shape == (8, 16, 16, 3)
    assert np.array_equal(clip[..., 0], clip[..., 1]) and np.array_equal(clip[..., 1], clip[..., 2])
    np.testing.assert_allclose(clip[:, 8, 8, 0], 20 * np.arange(8), atol=2)


def test_alpha_is_composited_over_white(tmp_path):
    clip = read_clip(bad.alpha_mov(tmp_path / "alpha.mov"), 4, start=0, size=None)
    assert clip[0, 5, 5].tolist() == [255, 0, 0]        # opaque red stays red
    assert clip[0, 5, 28].tolist() == [255, 255, 255]   # transparent becomes the white background


def test_variable_frame_rate_reads_every_frame_in_order(tmp_path):
    path = bad.variable_frame_rate(tmp_path / "vfr.mkv", n=12)
    clip = read_clip(path, 12, start=0, size=(8, 8))
    values = clip[:, 4, 4, 0].astype(int)
    assert np.all(np.diff(values) > 0) and abs(values[-1] - 220) <= 6


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "x.avi2", np.zeros((4, 8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
