"""A private, throwaway PostgreSQL cluster that a test may crash and start again.

``initdb`` refuses root, so the cluster belongs to the ``postgres`` user, in a directory
of its own under /tmp (pytest's tmp_path is not reachable by another user).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from web_helpers.live import free_port

BIN = Path(os.environ.get("SESSIONTRACK_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> str | None:
    """Why a private cluster cannot be made here, or ``None`` if it can."""
    if not (BIN / "initdb").exists():
        return f"no initdb in {BIN} (set SESSIONTRACK_PG_BIN)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user to own a private cluster"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        return "a private cluster needs root (runuser) or the postgres user"
    return None


class PrivateCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="st-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr}{done.stdout}{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: the server exits without a checkpoint, as in a
        crash; the next start replays its WAL."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.crash()
        shutil.rmtree(self.root, ignore_errors=True)
