"""uvicorn's HTTP/1.1 protocols, writing each response in one ``send``.

uvicorn writes a response's status line and headers, then its body: two ``send`` system
calls per response, each a loopback (or network) packet that wakes the client. Profiled
under 50 keep-alive clients, those two calls were a fifth of the server's time. Here the
writes made in one turn of the event loop leave together at the end of that turn: the
headers and a body sent right after them (as every Starlette response does) go out as
one packet, while a stream (SSE, a WebSocket after the upgrade) still leaves turn by turn.

:func:`protocol` picks uvicorn's httptools protocol (its parser is C) when httptools is
installed (``sessiontrack[web]`` installs it), else its h11 protocol (pure Python).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class CoalescingTransport:
    """Delegates to ``transport``; writes made in one loop turn leave as one."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol on a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]


@functools.cache
def _httptools_protocol() -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol on a :class:`CoalescingTransport`."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

    return CoalescingHttpToolsProtocol


def protocol(parser: str = "auto") -> type[asyncio.Protocol]:
    """The coalescing protocol for ``parser``: "httptools", "h11", or "auto" (httptools
    when it is installed)."""
    if parser not in ("auto", "httptools", "h11"):
        raise ValueError(f"parser must be 'auto', 'httptools' or 'h11', not {parser!r}")
    has_httptools = importlib.util.find_spec("httptools") is not None
    if parser == "httptools" and not has_httptools:
        raise RuntimeError("httptools is not installed (pip install httptools)")
    return _httptools_protocol() if parser != "h11" and has_httptools else CoalescingH11Protocol
