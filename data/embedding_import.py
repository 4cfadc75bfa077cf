"""Import user embeddings from an external recommender: .npy + ids file, .csv, or .parquet.

Checks ids (present, unique, known to the dataset), dimension (one width, >= 2) and values (finite), and raises
EmbeddingImportError naming the file, the row and the fix.
- .npy: float (U, E); ids from `--ids` (one id per line, or a CSV with a user_id column), in row order.
- .csv: a user_id column plus numeric columns (all other columns are the vector, in file order).
- .parquet: a user_id column plus either one list column (`vector`/`embedding`) or numeric columns.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data.preferences import PreferenceEmbeddings


class EmbeddingImportError(ValueError):
    pass


def _ids_file(path: Path) -> list[str]:
    if not path.is_file():
        raise EmbeddingImportError(f"{path}: ids file not found. Fix: pass --ids with one user id per line")
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "user_id" not in frame.columns:
            raise EmbeddingImportError(f"{path}: no user_id column. Fix: add a user_id header")
        return list(frame["user_id"])
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _from_table(frame: pd.DataFrame, path: Path) -> tuple[list[str], np.ndarray]:
    if "user_id" not in frame.columns:
        raise EmbeddingImportError(f"{path}: no user_id column (has {', '.join(map(str, frame.columns))}). "
                                   "Fix: name the id column user_id")
    ids = frame["user_id"].astype(str).tolist()
    rest = frame.drop(columns=["user_id"])
    list_cols = [c for c in rest.columns if c in ("vector", "embedding")]
    if list_cols:
        rows = rest[list_cols[0]].tolist()
        widths = {len(r) for r in rows}
        if len(widths) > 1:
            bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
            raise EmbeddingImportError(f"{path}: row {bad}: vector has {len(rows[bad])} values, row 0 has "
                                       f"{len(rows[0])}. Fix: give every user the same dimension")
        return ids, np.asarray([np.asarray(r, dtype=np.float64) for r in rows])
    numeric = rest.apply(pd.to_numeric, errors="coerce")
    for col in rest.columns:
        bad = numeric[col].isna() & rest[col].notna() & (rest[col].astype(str).str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise EmbeddingImportError(f"{path}: row {row}, column {col!r}: {rest[col].iloc[row]!r} is not a number. "
                                       "Fix: vector columns must be numeric (drop other columns)")
    return ids, numeric.to_numpy(dtype=np.float64)


def import_embeddings(path: str | Path, ids_path: str | Path | None = None,
                      known_users: set[str] | None = None) -> PreferenceEmbeddings:
    """Read, check and wrap external user vectors (no item vectors)."""
    path = Path(path)
    if not path.is_file():
        raise EmbeddingImportError(f"{path}: file not found. Fix: pass an existing .npy, .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if ids_path is None:
            raise EmbeddingImportError(f"{path}: an .npy import needs --ids FILE (one user id per line, row order)")
        vectors = np.load(path, allow_pickle=False)
        ids = _ids_file(Path(ids_path))
        if vectors.ndim != 2:
            raise EmbeddingImportError(f"{path}: array has shape {vectors.shape}; expected (users, dim)")
        if len(ids) != len(vectors):
            raise EmbeddingImportError(f"{path}: {len(vectors)} rows but {ids_path} has {len(ids)} ids. "
                                       "Fix: one id per row, in row order")
    elif suffix == ".csv":
        ids, vectors = _from_table(pd.read_csv(path, dtype={"user_id": str}, keep_default_na=False), path)
    elif suffix == ".parquet":
        ids, vectors = _from_table(pd.read_parquet(path), path)
    else:
        raise EmbeddingImportError(f"{path}: unsupported format {suffix!r}. Fix: use .npy (+ --ids), .csv or .parquet")
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[1] < 2:
        raise EmbeddingImportError(f"{path}: vectors have shape {vectors.shape}; need (users, dim) with dim >= 2")
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad_rows):
        raise EmbeddingImportError(f"{path}: row {bad_rows[0]} (user {ids[bad_rows[0]]!r}) has NaN or infinite values "
                                   f"({len(bad_rows)} such rows). Fix: drop or refill those users")
    zero = np.flatnonzero(np.linalg.norm(vectors, axis=1) == 0)
    if len(zero):
        raise EmbeddingImportError(f"{path}: row {zero[0]} (user {ids[zero[0]]!r}) is all zeros and cannot be "
                                   "normalised. Fix: drop that user")
    seen: dict[str, int] = {}
    for row, uid in enumerate(ids):
        if uid == "":
            raise EmbeddingImportError(f"{path}: row {row} has an empty user id. Fix: fill it or drop the row")
        if uid in seen:
            raise EmbeddingImportError(f"{path}: row {row}: user {uid!r} repeats row {seen[uid]}. Fix: one row per user")
        seen[uid] = row
    if known_users is not None:
        overlap = len(set(ids) & known_users)
        if overlap == 0:
            raise EmbeddingImportError(f"{path}: none of its {len(ids)} user ids appear in interactions.csv "
                                       f"(e.g. {ids[0]!r}). Fix: use the same user ids as the dataset")
    meta = {"method": "import", "file": str(path.resolve()), "ids_file": str(ids_path) if ids_path else None,
            "rows": len(ids), "known_users": None if known_users is None else int(len(set(ids) & known_users))}
    return PreferenceEmbeddings(ids, vectors.astype(np.float32), source=f"import:{path.name}", meta=meta)
