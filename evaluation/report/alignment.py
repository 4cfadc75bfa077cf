"""Alignment figures for the report.

Two sources:
- the `reelgan-eval align` JSON (evaluation.personalisation.preference_alignment): per attribute, the hit rate of
  the held-out users' generated clips against the `shuffled` (same generator, permuted conditions), `random`
  (catalogue mix) and `uniform` baselines → grouped bars, one chart per favourite source (hidden truth, revealed);
  and `per_user` mean predicted attribute distributions → one heatmap per attribute;
- the slot's check (slot_check.json, `attributes`): the same heatmaps over the slot's candidates.
In the heatmaps the user's favourite value (hidden truth when the run has one) is boxed in red: users who prefer
different colours should light up different columns. This is the demo's conditioning check.
"""
from __future__ import annotations

import numpy as np

from evaluation.report import plots as plots

_SOURCES = ("hidden_truth", "revealed")
_SERIES = ("hit_rate", "shuffled", "random", "uniform")


def _bars(alignment: dict) -> list[tuple[str, bytes]]:
    figs = []
    for source in _SOURCES:
        per = alignment.get(source)
        if not isinstance(per, dict) or not per:
            continue
        groups = {a: {s: float(v[s]) for s in _SERIES if isinstance(v.get(s), (int, float))} for a, v in per.items()}
        figs.append((f"hit rate of the held-out users' generated clips against their favourite ({source.replace('_', ' ')}); "
                     "shuffled = same clips seeds with conditions permuted among users; random = a catalogue clip; "
                     "uniform = 1/V. Conditioning works when hit_rate > shuffled ≈ random.",
                     plots.grouped_bars(groups, f"preference alignment by attribute (favourite: {source.replace('_', ' ')})",
                                        "hit rate")))
    return figs


def _heatmaps(users: dict, vocab: dict, favourites: dict | None, what: str, source: str) -> list[tuple[str, bytes]]:
    """One heatmap for the conditioning attribute (colour when present): rows sorted by favourite, so a generator
    that follows the condition draws a staircase of bright boxed cells."""
    attr = "colour" if "colour" in vocab else next(iter(vocab))
    values = vocab[attr]
    names = [u for u in users if attr in users[u]]
    if not names:
        return []
    fav = {u: (favourites or {}).get(u, {}).get(attr) for u in names}
    names.sort(key=lambda u: (values.index(fav[u]) if fav[u] in values else len(values), u))
    mat = np.array([users[u][attr] for u in names], dtype=float)
    marks = [values.index(fav[u]) if fav[u] in values else None for u in names] if favourites else None
    caption = (f"{attr}: mean predicted {attr} of each user's {what} (one row per user, sorted by favourite)"
               + (f"; red box = the user's favourite {attr} ({source}). Bright boxes = the clips follow the "
                  "user's preference." if marks else ""))
    return [(caption, plots.preference_heatmap(names, values, mat, f"what the generator made: {attr} ({what})", marks))]


def alignment_figures(data: dict, truth: dict | None = None) -> list[tuple[str, bytes]]:
    """Figures from an align JSON or from {"attributes": slot_check attributes}; truth: hidden_truth users."""
    figs: list[tuple[str, bytes]] = []
    if isinstance(data.get("alignment"), dict):
        figs += _bars(data["alignment"])
    if isinstance(data.get("per_user"), dict) and isinstance(data.get("vocab"), dict):
        figs += _heatmaps(data["per_user"], data["vocab"], truth, "generated clips (align)", "hidden truth")
    attrs = data.get("attributes")
    if isinstance(attrs, dict) and attrs.get("users"):
        users = {u: {a: v["probs"] for a, v in d.items()} for u, d in attrs["users"].items()}
        fav = {u: {a: v.get("preferred") for a, v in d.items()} for u, d in attrs["users"].items()}
        figs += _heatmaps(users, attrs["vocab"], fav, "slot candidates", attrs.get("preferred_from", "hidden truth"))
    return figs


def alignment_headline(data: dict) -> dict | None:
    """colour hit rate (hidden truth if present, else revealed) with its baselines, or None."""
    alignment = data.get("alignment")
    if not isinstance(alignment, dict):
        return None
    for source in _SOURCES:
        per = alignment.get(source) or {}
        attr = "colour" if "colour" in per else next(iter(per), None)
        if attr and isinstance(per[attr].get("hit_rate"), (int, float)):
            v = per[attr]
            base = ", ".join(f"{k} {v[k]:.2f}" for k in ("shuffled", "random") if isinstance(v.get(k), (int, float)))
            ceil = ((data.get("ceilings") or {}).get(source) or {}).get(attr, {}).get("sampling")
            if isinstance(ceil, (int, float)):
                base += f"; of a possible {ceil:.2f} (sampling ceiling)"
            return {"name": f"alignment[{attr}]", "value": v["hit_rate"], "display": f"{v['hit_rate']:.2f}",
                    "note": f"{attr} hit rate of held-out users' generated clips vs their {source.replace('_', ' ')} "
                            f"favourite (baselines: {base})"}
    return None
