"""Write one generated clip in the requested formats: mp4, webm, gif (through data.video) and grid (PNG sheet).

Clips are written into a run's private staging folder (generate.publish), which is published whole by one rename
after one sync pass (`publish.sync_tree`). So a file here is written in place, without a temp file or an fsync of
its own: until the run is published no reader sees it, and a failed or killed run leaves no published file.
Files get the mode a plain `open()` gives (0666 & ~umask), as PyAV's and Pillow's writers create them.

`encode_clips` is the unit of work of the encoder pool (generate.encode): plain numpy in, file names out, no torch,
so a worker process imports only this module.
"""
from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np

from data import video as _video

FORMATS = ("mp4", "webm", "gif", "grid")


def parse_formats(spec: str) -> list[str]:
    """'mp4,gif' → ['mp4', 'gif']; unknown names fail with the list of known ones."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--format is empty; choose from {','.join(FORMATS)}")
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise ValueError(f"--format: unknown format(s) {', '.join(bad)}; choose from {','.join(FORMATS)}")
    return list(dict.fromkeys(names))


def contact_sheet(frames: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """uint8 (T, H, W, C) → uint8 (rows·H + gaps, cols·W + gaps, 3): frames left to right, top to bottom."""
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"contact_sheet expects uint8 (T, H, W, C), got {frames.dtype} {frames.shape}")
    t, h, w, c = frames.shape
    if c == 1:
        frames = np.repeat(frames, 3, axis=3)
    cols = columns or math.ceil(math.sqrt(t))
    rows = math.ceil(t / cols)
    sheet = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i in range(t):
        r, q = divmod(i, cols)
        sheet[r * (h + gap): r * (h + gap) + h, q * (w + gap): q * (w + gap) + w] = frames[i, ..., :3]
    return sheet


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image  # Pillow ships with matplotlib

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class ClipEncodeError(RuntimeError):
    """Encoding or writing one clip failed; the message names the clip (target and seed) and its file."""


def encode_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """data.video.write_video without its temp file and fsync: for files inside a staging folder (see above).
    TODO(data): data.video could expose this as a public `encode_video`; its private encoders are used here."""
    frames = _video._check_frames(frames)
    if path.suffix == ".gif":
        _video._encode_gif(str(path), frames, fps)
    else:
        _video._encode_av(str(path), frames, fps, path.suffix)


def write_clip(frames: np.ndarray, folder: Path, stem: str, formats: list[str], fps: int) -> dict[str, str]:
    """frames uint8 (T, H, W, C) → {format: file name}, written in place into a staging folder (see above)."""
    written: dict[str, str] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        if fmt == "grid":
            path = folder / f"{stem}-grid.png"
            path.write_bytes(png_bytes(contact_sheet(frames)))
        else:
            path = folder / f"{stem}.{fmt}"
            encode_video(path, frames, fps)
        written[fmt] = path.name
    return written


def encode_clips(frames: np.ndarray, clips: list[tuple[str, str, str]], formats: list[str],
                 fps: int) -> tuple[list[dict[str, str]], float]:
    """frames uint8 (n, T, H, W, C); clips n × (folder, file stem, label) → ({format: file name} per clip, seconds
    spent). A failure raises ClipEncodeError naming the clip by its label ("target 'u1' seed 3")."""
    t0 = time.perf_counter()
    out = []
    for clip, (folder, stem, label) in zip(frames, clips):
        try:
            out.append(write_clip(clip, Path(folder), stem, formats, fps))
        except Exception as err:  # noqa: BLE001 - any encoder failure is reported with the clip it hit
            raise ClipEncodeError(f"writing {label} into {folder} failed: {type(err).__name__}: {err}") from None
    return out, time.perf_counter() - t0
