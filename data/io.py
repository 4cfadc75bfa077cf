"""File plumbing for every package: atomic writes, file sha256, strict JSON, one rich progress helper.

Atomic: every write goes to a temp file in the target's folder, is fsync'ed, gets the mode a plain `open()` would
give (0666 & ~umask, not mkstemp's 0600), then is `os.replace`d over the target (atomic on POSIX within one
filesystem), and the folder is fsync'ed. A writer killed mid-way leaves the old file untouched and at worst a stray
`.<name>.*.tmp<suffix>`. Readers (the slot, the report, a serving job) never see half a file.

Strict JSON: `allow_nan=False` (NaN and Infinity are not JSON; a writer that has one must say what it means), with
numpy/torch scalars and arrays and paths turned into plain values. Serialised before any file is touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask swaps it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path beside `path` (same suffix, so format-by-suffix writers work) for the caller to write.

    On success the temp file is fsync'ed, given mode 0666 & ~umask and renamed over `path`; on error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, chunks: bytes | Iterable[bytes]) -> Path:
    """Write bytes (or an iterable of chunks, for large outputs) to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for chunk in [chunks] if isinstance(chunks, (bytes, bytearray)) else chunks:
            f.write(chunk)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _jsonable(x):
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:  # numpy / torch scalars
        return x.item()
    if hasattr(x, "tolist"):  # numpy arrays, tensors
        return x.tolist()
    raise TypeError(f"value of type {type(x).__name__} is not JSON-serialisable")


def dumps(obj, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON text: NaN/Infinity refused (ValueError), numpy/torch values and paths made plain."""
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False, default=_jsonable)


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    """Atomically write `obj` as strict JSON (+ newline). Serialises first: a bad value leaves no file behind."""
    return write_text(path, dumps(obj, indent=indent) + "\n")


def write_csv(path: str | os.PathLike, frame) -> Path:
    """A pandas DataFrame → CSV without the index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def progress(enabled: bool = True, transient: bool = True, console=None, unit: str | None = None,
             remaining: bool = False, fields: Iterable[str] = ()):
    """The one rich progress bar: `[bold]description  bar  n/total [unit]  elapsed [remaining] [fields...]`."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    columns.append(TimeElapsedColumn())
    if remaining:
        columns.append(TimeRemainingColumn())
    columns += [TextColumn(f"{{task.fields[{name}]}}") for name in fields]
    kw = {} if console is None else {"console": console}
    return Progress(*columns, disable=not enabled, transient=transient, **kw)


def track(items: Iterable, label: str, enabled: bool = True, total: int | None = None) -> Iterator:
    """Iterate `items` under a transient progress bar (none when not `enabled`)."""
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with progress(True, transient=True) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)
