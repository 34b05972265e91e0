"""A small SSE reader over httpx, for tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx


@dataclass
class SSEEvent:
    event: str
    id: int
    data: dict[str, Any]


class SSEReader:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._lines = response.aiter_lines()

    async def _frame(self) -> dict[str, str] | None:
        """The next frame with data, or None when the stream ends."""
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line == "":
                if "data" in fields:
                    return fields
                fields = {}
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        return None

    async def wait_connected(self, within: float = 10) -> None:
        with anyio.fail_after(within):
            async for line in self._lines:
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    if line == ": connected":
                        return
        raise AssertionError("the stream ended before ': connected'")

    async def next(self, within: float = 10) -> SSEEvent:
        with anyio.fail_after(within):
            frame = await self._frame()
        if frame is None:
            raise EOFError("stream ended")
        return SSEEvent(frame["event"], int(frame["id"]), json.loads(frame["data"]))

    async def take(self, n: int, within: float = 10) -> list[SSEEvent]:
        return [await self.next(within) for _ in range(n)]

    async def until_end(self, within: float = 10) -> list[SSEEvent]:
        events = []
        with anyio.fail_after(within):
            while (frame := await self._frame()) is not None:
                events.append(SSEEvent(frame["event"], int(frame["id"]), json.loads(frame["data"])))
        return events


@asynccontextmanager
async def sse_stream(
    client: httpx.AsyncClient, path: str = "/events", **kwargs: Any
) -> AsyncIterator[SSEReader]:
    """Open the stream and return once the server says the subscription is live."""
    async with client.stream(
        "GET", path, timeout=httpx.Timeout(30, read=None), **kwargs
    ) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SSEReader(response)
        await reader.wait_connected()
        yield reader
