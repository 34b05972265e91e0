"""GET /events: Server-Sent Events with the socket events' names and payloads, ``id:`` =
sequence number, resumable with Last-Event-ID, with keep-alives; on a live uvicorn, on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import api, authenticate, engine, live_url, web_app
from web_helpers.live import settle, wait_until
from web_helpers.sse_client import sse_stream

import sessiontrack

__all__ = ["api", "authenticate", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

RUN = [
    "session:started",
    "session:node-executed",
    "session:message-sent",
    "session:status-changed",
    "session:message-sent",
    "session:completed",
]


@pytest.fixture
def app_options() -> dict[str, Any]:
    return {"keepalive": 0.3}


async def committed(tracker: sessiontrack.Tracker, after: int) -> list[sessiontrack.StoredEvent]:
    """What the log holds after ``after``: the reference the stream must match."""
    events = []
    async with tracker.subscribe(after=after) as sub:
        with anyio.move_on_after(1):
            async for event in sub:
                events.append(event)
    return events


async def test_stream_of_all_sessions(
    api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    await settle(tracker)
    async with sse_stream(api) as stream:
        sid = engine.full_run("bot")
        got = await stream.take(len(RUN))
    assert [e.event for e in got] == RUN
    assert all(e.data["sessionId"] == sid for e in got)
    ids = [e.id for e in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    reference = await committed(tracker, after=ids[0] - 1)
    assert [(e.id, e.event, e.data) for e in got] == [
        (r.seq, r.wire_name, r.to_wire()) for r in reference
    ]
    started = got[0].data
    assert started["chatbotId"] == "bot" and started["customerName"] == "Ana Souza"
    assert got[-1].data["completionReason"] == "flow_end"


async def test_filter_by_session(
    api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    watched = engine.start("bot")
    await settle(tracker)
    async with sse_stream(api, params={"sessionId": watched.upper()}) as stream:
        other = engine.full_run("bot")
        engine.message(watched, "hello")
        engine.complete(watched)
        got = await stream.take(2)
    assert [e.event for e in got] == ["session:message-sent", "session:completed"]
    assert {e.data["sessionId"] for e in got} == {watched} != {other}


async def test_unknown_session_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/events", params={"sessionId": sessiontrack.new_session_id()})
    assert r.status_code == 404


async def test_last_event_id_resumes_without_loss_or_duplicates(
    api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    await settle(tracker)
    async with sse_stream(api) as stream:
        first = engine.full_run("bot")
        head = await stream.take(3)
    # Disconnected: these happen while no client listens.
    second = engine.full_run("bot")
    await settle(tracker)
    last = head[-1].id
    async with sse_stream(api, headers={"Last-Event-ID": str(last)}) as stream:
        third = engine.full_run("bot")
        rest = await stream.take(3 * len(RUN) - 3)
    seen = head + rest
    assert [e.id for e in seen] == sorted({e.id for e in seen})
    by_session: dict[str, list[str]] = {}
    for e in seen:
        by_session.setdefault(e.data["sessionId"], []).append(e.event)
    assert by_session == {first: RUN, second: RUN, third: RUN}
    # The query-string form resumes too (for clients that cannot set headers).
    async with sse_stream(api, params={"lastEventId": str(rest[-2].id)}) as stream:
        assert (await stream.next()).id == rest[-1].id


async def test_keepalive_comments(api: httpx.AsyncClient) -> None:
    async with sse_stream(api) as stream:
        with anyio.move_on_after(1.0):
            await stream.next()
    assert stream.comments.count("keep-alive") >= 2


async def test_disconnects_are_cleaned_up(
    api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    before = tracker.subscriber_count
    async with sse_stream(api), sse_stream(api):
        assert tracker.subscriber_count == before + 2
    await wait_until(lambda: tracker.subscriber_count == before)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_stream_ends_after_max_age(tracker: sessiontrack.Tracker) -> None:
    from web_helpers.live import PREFIX, host_app, serve

    from sessiontrack.web import create_app

    app = create_app(tracker, sse_max_age=0.5, keepalive=5)
    async with serve(host_app(app)) as url, httpx.AsyncClient(base_url=url + PREFIX) as c:
        with anyio.fail_after(5):
            async with sse_stream(c) as stream:
                assert await stream.until_end() == []
