"""Where a favourite is lost: the preference head's own choices, beside what the clips show.

An attribute-conditioned generator makes a clip in two steps: its preference head picks the attribute values
from the shopper's condition (a draw by the seed's uniforms at truncation 1, each attribute's mode below 1), then
the network renders them. Reading the head's picks directly gives, per attribute:
- `draw` / `mode`: share of the head's draws (the held-out users' own seeds) / of its modes that equal the user's
  favourite. Below the data's sampling / mode ceiling, the favourite is lost in the head or in the embedding it
  reads; at the ceiling but with a low generated hit rate, it is lost in rendering.
- `told`: share of clips whose given value (what this run's truncation made the head pick) is the favourite, and
  `rendered`: share of clips in which the domain classifier reads the value G was given (rendering fidelity).
"""
from __future__ import annotations

import numpy as np
import torch

from evaluation.personalisation.hits import hit_stats
from gan.seeds import latents_for_seeds


@torch.no_grad()
def head_choices(generator, conditions: torch.Tensor, seeds: list[int], generator_vocab: dict[str, list[str]],
                 vocab: dict[str, list[str]]) -> dict[str, dict[str, np.ndarray]] | None:
    """The head's picks for conditions (N, E) with these seeds → {"draw" | "mode": {attribute: (N,) index into
    vocab[attribute] (the classifier's order), -1 for a value it lacks}}; None for a G without a preference head
    or whose attributes are not `generator_vocab` (sorted values of clips.csv's attribute columns)."""
    names = list(generator_vocab)
    if getattr(generator, "preference", None) is None or \
            [len(generator_vocab[a]) for a in names] != list(generator.attribute_classes):
        return None
    z = latents_for_seeds(list(seeds), generator.z_dim)
    cond = torch.as_tensor(conditions, dtype=torch.float32).to(next(generator.parameters()).device)
    out = {}
    for name, truncation in (("draw", 1.0), ("mode", 0.5)):
        picks = generator.attributes_for(z.to(cond.device), cond, truncation).cpu().numpy()   # (N, A)
        out[name] = {a: np.array([vocab[a].index(generator_vocab[a][i]) if generator_vocab[a][i] in vocab[a] else -1
                                  for i in picks[:, j]]) for j, a in enumerate(names) if a in vocab}
    return out


def head_hits(choices: dict[str, dict[str, np.ndarray]], targets: list[set[int]], attribute: str, k: int,
              truncation: float, read: np.ndarray | None = None) -> dict:
    """choices from head_choices for U·K clips; targets[u]: user u's favourite indices; read: (U, K) the classifier's
    reading of the generated clips → {draw, draw_se, mode, told, told_se, rendered} (JSON)."""
    u = len(targets)
    hit = lambda picks: np.array([[p in targets[i] for p in row] for i, row in enumerate(picks)], bool)  # noqa: E731
    draw, mode = (choices[n][attribute].reshape(u, k) for n in ("draw", "mode"))
    told = draw if float(truncation) >= 1.0 else mode
    (d, d_se), (t, t_se) = hit_stats(hit(draw)), hit_stats(hit(told))
    out = {"draw": d, "draw_se": d_se, "mode": float(hit(mode[:, :1]).mean()), "told": t, "told_se": t_se}
    if read is not None:
        out["rendered"] = float((np.asarray(read) == told).mean())
    return out
