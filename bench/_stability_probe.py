"""Callback for bench/bench_stability.py (class path `_stability_probe.SaturationProbe`, bench/ on PYTHONPATH):
every `every` batches, G's pre-tanh seed diversity (DivergenceGuard.diversity) and the share of saturated output
pixels (|tanh| > 0.99) for one training condition, appended to the JSON file named by BENCH_PROBE_OUT."""
from __future__ import annotations

import json
import os

import pytorch_lightning as pl

from train.callbacks import DivergenceGuard


class SaturationProbe(pl.Callback):
    def __init__(self, every: int = 25):
        self.every, self.rows, self.guard = int(every), [], DivergenceGuard()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.seen_batches % self.every:
            return
        diversity, saturated = self.guard.probe(pl_module.generator, batch[1][0])
        self.rows.append({"batch": pl_module.seen_batches, "diversity_pre_tanh": diversity, "saturated": saturated,
                          "loss_g": float(outputs["loss_g"]), "loss_d": float(outputs["loss_d"])})
        with open(os.environ["BENCH_PROBE_OUT"], "w") as f:
            json.dump(self.rows, f)
