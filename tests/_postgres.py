"""A real PostgreSQL server for the slot-store tests: initdb a cluster in a temp folder and start it on a free
loopback port (as the `postgres` user when the tests run as root, since the server refuses to run as root)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).resolve().parent
    raise FileNotFoundError("PostgreSQL server binaries not found; run scripts/install_postgresql.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="reelgan-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{args[0]} failed: {result.stderr}\n{log.read_text() if log.exists() else ''}")

    def start(self) -> "PostgresServer":
        data = self.root / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", "300", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
