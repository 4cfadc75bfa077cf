"""`reelgan-data embed` as a function: fit (or import) preference embeddings, evaluate them, fit the persona map.

Writes DATASET/embeddings/preferences.safetensors, persona_map.safetensors (when users.csv has personas) and
embed_report.json (how they were made and how good they are).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from data import io
from data.bpr import evaluate_ranking, fit_bpr
from data.contract import load_dataset
from data.preferences import PreferenceEmbeddings


def embed_dataset(root: str | Path, dim: int = 32, epochs: int = 30, seed: int = 0, import_file: str | None = None,
                  ids_file: str | None = None, persona: bool = True, log=None) -> dict:
    """Returns the report dict (also written to embed_report.json)."""
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
    emb.save(out_dir / "preferences.safetensors")
    report = {
        # "dataset": this file's parent folder, not an absolute path of the machine that made it
        "made_by": "reelgan-data embed", "dataset": "..", "source": emb.source, "dim": emb.dim, "hash": emb.hash,
        "users": len(emb.user_ids), "items": len(emb.item_ids),
        "fit": {k: v for k, v in emb.meta.items() if k != "item_bias"},
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
    }
    if emb.item_ids:
        ranking = evaluate_ranking(ds, emb)
        k = ranking["k"]
        ranking["beats_popularity"] = None if ranking["users"] == 0 else bool(
            ranking["mf"][f"ndcg@{k}"] > ranking["popularity"][f"ndcg@{k}"]
            and ranking["mf"][f"recall@{k}"] > ranking["popularity"][f"recall@{k}"])
        report["ranking"] = ranking
    else:
        report["ranking"] = {"skipped": "imported embeddings have no item vectors, so held-out ranking is not "
                                        "measurable"}
    report["persona"] = _persona(ds, emb, out_dir, seed, log) if persona else {"skipped": "disabled (--no-persona)"}
    report["seconds"] = round(time.perf_counter() - started, 2)
    io.write_json(out_dir / "embed_report.json", report)
    return report


def _persona(ds, emb: PreferenceEmbeddings, out_dir: Path, seed: int, log) -> dict:
    if ds.users is None or "persona" not in ds.users.columns:
        return {"skipped": f"no persona column ({ds.root / 'users.csv'} is missing or lacks one), so no persona "
                           "map was fitted"}
    from data.persona import fit_persona_map

    persona_map, figures = fit_persona_map(ds, emb, seed=seed)
    persona_map.save(out_dir / "persona_map.safetensors")
    return figures
