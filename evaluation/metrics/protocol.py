"""The pinned-protocol record every FID/FVD number carries, and the metric-naming rule.

FVD numbers from different codebases disagree through resize semantics, covariance N vs N−1, clip count,
frames/stride/offset and the weights' source. So each result records all of them, and its name carries the
network: fid[inception], fvd[i3d], fid[effnet-lite0], fvd[domain]. A number made with non-reference weights is
named with the weights' hash (fid[inception@1a2b3c4d]); nothing is ever called plain "FID" or "FVD".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import metadata

METRIC_KINDS = {"fid": "frame", "fvd": "video"}  # metric family → the extractor kind it needs


def _version() -> str:
    try:
        return metadata.version("reelgan")
    except metadata.PackageNotFoundError:
        return "unknown"


def metric_name(family: str, extractor) -> str:
    """("fid" | "fvd", extractor) → "fid[inception]" etc.; refuses a family/kind mismatch."""
    if family not in METRIC_KINDS:
        raise ValueError(f"metric family must be one of {sorted(METRIC_KINDS)}, got {family!r}")
    need = METRIC_KINDS[family]
    if extractor.kind != need:
        raise ValueError(f"{family} needs a {need} network, but {extractor.name!r} is a {extractor.kind} network "
                         f"(use {'fvd' if family == 'fid' else 'fid'} with it)")
    return f"{family}[{extractor.metric_tag}]"


@dataclass
class Protocol:
    """Everything needed to reproduce (or refuse to compare) one Fréchet metric value."""

    metric: str                       # name with the network tag, e.g. fid[inception]
    network: dict                     # extractor.protocol(): name, tag, dim, kind, weights_sha256, resize_mode, ...
    covariance_normalisation: str     # "n-1" (unbiased, FID convention) or "n" (StyleGAN-V FVD convention)
    real_clips: int                   # clips fed to the network
    fake_clips: int
    real_rows: int                    # feature rows in the statistics (frames for FID, clips for FVD)
    fake_rows: int
    real_stats_sha256: str            # hash of the real-data sums (n, Σx, Σxxᵀ), cached or not
    real_stats_cache: str | None = None   # cache file the real statistics came from / went to
    frechet_route: str = "cholesky"   # "cholesky" or "pivoted-cholesky" (a singular Σ): how tr√(Σ1Σ2) was computed
    frames: int | None = None         # clip sampling, as given by the caller
    stride: int | None = None
    offset: int | str | None = None
    seeds: list[int] | None = None    # generation seeds of the fake clips, as given by the caller
    extra: dict = field(default_factory=dict)
    reelgan_version: str = field(default_factory=lambda: _version())

    def to_dict(self) -> dict:
        return asdict(self)
