"""Sparse user × clip interactions: what scales to 10⁶ users × 10⁵ clips, where a dense matrix would be 400 GB.

`PairSet` answers "did user u touch clip j?" for whole batches from the sorted row-major keys u·C + j (the order
of a CSR matrix's entries); `csr_rows` turns (user, clip, value) triples into a scipy CSR matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


class PairSet:
    """A set of (user row, clip column) pairs of a (U, C) matrix; membership by binary search."""

    def __init__(self, users, clips, n_clips: int):
        self.n_clips = int(n_clips)
        keys = torch.as_tensor(users, dtype=torch.int64) * self.n_clips + torch.as_tensor(clips, dtype=torch.int64)
        self.keys = torch.unique(keys)  # sorted

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, users: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
        """bool (N,): pair i is in the set."""
        if len(self.keys) == 0:
            return torch.zeros(len(users), dtype=torch.bool)
        q = users.to(torch.int64) * self.n_clips + clips.to(torch.int64)
        at = torch.searchsorted(self.keys, q).clamp_(max=len(self.keys) - 1)
        return self.keys[at] == q


def csr_rows(users, clips, values, shape: tuple[int, int]) -> sp.csr_matrix:
    """float64 CSR (U, C) from triples; a repeated pair keeps its largest value (the strongest event)."""
    users, clips = np.asarray(users, np.int64), np.asarray(clips, np.int64)
    values = np.asarray(values, np.float64)
    order = np.lexsort((-values, clips, users))          # per pair, the largest value first
    users, clips, values = users[order], clips[order], values[order]
    first = np.ones(len(users), bool)
    first[1:] = (users[1:] != users[:-1]) | (clips[1:] != clips[:-1])
    return sp.csr_matrix((values[first], (users[first], clips[first])), shape=shape)
