"""`reelgan-data embed` as a function: fit (or import) preference embeddings, evaluate them, fit the persona map.

Writes DATASET/embeddings/preferences.safetensors, persona_map.safetensors (when users.csv has personas) and
embed_report.json (how they were made and how good they are).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from data import io
from data.affinity import attribute_affinities, with_affinities
from data.bpr import evaluate_ranking, fit_bpr
from data.contract import load_dataset
from data.preferences import PreferenceEmbeddings


def embed_dataset(root: str | Path, dim: int = 32, epochs: int = 30, seed: int = 0, import_file: str | None = None,
                  ids_file: str | None = None, persona: bool = True, affinities: bool | None = None,
                  log=None) -> dict:
    """Returns the report dict (also written to embed_report.json).

    affinities: append each user's attribute affinities (data.affinity) to the vectors; None = on for a fit, off
    for imported vectors (a shop's own recommender vectors are kept as they are unless asked)."""
    root = Path(root)
    ds = load_dataset(root)
    out_dir = root / "embeddings"
    started = time.perf_counter()
    if import_file:
        from data.embedding_import import import_embeddings

        emb = import_embeddings(import_file, ids_file, known_users=set(ds.interactions["user_id"]))
    else:
        torch.manual_seed(seed)
        emb = fit_bpr(ds, dim=dim, epochs=epochs, seed=seed)
    # Ranking is measured on the MF factors alone: the affinity half has zero item vectors, so it would not change
    # the scores anyway.
    ranking = _ranking(ds, emb) if emb.item_ids else {
        "skipped": "imported embeddings have no item vectors, so held-out ranking is not measurable"}
    if affinities is None:
        affinities = not import_file
    if affinities:
        emb, affinity_block = _append_affinities(ds, emb)
    else:
        affinity_block = {"skipped": "off (--no-affinities; --import leaves them off unless --affinities)"}
    emb.save(out_dir / "preferences.safetensors")
    report = {
        # "dataset": this file's parent folder, not an absolute path of the machine that made it
        "made_by": "reelgan-data embed", "dataset": "..", "source": emb.source, "dim": emb.dim, "hash": emb.hash,
        "users": len(emb.user_ids), "items": len(emb.item_ids),
        "fit": {k: v for k, v in emb.meta.items() if k != "item_bias"},
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
    }
    report["ranking"] = ranking
    report["affinities"] = affinity_block
    report["persona"] = _persona(ds, emb, out_dir, seed, log) if persona else {"skipped": "disabled (--no-persona)"}
    report["seconds"] = round(time.perf_counter() - started, 2)
    io.write_json(out_dir / "embed_report.json", report)
    return report


def _ranking(ds, emb: PreferenceEmbeddings) -> dict:
    ranking = evaluate_ranking(ds, emb)
    k = ranking["k"]
    ranking["beats_popularity"] = None if ranking["users"] == 0 else bool(
        ranking["mf"][f"ndcg@{k}"] > ranking["popularity"][f"ndcg@{k}"]
        and ranking["mf"][f"recall@{k}"] > ranking["popularity"][f"recall@{k}"])
    return ranking


def _append_affinities(ds, emb: PreferenceEmbeddings) -> tuple[PreferenceEmbeddings, dict]:
    names, values = attribute_affinities(ds, emb.user_ids)
    if not names:
        return emb, {"skipped": "clips.csv has no product attribute columns"}
    users = with_affinities(emb.user_vectors, values)
    items = np.concatenate([emb.item_vectors, np.zeros((len(emb.item_ids), len(names)), np.float32)], axis=1)
    meta = {**emb.meta, "factors_dim": emb.dim, "affinities": names}
    block = {"columns": names, "factors_dim": emb.dim, "dim": int(users.shape[1]),
             "users_without": int((values.sum(axis=1) == 0).sum()),
             "how": "per attribute, each value's share of the user's train event weight; scaled to the factors' "
                    "norm and appended (data.affinity)"}
    return PreferenceEmbeddings(emb.user_ids, users, emb.item_ids, items, source=f"{emb.source}+affinities",
                                meta=meta), block


def _persona(ds, emb: PreferenceEmbeddings, out_dir: Path, seed: int, log) -> dict:
    if ds.users is None or "persona" not in ds.users.columns:
        return {"skipped": f"no persona column ({ds.root / 'users.csv'} is missing or lacks one), so no persona "
                           "map was fitted"}
    from data.persona import fit_persona_map

    persona_map, figures = fit_persona_map(ds, emb, seed=seed)
    persona_map.save(out_dir / "persona_map.safetensors")
    return figures
