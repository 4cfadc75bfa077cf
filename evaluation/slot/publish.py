"""Publish the slot to a store a recommender reads, and read it back as the recommender would.

    sqlite:///relative/path.db  sqlite:////absolute/path.db   (embedded, the default)
    postgresql://user@host:port/dbname                         (production; psycopg 3)

URLs are parsed, shown and connected by evaluation.slot.storeurl: only a redacted form is ever printed or stored.

Each publish is one slot *version*: the version row and all its slot rows are written in one transaction, and
the pointer `slot_current` moves to the new version in that same transaction. A reader asks for the rows of the
pointer's version in one statement, so it sees the old complete version or the new one, never a mix. Publishers
are serialised (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock), so the pointer always
names the version committed last.
"""
from __future__ import annotations

import json
import sqlite3
import time

from evaluation.slot.storeurl import StoreError, StoreURL, connect, parse_store_url  # noqa: F401 (StoreError: API)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS slot_versions (version {serial} PRIMARY KEY, created TEXT NOT NULL,
       checkpoint_sha256 TEXT, rows INTEGER NOT NULL, summary TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS slot_rows (version INTEGER NOT NULL REFERENCES slot_versions(version),
       position INTEGER NOT NULL, user_id TEXT NOT NULL, served BOOLEAN NOT NULL, passed BOOLEAN NOT NULL,
       rank INTEGER, source TEXT NOT NULL, clip_uri TEXT NOT NULL, seed BIGINT, candidate INTEGER,
       scores TEXT NOT NULL, reasons TEXT NOT NULL, PRIMARY KEY (version, position))""",
    "CREATE INDEX IF NOT EXISTS slot_rows_user ON slot_rows (version, user_id)",
    "CREATE TABLE IF NOT EXISTS slot_current (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
]
ROW_FIELDS = ("user_id", "served", "passed", "rank", "source", "clip_uri", "seed", "candidate", "scores", "reasons")
PG_LOCK = 742_001  # advisory lock key of the slot publishers


def _connect(url, write: bool = True):
    """→ (connection, placeholder style 'sqlite' | 'pg', StoreURL)."""
    store = parse_store_url(url)
    return (*connect(store, write=write), store)


def _q(sql: str, style: str) -> str:
    return sql.replace("?", "%s") if style == "pg" else sql


def _begin_write(conn, style: str) -> None:
    if style == "sqlite":
        conn.execute("BEGIN IMMEDIATE")  # one writer at a time; readers go on (WAL)
        for stmt in SCHEMA:
            conn.execute(stmt.format(serial="INTEGER"))
    else:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK,))  # publishers (and schema creation) in turn
        for stmt in SCHEMA:
            conn.execute(stmt.format(serial="SERIAL"))


def publish(url: str | StoreURL, rows: list[dict], summary: dict, on_rows_written=None) -> int:
    """Write one slot version and point readers at it, atomically; returns the version number.

    rows: slot rows with user_id, served, passed, rank, source, clip_uri, seed, candidate, scores, reasons.
    on_rows_written(version): called inside the transaction after the rows and before the pointer moves (tests use
    it to read during a publish).
    """
    missing = [f for f in ROW_FIELDS if rows and f not in rows[0]]
    if missing:
        raise StoreError(f"slot rows lack {missing}; publish rows made by `reelgan-eval slot`")
    conn, style, _ = _connect(url)
    try:
        if style == "pg":
            with conn.transaction():
                version = _write(conn, style, rows, summary, on_rows_written)
        else:
            try:
                version = _write(conn, style, rows, summary, on_rows_written)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return version
    finally:
        conn.close()


def _write(conn, style: str, rows: list[dict], summary: dict, on_rows_written) -> int:
    _begin_write(conn, style)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cur = conn.execute(_q("INSERT INTO slot_versions (created, checkpoint_sha256, rows, summary) VALUES (?, ?, ?, ?) "
                          "RETURNING version", style),
                       (created, summary.get("checkpoint_sha256"), len(rows), json.dumps(summary, allow_nan=False)))
    version = int(cur.fetchone()[0])
    values = [(version, i, r["user_id"], bool(r["served"]), bool(r["passed"]), r["rank"], r["source"], r["clip_uri"],
               r["seed"], r["candidate"], json.dumps(r["scores"], allow_nan=False), json.dumps(r["reasons"]))
              for i, r in enumerate(rows)]
    sql = _q("INSERT INTO slot_rows (version, position, user_id, served, passed, rank, source, clip_uri, seed, "
             "candidate, scores, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", style)
    if style == "pg":
        with conn.cursor() as c:
            c.executemany(sql, values)
    else:
        conn.executemany(sql, values)
    if on_rows_written is not None:
        on_rows_written(version)
    conn.execute(_q("INSERT INTO slot_current (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET "
                    "version = excluded.version", style), (version,))
    return version


def read_slot(url: str | StoreURL, user_id: str | None = None) -> dict:
    """What a recommender gets: {version, created, rows} of the current version (one user's rows, served first,
    or every row). One statement, so the rows all come from one complete version. Reads only: a SQLite file is
    opened read-only, and a missing one is an error (nothing is created)."""
    conn, style, store = _connect(url, write=False)
    try:
        where = " AND r.user_id = ?" if user_id is not None else ""
        try:
            cur = conn.execute(_q(
                "SELECT v.version, v.created, r.user_id, r.served, r.passed, r.rank, r.source, r.clip_uri, r.seed, "
                "r.candidate, r.scores, r.reasons FROM slot_current c JOIN slot_versions v ON v.version = c.version "
                "JOIN slot_rows r ON r.version = c.version WHERE c.id = 1" + where + " ORDER BY r.position", style),
                (user_id,) if user_id is not None else ())
            found = cur.fetchall()
        except (sqlite3.OperationalError, _pg_undefined_table()) as e:
            raise StoreError(f"{store.shown}: no slot published there yet ({store.scrub(str(e).strip())}); publish "
                             "with `reelgan-eval slot --publish URL`") from None
        if style == "pg":
            conn.rollback()
    finally:
        conn.close()
    if not found:  # no rows for this user (or an empty slot): say which version was asked
        conn, style, _ = _connect(store, write=False)
        try:
            got = conn.execute("SELECT version FROM slot_current WHERE id = 1").fetchone()
        finally:
            conn.close()
        return {"version": int(got[0]) if got else None, "rows": []}
    rows = [dict(zip(("user_id", "served", "passed", "rank", "source", "clip_uri", "seed", "candidate"), r[2:10]),
                 scores=json.loads(r[10]), reasons=json.loads(r[11])) for r in found]
    for r in rows:
        r["served"], r["passed"] = bool(r["served"]), bool(r["passed"])
    rows.sort(key=lambda r: (not r["served"], r["rank"] is None, r["rank"] or 0))
    return {"version": int(found[0][0]), "created": found[0][1], "rows": rows}


def _pg_undefined_table():
    try:
        import psycopg

        return psycopg.errors.UndefinedTable
    except ImportError:
        return sqlite3.OperationalError

