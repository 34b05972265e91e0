"""A Socket.IO client over a raw websocket that can stop reading, for back-pressure tests.

It speaks Engine.IO 4 / Socket.IO 5 text frames over wsproto on an asyncio stream with a
small receive buffer, so that when the test stops calling :meth:`RawSocket.pump` the
server's send path really stalls (the kernel window closes, uvicorn pauses writing and
Engine.IO's queue is what grows).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import anyio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from .live import PREFIX

NAMESPACE = "/sessions"
_EVENT = f"42{NAMESPACE},"
_ACK = f"43{NAMESPACE},"


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._text: list[str] = []
        self._acks: dict[int, Any] = {}
        self._next_ack = 1
        self.accepted = False
        self.connected = False
        self.disconnected = False
        self.closed = False
        self.received: list[tuple[str, Any]] = []

    def seqs(self) -> list[int]:
        """Sequence numbers of the ``session:*`` events received, in order."""
        return [d["seq"] for n, d in self.received if n.startswith("session:")]

    def named(self, name: str) -> list[Any]:
        return [d for n, d in self.received if n == name]

    def _send_text(self, text: str) -> None:
        self._writer.write(self._ws.send(Message(data=text)))

    async def pump(self, until: Callable[[], bool], within: float = 30) -> None:
        """Read and answer (pings) until ``until()`` holds or the connection closes."""
        with anyio.fail_after(within):
            while not until():
                if self.closed:
                    raise AssertionError("the connection closed first")
                data = await self._reader.read(65536)
                if not data:
                    self.closed = True
                    continue
                self._ws.receive_data(data)
                for event in self._ws.events():
                    self._on_ws_event(event)
                await self._writer.drain()

    def _on_ws_event(self, event: Any) -> None:
        if isinstance(event, AcceptConnection):
            self.accepted = True
        elif isinstance(event, RejectConnection):
            raise AssertionError(f"websocket refused: {event.status_code}")
        elif isinstance(event, Ping):
            self._writer.write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self.closed = True
        elif isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self._on_packet("".join(self._text))
                self._text = []

    def _on_packet(self, text: str) -> None:
        if text == "2":  # Engine.IO ping
            self._send_text("3")
        elif text.startswith(f"40{NAMESPACE},"):
            self.connected = True
        elif text.startswith(f"41{NAMESPACE},") or text == f"41{NAMESPACE}":
            self.disconnected = True
        elif text.startswith(f"44{NAMESPACE},"):
            raise AssertionError(f"connect refused: {text}")
        elif text.startswith(_EVENT):
            name, *args = json.loads(text[len(_EVENT) :])
            self.received.append((name, args[0] if args else None))
        elif text.startswith(_ACK):
            body = text[len(_ACK) :]
            start = body.index("[")
            self._acks[int(body[:start])] = json.loads(body[start:])[0]

    async def call(self, event: str, data: Any = None, within: float = 30) -> Any:
        ack = self._next_ack
        self._next_ack += 1
        args = [event] if data is None else [event, data]
        self._send_text(f"42{NAMESPACE},{ack}{json.dumps(args)}")
        await self._writer.drain()
        await self.pump(lambda: ack in self._acks, within)
        return self._acks.pop(ack)

    async def close(self) -> None:
        self._writer.close()
        with suppress(OSError):
            await self._writer.wait_closed()


@asynccontextmanager
async def raw_socket(
    url: str, *, auth: Any = None, prefix: str = PREFIX, rcvbuf: int = 4096
) -> AsyncIterator[RawSocket]:
    """A connected client of ``/sessions``; stops reading whenever the test stops pumping."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
    raw = RawSocket(reader, writer)
    try:
        target = f"{prefix}/socket.io/?EIO=4&transport=websocket"
        writer.write(raw._ws.send(Request(host=f"{host}:{port}", target=target)))
        await raw.pump(lambda: raw.accepted, 10)
        raw._send_text(f"40{NAMESPACE}," + (json.dumps(auth) if auth is not None else ""))
        await raw.pump(lambda: raw.connected, 10)
        yield raw
    finally:
        await raw.close()
