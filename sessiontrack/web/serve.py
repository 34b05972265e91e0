"""``sessiontrack serve``: the sub-app standalone under uvicorn, against a database that
engines in other processes write to."""

from __future__ import annotations

import gc
import hmac
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from ..models import Principal
from ..tracker import Tracker
from ._coalesce import protocol
from .app import create_app
from .auth import Authenticator, AuthRequest

log = logging.getLogger(__name__)
TOKEN_ENV = "SESSIONTRACK_API_TOKEN"


def token_authenticator(token: str) -> Authenticator:
    """Accept one shared bearer token (as principal ``api``), from any address."""
    expected = token.encode()

    def check(request: AuthRequest) -> Principal | None:
        given = (request.token or "").encode()
        return Principal(id="api") if hmac.compare_digest(given, expected) else None

    return check


def tracker_for(database_url: str, *, table_prefix: str, poll_interval: float = 0.5) -> Tracker:
    """The standalone server's tracker: it reads and stops, and leaves expiry to the
    engines' trackers (``sweep_interval=None``)."""
    return Tracker(
        database_url, prefix=table_prefix, sweep_interval=None, poll_interval=poll_interval
    )


def host_app(
    tracker: Tracker,
    *,
    mount_path: str = "",
    enter_tracker: bool = True,
    websocket_only: bool = False,
    **app_options: Any,
) -> Starlette:
    """The standalone host app: the sub-app mounted at ``mount_path`` (``""``: at the root),
    entering ``tracker`` in its lifespan unless ``enter_tracker=False`` (the caller runs it).
    ``websocket_only``: the Socket.IO endpoint refuses HTTP long-polling with 400."""
    token = os.environ.get(TOKEN_ENV)
    authenticate = token_authenticator(token) if token else None
    sub_app = create_app(tracker, authenticate=authenticate, **app_options)
    if websocket_only:
        sub_app.state.sio.eio.transports = ["websocket"]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with tracker:
            yield

    path = mount_path.rstrip("/")
    return Starlette(
        routes=[Mount(path, app=sub_app)], lifespan=lifespan if enter_tracker else None
    )


def build(
    database_url: str,
    *,
    table_prefix: str,
    mount_path: str = "",
    poll_interval: float = 0.5,
    **app_options: Any,
) -> Starlette:
    """The standalone host app, entering its own tracker in its lifespan."""
    tracker = tracker_for(database_url, table_prefix=table_prefix, poll_interval=poll_interval)
    return host_app(tracker, mount_path=mount_path, **app_options)


async def serve_tracker(
    tracker: Tracker,
    *,
    host: str,
    port: int,
    mount_path: str = "",
    access_log: bool = False,
    http: str = "auto",
    sockets: list[socket.socket] | None = None,
    websocket_only: bool = False,
    **app_options: Any,
) -> None:
    """Serve a tracker that is already running until uvicorn is told to stop (on
    ``sockets`` if given, else on ``host:port``). ``websocket_only``: Socket.IO refuses
    HTTP long-polling (for several workers on one port, see ``workers``). ``http``: the
    HTTP parser, "httptools", "h11" or "auto" (httptools when installed)."""
    app = host_app(
        tracker,
        mount_path=mount_path,
        enter_tracker=False,
        websocket_only=websocket_only,
        **app_options,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="info",
        # a line per request cost a tenth of a list request's time; proxies log anyway
        access_log=access_log,
        http=protocol(http),
        timeout_graceful_shutdown=3,
        proxy_headers=True,
    )
    long_running_collector()
    await uvicorn.Server(config).serve(sockets=sockets)


def long_running_collector() -> None:
    """Tune the garbage collector for a process that does nothing but serve, once it has
    started: everything made so far (modules, the app, the tracker) is frozen out of the
    collections, and the youngest generation is collected after 10,000 allocations, not
    700. With the defaults, 50 clients' requests made the collector run about 100 times a
    second, and the full collections, walking every object of the process, paused it for
    60-90 ms each: about a tenth of the process's time, and most of the slowest
    requests' latency (docs/benchmarks.md, the REST read path)."""
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


async def serve(
    database_url: str,
    *,
    host: str,
    port: int,
    table_prefix: str,
    mount_path: str = "",
    poll_interval: float = 0.5,
) -> None:
    """Open the database, then serve. The tracker starts before uvicorn does, so a
    database it cannot reach raises here, to the caller, instead of failing uvicorn's
    lifespan (whose traceback would be all the user sees)."""
    tracker = tracker_for(database_url, table_prefix=table_prefix, poll_interval=poll_interval)
    async with tracker:
        await serve_tracker(tracker, host=host, port=port, mount_path=mount_path)
