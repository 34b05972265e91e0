"""Real receivers for the alert tests: an HTTP server on 127.0.0.1 that records every POST
(per path: ``/hook``, ``/slack``, ``/teams``) and an aiosmtpd SMTP server that records
every message."""

from __future__ import annotations

import email
import email.policy
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import anyio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import sessiontrack
from sessiontrack.consumer import ConsumerGroup
from tests.web_helpers.live import free_port, serve, wait_until


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


@dataclass
class HttpReceiver:
    """``status`` maps a path to the status it answers (default 200); ``delay`` is how
    long each answer takes."""

    status: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    posts: list[Post] = field(default_factory=list)
    answered: int = 0  # answers sent (after their delay)

    async def endpoint(self, request: Request) -> Response:
        path = request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.posts.append(Post(path, headers, await request.body()))
        if self.delay:
            await anyio.sleep(self.delay)
        self.answered += 1
        return Response(status_code=self.status.get(path, 200))

    def of(self, path: str) -> list[Post]:
        return [p for p in self.posts if p.path == path]

    @asynccontextmanager
    async def serving(self, port: int | None = None) -> AsyncIterator[str]:
        app = Starlette(routes=[Route("/{name}", self.endpoint, methods=["POST"])])
        options = {} if port is None else {"port": port}
        async with serve(app, **options) as url:
            yield url


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"


@dataclass
class Logins:
    """What an SMTP server with AUTH accepts, and every login tried (user, accepted)."""

    user: str
    password: str
    tried: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        ok = user == self.user and auth_data.password.decode() == self.password
        self.tried.append((user, ok))
        return AuthResult(success=ok, handled=False)  # a refusal: the server answers 535


@contextmanager
def smtp_server(
    tls: ssl.SSLContext | None = None, logins: Logins | None = None
) -> Iterator[tuple[int, list[EmailMessage]]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; yields its port and the messages. With
    ``tls`` it offers STARTTLS and requires it; with ``logins`` it requires AUTH (over TLS
    only, as aiosmtpd does by default)."""
    box = _Mailbox()
    port = free_port()
    options: dict[str, Any] = {}
    if tls is not None:
        options.update(tls_context=tls, require_starttls=True)
    if logins is not None:
        options.update(authenticator=logins, auth_required=True)
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, box.messages
    finally:
        controller.stop()


@asynccontextmanager
async def consumer_host(
    url: str, prefix: str, group: ConsumerGroup | None = None, *, leading: bool = False
) -> AsyncIterator[sessiontrack.Tracker]:
    """A tracker with ``group`` as its one consumer group (or none); with ``leading``,
    entered once the group holds its lease."""
    async with sessiontrack.Tracker(
        url,
        prefix=prefix,
        migrate=True,
        poll_interval=0.1,
        sweep_interval=None,
        consumers=[group] if group else [],
    ) as tracker:
        if group is not None and leading:
            await wait_until(lambda: group.leading, 5)
        yield tracker


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll an async ``check`` (a query of the database) until it holds."""
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110 - the state is in the database
            await anyio.sleep(0.05)
