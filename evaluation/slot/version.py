"""One atomic switch for the slot's files: a run writes a new version folder, then `current` is re-pointed.

    OUT/.slot/<run id>/   slot.jsonl  slot.csv  slot_summary.json  [slot_check.json]  clips/   (one run, complete)
    OUT/current           symlink → .slot/<run id>   (replaced atomically: the switch)
    OUT/slot.jsonl …      symlinks → current/…       (the stable paths readers open)

A slot run killed at any moment leaves `current` on the previous complete run, so slot.jsonl, slot.csv and
slot_summary.json always belong together. Each version folder's lock file is held while its run writes; the next
run removes versions that are neither current nor held (killed runs, superseded runs).
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from generate.publish import OwnedFolder, locked

VERSIONS, CURRENT, LOCK = ".slot", "current", ".lock"
FILES = ("slot.jsonl", "slot.csv", "slot_summary.json", "slot_check.json", "clips")


class SlotVersion(OwnedFolder):
    """`with SlotVersion(out) as v:` write into v.folder, then `v.publish()`; an unpublished version is removed."""

    def __init__(self, out: str | Path):
        super().__init__(out, VERSIONS)
        self.out, self.name = self.root, self.run_id

    def publish(self) -> None:
        """Re-point OUT/current at this version (atomic), make the stable links, drop stale versions."""
        with locked(self.out / LOCK):
            self.keep = True
            (self.folder / LOCK).unlink(missing_ok=True)
            _symlink(self.out / CURRENT, Path(VERSIONS) / self.name)            # the switch
            for name in FILES:
                link = self.out / name
                if (self.folder / name).exists():
                    if not (link.is_symlink() and os.readlink(link) == f"{CURRENT}/{name}"):
                        _symlink(link, Path(CURRENT) / name)
                elif link.is_symlink():
                    link.unlink()                      # e.g. slot_check.json of an older synthetic-world run
            _tidy(self.out, keep=self.name)


def _symlink(link: Path, target: Path) -> None:
    """link → target, replacing whatever is at `link` in one rename (a reader never finds it missing)."""
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
    os.symlink(target, tmp)
    try:
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)                        # an OUT/clips folder from before version folders
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _tidy(out: Path, keep: str) -> None:
    versions = out / VERSIONS
    for folder in versions.iterdir():
        if folder.name == keep or not folder.is_dir():
            continue
        with locked(folder / LOCK, blocking=False) as free:
            if free:                                  # not being written: killed or superseded
                shutil.rmtree(folder, ignore_errors=True)
    for tmp in out.glob(".*.tmp"):
        if tmp.is_symlink():
            tmp.unlink(missing_ok=True)
