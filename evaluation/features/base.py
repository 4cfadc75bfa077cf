"""The one base class every feature network derives from, and the weights-file rules they share.

Input to every extractor: uint8 video (B, T, C=3, H, W), RGB, any H and W (each network resizes).
Output of `.features(video)`: float64
    kind "frame": (B*T, dim), one row per frame, clip-major (rows b*T .. b*T+T-1 are clip b)
    kind "video": (B, dim), one row per clip
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from data.io import file_sha256

KINDS = ("frame", "video")


def hub_checkpoint_dir() -> Path:
    """Where torch hub keeps checkpoints (~/.cache/torch/hub/checkpoints unless TORCH_HOME says otherwise)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(weights: str | os.PathLike | None, filename: str, expected_sha256: str | None,
                    origin: str, search_hub: bool = True) -> tuple[Path, str]:
    """Finds a weights file and checks its sha256. Never downloads.

    weights: explicit path (wins), else `hub_checkpoint_dir()/filename` when search_hub.
    expected_sha256: a full hex digest or a prefix (the torch-hub filename suffix); None accepts any file
        (its sha256 is still returned and recorded, and the metric is then labelled as non-standard).
    origin: one sentence saying where the official file comes from (goes into the error message).
    Returns (path, sha256 hex).
    """
    candidates = [Path(weights).expanduser()] if weights is not None else []
    if weights is None and search_hub:
        candidates.append(hub_checkpoint_dir() / filename)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = str(candidates[0]) if candidates else "(no path given)"
        raise FileNotFoundError(
            f"weights file not found at {where}. Put {filename} there (or pass --weights PATH / weights=PATH). "
            f"{origin} Nothing is downloaded at run time.")
    digest = file_sha256(path)
    if expected_sha256 is not None and not digest.startswith(expected_sha256.lower()):
        raise ValueError(
            f"{path}: sha256 {digest[:16]}… does not match the expected {expected_sha256}. This is not the official "
            f"{filename}. {origin} To use other weights on purpose, pass expected_sha256=None "
            f"(the metric is then labelled with the file's hash, never as the standard one).")
    return path, digest


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (tensors only), unwrapping a {"state_dict": ...} container."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code in it, truncated file, ...
        raise ValueError(f"{path}: cannot be read as a plain state dict with weights_only=True ({exc})") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (name → tensor), got {type(obj).__name__}")
    return obj


def check_video(video: torch.Tensor, who: str) -> torch.Tensor:
    """video: uint8 (B, T, 3, H, W) → the same tensor, or a ValueError saying what was expected."""
    if not torch.is_tensor(video):
        raise ValueError(f"{who}: expected a torch.Tensor video, got {type(video).__name__}")
    if video.dtype != torch.uint8 or video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"{who}: expected uint8 video (B, T, 3, H, W), got {video.dtype} {tuple(video.shape)}; "
                         "convert model output with data.tensors.model_to_uint8")
    if video.shape[0] == 0 or video.shape[1] == 0:
        raise ValueError(f"{who}: empty video batch {tuple(video.shape)}")
    return video


class FeatureExtractor(nn.Module):
    """Base class: a frozen network that maps uint8 video to float64 feature rows.

    Subclasses set the class attributes and implement `_frames` (kind "frame": uint8 (N, 3, H, W) → (N, dim))
    or `_clips` (kind "video": uint8 (B, T, 3, H, W) → (B, dim)). Instance attributes set in __init__:
    `weights_sha256`, `weights_path`, `resize_mode`, `standard` (True only with the official weights and the
    standard preprocessing: only then is the metric labelled with the plain network tag).
    """

    name: str = ""        # registry name, e.g. "inception-fid"
    tag: str = ""         # network tag in metric names, e.g. "inception" → fid[inception]
    dim: int = 0
    kind: str = "frame"

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 32):
        super().__init__()
        if self.kind not in KINDS:
            raise ValueError(f"{type(self).__name__}.kind must be one of {KINDS}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.weights_sha256: str | None = None
        self.weights_path: str | None = None
        self.resize_mode: str = ""
        self.standard: bool = False

    @property
    def metric_tag(self) -> str:
        """Tag used in metric names: the plain tag for the standard protocol, tag@sha8 otherwise."""
        if self.standard:
            return self.tag
        return f"{self.tag}@{(self.weights_sha256 or 'noweights')[:8]}"

    @torch.inference_mode()
    def features(self, video: torch.Tensor) -> torch.Tensor:
        """video: uint8 (B, T, 3, H, W) → float64 (B*T, dim) for frame networks, (B, dim) for video networks."""
        check_video(video, self.name)
        self.eval()
        if self.kind == "frame":
            flat = video.reshape(-1, *video.shape[2:])
            out = [self._frames(flat[i:i + self.batch_size].to(self.device)).double().cpu()
                   for i in range(0, flat.shape[0], self.batch_size)]
        else:
            out = [self._clips(video[i:i + self.batch_size].to(self.device)).double().cpu()
                   for i in range(0, video.shape[0], self.batch_size)]
        feats = torch.cat(out)
        if feats.shape[1] != self.dim:
            raise RuntimeError(f"{self.name} produced {feats.shape[1]}-d features, expected {self.dim}")
        return feats

    def protocol(self) -> dict:
        """What a metrics JSON records about this network."""
        return {"extractor": self.name, "network_tag": self.metric_tag, "dim": self.dim, "kind": self.kind,
                "weights_sha256": self.weights_sha256, "weights_path": self.weights_path,
                "resize_mode": self.resize_mode, "standard": self.standard}

    def _frames(self, frames: torch.Tensor) -> torch.Tensor:  # uint8 (N, 3, H, W) → (N, dim)
        raise NotImplementedError(f"{type(self).__name__} is a frame network and must implement _frames")

    def _clips(self, video: torch.Tensor) -> torch.Tensor:  # uint8 (B, T, 3, H, W) → (B, dim)
        raise NotImplementedError(f"{type(self).__name__} is a video network and must implement _clips")
