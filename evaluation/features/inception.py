"""`inception-fid`: the FID Inception-v3 (2048-d pool features) of torch-fidelity
(`FeatureExtractorInceptionV3`), loaded from a local pt_inception-2015-12-05-6726825d.pth (472 keys, strict
load): the network behind pytorch-fid, torch-fidelity and torchmetrics. Nothing is ever downloaded.

Preprocessing (`resize=`), recorded as `resize_mode`:
    "tf1-bilinear" (default): torch-fidelity's own forward: uint8 → float, TF1.x bilinear resize to 299
                   (source coordinate = dst · in/out, no half-pixel offset), then (x − 128) / 128.
    "pytorch-fid":  x / 255, torch bilinear resize to 299 (align_corners=False, no antialias), then 2x − 1,
                   then torch-fidelity's layers (its forward only takes uint8 and always applies the TF1 resize).
"""
from __future__ import annotations

import io
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from evaluation.features import register_feature_extractor
from evaluation.features.base import FeatureExtractor, load_state_dict_file, resolve_weights

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
OFFICIAL_SHA256_PREFIX = "6726825d"
ORIGIN = ("It is published in the GitHub releases of pytorch-fid "
          "(https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE + ") and of "
          "torch-fidelity (https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
          "weights-inception-2015-12-05-6726825d.pth, same suffix; rename it).")
RESIZE_MODES = ("tf1-bilinear", "pytorch-fid")
SIZE = FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE
# torch-fidelity's forward up to the 2048-d pool, by its module names (used when we preprocess ourselves)
TRUNK = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
         "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
         "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool")


def pytorch_fid_preprocess(frames: torch.Tensor) -> torch.Tensor:
    """frames: uint8 (N, 3, H, W) → float32 (N, 3, 299, 299) in [-1, 1], as pytorch-fid prepares them."""
    x = F.interpolate(frames.float() / 255.0, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


def state_dict_for_file(model: nn.Module) -> dict[str, torch.Tensor]:
    """The pt_inception file layout: the network's state dict minus BN's num_batches_tracked (472 keys)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def fidelity_network(state: dict[str, torch.Tensor], source: str) -> FeatureExtractorInceptionV3:
    """torch-fidelity's network with `state` loaded strictly. torch-fidelity reads its weights path with
    torch.load(weights_only=False), so it gets `state` (already read weights-only) re-serialised in memory:
    no code from the file can run, and a path is always given, so it never downloads."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=buffer)
    except RuntimeError as exc:  # strict load_state_dict: the message lists the missing/unexpected keys
        detail = str(exc).replace("\n\t", " ")
        raise ValueError(f"{source}: not a pt_inception state dict ({len(state)} keys, expected 472): "
                         f"{detail[:600]}") from exc


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
            (False) is torch-fidelity's network exactly.
        device, batch_size: where and how many frames per forward pass.
    """

    name, tag, dim, kind = "inception-fid", "inception", 2048, "frame"

    def __init__(self, weights: str | os.PathLike | None = None, expected_sha256: str | None = OFFICIAL_SHA256_PREFIX,
                 resize: str = "tf1-bilinear", channels_last: bool = False, device="cpu", batch_size: int = 32):
        super().__init__(device=device, batch_size=batch_size)
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        path, digest = resolve_weights(weights, WEIGHTS_FILE, expected_sha256, ORIGIN)
        self.net = fidelity_network(load_state_dict_file(path), str(path)).to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.weights_path, self.weights_sha256 = str(path), digest
        self.resize_mode = resize
        self.standard = digest.startswith(OFFICIAL_SHA256_PREFIX)

    def protocol(self) -> dict:
        return {**super().protocol(), "channels_last": self.channels_last}

    def _frames(self, frames: torch.Tensor) -> torch.Tensor:  # uint8 (N, 3, H, W) → float32 (N, 2048)
        if self.resize_mode == "tf1-bilinear":
            return self.net(frames)[0]
        x = pytorch_fid_preprocess(frames)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for name in TRUNK:
            x = getattr(self.net, name)(x)
        return torch.flatten(x, 1)


def write_random_weights(path: str | os.PathLike, seed: int = 0, calibration_images: int = 4) -> str:
    """Writes a random pt_inception-format file (for agreement tests/benchmarks where the official file is
    absent): seeded init, then BN running statistics set from one train-mode pass over random uint8 frames
    so activations stay O(1) through all 94 layers (features of the size the real network gives).
    Atomic write; returns the file's sha256."""
    from torchvision.models.inception import Inception3  # same keys and shapes (pytorch-fid builds on it)

    from data.io import atomic_path, file_sha256

    with torch.device("meta"):  # only the layout is needed: no memory, no init
        layout = Inception3(num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    net = fidelity_network({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in layout.items()
                            if not k.endswith("num_batches_tracked")}, "the pt_inception layout")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (p.shape[1:].numel() ** -0.5 if p.ndim > 1 else 0.1))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.add_(1.0)
                m.momentum = None  # cumulative average: running stats = this batch's stats
        frames = torch.randint(0, 256, (calibration_images, 3, 32, 32), generator=gen, dtype=torch.uint8)
        net.train()(frames)  # torch-fidelity's forward: the tf1-bilinear preprocessing, then the network
    with atomic_path(path) as tmp:
        torch.save(state_dict_for_file(net), tmp)
    return file_sha256(path)


register_feature_extractor(InceptionFID.name, InceptionFID)
