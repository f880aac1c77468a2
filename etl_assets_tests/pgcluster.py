"""A throwaway PostgreSQL cluster of a test's own, for faults the shared server must never see.

The torture suite restarts and crashes PostgreSQL in the middle of runs; doing that to the
machine's server would break every other test and user of it. This starts a private cluster
with ``initdb`` in a temporary folder, on a free loopback port, from the server binaries
installed on the machine (``ETL_PG_BINDIR`` overrides where they are looked for).

PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres``
user (``runuser``). ``fsync`` is off: a crashed *server process* loses nothing the operating
system already holds, which is the fault these tests inject, and it keeps ``initdb`` fast.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from etl_assets_tests.support import free_port

__all__ = ["ClusterUnavailable", "ThrowawayCluster", "find_bindir"]


class ClusterUnavailable(RuntimeError):
    """The machine has no PostgreSQL server binaries to start a cluster with."""


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL server ``bin`` folder, or ``None``."""
    configured = os.environ.get("ETL_PG_BINDIR")
    candidates = [configured] if configured else []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidates.append(out)

    def version(path: str) -> tuple[int, ...]:
        parts = Path(path).parent.name.split(".")
        return tuple(int(p) for p in parts if p.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


class ThrowawayCluster:
    """``initdb``, start, restart (cleanly or as a crash) and remove a private cluster."""

    def __init__(self, database: str = "torture") -> None:
        bindir = find_bindir()
        if bindir is None:
            raise ClusterUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found; set ETL_PG_BINDIR")
        self.bindir = bindir
        self.database = database
        self.root = Path(tempfile.mkdtemp(prefix="etl-pgcluster-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", *args)

    def start(self) -> ThrowawayCluster:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=60 -c shared_buffers=32MB"
        )
        self._pg_ctl("-o", options, "start")
        engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                                  isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.database}"')
        engine.dispose()
        return self

    def restart(self, mode: Literal["fast", "immediate"]) -> None:
        """``fast``: a clean restart (sessions ended, everything flushed); ``immediate``: a
        crash, with recovery from the WAL on start; commits made with ``synchronous_commit``
        off that the WAL writer had not flushed yet are gone."""
        self._pg_ctl("-m", mode, "restart")

    def wait_ready(self, timeout: float = 60) -> None:
        engine = sa.create_engine(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.exec_driver_sql("SELECT 1")
                    return
                except sa.exc.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            engine.dispose()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._pg_ctl("-m", "immediate", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
