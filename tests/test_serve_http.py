"""`sessiontrack serve --http`: both HTTP/1.1 parsers (httptools, h11) behind the
coalescing transport serve keep-alive lists and a live SSE stream from a real process."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import anyio
import httpx
import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from web_helpers.engine import Engine
from web_helpers.fixtures import engine
from web_helpers.live import PREFIX, settle
from web_helpers.processes import serve_process
from web_helpers.sse_client import sse_stream

import sessiontrack
from sessiontrack.web._coalesce import protocol

__all__ = ["engine"]
pytestmark = [pytest.mark.anyio]


def test_auto_takes_httptools_when_installed() -> None:
    assert importlib.util.find_spec("httptools") is not None  # the web extra installs it
    assert issubclass(protocol("auto"), HttpToolsProtocol)
    assert issubclass(protocol("httptools"), HttpToolsProtocol)
    assert issubclass(protocol("h11"), H11Protocol)
    assert protocol("auto") is protocol("httptools")  # one class, made once
    with pytest.raises(ValueError, match="'auto', 'httptools' or 'h11'"):
        protocol("http2")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("parser", ["httptools", "h11"])
async def test_both_parsers_serve_keep_alive_lists_and_a_live_stream(
    parser: str,
    database_url: str,
    prefix: str,
    tracker: sessiontrack.Tracker,
    engine: Engine,
    tmp_path: Path,
) -> None:
    engine.register("bot")
    for _ in range(3):
        engine.full_run("bot")
    await settle(tracker)
    async with (
        serve_process(database_url, prefix, tmp_path, args=("--http", parser)) as url,
        httpx.AsyncClient(base_url=url + PREFIX) as http,
    ):
        # one connection, many requests: each response whole, none mixed with the next
        pages = [(await http.get("/", params={"limit": n})).json() for n in (1, 2, 3, 1, 2)]
        assert [len(p["data"]) for p in pages] == [1, 2, 3, 1, 2]
        assert {p["total"] for p in pages} == {3}
        missing = await http.get("/01a20d22-0000-7000-8000-000000000009")
        assert missing.status_code == 404
        bad = await http.get("/", params={"limit": "lots"})
        assert bad.status_code == 400 and "limit" in bad.text
        # a stream still leaves event by event: each arrives while the stream stays open
        async with sse_stream(http) as reader:
            sid = engine.full_run("bot")
            await tracker.flush()
            with anyio.fail_after(10):
                [first] = await reader.take(1)
            assert first.data["sessionId"] == sid
