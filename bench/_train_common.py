"""Shared by the training benchmarks: build ReelGAN from a training config, in-memory batches, machine facts."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from data import io

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
COND_DIM = 16


def load_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())


def build_module(cfg: dict, seed: int = 0):
    from gan.module import ReelGAN

    torch.manual_seed(seed)
    data = cfg["data"]
    return ReelGAN(cond_dim=COND_DIM, frames=data["frames"], height=data["height"], width=data["width"],
                   **cfg["model"])


class RandomClips(Dataset):
    """Throughput does not depend on pixel values: uniform clips in [-1, 1] and unit conditions, made once."""

    def __init__(self, n: int, frames: int, height: int, width: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.video = torch.rand(n, frames, 3, height, width, generator=g) * 2 - 1
        self.cond = torch.nn.functional.normalize(torch.randn(n, COND_DIM, generator=g), dim=1)

    def __len__(self):
        return len(self.video)

    def __getitem__(self, i):
        return self.video[i], self.cond[i], f"u{i}", f"c{i}"


def loader(cfg: dict, batches: int) -> DataLoader:
    d = cfg["data"]
    return DataLoader(RandomClips(batches * d["batch_size"], d["frames"], d["height"], d["width"]),
                      batch_size=d["batch_size"], shuffle=False, num_workers=0)


def matmul_peak(dtype: torch.dtype, n: int = 4096, reps: int = 3) -> float:
    """Best-of-reps n×n matmul GFLOP/s in this process (same threads and contention as the benchmark)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "loadavg_1m_at_start": os.getloadavg()[0]}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    io.write_json(path, payload)
    return path
