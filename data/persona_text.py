"""Persona sentences for synthetic users, written from their hidden preferences with varied templates.

The colour is always named (it is the strongest preference); category and pattern are named most of the time;
the style adjective is noise that carries no preference, as in real free-text profiles.
"""
from __future__ import annotations

import numpy as np

PLURAL = {"tshirt": "t-shirts", "dress": "dresses", "jacket": "jackets", "trousers": "trousers"}
SINGULAR = {"tshirt": "t-shirt", "dress": "dress", "jacket": "jacket", "trousers": "pair of trousers"}
PATTERN_ADJ = {"solid": "plain", "stripes": "striped", "dots": "polka-dot", "check": "checked"}
PATTERN_NOUN = {"solid": "no prints", "stripes": "stripes", "dots": "dots", "check": "checks"}
STYLES = ["retro", "minimal", "bold", "classic", "casual", "sporty", "vintage", "elegant", "relaxed", "street"]

TEMPLATES = [
    "loves {style} {colour} {cats} with {pattern_noun}",
    "always picks {colour}; {pattern_adj} {cats} are my thing",
    "mostly buys {pattern_adj} {colour} {cats}",
    "{colour} everything, especially {cats}",
    "can't resist a {pattern_adj} {cat} in {colour}",
    "my wardrobe is full of {colour}: {style} {cats}, {pattern_noun} please",
    "{style} look, {colour} {cats}",
    "shopping for {colour} {cats} with {pattern_noun}, {style} style",
    "into {pattern_adj} clothes, ideally {colour}",
    "a {colour} person who likes {style} {cats}",
]


def persona_text(pref: dict, rng: np.random.Generator) -> str:
    """pref: {'category', 'colour', 'pattern'} → one sentence."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    return template.format(
        style=STYLES[rng.integers(len(STYLES))], colour=pref["colour"], cats=PLURAL[pref["category"]],
        cat=SINGULAR[pref["category"]], pattern_adj=PATTERN_ADJ[pref["pattern"]],
        pattern_noun=PATTERN_NOUN[pref["pattern"]],
    )
