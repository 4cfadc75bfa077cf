"""Vectorised numpy renderer for one synthetic try-on clip: a figure wearing a garment, turning and swaying,
filmed by a camera that zooms and pans over a simple room.

Everything is computed for all frames at once on a 2x supersampled grid, then box-filtered down:
`render_clip(look, frames, height, width) -> uint8 (T, H, W, 3)`.

Geometry (world units): the figure stands at x≈0, head top at y≈-0.85, feet at y≈0.9 (y grows downwards);
the image spans y in [-1, 1] at zoom 1 and x in [-W/H, W/H].
"""
from __future__ import annotations

import math

import numpy as np

SKIN_TONES = np.array([[241, 194, 167], [224, 172, 105], [198, 134, 66], [141, 85, 36], [255, 219, 172]], np.float32)
HAIR_TONES = np.array([[40, 28, 20], [90, 60, 30], [200, 160, 90], [20, 20, 20], [120, 40, 20]], np.float32)
NEUTRAL_TOP = np.array([225, 225, 220], np.float32)     # worn under trousers: no hue, so colour stays the product's
NEUTRAL_BOTTOM = np.array([70, 70, 78], np.float32)     # worn under tops
SHOE = np.array([35, 30, 30], np.float32)
CREAM = np.array([246, 242, 232], np.float32)


def _segment_distance(px, py, ax, ay, bx, by):
    """Distance from points (px, py) to segments a→b (broadcast), and the position t in [0, 1] along them."""
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    ex, ey = px - (ax + t * dx), py - (ay + t * dy)
    return np.sqrt(ex * ex + ey * ey), t


def _pattern(kind: str, u, v, period: float):
    """Mask of the secondary colour for a pattern in garment coordinates (moves and turns with the figure)."""
    if kind == "solid":
        return np.zeros(u.shape, bool)
    if kind == "stripes":
        return np.mod(v / period, 1.0) < 0.45
    if kind == "dots":
        fu, fv = np.mod(u / period, 1.0) - 0.5, np.mod(v / period + 0.5 * np.floor(u / period), 1.0) - 0.5
        return fu * fu + fv * fv < 0.09
    if kind == "check":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    raise ValueError(f"unknown pattern {kind!r}")


def _garment_masks(category: str, u, v, arm_d, arm_t, leg_l, leg_r):
    """(garment mask, whether the figure needs a neutral top, a neutral bottom)."""
    torso_top = -0.47
    if category == "tshirt":
        body = (np.abs(u) < 0.19) & (v > torso_top) & (v < 0.12)
        return body | ((arm_d < 0.065) & (arm_t < 0.35)), False, True
    if category == "jacket":
        body = (np.abs(u) < 0.205) & (v > torso_top - 0.01) & (v < 0.2)
        return body | ((arm_d < 0.068) & (arm_t < 0.92)), False, True
    if category == "dress":
        half = 0.17 + np.clip(v + 0.1, 0, None) * 0.38
        return (np.abs(u) < half) & (v > torso_top) & (v < 0.58), False, False
    if category == "trousers":
        hips = (np.abs(u) < 0.175) & (v > 0.02) & (v < 0.16)
        return hips | ((leg_l | leg_r) & (v > 0.02) & (v < 0.84)), True, False
    raise ValueError(f"unknown category {category!r}")


def render_clip(look: dict, frames: int = 16, height: int = 64, width: int = 64, supersample: int = 2) -> np.ndarray:
    """One try-on clip as uint8 (T, H, W, 3).

    look: category, pattern, rgb (garment colour), skin, hair (indices), background (2 rgb rows), and motion
    floats: turn_speed, turn_phase, sway, sway_freq, walk, zoom0, zoom1, pan_x, pan_y, period, bob.
    """
    s = supersample
    T, H, W = frames, height * s, width * s
    aspect = width / height
    # Per-frame motion is computed with `math` on Python floats: numpy's SIMD sin/cos can differ in the last bit
    # with memory alignment, which would make the same seed render different pixels. Everything below is exact
    # IEEE arithmetic (+ - * / sqrt floor), so a seed gives the same clip on every run.
    steps = [k / max(T - 1, 1) for k in range(T)]
    per_frame = lambda fn: np.array([fn(k) for k in steps], np.float32)[:, None, None]  # noqa: E731
    tau = 2 * math.pi
    t = per_frame(lambda k: k)
    theta = [look["turn_phase"] + tau * look["turn_speed"] * k for k in steps]
    sin_theta = np.array([math.sin(a) for a in theta], np.float32)[:, None, None]
    turn = np.array([0.55 + 0.45 * abs(math.cos(a)) for a in theta], np.float32)[:, None, None]
    fx = per_frame(lambda k: look["sway"] * math.sin(tau * look["sway_freq"] * k) + look["walk"] * (k - 0.5))
    bob = per_frame(lambda k: look["bob"] * abs(math.sin(tau * look["sway_freq"] * k)))
    swing = per_frame(lambda k: 0.08 * math.sin(tau * look["sway_freq"] * k + 1.0))
    y = (np.arange(H, dtype=np.float32)[None, :, None] + 0.5) / H * 2 - 1
    x = ((np.arange(W, dtype=np.float32)[None, None, :] + 0.5) / W * 2 - 1) * aspect
    # Camera: zoom and pan, applied to the whole world (figure and room).
    zoom = look["zoom0"] + (look["zoom1"] - look["zoom0"]) * t
    X = x / zoom + look["pan_x"] * (t - 0.5)
    Y = y / zoom + look["pan_y"] * (t - 0.5) + 0.02
    # Figure motion: turning narrows the silhouette, sway moves it sideways, a small bob up and down.
    u = (X - fx) / turn
    v = Y - bob

    # Labels first (one uint8 map), colours after (one gather): far cheaper than painting RGB layer by layer.
    BG, SKIN, HAIR, SHOES, TOP, BOTTOM, BASE, ALT = range(8)
    label = np.zeros((T, H, W), np.uint8)
    head = (u / 0.12) ** 2 + ((v + 0.68) / 0.155) ** 2 < 1
    neck = (np.abs(u) < 0.045) & (v > -0.56) & (v < -0.44)
    torso = (np.abs(u) < 0.17) & (v > -0.47) & (v < 0.12)
    shoulders = (u / 0.21) ** 2 + ((v + 0.4) / 0.08) ** 2 < 1
    d_l, t_l = _segment_distance(u, v, -0.2, -0.42, -0.24 + swing, 0.1)
    d_r, t_r = _segment_distance(u, v, 0.2, -0.42, 0.24 - swing, 0.1)
    left_nearer = d_l < d_r
    arm_d, arm_t = np.where(left_nearer, d_l, d_r), np.where(left_nearer, t_l, t_r)
    lean = 0.5 * swing * (v - 0.1)
    leg_l, leg_r = np.abs(u + 0.085 + lean) < 0.07, np.abs(u - 0.085 - lean) < 0.07
    legs_any = leg_l | leg_r
    legs = legs_any & (v > 0.08) & (v < 0.86)
    label[torso | shoulders | (arm_d < 0.05) | legs | neck | head] = SKIN
    label[head & (v < -0.73 + 0.03 * (1 - 4 * np.abs(np.mod(u * 3.2 + 10.0, 1.0) - 0.5)))] = HAIR
    label[legs_any & (v >= 0.86) & (v < 0.92)] = SHOES
    garment, needs_top, needs_bottom = _garment_masks(look["category"], u, v, arm_d, arm_t, leg_l, leg_r)
    if needs_top:
        label[((torso | shoulders) & (v < 0.14)) | ((arm_d < 0.062) & (arm_t < 0.3))] = TOP
    if needs_bottom:
        label[((np.abs(u) < 0.17) & (v > 0.1) & (v < 0.2)) | (legs & (v < 0.84))] = BOTTOM
    second = np.broadcast_to(_pattern(look["pattern"], u + 10.0, v + 10.0, look["period"]), garment.shape)
    label[garment] = np.where(second[garment], ALT, BASE)

    base = np.asarray(look["rgb"], np.float32)
    palette = np.stack([np.zeros(3, np.float32), SKIN_TONES[look["skin"]], HAIR_TONES[look["hair"]], SHOE,
                        NEUTRAL_TOP, NEUTRAL_BOTTOM, base, base * 0.45 + CREAM * 0.55])
    img = palette[label]
    # Room: a muted wall gradient with panel lines (they move with the camera), a floor and a foot shadow.
    bg_top, bg_bottom = np.asarray(look["background"], np.float32)
    wall_mix = np.clip((Y + 1) / 2, 0, 1)[..., None]
    wall = np.where((Y > 0.88)[..., None], bg_bottom * 0.7, bg_top * (1 - wall_mix) + bg_bottom * wall_mix)
    dim = np.where(np.abs(np.mod(X + 10.0, 0.5) - 0.25) < 0.01, np.float32(0.88), np.float32(1.0))
    dim = dim * np.where(((X - fx) / 0.3) ** 2 + ((Y - 0.9) / 0.04) ** 2 < 1, np.float32(0.6), np.float32(1.0))
    is_bg = label == BG
    img[is_bg] = (wall * dim[..., None])[is_bg]
    # Light from one side: shading follows the turn so rotation is visible on plain garments too.
    shade = 1.0 + 0.18 * sin_theta * np.clip(u / 0.25, -1, 1) - 0.08 * np.clip(v, 0, 1)
    if look["category"] == "jacket":
        shade = np.where((np.abs(u) < 0.012) & (v < 0.2), shade * 0.55, shade)
    img[garment] *= np.broadcast_to(shade, garment.shape)[garment][:, None]

    img = img if s == 1 else sum(img[:, i::s, j::s] for i in range(s) for j in range(s)) / (s * s)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
