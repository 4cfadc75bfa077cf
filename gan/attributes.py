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


def _padded_columns(classes: Sequence[int], device: torch.device) -> torch.Tensor:
    """(A · K_max,) column indices that lay out concatenated logits (N, Σ classes), padded with one extra column,
    as (N, A, K_max): each attribute's logits, then the extra column up to K_max (made once per device)."""
    key = ("padded", tuple(int(n) for n in classes), str(device))
    if key not in _COLUMNS:
        sizes, width = key[1], max(key[1])
        starts = [sum(sizes[:a]) for a in range(len(sizes))]
        _COLUMNS[key] = torch.tensor([starts[a] + v if v < n else sum(sizes) for a, n in enumerate(sizes)
                                      for v in range(width)], device=device)
    return _COLUMNS[key]


def padded_attribute_logits(logits: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """(N, Σ classes) logits side by side → (N, A, K_max) in at least fp32, each attribute's row padded with -inf,
    which adds nothing to a softmax: every attribute's softmax, argmax or draw is one op."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    columns = _padded_columns(classes, logits.device)
    return F.pad(logits, (0, 1), value=float("-inf")).index_select(1, columns).view(len(logits), len(classes), -1)


def masked_attribute_loss(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Mean over the attributes that have any label of each attribute's mean cross-entropy over its labelled rows;
    0 when nothing is labelled. logits (N, Σ classes): each attribute's logits side by side; labels (N, A) long,
    -1 = unknown.

    Masks instead of `if labels.any()` branches, which would read a flag back from the device every step; one
    log-softmax for every attribute (`padded_attribute_logits`), not one cross-entropy each.
    """
    log_p = padded_attribute_logits(logits, classes).log_softmax(dim=2)
    log_p = log_p.gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)                # (N, A) log p(label)
    known = (labels >= 0).float()                                                   # (N, A)
    count = known.sum(dim=0)                                                        # (A,)
    per_attribute = (log_p * known).sum(dim=0) / count.clamp(min=1)                 # − each attribute's mean CE
    return -per_attribute.sum() / (count > 0).float().sum().clamp(min=1)
