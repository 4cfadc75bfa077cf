"""`inception-fid`: the FID Inception-v3 (2048-d pool features), state-dict compatible with
pt_inception-2015-12-05-6726825d.pth (472 keys, strict load), the network behind pytorch-fid, torch-fidelity
and torchmetrics.

Preprocessing (`resize=`), recorded as `resize_mode`:
    "tf1-bilinear" (default; torch-fidelity / torchmetrics / original TF FID): uint8 → float, TF1.x bilinear
                   resize to 299 (source coordinate = dst · in/out, no half-pixel offset), then (x − 128) / 128.
    "pytorch-fid":  x / 255, torch bilinear resize to 299 (align_corners=False, no antialias), then 2x − 1.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.features import register_feature_extractor
from evaluation.features.base import FeatureExtractor, load_state_dict_file, resolve_weights
from evaluation.features.resize import resize_tf1_bilinear

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
OFFICIAL_SHA256_PREFIX = "6726825d"
ORIGIN = ("It is published in the GitHub releases of pytorch-fid "
          "(https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE + ") and of "
          "torch-fidelity (https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
          "weights-inception-2015-12-05-6726825d.pth, same suffix; rename it).")
RESIZE_MODES = ("tf1-bilinear", "pytorch-fid")
SIZE = 299


# ----------------------------------------------------------------------------- preprocessing
def preprocess(frames: torch.Tensor, resize: str) -> torch.Tensor:
    """frames: uint8 (N, 3, H, W) → float32 (N, 3, 299, 299) in the network's input range."""
    x = frames.float()
    if resize == "tf1-bilinear":
        return (resize_tf1_bilinear(x, SIZE) - 128.0) / 128.0
    if resize == "pytorch-fid":
        x = F.interpolate(x / 255.0, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        return 2.0 * x - 1.0
    raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")


# ----------------------------------------------------------------------------- network
class ConvBN(nn.Module):
    """conv (no bias) → BN (eps 1e-3) → ReLU; keys <unit>.conv.weight, <unit>.bn.*"""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)  # in place: same values, one buffer less


def _avg3(x):  # the FID blocks' pool branch: padding not counted in the average
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):  # Mixed_5b/5c/5d
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = ConvBN(cin, 48, 1), ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class BlockB(nn.Module):  # Mixed_6a (grid reduction 35 → 17)
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):  # Mixed_6b..6e (factorised 7x7)
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg3(x))], 1)


class BlockD(nn.Module):  # Mixed_7a (grid reduction 17 → 8)
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = ConvBN(cin, 192, 1), ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # Mixed_7b (avg pool branch, "E_1") and Mixed_7c (max pool branch, "E_2")
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3), self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """x: float (N, 3, 299, 299) in [-1, 1] → (N, 2048) pool features. `fc` (1008 classes) is kept for the
    state-dict layout (and for logits if ever needed) but is not on the feature path."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, max_pool=False), BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def state_dict_for_file(model: nn.Module) -> dict[str, torch.Tensor]:
    """The pt_inception file layout: our state dict minus BN's num_batches_tracked (472 keys)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def load_fid_inception(model: FIDInceptionV3, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load of a pt_inception-format state dict; the error lists the first mismatching keys."""
    expected = set(state_dict_for_file(model))
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise ValueError(f"{source}: not a pt_inception state dict ({len(state)} keys, expected {len(expected)}); "
                         f"missing {missing[:5]}, unexpected {extra[:5]}")
    model.load_state_dict(state, strict=False)  # only num_batches_tracked is absent, checked above


class InceptionFID(FeatureExtractor):
    """`inception-fid`: 2048-d frame features for fid[inception].

    Args:
        weights: path to pt_inception-2015-12-05-6726825d.pth; default: the torch hub cache
            (~/.cache/torch/hub/checkpoints/). Never downloaded.
        expected_sha256: hex prefix the file's sha256 must start with (default: the official "6726825d");
            None accepts any file (agreement tests use random weights), labelled fid[inception@<sha8>].
        resize: "tf1-bilinear" (default) or "pytorch-fid" (see the module docstring).
        channels_last: NHWC convolutions, about 2x faster on CPU, but a different fp32 summation order:
            features move by up to ~1e-4 abs from the NCHW reference (recorded in the protocol). The default
            (False) is bit-identical to torch-fidelity's network on CPU.
        device, batch_size: where and how many frames per forward pass.
    """

    name, tag, dim, kind = "inception-fid", "inception", 2048, "frame"

    def __init__(self, weights: str | os.PathLike | None = None, expected_sha256: str | None = OFFICIAL_SHA256_PREFIX,
                 resize: str = "tf1-bilinear", channels_last: bool = False, device="cpu", batch_size: int = 32):
        super().__init__(device=device, batch_size=batch_size)
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        path, digest = resolve_weights(weights, WEIGHTS_FILE, expected_sha256, ORIGIN)
        self.net = FIDInceptionV3()
        load_fid_inception(self.net, load_state_dict_file(path), str(path))
        self.net.eval().requires_grad_(False).to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.weights_path, self.weights_sha256 = str(path), digest
        self.resize_mode = resize
        self.standard = digest.startswith(OFFICIAL_SHA256_PREFIX)

    def protocol(self) -> dict:
        return {**super().protocol(), "channels_last": self.channels_last}

    def _frames(self, frames: torch.Tensor) -> torch.Tensor:  # uint8 (N, 3, H, W) → float32 (N, 2048)
        x = preprocess(frames, self.resize_mode)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)


def write_random_weights(path: str | os.PathLike, seed: int = 0, calibration_images: int = 4) -> str:
    """Writes a random pt_inception-format file (for agreement tests/benchmarks where the official file is
    absent): seeded init, then BN running statistics set from one train-mode pass over random uint8 frames
    so activations stay O(1) through all 94 layers (features of the size the real network gives).
    Atomic write; returns the file's sha256."""
    from data.io import atomic_path, file_sha256

    gen = torch.Generator().manual_seed(seed)
    net = FIDInceptionV3()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (p.shape[1:].numel() ** -0.5 if p.ndim > 1 else 0.1))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.add_(1.0)
                m.momentum = None  # cumulative average: running stats = this batch's stats
        frames = torch.randint(0, 256, (calibration_images, 3, 32, 32), generator=gen, dtype=torch.uint8)
        net.train()(preprocess(frames, "tf1-bilinear"))
    with atomic_path(path) as tmp:
        torch.save(state_dict_for_file(net), tmp)
    return file_sha256(path)


register_feature_extractor(InceptionFID.name, InceptionFID)
