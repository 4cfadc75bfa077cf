"""Classification Accuracy Score (Ravuri & Vinyals, NeurIPS 2019): train a classifier on generated clips only,
labelled with what each clip was made to show, and measure its accuracy on real held-out clips.

It asks whether the generator's clips carry the product attributes faithfully *and* across their whole range: a
generator that draws every red dress alike, or draws "jacket" like "t-shirt", teaches a classifier that fails on
real clips. The classifier is the domain classifier's network and recipe (evaluation.features.domain_train), so
`real_accuracy` (the same recipe trained on real clips, from the domain classifier's report) is its reference.

What a clip was made to show:
- attribute-conditioned generator: the attribute values it was given. Each generated clip copies the attributes
  of a random real *training* clip (the real label mix), for a shopper taken in turn from the held-out users;
- otherwise: its shopper's favourite value (hidden truth, else revealed), on the alignment's own clips.
The test clips are the domain classifier's own validation products, which neither classifier trained on.
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch

from data.tensors import model_to_uint8
from evaluation.features.domain import DomainClassifier
from evaluation.features.domain_train import DomainTrainConfig, attribute_accuracy, fit_classifier
from evaluation.features.realclips import RealClips, split_by_product
from generate.sampler import generate_clips_across_processes


def train_config(report: dict | None) -> DomainTrainConfig:
    """The domain classifier's training recipe, from its report (defaults for a classifier without one)."""
    saved = (report or {}).get("config") or {}
    names = {f.name for f in fields(DomainTrainConfig)}
    return DomainTrainConfig(**{k: v for k, v in saved.items() if k in names})


def attribute_training_set(generator, generator_vocab: dict[str, list[str]], real: RealClips,
                           conditions: torch.Tensor, cfg: DomainTrainConfig, clips: int, truncation: float,
                           seed: int, batch_size: int = 16, device: str = "cpu"):
    """`clips` generated clips made with the attributes of random real training clips → (uint8 video, labels in
    the classifier's vocabulary order). None when the generator's attributes do not match `generator_vocab`."""
    names = list(generator_vocab)
    if [len(generator_vocab[a]) for a in names] != list(getattr(generator, "attribute_classes", [])):
        return None
    shared = [a for a in names if a in real.vocab]
    if not shared:
        return None
    train_idx, _ = split_by_product(real.product_ids, cfg.val_fraction, cfg.seed)
    rng = np.random.default_rng([seed, 11])
    rows = rng.choice(train_idx, size=int(clips), replace=True)
    given = torch.full((int(clips), len(names)), -1, dtype=torch.long)   # -1: the shopper's own draw
    labels = {}
    for j, a in enumerate(names):
        if a not in shared:
            continue
        values = [real.attributes[a][r] for r in rows]
        given[:, j] = torch.tensor([generator_vocab[a].index(v) if v in generator_vocab[a] else -1 for v in values])
        labels[a] = torch.tensor([real.vocab[a].index(v) for v in values], dtype=torch.long)
    conds = torch.as_tensor(conditions)[torch.arange(int(clips)) % len(conditions)]
    seeds = [int(seed) * 1_000_003 + i for i in range(int(clips))]
    video = generate_clips_across_processes(generator, conds, seeds, truncation, batch_size, device, attributes=given)
    known = (given[:, [names.index(a) for a in shared]] >= 0).all(1)
    return model_to_uint8(video[known]), {a: v[known] for a, v in labels.items()}


def classification_accuracy_score(video: torch.Tensor, labels: dict[str, torch.Tensor], real: RealClips,
                                  cfg: DomainTrainConfig, real_accuracy: dict[str, float] | None = None,
                                  real_chance: dict[str, float] | None = None) -> dict[str, dict]:
    """Train the classifier recipe on generated `video` (uint8) with `labels` ({attribute: indices in real.vocab
    order}); its accuracy on the real validation products is the CAS of each attribute."""
    if len(video) == 0:
        raise ValueError("CAS needs at least one generated clip")
    heads = {a: real.vocab[a] for a in labels}
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = DomainClassifier(heads, cfg.frames, cfg.height, cfg.width, cfg.channels, cfg.feature_dim)
    fit_classifier(model, video, labels, np.arange(len(video)), cfg, what="train CAS classifier on generated clips")
    _, val_idx = split_by_product(real.product_ids, cfg.val_fraction, cfg.seed)
    real_labels = real.labels()
    accuracy = attribute_accuracy(model, real.video[val_idx], {a: real_labels[a][val_idx] for a in labels})
    out = {}
    for a, acc in accuracy.items():
        ref, chance = (real_accuracy or {}).get(a), (real_chance or {}).get(a)
        legible = ref is not None and ref > (chance or 0.0) + 0.05
        out[a] = {"score": acc if legible else None, "accuracy_on_real": acc, "real_accuracy": ref,
                  "real_chance": chance, "ratio": acc / ref if legible else None,
                  "generated_clips": int(len(video)), "real_test_clips": int(len(val_idx)),
                  **({} if legible else {"note": "withheld: the classifier recipe reads this attribute on real clips "
                                                 "no better than chance"})}
    return out
