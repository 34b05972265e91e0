"""Several processes: the engine (this test process) writes; separate `sessiontrack serve`
processes deliver every event to their own socket and SSE clients (PostgreSQL:
LISTEN/NOTIFY wake-up; SQLite: polling the log), read by sequence number."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import engine
from web_helpers.live import PREFIX, settle
from web_helpers.processes import serve_process
from web_helpers.sockets import Probe, socket_client
from web_helpers.sse_client import SSEReader, sse_stream

import sessiontrack

__all__ = ["engine"]
pytestmark = [pytest.mark.anyio, pytest.mark.slow]
SESSIONS = 15
PER_SESSION = 6


async def expected(tracker: sessiontrack.Tracker, after: int) -> list[tuple[int, str, str]]:
    events = await tracker.store.events_after(after, limit=10_000)
    return [(e.seq, e.wire_name, e.session_id) for e in events]


async def run_against(
    servers: list[str],
    engine: Engine,
    tracker: sessiontrack.Tracker,
) -> None:
    engine.register("bot")
    await settle(tracker)
    start = await tracker.store.last_seq()
    async with AsyncExitStack() as stack:
        clients: list[tuple[str, Probe | SSEReader]] = []
        for url in servers:
            probe = await stack.enter_async_context(socket_client(url))
            assert await probe.call("sessions:subscribe") == {"success": True}
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=url + PREFIX))
            reader = await stack.enter_async_context(sse_stream(http))
            clients += [(url, probe), (url, reader)]
        for _ in range(SESSIONS):
            engine.full_run("bot")
        await tracker.flush()
        total = SESSIONS * PER_SESSION
        want = await expected(tracker, start)
        assert len(want) == total
        for url, client in clients:
            if isinstance(client, Probe):
                got = [(d["seq"], n, d["sessionId"]) for n, d in await client.wait_for(total)]
            else:
                got = [(e.id, e.event, e.data["sessionId"]) for e in await client.take(total)]
            assert got == want, url
        # A client may resume on another process with the last id the first one gave it.
        middle = want[total // 2][0]
        other = servers[-1]
        async with (
            httpx.AsyncClient(base_url=other + PREFIX) as http,
            sse_stream(http, headers={"Last-Event-ID": str(middle)}) as resumed,
        ):
            rest = await resumed.take(total - total // 2 - 1)
        assert [e.id for e in rest] == [w[0] for w in want[total // 2 + 1 :]]


@pytest.mark.postgresql
@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def test_two_serve_processes_on_postgresql(
    database_url: str, prefix: str, tracker: sessiontrack.Tracker, engine: Engine, tmp_path: Path
) -> None:
    async with (
        serve_process(database_url, prefix, tmp_path) as one,
        serve_process(database_url, prefix, tmp_path) as two,
    ):
        await run_against([one, two], engine, tracker)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_serve_process_polls_sqlite(
    database_url: str, prefix: str, tracker: sessiontrack.Tracker, engine: Engine, tmp_path: Path
) -> None:
    async with serve_process(database_url, prefix, tmp_path) as one:
        await run_against([one], engine, tracker)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_serve_with_a_token(
    database_url: str, prefix: str, tracker: sessiontrack.Tracker, tmp_path: Path
) -> None:
    async with (
        serve_process(
            database_url, prefix, tmp_path, env={"SESSIONTRACK_API_TOKEN": "s3cret"}
        ) as url,
        httpx.AsyncClient(base_url=url + PREFIX) as http,
    ):
        assert (await http.get("/")).status_code == 401
        ok = await http.get("/", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["total"] == 0
        doc = (await http.get("/openapi.json")).json()
        assert doc["servers"] == [{"url": PREFIX}]
