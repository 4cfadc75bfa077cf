"""Values that load but are probably wrong: odd timestamps and clip paths that leave the dataset folder.

Each is a warning (the dataset still loads) with the row and the fix, except an infinite timestamp when the split
depends on time order (no split column), which is fatal like an unparseable one.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

# 1e11 epoch seconds is the year 5138: a larger number is almost surely epoch milliseconds.
MILLISECONDS_ABOVE = 1e11
FUTURE_SLACK_S = 86_400  # clocks and time zones: a day ahead of now is still plausible
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _year(seconds: float) -> str:
    try:
        return str(pd.Timestamp(seconds, unit="s").year)
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        return "far beyond 2262"


def check_timestamps(report, inter_csv: str, inter: pd.DataFrame, has_split: bool, line) -> None:
    """Epoch milliseconds, non-ISO dates (day/month order is a guess), negative, infinite and future times."""
    raw = inter["timestamp"].astype(str).str.strip()
    numeric = pd.to_numeric(raw, errors="coerce")
    seconds = inter["_ts"]
    now = time.time()
    finite = np.isfinite(seconds)
    for idx in inter.index:
        value, t = raw.at[idx], seconds.at[idx]
        if pd.isna(t) or value == "":
            continue  # reported as unparseable by data.checks
        row = line(idx)
        if not finite.at[idx]:
            report.add(inter_csv, row, "timestamp", f"timestamp {value!r} is not a finite time",
                       "use epoch seconds or an ISO 8601 date", fatal=not has_split)
        elif pd.notna(numeric.at[idx]) and abs(t) > MILLISECONDS_ABOVE:
            report.add(inter_csv, row, "timestamp", f"timestamp {value} looks like epoch milliseconds (read as "
                       f"seconds it is the year {_year(t)})", "divide by 1000 (epoch seconds)", fatal=False)
        elif t < 0:
            report.add(inter_csv, row, "timestamp", f"timestamp {value!r} is before 1970 (negative epoch time)",
                       "check the clock or the unit of this column", fatal=False)
        elif t > now + FUTURE_SLACK_S:
            report.add(inter_csv, row, "timestamp", f"timestamp {value!r} is in the future (year {_year(t)})",
                       "check the clock or the unit of this column", fatal=False)
        if pd.isna(numeric.at[idx]) and not ISO_DATE.match(value):
            read = pd.Timestamp(t, unit="s", tz="UTC").isoformat() if finite.at[idx] else "?"
            report.add(inter_csv, row, "timestamp", f"date {value!r} is not ISO 8601; it was read as {read}, "
                       "a guess at the day/month order", "write ISO 8601 (2024-05-13T18:30:00Z) or epoch seconds",
                       fatal=False)


def check_paths(report, root: Path, clips_csv: str, clips: pd.DataFrame, line) -> None:
    """Absolute clip paths, and paths or symlinks that lead outside the dataset folder (not portable; a served
    slot would point outside the catalogue)."""
    inside = root.resolve()
    for idx, rel in clips["path"].items():
        if not rel:
            continue
        row = line(idx)
        if Path(rel).is_absolute():
            report.add(clips_csv, row, "path", f"absolute path {rel!r}: the dataset breaks when moved",
                       "copy the file under DATASET and give its path relative to DATASET", fatal=False)
            continue
        lexical = Path(os.path.normpath(inside / rel))
        if not lexical.is_relative_to(inside):
            report.add(clips_csv, row, "path", f"path {rel!r} leads outside the dataset folder",
                       "copy the file under DATASET and give its path relative to DATASET", fatal=False)
        elif not (inside / rel).resolve().is_relative_to(inside):
            report.add(clips_csv, row, "path", f"{rel!r} is a symlink (or under one) that leads outside the dataset "
                       f"folder, to {(inside / rel).resolve()}", "copy the file into DATASET instead of linking it",
                       fatal=False)
