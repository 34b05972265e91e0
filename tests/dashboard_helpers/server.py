"""The example host app (``python -m examples.helpdesk``) in its own process, on a seeded
database, on 127.0.0.1 with a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from web_helpers.live import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/api/chatbot-sessions"


@contextmanager
def helpdesk(workdir: Path, *, simulator: bool = True) -> Iterator[str]:
    """Seed a database, run the example host app on it; yields the base URL."""
    url = f"sqlite+aiosqlite:///{workdir / 'helpdesk.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, str(ROOT / "tests/dashboard_helpers/seed.py"), url],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "examples.helpdesk",
        "--port",
        str(port),
        "--database-url",
        url,
        "--idle-timeout",
        "3600",
    ]
    if not simulator:
        args.append("--no-simulator")
    log = (workdir / "helpdesk.log").open("wb")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the helpdesk exited: {(workdir / 'helpdesk.log').read_text()}")
            try:
                if httpx.get(f"{base}{PREFIX}/stats", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the helpdesk did not answer within 30 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
