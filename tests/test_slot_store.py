"""The slot store: versions published in one transaction, readers see one complete version, concurrent publishers
serialise. SQLite in a temp file, PostgreSQL on a real server started on loopback (tests/_postgres.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _postgres import PostgresServer
from _slot_publisher import slot_rows
from evaluation.cli import main
from evaluation.slot.publish import StoreError, publish, read_slot

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'slot.db'}"
    import psycopg

    url = request.getfixturevalue("postgres").url
    with psycopg.connect(url, autocommit=True) as conn:  # a fresh schema per test
        for table in ("slot_current", "slot_rows", "slot_versions"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return url


def _tags(got: dict) -> set[str]:
    return {r["clip_uri"].split("/")[4] for r in got["rows"]}


def test_versions_and_a_reader_during_a_publish(store):
    assert publish(store, slot_rows("A", users=3, k=4), {"checkpoint_sha256": "a"}) == 1
    seen_during = {}

    def read_now(version):  # inside the publisher's open transaction: another connection reads
        seen_during["version"], seen_during["read"] = version, read_slot(store, "u1")

    assert publish(store, slot_rows("B", users=3, k=4), {"checkpoint_sha256": "b"}, on_rows_written=read_now) == 2
    during = seen_during["read"]
    assert seen_during["version"] == 2 and during["version"] == 1 and _tags(during) == {"A"} and len(during["rows"]) == 4
    after = read_slot(store, "u1")
    assert after["version"] == 2 and _tags(after) == {"B"}
    assert [r["rank"] for r in after["rows"]] == [1, 2, 3, 4] and after["rows"][0]["served"]
    assert after["rows"][0]["scores"] == {"engagement": 0.5, "realism": 0.1, "alignment": 0.4}
    assert read_slot(store, "nobody") == {"version": 2, "rows": []}


def test_a_failed_publish_leaves_the_old_version(store):
    publish(store, slot_rows("A", users=2, k=2), {})

    def boom(version):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish(store, slot_rows("B", users=2, k=2), {}, on_rows_written=boom)
    got = read_slot(store, "u0")
    assert got["version"] == 1 and _tags(got) == {"A"}
    assert publish(store, slot_rows("C", users=2, k=2), {}) >= 2  # the store is still writable


def test_two_concurrent_publishers_and_a_reader(store):
    """Two publisher processes write 6 versions each while this process reads: every read is one complete version."""
    n, users, k = 6, 40, 5
    publish(store, slot_rows("start", users, k), {})
    procs = [subprocess.Popen([sys.executable, str(HERE / "_slot_publisher.py"), store, tag, str(n), str(users), str(k)],
                              cwd=HERE.parent, stderr=subprocess.PIPE, text=True) for tag in ("P", "Q")]
    reads = 0
    while any(p.poll() is None for p in procs) or reads == 0:
        got = read_slot(store, "u7")
        assert len(got["rows"]) == k and len(_tags(got)) == 1, got  # never a mix of versions
        reads += 1
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()
    final = read_slot(store)
    assert final["version"] == 1 + 2 * n and len(final["rows"]) == users * k and len(_tags(final)) == 1
    assert reads >= 1


def test_cli_slot_read_and_clear_errors(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'slot.db'}"
    assert main(["slot-read", url, "--user", "u0"]) == 2
    assert "no such SQLite slot store" in capsys.readouterr().err
    publish(url, slot_rows("A", users=2, k=3), {})
    assert main(["slot-read", url, "--user", "u1"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["version"] == 1 and len(got["rows"]) == 3 and got["rows"][0]["served"]
    assert main(["slot-read", url, "--user", "u9"]) == 1
    assert "has no rows" in capsys.readouterr().err
    assert main(["slot-read", "mysql://x/y", "--user", "u0"]) == 2
    assert "unknown store" in capsys.readouterr().err
    with pytest.raises(StoreError, match="cannot connect"):
        read_slot("postgresql://postgres@127.0.0.1:1/postgres")


SECRET = "Hunter2Secret"


def _cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluation.cli", *args], cwd=HERE.parent, capture_output=True,
                          text=True, timeout=timeout, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_store_urls_never_show_a_password(postgres, tmp_path, capfd):
    """Every spelling of a store URL with a password, on a real server: the password is in no output, no message
    and no traceback; in a real `slot` process, a bad store fails before any work (OUT is not created)."""
    port = postgres.port
    # PostgreSQL:// (letter case) with ?password=: publishes, and a real `slot-read` process reads it back
    cased = f"PostgreSQL://postgres@127.0.0.1:{port}/postgres?password={SECRET}&sslmode=disable"
    with __import__("psycopg").connect(postgres.url, autocommit=True) as conn:
        for table in ("slot_current", "slot_rows", "slot_versions"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert publish(cased, slot_rows("A", users=2, k=2), {}) == 1
    assert main(["slot-read", cased, "--user", "u1"]) == 0
    got = capfd.readouterr()
    assert json.loads(got.out)["version"] == 1 and SECRET not in got.out + got.err
    # a raw @ in the password, a store that cannot be reached: `slot` stops before loading anything
    out = tmp_path / "out"
    raw_at = f"postgresql://postgres:ab@{SECRET}@127.0.0.1:1/postgres"
    got = _cli("slot", "--checkpoint", str(tmp_path / "none.ckpt"), "--dataset", str(tmp_path / "none"),
               "--users", "u1", "--out", str(out), "--publish", raw_at)
    assert got.returncode == 2 and "cannot connect" in got.stderr and "127.0.0.1:1" in got.stderr, got.stderr
    assert SECRET not in got.stdout + got.stderr and "Traceback" not in got.stderr
    assert not out.exists()
    # every other spelling, through the CLI's own entry point (fd-level capture: libpq's own output included)
    for url, says in [(f"mysql://u:{SECRET}@h/db", "unknown store scheme 'mysql'"),
                      (f"{SECRET}://u:p@h/db", "unknown store scheme"),
                      (f"postgresql://u:{SECRET}@127.0.0.1:notaport/db", "does not parse"),
                      (f"postgresql://nobody:{SECRET}@127.0.0.1:{port}/postgres?sslmode=disable", "cannot connect"),
                      (f"postgresql://postgres@127.0.0.1:{port}/postgres?password={SECRET}&bogus=1", "cannot connect"),
                      (f"sqlite://u:{SECRET}@host/x.db", "no user, password or host"),
                      (f"sqlite:///{tmp_path}/x.db?password={SECRET}", "no ?query")]:
        code = main(["slot-read", url, "--user", "u0"])
        text = "".join(capfd.readouterr())
        assert code in (1, 2) and says in text and SECRET not in text, (url, text)
    with pytest.raises(StoreError) as err:
        read_slot(f"postgresql://postgres:x{SECRET}@127.0.0.1:1/postgres")
    assert SECRET not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__


def test_slot_read_of_a_missing_sqlite_store_writes_nothing(tmp_path, capfd):
    """A reader never writes: a missing SQLite path is an error naming it, and no folder or file appears."""
    missing = tmp_path / "no" / "such" / "slot.db"
    assert main(["slot-read", f"sqlite:///{missing}", "--user", "u0"]) == 2
    assert f"{missing}: no such SQLite slot store" in capfd.readouterr().err
    assert not (tmp_path / "no").exists()
    url = f"sqlite:///{tmp_path / 'slot.db'}"
    publish(url, slot_rows("A", users=1, k=1), {})
    files = sorted(p.name for p in tmp_path.iterdir())
    db = (tmp_path / "slot.db").read_bytes()
    assert main(["slot-read", url, "--user", "u0"]) == 0
    after = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("slot.db-wal", "slot.db-shm"))
    assert (tmp_path / "slot.db").read_bytes() == db and after == files  # (-wal/-shm: SQLite's WAL reader files)
