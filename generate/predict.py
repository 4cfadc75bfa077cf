"""Mass generation on N devices through Lightning's predict loop (`reelgan-generate --devices N [--strategy ddp]`).

Lightning gives each rank its share of the (target, seed) jobs (no repeats in predict); `ClipWriter`, a
BasePredictionWriter, writes that rank's clips as each batch is made and, at the end, a manifest shard
OUTDIR/.manifest-rankNNN.json. Rank 0 waits for every rank, merges the shards in job order into
OUTDIR/manifest.json and deletes them. A clip depends only on (seed, condition, truncation, forward batch,
precision), so 2 processes write exactly the clips 1 process writes.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from data.io import write_json
from generate.manifest import MANIFEST_NAME, load_manifest, merge_manifest
from generate.paths import child_dir
from generate.run import run_record, write_clips
from generate.sampler import FORWARD_BATCH, check_options, generate_clips
from generate.targets import Target

SHARD_GLOB = ".manifest-rank*.json"


class GenerationJobs(Dataset):
    """Item i = (i, condition float32 (E,), seed) of the job list targets × seeds."""

    def __init__(self, jobs: list[tuple[Target, int]]):
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int):
        target, seed = self.jobs[i]
        return i, torch.from_numpy(np.asarray(target.condition, np.float32)), seed


class GeneratorPredictor(pl.LightningModule):
    """The generator in Lightning's predict loop; the Trainer owns devices and the process group."""

    def __init__(self, generator, truncation: float, forward_batch: int, precision: str):
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.truncation, self.forward_batch, self.precision = truncation, forward_batch, precision
        self.generate_s = 0.0

    def predict_step(self, batch, batch_idx):
        index, conditions, seeds = batch
        t0 = time.perf_counter()
        video = generate_clips(self.generator, conditions, seeds.tolist(), self.truncation, self.forward_batch,
                               self.device, forward_batch=self.forward_batch, precision=self.precision)
        self.generate_s += time.perf_counter() - t0
        return index.tolist(), video  # video float (N, T, C, H, W) in [-1, 1], on the CPU


class ClipWriter(BasePredictionWriter):
    """Writes each predicted batch's clips, then this rank's manifest shard."""

    def __init__(self, jobs, outdir: Path, folders: dict[str, Path], formats: list[str], fps: int,
                 truncation: float, ckpt_sha: str | None):
        super().__init__(write_interval="batch")
        self.jobs, self.outdir, self.folders, self.formats = jobs, outdir, folders, formats
        self.fps, self.truncation, self.ckpt_sha = fps, truncation, ckpt_sha
        self.rows: list[tuple[int, dict]] = []
        self.write_s = 0.0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        index, video = prediction
        t0 = time.perf_counter()
        entries = write_clips([self.jobs[i] for i in index], video, self.outdir, self.folders, self.formats,
                              self.fps, self.truncation, self.ckpt_sha)
        self.rows += zip(index, entries)
        self.write_s += time.perf_counter() - t0

    def on_predict_epoch_end(self, trainer, pl_module):
        write_json(self.outdir / f".manifest-rank{trainer.global_rank:03d}.json", {
            "rank": trainer.global_rank, "rows": [[i, e] for i, e in self.rows],
            "generate_s": round(pl_module.generate_s, 3), "write_s": round(self.write_s, 3)})


def _accelerator(device: str) -> str:
    return {"auto": "auto", "cpu": "cpu"}.get(device, "gpu")


def generate_distributed(generator, info: dict, targets: list[Target], seeds: list[int], outdir: str | Path,
                         formats: list[str], devices: int | str = 1, strategy: str = "auto", device: str = "auto",
                         num_nodes: int = 1,
                         fps: int = 8, truncation: float = 1.0, forward_batch: int = FORWARD_BATCH,
                         precision: str = "fp32", progress: bool = True, command: str | None = None) -> dict | None:
    """Generate targets × seeds on `devices` through Trainer.predict; rank 0 returns the merged manifest, the
    other ranks None."""
    if not targets:
        raise ValueError("no targets: give --user, --users-file, --embedding or --persona")
    check_options(forward_batch, precision)
    started = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    old = load_manifest(outdir / MANIFEST_NAME)  # fail on a corrupt manifest before spending minutes generating
    folders = {t.name: child_dir(outdir, t.name) for t in targets}
    jobs = [(t, s) for t in targets for s in seeds]
    writer = ClipWriter(jobs, outdir, folders, formats, fps, truncation, info.get("sha256"))
    trainer = pl.Trainer(accelerator=_accelerator(device), devices=devices, strategy=strategy, num_nodes=num_nodes,
                         precision="32-true",
                         logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=progress, callbacks=[writer], default_root_dir=str(outdir))
    if trainer.is_global_zero:
        for stale in outdir.glob(SHARD_GLOB):  # left by a killed run: never merge them into this one
            stale.unlink()
    trainer.strategy.barrier()
    module = GeneratorPredictor(generator, truncation, forward_batch, precision)
    loader = DataLoader(GenerationJobs(jobs), batch_size=forward_batch, shuffle=False)
    trainer.predict(module, loader, return_predictions=False)
    trainer.strategy.barrier()                # every rank's shard is on disk
    if not trainer.is_global_zero:
        return None
    shards = [load_shard(p) for p in sorted(outdir.glob(SHARD_GLOB))]
    rows = sorted((i, e) for shard in shards for i, e in shard["rows"])
    if [i for i, _ in rows] != list(range(len(jobs))):
        raise RuntimeError(f"{outdir}: the ranks' manifest shards cover {len(rows)} of {len(jobs)} jobs; re-run")
    entries = [e for _, e in rows]
    gen_s = max(s["generate_s"] for s in shards)
    run = run_record(info, targets, seeds, len(entries), command, device=str(trainer.strategy.root_device.type),
                     devices=trainer.world_size, strategy=type(trainer.strategy).__name__, batch_size=forward_batch,
                     forward_batch=forward_batch, precision=precision, truncation=truncation, fps=fps,
                     formats=formats,
                     timings={"generate_s": round(gen_s, 3), "write_s": round(max(s["write_s"] for s in shards), 3),
                              "total_s": round(time.perf_counter() - started, 3),
                              "clips_per_s_model": round(len(entries) / max(gen_s, 1e-9), 3),
                              "per_rank": [{k: s[k] for k in ("rank", "generate_s", "write_s")} for s in shards]})
    manifest = merge_manifest(old, run, entries)
    write_json(outdir / MANIFEST_NAME, manifest)
    for p in outdir.glob(SHARD_GLOB):
        p.unlink()
    return manifest


def load_shard(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RuntimeError(f"{path}: unreadable manifest shard ({err}); re-run the generation") from err
