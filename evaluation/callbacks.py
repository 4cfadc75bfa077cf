"""Deprecated location of the in-training fvd[domain] callback: use `evaluation.metrics.callbacks.DomainFVD`.

Kept so that training YAMLs and command lines with `class_path: evaluation.callbacks.DomainFVD` still work.
"""
from __future__ import annotations

import warnings

from evaluation.metrics.callbacks import DomainFVD as _DomainFVD


class DomainFVD(_DomainFVD):
    """`evaluation.callbacks.DomainFVD` → `evaluation.metrics.callbacks.DomainFVD` (same arguments)."""

    def __init__(self, *args, **kwargs):
        warnings.warn("class_path evaluation.callbacks.DomainFVD is deprecated; use "
                      "evaluation.metrics.callbacks.DomainFVD (same init_args)", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
