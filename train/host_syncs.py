"""Count what a training batch asks of the host: aten ops and host syncs (`aten._local_scalar_dense`).

`.item()`, `float(t)`, `int(t)` and `bool(t)` on a tensor all dispatch `_local_scalar_dense`; on a GPU each one
waits for the device to drain. A TorchDispatchMode sees it on the CPU too, so the count is checked on every
landing without a GPU. `HostSyncCounter` is a callback: list it first and it counts from one batch's start to the
next (the step, every callback's batch hooks, logging and the next batch's collation), batch by batch.
"""
from __future__ import annotations

import os
import traceback
from collections import Counter

import pytorch_lightning as pl
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = ("_local_scalar_dense",)
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _where() -> str:
    """The innermost frame of this project (or else of the library) that asked for the sync: 'file:line fn'."""
    frames = [f for f in traceback.extract_stack()[:-3] if "torch/utils/_python_dispatch" not in f.filename]
    ours = [f for f in frames if f.filename.startswith(_HERE) and "/.venv/" not in f.filename
            and not f.filename.endswith("host_syncs.py")]
    f = (ours or frames)[-1]
    where = f"{os.path.relpath(f.filename, _HERE) if f.filename.startswith(_HERE) else f.filename}:{f.lineno} {f.name}"
    inner = frames[-1]
    if inner is not f:   # the library frame that did the read, e.g. pytorch_lightning/.../result.py:… item
        where += f" ← {'/'.join(inner.filename.split('/')[-2:])}:{inner.lineno} {inner.name}"
    return where


class DispatchCounter(TorchDispatchMode):
    """Counts every aten op dispatched while active, and the host syncs with where they came from."""

    def __init__(self, sources: bool = True):
        super().__init__()
        self.ops = 0
        self.syncs = 0
        self.by_op: Counter = Counter()
        self.sync_sources: Counter = Counter()
        self.sources = sources

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        name = func.overloadpacket.__name__
        self.by_op[name] += 1
        if name in SYNC_OPS:
            self.syncs += 1
            if self.sources:
                self.sync_sources[_where()] += 1
        return func(*args, **(kwargs or {}))


class HostSyncCounter(pl.Callback):
    """Per-batch aten ops and host syncs of a real training run: `records` holds one dict per batch.

    A batch is counted from its on_train_batch_start to the next batch's, so its number includes every callback's
    end-of-batch work and the collation of the next batch; the last batch ends at on_train_end.
    """

    def __init__(self, sources: bool = True):
        self.sources = sources
        self.records: list[dict] = []
        self._mode: DispatchCounter | None = None
        self._batch = -1

    def _close(self) -> None:
        if self._mode is None:
            return
        mode, self._mode = self._mode, None
        mode.__exit__(None, None, None)
        self.records.append({"batch": self._batch, "ops": mode.ops, "syncs": mode.syncs,
                             "sync_sources": dict(mode.sync_sources.most_common()),
                             "top_ops": dict(mode.by_op.most_common())})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._close()
        self._batch = len(self.records)
        self._mode = DispatchCounter(self.sources)
        self._mode.__enter__()

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()
