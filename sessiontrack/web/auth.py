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

import functools
import inspect
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from starlette.requests import HTTPConnection

from ..errors import InvalidParameter
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


def presented_token(
    conn: HTTPConnection, other: str | None = None, field: str = "access_token"
) -> str | None:
    """The one bearer token a request presents: ``other`` (the SSE ``access_token``, the
    socket ``auth.token``) or ``Authorization: Bearer``. Two different tokens, or the
    header sent twice, are invalid credentials (401, naming ``field``): which one counts
    would otherwise depend on who reads the request (this app, a proxy, the authenticator).
    """
    if len(conn.headers.getlist("authorization")) > 1:
        raise NotAuthenticated("Authorization: must be sent at most once")
    header = bearer_token(conn)
    if other and header is not None and other != header:
        raise NotAuthenticated(f"{field}: differs from the Authorization header's token")
    return other or header


def socket_token(conn: HTTPConnection, auth: Any) -> str | None:
    """The token of a Socket.IO connect: ``auth`` must be an object (or absent) and its
    ``token`` a string (or absent); a payload of another shape is refused, not ignored."""
    if auth is not None and not isinstance(auth, dict):
        raise InvalidParameter("auth", "must be an object such as {token: '...'}")
    token = auth.get("token") if auth else None
    if token is not None and not isinstance(token, str):
        raise InvalidParameter("auth.token", "must be a string")
    return presented_token(conn, token, "auth.token")


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


# Headers a proxy (or a CDN, load balancer, ingress) adds: a request carrying any of
# them, or any X-Forwarded-*, passed through something that may relay other machines.
FORWARDING_HEADERS = frozenset(
    {
        "forwarded",
        "via",
        "x-real-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "x-original-forwarded-for",
        "x-original-host",
        "x-originating-ip",
        "x-remote-ip",
        "x-remote-addr",
        "x-host",
        "client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "cf-connecting-ipv6",
        "fastly-client-ip",
        "akamai-origin-hop",
        "x-azure-clientip",
        "x-azure-socketip",
        "x-appengine-user-ip",
        "x-envoy-external-address",
    }
)
"""Forwarding headers (lower case); every ``X-Forwarded-*`` header counts too."""

_HOST = re.compile(
    r"(?P<name>[a-z0-9.-]{1,253}|\[(?P<ip6>[0-9a-f:.]{2,45})\])(?::(?P<port>[0-9]{1,5}))?",
    re.ASCII,
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_IPV4 = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}", re.ASCII)


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` header value (or an origin's host) split into its host and port, or
    ``None`` unless it is exactly ``host[:port]``: a DNS name, a dotted IPv4 address or an
    IPv6 address in brackets, and a port of digits from 1 to 65535. No userinfo, path,
    spaces, zone id, empty port or non-ASCII character: ``localhost:80@evil.com`` is
    ``None``.
    """
    if not value.isascii():
        return None
    match = _HOST.fullmatch(value.lower())
    if match is None:
        return None
    port = match["port"]
    if port is not None and not 0 < int(port) <= 65535:
        return None
    if match["ip6"] is not None:
        try:
            name = str(ipaddress.IPv6Address(match["ip6"]))
        except ValueError:
            return None
        return f"[{name}]", int(port) if port else None
    return match["name"], int(port) if port else None


@functools.lru_cache(maxsize=256)
def is_local_host(value: str) -> bool:
    """Whether a ``Host`` value names this machine: ``localhost``, ``<name>.localhost``, a
    dotted address in 127.0.0.0/8 or ``[::1]``, with an optional port."""
    parsed = parse_host(value)
    if parsed is None:
        return False
    name = parsed[0]
    if name == "[::1]":
        return True
    if _IPV4.fullmatch(name):
        try:
            return ipaddress.IPv4Address(name).is_loopback
        except ValueError:
            return False
    labels = name.split(".")
    return labels[-1] == "localhost" and all(_LABEL.fullmatch(label) for label in labels)


@functools.lru_cache(maxsize=256)
def is_local_origin(origin: str) -> bool:
    """Whether an ``Origin`` header is ``http(s)://<a local host>[:port]``."""
    scheme, sep, host = origin.partition("://")
    return sep == "://" and scheme.lower() in ("http", "https") and is_local_host(host)


@functools.lru_cache(maxsize=256)
def _loopback_address(host: str) -> bool:
    # cached, like the host checks: parsing them was a twentieth of a list request
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _forwarded(conn: HTTPConnection) -> bool:
    return any(
        name in FORWARDING_HEADERS or name.startswith("x-forwarded-") for name in conn.headers
    )


def is_loopback(conn: HTTPConnection) -> bool:
    """Whether a request comes from this machine *and* was meant for it.

    The peer address alone is not enough: a reverse proxy on the same host makes every
    client look local (so a request that carries forwarding headers is not local), a page
    on another site can reach 127.0.0.1 through DNS rebinding (so the Host header must
    name this machine, exactly), and a page on another origin can post a form or open a
    WebSocket here (so an Origin header, when present, must name this machine too).
    """
    client = conn.client
    if client is None or not _loopback_address(client.host):
        return False
    headers = conn.headers
    if _forwarded(conn):
        return False
    hosts = headers.getlist("host")
    if len(hosts) != 1 or not is_local_host(hosts[0]):
        return False
    origins = headers.getlist("origin")
    return not origins or (len(origins) == 1 and is_local_origin(origins[0]))


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
