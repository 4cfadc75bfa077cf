"""Streaming Gaussian statistics of feature vectors (mean and covariance), as a torchmetrics Metric.

The state is three float64 sums, whatever the number of samples N:
    n      ()       number of rows seen
    s1     (d,)     Σ x
    s2     (d, d)   Σ x xᵀ
so memory is O(d²) and the DDP reduction is a plain sum (`dist_reduce_fx="sum"`).

The covariance normalisation is explicit and travels with the result:
    "n-1"  unbiased, as np.cov / pytorch-fid / torch-fidelity / torchmetrics
    "n"    maximum likelihood, as StyleGAN-V's FVD
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics import Metric

NORMALISATIONS = ("n-1", "n")


@dataclass
class Gaussian:
    """Mean (d,) and covariance (d, d), float64 numpy, with how they were made."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    normalisation: str

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def _check_normalisation(normalisation: str) -> str:
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"covariance normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    return normalisation


class GaussianStats(Metric):
    """Accumulates features (N, dim) batch by batch; `compute()` gives a `Gaussian`.

    Args:
        dim: feature dimension d (fixed up front, so the state has a fixed shape for DDP).
        normalisation: "n-1" (unbiased, the FID convention) or "n" (StyleGAN-V's FVD convention).

    Sums are float64, so the usual mean-shift cancellation is far below metric precision for
    network features (|x| ≲ 1e3). Rows with NaN/Inf are refused with an error, not silently averaged.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, dim: int, normalisation: str = "n-1", **kwargs):
        super().__init__(**kwargs)
        if int(dim) < 1:
            raise ValueError(f"dim must be a positive feature dimension, got {dim}")
        self.dim = int(dim)
        self.normalisation = _check_normalisation(normalisation)
        self.add_state("n", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("s1", default=torch.zeros(self.dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("s2", default=torch.zeros(self.dim, self.dim, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features: torch.Tensor) -> None:  # features: (N, dim), any float dtype
        x = torch.as_tensor(features)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"GaussianStats(dim={self.dim}) expects features (N, {self.dim}), got {tuple(x.shape)}")
        x = x.to(device=self.s1.device, dtype=torch.float64)
        if not torch.isfinite(x).all():
            raise ValueError("features contain NaN or Inf: check the feature network's input range and weights")
        self.n += x.shape[0]
        self.s1 += x.sum(0)
        self.s2.addmm_(x.T, x)

    def compute(self) -> Gaussian:
        return gaussian_from_sums(self.n, self.s1, self.s2, self.normalisation)

    def merged(self) -> "GaussianStats":
        """Every rank's sums added (torchmetrics' sync over the process group; a plain copy without one), as a
        GaussianStats that no longer syncs: what the cache stores and the Fréchet distance reads, on every rank."""
        with self.sync_context(should_unsync=True):
            sums = self.sums()
        return GaussianStats(self.dim, self.normalisation, sync_on_compute=False).load_sums(sums)

    # Raw sums are what the real-statistics cache stores: the normalisation is chosen at read time.
    def sums(self) -> dict[str, torch.Tensor]:
        return {"n": self.n.detach().cpu().clone(), "s1": self.s1.detach().cpu().clone(),
                "s2": self.s2.detach().cpu().clone()}

    def load_sums(self, sums: dict[str, torch.Tensor]) -> "GaussianStats":
        s2 = torch.as_tensor(sums["s2"], dtype=torch.float64)
        if tuple(s2.shape) != (self.dim, self.dim):
            raise ValueError(f"stored sums have dim {tuple(s2.shape)}, this GaussianStats has dim {self.dim}")
        self.n = torch.as_tensor(sums["n"], dtype=torch.float64).to(self.s1.device).reshape(())
        self.s1 = torch.as_tensor(sums["s1"], dtype=torch.float64).to(self.s1.device)
        self.s2 = s2.to(self.s1.device)
        self._update_count = max(self._update_count, 1)  # loaded state counts as updated (no "compute before update")
        return self


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes) of the default process group; (0, 1) without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_zero() -> bool:
    return rank_and_world()[0] == 0


def gaussian_from_sums(n, s1, s2, normalisation: str = "n-1") -> Gaussian:
    """(n, Σx, Σxxᵀ) → Gaussian. Needs n ≥ 2 for "n-1", n ≥ 1 for "n"."""
    _check_normalisation(normalisation)
    n = float(torch.as_tensor(n))
    need = 2 if normalisation == "n-1" else 1
    if n < need:
        raise ValueError(f"need at least {need} feature rows for a '{normalisation}' covariance, got {int(n)}")
    s1 = torch.as_tensor(s1, dtype=torch.float64).cpu()
    s2 = torch.as_tensor(s2, dtype=torch.float64).cpu()
    mu = s1 / n
    sigma = s2.clone()  # in-place from here on: two (d, d) buffers at most
    sigma.addr_(mu, mu, alpha=-n).div_(n - 1.0 if normalisation == "n-1" else n)
    sigma = sigma.add_(sigma.T.clone()).mul_(0.5)  # exact symmetry for the Cholesky/eigvalsh route
    return Gaussian(mu.numpy(), sigma.numpy(), int(n), normalisation)


def gaussian_from_features(features, normalisation: str = "n-1") -> Gaussian:
    """Convenience for tests and small sets: features (N, d) → Gaussian (same maths as the streaming path)."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    stats = GaussianStats(x.shape[1], normalisation)
    stats.update(x)
    return stats.compute()


# ----------------------------------------------------------------------------- cache files
def sums_hash(sums: dict[str, torch.Tensor]) -> str:
    """sha256 of the stored sums (what the protocol records as the real-statistics hash)."""
    h = hashlib.sha256()
    for key in ("n", "s1", "s2"):
        h.update(np.ascontiguousarray(torch.as_tensor(sums[key], dtype=torch.float64).numpy()).tobytes())
    return h.hexdigest()


def save_sums(path: str | os.PathLike, sums: dict[str, torch.Tensor], meta: dict) -> str:
    """Atomically writes sums + JSON metadata to a .safetensors file; returns the sums' sha256."""
    from safetensors.torch import save_file

    from data.io import atomic_path

    digest = sums_hash(sums)
    tensors = {k: torch.as_tensor(v, dtype=torch.float64).contiguous() for k, v in sums.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta, sort_keys=True), "sha256": digest})
    return digest


def load_sums(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict, str]:
    """Reads a sums file; returns (sums, meta, sha256). Refuses a file whose content does not match its hash."""
    from safetensors import safe_open

    path = os.fspath(path)
    with safe_open(path, framework="pt") as f:
        header = f.metadata() or {}
        sums = {k: f.get_tensor(k) for k in ("n", "s1", "s2")}
    digest = sums_hash(sums)
    if header.get("sha256") != digest:
        raise ValueError(f"{path}: statistics cache is corrupt (hash mismatch); delete it and it will be rebuilt")
    return sums, json.loads(header.get("meta", "{}")), digest
