"""Personalisation evaluation on a synthetic world: domain classifier accuracy on unseen products, engagement model
against popularity / MF / random on held-out interactions, and (with --checkpoint) preference alignment of a
trained generator for the held-out users. Wall times are single-threaded (see `reelgan-eval --threads`).

    python bench/bench_eval_personalisation.py                       # makes a 1000-clip 64×64×16 world (~1 min)
    python bench/bench_eval_personalisation.py --world D --checkpoint RUN/checkpoints/last.ckpt

Prints a table and writes bench/results/bench_eval_personalisation.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _eval_common import print_table, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, help="existing dataset folder with embeddings/ (default: make one)")
    ap.add_argument("--checkpoint", type=Path, help="trained generator for the alignment rows")
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--users", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from data.contract import load_dataset
    from data.preferences import PreferenceEmbeddings
    from evaluation.personalisation.engagement import EngagementScorer, clip_inputs, train_engagement_model
    from evaluation.personalisation.engagement_eval import evaluate_engagement
    from evaluation.features.domain_train import DomainTrainConfig, train_domain_classifier
    from evaluation.features.realclips import load_real_clips

    root = args.world
    if root is None:
        from data.embed import embed_dataset
        from data.synth import make_world

        root = Path(tempfile.mkdtemp(prefix="bench-personal-")) / "world"
        t = time.perf_counter()
        make_world(root, clips=args.clips, users=args.users, seed=0, workers=2)
        embed_dataset(root, seed=0)
        print(f"world: {root} ({time.perf_counter() - t:.1f} s)")
    ds = load_dataset(root)
    emb = PreferenceEmbeddings.load(root / "embeddings" / "preferences.safetensors")
    cfg = DomainTrainConfig()
    t = time.perf_counter()
    real = load_real_clips(root, cfg.frames, cfg.height, cfg.width)
    decode_s = time.perf_counter() - t
    domain, report = train_domain_classifier(clips=real, config=cfg)
    rows = [{"what": f"domain val accuracy [{a}]", "value": round(v, 3), "baseline": f"chance {report.chance[a]:.3f}",
             "seconds": round(report.seconds, 1)} for a, v in report.val_accuracy.items()]
    t = time.perf_counter()
    model, summary = train_engagement_model(ds.interactions, emb, domain, real.clip_ids, real.video)
    scorer = EngagementScorer(model, domain)
    heldout = evaluate_engagement(scorer, clip_inputs(domain, real.video), ds.interactions, emb, real.clip_ids)
    eng_s = time.perf_counter() - t
    m = heldout["methods"]
    for metric in ("auc[click]", "auc[purchase]", "ndcg@10"):
        rows.append({"what": f"engagement {metric}", "value": round(m["engagement"][metric], 3),
                     "baseline": ", ".join(f"{b} {m[b][metric]:.3f}" for b in ("mf", "popularity", "random")),
                     "seconds": round(eng_s, 1)})
    result = {"world": str(root), "clips": len(real), "users": len(emb.user_ids), "decode_seconds": decode_s,
              "domain": {"val_accuracy": report.val_accuracy, "chance": report.chance, "seconds": report.seconds,
                         "clips_train": report.clips_train, "clips_val": report.clips_val},
              "engagement": {"heldout": heldout, "training": summary, "seconds": eng_s}}
    if args.checkpoint is not None:
        from evaluation.personalisation.alignment import AlignmentConfig, load_truth, preference_alignment
        from generate.loading import load_generator

        generator, info = load_generator(args.checkpoint)
        t = time.perf_counter()
        align = preference_alignment(generator, emb, ds, domain, real, AlignmentConfig(clips_per_user=4),
                                     real_accuracy=report.val_accuracy, real_chance=report.chance,
                                     truth=load_truth(root))
        src = "hidden_truth" if "hidden_truth" in align["alignment"] else "revealed"
        for a, v in align["alignment"][src].items():
            rows.append({"what": f"alignment [{a}] ({src})", "value": round(v["hit_rate"], 3),
                         "baseline": f"shuffled {v['shuffled']:.3f}, random {v['random']:.3f}",
                         "seconds": round(time.perf_counter() - t, 1)})
        result["alignment"] = {"checkpoint": str(args.checkpoint), "checkpoint_sha256": info["sha256"], **align}
    print_table(rows, ["what", "value", "baseline", "seconds"])
    write_results("bench_eval_personalisation", {"command": " ".join(sys.argv), "rows": rows, **result})


if __name__ == "__main__":
    main()
