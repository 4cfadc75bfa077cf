"""Training throughput (clips/s) of demo-cpu and tryon-64, fp32 vs bf16-mixed, and achieved FLOP/s vs peak.

Runs the real Lightning training step (gan.module.ReelGAN through pl.Trainer) on in-memory clips of the
config's size. Timing covers r1_interval consecutive batches (exactly one carries the lazy R1 pass) after
two warm-up batches. FLOPs are counted with torch.utils.flop_counter on one R1 batch and one plain batch,
amortised the same way. The peak is a 4096² matmul in the same precision, measured in this process.

    python bench/bench_train_throughput.py [--configs demo-cpu tryon-64] [--precisions 32-true bf16-mixed]
                                           [--windows 0 4]
--windows measures each config at these `model.train_window` values too (0 = the whole clip), each row says
which; without it, each config's own value.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import pytorch_lightning as pl
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(__file__))
from _train_common import build_module, load_config, loader, machine, matmul_peak, write_result  # noqa: E402

WARMUP = 2


class _Probe(pl.Callback):
    """Wall and CPU time per batch; FLOPs of batch 0 (R1) and batch 1 (no R1)."""

    def __init__(self):
        self.wall, self.cpu, self.flops = [], [], {}
        self._mode = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx < 2:
            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()
        self._t = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.wall.append(time.perf_counter() - self._t[0])
        self.cpu.append(time.process_time() - self._t[1])
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.flops[batch_idx] = self._mode.get_total_flops()
            self._mode = None


def measure(name: str, precision: str, window: int | None = None) -> dict:
    cfg = load_config(name)
    if window is not None:
        cfg["model"]["train_window"] = window
    interval = cfg["model"].get("r1_interval", 16)
    batches = WARMUP + interval
    module = build_module(cfg)
    probe = _Probe()
    trainer = pl.Trainer(max_steps=2 * batches, precision=precision, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[probe])
    trainer.fit(module, loader(cfg, batches))
    wall, cpu = sum(probe.wall[WARMUP:]), sum(probe.cpu[WARMUP:])
    bsz = cfg["data"]["batch_size"]
    flops = probe.flops[1] + (probe.flops[0] - probe.flops[1]) / interval
    clips = bsz * interval
    return {"config": name, "precision": precision, "batch_size": bsz,
            "train_window": cfg["model"].get("train_window", 0),
            "clip": f"{cfg['data']['frames']}x{cfg['data']['height']}x{cfg['data']['width']}",
            "batches_timed": interval, "clips_per_s": clips / wall, "s_per_batch": wall / interval,
            "cpu_s_per_batch": cpu / interval, "clips_per_cpu_s": clips / cpu, "gflop_per_batch": flops / 1e9,
            "achieved_gflops": flops / 1e9 / (wall / interval)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["demo-cpu", "tryon-64"])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--windows", nargs="+", type=int, help="model.train_window values to measure (0 = whole clip)")
    args = parser.parse_args()
    info = machine()
    peaks = {"32-true": matmul_peak(torch.float32), "bf16-mixed": matmul_peak(torch.bfloat16)}
    rows = []
    for name in args.configs:
        for precision in args.precisions:
            for window in args.windows or [None]:
                row = measure(name, precision, window)
                row["peak_matmul_gflops"] = peaks[precision]
                row["fraction_of_peak"] = row["achieved_gflops"] / peaks[precision]
                rows.append(row)
                print(f"  done {name} {precision} window {row['train_window']}: {row['clips_per_s']:.2f} clips/s",
                      flush=True)
    info["loadavg_1m_at_end"] = os.getloadavg()[0]
    header = f"{'config':10s} {'precision':11s} {'clip':9s} {'window':>6s} {'clips/s':>8s} {'s/batch':>8s} {'cpu s/b':>8s} " \
             f"{'clip/cpu-s':>10s} {'GFLOP/b':>8s} {'GFLOP/s':>8s} {'peak':>7s} {'%peak':>6s}"
    print(header)
    for r in rows:
        print(f"{r['config']:10s} {r['precision']:11s} {r['clip']:9s} {r['train_window']:6d} {r['clips_per_s']:8.2f} {r['s_per_batch']:8.3f} "
              f"{r['cpu_s_per_batch']:8.3f} {r['clips_per_cpu_s']:10.2f} {r['gflop_per_batch']:8.1f} {r['achieved_gflops']:8.1f} "
              f"{r['peak_matmul_gflops']:7.0f} {100 * r['fraction_of_peak']:5.1f}%")
    for cfg, window in dict.fromkeys((r["config"], r["train_window"]) for r in rows):
        by = {r["precision"]: r for r in rows if (r["config"], r["train_window"]) == (cfg, window)}
        if {"32-true", "bf16-mixed"} <= by.keys():
            print(f"{cfg} (window {window}): bf16-mixed / fp32 speed-up "
                  f"{by['bf16-mixed']['clips_per_s'] / by['32-true']['clips_per_s']:.2f}x")
    path = write_result("bench_train_throughput", {
        "how": "pl.Trainer on ReelGAN built from configs/<name>.yaml (cond_dim 16), in-memory clips; timed "
               "r1_interval batches after 2 warm-up batches; FLOPs by torch.utils.flop_counter (R1 amortised); "
               "peak = best of 3 4096x4096 matmuls in the same precision and process",
        "machine": info, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
