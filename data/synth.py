"""The synthetic try-on world: products, try-on clips, users with hidden preferences and their interactions.

`make_world(out, clips, users, size, frames, seed)` writes a dataset folder in the contract of docs/data.md
(clips/, clips.csv, interactions.csv, users.csv, hidden_truth.json, world.json). Same seed → same files.

Choice model (hidden; see `hidden_truth.json`): utility(u, i) = Σ_a w_a[u]·[attr_a(i) = pref_a(u)]
+ 0.5·w_colour[u]·[colour(i) = second_colour(u)] + ε, ε ~ N(0, 0.3). Colour carries the largest weight, so
colour is the signal a conditional generator learns first. A user views 30-60 distinct clips (half exposure
follows utility, half is uniform); each view is clicked, carted and bought with probabilities rising with utility.
"""
from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data import io
from data.persona_text import persona_text
from data.synth_render import HAIR_TONES, SKIN_TONES, render_clip
from data.video import write_video

ATTRIBUTES: dict[str, list[str]] = {
    "category": ["tshirt", "dress", "jacket", "trousers"],
    "colour": ["red", "orange", "yellow", "green", "teal", "blue", "purple", "pink"],
    "pattern": ["solid", "stripes", "dots", "check"],
}
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 40), "orange": (240, 130, 25), "yellow": (240, 210, 40), "green": (45, 160, 60),
    "teal": (20, 150, 150), "blue": (35, 75, 210), "purple": (125, 50, 170), "pink": (240, 120, 180),
}
# Choice model constants (logits = a + b·utility); written to world.json and hidden_truth.json.
CHOICE = {"views": [30, 60], "exposure_uniform": 0.5, "exposure_temperature": 1.0, "noise_sd": 0.3,
          "click": [-2.5, 1.2], "add_to_cart": [-2.0, 0.8], "purchase": [-1.0, 0.6]}
WEIGHT_RANGES = {"colour": (2.0, 3.0), "category": (0.8, 1.3), "pattern": (0.6, 1.0)}
VERSION = 1


def products() -> pd.DataFrame:
    """Every category × colour × pattern combination, with a stable product_id."""
    rows = [(c, k, p) for c in ATTRIBUTES["category"] for k in ATTRIBUTES["colour"] for p in ATTRIBUTES["pattern"]]
    frame = pd.DataFrame(rows, columns=["category", "colour", "pattern"])
    frame.insert(0, "product_id", [f"p{i:03d}" for i in range(len(frame))])
    return frame


def sample_look(row: dict, seed: int, index: int) -> dict:
    """Per-clip appearance and motion: drawn from its own Generator, so clips do not depend on worker layout."""
    rng = np.random.default_rng([seed, 1, index])
    rgb = np.clip(np.array(COLOUR_RGB[row["colour"]]) + rng.integers(-10, 11, 3), 0, 255)
    grey = rng.uniform(120, 215)
    tint = rng.uniform(-12, 12, 3)
    top = np.clip(grey + tint, 0, 255)
    return {
        "category": row["category"], "pattern": row["pattern"], "rgb": rgb.tolist(),
        "skin": int(rng.integers(len(SKIN_TONES))), "hair": int(rng.integers(len(HAIR_TONES))),
        "background": [top.tolist(), (top * rng.uniform(0.7, 0.9)).tolist()],
        "turn_speed": float(rng.uniform(0.25, 0.8) * rng.choice([-1, 1])), "turn_phase": float(rng.uniform(0, 6.28)),
        "sway": float(rng.uniform(0.02, 0.12)), "sway_freq": float(rng.uniform(0.5, 1.5)),
        "walk": float(rng.uniform(-0.25, 0.25)), "zoom0": float(rng.uniform(0.9, 1.15)),
        "zoom1": float(rng.uniform(0.9, 1.3)), "pan_x": float(rng.uniform(-0.3, 0.3)),
        "pan_y": float(rng.uniform(-0.1, 0.1)), "period": float(rng.uniform(0.09, 0.14)),
        "bob": float(rng.uniform(0.0, 0.03)),
    }


def _prepare_render_process() -> None:
    """glibc malloc settings for the render processes (in the calling process when workers=1):
    - keep freed 1 MB render buffers on the heap instead of mmap/munmap per array: that churn cost ~8 ms of system
      time per clip (page faults), a third of the render;
    - fill fresh allocations with a fixed byte (M_PERTURB): libx264/libavcodec read some uninitialised memory, so
      without this the same frames encoded after different work gave different bitstreams (measured: 15 of 40
      clips); with it, same seed → byte-identical mp4 files.
    A no-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-6, 0xA5)       # M_PERTURB
    except (OSError, AttributeError):
        pass


def _render_job(job: tuple) -> str:
    path, look, frames, height, width, fps = job
    write_video(path, render_clip(look, frames, height, width), fps=fps)
    return path


def _users(rng: np.random.Generator, n_users: int, heldout_fraction: float) -> tuple[pd.DataFrame, dict]:
    truth, rows = {}, []
    heldout = set(rng.permutation(n_users)[: int(round(heldout_fraction * n_users))].tolist())
    for u in range(n_users):
        uid = f"u{u:04d}"
        pref = {a: ATTRIBUTES[a][rng.integers(len(ATTRIBUTES[a]))] for a in ATTRIBUTES}
        second = [c for c in ATTRIBUTES["colour"] if c != pref["colour"]][rng.integers(len(ATTRIBUTES["colour"]) - 1)]
        weights = {a: float(rng.uniform(*WEIGHT_RANGES[a])) for a in ATTRIBUTES}
        truth[uid] = {**pref, "second_colour": second, "weights": weights}
        rows.append((uid, persona_text(pref, rng), "heldout" if u in heldout else "train"))
    return pd.DataFrame(rows, columns=["user_id", "persona", "split"]), truth


def utility(taste: dict, values: dict[str, np.ndarray]) -> np.ndarray:
    """The choice model: one user's noise-free utility (a `hidden_truth.json` entry) of N items given by their
    attribute values (equal-length arrays, any subset of ATTRIBUTES) → (N,). The offline slot check reuses it."""
    out = np.zeros(len(next(iter(values.values()))))
    for a, v in values.items():
        out += taste["weights"][a] * (v == taste[a])
    if "colour" in values:  # half the colour weight for the user's second colour
        out += 0.5 * taste["weights"]["colour"] * (values["colour"] == taste.get("second_colour"))
    return out


def utilities(truth: dict, clips: pd.DataFrame) -> np.ndarray:
    """Noise-free utility matrix (users in `truth` order × clips): what `hidden_truth.json` defines."""
    values = {a: clips[a].to_numpy() for a in ATTRIBUTES}
    return np.stack([utility(t, values) for t in truth.values()]) if truth else np.zeros((0, len(clips)))


def _interactions(rng: np.random.Generator, truth: dict, clips: pd.DataFrame, test_fraction: float) -> pd.DataFrame:
    util = utilities(truth, clips) + rng.normal(0, CHOICE["noise_sd"], (len(truth), len(clips)))
    # math.exp, not np.exp: numpy's SIMD exp may differ in the last bit with memory alignment (same seed must
    # give the same file).
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    rows, n_clips, t0 = [], len(clips), 1_700_000_000
    clip_ids = clips["clip_id"].to_numpy()
    for r, uid in enumerate(truth):
        e = np.array([math.exp(z) for z in (util[r] - util[r].max()) / CHOICE["exposure_temperature"]])
        p = CHOICE["exposure_uniform"] / n_clips + (1 - CHOICE["exposure_uniform"]) * e / e.sum()
        n = min(int(rng.integers(CHOICE["views"][0], CHOICE["views"][1] + 1)), n_clips)
        seen = rng.choice(n_clips, size=n, replace=False, p=p)
        n_test = max(1, int(round(test_fraction * n)))
        t = t0 + int(rng.integers(0, 86_400 * 30))
        for k, c in enumerate(seen):
            split = "test" if k >= n - n_test else "train"
            t += int(rng.integers(30, 600))
            rows.append((uid, clip_ids[c], "view", t, split))
            tt = t
            for event in ("click", "add_to_cart", "purchase"):
                a, b = CHOICE[event]
                if rng.random() >= sig(a + b * util[r, c]):
                    break
                tt += int(rng.integers(5, 120))
                rows.append((uid, clip_ids[c], event, tt, split))
            t = tt
    return pd.DataFrame(rows, columns=["user_id", "clip_id", "event", "timestamp", "split"])


def make_world(out: str | Path, clips: int = 1000, users: int = 300, size: tuple[int, int] = (64, 64),
               frames: int = 16, seed: int = 0, fps: int = 8, heldout_fraction: float = 0.15,
               test_fraction: float = 0.2, workers: int = 2, progress=None) -> dict:
    """Write the synthetic world to `out`; returns the world.json dict. `progress(done, total)` is optional."""
    if clips < 1 or users < 1:
        raise ValueError(f"need at least one clip and one user, got clips={clips}, users={users}")
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0])
    catalogue = products()
    order = rng.permutation(len(catalogue))
    rows = []
    for i in range(clips):
        prod = catalogue.iloc[order[i % len(catalogue)]].to_dict()
        rows.append({"clip_id": f"c{i:05d}", "path": f"clips/c{i:05d}.mp4", **prod})
    clip_frame = pd.DataFrame(rows)
    jobs = [(str(out / r["path"]), sample_look(r, seed, i), frames, size[0], size[1], fps) for i, r in enumerate(rows)]
    started = time.perf_counter()
    if workers > 1:
        with mp.get_context("fork").Pool(workers, initializer=_prepare_render_process) as pool:
            for done, _ in enumerate(pool.imap_unordered(_render_job, jobs, chunksize=8), 1):
                if progress:
                    progress(done, clips)
    else:
        _prepare_render_process()
        for done, job in enumerate(jobs, 1):
            _render_job(job)
            if progress:
                progress(done, clips)
    render_s = time.perf_counter() - started

    user_frame, truth = _users(np.random.default_rng([seed, 2]), users, heldout_fraction)
    inter = _interactions(np.random.default_rng([seed, 3]), truth, clip_frame, test_fraction)
    io.write_csv(out / "clips.csv", clip_frame)
    io.write_csv(out / "interactions.csv", inter)
    io.write_csv(out / "users.csv", user_frame)
    io.write_json(out / "hidden_truth.json", {
        "note": "synthetic ground truth; read only by evaluation, never by training",
        "utility": "sum_a w_a*[attr_a == pref_a] + 0.5*w_colour*[colour == second_colour] + N(0, noise_sd)",
        "choice_model": CHOICE, "users": truth})
    world = {
        "generator": f"data.synth v{VERSION}", "seed": seed, "clips": clips, "users": users,
        "products": int(min(clips, len(catalogue))), "height": size[0], "width": size[1], "frames": frames,
        "fps": fps, "heldout_fraction": heldout_fraction, "test_fraction": test_fraction,
        "attributes": ATTRIBUTES, "colour_rgb": COLOUR_RGB, "choice_model": CHOICE, "weight_ranges": WEIGHT_RANGES,
        "how": "numpy-rendered figure (head, body, arms, legs) wearing the product garment; it turns (width "
               "scaling + side light), sways and walks; camera zooms and pans over a panelled room; libx264 crf 18.",
        "counts": {"interactions": int(len(inter)), **inter["event"].value_counts().to_dict(),
                   "heldout_users": int((user_frame["split"] == "heldout").sum())},
    }
    io.write_json(out / "world.json", world)
    return {**world, "render_seconds": round(render_s, 2)}
