"""Who a clip is for: user ids, a campaign CSV, an external vector or a persona → named conditions.

A Target's condition is what the generator sees: float32 (E,), L2-normalised (docs/INTERFACES.md, "Condition").
"""
from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Target:
    name: str            # shown in the manifest; safe_name(name) is the output folder
    source: str          # "user" | "persona" | "embedding"
    condition: np.ndarray  # float32 (E,), unit norm
    detail: str = ""     # persona text, file:row, ...


class UnknownUserError(KeyError):
    """A user id that has no preference vector."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def _normalise(v: np.ndarray, where: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError(f"{where}: the vector has NaN or Inf values; fix the source embedding")
    n = float(np.linalg.norm(v))
    if n < 1e-12:
        raise ValueError(f"{where}: the vector is all zeros; a condition needs a direction")
    return v / n


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute), one row at a time."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def closest_user_ids(user_id: str, known: list[str], k: int = 5) -> list[str]:
    """The k known ids nearest to `user_id` by edit distance (case-folded; ties by difflib ratio, then id).

    String distance, because an unknown id has no vector to compare; it catches typos like u00O7 → u0007.
    """
    q = user_id.casefold()
    scored = sorted(known, key=lambda u: (_edit_distance(q, u.casefold()),
                                          -difflib.SequenceMatcher(None, q, u.casefold()).ratio(), u))
    return scored[:k]


def unknown_user_message(user_id: str, known: list[str], source: str) -> str:
    near = closest_user_ids(user_id, known)
    return (f"unknown user {user_id!r}: no preference vector in {source} ({len(known)} users). "
            f"Closest ids: {', '.join(near) if near else '(none)'}. For a new shopper, describe them instead: "
            f"--persona \"retro red dress with dots\" (cold start through the persona map), or pass a vector "
            f"with --embedding FILE.npy.")


def user_targets(user_ids: list[str], embeddings, source: str = "the preference embeddings") -> list[Target]:
    """embeddings: data.preferences.PreferenceEmbeddings. Unknown ids raise UnknownUserError (all listed)."""
    known = list(embeddings.user_ids)
    known_set = set(known)
    missing = [u for u in user_ids if u not in known_set]
    if missing:
        msg = unknown_user_message(missing[0], known, source)
        if len(missing) > 1:
            msg += f" ({len(missing) - 1} more unknown: {', '.join(missing[1:6])}{' …' if len(missing) > 6 else ''})"
        raise UnknownUserError(msg)
    conds = np.asarray(embeddings.conditions(list(user_ids)), dtype=np.float32)
    return [Target(u, "user", _normalise(c, f"user {u}")) for u, c in zip(user_ids, conds)]


def persona_targets(texts: list[str], persona_map) -> list[Target]:
    """persona_map: data.persona.PersonaMap (offline MiniLM + the learned linear map)."""
    texts = [t.strip() for t in texts]
    if any(not t for t in texts):
        raise ValueError("--persona text is empty; describe the shopper, e.g. \"retro red dress with dots\"")
    conds = np.asarray(persona_map.embed(texts), dtype=np.float32)
    return [Target(f"persona-{t}", "persona", _normalise(c, f"persona {t!r}"), t) for t, c in zip(texts, conds)]


def embedding_targets(path: str | Path, dim: int) -> list[Target]:
    """A .npy of shape (E,) or (N, E); each row becomes one target named <file stem>[-<row>]."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e}); save it with numpy.save(path, vector)") from e
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{path}: expected shape ({dim},) or (N, {dim}) to match the generator's condition "
                         f"dimension, got {arr.shape}")
    single = len(arr) == 1
    return [Target(path.stem if single else f"{path.stem}-{i}", "embedding",
                   _normalise(row, f"{path} row {i}"), f"{path}:{i}") for i, row in enumerate(arr)]


CAMPAIGN_CHUNK = 1024  # campaign rows turned into targets at a time (personas are embedded per chunk)


def campaign_rows(path: str | Path, embeddings, persona_map) -> Iterator[tuple[int, str, str]]:
    """Stream (CSV row number, user_id, persona) of a campaign CSV, each row checked as it is read (constant
    memory); an error names the file, row and fix."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or ())
            if not cols & {"user_id", "persona"}:
                raise ValueError(f"{path}: no user_id or persona column (found {', '.join(reader.fieldnames or []) or 'none'}); "
                                 "add a header line such as 'user_id,persona'")
            rows = 0
            for i, row in enumerate(reader, start=2):  # row 1 is the header
                uid, persona = (row.get("user_id") or "").strip(), (row.get("persona") or "").strip()
                if uid:
                    if embeddings is None:
                        raise ValueError(f"{path} row {i}: user_id {uid!r} needs preference embeddings; pass --data or --preferences")
                    if uid not in embeddings:
                        raise UnknownUserError(f"{path} row {i}: "
                                               f"{unknown_user_message(uid, list(embeddings.user_ids), 'the preference embeddings')}")
                elif persona:
                    if persona_map is None:
                        raise ValueError(f"{path} row {i}: persona needs the persona map; pass --data or --persona-map")
                else:
                    raise ValueError(f"{path} row {i}: both user_id and persona are empty; fill one or delete the row")
                rows += 1
                yield i, uid, persona
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the campaign CSV ({e}); it needs a header with user_id and/or persona") from e
    if not rows:
        raise ValueError(f"{path}: the campaign has no rows")


def check_campaign(path: str | Path, embeddings, persona_map) -> int:
    """One streaming pass over a campaign file (a regular file: a pipe is read once, by the targets): every row is
    checked before any clip is made. → the number of rows."""
    return sum(1 for _ in campaign_rows(path, embeddings, persona_map))


def campaign_targets(path: str | Path, embeddings, persona_map) -> Iterator[Target]:
    """campaign.csv: one row per target with `user_id` and/or `persona` (a row's user_id wins when both are set).

    Streamed: rows are read and turned into targets CAMPAIGN_CHUNK at a time, so a 10⁶-row campaign starts
    generating at once and never holds its rows or vectors in memory."""
    chunk: list[tuple[int, str, str]] = []
    for row in campaign_rows(path, embeddings, persona_map):
        chunk.append(row)
        if len(chunk) == CAMPAIGN_CHUNK:
            yield from _chunk_targets(chunk, embeddings, persona_map)
            chunk = []
    yield from _chunk_targets(chunk, embeddings, persona_map)


def _chunk_targets(chunk, embeddings, persona_map) -> list[Target]:
    users = [uid for _, uid, _ in chunk if uid]
    user_conds = iter(np.asarray(embeddings.conditions(users), np.float32) if users else ())
    texts = [p for _, uid, p in chunk if not uid]
    persona_conds = iter(np.asarray(persona_map.embed(texts), np.float32) if texts else ())
    out = []
    for i, uid, persona in chunk:
        if uid:
            out.append(Target(uid, "user", _normalise(next(user_conds), f"user {uid}")))
        else:
            out.append(Target(f"persona-{persona}", "persona", _normalise(next(persona_conds), f"persona {persona!r}"),
                              persona))
    return out


def dedupe(targets: Iterable[Target]) -> Iterator[Target]:
    """Keep the first of targets with the same name (a user listed twice gets one folder, not two); streams."""
    seen = set()
    for t in targets:
        if t.name not in seen:
            seen.add(t.name)
            yield t
