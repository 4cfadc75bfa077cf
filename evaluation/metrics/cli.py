"""`reelgan-eval fid | fvd`: a checkpoint's clips against the dataset's real clips, with the pinned protocol.

Both sides are made the same way: N real clips (a seeded subset of clips.csv) are decoded at the generator's
frames × height × width (stride --stride, from frame 0); each is paired with a condition drawn like training
draws it (a user among the clip's click-or-stronger train interactions, in proportion to event strength; a
random train user for a clip nobody clicked), and the generator makes one fake clip per condition with seeds
base..base+N-1. So real and fake share the condition mix and the network sees the same sizes on both sides.

The floor (on by default, --no-floor to skip): the same distance between the N real clips and a second,
disjoint set of real clips of the same count (fewer when the catalogue is smaller than 2N; the JSON says so).
A Fréchet distance of finite samples is biased upwards, so a generator is judged against this floor, not 0.

--devices N runs N processes (Lightning Fabric, DDP): each decodes, generates and extracts features for its share
of the batches (whole batches, cut as one process cuts them), and the float64 sums of GaussianStats are added
over the processes by torchmetrics; rank 0 writes the result. The value equals the one-process value to float64
rounding.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from evaluation import cli_common as common
from evaluation.features.domain_train import ensure_domain

NETWORKS = {"fid": ("inception-fid", "effnet-lite0"), "fvd": ("domain", "i3d-fvd")}


def register(subparsers) -> None:
    for family, (default, *others) in NETWORKS.items():
        p = subparsers.add_parser(
            family, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
            help=f"{family.upper()}-family metric of a checkpoint ({', '.join([default, *others])})",
            description=__doc__ + f"\nThe result is named {family}[<network>], e.g. {family}[{default.split('-')[0]}].")
        common.add_checkpoint(p)
        common.add_dataset(p)
        p.add_argument("--network", default=default, choices=[default, *others], help="feature network")
        p.add_argument("--weights", type=Path, help="weights file of inception-fid / i3d-fvd / effnet-lite0 "
                                                    "(default: the torch hub cache, or the packaged effnet weights)")
        if family == "fvd":  # only fvd has the domain network; fid's networks are image networks
            common.add_domain(p)
        p.add_argument("--clips", type=int, default=256, help="clips per side (capped at the catalogue size)")
        p.add_argument("--stride", type=int, help="frame stride of the real clips (default: the checkpoint's "
                                                  "training stride, else 1)")
        p.add_argument("--normalisation", choices=("n-1", "n"), default="n-1" if family == "fid" else "n",
                       help="covariance normalisation (n-1: FID convention; n: StyleGAN-V FVD)")
        p.add_argument("--repeats", type=int, default=1, help="k generation seed sets → mean ± std")
        p.add_argument("--truncation", type=float, default=1.0)
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--cache-dir", type=Path, help="real-statistics cache (default: the dataset's cache folder + /stats; never "
                                                         "inside the dataset unless you point it there)")
        p.add_argument("--no-floor", dest="floor", action="store_false",
                       help="skip the real-vs-real floor (a second, disjoint set of real clips of the same count)")
        common.add_devices(p)
        common.add_output(p)
        p.set_defaults(func=run_metric, family=family)


def run_metric(args) -> int:
    common.launch_devices(args)  # --devices N: from here on, this runs in each of N processes
    from data.contract import load_dataset
    from data.preferences import PreferenceEmbeddings
    from data.tensors import model_to_uint8
    from evaluation.metrics.compute import compute_fid, compute_fvd, repeat_metric, resolve_extractor
    from evaluation.metrics.pairing import decode_clips, paired_conditions, rank_batches, sample_clip_ids
    from evaluation.metrics.stats import rank_zero
    from generate.loading import load_generator
    from generate.sampler import generate_clips

    ds = load_dataset(args.dataset)
    emb = PreferenceEmbeddings.load(common.embeddings_path(args.dataset))
    generator, ginfo = load_generator(args.checkpoint, device=args.device)
    frames, size = generator.frames, (generator.height, generator.width)  # the generator's own clip shape
    if args.stride is None:
        args.stride = int(ginfo.get("training", {}).get("stride", 1))
    rng = np.random.default_rng(args.seed)
    clip_ids = sample_clip_ids(ds, args.clips, rng)
    n = len(clip_ids)
    conds, _ = paired_conditions(ds, emb, clip_ids, rng)
    kwargs = {"device": args.device}
    if args.network == "domain":
        if rank_zero():  # one process trains a missing classifier; the others wait, then load it
            ensure_domain(args.dataset, args.domain, not args.no_progress)
        common.barrier()
        kwargs["weights"] = ensure_domain(args.dataset, args.domain, False)
    elif args.weights is not None:
        kwargs["weights"] = args.weights
    extractor = resolve_extractor(args.network, kwargs)  # built once: --repeats reuse its weights
    bs = args.batch_size
    mine = rank_batches(n, bs)  # this process's batches (all of them with one process)
    skipped: list[dict] = []  # real clips that do not decode: left out and counted in the result (this rank's)
    decoded = [False]

    def real():  # decoded a batch at a time, only when the statistics cache misses
        decoded[0] = True
        return (decode_clips(ds, clip_ids[i:i + bs], frames, args.stride, size, skipped) for i in mine)

    def run(seed_base: int) -> dict:
        seeds = list(range(seed_base, seed_base + n))

        def fake():
            for i in mine:
                video = generate_clips(generator, conds[i:i + bs], seeds[i:i + bs], args.truncation, bs, args.device)
                yield model_to_uint8(video)  # (B, T, C, H, W) uint8, as the real side

        compute = compute_fid if args.family == "fid" else compute_fvd
        return compute(real, fake, extractor, normalisation=args.normalisation,
                       cache_dir=args.cache_dir or common.artefact_dir(args.dataset) / "stats", real_key=real_key,
                       progress=not args.no_progress and rank_zero(), frames=frames, stride=args.stride, offset=0, seeds=seeds,
                       extra={"truncation": args.truncation, "size": list(size), "conditions": "paired, train users",
                              "sampling_seed": args.seed})

    real_key = {"clips_csv_sha256": hashlib.sha256((args.dataset / "clips.csv").read_bytes()).hexdigest(),
                "clip_ids_sha256": hashlib.sha256("\n".join(clip_ids).encode()).hexdigest(), "clips": n,
                "frames": frames, "stride": args.stride, "offset": 0, "size": list(size)}
    if args.repeats > 1:
        res = repeat_metric(run, [args.seed + r * n for r in range(args.repeats)])
        res["value"] = res["mean"]
    else:
        res = run(args.seed)
    if args.network in ginfo.get("trained_against", []):
        res["biased_judge"] = (f"the generator was trained against {args.network} features (a projected or hybrid "
                               f"D): this {res.get('metric', args.network)} is a biased judge (Kynkäänniemi et al., "
                               "ICLR 2023); use fvd[domain]")
    if args.network == "domain":  # fvd[domain] is only as good as the classifier whose features it reads
        from evaluation.features.domain import load_domain_classifier
        from evaluation.features.domain_train import classifier_trust

        res["domain_classifier"] = classifier_trust(load_domain_classifier(kwargs["weights"])[1].get("report"))
        if res["domain_classifier"]["untrusted"]:
            res.setdefault("warnings", []).append(f"the domain classifier is {res['domain_classifier']['note']}")
    if args.floor:
        res["floor"] = real_floor(ds, clip_ids, real, extractor, args, frames, size, real_key, rng)
    res["skipped_clips"] = {"count": len(skipped) if decoded[0] else None, "clips": skipped[:20],
                            "note": "real clips that do not decode are left out, as training skips them" if decoded[0]
                            else "real statistics came from the cache: the clips were not decoded in this run"}
    result = common.made_by(args, checkpoint=str(args.checkpoint), checkpoint_sha256=ginfo.get("sha256"),
                            dataset=str(args.dataset), embeddings_hash=emb.hash, **res)
    if rank_zero():
        common.emit(result, args.out)
    return 0


def real_floor(ds, clip_ids: list[str], real, extractor, args, frames: int, size, real_key: dict, rng) -> dict:
    """The metric between the N real clips and a disjoint real set of (up to) the same count → {value, clips, note}.
    Under --devices each process takes its share of the second set's batches, as it does for the fake side."""
    from evaluation.metrics.compute import compute_fid, compute_fvd
    from evaluation.metrics.pairing import decode_clips, rank_batches
    from evaluation.metrics.stats import rank_zero

    taken = set(clip_ids)
    rest = [c for c in ds.clips["clip_id"] if c not in taken]
    m = min(len(clip_ids), len(rest))
    if m < 2:
        return {"value": None, "clips": m, "note": "the catalogue has no second set of real clips to compare with"}
    other = [rest[i] for i in sorted(rng.permutation(len(rest))[:m])]
    bs = args.batch_size
    second = (decode_clips(ds, other[i:i + bs], frames, args.stride, size) for i in rank_batches(m, bs))
    compute = compute_fid if args.family == "fid" else compute_fvd
    res = compute(real, second, extractor, normalisation=args.normalisation,
                  cache_dir=args.cache_dir or common.artefact_dir(args.dataset) / "stats", real_key=real_key,
                  progress=not args.no_progress and rank_zero(), frames=frames, stride=args.stride, offset=0,
                  extra={"floor_of": "real vs real, disjoint clips"})
    note = "real vs real, disjoint clips, same count" if m == len(clip_ids) else \
        f"real vs real, disjoint clips: only {m} of {len(clip_ids)} left in the catalogue for the second set"
    return {"value": res["value"], "clips": [len(clip_ids), m], "note": note}
