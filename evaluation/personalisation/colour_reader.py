"""An independent reader of garment colour for the synthetic try-on world: pixels, not a learned model.

The project's domain classifier is trained by ReelGAN, so a hit rate it reports rests on ReelGAN's own judgement.
This reader knows only the world's palette (data.synth.COLOUR_RGB for garments; skin, hair and neutral tones from
data.synth_render): saturated pixels (the room is grey) are matched to the nearest palette colour, and a clip's
colour is the garment colour with the most pixels over all its frames (at least 3 pixels, else "none"). On real
clips of the world it reads the product's colour for 255 of 256 clips rendered at 64 px and shown at 32 px (the
demo), and for 115 of 128 rendered at 32 px, where patterns blend into the garment (tests/test_eval_colour_reader.py).
"""
from __future__ import annotations

import numpy as np
import torch

from data.synth import ATTRIBUTES, COLOUR_RGB
from data.synth_render import CREAM, HAIR_TONES, NEUTRAL_BOTTOM, NEUTRAL_TOP, SHOE, SKIN_TONES
from evaluation.personalisation.hits import reader_hit_rates

COLOURS = ATTRIBUTES["colour"]
_PALETTE = np.concatenate([np.array([COLOUR_RGB[c] for c in COLOURS], np.float32), SKIN_TONES, HAIR_TONES,
                           np.stack([NEUTRAL_TOP, NEUTRAL_BOTTOM, SHOE, CREAM])])
MIN_SATURATION, MIN_VALUE, MIN_PIXELS = 0.4, 60, 3  # pink (240, 120, 180) has saturation 0.5


def read_garment_colour(video: torch.Tensor) -> np.ndarray:
    """uint8 (N, T, C, H, W) → (N,) index into ATTRIBUTES["colour"], or -1 when no garment colour shows."""
    if video.dtype != torch.uint8 or video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"expected uint8 (N, T, 3, H, W) clips, got {video.dtype} {tuple(video.shape)}")
    pixels = video.permute(0, 1, 3, 4, 2).reshape(video.shape[0], -1, 3).float().numpy()
    out = np.full(len(pixels), -1)
    for i, px in enumerate(pixels):
        hi, lo = px.max(1), px.min(1)
        px = px[((hi - lo) / np.maximum(hi, 1) > MIN_SATURATION) & (hi > MIN_VALUE)]
        nearest = ((px[:, None, :] - _PALETTE[None]) ** 2).sum(-1).argmin(1)
        counts = np.bincount(nearest[nearest < len(COLOURS)], minlength=len(COLOURS))
        if counts.sum() >= MIN_PIXELS:
            out[i] = int(counts.argmax())
    return out


def applies_to(vocab: dict[str, list[str]]) -> bool:
    """The reader only knows the synthetic world's garment colours."""
    return sorted(vocab.get("colour", [])) == sorted(COLOURS)


def reader_hits(videos: dict[str, torch.Tensor], favourites: list[str], k: int) -> dict:
    """videos {"own" | "shuffled": uint8 (U·k, T, C, H, W)}, favourites[u] a colour name → hit rates (JSON)."""
    rates = reader_hit_rates({n: read_garment_colour(v) for n, v in videos.items()},
                             np.array([COLOURS.index(f) for f in favourites]), k)
    return {"method": "pixel palette reader (evaluation.personalisation.colour_reader), no learned model",
            **{("no_garment_colour" if key == "unreadable" else key): v for key, v in rates.items()}}
