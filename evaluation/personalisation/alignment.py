"""Does a clip fit the user it was made for? Preference alignment, classification-accuracy score, conditional FVD.

For the held-out users (users.csv split=heldout: the GAN never conditioned on them), K clips each are generated
from their preference vectors with fixed seeds, each user its own (clip_seeds); the frozen `domain` classifier
reads each clip's attributes.

- Alignment hit rate (per attribute): share of clips whose predicted value is the user's favourite, where the
  favourite is (a) revealed: the top value of the user's *train* interactions weighted by event strength
  (view 1 … purchase 8; ties all count), and (b) on the synthetic world, hidden_truth.json's preference.
  Baselines: `random` = the expected hit rate of a random catalogue clip (the catalogue's attribute mix);
  `uniform` = 1/V; `shuffled` = the same generator and seeds with the conditions permuted among the users (a
  derangement), read against the original owners' favourites. Conditioning works when hit > shuffled ≈ random.
  Each hit rate carries its standard error over users (`*_se`: the spread of the users' own hit rates / √U).
- On the synthetic world, a second judge that ReelGAN never trains: a pixel reader of garment colour
  (colour_reader), reported beside the classifier's colour hit rate.
- Ceilings (data.ceilings): what the training data allows for these users and favourites: `sampling` (a perfect
  conditional generator at truncation 1) and `mode` (truncation towards each user's mean style), so a hit rate
  reads as "0.55 of a possible 0.66".
- Classification-accuracy score (CAS, Ravuri & Vinyals 2019; evaluation.personalisation.cas): the domain
  classifier's recipe trained on generated clips only, labelled with what each was made to show (the attributes
  an attribute-conditioned G was given, else the shopper's favourite), scored on real held-out clips; beside it
  the same recipe trained on real clips.
- Conditional FVD: fvd[domain] per group of users sharing a favourite value of one attribute (colour by
  default): their generated clips against the real clips showing that value. `matched` (own value's real clips)
  should be lower than `mismatched` (each other value's real clips, averaged) when the generator follows the
  condition.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from data.ceilings import conditional_ceilings
from data.tensors import model_to_uint8
from data.conditioning import attribute_vocabulary
from evaluation.personalisation.cas import attribute_training_set, classification_accuracy_score, train_config
from evaluation.personalisation.colour_reader import applies_to, reader_hits
from evaluation.personalisation.head import head_choices, head_hits
from evaluation.personalisation.pattern_reader import reader_hits as pattern_reader_hits
from evaluation.personalisation.hits import hit_stats
from evaluation.features.domain import DomainClassifier, DomainFeatures
from evaluation.features.realclips import RealClips
from evaluation.personalisation.preferences import revealed_preferences
from evaluation.personalisation.quality import quality_against_real
from evaluation.metrics.stats import GaussianStats
from evaluation.metrics.frechet import frechet_distance
from generate.sampler import generate_clips_across_processes


@dataclass
class AlignmentConfig:
    clips_per_user: int = 4        # K generated clips per held-out user
    seed: int = 0                  # user i's clip j uses seed + i·K + j (clip_seeds); also seeds the derangement
    truncation: float = 1.0
    batch_size: int = 16
    group_attribute: str = "colour"  # users are grouped by their favourite value of this for conditional FVD
    max_users: int | None = None   # cap on held-out users (first ones by id); None = all
    cas_clips: int = 1024          # generated clips the CAS classifier trains on (attribute-conditioned G)
    cas_steps: int | None = None   # its optimiser steps; None = the domain classifier's own recipe (comparable)


def heldout_users(ds, embeddings, max_users: int | None = None) -> list[str]:
    """Held-out users that have a preference vector, sorted by id."""
    users = sorted(u for u in ds.heldout_users if u in embeddings)
    if not users:
        raise ValueError(f"{ds.root / 'users.csv'}: no held-out user (split=heldout) has a preference vector; "
                         "mark some users heldout and rerun `reelgan-data embed`")
    return users[:max_users] if max_users else users


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation with no fixed point (n ≥ 2): a shifted random order."""
    if n < 2:
        raise ValueError("shuffled conditions need at least 2 users")
    order = rng.permutation(n)
    out = np.empty(n, dtype=int)
    out[order] = np.roll(order, 1)
    return out


def clip_seeds(n_users: int, k: int, seed: int = 0) -> list[int]:
    """User i's clip j uses seed + i·K + j. Each user gets seeds of its own because a seed also fixes the uniform
    that draws an attribute-conditioned G's colour and category: with one seed set for everyone, the same K draws
    repeat for every user, and their luck does not average out over users. The shuffled run reuses the list by
    position, so the two runs differ only in their conditions."""
    return [int(seed) + i * int(k) + j for i in range(int(n_users)) for j in range(int(k))]


def _favourites(prefs: dict[str, np.ndarray]) -> dict[str, set[int]]:
    return {a: set(np.flatnonzero(q == q.max()).tolist()) for a, q in prefs.items()}


def _hits(pred: np.ndarray, targets: list[set[int]]) -> np.ndarray:
    """pred (U, K) class indices; targets[u]: the favourite indices of user u → (U, K) bool."""
    return np.array([[p in targets[u] for p in row] for u, row in enumerate(pred)], dtype=bool)


def _fd(a: torch.Tensor, b: torch.Tensor) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    ga, gb = GaussianStats(a.shape[1], "n"), GaussianStats(b.shape[1], "n")
    ga.update(a)
    gb.update(b)
    x, y = ga.compute(), gb.compute()
    return frechet_distance(x.mu, x.sigma, y.mu, y.sigma)


def conditional_fvd(fake_feats: torch.Tensor, fake_groups: list[str], real_feats: torch.Tensor,
                    real_groups: list[str]) -> dict:
    """fvd[domain] per group (float64 features; groups are attribute values).

    matched: a group's generated clips vs the real clips of its value. mismatched: vs the real clips of each
    *other* value separately, averaged, so both sides of the comparison use real sets of similar size (the
    Fréchet distance of a small sample is biased upwards, so "all other clips" would not be a fair contrast).
    """
    groups = {}
    fake_groups, real_groups = np.array(fake_groups), np.array(real_groups)
    values = sorted(set(real_groups.tolist()))
    for g in sorted(set(fake_groups.tolist())):
        fake = fake_feats[fake_groups == g]
        others = [_fd(real_feats[real_groups == v], fake) for v in values if v != g]
        others = [x for x in others if x is not None]
        groups[g] = {"fake_clips": int(len(fake)), "real_clips": int((real_groups == g).sum()),
                     "fvd": _fd(real_feats[real_groups == g], fake),
                     "fvd_other_values": float(np.mean(others)) if others else None}
    usable = [v for v in groups.values() if v["fvd"] is not None and v["fvd_other_values"] is not None]
    return {"groups": groups,
            "matched_mean": float(np.mean([v["fvd"] for v in usable])) if usable else None,
            "mismatched_mean": float(np.mean([v["fvd_other_values"] for v in usable])) if usable else None,
            "normalisation": "n", "note": "groups with fewer than 2 clips on a side are skipped (fvd null)"}


def _read(domain: DomainClassifier, video_u8: torch.Tensor) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    probs = {k: v.numpy() for k, v in domain.predict(video_u8).items()}
    feats = DomainFeatures(model=domain).features(video_u8)
    return probs, feats


def preference_alignment(generator, embeddings, ds, domain: DomainClassifier, real: RealClips,
                         cfg: AlignmentConfig | None = None, real_accuracy: dict[str, float] | None = None,
                         truth: dict | None = None, device: str = "cpu", progress=None,
                         real_chance: dict[str, float] | None = None, domain_report: dict | None = None,
                         real_at_size: torch.Tensor | None = None) -> dict:
    """Alignment, CAS and conditional FVD for the held-out users (see module docstring). JSON-ready dict.

    generator: VideoGenerator; embeddings: PreferenceEmbeddings; ds: data.contract.Dataset; real: the catalogue
    decoded at the classifier's size; real_accuracy / real_chance: {attribute: accuracy on real held-out clips /
    majority-class accuracy there} (the classifier's training report; CAS is withheld for an attribute the
    classifier reads no better than chance); domain_report: that report whole (the CAS classifier copies its
    training recipe and validation products; None = the default recipe); truth: hidden_truth.json's "users" dict (synthetic world) or None;
    progress(done, total): optional, called after each of the two generation runs; real_at_size: uint8 real clips at
    the generator's frames and size, sampled at its training stride (sharpness and motion ratios; None: skipped).
    """
    cfg = cfg or AlignmentConfig()
    vocab = domain.vocab
    if cfg.group_attribute not in vocab:
        raise ValueError(f"group_attribute {cfg.group_attribute!r} is not one of the classifier's heads {list(vocab)}")
    users = heldout_users(ds, embeddings, cfg.max_users)
    k = int(cfg.clips_per_user)
    seeds = clip_seeds(len(users), k, cfg.seed)
    conds = embeddings.conditions(users)                                    # (U, E)
    perm = derangement(len(users), np.random.default_rng(cfg.seed))
    runs = {"own": conds, "shuffled": conds[torch.as_tensor(perm)]}
    read, clips = {}, {}
    for i, (name, c) in enumerate(runs.items()):
        video = generate_clips_across_processes(generator, c.repeat_interleave(k, 0), seeds, cfg.truncation,
                                                cfg.batch_size, device)   # shared by --devices processes
        clips[name] = model_to_uint8(video)                                 # video (U·K, T, C, H, W) in [-1, 1]
        read[name] = _read(domain, clips[name])
        if progress is not None:
            progress(i + 1, len(runs))
    prefs = revealed_preferences(ds.interactions[ds.interactions["valid"]], ds.clips, vocab, users)
    targets = {"revealed": {u: _favourites(prefs[u]) for u in users}}
    if truth is not None:
        targets["hidden_truth"] = {u: {a: {vocab[a].index(truth[u][a])} for a in vocab if truth[u].get(a) in vocab[a]}
                                   for u in users}
    catalogue = {a: np.array([vocab[a].index(v) for v in real.attributes[a]]) for a in vocab}
    ceilings = {source: {a: conditional_ceilings(ds.interactions, ds.clips, a,
                                                 {u: {vocab[a][i] for i in fav[u][a]} for u in users})
                         for a in vocab if a in ds.clips.columns and all(a in fav[u] for u in users)}
                for source, fav in targets.items()}
    pred = {a: {n: r[0][a].argmax(1).reshape(len(users), k) for n, r in read.items()} for a in vocab}  # (U, K)
    choices = head_choices(generator, conds.repeat_interleave(k, 0), seeds, attribute_vocabulary(ds.clips), vocab)
    alignment = {}
    for source, fav in targets.items():
        per = {}
        for a in vocab:
            if any(a not in fav[u] for u in users):
                continue
            t = [fav[u][a] for u in users]
            (hit, hit_se), (shuffled, shuffled_se) = (hit_stats(_hits(pred[a][n], t)) for n in ("own", "shuffled"))
            per[a] = {"hit_rate": hit, "hit_rate_se": hit_se, "shuffled": shuffled, "shuffled_se": shuffled_se,
                      "random": float(np.mean([np.isin(catalogue[a], list(s)).mean() for s in t])),
                      "uniform": float(np.mean([len(s) / len(vocab[a]) for s in t]))}
            if choices is not None and a in choices["draw"]:
                per[a]["head"] = head_hits(choices, t, a, k, cfg.truncation, pred[a]["own"])
        alignment[source] = per
    if truth is not None and applies_to(vocab) and "colour" in alignment.get("hidden_truth", {}):
        alignment["hidden_truth"]["colour"]["colour_reader"] = reader_hits(clips, [truth[u]["colour"] for u in users], k)
    if truth is not None and applies_to(vocab) and "pattern" in alignment.get("hidden_truth", {}):
        alignment["hidden_truth"]["pattern"]["pattern_reader"] = pattern_reader_hits(
            clips, [truth[u]["pattern"] for u in users], k, real.video, real.attributes["pattern"], real.product_ids)
    label_source = "hidden_truth" if "hidden_truth" in alignment else "revealed"
    recipe = train_config(domain_report)
    if cfg.cas_steps is not None:
        if int(cfg.cas_steps) < 1:
            raise ValueError(f"cas_steps={cfg.cas_steps} (--cas-steps) must be >= 1; leave it out for the domain "
                             "classifier's own recipe")
        recipe = replace(recipe, steps=int(cfg.cas_steps))
    made = attribute_training_set(generator, attribute_vocabulary(ds.clips), real, conds, recipe, cfg.cas_clips,
                                  cfg.truncation, cfg.seed, cfg.batch_size, device)
    if made is not None:
        cas_video, cas_labels, cas_source = *made, "given_attributes"
    else:   # a generator without product attributes was made to show its shopper's favourites
        fav = targets[label_source]
        shown = [a for a in vocab if all(a in fav[u] for u in users)]
        cas_video, cas_source = clips["own"], label_source
        cas_labels = {a: torch.tensor([min(fav[u][a]) for u in users for _ in range(k)]) for a in shown}
    cas = classification_accuracy_score(cas_video, cas_labels, real, recipe, real_accuracy, real_chance)
    g = cfg.group_attribute
    group_of = {u: vocab[g][int(np.argmax(prefs[u][g]))] for u in users}
    if label_source == "hidden_truth":
        group_of = {u: truth[u][g] for u in users}
    real_feats = DomainFeatures(model=domain).features(real.video)
    cond_fvd = conditional_fvd(read["own"][1], [group_of[u] for u in users for _ in range(k)],
                               real_feats, real.attributes[g])
    cond_fvd["attribute"], cond_fvd["grouped_by"] = g, label_source
    quality = quality_against_real(clips["own"], real_at_size, k) if real_at_size is not None else None
    return {
        "summary": attribute_summary(alignment, ceilings, label_source), "quality": quality,
        "users": users, "clips_per_user": k, "seeds": seeds, "seed_rule": "user i's clip j: seed + i*K + j",
        "truncation": cfg.truncation, "truncation_from_level": getattr(generator, "truncation_from_level", None),
        "derangement": perm.tolist(), "config": asdict(cfg), "alignment": alignment, "ceilings": ceilings, "cas": cas,
        "favourites": {source: {u: {a: [vocab[a][i] for i in sorted(fav[u][a])] for a in fav[u]} for u in users}
                       for source, fav in targets.items()},
        "cas_labels": cas_source, "conditional_fvd": cond_fvd,
        "per_user": {u: {a: read["own"][0][a][i * k:(i + 1) * k].mean(0).round(4).tolist() for a in vocab}
                     for i, u in enumerate(users)},
        "vocab": vocab,
    }


def attribute_summary(alignment: dict, ceilings: dict, source: str) -> dict:
    """Per attribute, the figures that say where a favourite is lost, against `source`'s favourites: the hit, the
    shuffled control, both ceilings, the preference head's own hit (draw, mode) and the readers' hits."""
    out = {}
    for a, v in (alignment.get(source) or {}).items():
        ceil, head = (ceilings.get(source) or {}).get(a) or {}, v.get("head") or {}
        reader = v.get("colour_reader") or v.get("pattern_reader") or {}
        out[a] = {"hit": v["hit_rate"], "hit_se": v["hit_rate_se"], "shuffled": v["shuffled"],
                  "ceiling_sampling": ceil.get("sampling"), "ceiling_mode": ceil.get("mode"),
                  "head_draw": head.get("draw"), "head_mode": head.get("mode"), "head_told": head.get("told"),
                  "rendered": head.get("rendered"), "reader_hit": reader.get("hit_rate"),
                  "reader_shuffled": reader.get("shuffled")}
    return {"favourites": source, "attributes": out}


def load_truth(root: str | Path) -> dict | None:
    """hidden_truth.json's users (synthetic world only), else None."""
    path = Path(root) / "hidden_truth.json"
    return json.loads(path.read_text())["users"] if path.is_file() else None
