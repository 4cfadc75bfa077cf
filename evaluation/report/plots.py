"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import functools
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

_DPI = 96
# Labels come from run files (user ids, attribute values): plain text, never mathtext or TeX ("$\\frac{a$").
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def _plain_text(fn):
    """Build the figure with PLAIN_TEXT in force (Text objects read it when they are made)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(PLAIN_TEXT):
            return fn(*args, **kwargs)
    return wrapper


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curve_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Columns of a Lightning CSV log worth plotting: (losses, fvd-like metrics). Only numeric columns with data."""
    numeric = [c for c in frame.columns if c not in ("step", "epoch") and pd.api.types.is_numeric_dtype(frame[c])
               and frame[c].notna().any()]
    losses = [c for c in numeric if "loss" in c.lower()]
    fvds = [c for c in numeric if "fvd" in c.lower() or "fid" in c.lower()]
    return losses, fvds


@_plain_text
def training_curves(frame: pd.DataFrame, title: str) -> bytes | None:
    """Losses (left) and fvd[...] (right) against the step; None when the log has neither."""
    losses, fvds = curve_columns(frame)
    if not losses and not fvds or "step" not in frame.columns:
        return None
    panels = [p for p in (("losses", losses), ("metrics over training", fvds)) if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, cols) in zip(axes[0], panels):
        for col in cols:
            part = frame[["step", col]].dropna()
            y = part[col].to_numpy(float)
            ax.plot(part["step"], y, label=col, lw=1.0, alpha=0.35 if len(y) > 20 else 1.0)
            if len(y) > 20:  # a moving average makes a noisy GAN loss readable
                k = max(5, len(y) // 25)
                ax.plot(part["step"], pd.Series(y).rolling(k, min_periods=1).mean(), lw=1.8,
                        color=ax.lines[-1].get_color())
            if name != "losses":
                ax.plot(part["step"], y, "o", ms=3, color=ax.lines[-1].get_color())
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


@_plain_text
def grouped_bars(groups: dict[str, dict[str, float]], title: str, ylabel: str) -> bytes:
    """{group: {series: value}} → grouped bar chart (e.g. attribute → model / shuffled / random hit rate)."""
    names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(names) + 2), 3.4))
    for i, s in enumerate(series):
        vals = [groups[n].get(s, np.nan) for n in names]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=s)
        for b, v in zip(bars, vals):
            if not math.isnan(v):
                ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


@_plain_text
def preference_heatmap(rows: list[str], cols: list[str], matrix: np.ndarray, title: str,
                       marks: list[int | None] | None = None) -> bytes:
    """rows × cols probabilities (e.g. users × predicted colour of their clips); `marks[i]` boxes row i's truth."""
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(cols) + 2.5), max(2.2, 0.42 * len(rows) + 1.2)))
    im = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1e-9, float(np.nanmax(matrix))))
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, j in enumerate(marks or []):
        if j is not None:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=10)
    return _png(fig)
