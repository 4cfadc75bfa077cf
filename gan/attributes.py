"""Product attributes in the networks: one-hot codes for G's mapping and the Ds' condition, and the masked
cross-entropy of the attribute heads (G's p(attribute | shopper), D's ACGAN head). Unknown values are -1.

Both run inside the training step, so neither reads a value back from the device: no range checks, no branches
on whether a batch has labels.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


_COLUMNS: dict = {}


def _columns(classes: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each one-hot column, the attribute it belongs to and the value it stands for (made once per device)."""
    key = (tuple(int(n) for n in classes), str(device))
    if key not in _COLUMNS:
        _COLUMNS[key] = (torch.tensor([a for a, n in enumerate(key[0]) for _ in range(n)], device=device),
                         torch.tensor([v for n in key[0] for v in range(n)], device=device))
    return _COLUMNS[key]


def attribute_one_hot(attributes: torch.Tensor, classes: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """(B, A) indices → (B, Σ classes) concatenated one-hots; an unknown value (-1) is all zeros.

    Built by one comparison of each column's attribute with the value the column stands for, not F.one_hot:
    one_hot checks its input's range, a read that stalls the device.
    """
    owner, value = _columns(classes, attributes.device)
    return (attributes.index_select(1, owner) == value).to(dtype)


def masked_attribute_loss(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Mean over the attributes that have any label of each attribute's mean cross-entropy over its labelled rows;
    0 when nothing is labelled. logits: one (N, classes_a) per attribute, labels (N, A) long, -1 = unknown.

    Masks instead of `if labels.any()` branches, which would read a flag back from the device every step.
    """
    known = (labels >= 0).float()                                                   # (N, A)
    losses = torch.stack([F.cross_entropy(lg.float(), labels[:, a].clamp(min=0), reduction="none")
                          for a, lg in enumerate(logits)], dim=1)                   # (N, A)
    count = known.sum(dim=0)                                                        # (A,)
    per_attribute = (losses * known).sum(dim=0) / count.clamp(min=1)
    return per_attribute.sum() / (count > 0).float().sum().clamp(min=1)
