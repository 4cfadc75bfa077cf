"""`i3d-fvd`: Inception-I3D (Kinetics-400) for FVD, state-dict compatible with the `i3d_pretrained_400.pt` file
that the common PyTorch FVD ports load (VideoGPT / piergiaj layout: `Conv3d_1a_7x7.conv3d.weight`,
`Mixed_3b.b1b.bn.running_var`, ..., `logits.conv3d.{weight,bias}`).

Protocol (the original TF FVD, as StyleGAN-V's `rescale=True, resize=True`): uint8 frames, TF1 bilinear resize to
224×224 (no crop), 2x/255 − 1 into [-1, 1], TF "SAME" padding everywhere, and the 400-d Kinetics logits averaged
over the remaining time steps are the features. BN eps is 1e-3 (TensorFlow's; the PyTorch ports use 1e-5:
`bn_eps=1e-5` reproduces them). The clip must have ≥ 9 frames (the logits pool needs 2 time steps after three
stride-2 reductions); the pinned protocol records frames and stride.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from evaluation.features import register_feature_extractor
from evaluation.features.base import FeatureExtractor, load_state_dict_file, resolve_weights
from evaluation.features.resize import resize_tf1_bilinear

WEIGHTS_FILE = "i3d_pretrained_400.pt"
ORIGIN = ("It is the Kinetics-400 I3D converted from DeepMind's kinetics-i3d release, distributed with VideoGPT "
          "(wilson1yan/VideoGPT, fvd/) and the FVD ports that copy it.")
SIZE = 224
MIN_FRAMES = 9


def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TF 'SAME' padding for (B, C, T, H, W): total pad = max((ceil(s/st)-1)·st + k − s, 0), extra at the back."""
    pads = []
    for size, k, st in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max((math.ceil(size / st) - 1) * st + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """SAME-padded conv3d → BN → ReLU (the logits unit: conv with bias, no BN, no ReLU)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn_eps: float = 1e-3,
                 head: bool = False):
        super().__init__()
        self.kernel, self.stride, self.head = tuple(kernel), tuple(stride), head
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, stride=self.stride, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(cout, eps=bn_eps)

    def forward(self, x):
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return x if self.head else F.relu(self.bn(x))


class SamePool(nn.Module):
    """SAME-padded 3D max pool (inputs are post-ReLU, so zero padding equals TF's −inf padding)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1→3x3x3 | 1x1→3x3x3 | pool→1x1, widths (b0, b1a, b1b, b2a, b2b, b3b)."""

    def __init__(self, cin: int, widths: tuple[int, ...], bn_eps: float):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        self.b0 = Unit3D(cin, b0, bn_eps=bn_eps)
        self.b1a, self.b1b = Unit3D(cin, b1a, bn_eps=bn_eps), Unit3D(b1a, b1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a, self.b2b = Unit3D(cin, b2a, bn_eps=bn_eps), Unit3D(b2a, b2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a, self.b3b = SamePool((3, 3, 3), (1, 1, 1)), Unit3D(cin, b3b, bn_eps=bn_eps)

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


_MIXED = {  # name: (input channels, branch widths)
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """x: float (B, 3, T, 224, 224) in [-1, 1] → Kinetics logits (B, num_classes), averaged over time."""

    def __init__(self, num_classes: int = 400, bn_eps: float = 1e-3):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), bn_eps)
        self.MaxPool3d_2a_3x3 = SamePool((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = SamePool((1, 3, 3), (1, 2, 2))
        self.Mixed_3b, self.Mixed_3c = (Mixed(*_MIXED[k], bn_eps) for k in ("Mixed_3b", "Mixed_3c"))
        self.MaxPool3d_4a_3x3 = SamePool((3, 3, 3), (2, 2, 2))
        self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f = (
            Mixed(*_MIXED[k], bn_eps) for k in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"))
        self.MaxPool3d_5a_2x2 = SamePool((2, 2, 2), (2, 2, 2))
        self.Mixed_5b, self.Mixed_5c = (Mixed(*_MIXED[k], bn_eps) for k in ("Mixed_5b", "Mixed_5c"))
        self.logits = Unit3D(1024, num_classes, head=True)
        self._trunk = [self.Conv3d_1a_7x7, self.MaxPool3d_2a_3x3, self.Conv3d_2b_1x1, self.Conv3d_2c_3x3,
                       self.MaxPool3d_3a_3x3, self.Mixed_3b, self.Mixed_3c, self.MaxPool3d_4a_3x3, self.Mixed_4b,
                       self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f, self.MaxPool3d_5a_2x2,
                       self.Mixed_5b, self.Mixed_5c]

    def forward(self, x):
        for layer in self._trunk:
            x = layer(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, T', 1, 1); dropout is identity at eval
        return self.logits(x).flatten(3).mean((2, 3))


def load_i3d(model: InceptionI3d, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load; BN `num_batches_tracked` may be present or absent (files differ), everything else must match."""
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise ValueError(f"{source}: not an i3d_pretrained_400-layout state dict; missing {missing[:5]}, "
                         f"unexpected {extra[:5]}")
    model.load_state_dict(state, strict=False)


def preprocess(video: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, 3, H, W) → float32 (B, 3, T, 224, 224) in [-1, 1] (TF1 bilinear, no crop)."""
    x = resize_tf1_bilinear(video.float(), SIZE)
    return (2.0 * x / 255.0 - 1.0).permute(0, 2, 1, 3, 4).contiguous()


class I3DFVD(FeatureExtractor):
    """`i3d-fvd`: 400-d Kinetics logits per clip for fvd[i3d].

    Args:
        weights: path to i3d_pretrained_400.pt; default: the torch hub cache (~/.cache/torch/hub/checkpoints/).
        expected_sha256: hex (prefix) of the file you trust as the reference copy. No hash is pinned in ReelGAN
            (copies of this file circulate from several mirrors), so by default any file is accepted and the metric
            is labelled fvd[i3d@<sha8>]; with a matching expected_sha256 it is labelled fvd[i3d].
        bn_eps: 1e-3 (TensorFlow, default) or 1e-5 (the PyTorch ports).
        device, batch_size: clips per forward pass.
    """

    name, tag, dim, kind = "i3d-fvd", "i3d", 400, "video"

    def __init__(self, weights: str | os.PathLike | None = None, expected_sha256: str | None = None,
                 bn_eps: float = 1e-3, device="cpu", batch_size: int = 4):
        super().__init__(device=device, batch_size=batch_size)
        path, digest = resolve_weights(weights, WEIGHTS_FILE, expected_sha256, ORIGIN)
        self.net = InceptionI3d(400, bn_eps=bn_eps)
        load_i3d(self.net, load_state_dict_file(path), str(path))
        self.net.eval().requires_grad_(False).to(self.device)
        self.bn_eps = bn_eps
        self.weights_path, self.weights_sha256 = str(path), digest
        self.resize_mode = "tf1-bilinear-224/pm1"
        self.standard = expected_sha256 is not None and bn_eps == 1e-3

    def protocol(self) -> dict:
        return {**super().protocol(), "bn_eps": self.bn_eps}

    def _clips(self, video: torch.Tensor) -> torch.Tensor:  # uint8 (B, T, 3, H, W) → (B, 400)
        if video.shape[1] < MIN_FRAMES:
            raise ValueError(f"i3d-fvd needs clips of at least {MIN_FRAMES} frames, got {video.shape[1]} "
                             "(FVD is usually computed on 16-frame clips)")
        return self.net(preprocess(video))


register_feature_extractor(I3DFVD.name, I3DFVD)
