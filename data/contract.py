"""The dataset folder contract: load it (`load_dataset`) and validate it (`check_dataset`, in data.checks).

DATASET/clips.csv         clip_id, path (relative to DATASET), product_id, [attribute columns], [split]
DATASET/interactions.csv  user_id, clip_id, event (view|click|add_to_cart|purchase), timestamp, [split: train|test]
DATASET/users.csv         optional: user_id, persona, [split: train|heldout]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
CLIP_COLUMNS = ("clip_id", "path", "product_id")
INTERACTION_COLUMNS = ("user_id", "clip_id", "event", "timestamp")
USER_COLUMNS = ("user_id", "persona")
ID_COLUMNS = {"clip_id", "product_id", "user_id", "path", "persona", "event", "split"}
# Written per clip by `reelgan-data import` (data.catalogue): where it came from and how it was framed.
PROVENANCE_COLUMNS = ("source", "source_sha256", "start_s", "seconds", "fps", "frames", "fit", "rotation",
                      "source_size", "import_key", "clip_sha256")


class DatasetError(ValueError):
    """The dataset folder cannot be loaded; the message names the file, column or row and the fix."""


@dataclass
class Dataset:
    root: Path
    clips: pd.DataFrame          # + `file`: absolute path of the clip
    interactions: pd.DataFrame   # + `split` (train|test) and `weight` (EVENT_WEIGHTS of the event)
    users: pd.DataFrame | None   # + `split` (train|heldout) when users.csv exists

    @property
    def train_interactions(self) -> pd.DataFrame:
        return self.interactions[self.interactions["split"] == "train"]

    @property
    def heldout_users(self) -> set[str]:
        if self.users is None:
            return set()
        return set(self.users.loc[self.users["split"] == "heldout", "user_id"])


def read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV with every column as text (ids like '007' stay ids); raise DatasetError if unusable."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found. Fix: create it with columns {', '.join(required)}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable CSV ({e}). Fix: write a comma-separated file with a header row")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(frame.columns)}). "
                           f"Fix: add them; required columns are {', '.join(required)}")
    return frame


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Numbers (epoch seconds) or dates → float seconds; unparseable → NaN. Numbers never go through the date
    parser (which would read `-5` as the year -5)."""
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    text = numeric.isna() & (values.astype(str).str.strip() != "")
    if text.any():
        dates = pd.to_datetime(values[text], errors="coerce", utc=True, format="mixed")
        numeric.loc[text] = [d.timestamp() if pd.notna(d) else np.nan for d in dates]
    return numeric


def default_test_split(inter: pd.DataFrame) -> pd.Series:
    """No split column: per user, the held-out item is one *clip*, the last one the user engaged with (click or
    stronger) that they had not seen before, and every event of the user on that clip is test.

    "Last" is by the user's first event on the clip (timestamp, ties by row order). Holding out a clip rather than
    an event keeps the test clip out of the user's train history, so ranking can score it (a funnel's last event is
    usually a click on a clip already viewed, which would count as seen). Users whose engaged clips are all they
    ever touched keep everything in train when they have fewer than two distinct clips (nothing would be left to
    fit them on); users with no engagement have no test clip.
    """
    rows = inter.assign(_row=np.arange(len(inter)), _w=inter["event"].map(EVENT_WEIGHTS).fillna(0.0))
    first = rows.sort_values(["_ts", "_row"]).groupby(["user_id", "clip_id"], sort=False).agg(
        first_ts=("_ts", "first"), first_row=("_row", "first"), strength=("_w", "max")).reset_index()
    distinct = first.groupby("user_id")["clip_id"].transform("size")
    engaged = first[(first["strength"] >= EVENT_WEIGHTS["click"]) & (distinct >= 2)]
    last = engaged.sort_values(["user_id", "first_ts", "first_row"], na_position="first").groupby("user_id").tail(1)
    test_pairs = set(zip(last["user_id"], last["clip_id"]))
    is_test = [(u, c) in test_pairs for u, c in zip(inter["user_id"], inter["clip_id"])]
    return pd.Series(np.where(is_test, "test", "train"), index=inter.index)


def load_dataset(root: str | Path) -> Dataset:
    """Read the CSVs of a dataset folder; raises DatasetError for what makes it unloadable.

    Rows with unknown events or clips are kept here (check_dataset reports them); consumers filter with `valid`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder. Fix: pass a dataset folder (e.g. one made by `reelgan-data synth`)")
    clips = read_csv(root / "clips.csv", CLIP_COLUMNS)
    clips["file"] = [str((root / p).resolve()) if p else "" for p in clips["path"]]
    inter = read_csv(root / "interactions.csv", INTERACTION_COLUMNS)
    inter["_ts"] = parse_timestamps(inter["timestamp"])
    if "split" not in inter.columns or (inter["split"] == "").all():
        inter["split"] = default_test_split(inter)
    inter["weight"] = inter["event"].map(EVENT_WEIGHTS).astype(float)
    inter["valid"] = inter["weight"].notna() & inter["clip_id"].isin(set(clips["clip_id"])) & inter["split"].isin(
        ["train", "test"]) & (inter["user_id"] != "")
    users = None
    if (root / "users.csv").is_file():
        users = read_csv(root / "users.csv", ("user_id",))
        if "split" not in users.columns:
            users["split"] = "train"
        users["split"] = users["split"].replace("", "train")
    return Dataset(root=root, clips=clips, interactions=inter, users=users)


def attribute_columns(clips: pd.DataFrame) -> list[str]:
    """Columns of clips.csv beyond the contract's own and the import's provenance (category, colour, pattern in the
    synthetic world)."""
    return [c for c in clips.columns if c not in ID_COLUMNS and c not in PROVENANCE_COLUMNS and c != "file"]
