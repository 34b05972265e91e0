"""A real uvicorn on 127.0.0.1 with a free port, serving a host app that mounts the
sub-app under a prefix (as a host would)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp

PREFIX = "/api/chatbot-sessions"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _host_not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not found", "detail": []}, status_code=404)


def host_app(sub_app: ASGIApp, prefix: str = PREFIX) -> Starlette:
    """The host: its own app, with the sub-app mounted under ``prefix``.

    Paths the host's router cannot match (a newline in the path never reaches the mount)
    get the host's 404: JSON here, like the sub-app's, so schemathesis sees one API.
    """
    return Starlette(routes=[Mount(prefix, app=sub_app)], exception_handlers={404: _host_not_found})


@asynccontextmanager
async def serve(app: ASGIApp, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop; yields ``http://127.0.0.1:PORT``."""
    port = free_port()
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "lifespan": "off",
        "log_level": "warning",
        "timeout_graceful_shutdown": 2,
    }
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited before starting")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``predicate`` (state owned by another task) until it holds."""
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await anyio.sleep(0.02)


async def settle(tracker: Any) -> None:
    """Flush, then wait until this process has published everything in the log, including
    what other processes committed. Tests that assert "nothing before this point" settle
    first. (``flush()`` alone covers this process's own reports.)
    """
    await tracker.flush()
    head = await tracker.store.last_seq()
    await wait_until(lambda: tracker.published_seq >= head)
