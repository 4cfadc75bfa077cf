"""`reelgan-eval align | engagement`: the personalisation half of evaluation, as thin shells.

    reelgan-eval align --checkpoint C --dataset D         preference alignment, CAS, conditional fvd[domain]
    reelgan-eval engagement --dataset D [--checkpoint C]  train + evaluate the engagement model (AUC, NDCG@10 vs
                                                          popularity / MF / random); with C, also score its clips
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from data.io import progress
from evaluation import cli_common as common
from evaluation.features.domain_train import classifier_trust, ensure_domain
from evaluation.personalisation.engagement import engagement_path


def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser("align", formatter_class=fmt, help="preference alignment of held-out users' clips",
                              description="Generate K clips per held-out user; the domain classifier reads their "
                                          "attributes. Hit rate vs revealed (and hidden-truth) favourites, against "
                                          "random-catalogue and shuffled-condition baselines; CAS; conditional FVD.")
    common.add_checkpoint(p)
    common.add_dataset(p)
    common.add_domain(p)
    p.add_argument("--embeddings", type=Path, help="preferences file (default DATASET/embeddings/preferences.safetensors)")
    p.add_argument("--clips-per-user", type=int, default=4, help="K generated clips per held-out user")
    p.add_argument("--max-users", type=int, help="cap on held-out users (first by id)")
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--group-attribute", default="colour", help="attribute that groups users for conditional FVD")
    p.add_argument("--cas-clips", type=int, default=1024,
                   help="generated clips the CAS classifier trains on (an attribute-conditioned generator)")
    p.add_argument("--cas-steps", type=int,
                   help="the CAS classifier's optimiser steps (default: the domain classifier's own, so CAS compares "
                        "with its real-trained accuracy; fewer is faster and reads lower)")
    p.add_argument("--quality-clips", type=int, default=128,
                   help="real clips (seeded subset, at the generator's size and training stride) for the sharpness "
                        "and motion ratios; 0 = skip")
    common.add_devices(p)
    common.add_output(p, threads=1)
    p.set_defaults(func=run_align)

    p = subparsers.add_parser("engagement", formatter_class=fmt, help="train + evaluate the engagement model",
                              description="Train P(click), P(purchase) on train interactions; report held-out AUC "
                                          "and NDCG@10 against popularity, MF and random; save the model for the slot.")
    common.add_dataset(p)
    common.add_checkpoint(p, required=False)
    common.add_domain(p)
    p.add_argument("--embeddings", type=Path, help="preferences file (default DATASET/embeddings/preferences.safetensors)")
    p.add_argument("--model-out", type=Path, help="engagement model file (default DATASET/evaluation/engagement.safetensors)")
    p.add_argument("--steps", type=int, default=600, help="optimiser steps (batches of 256 pairs)")
    p.add_argument("--clips-per-user", type=int, default=2, help="with --checkpoint: generated clips per held-out user")
    common.add_output(p, threads=1)
    p.set_defaults(func=run_engagement)


def _load_common(args):
    from data.contract import load_dataset
    from data.preferences import PreferenceEmbeddings
    from evaluation.features.domain import load_domain_classifier
    from evaluation.features.realclips import load_real_clips

    ds = load_dataset(args.dataset)
    emb = PreferenceEmbeddings.load(args.embeddings or common.embeddings_path(args.dataset))
    dpath = ensure_domain(args.dataset, args.domain, not args.no_progress)
    domain, dinfo = load_domain_classifier(dpath, device=args.device)
    real = load_real_clips(args.dataset, domain.frames, domain.height, domain.width, list(domain.vocab),
                           progress=not args.no_progress)
    return ds, emb, domain, dinfo, real


def run_align(args) -> int:
    common.launch_devices(args)  # --devices N: each process makes its share of the clips, rank 0 writes
    from evaluation.metrics.stats import rank_zero
    from evaluation.personalisation.alignment import AlignmentConfig, load_truth, preference_alignment
    from generate.loading import load_generator

    if rank_zero():  # one process trains a missing domain classifier; the others wait, then load it
        ensure_domain(args.dataset, args.domain, not args.no_progress)
    common.barrier()
    ds, emb, domain, dinfo, real = _load_common(args)
    generator, ginfo = load_generator(args.checkpoint, device=args.device)
    cfg = AlignmentConfig(clips_per_user=args.clips_per_user, seed=args.seed, truncation=args.truncation,
                          batch_size=args.batch_size, group_attribute=args.group_attribute, max_users=args.max_users,
                          cas_clips=args.cas_clips, cas_steps=args.cas_steps)
    with progress(not args.no_progress and rank_zero(), console=common.console) as bar:
        task = bar.add_task("generate + read (own, shuffled)", total=2)
        res = preference_alignment(generator, emb, ds, domain, real, cfg,
                                   real_accuracy=(dinfo.get("report") or {}).get("val_accuracy"),
                                   real_chance=(dinfo.get("report") or {}).get("chance"),
                                   domain_report=dinfo.get("report"),
                                   truth=load_truth(args.dataset), device=args.device,
                                   real_at_size=_real_at_generator_size(args, ds, generator, ginfo),
                                   progress=lambda done, total: bar.update(task, completed=done))
    source = "hidden_truth" if "hidden_truth" in res["alignment"] else "revealed"
    metrics = {}
    for name in ("sharpness", "motion"):
        if res["quality"] and res["quality"][name]["ratio"] is not None:
            metrics[f"{name}_ratio"] = res["quality"][name]["ratio"]
    if res["quality"] and res["quality"]["seed_diversity"] is not None:
        metrics["seed_diversity"] = res["quality"]["seed_diversity"]
    for a, row in res["alignment"][source].items():
        metrics[f"alignment[{a}]"] = row["hit_rate"]
        metrics[f"alignment_shuffled[{a}]"] = row["shuffled"]
        metrics[f"alignment_random[{a}]"] = row["random"]
    for a, row in res["cas"].items():
        if row["score"] is not None:
            metrics[f"cas[{a}]"] = row["score"]
    if res["conditional_fvd"]["matched_mean"] is not None:
        metrics["conditional_fvd[domain] matched"] = res["conditional_fvd"]["matched_mean"]
        metrics["conditional_fvd[domain] mismatched"] = res["conditional_fvd"]["mismatched_mean"]
    result = common.made_by(args, checkpoint=str(args.checkpoint), checkpoint_sha256=ginfo.get("sha256"),
                            dataset=str(args.dataset), domain_sha256=dinfo["sha256"], embeddings_hash=emb.hash,
                            domain_classifier=classifier_trust(dinfo.get("report"), domain.vocab),
                            metrics_from=source, metrics=metrics, skipped_clips=len(real.skipped or []),
                            processes=args.devices * args.num_nodes, **res)
    if rank_zero():
        common.emit(result, args.out)
    return 0


def _real_at_generator_size(args, ds, generator, ginfo):
    """`--quality-clips` real clips (seeded subset) at the generator's frames × size, from frame 0 at its training
    stride (read from the checkpoint, else 1) → uint8 (N, T, C, H, W), or None with --quality-clips 0."""
    if not args.quality_clips:
        return None
    from evaluation.metrics.pairing import decode_clips

    stride = int(ginfo.get("training", {}).get("stride", 1))
    ids = list(ds.clips["clip_id"])
    pick = np.random.default_rng(args.seed).permutation(len(ids))[: args.quality_clips]
    return decode_clips(ds, [ids[i] for i in sorted(pick)], generator.frames, stride,
                        (generator.height, generator.width))


def run_engagement(args) -> int:
    from evaluation.personalisation.engagement import EngagementScorer, EngagementTrainConfig, clip_inputs, train_engagement_model
    from evaluation.personalisation.engagement_eval import evaluate_engagement

    ds, emb, domain, dinfo, real = _load_common(args)
    model, summary = train_engagement_model(ds.interactions, emb, domain, real.clip_ids, real.video,
                                            EngagementTrainConfig(steps=args.steps, seed=args.seed),
                                            progress=not args.no_progress)
    scorer = EngagementScorer(model, domain)
    inputs = clip_inputs(domain, real.video)
    report = evaluate_engagement(scorer, inputs, ds.interactions, emb, real.clip_ids, seed=args.seed)
    out = args.model_out or engagement_path(args.dataset)
    digest = scorer.save(out, extra={"embeddings_hash": emb.hash, "dataset": str(args.dataset),
                                     "heldout": report["methods"], "training": summary,
                                     "domain_report": dinfo.get("report")})  # the slot's gate reads its accuracy
    metrics = {(k if m == "engagement" else f"{m}:{k}"): v for m, r in report["methods"].items()
               for k, v in r.items() if k in ("auc[click]", "auc[purchase]", "ndcg@10")}
    result = common.made_by(args, dataset=str(args.dataset), model=str(out), engagement_sha256=digest,
                            domain_sha256=dinfo["sha256"], embeddings_hash=emb.hash, metrics=metrics,
                            domain_classifier=classifier_trust(dinfo.get("report"), domain.vocab),
                            training=summary, heldout=report, skipped_clips=len(real.skipped or []))
    if args.checkpoint is not None:
        result["generated"] = _score_generated(args, scorer, emb, ds, inputs)
    common.emit(result, args.out)
    main_metric = report["methods"]["engagement"]
    if main_metric["auc[click]"] is None:  # the JSON is written (nulls + reasons); the exit status says it failed
        common.console.print(f"[red]error: auc[click] is undefined: {main_metric['reasons']['auc[click]']}")
        return 1
    return 0


def _score_generated(args, scorer, emb, ds, inputs) -> dict:
    """P(click) of clips generated for held-out users, vs a random catalogue clip and vs shuffled conditions."""
    import torch

    from evaluation.personalisation.alignment import clip_seeds, derangement, heldout_users
    from generate.loading import load_generator
    from generate.sampler import generate_clips

    generator, ginfo = load_generator(args.checkpoint, device=args.device)
    users = heldout_users(ds, emb)
    k = args.clips_per_user
    conds = emb.conditions(users).repeat_interleave(k, 0)
    seeds = clip_seeds(len(users), k, args.seed)
    rng = np.random.default_rng(args.seed)
    perm = torch.as_tensor(derangement(len(users), rng)).repeat_interleave(k) * k + torch.arange(k).repeat(len(users))
    own = scorer.score(conds, generate_clips(generator, conds, seeds, device=args.device))["click"]
    shuffled = scorer.score(conds, generate_clips(generator, conds[perm], seeds, device=args.device))["click"]
    pick = torch.as_tensor(rng.integers(0, len(inputs[0]), len(conds)))
    catalogue = scorer.score_inputs(inputs[0][pick], inputs[1][pick], conds)["click"]
    return {"checkpoint": str(args.checkpoint), "checkpoint_sha256": ginfo.get("sha256"), "users": len(users),
            "clips_per_user": k, "p_click": {"generated": float(own.mean()), "shuffled_conditions": float(shuffled.mean()),
                                             "random_catalogue_clip": float(catalogue.mean())}}
