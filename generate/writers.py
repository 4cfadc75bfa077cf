"""Write one generated clip in the requested formats: mp4, webm, gif (through data.video) and grid (PNG sheet)."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from data.video import write_video
from data.io import write_bytes

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


def write_clip(frames: np.ndarray, folder: Path, stem: str, formats: list[str], fps: int) -> dict[str, str]:
    """frames uint8 (T, H, W, C) → {format: file name}. Each file appears atomically (temp file, then os.replace)."""
    written: dict[str, str] = {}
    for fmt in formats:
        if fmt == "grid":
            path = folder / f"{stem}-grid.png"
            write_bytes(path, png_bytes(contact_sheet(frames)))
        else:
            path = folder / f"{stem}.{fmt}"
            write_video(path, frames, fps=fps)  # atomic itself (temp file + os.replace)
        written[fmt] = path.name
    return written
