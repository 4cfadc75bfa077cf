"""Mass generation on N devices through Lightning's predict loop (`reelgan-generate --devices N [--strategy ddp]`).

One publish path for 1 or N processes (generate.publish): rank 0 opens the run's staging folder
OUTDIR/.staging/<run id> and broadcasts it. Lightning gives each rank its share of the (target, seed) jobs (no
repeats in predict); `ClipWriter`, a BasePredictionWriter, writes that rank's clips into the staging folder as each
batch is made and, at the end, a manifest shard .manifest-rankNNN.json beside them. After a barrier rank 0 merges
the shards in job order, removes them and publishes the run: OUTDIR/runs/<run id>/<target>/… and one atomic
manifest switch, exactly as one process does. A killed run publishes nothing. A clip depends only on (seed,
condition, truncation, forward batch, precision), so 2 processes write exactly the clips 1 process writes.
Each rank writes as one process does (generate.run): its forwards come back as uint8, one copy each, and its own
encoder pool (generate.encode) writes them while the next forward runs; rank 0's publish makes the one sync pass.
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
from generate.manifest import MANIFEST_NAME, load_manifest
from generate.paths import child_dir, ensure_inside
from generate.publish import RunFolder
from generate.encode import ClipEncoder, encode_workers_for
from generate.run import encoder_clips, manifest_rows, run_record, run_timings
from generate.sampler import check_options, forward_batch_for, uint8_forwards
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
        frames = torch.cat(list(uint8_forwards(self.generator, conditions, seeds.tolist(), self.truncation,
                                               self.device, self.forward_batch, self.precision)))
        self.generate_s += time.perf_counter() - t0
        return index.tolist(), frames.numpy()  # uint8 (N, T, H, W, C) on the CPU: one forward, one copy


class ClipWriter(BasePredictionWriter):
    """Every rank writes its clips into the one run folder of generate.publish (OUTDIR/.staging/<run id>, made and
    held by rank 0, its path broadcast to the others), then its manifest shard there; after a barrier rank 0
    merges the shards in job order and publishes the run as one process would (rename + manifest switch)."""

    def __init__(self, jobs, targets: list[Target], outdir: Path, formats: list[str], fps: int, truncation: float,
                 ckpt_sha: str | None, make_run, encode_workers: int | str = "auto"):
        super().__init__(write_interval="batch")
        self.jobs, self.targets, self.outdir, self.formats = jobs, targets, outdir, formats
        self.fps, self.truncation, self.ckpt_sha, self.make_run = fps, truncation, ckpt_sha, make_run
        self.encode_workers = encode_workers
        self.encoder: ClipEncoder | None = None
        self.rows: list[tuple[int, dict]] = []
        self.write_s = 0.0
        self.run_folder: RunFolder | None = None   # rank 0 only
        self.manifest: dict | None = None          # rank 0, once published

    def setup(self, trainer, pl_module, stage):
        if trainer.is_global_zero:                 # the process group is up here: broadcast works
            self.run_folder = RunFolder(self.outdir).__enter__()
        ours = (str(self.run_folder.staging), self.run_folder.run_id) if self.run_folder else None
        staging, run_id = trainer.strategy.broadcast(ours, src=0)
        self.staging = Path(staging)
        ensure_inside(self.outdir, self.staging)
        self.folder_name = lambda safe: RunFolder.published_folder(run_id, safe)
        self.folders = {t.name: child_dir(self.staging, t.name) for t in self.targets}
        self.workers = encode_workers_for(trainer.strategy.root_device.type, self.encode_workers,
                                          devices=trainer.num_devices)
        self.encoder = ClipEncoder(self.formats, self.fps, self.workers)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        index, frames = prediction
        t0 = time.perf_counter()
        jobs = [self.jobs[i] for i in index]
        self._collect(self.encoder.submit(frames, encoder_clips(jobs, self.folders), (index, jobs, frames)))
        self.write_s += time.perf_counter() - t0

    def _collect(self, done) -> None:
        for (index, jobs, frames), files in done:
            entries = manifest_rows(jobs, files, frames, self.staging, self.folders, self.fps, self.truncation,
                                    self.ckpt_sha, self.folder_name)
            self.rows += zip(index, entries)

    def on_predict_epoch_end(self, trainer, pl_module):
        t0 = time.perf_counter()
        self._collect(self.encoder.drain())
        self.write_s += time.perf_counter() - t0
        write_json(self.staging / f".manifest-rank{trainer.global_rank:03d}.json", {
            "rank": trainer.global_rank, "rows": [[i, e] for i, e in self.rows], "encode_workers": self.workers,
            "generate_s": round(pl_module.generate_s, 3), "write_s": round(self.write_s, 3),
            "encode_s": round(self.encoder.encode_s, 3)})

    def on_predict_end(self, trainer, pl_module):
        trainer.strategy.barrier()                 # every rank's clips and shard are in the staging folder
        if not trainer.is_global_zero:
            return
        paths = sorted(self.staging.glob(SHARD_GLOB))
        shards = [load_shard(p) for p in paths]
        rows = sorted((i, e) for shard in shards for i, e in shard["rows"])
        if [i for i, _ in rows] != list(range(len(self.jobs))):
            raise RuntimeError(f"{self.staging}: the ranks' manifest shards cover {len(rows)} of {len(self.jobs)} "
                               "jobs; re-run")
        for p in paths:
            p.unlink()
        entries = [e for _, e in rows]
        sync_s = self.run_folder.sync()            # every rank's clips, in one pass
        self.manifest = self.run_folder.publish(self.make_run(trainer, entries, shards, sync_s), entries)
        self._close()

    def teardown(self, trainer, pl_module, stage):
        self._close()

    def on_exception(self, trainer, pl_module, exception):
        self._close()                              # unpublished: the staging folder goes, the manifest stays

    def _close(self):
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None
        if self.run_folder is not None:
            self.run_folder.__exit__(None, None, None)
            self.run_folder = None


def _accelerator(device: str) -> str:
    return {"auto": "auto", "cpu": "cpu"}.get(device, "gpu")


def generate_distributed(generator, info: dict, targets: list[Target], seeds: list[int], outdir: str | Path,
                         formats: list[str], devices: int | str = 1, strategy: str = "auto", device: str = "auto",
                         num_nodes: int = 1,
                         fps: int = 8, truncation: float = 1.0, forward_batch: int | None = None,
                         precision: str = "fp32", progress: bool = True, command: str | None = None,
                         encode_workers: int | str = "auto") -> dict | None:
    """Generate targets × seeds on `devices` through Trainer.predict; rank 0 returns the merged manifest, the
    other ranks None. forward_batch: default the device's (generate.sampler); encode_workers: per rank."""
    if not targets:
        raise ValueError("no targets: give --user, --users-file, --embedding or --persona")
    gpu = _accelerator(device) == "gpu" or (device == "auto" and torch.cuda.is_available())
    forward_batch = forward_batch_for("cuda" if gpu else "cpu", forward_batch)
    check_options(forward_batch, precision)
    started = time.perf_counter()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    load_manifest(outdir / MANIFEST_NAME)  # fail on a corrupt manifest before spending minutes generating
    jobs = [(t, s) for t in targets for s in seeds]

    def make_run(trainer, entries, shards, sync_s) -> dict:  # the slowest rank's times: they run side by side
        slowest = lambda key: max(s[key] for s in shards)  # noqa: E731
        timings = run_timings(len(entries), slowest("generate_s"), slowest("write_s") + sync_s,
                              sum(s["encode_s"] for s in shards), sync_s, time.perf_counter() - started)
        timings["per_rank"] = [{k: s[k] for k in ("rank", "generate_s", "write_s", "encode_s")} for s in shards]
        return run_record(
            info, [t.name for t in targets], seeds, len(entries), command, outdir, device=str(trainer.strategy.root_device.type),
            devices=trainer.world_size, strategy=type(trainer.strategy).__name__, batch_size=forward_batch,
            forward_batch=forward_batch, encode_workers=shards[0]["encode_workers"], precision=precision,
            truncation=truncation, fps=fps, formats=formats, timings=timings)

    writer = ClipWriter(jobs, targets, outdir, formats, fps, truncation, info.get("sha256"), make_run,
                        encode_workers)
    trainer = pl.Trainer(accelerator=_accelerator(device), devices=devices, strategy=strategy, num_nodes=num_nodes,
                         precision="32-true",
                         logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=progress, callbacks=[writer], default_root_dir=str(outdir))
    module = GeneratorPredictor(generator, truncation, forward_batch, precision)
    loader = DataLoader(GenerationJobs(jobs), batch_size=forward_batch, shuffle=False)
    trainer.predict(module, loader, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    return writer.manifest if writer.manifest is not None else load_manifest(outdir / MANIFEST_NAME)


def load_shard(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RuntimeError(f"{path}: unreadable manifest shard ({err}); re-run the generation") from err
