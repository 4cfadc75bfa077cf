"""Training and generation at the speed of the accelerator: one command, on whatever device is present.

    python bench/bench_gpu.py [--out bench/results/bench_gpu.json] [--batches 60] [--size 128]

Measured, each through the real CLI (`python -m train.cli fit`, every callback of the config on) unless noted:
- time to first batch: from launching the process to the end of the first training batch (bf16 run);
- steady clips/s of tryon-128-gpu and tryon-64 in bf16-mixed and 32-true: the clips of the batches after the
  first third, over their wall time (the probe drains the device at each batch end, so it is a true wall time);
- FLOPs per clip of a training step (torch.utils.flop_counter, in-process, R1 amortised over r1_interval), the
  achieved TFLOP/s and its fraction of an n×n matmul peak measured in this process, on this device;
- device utilisation over the steady window (nvidia-smi sampled every 100 ms, where present);
- host syncs per batch: `aten._local_scalar_dense` counted by a dispatch mode (train.host_syncs) over 8 batches
  of each config, median over the batches after the first two, logging batches apart;
- the top 10 ops by device time (torch.profiler, in-process, 4 steady batches of tryon-128-gpu bf16);
- generation clips/s model-only (G_ema of tryon-128-gpu widths, random weights, 128×128×16 bf16, the CLI's
  uint8_forwards: quantised on the device, one copy back per forward), and to mp4 through bench_generate.py.
On a CPU everything is smaller (64 px, batch 4, few batches) and figures are for plumbing, not for the targets.
Prints a table, writes JSON with the load averages. Finishes in about 7 minutes on one H200.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _results import machine_block, save  # noqa: E402

PY = sys.executable
CUDA = torch.cuda.is_available()
RUNS = [("tryon-128-gpu", "bf16-mixed"), ("tryon-128-gpu", "32-true"), ("tryon-64", "bf16-mixed"),
        ("tryon-64", "32-true")]


def env(extra: dict | None = None) -> dict:
    path = os.pathsep.join([str(ROOT), str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
                PYTHONWARNINGS="ignore", **(extra or {}))


def make_world(root: Path, size: int, clips: int) -> Path:
    world = root / "world"
    for cmd in (["synth", str(world), "--clips", str(clips), "--users", "240", "--size", f"{size}x{size}",
                 "--frames", "16", "--seed", "0"], ["embed", str(world), "--dim", "16", "--no-persona"]):
        subprocess.run([PY, "-m", "data.cli", *cmd], cwd=ROOT, env=env(), check=True, capture_output=True)
    return world


def make_shards(world: Path, size: int) -> Path:
    """What the GPU config trains from: `reelgan-data shard` at the run's size (decoded once, before training)."""
    out = world.parent / f"shards-{size}"
    subprocess.run([PY, "-m", "data.cli", "shard", str(world), str(out), "--size", f"{size}x{size}",
                    "--val-fraction", "0"], cwd=ROOT, env=env(), check=True, capture_output=True)
    return out


def run_config(name: str, precision: str, world: Path, run: Path, batches: int, args, probe: str) -> Path:
    """A config as a user runs it, with the bench's data, length, precision and one probe callback prepended."""
    cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    t = cfg["trainer"]
    t.update(default_root_dir=str(run), max_steps=2 * batches, precision=precision, logger=False)
    t.pop("max_time", None)
    callbacks = [c for c in t["callbacks"] if not c["class_path"].endswith("RunCheckpoint")]  # no disk writes
    t["callbacks"] = [{"class_path": probe}] + callbacks
    t["enable_checkpointing"] = False
    cfg["data"].update(root=str(world))
    if not CUDA:                      # the CPU: the same code paths, smaller
        t["accelerator"] = "cpu"
        cfg["data"].update(batch_size=args.cpu_batch, num_workers=min(cfg["data"].get("num_workers", 0), 1))
        if name == "tryon-128-gpu":
            cfg["data"].update(height=args.size, width=args.size)
    path = run / "config.yaml"
    run.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class Utilisation:
    """nvidia-smi's utilization.gpu sampled every 100 ms in the background, with the parent's clock."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._proc = None

    def __enter__(self):
        try:
            self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                           "-lms", "100"], stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:
            return self
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self):
        for line in self._proc.stdout:
            try:
                self.samples.append((time.time(), float(line.split(",")[0])))
            except ValueError:
                pass

    def __exit__(self, *exc):
        if self._proc is not None:
            self._proc.terminate()

    def mean_between(self, t0: float, t1: float) -> float | None:
        inside = [u for t, u in self.samples if t0 <= t <= t1]
        return statistics.mean(inside) if inside else None


def train_run(name: str, precision: str, world: Path, tmp: Path, args) -> dict:
    run = tmp / f"{name}-{precision}"
    cfg = run_config(name, precision, world, run, args.batches, args, "_gpu_probe.BatchClock")
    clock = run / "clock.json"
    with Utilisation() as util:
        t0 = time.time()
        proc = subprocess.run([PY, "-m", "train.cli", "fit", "-c", str(cfg)], cwd=ROOT, capture_output=True,
                              text=True, env=env({"BENCH_T0": repr(t0), "BENCH_CLOCK_OUT": str(clock)}))
    if proc.returncode != 0:
        return {"config": name, "precision": precision, "error": proc.stderr[-2000:]}
    ends, clips = (json.loads(clock.read_text())[k] for k in ("batch_end_s", "clips"))
    start = max(1, len(ends) // 3)                 # the steady window: after compilation and cuDNN autotuning
    window = ends[-1] - ends[start]
    return {"config": name, "precision": precision, "batches": len(ends), "batch_size": clips[0],
            "first_batch_s": ends[0], "steady_clips_per_s": sum(clips[start + 1:]) / window if window > 0 else None,
            "utilisation_pct": util.mean_between(t0 + ends[start], t0 + ends[-1])}


def sync_counts(name: str, world: Path, tmp: Path, args) -> dict:
    """Host syncs and aten ops per batch through the real CLI, every callback on (dispatch-mode counts)."""
    run = tmp / f"{name}-syncs"
    cfg = run_config(name, "bf16-mixed", world, run, 8, args, "train.host_syncs.HostSyncCounter")
    code = ("import json,sys; from train.cli import build_cli; from train.host_syncs import HostSyncCounter;"
            f"cli = build_cli(['fit', '-c', {str(cfg)!r}]);"
            "cb = next(c for c in cli.trainer.callbacks if isinstance(c, HostSyncCounter));"
            "every = cli.trainer.log_every_n_steps;"
            "json.dump([dict(r, logging=(r['batch'] + 1) % every == 0) for r in cb.records], sys.stdout)")
    proc = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env())
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    records = json.loads(proc.stdout.strip().splitlines()[-1])[2:]
    plain = [r for r in records if not r["logging"]]
    return {"syncs_per_batch_median": statistics.median(r["syncs"] for r in plain),
            "syncs_per_batch_max": max(r["syncs"] for r in plain),
            "aten_ops_per_batch_median": statistics.median(r["ops"] for r in plain),
            "sync_sources": sorted({s for r in plain for s in r["sync_sources"]})}


def module_and_batch(name: str, world: Path, args):
    from data.datamodule import ProductClipDataModule
    from gan.module import ReelGAN

    cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    d = cfg["data"]
    size = d["height"] if CUDA else args.size
    batch = d["batch_size"] if CUDA else args.cpu_batch
    dm = ProductClipDataModule(str(world), frames=d["frames"], stride=d["stride"], height=size, width=size,
                               batch_size=batch, num_workers=0)
    dm.setup("fit")
    module = ReelGAN(cond_dim=dm.embedding_dim, frames=d["frames"], height=size, width=size,
                     attribute_classes=dm.attribute_classes, **{**cfg["model"], "compile": False})
    return module, dm


def flops_and_profile(world: Path, args) -> dict:
    """FLOPs per clip of a training step (R1 amortised) and the top ops by device time, in-process."""
    import pytorch_lightning as pl
    from torch.utils.flop_counter import FlopCounterMode

    module, dm = module_and_batch("tryon-128-gpu", world, args)

    class Flops(pl.Callback):
        def __init__(self):
            self.per_batch, self.mode = [], None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.mode = FlopCounterMode(display=False)
            self.mode.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.mode.__exit__(None, None, None)
            self.per_batch.append(self.mode.get_total_flops())

    counter = Flops()
    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, precision="bf16-mixed", callbacks=[counter],
                         accelerator="gpu" if CUDA else "cpu", devices=1, default_root_dir=str(args.tmp))
    trainer.fit(module, dm)
    with_r1, without = counter.per_batch[0], counter.per_batch[1]
    interval = module.hparams.r1_interval
    per_clip = (without + (with_r1 - without) / interval) / dm.batch_size

    from torch.profiler import ProfilerActivity, profile

    class Step(pl.Callback):
        def on_train_batch_end(self, *a):
            prof.step()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
    module, dm = module_and_batch("tryon-128-gpu", world, args)
    with profile(activities=activities, schedule=torch.profiler.schedule(wait=0, warmup=2, active=4),
                 acc_events=True) as prof:              # keep the active cycle's events after it closes
        pl.Trainer(max_steps=2 * 6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, precision="bf16-mixed", accelerator="gpu" if CUDA else "cpu",
                   devices=1, default_root_dir=str(args.tmp), callbacks=[Step()]).fit(module, dm)
    key = "self_device_time_total" if CUDA else "self_cpu_time_total"
    top = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:10]
    return {"flops_per_clip": per_clip, "batch_size": dm.batch_size, "r1_interval": interval,
            "top_ops": [{"op": e.key, "time_ms": getattr(e, key) / 1e3 / 4, "calls_per_batch": e.count / 4}
                        for e in top]}


def matmul_peak(dtype: torch.dtype) -> float:
    """Best of 5 n×n matmuls on this device, in this process: the denominator of 'fraction of peak'."""
    device = "cuda" if CUDA else "cpu"
    n = 8192 if CUDA else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(6):
        if CUDA:
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if CUDA:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e12


def generation_model_only(args) -> dict:
    from gan.generator import VideoGenerator
    from generate.sampler import uint8_forwards

    m = yaml.safe_load((ROOT / "configs" / "tryon-128-gpu.yaml").read_text())["model"]
    size = 128 if CUDA else args.size
    g = VideoGenerator(16, 16, size, size, motion=m["motion"], content_dim=m["content_dim"],
                       motion_noise_dim=m["motion_noise_dim"], w_dim=m["w_dim"], embed_dim=m["embed_dim"],
                       mapping_layers=m["mapping_layers"], channels=m["g_channels"],
                       motion_kwargs=m["motion_kwargs"]).eval()
    device = "cuda" if CUDA else "cpu"
    g.to(device)
    clips = 1024 if CUDA else 16
    cond = torch.nn.functional.normalize(torch.randn(clips, 16), dim=1)
    seeds = list(range(clips))
    list(uint8_forwards(g, cond[:64], seeds[:64], device=device, precision="bf16"))       # warm-up
    t = time.perf_counter()
    made = sum(len(clips) for clips in uint8_forwards(g, cond, seeds, device=device, precision="bf16"))
    return {"clips": made, "size": size, "frames": 16, "clips_per_s": made / (time.perf_counter() - t)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bench_gpu.json"))
    parser.add_argument("--batches", type=int, default=60 if CUDA else 6, help="training batches per run")
    parser.add_argument("--size", type=int, default=64, help="CPU only: clip size of the 128 config")
    parser.add_argument("--cpu-batch", type=int, default=4, help="CPU only: batch size")
    parser.add_argument("--skip-mp4", action="store_true", help="leave out bench_generate.py's mp4 figures")
    args = parser.parse_args()
    load = os.getloadavg()
    result = {"device": torch.cuda.get_device_name() if CUDA else "cpu", "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp = Path(tmp)
        t = time.time()
        world = make_world(tmp, 128 if CUDA else args.size, 256 if CUDA else 48)
        # the GPU config reads shards; tryon-64 (a CPU config) its dataset folder and in-memory cache
        sources = {"tryon-128-gpu": make_shards(world, 128 if CUDA else args.size), "tryon-64": world}
        result["world_s"] = time.time() - t
        print(f"world and shards: {result['world_s']:.0f} s", flush=True)
        result["peak_tflops"] = {"bf16": matmul_peak(torch.bfloat16), "fp32": matmul_peak(torch.float32)}
        result["runs"] = []
        for name, precision in RUNS:
            r = train_run(name, precision, sources[name], tmp, args)
            result["runs"].append(r)
            print(json.dumps(r), flush=True)
        result["host_syncs"] = {name: sync_counts(name, sources[name], tmp, args) for name in sources}
        print(json.dumps(result["host_syncs"]), flush=True)
        result["training_step"] = flops_and_profile(sources["tryon-128-gpu"], args)
        result["generation"] = generation_model_only(args)
    flops = result["training_step"]["flops_per_clip"]
    for r in result["runs"]:
        if r.get("steady_clips_per_s") and r["config"] == "tryon-128-gpu":
            r["achieved_tflops"] = r["steady_clips_per_s"] * flops / 1e12
            peak = result["peak_tflops"]["bf16" if r["precision"].startswith("bf16") else "fp32"]
            r["fraction_of_peak"] = r["achieved_tflops"] / peak
    if not args.skip_mp4:
        mp4 = subprocess.run([PY, str(ROOT / "bench" / "bench_generate.py")], cwd=ROOT, env=env(),
                             capture_output=True, text=True)
        gen_json = ROOT / "bench" / "results" / "bench_generate.json"
        result["generation_mp4"] = json.loads(gen_json.read_text()) if mp4.returncode == 0 and gen_json.exists() \
            else {"error": mp4.stderr[-1500:]}

    print(f"\n{'config':15s} {'precision':11s} {'first batch s':>13s} {'clips/s':>8s} {'TFLOP/s':>8s} "
          f"{'% peak':>7s} {'util %':>7s}")
    for r in result["runs"]:
        if "error" in r:
            print(f"{r['config']:15s} {r['precision']:11s} failed: {r['error'][-200:]}")
            continue
        print(f"{r['config']:15s} {r['precision']:11s} {r['first_batch_s']:13.1f} {r['steady_clips_per_s'] or 0:8.1f} "
              f"{r.get('achieved_tflops', float('nan')):8.2f} {100 * r.get('fraction_of_peak', float('nan')):7.1f} "
              f"{r['utilisation_pct'] if r['utilisation_pct'] is not None else float('nan'):7.1f}")
    print(f"FLOPs per clip (training step, R1 amortised): {flops / 1e12:.3f} TFLOP; peaks bf16 "
          f"{result['peak_tflops']['bf16']:.1f} / fp32 {result['peak_tflops']['fp32']:.1f} TFLOP/s")
    for name, s in result["host_syncs"].items():
        print(f"host syncs per non-logging batch, {name}: median {s.get('syncs_per_batch_median')} max "
              f"{s.get('syncs_per_batch_max')}; aten ops {s.get('aten_ops_per_batch_median')}")
    print(f"generation model-only: {result['generation']['clips_per_s']:.1f} clips/s at "
          f"{result['generation']['size']}² × 16, bf16")
    print("top ops by device time (ms per batch):")
    for e in result["training_step"]["top_ops"]:
        print(f"  {e['time_ms']:9.2f}  {e['calls_per_batch']:6.1f}×  {e['op']}")
    result.update(machine_block(load))
    return save(result, Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
