"""Many sessions driven through the hooks while socket and SSE clients listen: every event
arrives exactly once, in per-session order, and when a client gets an event the REST API
already shows the state it announces (live events never run ahead of the data)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import api, app_options, authenticate, engine, live_url, web_app
from web_helpers.live import settle, wait_until
from web_helpers.sockets import socket_client
from web_helpers.sse_client import sse_stream

import sessiontrack

__all__ = ["api", "app_options", "authenticate", "engine", "live_url", "web_app"]
pytestmark = [pytest.mark.anyio, pytest.mark.slow]
SESSIONS = 40


def start_all(engine: Engine) -> list[str]:
    return [engine.start("bot", phone=f"+55119{i:08d}", name=f"C{i}") for i in range(SESSIONS)]


async def drive(engine: Engine, ids: list[str], rng: random.Random) -> None:
    """Interleave the sessions: a node, messages, a wait, most completed; pausing now and
    then so that the writer commits many batches while clients read."""
    steps = [(sid, step) for sid in ids for step in ("node", "out", "wait", "in", "end")]
    rng.shuffle(steps)
    done: dict[str, int] = dict.fromkeys(ids, 0)
    order = ("node", "out", "wait", "in", "end")
    pending = list(steps)
    while pending:
        for item in list(pending):
            sid, step = item
            if order[done[sid]] != step:
                continue
            pending.remove(item)
            done[sid] += 1
            if len(pending) % 15 == 0:
                await anyio.sleep(0.003)
            if step == "node":
                engine.node(sid)
            elif step == "out":
                engine.message(sid, "question?")
            elif step == "wait":
                engine.wait_input(sid)
            elif step == "in":
                engine.message(sid, "answer", direction="inbound")
            elif ids.index(sid) % 5:
                engine.complete(sid)
            break


def check_rest_state(name: str, data: dict[str, Any], detail: dict[str, Any]) -> None:
    """The REST detail reflects the event (the session may have moved on since)."""
    moved_on = datetime.fromisoformat(detail["updatedAt"])
    if name == "session:node-executed":
        assert detail["nodeCount"] >= data["nodeCount"]
    elif name == "session:message-sent":
        assert detail["messageCount"] >= data["messageCount"]
        assert data["messageId"] in {m["id"] for m in detail["messages"]}
    elif name == "session:status-changed":
        assert detail["status"] == data["newStatus"] or moved_on > datetime.fromisoformat(
            data["updatedAt"]
        )
    elif name == "session:completed":
        assert detail["status"] == data["status"] and detail["isActive"] is False
        assert detail["messageCount"] == data["totalMessages"]


async def test_every_event_once_in_order_and_never_ahead_of_rest(
    live_url: str, api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    await settle(tracker)
    start = await tracker.store.last_seq()
    checked: list[int] = []
    problems: list[str] = []
    queue_send, queue_recv = anyio.create_memory_object_stream[tuple[str, Any]](10_000)

    async def verify() -> None:
        async for name, data in queue_recv:
            r = await api.get(f"/{data['sessionId']}")
            try:
                assert r.status_code == 200, r.text
                check_rest_state(name, data, r.json())
            except AssertionError as exc:
                problems.append(f"{name} seq {data['seq']}: {exc}")
            checked.append(data["seq"])

    async with (
        socket_client(live_url) as probe,
        sse_stream(api) as stream,
        socket_client(live_url) as joiner,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(verify)
        await probe.call("sessions:subscribe")
        await joiner.call("sessions:subscribe")
        original = probe.on_event

        def on_event(name: str, data: Any) -> None:
            original(name, data)
            if name.startswith("session:"):
                queue_send.send_nowait((name, data))

        probe.on_event = on_event  # type: ignore[method-assign]
        ids = start_all(engine)
        await tracker.flush()
        # A client subscribed to all that also joined sessions still gets each event once.
        for sid in ids[:10]:
            assert (await joiner.call("session:join", {"sessionId": sid}))["success"]
        await drive(engine, ids, random.Random(7))
        await tracker.flush()
        want = [
            (e.seq, e.wire_name, e.session_id)
            for e in await tracker.store.events_after(start, limit=100_000)
        ]
        expected_total = SESSIONS * 5 + SESSIONS - SESSIONS // 5
        assert len(want) == expected_total
        by_socket = await probe.wait_for(len(want), within=30)
        by_sse = await stream.take(len(want), within=30)
        await joiner.wait_for(len(want), within=30)
        await anyio.sleep(0.3)
        await wait_until(lambda: len(checked) >= len(want), within=30)
        queue_send.close()

    assert [(d["seq"], n, d["sessionId"]) for n, d in by_socket] == want
    assert [(e.id, e.event, e.data["sessionId"]) for e in by_sse] == want
    assert len(probe.events()) == len(want)
    assert [(d["seq"], n, d["sessionId"]) for n, d in joiner.events()] == want
    per_session: dict[str, list[str]] = {}
    for _, name, sid in want:
        per_session.setdefault(sid, []).append(name)
    for i, sid in enumerate(ids):
        tail = ["session:completed"] if i % 5 else []
        assert per_session[sid] == [
            "session:started",
            "session:node-executed",
            "session:message-sent",
            "session:status-changed",
            "session:message-sent",
            *tail,
        ]
    assert not problems, problems[:5]
    assert sorted(checked) == [w[0] for w in want]
