"""Shared by the benchmarks: how a result records its machine, and how it is saved and announced."""
from __future__ import annotations

import os
import platform
import time

from data import io


def machine_block(load_before: tuple[float, float, float]) -> dict:
    """Load averages around the run, the machine and the time: every bench JSON carries these."""
    return {"loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def save(result: dict, out) -> int:
    """Print the load averages, write the JSON atomically, say where; returns the exit status."""
    print(f"load average before/after: {result['loadavg_before'][0]:.1f} / {result['loadavg_after'][0]:.1f}")
    io.write_json(out, result)
    print(f"wrote {out}")
    return 0
