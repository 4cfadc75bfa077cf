"""Rebuild the EMA generator from a loaded Lightning checkpoint dict, and check a stored generator config before
anything is built from it (pure: no file IO; generate.loading and generate.export read the files)."""
from __future__ import annotations

import inspect

import torch

from gan.generator import LEVELS, VideoGenerator, check_video_size
from gan.motion import MOTION_MODULES

EMA_PREFIX = "generator_ema."
# Sizes a stored config may ask for: far above any real model, far below what would exhaust memory.
LIMITS = {"cond_dim": 65_536, "frames": 1024, "height": 4096, "width": 4096, "content_dim": 65_536,
          "motion_noise_dim": 4096, "w_dim": 65_536, "embed_dim": 65_536, "mapping_layers": 64,
          "truncation_anchors": 65_536}
MAX_CHANNELS = 8192
MAX_ATTRIBUTES, MAX_ATTRIBUTE_VALUES = 64, 65_536
MAX_PARAMETERS = 4_000_000_000


def check_generator_config(config) -> dict:
    """A stored `generator_config` → the same dict, or ValueError naming the key and what is allowed.

    Runs before the generator is built, so a tampered size (frames=1e7) fails without allocating anything.
    """
    if not isinstance(config, dict):
        raise ValueError(f"generator_config is a {type(config).__name__}, not a mapping of VideoGenerator arguments")
    params = inspect.signature(VideoGenerator.__init__).parameters
    known = [n for n in params if n != "self"]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"generator_config has unknown key(s) {unknown}; VideoGenerator takes {known}")
    missing = [n for n in known if params[n].default is inspect.Parameter.empty and n not in config]
    if missing:
        raise ValueError(f"generator_config lacks required key(s) {missing}")
    for key, limit in LIMITS.items():
        if key in config:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ValueError(f"generator_config {key}={value!r} is not an integer in [1, {limit}]")
    check_video_size(config["frames"], config["height"], config["width"])
    channels = config.get("channels", [1] * LEVELS)
    if not isinstance(channels, (list, tuple)) or len(channels) != LEVELS or not all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_CHANNELS for c in channels):
        raise ValueError(f"generator_config channels={channels!r} must be {LEVELS} integers in [1, {MAX_CHANNELS}]")
    classes = config.get("attribute_classes", [])
    if not isinstance(classes, (list, tuple)) or len(classes) > MAX_ATTRIBUTES or not all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_ATTRIBUTE_VALUES for c in classes):
        raise ValueError(f"generator_config attribute_classes={classes!r} must be at most {MAX_ATTRIBUTES} integers "
                         f"in [1, {MAX_ATTRIBUTE_VALUES}]")
    if config.get("motion", "gru") not in MOTION_MODULES:
        raise ValueError(f"generator_config motion={config.get('motion')!r}: choose one of {sorted(MOTION_MODULES)}")
    if not isinstance(config.get("motion_kwargs") or {}, dict):
        raise ValueError(f"generator_config motion_kwargs={config.get('motion_kwargs')!r} must be a mapping")
    if not isinstance(config.get("mapping_lr_mul", 1.0), (int, float)) or isinstance(config.get("mapping_lr_mul"),
                                                                                       bool):
        raise ValueError(f"generator_config mapping_lr_mul={config.get('mapping_lr_mul')!r} must be a number")
    return config


def expected_state_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The state-dict tensor shapes VideoGenerator(**config) has, found on the meta device (no memory used)."""
    check_generator_config(config)
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in VideoGenerator(**config).state_dict().items()}
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"generator_config cannot build a generator ({err})") from None
    total = sum(int(torch.Size(s).numel()) for s in shapes.values())
    if total > MAX_PARAMETERS:
        raise ValueError(f"generator_config asks for {total:,} parameters (limit {MAX_PARAMETERS:,})")
    return shapes


def check_weights(state: dict, config: dict) -> None:
    """Stored tensors against the config: same names, same shapes, floating point and finite. ValueError if not."""
    shapes = expected_state_shapes(config)
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise ValueError(f"its weights do not fit generator_config: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}")
    for name, shape in shapes.items():
        if tuple(state[name].shape) != shape:
            raise ValueError(f"weight {name} has shape {tuple(state[name].shape)}, generator_config needs {shape}")
    for name, tensor in state.items():
        if not torch.is_tensor(tensor) or not tensor.is_floating_point():
            raise ValueError(f"weight {name} is not a floating-point tensor")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"weight {name} holds NaN or Inf values (the generator would make blank clips)")


def generator_from_checkpoint(ckpt: dict) -> VideoGenerator:
    """ckpt: the dict from torch.load(path, weights_only=True) of a ReelGAN checkpoint → VideoGenerator (eval)."""
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("reelgan"), dict) or \
            not isinstance(ckpt.get("state_dict"), dict):
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"not a ReelGAN training checkpoint (needs 'reelgan' and 'state_dict' keys; got {keys})")
    if "generator_config" not in ckpt["reelgan"]:
        raise ValueError("its 'reelgan' section has no generator_config")
    config = ckpt["reelgan"]["generator_config"]
    weights = {k[len(EMA_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(EMA_PREFIX)}
    check_weights(weights, config)
    generator = VideoGenerator(**config)
    generator.load_state_dict(weights, strict=True)
    return generator.eval().requires_grad_(False)
