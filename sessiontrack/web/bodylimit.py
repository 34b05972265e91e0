"""``BodyLimit``: an ASGI middleware that refuses request bodies over a size, unread.

A declared ``Content-Length`` over the limit is refused before a byte of the body is
read; a body without one (``Transfer-Encoding: chunked``) is read until it passes the
limit and refused then. Either way the answer is ``413`` with ``Connection: close``, so the
server drops the rest instead of draining it. A body within the limit is read whole before
the app runs and handed to it unchanged, so an endpoint that ignores its body (``POST
/{id}/stop``) still never acts on an oversized request.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 64 * 1024
"""The sub-app's default limit in bytes: its own POSTs take no body at all."""

_DIGITS = re.compile(rb"[0-9]{1,19}")
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def checked_max_body(max_body: int) -> int:
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
        raise ValueError(f"max_body must be a number of bytes >= 0, got {max_body!r}")
    return max_body


class BodyLimit:
    """Refuse HTTP request bodies longer than ``max_body`` bytes with 413.

    ``BodyLimit(app, max_body=65536)``; in Starlette, ``Middleware(BodyLimit,
    max_body=...)`` on the app or on one ``Route``.
    """

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = checked_max_body(max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        lengths = [v for k, v in headers if k == b"content-length"]
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        if len(lengths) > 1 or (lengths and not _DIGITS.fullmatch(lengths[0])):
            await _refuse(send, 400, "Content-Length must be one decimal number")
            return
        if lengths and int(lengths[0]) > self.max_body:
            await _refuse(send, 413, self._too_large())
            return
        if not chunked and (not lengths or int(lengths[0]) == 0) and scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            await _refuse(send, 413, self._too_large())
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` as soon as it passes the limit. (A client that left
        gets ``None`` too: the server drops whatever is sent to it then.)"""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body} bytes"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:  # later calls wait for the disconnect, as the server's own would
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(send: Send, status: int, error: str) -> None:
    payload = json.dumps({"error": error, "detail": []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
