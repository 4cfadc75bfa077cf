"""Validate a dataset folder: every problem with its file, row (CSV line, header = line 1), field and fix.

Fatal problems make the dataset unusable (`reelgan-data check` exits 1): a missing file or column, duplicate ids,
clip paths that do not exist, interactions naming unknown clips or events, bad split values, no usable clips.
Clips that exist but do not decode are reported and skipped in training (not fatal while others decode).
Warnings also cover values that load but are probably wrong (data.checks_suspicious: epoch milliseconds, non-ISO
dates, negative/infinite/future times, absolute paths, paths and symlinks leading outside DATASET) and clips with
rotation metadata.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data.contract import (CLIP_COLUMNS, EVENT_WEIGHTS, INTERACTION_COLUMNS, DatasetError, load_dataset,
                           parse_timestamps, read_csv)
from data.checks_suspicious import check_paths, check_timestamps
from data.video import SUFFIXES, VideoError, decode_frames, probe


@dataclass
class Problem:
    file: str
    row: int | None      # CSV line (header = 1) or None for the whole file
    field: str | None
    message: str
    fix: str
    fatal: bool = True


@dataclass
class CheckReport:
    root: Path
    problems: list[Problem] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    @property
    def usable(self) -> bool:
        return not self.fatal

    def add(self, *args, **kw) -> None:
        self.problems.append(Problem(*args, **kw))


def _line(index) -> int:
    return int(index) + 2


def _each(report: CheckReport, file: str, mask: pd.Series, field_name: str, message, fix: str, fatal=True):
    for idx in mask[mask].index:
        report.add(file, _line(idx), field_name, message(idx) if callable(message) else message, fix, fatal)


def check_dataset(root: str | Path, decode: bool = True, progress=None) -> CheckReport:
    """Run every check; `progress(done, total)` is called while decoding clips."""
    root = Path(root)
    report = CheckReport(root)
    try:
        ds = load_dataset(root)
    except DatasetError as e:
        text = str(e)
        file, _, rest = text.partition(": ")
        message, _, fix = rest.partition(" Fix: ")
        report.add(file, None, None, message.rstrip("."), fix or "see docs/data.md")
        # Still look at the other CSV so one run lists every missing piece.
        for name, cols in (("clips.csv", CLIP_COLUMNS), ("interactions.csv", INTERACTION_COLUMNS)):
            if root.is_dir() and str(root / name) != file:
                try:
                    read_csv(root / name, cols)
                except DatasetError as e2:
                    f2, _, r2 = str(e2).partition(": ")
                    m2, _, x2 = r2.partition(" Fix: ")
                    report.add(f2, None, None, m2.rstrip("."), x2)
        return report
    clips_csv, inter_csv = str(root / "clips.csv"), str(root / "interactions.csv")
    clips, inter = ds.clips, ds.interactions

    # clips.csv
    _each(report, clips_csv, clips["clip_id"] == "", "clip_id", "empty clip_id", "give every row a unique clip_id")
    dup = clips["clip_id"].duplicated(keep="first") & (clips["clip_id"] != "")
    _each(report, clips_csv, dup, "clip_id", lambda i: f"duplicate clip_id {clips.at[i, 'clip_id']!r}",
          "make clip ids unique (one row per clip)")
    _each(report, clips_csv, clips["path"] == "", "path", "empty path", "give the clip file, relative to DATASET")
    missing = (clips["path"] != "") & ~clips["file"].map(lambda f: Path(f).is_file())
    _each(report, clips_csv, missing, "path", lambda i: f"clip file {clips.at[i, 'path']!r} does not exist",
          "fix the path (relative to DATASET) or add the file")
    odd = (clips["path"] != "") & ~clips["path"].str.lower().str.endswith(SUFFIXES)
    _each(report, clips_csv, odd, "path", lambda i: f"unexpected suffix in {clips.at[i, 'path']!r}",
          f"use one of {', '.join(SUFFIXES)}", fatal=False)
    check_paths(report, root, clips_csv, clips, _line)
    _each(report, clips_csv, clips["product_id"] == "", "product_id", "empty product_id",
          "fill product_id (clips of one product share it)", fatal=False)

    # interactions.csv
    known = set(clips["clip_id"])
    _each(report, inter_csv, inter["user_id"] == "", "user_id", "empty user_id", "fill user_id or drop the row")
    _each(report, inter_csv, ~inter["clip_id"].isin(known), "clip_id",
          lambda i: f"clip_id {inter.at[i, 'clip_id']!r} is not in clips.csv",
          "add the clip to clips.csv or drop the row")
    _each(report, inter_csv, ~inter["event"].isin(EVENT_WEIGHTS), "event",
          lambda i: f"unknown event {inter.at[i, 'event']!r}", f"use one of {', '.join(EVENT_WEIGHTS)}")
    _each(report, inter_csv, ~inter["split"].isin(["train", "test"]), "split",
          lambda i: f"split {inter.at[i, 'split']!r} is not train or test", "use train or test (or drop the column)")
    has_split = "split" in pd.read_csv(root / "interactions.csv", nrows=0).columns
    _each(report, inter_csv, parse_timestamps(inter["timestamp"]).isna(), "timestamp",
          lambda i: f"unparseable timestamp {inter.at[i, 'timestamp']!r}",
          "use epoch seconds or an ISO date", fatal=not has_split)
    check_timestamps(report, inter_csv, inter, has_split, _line)
    dup_rows = inter.duplicated(subset=list(INTERACTION_COLUMNS), keep="first")
    _each(report, inter_csv, dup_rows, None, "exact duplicate of an earlier row", "drop duplicate rows", fatal=False)
    if not (inter["valid"] & (inter["split"] == "train")).any():
        report.add(inter_csv, None, "split", "no valid train interactions", "add rows with split=train")

    # users.csv
    if ds.users is not None:
        users_csv, users = str(root / "users.csv"), ds.users
        _each(report, users_csv, users["user_id"].duplicated(keep="first"), "user_id",
              lambda i: f"duplicate user_id {users.at[i, 'user_id']!r}", "one row per user")
        _each(report, users_csv, ~users["split"].isin(["train", "heldout"]), "split",
              lambda i: f"split {users.at[i, 'split']!r} is not train or heldout", "use train or heldout")
        if "persona" not in users.columns:
            report.add(users_csv, None, "persona", "no persona column: the persona map will be skipped",
                       "add a persona column (free text) to enable cold-start conditioning", fatal=False)
        silent = ~users["user_id"].isin(set(inter["user_id"]))
        _each(report, users_csv, silent, "user_id", lambda i: f"user {users.at[i, 'user_id']!r} has no interactions",
              "fine for cold-start personas; they get no MF vector", fatal=False)

    report.stats = {"clips": len(clips), "interactions": len(inter), "users": int(inter["user_id"].nunique()),
                    "train_interactions": int((inter["split"] == "train").sum()),
                    "test_interactions": int((inter["split"] == "test").sum())}
    _check_embeddings(report, ds)
    present = ~missing & (clips["path"] != "")
    if decode:
        _decode_all(report, clips, clips_csv, present, progress)
    elif not present.any():
        report.add(clips_csv, None, "path", "no clip file exists: the dataset has no usable clips",
                   "add the clip files under DATASET (paths in clips.csv are relative to it)")
    return report


def _check_embeddings(report: CheckReport, ds) -> None:
    """If `embed` has run: the file must load (hash intact), and users who may condition should have vectors."""
    path = ds.root / "embeddings" / "preferences.safetensors"
    if not path.is_file():
        return
    from data.preferences import PreferenceEmbeddings

    try:
        emb = PreferenceEmbeddings.load(path)
    except (ValueError, OSError, KeyError) as e:
        report.add(str(path), None, None, f"cannot load: {e}", "rerun `reelgan-data embed DATASET`", fatal=False)
        return
    broken = emb.nonfinite_users()
    if broken:
        report.add(str(path), None, "user_vectors", f"{len(broken)} user vector(s) hold NaN or Inf (e.g. "
                   f"{', '.join(repr(u) for u in broken[:3])}); training would fail at its first step",
                   "refit with `reelgan-data embed DATASET`, or fix those rows and re-import with --import")
    users = set(ds.train_interactions["user_id"]) - ds.heldout_users
    lacking = sorted(users - set(emb.user_ids))
    if lacking:
        report.add(str(path), None, "user_id", f"{len(lacking)} train user(s) have no vector (e.g. {lacking[0]!r}); "
                   "their interactions cannot condition the GAN", "refit with `reelgan-data embed` or import "
                   "vectors for them", fatal=False)
    report.stats["embedding_dim"] = emb.dim


def _decode_all(report: CheckReport, clips: pd.DataFrame, clips_csv: str, present: pd.Series, progress) -> None:
    ok, total = 0, int(present.sum())
    for done, idx in enumerate(present[present].index, 1):
        path = clips.at[idx, "file"]
        try:
            frames, n, error = decode_frames(path, size=(16, 16), keep=set())
            ok += 1
            rotation = probe(path)["rotation"]
            if rotation:
                report.add(clips_csv, _line(idx), "path", f"{path}: rotation metadata ({rotation}° counter-clockwise"
                           "; phone footage): decoding turns it upright", "nothing needed; `reelgan-data import` "
                           "writes upright copies that any player shows the same way", fatal=False)
            if error:
                report.add(clips_csv, _line(idx), "path", f"{path}: stream ends in a decode error after {n} frames "
                           f"({error})", "re-encode the file; training uses the frames that decode", fatal=False)
        except VideoError as e:
            report.add(clips_csv, _line(idx), "path", f"{path}: {e.problem}", e.fix, fatal=False)
        if progress:
            progress(done, total)
    report.stats["decodable_clips"] = ok
    if ok == 0:
        report.add(clips_csv, None, "path", "no clip decodes: the dataset has no usable clips",
                   "fix the files listed above (see docs/data.md for supported formats)")
