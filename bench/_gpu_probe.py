"""Callback for bench/bench_gpu.py, loaded by class path `_gpu_probe.BatchClock` (bench/ on PYTHONPATH) inside a
real `python -m train.cli fit` run: when each batch ended, seen from the launching process's clock.

The parent passes its launch time in BENCH_T0 (time.time() just before the process started) and a JSON path in
BENCH_CLOCK_OUT; the first entry is then "time to first batch" as a user sees it (import, set-up, data, model)."""
from __future__ import annotations

import json
import os
import time

import pytorch_lightning as pl
import torch


class BatchClock(pl.Callback):
    def __init__(self):
        self.t0 = float(os.environ.get("BENCH_T0", time.time()))
        self.ends: list[float] = []
        self.clips: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":   # a wall clock per batch needs the device drained: this costs a
            torch.cuda.synchronize()          # little on a GPU, and the steady figure uses a window's ends only
        self.ends.append(time.time() - self.t0)
        self.clips.append(int(batch[0].shape[0]) * trainer.world_size)

    def on_train_end(self, trainer, pl_module) -> None:
        out = os.environ.get("BENCH_CLOCK_OUT")
        if out and trainer.is_global_zero:
            with open(out, "w") as f:
                json.dump({"batch_end_s": self.ends, "clips": self.clips, "device": str(pl_module.device),
                           "precision": str(trainer.precision)}, f)
