"""Feature networks behind one registry (the torch-fidelity pattern).

    extractor = get_feature_extractor("inception-fid", weights="/path/pt_inception-2015-12-05-6726825d.pth")
    feats = extractor.features(video_uint8)        # (B, T, 3, H, W) → float64 (B*T, 2048)

A new network is one file with a `FeatureExtractor` subclass plus one `register_feature_extractor` call at the
bottom of that file, and one line in `_BUILTIN` below so the name resolves without importing every network.
"""
from __future__ import annotations

import importlib

from evaluation.features.base import FeatureExtractor

_REGISTRY: dict[str, type[FeatureExtractor]] = {}

# name → module that registers it on import (imported lazily: timm and friends load only when asked for)
_BUILTIN = {
    "inception-fid": "evaluation.features.inception",
    "i3d-fvd": "evaluation.features.i3d",
    "effnet-lite0": "evaluation.features.effnet",
    "domain": "evaluation.features.domain",
}


def register_feature_extractor(name: str, cls: type[FeatureExtractor]) -> None:
    """Adds `cls` under `name`. Re-registering the same class is a no-op; a different class is an error."""
    if not (isinstance(cls, type) and issubclass(cls, FeatureExtractor)):
        raise TypeError(f"register_feature_extractor({name!r}, ...): expected a FeatureExtractor subclass, got {cls!r}")
    if cls.name != name:
        raise ValueError(f"{cls.__name__}.name is {cls.name!r} but it is registered as {name!r}; make them equal")
    old = _REGISTRY.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"feature extractor {name!r} is already registered to {old.__module__}.{old.__name__}")
    _REGISTRY[name] = cls


def available_feature_extractors() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN))


def feature_extractor_class(name: str) -> type[FeatureExtractor]:
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown feature extractor {name!r}; available: {', '.join(available_feature_extractors())}")
    return _REGISTRY[name]


def get_feature_extractor(name: str, **kwargs) -> FeatureExtractor:
    """Builds the extractor registered as `name` with its keyword arguments (see each class's docstring)."""
    return feature_extractor_class(name)(**kwargs)


__all__ = ["FeatureExtractor", "register_feature_extractor", "get_feature_extractor",
           "available_feature_extractors", "feature_extractor_class"]
