"""The default training logger: Lightning's CSVLogger, except that a resumed run appends to RUN/metrics.csv.

Lightning's CSV writer deletes an existing metrics.csv when it starts, which would cut the loss curve at every
`--ckpt_path last`. Here the old rows stay and the header is carried over. After a crash, steps between the
last checkpoint and the crash appear twice (once from the crashed run, once from the resumed run); readers
that want one curve keep the last row per step.
"""
from __future__ import annotations

import csv

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys = sorted(header)


class RunCSVLogger(CSVLogger):
    """CSVLogger(save_dir=RUN, name="", version="") that appends on resume (see module docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
