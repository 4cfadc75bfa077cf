"""Encode clips in worker processes while the next forward runs: the writing stage of reelgan-generate.

The caller makes one forward batch of uint8 clips and `submit`s it; the pool splits it into one task per worker
(generate.writers.encode_clips: PyAV / Pillow into the run's staging folder) and returns at once, so the next
forward runs while they encode. At most `pending` forward batches wait or encode, so memory stays bounded:
`submit` blocks on the oldest batch beyond that. Batches come back in submission order, so the manifest lists
clips in job order whatever the pool size, and a clip's bytes depend only on its frames (x264 runs
single-threaded, data.video), so the files are the same too. `workers=0` encodes in the calling process.

Workers start from a fork server that has imported only generate.writers (numpy, PyAV): no torch, no CUDA state
and no threads are copied into them. A failing clip raises ClipEncodeError naming it; the caller's run folder
then removes the staging folder, so nothing is published.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from data.io import _umask as process_umask  # read without swapping it (other threads)
from generate.writers import ClipEncodeError, encode_clips

AUTO = "auto"


def encode_workers_for(device: str, requested: int | str | None = AUTO, devices: int = 1) -> int:
    """Encoder processes per generating process: `requested` when a number, else one per CPU core this process
    may use (its share of the machine's cores across `devices` processes), less one for the forward's own
    thread on a GPU; on the CPU the forward needs the cores itself, so a quarter of them (0 on 2 cores)."""
    if requested not in (None, AUTO):
        if int(requested) < 0:
            raise ValueError(f"--encode-workers must be >= 0 (0 = encode in this process), got {requested}")
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // max(1, int(devices)))
    if str(device).startswith("cuda"):
        return max(1, min(32, share - 1))
    return share // 4


def _worker_init(owner: int, umask: int) -> None:
    """Worker initializer: files get the owner's umask now (the fork server was started with the umask of its
    time), and the worker ends as soon as the process that owns the pool is gone (a SIGKILLed run must leave no
    encoder behind, writing into a staging folder the next run removes)."""
    import select
    import threading

    def watch():
        try:
            fd = os.pidfd_open(owner)
            select.select([fd], [], [])
        except (AttributeError, OSError):          # no pidfd (old kernel): poll
            while True:
                try:
                    os.kill(owner, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.5)
        os._exit(1)

    os.umask(umask)
    threading.Thread(target=watch, daemon=True).start()


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["generate.writers"])
    return ctx


class ClipEncoder:
    """`submit(frames, clips, payload)` → the (payload, files) of the batches finished by now, in order;
    `drain()` → the rest. frames: uint8 (n, T, H, W, C); clips: n × (folder, file stem, label for errors);
    files: one {format: file name} per clip. Timings: `encode_s` (worker-seconds of encoding and writing, summed
    over tasks) and `wait_s` (seconds the caller was blocked on the encoders)."""

    def __init__(self, formats: list[str], fps: int, workers: int = 0, pending: int = 2):
        self.formats, self.fps, self.workers, self.pending = list(formats), int(fps), int(workers), max(1, pending)
        self._pool = (ProcessPoolExecutor(self.workers, mp_context=_context(), initializer=_worker_init,
                                          initargs=(os.getpid(), process_umask())) if self.workers else None)
        self._queue: deque = deque()
        self.encode_s = self.wait_s = 0.0

    def submit(self, frames: np.ndarray, clips: list[tuple[str, str, str]], payload=None) -> list[tuple]:
        if len(frames) != len(clips):
            raise ValueError(f"one clip description per clip: {len(clips)} for {len(frames)} clips")
        if self._pool is None:
            files, seconds = encode_clips(frames, clips, self.formats, self.fps)
            self.encode_s += seconds
            return [(payload, files)]
        size = math.ceil(len(clips) / self.workers)
        futures = [self._pool.submit(encode_clips, frames[i:i + size], clips[i:i + size], self.formats, self.fps)
                   for i in range(0, len(clips), size)]
        self._queue.append((payload, clips, futures))
        done = []
        while self._queue and (len(self._queue) > self.pending or all(f.done() for f in self._queue[0][2])):
            done.append(self._take())
        return done

    def drain(self) -> list[tuple]:
        return [self._take() for _ in range(len(self._queue))]

    def _take(self) -> tuple:
        payload, clips, futures = self._queue.popleft()
        t0 = time.perf_counter()
        files = []
        try:
            for f in futures:
                part, seconds = f.result()          # a worker's ClipEncodeError is raised here, naming its clip
                files += part
                self.encode_s += seconds
        except BrokenProcessPool:
            raise ClipEncodeError(f"an encoder process died while writing {clips[0][2]} … {clips[-1][2]}; "
                                  "out of memory? try --encode-workers 0") from None
        finally:
            self.wait_s += time.perf_counter() - t0
        return payload, files

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._queue.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
