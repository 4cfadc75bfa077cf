"""FID / FVD from streams of uint8 video batches, with a cached real side and a pinned protocol.

The pipeline is written once (`feature_stats` → `frechet_metric`); `compute_fid` and `compute_fvd` only say which
network family they need. Inputs are iterables of uint8 video batches (B, T, 3, H, W) (lists, generators, data
loaders), so nothing holds more than one batch of video and O(d²) statistics in memory.

    from evaluation.metrics.compute import compute_fid, compute_fvd, repeat_metric
    res = compute_fvd(real_batches, fake_batches, "i3d-fvd", extractor_kwargs={"weights": path},
                      normalisation="n", cache_dir="runs/x/stats", real_key={"dataset": ds_hash, "frames": 16,
                      "stride": 1, "clips": 2048, "seed": 0}, frames=16, stride=1, seeds=seeds)
    res["metric"], res["value"], res["protocol"]   # "fvd[i3d@…]", 123.4, {...}
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torchmetrics.aggregation import SumMetric

from data.io import progress as progress_bar
from evaluation.features import FeatureExtractor, feature_extractor_class, get_feature_extractor
from evaluation.metrics.frechet import frechet_terms
from evaluation.metrics.protocol import METRIC_KINDS, Protocol, metric_name
from evaluation.metrics.stats import GaussianStats, load_sums, rank_zero, save_sums, sums_hash


def resolve_extractor(extractor: str | FeatureExtractor, extractor_kwargs: dict | None = None) -> FeatureExtractor:
    """A registry name (built with extractor_kwargs) or an already-built extractor (kwargs must then be empty)."""
    if isinstance(extractor, FeatureExtractor):
        if extractor_kwargs:
            raise ValueError("extractor_kwargs are only used with an extractor name, not a built extractor")
        return extractor
    return get_feature_extractor(extractor, **(extractor_kwargs or {}))


def feature_stats(batches: Iterable[torch.Tensor], extractor: FeatureExtractor, normalisation: str = "n-1",
                  max_clips: int | None = None, progress: str | None = None) -> tuple[GaussianStats, int]:
    """Streams uint8 (B, T, 3, H, W) batches through `extractor` into GaussianStats.

    Stops after `max_clips` clips if given (the last batch is cut). `progress`: a label shows a rich progress bar.
    Returns (stats, clips seen), summed over the ranks of a process group when there is one (each rank streams
    its share of the batches; see evaluation.metrics.pairing.rank_batches). Raises if the stream is empty.
    """
    stats = GaussianStats(extractor.dim, normalisation)
    seen = SumMetric()  # clips, summed over ranks like the statistics
    clips = 0
    with progress_bar(enabled=bool(progress)) as bar:
        task = bar.add_task(progress or "", total=max_clips)
        for batch in batches:
            if max_clips is not None and clips >= max_clips:
                break
            if max_clips is not None:
                batch = batch[: max_clips - clips]
            stats.update(extractor.features(batch))
            clips += int(batch.shape[0])
            bar.update(task, completed=clips)
    seen.update(torch.tensor(float(clips), dtype=torch.float64))
    stats, clips = stats.merged(), int(seen.compute())
    if clips == 0:
        raise ValueError(f"no video batches to compute {extractor.name} features from (empty iterable)")
    return stats, clips



def real_cache_path(cache_dir: str | os.PathLike, extractor: FeatureExtractor, real_key: dict) -> Path:
    """Cache file for the real side: keyed by sha256 of (network record, caller's description of the real data)."""
    ident = {"network": {k: v for k, v in extractor.protocol().items() if k != "weights_path"}, "real": real_key}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"real-{extractor.name}-{digest}.safetensors"


def real_stats(real: Iterable[torch.Tensor] | Callable[[], Iterable[torch.Tensor]], extractor: FeatureExtractor,
               normalisation: str = "n-1", cache_dir=None, real_key: dict | None = None, max_clips=None,
               progress: str | None = None) -> tuple[GaussianStats, int, str, str | None]:
    """Real-side statistics, from the cache when `cache_dir` holds them (then `real` is never iterated).

    real: the batches, or a zero-argument callable returning them (so a cache hit skips decoding entirely).
    real_key: JSON-able description of the real data (dataset hash, frames, stride, clip count, seed...);
        required with cache_dir, because a stream cannot be hashed without reading it.
    Returns (stats, clips, sums sha256, cache path or None).
    """
    path = None
    if cache_dir is not None:
        if not real_key:
            raise ValueError("cache_dir needs real_key: a dict that identifies the real data (dataset hash, frames, "
                             "stride, clip count, seed), so a changed dataset never reuses stale statistics")
        path = real_cache_path(cache_dir, extractor, real_key)
        if path.is_file():
            sums, meta, digest = load_sums(path)
            stats = GaussianStats(extractor.dim, normalisation, sync_on_compute=False).load_sums(sums)
            return stats, int(meta.get("clips", 0)), digest, str(path)
    stats, clips = feature_stats(real() if callable(real) else real, extractor, normalisation, max_clips, progress)
    if path is not None and rank_zero():   # the sums are already every rank's: one writer
        digest = save_sums(path, stats.sums(), {"clips": clips, "real_key": real_key,
                                                "network": extractor.protocol()})
    else:
        digest = sums_hash(stats.sums())
    return stats, clips, digest, (str(path) if path else None)


def frechet_metric(family: str, real_stats_: GaussianStats, fake_stats: GaussianStats, extractor: FeatureExtractor,
                   real_clips: int, fake_clips: int, real_stats_sha256: str, real_stats_cache: str | None = None,
                   **pins) -> dict:
    """Fréchet distance between two GaussianStats, as a result dict {"metric", "value", "protocol", "terms"}.
    `pins`: frames, stride, offset, seeds, extra (see evaluation.protocol.Protocol). For conditional FVD, call
    this per group with that group's real and fake stats."""
    if real_stats_.normalisation != fake_stats.normalisation:
        raise ValueError("real and fake statistics use different covariance normalisations "
                         f"({real_stats_.normalisation} vs {fake_stats.normalisation})")
    name = metric_name(family, extractor)
    g_real, g_fake = real_stats_.compute(), fake_stats.compute()
    terms = frechet_terms(g_real.mu, g_real.sigma, g_fake.mu, g_fake.sigma)
    proto = Protocol(metric=name, network=extractor.protocol(), covariance_normalisation=g_real.normalisation,
                     real_clips=real_clips, fake_clips=fake_clips, real_rows=g_real.n, fake_rows=g_fake.n,
                     real_stats_sha256=real_stats_sha256, real_stats_cache=real_stats_cache,
                     frechet_route=terms["route"], **pins)
    result = {"metric": name, "value": terms["value"], "protocol": proto.to_dict(),
              "terms": {k: v for k, v in terms.items() if k not in ("value", "route")}}
    warnings = sample_size_warnings(family, int(g_real.n), int(g_fake.n), extractor.dim, real_clips, fake_clips)
    if warnings:
        result["warnings"] = warnings
    return result


# FVD is reported on 2,048 clips per side in the literature (StyleGAN-V); fewer give a larger, noisier value.
HEADLINE_FVD_CLIPS = 2048


def sample_size_warnings(family: str, real_rows: int, fake_rows: int, dim: int, real_clips: int,
                         fake_clips: int) -> list[str]:
    """Honest small-data caveats: a covariance from fewer rows than dimensions is singular (the distance is then
    dominated by estimation bias), and an FVD on fewer than 2,048 clips is not comparable to published ones."""
    out = []
    rows = min(real_rows, fake_rows)
    if rows < dim:
        out.append(f"N < d: {rows} feature rows against a {dim}-dimensional feature; the covariance is singular and "
                   "the distance is dominated by sample-size bias. Compare only with the real-vs-real floor of the "
                   "same N, or use more clips or a smaller feature (the domain network)")
    if family == "fvd" and min(real_clips, fake_clips) < HEADLINE_FVD_CLIPS:
        out.append(f"{min(real_clips, fake_clips)} clips per side, fewer than the {HEADLINE_FVD_CLIPS} of a headline "
                   "FVD: not comparable with published FVDs; compare runs at the same clip count only")
    return out


def _compute(family: str, real, fake, extractor, *, extractor_kwargs=None, normalisation: str, cache_dir=None,
             real_key=None, max_clips=None, progress=False, **pins) -> dict:
    if isinstance(extractor, str):  # fail on a kind mismatch before building (loading weights is the slow part)
        kind = feature_extractor_class(extractor).kind
        if kind != METRIC_KINDS[family]:
            raise ValueError(f"{family} needs a {METRIC_KINDS[family]} network, but {extractor!r} is a {kind} "
                             f"network (use {'fvd' if family == 'fid' else 'fid'} with it)")
    ext = resolve_extractor(extractor, extractor_kwargs)
    metric_name(family, ext)
    label = (lambda side: f"{family}[{ext.metric_tag}] {side}") if progress else (lambda side: None)
    r_stats, r_clips, r_hash, r_cache = real_stats(real, ext, normalisation, cache_dir, real_key, max_clips,
                                                   label("real"))
    f_stats, f_clips = feature_stats(fake() if callable(fake) else fake, ext, normalisation, max_clips, label("fake"))
    return frechet_metric(family, r_stats, f_stats, ext, r_clips, f_clips, r_hash, r_cache, **pins)


def compute_fid(real, fake, extractor: str | FeatureExtractor = "inception-fid", *, extractor_kwargs=None,
                normalisation: str = "n-1", cache_dir=None, real_key: dict | None = None,
                max_clips: int | None = None, progress: bool = False, **pins) -> dict:
    """FID-family metric with a frame network (every frame of every clip is one feature row).

    real, fake: iterables of uint8 video batches (B, T, 3, H, W) (or zero-argument callables returning them).
    extractor: "inception-fid" (default), "effnet-lite0", or a built frame extractor.
    normalisation: "n-1" (default, pytorch-fid/torch-fidelity) or "n".
    cache_dir + real_key: reuse the real statistics (see `real_stats`). max_clips: cap per side.
    pins: frames, stride, offset, seeds, extra → recorded in the protocol.
    Returns {"metric": "fid[inception]", "value": float, "protocol": {...}, "terms": {...}}.
    """
    return _compute("fid", real, fake, extractor, extractor_kwargs=extractor_kwargs, normalisation=normalisation,
                    cache_dir=cache_dir, real_key=real_key, max_clips=max_clips, progress=progress, **pins)


def compute_fvd(real, fake, extractor: str | FeatureExtractor = "i3d-fvd", *, extractor_kwargs=None,
                normalisation: str = "n", cache_dir=None, real_key: dict | None = None,
                max_clips: int | None = None, progress: bool = False, **pins) -> dict:
    """FVD-family metric with a video network (one feature row per clip). Same arguments as `compute_fid`;
    extractor "i3d-fvd" (default) or "domain"; normalisation defaults to "n" (StyleGAN-V's FVD)."""
    return _compute("fvd", real, fake, extractor, extractor_kwargs=extractor_kwargs, normalisation=normalisation,
                    cache_dir=cache_dir, real_key=real_key, max_clips=max_clips, progress=progress, **pins)


def mean_std(values: list[float]) -> dict:
    """{"mean", "std" (sample std, ddof=1; 0.0 for one value), "n", "values"}."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "ddof": 1, "values": list(values)}


def repeat_metric(run: Callable[[int], dict], seeds: list[int]) -> dict:
    """`--repeats k`: run(seed) → one result dict (from compute_fid/compute_fvd) per generation seed.

    Returns {"metric", "mean", "std", "n", "ddof", "values", "seeds", "protocol"}: the protocol of the first run,
    with per-run seeds dropped (they are in "seeds"). All runs must report the same metric name.
    """
    if not seeds:
        raise ValueError("repeat_metric needs at least one seed")
    results = [run(seed) for seed in seeds]
    names = {r["metric"] for r in results}
    if len(names) != 1:
        raise ValueError(f"repeats produced different metrics {sorted(names)}; the protocol must not change")
    proto = dict(results[0]["protocol"])
    proto.pop("seeds", None)
    return {"metric": names.pop(), **mean_std([r["value"] for r in results]), "seeds": list(seeds),
            "protocol": proto}


def format_result(result: dict, digits: int = 2) -> str:
    """One line for logs and terminals, always with the network in the name:
    "fvd[i3d] = 123.45" or, for repeat_metric output, "fvd[i3d] = 123.45 ± 3.21 (k=3)"."""
    if "mean" in result:
        return f"{result['metric']} = {result['mean']:.{digits}f} ± {result['std']:.{digits}f} (k={result['n']})"
    return f"{result['metric']} = {result['value']:.{digits}f}"
