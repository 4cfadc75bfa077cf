"""Slot store URLs: parse once, show only the redacted form, connect without handing the URL to a driver.

    sqlite:///relative/path.db  sqlite:////absolute/path.db   (embedded, the default)
    postgresql://user:password@host:port/dbname?sslmode=...   (production; psycopg 3; `postgres://` too)

A store URL may carry secrets (a password in its user part or in `?password=`), so nothing here prints, stores or
raises the URL itself. `StoreURL.shown` is built from the parsed parts with every secret left out, and it is the
only form that reaches a message, a JSON file or the terminal. PostgreSQL is reached with keyword parameters, never
with the URL string: libpq never parses it (a raw `@` in a password cannot turn part of it into a host name that
libpq then prints), and any driver message is scrubbed of the secrets before it is shown. Errors are raised
`from None`, so no traceback carries a driver exception with the URL in it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

SCHEMES = {"sqlite": "sqlite", "postgresql": "pg", "postgres": "pg"}
# Query parameters whose values are shown; every other value (password, sslpassword, options, ...) is `***`.
SHOWN_PARAMS = {"sslmode", "connect_timeout", "application_name", "target_session_attrs", "gssencmode"}
HINT = "use sqlite:///path.db or postgresql://user@host:port/db"


class StoreError(ValueError):
    """A slot store URL or its content is unusable; the message says what to pass instead (never the secret)."""


@dataclass(frozen=True)
class StoreURL:
    kind: str                                  # "sqlite" | "pg"
    shown: str                                 # the URL with every secret left out: safe to print and store
    path: Path | None = None                   # sqlite: the database file
    params: dict = field(default_factory=dict, repr=False)    # pg: psycopg.connect keyword parameters
    secrets: tuple = field(default=(), repr=False)            # strings scrubbed from driver messages

    def __str__(self) -> str:
        return self.shown

    def scrub(self, text: str) -> str:
        """`text` (a driver message) with every secret of this URL replaced by ***."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, "***")
            for piece in re.split(r"[@:/?#&=]", secret):  # a fragment a parser may have split off
                if len(piece) >= 4:
                    text = text.replace(piece, "***")
        return text


def parse_store_url(url: str | StoreURL) -> StoreURL:
    """A store URL → StoreURL; StoreError (with no part of the URL beyond its scheme) when it is not usable."""
    if isinstance(url, StoreURL):
        return url
    if not isinstance(url, str) or not url.strip():
        raise StoreError(f"empty store URL; {HINT}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise StoreError(f"the store URL does not parse (a bad port or bracket?); {HINT}; put a password with "
                         "reserved characters in percent-encoded form (@ → %40, : → %3A, / → %2F)") from None
    scheme = parts.scheme.lower()  # PostgreSQL:// is postgresql://
    kind = SCHEMES.get(scheme)
    if kind is None:
        named = f"{scheme!r}" if scheme and len(scheme) <= 20 and "://" in url else "(none)"
        raise StoreError(f"unknown store scheme {named}; {HINT}")
    if kind == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise StoreError("a SQLite store URL is sqlite:///relative.db or sqlite:////absolute/path.db "
                             "(no user, password or host)")
        if parts.query or parts.fragment:
            raise StoreError("a SQLite store URL takes no ?query or #fragment: sqlite:///path.db")
        path = Path(unquote(parts.path[1:]))
        return StoreURL("sqlite", f"sqlite:///{path}", path=path)
    query = parse_qsl(parts.query, keep_blank_values=True)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    params = {"host": parts.hostname, "port": port, "user": user, "password": password,
              "dbname": unquote(parts.path.lstrip("/")) or None}
    params = {k: v for k, v in params.items() if v is not None}
    secrets = [s for s in (password, parts.password) if s]
    for key, value in query:
        params[key] = value
        if key not in SHOWN_PARAMS and value:
            secrets.append(value)
    params.setdefault("connect_timeout", "60")
    netloc = (f"{quote(user, safe='')}@" if user else "") + (parts.hostname or "")
    netloc += f":{port}" if port is not None else ""
    shown = f"postgresql://{netloc}/{quote(params.get('dbname', ''), safe='')}"
    if query:
        shown += "?" + "&".join(f"{k}={v if k in SHOWN_PARAMS else '***'}" for k, v in query)
    return StoreURL("pg", shown, params=params, secrets=tuple(dict.fromkeys(secrets)))


def connect(store: StoreURL, write: bool = True):
    """→ (connection, placeholder style 'sqlite' | 'pg'). A reader (write=False) opens a SQLite file read-only
    and never creates one."""
    if store.kind == "sqlite":
        import sqlite3

        if write:
            store.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(store.path, timeout=120, isolation_level=None)  # explicit BEGIN/COMMIT
            conn.execute("PRAGMA journal_mode=WAL")  # readers keep reading the old version while a publish writes
            return conn, "sqlite"
        if not store.path.is_file():
            raise StoreError(f"{store.path}: no such SQLite slot store; publish one with "
                             f"`reelgan-eval slot --publish {store.shown}` or check the path")
        uri = f"{store.path.resolve().as_uri()}?mode=ro"  # read-only: a reader writes nothing, creates nothing
        return sqlite3.connect(uri, uri=True, timeout=120, isolation_level=None), "sqlite"
    try:
        import psycopg
    except ImportError:
        raise StoreError("postgresql:// needs psycopg 3: pip install 'psycopg[binary]'") from None
    try:
        return psycopg.connect(**store.params), "pg"
    except psycopg.Error as e:
        raise StoreError(f"{store.shown}: cannot connect ({store.scrub(str(e).strip())})") from None


def check_store(url: str | StoreURL) -> StoreURL:
    """Validate a store URL before any work is done: it parses, and the store can be reached (PostgreSQL: one
    connection; SQLite: the file, or the nearest existing folder above it, is writable). → StoreURL."""
    store = parse_store_url(url)
    if store.kind == "pg":
        connect(store)[0].close()
        return store
    path = store.path.resolve()
    if path.exists() and not path.is_file():
        raise StoreError(f"{path}: the SQLite store path is not a file; choose another --publish path")
    probe = path if path.exists() else next(p for p in path.parents if p.exists())
    if not probe.is_dir() and probe != path or not os.access(probe, os.W_OK):
        raise StoreError(f"{path}: cannot write the SQLite store there ({probe} is not a writable "
                         "folder or file); choose another --publish path")
    return store
