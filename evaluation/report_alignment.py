"""Alignment figures for the report.

Two sources:
- `reelgan-eval align` JSON: per-attribute hit rates of the model against its baselines → grouped bars;
- the slot's check (slot_check.json, `attributes`): per user, the domain classifier's mean attribute distribution
  over the user's generated clips, with the user's preferred value boxed → one heatmap per attribute. Users who
  prefer different colours should light up different columns: this is the demo's conditioning check.
"""
from __future__ import annotations

import numpy as np

from evaluation import report_plots as plots

_SERIES_ORDER = ("model", "hit_rate", "shuffled", "random")


def _per_attribute(data: dict) -> dict | None:
    per = data.get("per_attribute")
    if isinstance(per, dict) and per and all(isinstance(v, dict) for v in per.values()):
        return per
    return None


def alignment_figures(data: dict) -> list[tuple[str, bytes]]:
    figs: list[tuple[str, bytes]] = []
    per = _per_attribute(data)
    if per:
        groups = {a: {k: float(v) for k, v in vals.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                  for a, vals in per.items()}
        groups = {a: g for a, g in groups.items() if g}
        if groups:
            figs.append(("per-attribute preference alignment: generated clips' attributes (domain classifier) match "
                         "the user's preferred value; baselines: shuffled conditions and random",
                         plots.grouped_bars(groups, "preference alignment by attribute", "hit rate")))
    attrs = data.get("attributes")
    if isinstance(attrs, dict) and attrs.get("users"):
        vocab: dict[str, list[str]] = attrs["vocab"]
        users = attrs["users"]
        for a, values in vocab.items():
            names = list(users)
            mat = np.array([users[u][a]["probs"] for u in names], dtype=float)
            marks = [values.index(users[u][a]["preferred"]) if users[u][a].get("preferred") in values else None
                     for u in names]
            figs.append((f"{a}: mean predicted {a} of each user's generated clips (rows); red box = the user's "
                         f"preferred {a} ({attrs.get('preferred_from', 'hidden truth')})",
                         plots.preference_heatmap(names, values, mat, f"what the generator made: {a}", marks)))
    return figs


def alignment_headline(data: dict) -> dict | None:
    """The headline alignment figure: the model's hit rate on the first attribute (colour if present)."""
    if isinstance(data.get("headline"), dict) and data["headline"].get("name", "").startswith("alignment"):
        return data["headline"]
    per = _per_attribute(data)
    if not per:
        return None
    attr = "colour" if "colour" in per else next(iter(per))
    vals = per[attr]
    key = next((k for k in _SERIES_ORDER if k in vals), None)
    if key is None:
        return None
    others = ", ".join(f"{k} {vals[k]:.2f}" for k in ("shuffled", "random") if k in vals)
    return {"name": f"alignment[{attr}]", "value": vals[key], "display": f"{vals[key]:.2f}",
            "note": f"{attr} hit rate of generated clips for held-out users" + (f" (baselines: {others})" if others else "")}
