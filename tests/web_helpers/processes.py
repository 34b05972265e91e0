"""``sessiontrack serve`` in real separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx

from .live import PREFIX, free_port


@asynccontextmanager
async def serve_process(
    database_url: str,
    table_prefix: str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
) -> AsyncIterator[str]:
    """Run ``sessiontrack serve`` (with extra ``args``) on a free port; yields its root URL
    once it answers."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "sessiontrack.cli",
        "-v",
        "serve",
        "--database-url",
        database_url,
        "--prefix",
        table_prefix,
        "--port",
        str(port),
        "--mount-path",
        PREFIX,
        "--poll-interval",
        "0.1",
        *args,
    ]
    log_path = log_dir / f"serve-{port}.log"
    # Opening a log file and forking are quick; the process must outlive this call.
    with open(log_path, "wb") as log:  # noqa: ASYNC230
        proc = subprocess.Popen(  # noqa: ASYNC220
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url + PREFIX) as client:
                with anyio.fail_after(30):
                    while True:
                        if proc.poll() is not None:
                            raise RuntimeError(f"serve exited: {log_path.read_text()}")
                        try:
                            if (await client.get("/openapi.json")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        await anyio.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                code = await anyio.to_thread.run_sync(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(
                    f"serve did not stop on SIGTERM: {log_path.read_text()}"
                ) from None
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert code in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete" in log_path.read_text()


def serve_pid(port: int) -> int:
    """The pid of the ``sessiontrack serve`` child of this process listening on ``port``
    (as :func:`serve_process` runs it), found in ``/proc``."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"serve" in cmdline and str(port).encode() in cmdline:
            return int(entry.name)
    raise RuntimeError(f"no serve process on port {port}")


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (``VmRSS`` of its ``/proc`` status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
