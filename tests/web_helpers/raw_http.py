"""HTTP/1.1 written by hand over a TCP connection: for what an ordinary client hides
(a Content-Length with no body behind it, a chunked body that never ends)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import anyio


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool


async def raw_request(url: str, head: str, chunks: Sequence[bytes] = ()) -> RawAnswer:
    """Send a request head and some body bytes by hand, then read the answer without
    sending anything more: an answer proves the server did not wait for the rest."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()
        with anyio.fail_after(10):
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            closed = await reader.read(1) == b""
        return RawAnswer(int(status_line.split()[1]), headers, body, closed)
    finally:
        writer.close()


def chunked(data: bytes) -> bytes:
    """One chunk of a ``Transfer-Encoding: chunked`` body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
