"""Authentication: the host's authenticator decides who is asking.

An authenticator is a callable (sync or async) taking an :class:`AuthRequest` and
returning a :class:`~sessiontrack.Principal`, or ``None`` to refuse. It sees the token the
client presented (``Authorization: Bearer``, the SSE ``?access_token=``, or the socket
``auth`` payload) and the whole connection (headers, cookies, client address), so a JWT,
an API key or the host's session cookie all fit.

Without an authenticator only loopback clients are served, as the local principal
:data:`LOCAL_PRINCIPAL`.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from starlette.requests import HTTPConnection

from ..models import Principal

log = logging.getLogger(__name__)

Transport = Literal["http", "sse", "socket"]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What an authenticator gets.

    :param token: the bearer token presented, if any: from ``Authorization: Bearer``, the
        ``access_token`` query parameter (SSE only: EventSource cannot set headers) or the
        Socket.IO ``auth`` payload's ``token``.
    :param connection: the HTTP request or WebSocket/polling handshake (headers,
        cookies, ``client``, ``url``).
    :param transport: ``"http"`` (REST), ``"sse"`` or ``"socket"``.
    :param auth: the Socket.IO ``auth`` payload as sent (socket connects only).
    """

    token: str | None
    connection: HTTPConnection
    transport: Transport
    auth: Mapping[str, Any] | None = None


Authenticator: TypeAlias = Callable[[AuthRequest], "Principal | Awaitable[Principal | None] | None"]

LOCAL_PRINCIPAL = Principal(id="local")
"""The principal of loopback clients when no authenticator is configured."""


class NotAuthenticated(Exception):
    """No principal: 401 (or 403 for a non-loopback client without an authenticator)."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def is_loopback(conn: HTTPConnection) -> bool:
    client = conn.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host.split("%")[0]).is_loopback
    except ValueError:
        return False


async def resolve(authenticator: Authenticator | None, request: AuthRequest) -> Principal:
    """The principal for ``request``, or raise :class:`NotAuthenticated`."""
    if authenticator is None:
        if is_loopback(request.connection):
            return LOCAL_PRINCIPAL
        raise NotAuthenticated(
            "no authenticator is configured, so only loopback clients are served "
            "(pass authenticate= to create_app)", status=403)
    result = authenticator(request)
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        raise NotAuthenticated("missing or invalid credentials")
    if not isinstance(result, Principal):
        raise TypeError(f"the authenticator must return a Principal or None, got {result!r}")
    return result


def mask_phone(phone: str | None) -> str | None:
    """Hide all but the last four digits (and a leading ``+``): ``+*********4321``."""
    if not phone:
        return phone
    digits = sum(ch.isdigit() for ch in phone)
    keep = 4 if digits > 6 else 0
    out: list[str] = []
    seen = 0
    for ch in phone:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen > digits - keep else "*")
        else:
            out.append(ch)
    return "".join(out)
