"""Rebuild the EMA generator from a loaded Lightning checkpoint dict (pure: no file IO)."""
from __future__ import annotations

from gan.generator import VideoGenerator

EMA_PREFIX = "generator_ema."


def generator_from_checkpoint(ckpt: dict) -> VideoGenerator:
    """ckpt: the dict from torch.load(path, weights_only=True) of a ReelGAN checkpoint → VideoGenerator (eval)."""
    if not isinstance(ckpt, dict) or "reelgan" not in ckpt or "state_dict" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"not a ReelGAN training checkpoint (needs 'reelgan' and 'state_dict' keys; got {keys})")
    config = ckpt["reelgan"]["generator_config"]
    generator = VideoGenerator(**config)
    weights = {k[len(EMA_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(EMA_PREFIX)}
    missing, unexpected = generator.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint EMA weights do not fit generator_config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return generator.eval().requires_grad_(False)
