"""The image discriminators by name (`model.d_image_kind`): a registry over gan.discriminators, gan.projected and
gan.hybrid. Each has features(video, frame_index), score(h, cond), condition_embedding, pairwise and
frame_features; `r1_part` is the part R1 smooths (the D itself when absent, None for none).
"""
from __future__ import annotations

from torch import nn

from gan.discriminators import ImageDiscriminator


def _projected(**kwargs) -> nn.Module:
    from gan.projected import ProjectedImageDiscriminator  # imported on use: it builds timm's EfficientNet

    return ProjectedImageDiscriminator(**kwargs)


def _hybrid(**kwargs) -> nn.Module:
    from gan.hybrid import HybridImageDiscriminator  # imported on use, as the projected D

    return HybridImageDiscriminator(**kwargs)


IMAGE_DISCRIMINATORS = {"conv": ImageDiscriminator, "projected": _projected, "hybrid": _hybrid}
# The pretrained feature networks each kind trains G against: a metric built on one of them judges G unfairly.
TRAINED_AGAINST = {"conv": [], "projected": ["effnet-lite0"], "hybrid": ["effnet-lite0"]}


def build_image_discriminator(kind: str, **kwargs) -> nn.Module:
    if kind not in IMAGE_DISCRIMINATORS:
        raise ValueError(f"model.d_image_kind={kind!r} is unknown; choose one of {sorted(IMAGE_DISCRIMINATORS)}")
    return IMAGE_DISCRIMINATORS[kind](**kwargs)
