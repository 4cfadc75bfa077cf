"""Run folders for one --outdir: every run writes its own new folder, and one atomic switch publishes it.

    OUTDIR/manifest.json                  the published state: every listed clip, every run (the switch)
    OUTDIR/runs/<run id>/<safe target>/   the clips of one published run (never rewritten)
    OUTDIR/.staging/<run id>/             a run still being written (its process holds .staging/<run id>/.lock)
    OUTDIR/.lock                          held while a run publishes: read manifest, merge, replace, tidy

A run writes only inside its staging folder. To publish it takes OUTDIR/.lock, renames the staging folder to
runs/<run id>, merges its rows into the manifest read *under the lock* (so concurrent runs are all listed) and
replaces manifest.json atomically. Readers follow the manifest, so they see the old state or the new one, never a
mix. A run killed at any point leaves the published state as it was.

Durability costs one pass per run, not two fsyncs per file: clips are written into the staging folder without
fsync (generate.writers), and `publish` first syncs the whole folder (`sync_tree`: each file, then each folder),
renames it, syncs runs/ (the rename) and writes the manifest (data.io: its file and OUTDIR). So a published run
is on disk before the manifest names it: files + folders + 3 fsyncs per run. Whoever publishes next removes what is left
over: staging folders whose owner is gone (their lock is free), run folders no listed clip points into any more
(superseded by a re-run of the same target and seed), and temp files of interrupted manifest writes.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from data.io import write_json
from generate.manifest import MANIFEST_NAME, load_manifest, merge_manifest
from generate.paths import UnsafePathError, ensure_inside

RUNS = "runs"
STAGING = ".staging"
LOCK = ".lock"


@contextmanager
def locked(path: Path, blocking: bool = True):
    """An exclusive flock on `path` (created); yields False instead of waiting when blocking=False and it is held.
    The kernel drops the lock when its process dies, so a killed run never blocks the next one. A symlink planted
    at `path` is refused (O_NOFOLLOW): the lock file is never created through it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if Path(path).is_symlink():
            raise UnsafePathError(f"refusing to open {path}: it is a symlink (planted?). Remove the link or choose "
                                  "another output folder.") from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class OwnedFolder:
    """A new folder ROOT/<parent>/<run id> that this process holds (its .lock) until the `with` block ends; removed
    on the way out unless `keep` was set (published). Tidying code treats a folder whose lock is free as left over
    by a dead run. Created under ROOT/.lock, so a tidier never sees it before its owner's lock."""

    def __init__(self, root: str | Path, parent: str):
        self.root = Path(root).resolve()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
        self.folder = self.root / parent / self.run_id
        self.keep = False
        self._owner = None

    def __enter__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.root / LOCK):
            make_inside(self.root, self.folder.parent)   # checked before it is made: a planted symlink is refused
            make_inside(self.root, self.folder)          # before anything is created outside ROOT
            self._owner = locked(self.folder / LOCK)
            self._owner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._owner.__exit__(None, None, None)
        if not self.keep and self.folder.exists():   # not published (an error): nothing of it stays behind
            shutil.rmtree(self.folder, ignore_errors=True)


class RunFolder(OwnedFolder):
    """One generation run's private folder; `publish(run, entries)` makes it part of OUTDIR's manifest."""

    def __init__(self, outdir: str | Path):
        super().__init__(outdir, STAGING)
        self.outdir, self.staging = self.root, self.folder
        self.final = self.outdir / RUNS / self.run_id
        self.synced = False

    def folder_name(self, safe: str) -> str:
        """The manifest's `folder` for a target: its path relative to OUTDIR once published."""
        return self.published_folder(self.run_id, safe)

    @staticmethod
    def published_folder(run_id: str, safe: str) -> str:
        """runs/<run id>/<safe target>: where a target's clips of run `run_id` sit once published (also for the
        ranks of a multi-device run, which write into rank 0's staging folder: generate.predict)."""
        return f"{RUNS}/{run_id}/{safe}"

    def sync(self) -> float:
        """The run's one sync pass over its staging folder (`sync_tree`), once every clip is written; returns its
        seconds (for the run's timings). `publish` runs it when the caller has not."""
        t0 = time.perf_counter()
        sync_tree(self.staging)
        self.synced = True
        return time.perf_counter() - t0

    def publish(self, run: dict, entries: list[dict]) -> dict:
        """Move the staged clips to runs/<run id> and switch manifest.json to include them; returns the manifest."""
        if not self.synced:
            self.sync()                            # every clip durable before the rename can publish it
        with locked(self.outdir / LOCK):
            old = load_manifest(self.outdir / MANIFEST_NAME)
            (self.staging / LOCK).unlink(missing_ok=True)
            make_inside(self.outdir, self.final.parent)            # nor a planted runs/ symlink
            ensure_inside(self.outdir, self.final)
            os.replace(self.staging, self.final)
            _fsync(self.final.parent)                               # the rename, before the manifest names it
            manifest = merge_manifest(old, {**run, "run_id": self.run_id}, entries)
            write_json(self.outdir / MANIFEST_NAME, manifest)       # the switch
            tidy(self.outdir, manifest)
        return manifest


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> int:
    """fsync every file under `folder` (the lock file aside: it carries no data), then every folder, deepest
    first, so the files and their names are on disk; returns the number of fsyncs. The files were written
    without fsync and the kernel has been writing them back meanwhile, so this one pass mostly waits on little."""
    count = 0
    folders = []
    for root, dirs, files in os.walk(folder):
        folders.append(Path(root))
        for name in files:
            if name != LOCK:
                _fsync(Path(root) / name)
                count += 1
    for path in reversed(folders):
        _fsync(path)
        count += 1
    return count


def make_inside(root: Path, folder: Path) -> Path:
    """Create `folder` (one level, its parent exists) only after checking it resolves inside `root`, and check
    again once made (a link planted in between); nothing is created outside `root`."""
    ensure_inside(root, folder)
    folder.mkdir(exist_ok=True)
    return ensure_inside(root, folder)


def tidy(outdir: Path, manifest: dict) -> None:
    """Remove leftovers (call with OUTDIR/.lock held): see the module docstring."""
    name = Path(MANIFEST_NAME)
    for tmp in outdir.glob(f".{name.stem}.*.tmp{name.suffix}"):   # data.io's temp-file pattern
        tmp.unlink(missing_ok=True)                  # only the lock holder writes the manifest
    staging = outdir / STAGING
    for folder in staging.iterdir() if staging.is_dir() else ():
        with locked(folder / LOCK, blocking=False) as free:
            if free:                                 # its run is gone (killed): nobody will publish it
                shutil.rmtree(folder, ignore_errors=True)
    listed = {Path(e["folder"]).parts[1] for e in manifest.get("clips", [])
              if Path(e["folder"]).parts[:1] == (RUNS,) and len(Path(e["folder"]).parts) > 2}
    runs = outdir / RUNS
    for folder in runs.iterdir() if runs.is_dir() else ():
        if folder.name not in listed:                # superseded, or renamed by a run killed before its switch
            shutil.rmtree(folder, ignore_errors=True)
