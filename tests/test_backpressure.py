"""Live delivery under back-pressure: a reader that stalls misses nothing once it reads
again, and stalled readers do not make the server grow.

Real parts throughout: a uvicorn on 127.0.0.1, httpx streams and raw websockets whose
receive buffers are small (so the stall reaches the server), a python-socketio client for
the resume, and ``sessiontrack serve`` in its own process for the memory bound.
"""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import sessiontrack
from tests.web_helpers.engine import Engine
from tests.web_helpers.fixtures import api, app_options, authenticate, engine, live_url, web_app
from tests.web_helpers.live import PREFIX, settle
from tests.web_helpers.processes import rss_kib, serve_pid, serve_process
from tests.web_helpers.raw_socket import RawSocket, raw_socket
from tests.web_helpers.sockets import NAMESPACE as NS
from tests.web_helpers.sockets import (
    ensure_node_modules,
    node_client,
    read_json_lines,
    socket_client,
)
from tests.web_helpers.sse_client import SSEReader

__all__ = ["api", "app_options", "authenticate", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

QUEUE_LIMIT = 100


@pytest.fixture
def app_options() -> dict[str, Any]:  # noqa: F811 - overrides the shared fixture
    return {"socket_queue_limit": QUEUE_LIMIT}


async def produce(engine: Engine, tracker: sessiontrack.Tracker, runs: int) -> None:
    """``runs`` full sessions (six events each), pacing the engine as a real one would."""
    engine.register("bot-a")
    for i in range(runs):
        engine.full_run("bot-a")
        if i % 100 == 99:
            await tracker.drain()
    await tracker.flush()


async def log_after(tracker: sessiontrack.Tracker, after: int) -> list[int]:
    seqs: list[int] = []
    while True:
        page = await tracker.store.events_after(after, limit=5000)
        seqs += [e.seq for e in page]
        if len(page) < 5000:
            return seqs
        after = page[-1].seq


async def events_after(tracker: sessiontrack.Tracker, notice: dict[str, Any]) -> list[Any]:
    return await tracker.store.events_after(notice["lastSeq"], limit=100_000)


async def test_subscription_that_falls_behind_catches_up_from_the_log(
    tracker: sessiontrack.Tracker, engine: Engine
) -> None:
    await settle(tracker)
    start = tracker.published_seq
    async with tracker.subscribe(buffer=50) as sub:
        await produce(engine, tracker, 400)
        assert sub.behind  # 2,400 events offered to a queue of 50
        expected = await log_after(tracker, start)
        got: list[int] = []
        with anyio.fail_after(30):
            async for event in sub:
                got.append(event.seq)
                if event.seq == expected[-1]:
                    break
    assert got == expected


async def test_stalled_sse_reader_misses_nothing(
    tracker: sessiontrack.Tracker, engine: Engine, live_url: str
) -> None:
    await settle(tracker)
    start = tracker.published_seq
    small = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]
    transport = httpx.AsyncHTTPTransport(socket_options=small)
    async with (
        httpx.AsyncClient(transport=transport, base_url=live_url + PREFIX, timeout=30) as client,
        client.stream("GET", "/events") as response,
    ):
        reader = SSEReader(response)
        await reader.wait_connected()
        # The reader stops reading while 20,000 events are committed (the case:
        # it used to receive 19,001).
        await produce(engine, tracker, 3334)
        expected = await log_after(tracker, start)
        assert len(expected) >= 20_000
        got: list[int] = []
        while not got or got[-1] < expected[-1]:
            got.append((await reader.next(within=30)).id)
    assert got == expected


async def test_stalled_socket_reader_is_cut_with_a_reason_and_resumes_exactly(
    tracker: sessiontrack.Tracker, engine: Engine, live_url: str
) -> None:
    await settle(tracker)
    start = tracker.published_seq
    async with raw_socket(live_url) as raw:
        assert (await raw.call("sessions:subscribe")) == {"success": True}
        await produce(engine, tracker, 1000)  # 6,000 events; not reading meanwhile
        expected = await log_after(tracker, start)
        await raw.pump(lambda: raw.disconnected, within=60)
    [notice] = raw.named("sessions:overflow")
    assert notice["reason"] == "send queue full"
    assert notice["limit"] == QUEUE_LIMIT
    delivered = raw.seqs()
    # Everything up to the notice, in order, and the notice names the last of it.
    assert delivered == expected[: len(delivered)]
    assert notice["lastSeq"] == (delivered[-1] if delivered else start)
    assert notice["lastSeq"] < expected[-1]

    async with socket_client(live_url) as probe:
        resume = {"after": notice["lastSeq"]}
        ack = await probe.client.call("sessions:subscribe", resume, namespace=NS, timeout=60)
        missing = [s for s in expected if s > notice["lastSeq"]]
        assert ack == {"success": True, "replayed": len(missing)}
        await probe.wait_for(len(missing), within=60)
        # Live delivery takes over after the replay: the next events arrive once.
        sid = engine.start("bot-a")
        engine.complete(sid)
        await tracker.flush()
        after_resume = await log_after(tracker, expected[-1])
        events = await probe.wait_for(len(missing) + len(after_resume), within=30)
        await anyio.sleep(0.2)  # room for a duplicate to show up
        assert [d["seq"] for _, d in probe.events()] == missing + after_resume
        assert len(events) == len(missing) + len(after_resume)

    # The JavaScript client resumes the same way.
    ensure_node_modules()
    completions = sum(e.kind == "session_completed" for e in await events_after(tracker, notice))
    args = ["--subscribe", "--after", str(notice["lastSeq"]), "--until", str(completions + 1)]
    async with node_client(live_url, *args) as proc:
        lines = await read_json_lines(proc, until_ready=True, within=60)
        engine.complete(engine.start("bot-a"))  # and one more, live
        await tracker.flush()
        lines += await read_json_lines(proc, within=30)
    [ack] = [line["data"] for line in lines if line.get("ack") == "sessions:subscribe"]
    assert ack == {"success": True, "replayed": len(missing) + len(after_resume)}
    seqs = [line["data"]["seq"] for line in lines if line.get("event", "").startswith("session:")]
    assert seqs == missing + after_resume + await log_after(tracker, after_resume[-1])


async def test_join_with_after_replays_one_session(
    tracker: sessiontrack.Tracker, engine: Engine, live_url: str
) -> None:
    engine.register("bot-a")
    sid = engine.full_run("bot-a", finish=False)
    other = engine.full_run("bot-a")
    await settle(tracker)
    seqs = [e.seq for e in await tracker.store.events_after(0, session_id=sid)]
    async with socket_client(live_url) as probe:
        ack = await probe.call("session:join", {"sessionId": sid, "after": seqs[1]})
        assert ack == {"sessionId": sid, "success": True, "replayed": len(seqs) - 2}
        engine.complete(sid)
        engine.complete(other)  # another session: not this room's
        await tracker.flush()
        events = await probe.wait_for(len(seqs) - 1)
        await anyio.sleep(0.2)
        assert [d["sessionId"] for _, d in probe.events()] == [sid] * (len(seqs) - 1)
        assert [d["seq"] for _, d in events][:-1] == seqs[2:]


@pytest.mark.parametrize("after", [-1, "12", 1.5, True, 2**63])
async def test_resume_refuses_a_bad_after(live_url: str, after: Any) -> None:
    async with socket_client(live_url) as probe:
        ack = await probe.call("sessions:subscribe", {"after": after})
        assert ack["success"] is False
        assert "after" in ack["error"]
        ack = await probe.call("session:join", {"sessionId": "a" * 32, "after": after})
        assert ack["success"] is False


# --- the server's memory, with stalled socket clients --------------------------------------


async def _engine_at(engine: Engine, tracker: sessiontrack.Tracker, rate: int, total: int) -> None:
    """About ``rate`` events per second, ``total`` in all, in steps of 0.1 s: sessions of
    five 2 kB messages each, so that every event a queue holds weighs what chat text does."""
    per_step = rate // 10 // 6  # sessions per step, six events each
    text = "x" * 2000
    for _ in range(total // (per_step * 6)):
        tick = anyio.current_time()
        for _ in range(per_step):
            sid = engine.start("bot-a")
            for _ in range(5):
                engine.message(sid, text)
        await tracker.drain()
        await anyio.sleep(max(0.0, 0.1 - (anyio.current_time() - tick)))
    await tracker.flush()


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def test_server_memory_stays_bounded_with_stalled_socket_clients(
    tracker: sessiontrack.Tracker,
    engine: Engine,
    database_url: str,
    prefix: str,
    tmp_path: Path,
) -> None:
    engine.register("bot-a")
    await tracker.flush()
    async with serve_process(database_url, prefix, tmp_path) as url:
        pid = serve_pid(int(url.rsplit(":", 1)[1]))
        clients: list[RawSocket] = []
        async with AsyncExitStack() as stack:
            for _ in range(20):
                raw = await stack.enter_async_context(raw_socket(url))
                assert (await raw.call("sessions:subscribe")) == {"success": True}
                clients.append(raw)
            # Warm up: the clients' buffers fill and every queue reaches its bound.
            await _engine_at(engine, tracker, 2000, 10_000)
            warm = rss_kib(pid)
            peak = warm
            done = anyio.Event()

            async def load() -> None:
                await _engine_at(engine, tracker, 2000, 40_000)
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(load)
                while not done.is_set():
                    peak = max(peak, rss_kib(pid))
                    with anyio.move_on_after(0.25):
                        await done.wait()
            peak = max(peak, rss_kib(pid))
            # 40,000 events of about 2 kB to 20 clients that read nothing: unbounded queues
            # hold all of them (80 MB, shared between the queues); bounded ones hold what
            # they held once warm, at most two bounds' worth (4 MB) plus socket buffers.
            print(f"serve RSS: {warm} KiB warm, {peak} KiB peak")
            assert peak - warm < 24 * 1024, (warm, peak)
            # A stalled client still learns why and where to resume once it reads.
            head = await tracker.store.last_seq()
            await clients[0].pump(lambda: clients[0].disconnected, within=60)
            [notice] = clients[0].named("sessions:overflow")
            assert 0 < notice["lastSeq"] < head
