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
from data.tensors import model_to_clip
from generate.manifest import MANIFEST_NAME, condition_hash, load_manifest
from generate.paths import child_dir, ensure_inside, recorded_path
from generate.publish import RunFolder
from generate.sampler import FORWARD_BATCH, check_options, generate_clips
from generate.targets import Target
from generate.writers import write_clip


def pick_device(name: str) -> str:
    """auto → cuda when available, else cpu; an explicit cuda without a GPU is an error, not a silent fallback."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to torch here; use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"--device {name!r}: choose auto, cpu or cuda")
    return name


def write_clips(jobs: list[tuple[Target, int]], video: torch.Tensor, outdir: Path, folders: dict[str, Path],
                formats: list[str], fps: int, truncation: float, ckpt_sha: str | None,
                folder_name=lambda name: name) -> list[dict]:
    """Write each (target, seed) clip of video float (N, T, C, H, W) in [-1, 1] under `outdir`; returns their
    manifest rows (`folder_name` maps a target folder to its published path, e.g. runs/<run id>/<folder>)."""
    entries = []
    for (target, seed), clip in zip(jobs, video):
        frames = model_to_clip(clip)  # uint8 (T, H, W, C)
        folder = folders[target.name]
        files = write_clip(frames, folder, f"{folder.name}-seed{seed:04d}", formats, fps)
        for name in files.values():
            ensure_inside(outdir, folder / name)
        entries.append({
            "user": target.name, "source": target.source, "detail": target.detail,
            "folder": folder_name(folder.name), "seed": seed, "files": files,
            "embedding_hash": condition_hash(target.condition), "checkpoint_sha256": ckpt_sha,
            "truncation": truncation, "fps": fps, "frames": int(frames.shape[0]),
            "height": int(frames.shape[1]), "width": int(frames.shape[2]),
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
                        on_batch=None, forward_batch: int = FORWARD_BATCH, precision: str = "fp32") -> dict:
    """Write outdir/runs/<run id>/<safe target>/<target>-seedNNNN.<fmt> for every target × seed and publish them
    in outdir/manifest.json (generate.publish: a private staging folder, then one atomic switch; concurrent runs
    into one outdir are all listed, and a killed run leaves the published state as it was).

    Clips are made step by step (`batch_size` clips rounded up to whole forwards of `forward_batch`, targets and
    seeds mixed); a seed gives the bit-identical clip whatever --batch-size (see generate.sampler.FORWARD_BATCH).
    Returns the manifest. `on_batch(entries, video)`, if given, sees each batch as it is made (the slot scores
    candidates with it): entries are this batch's manifest rows, video its float (N, T, C, H, W) clips in [-1, 1].
    """
    total_jobs = len(targets) * len(seeds) if hasattr(targets, "__len__") else None  # a stream: unknown
    targets = iter(targets)
    first = next(targets, None)
    if first is None:
        raise ValueError("no targets: give --user, --users-file, --embedding or --persona")
    targets = itertools.chain([first], targets)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    check_options(forward_batch, precision)
    started = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    load_manifest(outdir / MANIFEST_NAME)  # fail on a corrupt manifest before spending minutes generating
    with RunFolder(outdir) as run_folder:
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
        step = -(-batch_size // forward_batch) * forward_batch  # clips per step: whole forwards, no padding waste
        entries: list[dict] = []
        gen_s = write_s = 0.0
        with progress_bar(progress, transient=False, unit="clips", remaining=True, fields=("rate",)) as bar:
            task = bar.add_task("generate", total=total_jobs, rate="")
            while chunk := list(itertools.islice(jobs, step)):
                conds = torch.from_numpy(np.stack([t.condition for t, _ in chunk]))
                t0 = time.perf_counter()
                video = generate_clips(generator, conds, [s for _, s in chunk], truncation, step, device,
                                       forward_batch=forward_batch, precision=precision)  # (N, T, C, H, W)
                gen_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                entries += write_clips(chunk, video, staging, folders, formats, fps, truncation, info.get("sha256"),
                                       run_folder.folder_name)
                write_s += time.perf_counter() - t0
                if on_batch is not None:
                    on_batch(entries[-len(chunk):], video)
                bar.update(task, advance=len(chunk), rate=f"{len(entries) / max(gen_s, 1e-9):.2f} clips/s (model)")
        total = time.perf_counter() - started
        run = run_record(info, names, seeds, len(entries), command, outdir, device=device, devices=1,
                         batch_size=batch_size, forward_batch=forward_batch, precision=precision,
                         truncation=truncation, fps=fps, formats=formats,
                         timings={"generate_s": round(gen_s, 3), "write_s": round(write_s, 3),
                                  "total_s": round(total, 3),
                                  "clips_per_s_model": round(len(entries) / max(gen_s, 1e-9), 3)})
        return run_folder.publish(run, entries)
