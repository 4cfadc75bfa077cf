"""The quality-gated recommendation slot (`reelgan-eval slot`, evaluation/slot/cli.py).

For each user: generate K candidate clips from the checkpoint; score each with
    engagement  P(click) of the engagement model (and P(purchase)),
    realism     domain-feature density under the real clips (evaluation.slot.scores.DensityRealism),
    alignment   P(the clip shows the user's revealed favourite attribute values) (domain classifier);
apply the gate (checkpoint fvd[domain] ceiling + per-clip realism and alignment floors, configs/slot.yaml);
rank the passing clips; write slot.jsonl and slot.csv atomically (evaluation.slot.gate). On a synthetic world
the offline check (evaluation.slot.check) adds slot_check.json: expected engagement under the hidden truth of
the served slot against the most popular catalogue clip and a random generated candidate.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from data.io import write_json
from evaluation.features.domain_train import classifier_trust
from evaluation.slot.version import SlotVersion
from evaluation.personalisation.preferences import revealed_preferences, users_without_history
from evaluation.slot.gate import SlotConfig, checkpoint_gate, config_dict, gate_and_rank
from evaluation.slot.scores import DensityRealism, alignment_scores, random_alignment
from evaluation.slot.store import write_slot


class CandidateScorer:
    """Engagement, realism and alignment of candidate clips, with the attribute probabilities kept for the check."""

    def __init__(self, engagement, realism: DensityRealism, prefs: dict, vocab: dict[str, list[str]],
                 no_history: set[str] = frozenset()):
        self.engagement, self.realism, self.prefs, self.vocab = engagement, realism, prefs, vocab
        self.domain = engagement.domain
        self.no_history = set(no_history)  # alignment unknown → NaN → the gate fails the clip (fails closed)

    @torch.no_grad()
    def score(self, users: list[str], conditions: torch.Tensor, video: torch.Tensor) -> tuple[list[dict], dict]:
        """video float (N, T, C, H, W) in [-1, 1] (or uint8), conditions (N, E) → ([scores per clip], probs)."""
        eng = self.engagement.score(conditions, video)
        feats, logits = self.domain(self.domain.prepare(video))
        probs = {a: logits[a].softmax(-1).double().cpu().numpy() for a in self.vocab}
        real = self.realism.score(feats.double().cpu().numpy())
        scores = []
        for i, user in enumerate(users):
            align = (float("nan") if user in self.no_history else
                     alignment_scores({a: p[i:i + 1] for a, p in probs.items()}, self.prefs[user])[0])
            scores.append({"engagement": float(eng["click"][i]), "purchase": float(eng["purchase"][i]),
                           "realism": float(real[i]), "alignment": float(align)})
        return scores, probs


def real_feature_rows(root: Path, domain, max_clips: int = 512, seed: int = 0) -> np.ndarray:
    """Domain features (float64 (N, d)) of up to `max_clips` real clips (a seeded subset), for the density."""
    from evaluation.features.realclips import load_real_clips

    clips = load_real_clips(root, domain.frames, domain.height, domain.width, list(domain.vocab), sample=max_clips,
                            seed=seed)
    with torch.no_grad():   # only the sample is decoded: a 10⁵-clip catalogue costs what 512 clips cost
        feats = [domain(domain.prepare(clips.video[i:i + 64]))[0] for i in range(0, len(clips), 64)]
    return torch.cat(feats).double().numpy()


def read_fvd(path: str | Path | None, checkpoint_sha: str | None) -> tuple[float | None, str | None]:
    """fvd[domain] of a metrics JSON (reelgan-eval fvd) → (value, problem).

    Fails closed: a JSON that does not say which checkpoint it measured (no checkpoint_sha256), or one made for
    another checkpoint, is a problem, and the gate then serves nothing generated.
    """
    if path is None:
        return None, None
    data = json.loads(Path(path).read_text())
    name = str(data.get("metric", ""))
    if not name.startswith("fvd[domain"):
        return None, f"{path} holds {name or 'no metric'}, not fvd[domain]"
    found = _find_key(data, "checkpoint_sha256")
    if not found or not checkpoint_sha:
        return None, (f"{path} does not record which checkpoint it measured (no checkpoint_sha256); make it with "
                      "`reelgan-eval fvd --network domain --checkpoint ...`")
    if found != checkpoint_sha:
        return None, f"{path} was measured on checkpoint {found[:12]}…, not this one ({checkpoint_sha[:12]}…)"
    return float(data["value"]), None


def _find_key(obj, key):
    if isinstance(obj, dict):
        if key in obj and isinstance(obj[key], str):
            return obj[key]
        for v in obj.values():
            if (r := _find_key(v, key)) is not None:
                return r
    return None


def run_slot(checkpoint: str | Path, data: str | Path, users: list[str], engagement: str | Path, outdir: str | Path,
             cfg: SlotConfig, fvd_json: str | Path | None = None, device: str = "cpu", progress: bool = True,
             preferences: str | Path | None = None, publish_url=None) -> dict:
    """Generate, score, gate, rank and write the slot for `users`; returns the summary written to slot_summary.json.

    publish_url: a store URL (str) or a StoreURL of evaluation.slot.storeurl; it is validated (and reached) first.
    Paths in the summary are relative to `outdir` where they can be (generate.paths.recorded_path)."""
    from data.contract import load_dataset
    from data.preferences import PreferenceEmbeddings
    from evaluation.personalisation.engagement import EngagementScorer
    from evaluation.slot.check import HiddenTruth, compare_arms, most_popular_clip
    from generate.loading import load_generator
    from generate.run import generate_to_folders
    from generate.targets import user_targets

    from evaluation.slot.storeurl import check_store
    from generate.paths import recorded_path

    store = check_store(publish_url) if publish_url else None  # a bad or unreachable store fails before any work
    t0 = time.perf_counter()
    data, outdir = Path(data), Path(outdir)
    prefs_path = Path(preferences) if preferences else data / "embeddings" / "preferences.safetensors"
    embeddings = PreferenceEmbeddings.load(prefs_path)
    targets = user_targets(users, embeddings, str(prefs_path))
    dataset = load_dataset(data)
    scorer_model = EngagementScorer.load(engagement, device=device)
    vocab = scorer_model.domain.vocab
    if cfg.attributes:  # a shop may judge alignment on the attributes its classifier can read, e.g. colour only
        if unknown := [a for a in cfg.attributes if a not in vocab]:
            raise ValueError(f"slot config attributes {unknown} are not read by the domain classifier "
                             f"(it reads {list(vocab)})")
        vocab = {a: vocab[a] for a in cfg.attributes}
    prefs = revealed_preferences(dataset.interactions, dataset.clips, vocab, users)
    realism = DensityRealism(real_feature_rows(data, scorer_model.domain))
    scorer = CandidateScorer(scorer_model, realism, prefs, vocab, users_without_history(dataset.interactions, users))
    generator, info = load_generator(checkpoint, device=device)
    fvd, fvd_problem = read_fvd(fvd_json, info.get("sha256"))
    ckpt_reason = fvd_problem or checkpoint_gate(fvd, cfg.gate)
    # Realism and alignment read the domain classifier: where it is no better than chance the gate fails closed.
    trust = classifier_trust(scorer_model.info.get("domain_report"), vocab)
    classifier_reason = (f"domain classifier untrusted: {trust['note']}" if trust["untrusted"] else None)

    with SlotVersion(outdir) as version:  # every file of this run, then one switch (evaluation.slot.version)
        folder = version.folder
        rows, probs_by_user = [], {u: {a: [] for a in vocab} for u in users}
        seeds = list(range(cfg.seed_base, cfg.seed_base + cfg.candidates))

        def on_batch(entries, video):
            names = [e["user"] for e in entries]
            scores, probs = scorer.score(names, torch.stack([embeddings.conditions([n])[0] for n in names]), video)
            for i, (e, s) in enumerate(zip(entries, scores)):
                rows.append({"user_id": e["user"], "candidate": e["seed"] - cfg.seed_base, "seed": e["seed"],
                             "clip": f"clips/{e['folder']}/{e['files']['mp4']}", "scores": s,
                             "checkpoint_sha256": info.get("sha256")})
                for a in vocab:
                    probs_by_user[e["user"]][a].append(probs[a][i])

        generate_to_folders(generator, info, targets, seeds, folder / "clips", ["mp4"], truncation=cfg.truncation,
                            batch_size=cfg.batch_size, device=device, progress=progress, on_batch=on_batch,
                            command=f"reelgan-eval slot --checkpoint {checkpoint}")
        ranked = gate_and_rank(rows, cfg, "; ".join(filter(None, [ckpt_reason, classifier_reason])) or None)
        for r in ranked:
            r["source"], r["fallback"] = "generated", None
            r["clip_uri"] = (folder / r["clip"]).resolve().as_uri()  # the version folder stays
        if cfg.fallback == "popular":
            popular = most_popular_clip(dataset.clips, dataset.interactions)
            popular_file = (data / str(popular["path"])).resolve()
            for u in users:
                if not any(r["served"] for r in ranked if r["user_id"] == u):
                    # `clip` relative to the slot folder like every other row; clip_uri absolute: both resolve.
                    ranked.append({"user_id": u, "candidate": None, "seed": None,
                                   "clip": os.path.relpath(popular_file, outdir.resolve()), "scores": {}, "passed": False,
                                   "reasons": ["fallback: no candidate passed the gate"], "rank": None, "served": True,
                                   "source": "catalogue", "clip_uri": popular_file.as_uri(),
                                   "fallback": str(popular.name)})
        jsonl, csv_path = write_slot(ranked, folder)
        probs = {u: {a: np.stack(v) for a, v in d.items()} for u, d in probs_by_user.items()}
        summary = {
            "made_by": "reelgan-eval slot", "checkpoint": recorded_path(checkpoint, outdir),
            "checkpoint_sha256": info.get("sha256"),
            "engagement_model": recorded_path(engagement, outdir), "engagement_sha256": scorer_model.info.get("sha256"),
            "config": config_dict(cfg), "fvd[domain]": fvd, "checkpoint_gate": ckpt_reason or "passed",
            "domain_classifier": trust, "classifier_gate": classifier_reason or "passed",
            "users": len(users), "candidates": len(rows), "passed": int(sum(r["passed"] for r in ranked)),
            "served": int(sum(r["served"] for r in ranked)), "random_alignment": random_alignment(vocab),
            "realism_reference": {"fit_clips": realism.n_fit, "reference_clips": realism.n_ref},
            "files": {"jsonl": jsonl.name, "csv": csv_path.name}, "seconds": round(time.perf_counter() - t0, 2),
        }
        truth_path = data / "hidden_truth.json"
        if truth_path.is_file():
            truth = HiddenTruth(truth_path, vocab)
            check = compare_arms(truth, [r for r in ranked if r.get("candidate") is not None], probs,
                                 most_popular_clip(dataset.clips, dataset.interactions))
            check["attributes"] = attribute_table(users, probs, vocab, truth, prefs)
            write_json(folder / "slot_check.json", check)
            summary["check"] = {k: check[k] for k in ("arms", "lift", "beats_both", "verdict", "fallbacks")}
        if publish_url:
            from evaluation.slot.publish import publish

            where = ({"store": "sqlite", "path": recorded_path(store.path, outdir)} if store.kind == "sqlite"
                     else {"store": store.shown})  # the redacted URL: never a secret
            summary["published"] = {**where, "version": publish(store, ranked, summary)}
        write_json(folder / "slot_summary.json", summary)
        version.publish()
        return summary


def attribute_table(users, probs, vocab, truth, prefs) -> dict:
    """Per user and attribute: mean predicted distribution of the candidates, hidden and revealed favourites."""
    table = {}
    for u in users:
        table[u] = {a: {"probs": probs[u][a].mean(0).round(4).tolist(), "preferred": truth.users[u][a],
                        "revealed": vocab[a][int(np.argmax(prefs[u][a]))]} for a in vocab}
    return {"vocab": vocab, "users": table, "preferred_from": "hidden truth",
            "how": "domain classifier's mean attribute probabilities over each user's K slot candidates"}
