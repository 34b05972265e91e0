"""A real webhook receiver for the tests: a Starlette app on uvicorn at 127.0.0.1 that
records every POST (arrival, headers, body) and checks its signature."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sessiontrack.notify import verify

from .live import serve


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]
    signed: bool

    @property
    def key(self) -> str:
        return self.headers["idempotency-key"]

    @property
    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.body["events"]]


@dataclass
class Receiver:
    """``secrets``: webhook id → secret (filled in by the test once subscriptions exist);
    ``status`` and ``delay`` shape the answers."""

    secrets: dict[str, str] = field(default_factory=dict)
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        hook = headers.get("x-sessiontrack-webhook", "")
        signed = verify(
            self.secrets.get(hook, ""),
            raw,
            headers.get("x-sessiontrack-signature"),
            headers.get("x-sessiontrack-timestamp"),
        )
        self.received.append(Received(time.monotonic(), headers, json.loads(raw), signed))
        if self.delay:
            await anyio.sleep(self.delay)
        return Response(status_code=self.status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])

    @asynccontextmanager
    async def serving(self, port: int | None = None) -> AsyncIterator[str]:
        """Serve; yields the hook's URL."""
        options = {} if port is None else {"port": port}
        async with serve(self.app(), **options) as url:
            yield url + "/hook"

    def of(self, webhook_id: str) -> list[Received]:
        return [r for r in self.received if r.headers["x-sessiontrack-webhook"] == webhook_id]

    def events(self, webhook_id: str) -> list[dict[str, Any]]:
        return [e for r in self.of(webhook_id) for e in r.body["events"]]
