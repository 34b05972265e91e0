"""``sessiontrack serve``: the sub-app standalone under uvicorn, against a database that
engines in other processes write to."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from ..models import Principal
from ..tracker import Tracker
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


def build(
    database_url: str,
    *,
    table_prefix: str,
    mount_path: str = "",
    poll_interval: float = 0.5,
    **app_options: Any,
) -> Starlette:
    """The standalone host app: enters the tracker in its lifespan and mounts the sub-app
    at ``mount_path`` (``""``: at the root)."""
    tracker = Tracker(
        database_url, prefix=table_prefix, sweep_interval=None, poll_interval=poll_interval
    )
    token = os.environ.get(TOKEN_ENV)
    authenticate = token_authenticator(token) if token else None
    sub_app = create_app(tracker, authenticate=authenticate, **app_options)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with tracker:
            yield

    path = mount_path.rstrip("/")
    return Starlette(routes=[Mount(path, app=sub_app)], lifespan=lifespan)


async def serve(
    database_url: str,
    *,
    host: str,
    port: int,
    table_prefix: str,
    mount_path: str = "",
    poll_interval: float = 0.5,
) -> None:
    app = build(
        database_url, table_prefix=table_prefix, mount_path=mount_path, poll_interval=poll_interval
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level="info",
        timeout_graceful_shutdown=3,
        proxy_headers=True,
    )
    await uvicorn.Server(config).serve()
