"""`reelgan-data import`: a folder of a shop's own videos → a dataset folder (clips/ + clips.csv).

Every video under SOURCE_DIR is probed (PyAV), turned upright (rotation metadata), resampled to `fps` by
presentation time (variable frame rates and 30/60 fps phone footage alike), cut into clips of `clip_seconds`
(at most `max_clips` per video), framed to the target size (`fit`: crop | pad | resize, see data.framing) and
transcoded to one canonical mp4 (libx264 yuv420p, no audio). clips.csv gets the product attributes joined from
products.csv plus, per clip, where it came from and how it was framed.

Re-running is safe: a clip whose source bytes and settings are unchanged (its `import_key`) and whose file still
has the sha256 clips.csv recorded is reused, not re-encoded; attributes are re-joined from products.csv every run.
Every file that could not be used is named with the reason, in the result and in DATASET/import_report.json.

Interrupted runs: a clip file is named by its import_key (`clips/<stem>-<k>-<key>.mp4`), so a run with other
settings never overwrites a file the current clips.csv lists. clips.csv is replaced last, in one atomic rename;
then the clip files it no longer lists (and temp files of killed writes) are removed. A run killed at any moment
leaves the previous clips.csv and every clip it lists as they were.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
import pandas as pd

from data.contract import PROVENANCE_COLUMNS, DatasetError, read_csv
from data.io import file_sha256, write_csv, write_json
from data.framing import FITS, frame_video
from data.video import SUFFIXES, VideoError, _open, _to_rgb, cover_size, probe, write_video

VIDEO_SUFFIXES = tuple(sorted(set(SUFFIXES) | {".m4v"}))
RESERVED = {"clip_id", "path", *PROVENANCE_COLUMNS}
FORMAT_VERSION = 1  # bump when the transcode changes, so re-runs re-encode
UNDECODABLE = "re-encode it (e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`) or remove it from SOURCE_DIR"


@dataclass(frozen=True)
class ImportSettings:
    size: tuple[int, int] = (256, 256)   # (H, W) of every written clip
    fit: str = "crop"                    # crop | pad | resize (data.framing)
    fps: int = 8                         # frame rate of the written clips (sources are resampled by time)
    clip_seconds: float = 4.0            # length of one clip; longer videos are cut into several
    max_clips: int = 3                   # at most this many clips per source video
    min_frames: int = 8                  # a clip needs at least this many frames (at `fps`)

    def __post_init__(self):
        if self.fit not in FITS:
            raise ValueError(f"--fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if min(self.size) < 2 or self.fps < 1 or self.clip_seconds <= 0 or self.max_clips < 1 or self.min_frames < 1:
            raise ValueError("size must be at least 2x2 and fps, clip-seconds, max-clips-per-video and min-frames "
                             "positive")
        if self.clip_seconds * self.fps < self.min_frames:
            raise ValueError(f"--clip-seconds {self.clip_seconds} at {self.fps} fps gives fewer than the "
                             f"{self.min_frames} frames a clip needs. Fix: raise --clip-seconds or --fps")

    def key(self, source_sha256: str, start: int) -> str:
        text = json.dumps([FORMAT_VERSION, source_sha256, start, asdict(self)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Skipped:
    file: str
    reason: str
    fix: str


@dataclass
class ImportResult:
    dataset: Path
    rows: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    written: int = 0
    reused: int = 0
    sources: int = 0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "clip"


def clip_stems(relpaths: list[str]) -> dict[str, str]:
    """relative source path → a unique, filesystem-safe stem for its clip ids (`shoes/red boot.mov` → shoes_red_boot)."""
    base = {r: _slug(str(Path(r).with_suffix(""))) for r in relpaths}
    counts = pd.Series(list(base.values())).value_counts()
    out = {}
    for r, s in base.items():
        if counts[s] > 1:  # same stem, different suffix or punctuation: make it unique and still readable
            s = f"{s}_{Path(r).suffix.lstrip('.').lower()}_{hashlib.sha256(r.encode()).hexdigest()[:6]}"
        out[r] = s
    return out


def read_products(path: Path, source_dir: Path) -> tuple[dict[str, dict], list[str], list[Skipped]]:
    """products.csv → ({relative file: {product_id, attributes...}}, attribute names, rows that cannot be used)."""
    table = read_csv(path, ("file", "product_id"))
    clash = sorted(RESERVED & set(table.columns))
    if clash:
        raise DatasetError(f"{path}: column(s) {', '.join(clash)} are written by the import itself. Fix: rename or "
                           "drop them")
    attributes = [c for c in table.columns if c not in ("file", "product_id")]
    products, bad = {}, []
    for i, row in table.iterrows():
        where = f"{path} line {int(i) + 2}"
        rel = row["file"].strip()
        if not rel:
            bad.append(Skipped(where, "empty `file`", "give the video's path relative to SOURCE_DIR"))
            continue
        resolved = (source_dir / rel).resolve()
        if Path(rel).is_absolute() or not resolved.is_relative_to(source_dir.resolve()):
            bad.append(Skipped(where, f"`file` {rel!r} is not inside SOURCE_DIR",
                               "give paths relative to SOURCE_DIR, without `..`"))
            continue
        rel = resolved.relative_to(source_dir.resolve()).as_posix()
        if rel in products:
            bad.append(Skipped(where, f"second row for {rel!r}; the first one is used", "one row per file"))
            continue
        if not row["product_id"].strip():
            bad.append(Skipped(str(source_dir / rel), f"empty product_id ({where})", "fill product_id"))
            products[rel] = None
            continue
        products[rel] = {"product_id": row["product_id"].strip(), **{a: row[a] for a in attributes}}
    return products, attributes, bad


def scan_sources(source_dir: Path, exclude: set[Path]) -> list[str]:
    """Every non-hidden file under SOURCE_DIR (relative posix paths, sorted), except `exclude` (and what is in it)."""
    out = []
    for p in sorted(source_dir.rglob("*")):
        rel = p.relative_to(source_dir)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        r = p.resolve()
        if any(r == e or r.is_relative_to(e) for e in exclude):
            continue
        out.append(rel.as_posix())
    return out


def decode_segments(path: Path, settings: ImportSettings) -> tuple[list[np.ndarray], dict]:
    """Decode `path` once → upright uint8 (T, h, w, 3) arrays, one per clip, at `settings.fps` and a size that covers
    the target (framing happens after), plus the probe facts. Raises VideoError when no clip can be made."""
    facts = probe(path)
    if facts["width"] < 1 or facts["height"] < 1:  # FFmpeg refused the declared frame size (e.g. 20000x20000)
        raise VideoError(path, f"undecodable: probes as {facts['width']}x{facts['height']} (its header declares a "
                         "frame size FFmpeg will not decode)", UNDECODABLE)
    turns = facts["rotation"] // 90
    shown = (facts["width"], facts["height"]) if turns % 2 else (facts["height"], facts["width"])
    decode_size = cover_size(*shown, *settings.size)
    per_clip = max(1, int(round(settings.clip_seconds * settings.fps)))
    targets = np.arange(per_clip * settings.max_clips) / settings.fps  # seconds from the first frame
    chosen: list[np.ndarray] = []
    container, stream = _open(path)
    src_step = 1.0 / (facts["fps"] or settings.fps)
    first = last = None
    held = held_rgb = None
    error = None
    try:
        for index, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else index * src_step
            first = t if first is None else first
            t -= first
            # Targets before this frame's time show the previous frame (the one on screen at that instant).
            while held is not None and len(chosen) < len(targets) and targets[len(chosen)] < t - 1e-6:
                held_rgb = held_rgb if held_rgb is not None else _to_rgb(held, decode_size)
                chosen.append(held_rgb)
            if len(chosen) == len(targets):
                break
            held, held_rgb, last = frame, None, t
    except (av.error.FFmpegError, ValueError) as e:
        error = f"{type(e).__name__}: {e}"
    finally:
        # The last frame stays on screen for one source frame interval.
        while held is not None and len(chosen) < len(targets) and targets[len(chosen)] <= last + src_step - 1e-6:
            held_rgb = held_rgb if held_rgb is not None else _to_rgb(held, decode_size)
            chosen.append(held_rgb)
        container.close()
    clips = [np.stack(chosen[i:i + per_clip]) for i in range(0, len(chosen), per_clip)]
    # A trailing piece shorter than half a clip repeats the previous clip's scene: drop it.
    clips = [c for j, c in enumerate(clips) if len(c) >= settings.min_frames and (j == 0 or 2 * len(c) >= per_clip)]
    if not chosen and error:
        raise VideoError(path, f"undecodable: no frame decodes ({error})", UNDECODABLE)
    if not clips:
        seconds = len(chosen) / settings.fps
        why = f"too short: {seconds:.2f} s gives {len(chosen)} frames at {settings.fps} fps, fewer than " \
              f"{settings.min_frames}" + (f" (decoding stopped: {error})" if error else "")
        raise VideoError(path, why, "use a longer video, or lower --min-frames / raise --fps")
    facts["decode_error"] = error
    facts["shown_size"] = f"{shown[0]}x{shown[1]}"
    return clips, facts


def _previous_rows(clips_csv: Path) -> dict[str, dict]:
    if not clips_csv.is_file():
        return {}
    table = read_csv(clips_csv, ("clip_id", "path"))
    if "import_key" not in table.columns:
        raise DatasetError(f"{clips_csv}: exists and was not written by `reelgan-data import`. Fix: import into a new "
                           "dataset folder, or move this clips.csv away")
    return {r["clip_id"]: r for r in table.to_dict("records")}


def import_catalogue(source_dir: str | Path, dataset: str | Path, products: str | Path | None = None,
                     settings: ImportSettings = ImportSettings(), progress=None) -> ImportResult:
    """Import every video under `source_dir` into `dataset` (see the module docstring). `progress(done, total, file)`.

    Raises DatasetError when nothing can be done (no source folder, a bad products.csv, a foreign clips.csv).
    """
    source_dir, dataset = Path(source_dir), Path(dataset)
    if not source_dir.is_dir():
        raise DatasetError(f"{source_dir}: not a folder. Fix: pass the folder that holds the shop's videos")
    result = ImportResult(dataset)
    exclude = {dataset.resolve()}
    attributes: list[str] = []
    table = None
    if products is not None:
        products = Path(products)
        table, attributes, bad = read_products(products, source_dir)
        result.skipped += bad
        exclude.add(products.resolve())
    clips_csv = dataset / "clips.csv"
    previous = _previous_rows(clips_csv)
    found = scan_sources(source_dir, exclude)
    listed = found if table is None else sorted(set(found) | {r for r in table if r is not None})
    stems = clip_stems(listed)
    for done, rel in enumerate(listed, 1):
        if progress:
            progress(done - 1, len(listed), rel)
        _import_one(source_dir, rel, stems[rel], table, attributes, settings, previous, result)
    if progress:
        progress(len(listed), len(listed), "")
    if not result.rows:
        raise DatasetError(f"{source_dir}: no usable video ({len(result.skipped)} file(s) skipped: "
                           + "; ".join(f"{Path(s.file).name}: {s.reason}" for s in result.skipped[:5])
                           + "). Fix: see the reasons; supported: " + ", ".join(VIDEO_SUFFIXES))
    columns = ["clip_id", "path", "product_id", *attributes, *PROVENANCE_COLUMNS]
    write_csv(clips_csv, pd.DataFrame(result.rows, columns=columns))  # the switch: the new clips are the dataset
    _remove_unlisted(dataset / "clips", {r["path"] for r in result.rows})
    here = os.path.abspath(dataset)  # the report's paths are relative to the dataset: no absolute path of this machine
    rel = lambda p: os.path.relpath(os.path.abspath(p), here)  # noqa: E731 (never resolved: a link stays a link)
    write_json(dataset / "import_report.json", {
        "made_by": "reelgan-data import", "paths": "relative to this dataset folder", "source_dir": rel(source_dir),
        "products": rel(products) if products is not None else None,
        "settings": asdict(settings), "clips": len(result.rows), "sources_used": result.sources,
        "written": result.written, "reused": result.reused,
        "skipped": [{**asdict(s), "file": rel(s.file)} for s in result.skipped]})
    return result


def _import_one(source_dir: Path, rel: str, stem: str, table, attributes, settings, previous, result) -> None:
    path = source_dir / rel
    if table is not None and rel not in table:
        why = "not a video file" if path.suffix.lower() not in VIDEO_SUFFIXES else "a video not listed in products.csv"
        result.skipped.append(Skipped(str(path), why, "add a row (file, product_id, attributes) to products.csv"))
        return
    product = table[rel] if table is not None else {"product_id": stem}
    if product is None:
        return  # already reported by read_products
    if not path.is_file():
        result.skipped.append(Skipped(str(path), "listed in products.csv but not found",
                                      "fix the `file` column (relative to SOURCE_DIR) or add the file"))
        return
    if not path.resolve().is_relative_to(source_dir.resolve()):  # --products rows are checked in read_products
        result.skipped.append(Skipped(str(path), "a symlink that leads outside SOURCE_DIR",
                                      "copy the video into SOURCE_DIR, or remove the link"))
        return
    if table is None and path.suffix.lower() not in VIDEO_SUFFIXES:
        result.skipped.append(Skipped(str(path), f"not a video file (suffix {path.suffix or 'none'!r})",
                                      f"supported: {', '.join(VIDEO_SUFFIXES)}"))
        return
    sha = file_sha256(path)
    reused = _reuse(rel, stem, sha, settings, previous, result.dataset)
    if reused:
        rows = reused
        result.reused += len(rows)
    else:
        try:
            clips, facts = decode_segments(path, settings)
        except VideoError as e:
            result.skipped.append(Skipped(str(path), e.problem, e.fix))
            return
        except (av.error.FFmpegError, ArithmeticError, ValueError, MemoryError) as e:  # one bad file never ends it
            result.skipped.append(Skipped(str(path), f"undecodable ({type(e).__name__}: {e})", UNDECODABLE))
            return
        rows = []
        per_clip = max(1, int(round(settings.clip_seconds * settings.fps)))
        for k, frames in enumerate(clips):
            clip_id, key = f"{stem}-{k:02d}", settings.key(sha, k)
            out = f"clips/{clip_id}-{key}.mp4"
            write_video(result.dataset / out, frame_video(frames, settings.size, settings.fit), fps=settings.fps)
            rows.append({"clip_id": clip_id, "path": out, "source": rel, "source_sha256": sha,
                         "start_s": f"{k * per_clip / settings.fps:g}", "seconds": f"{len(frames) / settings.fps:g}",
                         "fps": str(settings.fps), "frames": str(len(frames)), "fit": settings.fit,
                         "rotation": str(facts["rotation"]), "source_size": facts["shown_size"],
                         "import_key": key, "clip_sha256": file_sha256(result.dataset / out)})
        result.written += len(rows)
    result.sources += 1
    for row in rows:
        result.rows.append({**row, "product_id": product["product_id"], **{a: product.get(a, "") for a in attributes}})


def _remove_unlisted(clips: Path, listed: set[str]) -> None:
    """After clips.csv is switched: remove clip files it does not list (earlier settings, killed runs) and the temp
    files of killed writes (`.<stem>.*.tmp.mp4`, matched by the glob too). Only clips/*.mp4: clips/ belongs to the
    import."""
    for file in clips.glob("*.mp4"):
        if f"clips/{file.name}" not in listed:
            file.unlink(missing_ok=True)


def _reuse(rel: str, stem: str, sha: str, settings: ImportSettings, previous: dict,
           dataset: Path) -> list[dict] | None:
    """The previous run's rows for this source when its bytes and the settings are unchanged and its files still
    hold what clips.csv recorded (sha256: a clip file changed since, or a row without one, is re-encoded)."""
    rows = [r for r in previous.values() if r.get("source") == rel]
    if not rows:
        return None
    rows.sort(key=lambda r: r["clip_id"])
    for k, r in enumerate(rows):
        if r["clip_id"] != f"{stem}-{k:02d}" or r.get("import_key") != settings.key(sha, k):
            return None
        file = dataset / r["path"]
        if not r.get("clip_sha256") or not file.is_file() or file_sha256(file) != r["clip_sha256"]:
            return None
    return [{c: r[c] for c in ("clip_id", "path", *PROVENANCE_COLUMNS)} for r in rows]
