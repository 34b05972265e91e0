"""``sessiontrack serve`` in real separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx

from .live import PREFIX, free_port


@asynccontextmanager
async def serve_process(
    database_url: str, table_prefix: str, log_dir: Path, *, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Run ``sessiontrack serve`` on a free port; yields its root URL once it answers."""
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
