"""Seeds → latents: one integer → one torch.Generator → one latent row.

A clip depends only on its own seed, never on the batch it was drawn in or the device it runs on
(latents are always drawn on the CPU, then moved).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_SEED = 2**63 - 1


def latents_for_seeds(seeds: Sequence[int], dim: int) -> torch.Tensor:
    """seeds: N non-negative ints → float32 (N, dim) standard-normal latents, row i from seeds[i] alone."""
    if isinstance(seeds, (int, str)):
        raise TypeError(f"seeds must be a list of ints, got {type(seeds).__name__} {seeds!r}; wrap it: [{seeds!r}]")
    if int(dim) < 1:
        raise ValueError(f"latent dim must be >= 1, got {dim}")
    rows = []
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) and not (torch.is_tensor(seed) and seed.numel() == 1):
            raise TypeError(f"seeds[{i}] = {seed!r} is not an int; seeds are non-negative integers")
        seed = int(seed)
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seeds[{i}] = {seed} is outside [0, 2**63 - 1]")
        g = torch.Generator(device="cpu").manual_seed(seed)
        rows.append(torch.randn(int(dim), generator=g, dtype=torch.float32))
    if not rows:
        return torch.empty(0, int(dim), dtype=torch.float32)
    return torch.stack(rows)
