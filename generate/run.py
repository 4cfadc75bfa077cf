"""Generate clips for targets × seeds into one folder per target, with a manifest (the body of reelgan-generate)."""
from __future__ import annotations

import itertools
import platform
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from data.io import progress as progress_bar
from data.tensors import uint8_to_model
from generate.manifest import MANIFEST_NAME, condition_hash, load_manifest
from generate.paths import child_dir, ensure_inside, recorded_path
from generate.encode import ClipEncoder, encode_workers_for
from generate.publish import RunFolder
from generate.sampler import FORWARD_BATCH, check_options, forward_batch_for, uint8_forwards  # noqa: F401 (FORWARD_BATCH: re-exported)
from generate.targets import Target


def pick_device(name: str) -> str:
    """auto → cuda when available, else cpu; an explicit cuda without a GPU is an error, not a silent fallback."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to torch here; use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"--device {name!r}: choose auto, cpu or cuda")
    return name


def clip_label(target: Target, seed: int) -> str:
    """How an error names one clip."""
    return f"target {target.name!r} seed {seed}"


def encoder_clips(jobs: list[tuple[Target, int]], folders: dict[str, Path]) -> list[tuple[str, str, str]]:
    """(folder, file stem, label) of each (target, seed) job: what generate.writers.encode_clips writes."""
    return [(str(folders[t.name]), f"{folders[t.name].name}-seed{s:04d}", clip_label(t, s)) for t, s in jobs]


def manifest_rows(jobs: list[tuple[Target, int]], files: list[dict[str, str]], frames: np.ndarray, outdir: Path,
                  folders: dict[str, Path], fps: int, truncation: float, ckpt_sha: str | None,
                  folder_name=lambda name: name) -> list[dict]:
    """The manifest rows of written clips: jobs (target, seed), their files ({format: name}) and frames uint8
    (N, T, H, W, C); each file is checked to sit inside `outdir` (`folder_name` maps a target folder to its
    published path, e.g. runs/<run id>/<folder>)."""
    entries = []
    _, t, h, w, _ = frames.shape
    for (target, seed), written in zip(jobs, files):
        folder = folders[target.name]
        for name in written.values():
            ensure_inside(outdir, folder / name)
        entries.append({
            "user": target.name, "source": target.source, "detail": target.detail,
            "folder": folder_name(folder.name), "seed": seed, "files": written,
            "embedding_hash": condition_hash(target.condition), "checkpoint_sha256": ckpt_sha,
            "truncation": truncation, "fps": fps, "frames": int(t), "height": int(h), "width": int(w),
        })
    return entries


def run_record(info: dict, target_names: list[str], seeds: list[int], clips: int, command: str | None,
               base: str | Path, **how) -> dict:
    """The manifest's record of one run: what was asked, with which generator and options, and its timings. The
    checkpoint's path is recorded relative to `base` (OUTDIR) where it can be (generate.paths.recorded_path)."""
    ckpt_sha = info.get("sha256")
    return {
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv),
        "checkpoint": {"path": recorded_path(info.get("path"), base), "sha256": ckpt_sha,
                       "embeddings_hash": info.get("embeddings_hash"), "kind": info.get("kind")},
        "generator_config": info.get("config"),
        **how, "clips": clips, "targets": list(target_names), "seeds": seeds,
        "torch": torch.__version__, "python": platform.python_version(),
    }


def generate_to_folders(generator, info: dict, targets: Iterable[Target], seeds: list[int], outdir: str | Path,
                        formats: list[str], fps: int = 8, truncation: float = 1.0, batch_size: int = 16,
                        device: str = "cpu", progress: bool = True, command: str | None = None,
                        on_batch=None, forward_batch: int | None = None, precision: str = "fp32",
                        encode_workers: int | str = "auto") -> dict:
    """Write outdir/runs/<run id>/<safe target>/<target>-seedNNNN.<fmt> for every target × seed and publish them
    in outdir/manifest.json (generate.publish: a private staging folder, one sync pass, then one atomic switch;
    concurrent runs into one outdir are all listed, and a killed run leaves the published state as it was).

    The pipeline: each forward of `forward_batch` rows (default: the device's, generate.sampler) is quantised to
    uint8 on the device and copied back once, then handed to `encode_workers` encoder processes
    (generate.encode; default: the device's share of the cores, 0 = encode here) while the next forward runs.
    `batch_size` jobs (rounded up to whole forwards) are read from the targets at a time. A seed gives the
    bit-identical clip and file whatever --batch-size or pool size (see generate.sampler.FORWARD_BATCH).
    Returns the manifest. `on_batch(entries, video)`, if given, sees each forward's clips once written (the slot
    scores candidates with it): entries are their manifest rows, video the written clips as float
    (N, T, C, H, W) in [-1, 1] (data.tensors.uint8_to_model of the uint8 frames).
    """
    total_jobs = len(targets) * len(seeds) if hasattr(targets, "__len__") else None  # a stream: unknown
    targets = iter(targets)
    first = next(targets, None)
    if first is None:
        raise ValueError("no targets: give --user, --users-file, --embedding or --persona")
    targets = itertools.chain([first], targets)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    forward_batch = forward_batch_for(device, forward_batch)
    check_options(forward_batch, precision)
    workers = encode_workers_for(device, encode_workers)
    started = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    load_manifest(outdir / MANIFEST_NAME)  # fail on a corrupt manifest before spending minutes generating
    with RunFolder(outdir) as run_folder, ClipEncoder(formats, fps, workers) as encoder:
        staging = run_folder.staging
        folders: dict[str, Path] = {}
        names: list[str] = []

        def job_stream():  # targets are read as the clips are made (a campaign file streams: generate.targets)
            for t in targets:
                folders[t.name] = child_dir(staging, t.name)
                names.append(t.name)
                for s in seeds:
                    yield t, s

        jobs = job_stream()
        step = -(-batch_size // forward_batch) * forward_batch  # jobs read at a time: whole forwards
        entries: list[dict] = []
        gen_s = write_s = 0.0

        def collect(done) -> None:  # encoded forwards, in job order
            for (chunk, frames), files in done:
                rows = manifest_rows(chunk, files, frames, staging, folders, fps, truncation, info.get("sha256"),
                                     run_folder.folder_name)
                entries.extend(rows)
                if on_batch is not None:
                    on_batch(rows, uint8_to_model(torch.from_numpy(frames).permute(0, 1, 4, 2, 3)))
                bar.update(task, advance=len(rows), rate=f"{len(entries) / max(gen_s, 1e-9):.2f} clips/s (model)")

        with progress_bar(progress, transient=False, unit="clips", remaining=True, fields=("rate",)) as bar:
            task = bar.add_task("generate", total=total_jobs, rate="")
            while chunk := list(itertools.islice(jobs, step)):
                conds = torch.from_numpy(np.stack([t.condition for t, _ in chunk]))
                made = uint8_forwards(generator, conds, [s for _, s in chunk], truncation, device, forward_batch,
                                      precision)
                for lo in range(0, len(chunk), forward_batch):
                    t0 = time.perf_counter()
                    frames = next(made).numpy()  # uint8 (n, T, H, W, C): the forward, quantised, copied back once
                    gen_s += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    part = chunk[lo:lo + forward_batch]
                    collect(encoder.submit(frames, encoder_clips(part, folders), (part, frames)))
                    write_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            collect(encoder.drain())
            write_s += time.perf_counter() - t0
        sync_s = run_folder.sync()
        write_s += sync_s
        total = time.perf_counter() - started
        run = run_record(info, names, seeds, len(entries), command, outdir, device=device, devices=1,
                         batch_size=batch_size, forward_batch=forward_batch, encode_workers=workers,
                         precision=precision, truncation=truncation, fps=fps, formats=formats,
                         timings=run_timings(len(entries), gen_s, write_s, encoder.encode_s, sync_s, total))
        return run_folder.publish(run, entries)


def run_timings(clips: int, generate_s: float, write_s: float, encode_s: float, sync_s: float,
                total_s: float) -> dict:
    """A run's timings (seconds). generate_s: the forwards, quantised and copied back; write_s: the wall time the
    run spent on writing besides them (handing clips over, waiting on encoders, the sync pass); encode_s: the
    encoders' own seconds (summed over workers, overlapping the forwards); sync_s: the one sync pass. With a pool,
    total_s < generate_s + encode_s."""
    return {"generate_s": round(generate_s, 3), "write_s": round(write_s, 3), "encode_s": round(encode_s, 3),
            "sync_s": round(sync_s, 3), "total_s": round(total_s, 3),
            "clips_per_s_model": round(clips / max(generate_s, 1e-9), 3),
            "clips_per_s": round(clips / max(total_s, 1e-9), 3)}
