"""Video IO at the edge: PyAV decode with clip sampling, and atomic encode.

Decoded clips are RGB uint8 `(T, H, W, C)`; `data.tensors` converts them for models.

Robustness policy (also in docs/data.md):
- A container is opened per call, so every DataLoader worker has its own decoder (PyAV objects do not fork).
- Frames are taken in presentation order and timestamps are ignored: a variable-frame-rate file is read as its
  sequence of frames.
- Grayscale is expanded to RGB; frames with alpha are composited over white (the usual product background).
- Rotation metadata (a display matrix, as phones write) is applied: frames come out upright.
- Any size (odd, non-square) is scaled to cover `(H, W)` keeping the aspect ratio, then centre-cropped
  (`reelgan-data import` offers pad and resize as well, see data.framing).
- A clip shorter than the sampled span is padded by holding its last frame (`short="pad"`, the default): a freeze
  is a plausible real pause, while looping would add a jump cut the video discriminator could learn as motion.
  `short="loop"` and `short="error"` are available.
- A truncated stream keeps the frames that decoded; only a file with no decodable frame raises `VideoError`.
- A clip that starts late in a long video is read by seeking (see `_seek_decode`): the decoder starts at the last
  keyframe before the clip, not at frame 0. Frames are the same as a decode from 0, or the read falls back to one.
"""
from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from data.io import atomic_path

SUFFIXES = (".mp4", ".webm", ".mov", ".gif", ".mkv", ".avi")
SHORT_POLICIES = ("pad", "loop", "error")
# Decode at most this many frames when the container does not say how many it has (gif, webm).
MAX_SCAN_FRAMES = 4096
# read_clip seeks only to clips that start at or after this frame: before it, decoding the frames ahead of the clip
# costs less than demuxing the whole file once for its FrameIndex (and short clips never build one).
SEEK_FROM_FRAME = 48


class VideoError(RuntimeError):
    """A video file cannot be used; the message names the file and the fix."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str):
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")


_REENCODE = ("replace it with a complete copy, re-encode it (e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p "
             "OUT.mp4`) or remove its row from clips.csv")


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "file not found", "check the `path` column of clips.csv (paths are relative to DATASET)")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)", _REENCODE)
    try:
        container = av.open(str(path), mode="r")
    except EOFError as e:
        raise VideoError(path, "ends right after its header: zero frames, or truncated", _REENCODE) from e
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        why = f"not a readable video container: truncated, corrupt or not a video ({type(e).__name__})"
        raise VideoError(path, why, _REENCODE) from e
    if not container.streams.video:
        container.close()
        raise VideoError(path, "contains no video stream (or an empty one with zero frames)",
                         "point clips.csv at a file with a video track that has frames")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"  # frame threading adds latency per call; slices help on larger frames
    return container, stream


def _first_rotation(container, stream) -> int:
    """Degrees counter-clockwise (0, 90, 180, 270) that the first frame's display matrix asks for; 0 if none."""
    try:
        for frame in container.decode(stream):
            return 90 * rotation_of(frame)
    except (av.error.FFmpegError, ValueError):
        pass
    return 0


def probe(path: str | os.PathLike) -> dict:
    """Facts of a video file (first frame decoded only): frames (0 = unknown), fps, coded width/height, codec,
    pix_fmt, duration, rotation (display metadata, degrees counter-clockwise) and whether it has audio."""
    container, stream = _open(path)
    try:
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        return {
            "path": str(path),
            "frames": int(stream.frames or 0),
            "fps": float(rate) if rate else None,
            "width": int(cc.width),
            "height": int(cc.height),
            "codec": cc.name,
            "pix_fmt": cc.pix_fmt,
            "duration_s": float(container.duration / 1e6) if container.duration else None,
            "rotation": _first_rotation(container, stream),
            "audio": bool(container.streams.audio),
        }
    finally:
        container.close()


def cover_size(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[int, int]:
    """Smallest size with the source aspect ratio that covers (dst_h, dst_w)."""
    scale = max(dst_h / src_h, dst_w / src_w)
    return max(dst_h, round(src_h * scale)), max(dst_w, round(src_w * scale))


# AREA averages when shrinking (no aliasing from large sources); BITEXACT + ACCURATE_RND make the result the same
# on every machine and run.
_SCALE = Interpolation.AREA | Interpolation.BITEXACT | Interpolation.ACCURATE_RND
_local = threading.local()


def _reformatter() -> VideoReformatter:
    """One swscale context holder per thread, reused across frames (a new one per frame, with its default
    auto thread pool, cost ~0.4 ms per 64×64 frame)."""
    if not hasattr(_local, "sws"):
        _local.sws = VideoReformatter()
    return _local.sws


def rotation_of(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that display the frame upright (phone footage: display-matrix side data)."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return round(degrees / 90) % 4 if degrees else 0


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    """One decoded frame → uint8 (H, W, 3) upright: rotation metadata applied, scaled to cover `size`,
    centre-cropped, alpha over white."""
    turns = rotation_of(frame)
    shown_h, shown_w = (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)
    if size is None:
        h, w = shown_h, shown_w
    else:
        h, w = cover_size(shown_h, shown_w, *size)
    if turns % 2:
        h, w = w, h  # scale in the coded orientation, turn afterwards
    fmt = frame.format
    # Palettes (gif) may carry transparency, so they go through rgba too.
    has_alpha = fmt.has_palette or any(c.is_alpha for c in fmt.components)
    sws = _reformatter()
    if has_alpha:
        rgba = sws.reformat(frame, width=w, height=h, format="rgba", threads=1, interpolation=_SCALE).to_ndarray()
        a = rgba[..., 3:4].astype(np.float32) / 255.0
        img = (rgba[..., :3] * a + 255.0 * (1.0 - a)).round().astype(np.uint8)
    else:
        img = sws.reformat(frame, width=w, height=h, format="rgb24", threads=1, interpolation=_SCALE).to_ndarray()
    if turns:
        img = np.rot90(img, turns)
    if size is not None:
        h, w = img.shape[:2]
        top, left = (h - size[0]) // 2, (w - size[1]) // 2
        img = img[top : top + size[0], left : left + size[1]]
    return np.ascontiguousarray(img)


def _frame_indices(n: int, num_frames: int, stride: int, start: int | None, rng, short: str, path) -> np.ndarray:
    span = (num_frames - 1) * stride + 1
    if start is None:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, max(n - span, 0) + 1))
    idx = start + stride * np.arange(num_frames)
    if idx[-1] < n:
        return idx
    if short == "error":
        raise VideoError(path, f"has {n} frames, fewer than the {span} needed from start {start}",
                         "lower frames/stride, or use short='pad' or 'loop'")
    if short == "loop":
        return idx % n
    return np.minimum(idx, n - 1)


def _decode(container, stream, path, size, max_frames: int, keep: set[int] | None):
    frames: dict[int, np.ndarray] = {}
    count, error = 0, None
    last_needed = max(keep) if keep else None
    try:
        for frame in container.decode(stream):
            if keep is None or count in keep:
                frames[count] = _to_rgb(frame, size)
            count += 1
            if count >= max_frames or (last_needed is not None and count > last_needed):
                break
    except (av.error.FFmpegError, ValueError) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        container.close()
    if count == 0:
        why = f"no decodable video frames ({error})" if error else "has zero video frames"
        raise VideoError(path, why, _REENCODE)
    return frames, count, error


def decode_frames(path: str | os.PathLike, size: tuple[int, int] | None = None, max_frames: int = MAX_SCAN_FRAMES,
                  keep: set[int] | None = None) -> tuple[dict[int, np.ndarray], int, str | None]:
    """Decode up to `max_frames` frames; returns ({index: RGB (H, W, 3)} for `keep` (all if None), frames seen, error).

    A decode error after some frames (a truncated file) ends the scan and is returned as text, not raised.
    """
    container, stream = _open(path)
    return _decode(container, stream, path, size, max_frames, keep)


class FrameIndex(NamedTuple):
    """Where a stream's frames are, from its packets (demuxed, not decoded). Frame i of a decode from 0 has
    presentation timestamp pts[i]; keyframe j starts frame key_at[j] and is reached by seeking to seek_to[j]."""
    pts: np.ndarray  # int64 (N,), ascending, stream time base
    key_at: np.ndarray  # int64 (K,), ascending; key_at[0] == 0
    seek_to: np.ndarray  # int64 (K,): the keyframe's dts (what mp4 indexes), else its pts


def _build_index(path: str) -> FrameIndex | None:
    """None when the packets cannot stand for a decode from 0: a packet without pts, a discarded or corrupt one,
    repeated pts, a first packet that is not a keyframe, or a header frame count the packets do not match."""
    try:
        container, stream = _open(path)
    except VideoError:
        return None
    pts, keys = [], []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None:
                continue  # the demuxer's end-of-stream flush packet
            if packet.pts is None or packet.is_discard or packet.is_corrupt or (not pts and not packet.is_keyframe):
                return None
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append((packet.pts, packet.pts if packet.dts is None else packet.dts))
        header_n = int(stream.frames or 0)
    except (av.error.FFmpegError, ValueError):
        return None
    finally:
        container.close()
    order = np.sort(np.asarray(pts, dtype=np.int64))
    if not len(order) or (header_n and header_n != len(order)) or (np.diff(order) <= 0).any():
        return None
    key_pts, seek_to = np.asarray(keys, dtype=np.int64).T
    return FrameIndex(order, np.searchsorted(order, key_pts), seek_to)


@functools.lru_cache(maxsize=1024)
def _cached_index(path: str, size: int, mtime_ns: int) -> FrameIndex | None:
    return _build_index(path)


def frame_index(path: str | os.PathLike) -> FrameIndex | None:
    """The file's FrameIndex (cached per process while the file's size and mtime stay), or None if it has none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _cached_index(str(path), st.st_size, st.st_mtime_ns)


def _seek_decode(path, index: FrameIndex, keep: set[int], size) -> dict[int, np.ndarray] | None:
    """Frames `keep` ({index: RGB (H, W, 3)}) decoded from the last keyframe at or before min(keep).

    Each decoded frame is matched to the index by its pts: frames before the keyframe (an earlier landing, or an
    open GOP's leading frames) are passed over; after it, every frame must be the next one in presentation order.
    None (the caller decodes from 0) when the keyframe is frame 0, or the seek lands after the keyframe, a frame is
    missing or out of order, or decoding fails before max(keep).
    """
    first, last = min(keep), max(keep)
    j = int(np.searchsorted(index.key_at, first, side="right")) - 1
    start = int(index.key_at[j])
    if j < 0 or start == 0 or last >= len(index.pts):
        return None
    container, stream = _open(path)
    frames: dict[int, np.ndarray] = {}
    expect = start
    try:
        container.seek(int(index.seek_to[j]), backward=True, any_frame=False, stream=stream)
        for frame in container.decode(stream):
            if frame.pts is None:
                return None
            if expect == start and frame.pts < index.pts[start]:
                continue
            if frame.pts != index.pts[expect]:
                return None
            if expect in keep:
                frames[expect] = _to_rgb(frame, size)
            if expect == last:
                return frames
            expect += 1
    except (av.error.FFmpegError, ValueError):
        return None
    finally:
        container.close()
    return None


def read_clip(path: str | os.PathLike, num_frames: int, stride: int = 1, start: int | None = None,
              rng: np.random.Generator | None = None, size: tuple[int, int] | None = (64, 64),
              short: str = "pad", seek: bool = True) -> np.ndarray:
    """Sample `num_frames` frames `stride` apart → RGB uint8 (T, H, W, C).

    start: first frame index, or None for a random start drawn from `rng` (a numpy Generator).
    size: (H, W) output (scale to cover, centre-crop), or None for the native size.
    seek: start decoding at the keyframe before the clip (same frames; False decodes from frame 0, for checks).
    """
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    if short not in SHORT_POLICIES:
        raise ValueError(f"short must be one of {SHORT_POLICIES}, got {short!r}")
    container, stream = _open(path)
    header_n = int(stream.frames or 0)
    index = None
    if header_n == 0 and seek and (start is None or start >= SEEK_FROM_FRAME):
        # No count in the header (webm, mkv): the packets give it, as a full decode capped at MAX_SCAN_FRAMES would.
        index = frame_index(path)
        if index is not None and len(index.pts) <= MAX_SCAN_FRAMES:
            header_n = len(index.pts)
            start = 0 if start is not None and start >= header_n else start  # as sample_frames does
        else:
            index = None
    if header_n > 0:
        idx = _frame_indices(header_n, num_frames, stride, start, rng, short, path)
        keep = set(idx.tolist())
        if seek and min(keep) >= SEEK_FROM_FRAME:
            index = index or frame_index(path)
            frames = _seek_decode(path, index, keep, size) if index is not None else None
            if frames is not None:
                container.close()
                return np.stack([frames[i] for i in idx.tolist()])
        frames, seen, _ = _decode(container, stream, path, size, MAX_SCAN_FRAMES, keep)
        if all(i in frames for i in idx.tolist()):
            return np.stack([frames[i] for i in idx.tolist()])
        # The header promised more frames than decoded (truncated file): resample within what exists.
        frames, seen, _ = decode_frames(path, size, max_frames=seen)
    else:
        frames, seen, _ = _decode(container, stream, path, size, MAX_SCAN_FRAMES, None)
    return sample_frames(frames, seen, num_frames, stride, start, rng, short, path)


def sample_frames(frames, n: int, num_frames: int, stride: int = 1, start: int | None = None, rng=None,
                  short: str = "pad", path="<memory>") -> np.ndarray:
    """Sample from already decoded frames (a dict or array indexed 0..n-1) → uint8 (T, H, W, C)."""
    if start is not None and start >= n:
        start = 0  # a fixed start past the end of a short clip: begin at the first frame
    idx = _frame_indices(n, num_frames, stride, start, rng, short, path)
    return np.stack([frames[i] for i in idx.tolist()])


def _even_pad(frames: np.ndarray) -> np.ndarray:
    """Pad (T, H, W, C) by edge replication to even H and W (yuv420p needs them)."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4) or frames.shape[0] < 1:
        raise ValueError(f"write_video expects uint8 (T, H, W, C) with C in 1/3/4, got {frames.dtype} {frames.shape}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def rgb_to_yuv420p(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB, even H and W → the (3H/2, W) yuv420p layout PyAV takes (BT.601 limited range).

    Converting here rather than in swscale keeps encodes bit-identical run to run: swscale's threaded conversion
    was seen to vary in the last bit, which broke "same seed, same files".
    """
    rgb = img.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    sub = lambda c: (c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]) / 4  # noqa: E731
    planes = [y.reshape(-1), sub(cb).reshape(-1), sub(cr).reshape(-1)]
    out = np.concatenate(planes).round().clip(0, 255).astype(np.uint8)
    return out.reshape(h * 3 // 2, w)


# One encoder thread, no lookahead or slice threads: tiny frames gain nothing from threads, and x264 output is
# only bit-reproducible (same seed → same files) single-threaded.
X264 = {"crf": "18", "preset": "fast", "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0"}


def _encode_av(tmp: str, frames: np.ndarray, fps: int, suffix: str) -> None:
    codec, fmt, pix_fmt, options = {
        ".mp4": ("libx264", "mp4", "yuv420p", X264),
        ".mov": ("libx264", "mov", "yuv420p", X264),
        ".mkv": ("libx264", "matroska", "yuv420p", X264),
        ".webm": ("libvpx-vp9", "webm", "yuv420p", {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
    }[suffix]
    frames = _even_pad(frames[..., :3])
    with av.open(tmp, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _encode_gif(tmp: str, frames: np.ndarray, fps: int) -> None:
    from PIL import Image  # Pillow builds an adaptive palette per frame; ffmpeg's gif encoder needs a fixed one

    images = [Image.fromarray(f[..., :3] if f.shape[-1] == 4 else f) for f in frames]
    images = [im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for im in images]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> Path:
    """Write uint8 (T, H, W, C) atomically; the suffix picks the format (.mp4/.mov libx264 yuv420p, .webm vp9, .gif).

    Odd sizes are padded (edge replicated) to even for yuv420p.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".mov", ".mkv", ".webm", ".gif"):
        raise ValueError(f"{path}: unsupported output suffix {suffix!r}; use .mp4, .mov, .mkv, .webm or .gif")
    frames = _check_frames(frames)
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            _encode_gif(str(tmp), frames, fps)
        else:
            _encode_av(str(tmp), frames, fps, suffix)
    return path
