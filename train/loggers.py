"""The default training logger: Lightning's CSVLogger, except that a resumed run appends to RUN/metrics.csv.

Lightning's CSV writer deletes an existing metrics.csv when it starts, which would cut the loss curve at every
`--ckpt_path last`. Here the old rows are read first and handed back to the new writer through its public
`log_metrics`/`save`, so the file keeps them, under the same (sorted) header. After a crash, steps between the
last checkpoint and the crash appear twice (once from the crashed run, once from the resumed run); readers
that want one curve keep the last row per step.
"""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


def read_metrics_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an earlier run's metrics.csv (none when there is no file), cells as written."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class RunCSVLogger(CSVLogger):
    """CSVLogger(save_dir=RUN, name="", version="") that appends on resume (see module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.carried_over = False  # the earlier rows are back in the file

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self.carried_over:
            return super().experiment
        rows = read_metrics_rows(Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE)
        with warnings.catch_warnings():
            # "...will be deleted": true of Lightning's writer alone; the rows are written back just below
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
            writer = super().experiment
        for row in rows:
            writer.log_metrics(row, step=int(row["step"]))
        writer.save()
        self.carried_over = True
        return writer
