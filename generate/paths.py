"""Safe output paths: a user id, persona text or file name becomes one folder name that stays inside --outdir.

User ids come from shops' CSVs and campaign files, so they may hold anything: "../../x", "a/b", "\\x00", "CON",
emoji, 5,000 characters. `safe_name` maps any text to a portable name of [A-Za-z0-9._-]; whenever it had to change
the text it appends a short hash of the original, so two different ids never share a folder ("a/b" vs "a_b").
`child_dir` then resolves the folder and refuses anything that does not sit strictly inside the root (symlinks
included): the name rules are the first wall, the resolved-path check the second.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

MAX_NAME = 80  # well under every filesystem's 255-byte limit, leaves room for "-seed0012.webm"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Names Windows refuses whatever the extension; harmless elsewhere, but the folders get copied around.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


class UnsafePathError(ValueError):
    """A path that would leave the output folder."""


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def safe_name(text: str, max_len: int = MAX_NAME) -> str:
    """Any text → a folder/file stem of [A-Za-z0-9._-], never empty, never starting with '.', never reserved.

    Unchanged when the text is already safe (so `u0042` stays `u0042`); otherwise `<cleaned>-<hash10>`.
    """
    if not isinstance(text, str):
        raise TypeError(f"safe_name expects a str, got {type(text).__name__}")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", ascii_text).strip("._-")  # no leading dot: no hidden files, no '.' or '..'
    cleaned = re.sub(r"_+", "_", cleaned)
    changed = not cleaned or cleaned != text or cleaned.split(".")[0].lower() in _RESERVED or len(cleaned) > max_len
    if not changed:
        return cleaned
    stem = cleaned[: max_len - 11].rstrip("._-") or "id"
    return f"{stem}-{_short_hash(text)}"


def child_dir(root: str | Path, name: str, create: bool = True) -> Path:
    """root/<safe_name(name)>, checked to resolve strictly inside root; created when `create`."""
    root_resolved = Path(root).resolve()
    path = (root_resolved / safe_name(name)).resolve()
    ensure_inside(root_resolved, path)
    if create:
        path.mkdir(parents=True, exist_ok=True)
        ensure_inside(root_resolved, path.resolve())  # re-check: a symlink may have been planted meanwhile
    return path


def ensure_inside(root: str | Path, path: str | Path) -> Path:
    """Raise UnsafePathError unless `path` resolves strictly inside `root`; return the resolved path."""
    root_resolved, resolved = Path(root).resolve(), Path(path).resolve()
    if resolved == root_resolved or root_resolved not in resolved.parents:
        raise UnsafePathError(
            f"refusing to write {resolved}: it is not inside the output folder {root_resolved} "
            "(a symlink or an id with path characters?). Remove the link or choose another --outdir."
        )
    return resolved


def recorded_path(path: str | Path | None, base: str | Path) -> str | None:
    """How a JSON output records a file it used, without the user's machine in it: relative to `base` (the run
    folder) when the file is inside it, as given when it was given as a relative path, and otherwise its file
    name only (the sha256 recorded beside it says which file it was)."""
    if path is None or str(path) == "":
        return None
    path = Path(path)
    try:
        return path.resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() and ".." not in path.parts else path.name
