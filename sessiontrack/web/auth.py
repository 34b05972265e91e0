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


_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def _local_name(host: str) -> bool:
    """``host`` (a Host header's or an origin's host, port allowed) names this machine."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in _LOCAL_NAMES or host.endswith(".localhost")


def is_loopback(conn: HTTPConnection) -> bool:
    """Whether a request comes from this machine *and* was meant for it.

    The peer address alone is not enough: a reverse proxy on the same host makes every
    client look local (so a request that carries forwarding headers is not local), a page
    on another site can reach 127.0.0.1 through DNS rebinding (so the Host header must
    name this machine), and a page on another origin can post a form or open a WebSocket
    here (so an Origin header, when present, must name this machine too).
    """
    client = conn.client
    if client is None:
        return False
    try:
        if not ipaddress.ip_address(client.host.split("%")[0]).is_loopback:
            return False
    except ValueError:
        return False
    headers = conn.headers
    if any(name in headers for name in _FORWARDING_HEADERS):
        return False
    if not _local_name(headers.get("host", "")):
        return False
    origin = headers.get("origin")
    if origin is not None:
        host = origin.split("://", 1)[-1].split("/", 1)[0]
        if origin == "null" or not _local_name(host):
            return False
    return True


async def resolve(authenticator: Authenticator | None, request: AuthRequest) -> Principal:
    """The principal for ``request``, or raise :class:`NotAuthenticated`."""
    if authenticator is None:
        if is_loopback(request.connection):
            return LOCAL_PRINCIPAL
        raise NotAuthenticated(
            "no authenticator is configured, so only loopback clients are served "
            "(pass authenticate= to create_app)",
            status=403,
        )
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
