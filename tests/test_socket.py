"""The Socket.IO namespace /sessions (DESIGN.md §5) under a mount prefix on a live
uvicorn: python-socketio's AsyncClient and node's socket.io-client, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from web_helpers.engine import Engine
from web_helpers.fixtures import api, app_options, authenticate, engine, live_url, web_app
from web_helpers.live import settle, wait_until
from web_helpers.sockets import ensure_node_modules, node_client, read_json_lines, socket_client
from web_helpers.sse_client import sse_stream

import sessiontrack
from sessiontrack.web import gateway_of

__all__ = ["api", "app_options", "authenticate", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

RUN = [
    "session:started",
    "session:node-executed",
    "session:message-sent",
    "session:status-changed",
    "session:message-sent",
    "session:completed",
]


async def test_subscribe_acks_and_answers(live_url: str) -> None:
    async with socket_client(live_url) as probe:
        assert await probe.call("sessions:subscribe") == {"success": True}
        assert await probe.call("sessions:unsubscribe") == {"success": True}
        await probe.wait_for(2, prefix="sessions:")
        assert probe.events("sessions:") == [
            ("sessions:subscribed", {"success": True}),
            ("sessions:unsubscribed", {"success": True}),
        ]


async def test_subscriber_receives_every_event_with_contract_payloads(
    live_url: str, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot", "The Bot")
    await settle(tracker)
    async with socket_client(live_url) as probe:
        await probe.call("sessions:subscribe")
        sid = engine.full_run("bot")
        got = await probe.wait_for(len(RUN))
    assert [name for name, _ in got] == RUN
    started, node, sent, status, _, completed = (data for _, data in got)
    assert {
        "sessionId",
        "conversationId",
        "chatbotId",
        "chatbotName",
        "customerPhone",
        "customerName",
        "startedAt",
    } <= set(started)
    assert started["sessionId"] == sid and started["chatbotName"] == "The Bot"
    assert {"sessionId", "nodeId", "nodeLabel", "nodeType", "at", "nodeCount"} <= set(node)
    assert node["nodeLabel"] == "Start" and node["nodeCount"] == 1
    assert {
        "sessionId",
        "messageId",
        "direction",
        "type",
        "text",
        "timestamp",
        "messageCount",
    } <= set(sent)
    assert sent["text"] == "What is your name?" and sent["messageCount"] == 1
    assert {
        "sessionId",
        "previousStatus",
        "newStatus",
        "currentNodeId",
        "currentNodeLabel",
        "updatedAt",
    } <= set(status)
    assert status["previousStatus"] == "running" and status["newStatus"] == "waiting_input"
    assert {
        "sessionId",
        "conversationId",
        "completedAt",
        "completionReason",
        "totalNodes",
        "totalMessages",
        "duration",
    } <= set(completed)
    assert completed["totalMessages"] == 2 and completed["duration"] >= 0


async def test_socket_and_sse_payloads_are_equal(
    live_url: str, api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    await settle(tracker)
    async with socket_client(live_url) as probe, sse_stream(api) as stream:
        await probe.call("sessions:subscribe")
        engine.full_run("bot")
        by_socket = await probe.wait_for(len(RUN))
        by_sse = await stream.take(len(RUN))
    assert by_socket == [(e.event, e.data) for e in by_sse]


async def test_join_only_that_session(
    live_url: str, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    watched = engine.start("bot")
    await settle(tracker)
    async with socket_client(live_url) as probe:
        ack = await probe.call("session:join", {"sessionId": watched})
        assert ack == {"sessionId": watched, "success": True}
        engine.full_run("bot")
        engine.message(watched, "hi")
        engine.complete(watched)
        got = await probe.wait_for(2)
        await anyio.sleep(0.3)
        assert [n for n, _ in probe.events()] == ["session:message-sent", "session:completed"]
        assert all(d["sessionId"] == watched for _, d in got)
        assert ("session:joined", {"sessionId": watched, "success": True}) in probe.received
        left = await probe.call("session:leave", {"sessionId": watched})
        assert left == {"sessionId": watched, "success": True}
        assert ("session:left", left) in probe.received


async def test_join_refusals(live_url: str) -> None:
    unknown = sessiontrack.new_session_id()
    async with socket_client(live_url) as probe:
        ack = await probe.call("session:join", {"sessionId": unknown})
        assert ack["success"] is False and ack["sessionId"] == unknown
        bad = await probe.call("session:join", {"sessionId": "nope"})
        assert bad["success"] is False and "UUID" in bad["error"]
        assert (await probe.call("session:join", None))["success"] is False


async def test_subscribed_and_joined_client_gets_each_event_once(
    live_url: str, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    sid = engine.start("bot")
    await settle(tracker)
    async with socket_client(live_url) as probe:
        await probe.call("sessions:subscribe")
        await probe.call("session:join", {"sessionId": sid})
        engine.node(sid)
        engine.message(sid, "one")
        engine.complete(sid)
        await probe.wait_for(3)
        await anyio.sleep(0.3)
        names = [n for n, _ in probe.events()]
        assert names == ["session:node-executed", "session:message-sent", "session:completed"]


async def test_unsubscribed_client_gets_nothing_more(
    live_url: str, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot")
    await settle(tracker)
    async with socket_client(live_url) as quiet, socket_client(live_url) as loud:
        await quiet.call("sessions:subscribe")
        await quiet.call("sessions:unsubscribe")
        await loud.call("sessions:subscribe")
        engine.full_run("bot")
        await loud.wait_for(len(RUN))
        await anyio.sleep(0.2)
        assert quiet.events() == []


async def test_gateway_helpers(
    live_url: str, web_app: Starlette, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    gateway = gateway_of(web_app)
    engine.register("bot")
    sid = engine.start("bot")
    await settle(tracker)
    assert gateway.online_users() == [] and not gateway.is_user_online("local")
    async with socket_client(live_url) as a, socket_client(live_url) as b:
        await a.call("sessions:subscribe")
        await b.call("sessions:subscribe")
        await b.call("session:join", {"sessionId": sid})
        assert gateway.is_user_online("local") and gateway.online_users() == ["local"]
        assert gateway.sessions_subscriber_count() == 2
        assert gateway.session_subscriber_count(sid) == 1
        assert gateway.session_subscriber_count(sid.upper()) == 1
        await b.call("sessions:unsubscribe")
        assert gateway.sessions_subscriber_count() == 1
    await wait_until(lambda: gateway.online_users() == [])
    assert gateway.session_subscriber_count(sid) == 0


@pytest.mark.node
@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_javascript_client(
    live_url: str, engine: Engine, tracker: sessiontrack.Tracker, transport: str
) -> None:
    ensure_node_modules()
    engine.register("bot")
    joined = engine.start("bot")
    await settle(tracker)
    extra = ["--polling"] if transport == "polling" else []
    async with node_client(
        live_url, "--subscribe", "--join", joined, "--until", "2", *extra
    ) as proc:
        setup = await read_json_lines(proc, until_ready=True)
        assert {"ack": "sessions:subscribe", "data": {"success": True}} in setup
        assert {"ack": "session:join", "data": {"sessionId": joined, "success": True}} in setup
        other = engine.full_run("bot")
        engine.message(joined, "hello")
        engine.complete(joined)
        lines = await read_json_lines(proc)
        assert await proc.wait() == 0
    events: list[tuple[str, Any]] = [
        (x["event"], x["data"])
        for x in setup + lines
        if "event" in x
        and x["event"].startswith("session:")
        and x["event"] not in ("session:joined", "session:left")
    ]
    assert [n for n, d in events if d["sessionId"] == other] == RUN
    assert [n for n, d in events if d["sessionId"] == joined] == [
        "session:message-sent",
        "session:completed",
    ]
    assert {"event": "sessions:subscribed", "data": {"success": True}} in setup + lines
