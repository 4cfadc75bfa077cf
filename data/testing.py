"""Writers of real problem videos (for tests, and to try `reelgan-data check` on): each returns the path it wrote.

They produce the kinds of files found in the wild: truncated, random bytes, zero frames, grayscale, alpha, odd
sizes, variable frame rate, and plain good clips whose frame k is visibly k (for sampling tests).
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from data.video import write_video


def ramp_frames(n: int, height: int = 32, width: int = 32, step: int = 10) -> np.ndarray:
    """uint8 (n, H, W, 3) where frame k is a flat grey of value step*k: its index is readable after decoding."""
    values = (np.arange(n) * step).clip(0, 255).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, height, width, 3)).copy()


def smooth_frames(n: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (n, H, W, 3) of moving colour gradients: compressible content for round-trip checks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, 3)
    frames = [np.stack([127 + 100 * np.sin(x / 9 + y / 13 + 0.3 * k + phase[c]) for c in range(3)], -1)
              for k in range(n)]
    return np.clip(frames, 0, 255).astype(np.uint8)


def good_mp4(path, n: int = 16, height: int = 32, width: int = 32) -> Path:
    return write_video(path, ramp_frames(n, height, width), fps=8)


def truncated_mp4(path, n: int = 24) -> Path:
    """An mp4 cut short: its index (moov, written at the end) is lost, as after an interrupted download."""
    path = Path(path)
    good = good_mp4(path.with_name(path.stem + ".full.mp4"), n)
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    good.unlink()
    return path


def truncated_stream(path, n: int = 48, keep: float = 0.6) -> Path:
    """A Matroska file cut at `keep` of its bytes: its early frames still decode."""
    path = Path(path)
    full = write_video(path.with_name(path.stem + ".full.mkv"), smooth_frames(n, 32, 32), fps=8)
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    full.unlink()
    return path


def random_bytes(path, size: int = 4096, seed: int = 0) -> Path:
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def huge_frame_size(path, declared: int = 20_000, header_too: bool = True) -> Path:
    """A Matroska/MJPEG file whose every JPEG frame header (and, with `header_too`, the container header) declares
    `declared`×`declared` pixels, beyond what FFmpeg decodes: it opens, probes as 0×0 (or as the container's size
    without `header_too`) and no frame decodes."""
    path = Path(path)
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=8)
        stream.width = stream.height = 256  # two-byte sizes in both headers, so the patch keeps every length
        stream.pix_fmt = "yuvj420p"
        for img in ramp_frames(16, 256, 256):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    raw, size = bytearray(path.read_bytes()), declared.to_bytes(2, "big")
    at = 0
    while (at := raw.find(b"\xff\xc0", at)) >= 0:  # JPEG SOF0: marker, length (2), precision (1), height, width
        raw[at + 5: at + 9] = size + size
        at += 2
    if header_too:
        for element in (b"\xb0\x82\x01\x00", b"\xba\x82\x01\x00"):  # Matroska PixelWidth / PixelHeight = 256
            at = raw.index(element)
            raw[at + 2: at + 4] = size
    path.write_bytes(bytes(raw))
    return path


def zero_frame(path) -> Path:
    """A container with a video stream header and no frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    return Path(path)


def grayscale(path, n: int = 8, height: int = 21, width: int = 31) -> Path:
    """Odd-sized grayscale FFV1 in Matroska; frame k has value 20*k."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((height, width), 20 * k, np.uint8), format="gray")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def alpha_mov(path, n: int = 4, size: int = 32) -> Path:
    """PNG-in-MOV RGBA: left half opaque red, right half fully transparent red."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=8)
        stream.width, stream.height, stream.pix_fmt = size, size, "rgba"
        for _ in range(n):
            rgba = np.zeros((size, size, 4), np.uint8)
            rgba[..., 0] = 255
            rgba[:, : size // 2, 3] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def variable_frame_rate(path, n: int = 12, gaps_ms=(20, 100, 33, 250, 40)) -> Path:
    """H.264 in Matroska with irregular timestamps; frame k has value 20*k."""
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.time_base = stream.codec_context.time_base = tb
        pts = 0
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, tb
            pts += gaps_ms[k % len(gaps_ms)]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def corrupt_in_place(path, seed: int = 0) -> Path:
    """Overwrite an existing clip with random bytes of the same size (a broken file in a good dataset)."""
    size = max(os.path.getsize(path), 64)
    return random_bytes(path, size, seed)


def phone_clip(path, seconds: float = 2.0, fps: int = 30, height: int = 96, width: int = 54, rotate: int = 0,
               audio: bool = False) -> Path:
    """A phone-style H.264 clip (mp4 or mov by suffix): `fps` frames a second, frame k shows a white bar at the
    top-left corner (so orientation is checkable) over a grey of value 4*k (so time is checkable).

    rotate: display-matrix rotation in degrees counter-clockwise, as a phone held sideways writes (the coded
    frames stay as given; a player turns them). audio: add an AAC stereo track of a 440 Hz tone.
    """
    path = Path(path)
    n = int(round(seconds * fps))
    fmt = {".mov": "mov", ".mp4": "mp4", ".mkv": "matroska"}[path.suffix.lower()]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotate:
            stream.set_display_rotation(rotate)
        sound = container.add_stream("aac", rate=44100, layout="stereo") if audio else None
        for k in range(n):
            img = np.full((height, width, 3), min(4 * k, 255), np.uint8)
            img[: height // 4, : width // 3] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            t = np.arange(int(seconds * 44100)) / 44100
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for i in range(0, len(tone), 1024):
                chunk = np.stack([tone[i:i + 1024]] * 2)  # planar (channels, samples)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 44100, i
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def long_video(path, seconds: float = 10.0, fps: int = 30, height: int = 48, width: int = 64, gop: int | None = None,
               bframes: int | None = None, open_gop: bool = False, fragmented: bool = False, rotate: int = 0,
               vfr: bool = False) -> Path:
    """A long H.264 video (.mp4/.mov/.mkv/.ts by suffix) for seek checks: every frame differs (a drifting texture
    and a moving bar), so inter frames carry real prediction and a wrong reference shows.

    gop: x264's keyint (None: its default, 250). bframes: None for x264's default (3, pyramid). open_gop: x264's
    open GOPs (leading B-frames after each non-IDR keyframe). fragmented: a fragmented mp4 (no sample index in
    the header). rotate: display-matrix degrees. vfr: irregular timestamps (time base 1/1000).
    """
    path = Path(path)
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}[path.suffix.lower()]
    options = {"preset": "fast"}
    if gop:
        options["g"] = str(gop)
    if bframes is not None:
        options["bf"] = str(bframes)
    if open_gop:
        options["x264-params"] = "open-gop=1"
    container_options = {"movflags": "frag_keyframe+empty_moov"} if fragmented else {}
    y, x = np.mgrid[0:height, 0:width]
    tb = Fraction(1, 1000)
    with av.open(str(path), "w", format=fmt, options=container_options) as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if vfr:
            stream.time_base = stream.codec_context.time_base = tb
        if rotate:
            stream.set_display_rotation(rotate)
        pts = 0
        for k in range(int(round(seconds * fps))):
            img = np.stack([(x + 3 * k) % 256, (2 * y + k) % 256, np.full_like(x, 7 * k % 256)], -1).astype(np.uint8)
            bar = int(width / 2 + width / 3 * np.sin(k / 10))
            img[:, max(0, bar - 3):bar + 3] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = pts, tb
                pts += (20, 100, 33, 250, 40)[k % 5]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
