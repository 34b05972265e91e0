"""LLM and tool call reports (DESIGN.md §8): the hooks' checks, the session totals and the
per-node figures on every read path (tracker, REST, SSE, Socket.IO), on SQLite and
PostgreSQL."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pluggy
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine
from web_helpers.fixtures import api, app_options, live_url, web_app
from web_helpers.live import settle
from web_helpers.sockets import socket_client
from web_helpers.sse_client import sse_stream

import sessiontrack
from sessiontrack import limits as L
from sessiontrack.events import StoredEvent
from sessiontrack.store import _migrate

__all__ = ["api", "app_options", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TOTAL_KEYS = ("input_tokens", "output_tokens", "cost", "llm_calls", "tool_calls", "error_count")
WIRE_TOTALS = ("inputTokens", "outputTokens", "cost", "llmCalls", "toolCalls", "errorCount")


@pytest.fixture
def authenticate() -> Any:
    return lambda request: sessiontrack.Principal(id="reader")


class Sub(str):
    """A ``str`` subclass, as LangChain's ``AIMessage.text`` is."""


def start(pm: pluggy.PluginManager, chatbot_id: str = "bot") -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id=chatbot_id)
    return sid


def totals(item: Any) -> tuple[Any, ...]:
    return tuple(getattr(item, k) for k in TOTAL_KEYS)


def deep_list(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# --- the hooks' checks ----------------------------------------------------------------------

BAD_CALLS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("llm_call", {}, TypeError, "missing required argument 'model'"),
    ("llm_call", {"model": ""}, ValueError, "model must not be empty"),
    ("llm_call", {"model": 4}, TypeError, "model must be a string"),
    ("llm_call", {"model": "m" * (L.CALL_TEXT + 1)}, ValueError, "model is longer than 200"),
    ("llm_call", {"model": "m", "provider": "a\x00"}, ValueError, "provider contains a NUL"),
    ("llm_call", {"model": "m", "finish_reason": "\ud800"}, ValueError, "finish_reason contains"),
    ("llm_call", {"model": "m", "node_id": "n" * 201}, ValueError, "node_id is longer than 200"),
    ("llm_call", {"model": "m", "input_tokens": -1}, ValueError, "input_tokens must be from 0"),
    ("llm_call", {"model": "m", "input_tokens": 1.0}, TypeError, "input_tokens must be an int"),
    ("llm_call", {"model": "m", "output_tokens": True}, TypeError, "output_tokens must be an int"),
    ("llm_call", {"model": "m", "output_tokens": "3"}, TypeError, "output_tokens must be an int"),
    ("llm_call", {"model": "m", "input_tokens": 2**31}, ValueError, "input_tokens must be from"),
    ("llm_call", {"model": "m", "cost": math.nan}, ValueError, "cost must be a finite number"),
    ("llm_call", {"model": "m", "cost": math.inf}, ValueError, "cost must be a finite number"),
    ("llm_call", {"model": "m", "cost": -0.01}, ValueError, "cost must be a finite number"),
    ("llm_call", {"model": "m", "cost": 10**400}, ValueError, "cost must be a finite number"),
    ("llm_call", {"model": "m", "cost": "0.1"}, TypeError, "cost must be a number"),
    ("llm_call", {"model": "m", "cost": False}, TypeError, "cost must be a number"),
    ("llm_call", {"model": "m", "latency_ms": math.nan}, ValueError, "latency_ms must be a fin"),
    ("llm_call", {"model": "m", "ttfb_ms": -1}, ValueError, "ttfb_ms must be a finite"),
    ("llm_call", {"model": "m", "error": "\x00"}, ValueError, "error contains a NUL"),
    ("llm_call", {"model": "m", "at": datetime(2026, 1, 1)}, ValueError, "at must be timezone"),
    ("tool_call", {}, TypeError, "missing required argument 'name'"),
    ("tool_call", {"name": ""}, ValueError, "name must not be empty"),
    ("tool_call", {"name": "t" * 201}, ValueError, "name is longer than 200"),
    ("tool_call", {"name": "t", "call_id": "c" * 201}, ValueError, "call_id is longer than 200"),
    ("tool_call", {"name": "t", "arguments": {"x": math.nan}}, ValueError, "arguments['x'] is"),
    ("tool_call", {"name": "t", "arguments": [1, "a\x00"]}, ValueError, "arguments[1] has a str"),
    ("tool_call", {"name": "t", "arguments": "\udc00"}, ValueError, "arguments has a string"),
    ("tool_call", {"name": "t", "arguments": T0}, TypeError, "arguments is not JSON-serial"),
    ("tool_call", {"name": "t", "arguments": {1: 2}}, TypeError, "has a key of type int"),
    ("tool_call", {"name": "t", "result": 2**53}, ValueError, "result is 9007199254740992, beyond"),
    ("tool_call", {"name": "t", "result": math.inf}, ValueError, "result is inf"),
    ("tool_call", {"name": "t", "result": deep_list(L.JSON_DEPTH + 1)}, ValueError, "deeper than"),
    ("tool_call", {"name": "t", "result": "x" * L.JSON_BYTES}, ValueError, "larger than 1000000"),
    ("tool_call", {"name": "t", "duration_ms": -5}, ValueError, "duration_ms must be a finite"),
    ("tool_call", {"name": "t", "error": 3}, TypeError, "error must be a string or None"),
]


async def test_a_bad_call_raises_at_the_call_site_and_queues_nothing(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    for hook, kwargs, error, words in BAD_CALLS:
        before = tracker.stats.enqueued
        pattern = re.escape(f"sessiontrack_{hook}()") + ".*" + re.escape(words)
        with pytest.raises(error, match=pattern):
            getattr(pm.hook, f"sessiontrack_{hook}")(session_id=sid, **kwargs)
        assert tracker.stats.enqueued == before, (hook, kwargs)
    with pytest.raises(TypeError, match="missing required argument 'session_id'"):
        pm.hook.sessiontrack_llm_call(model="m")
    with pytest.raises(ValueError, match="session_id"):
        pm.hook.sessiontrack_tool_call(session_id="not-a-uuid", name="t")
    await tracker.flush()
    assert (await tracker.sessions.get(sid)).llm_calls == 0


async def test_values_at_the_limits_are_stored_whole(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    model = Sub("é" * L.CALL_TEXT)
    pm.hook.sessiontrack_llm_call(
        session_id=sid,
        model=model,
        provider="p" * L.CALL_TEXT,
        node_id="n" * L.NODE_ID,
        input_tokens=L.TOKENS_MAX,
        output_tokens=0,
        latency_ms=L.DURATION_MS_MAX,
        ttfb_ms=0.5,
        cost=L.COST_MAX,
        finish_reason="length",
        error="😀" * 100,
    )
    values: list[Any] = ["a string", 3, 2.5, True, None, [1, {"k": [None]}], deep_list(99)]
    for i, value in enumerate(values):
        pm.hook.sessiontrack_tool_call(
            session_id=sid,
            name=f"tool{i}",
            call_id="c" * L.CALL_TEXT,
            arguments=value,
            result=value,
        )
    await tracker.flush()
    assert tracker.stats.failed == 0
    d = await tracker.sessions.get(sid)
    (call,) = d.llm_call_history
    assert (call.model, type(call.model), call.provider) == ("é" * 200, str, "p" * 200)
    assert (call.input_tokens, call.output_tokens, call.cost) == (L.TOKENS_MAX, 0, L.COST_MAX)
    assert (call.latency_ms, call.ttfb_ms, call.error) == (L.DURATION_MS_MAX, 0.5, "😀" * 100)
    assert type(call.cost) is float and type(d.cost) is float
    assert (d.input_tokens, d.cost, d.llm_calls, d.tool_calls, d.error_count) == (
        L.TOKENS_MAX,
        L.COST_MAX,
        1,
        len(values),
        1,
    )
    assert [t.arguments for t in d.tool_call_history] == values
    assert [t.result for t in d.tool_call_history] == values
    assert all(t.call_id == "c" * 200 for t in d.tool_call_history)


async def test_a_call_for_an_unknown_session_is_an_orphan(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    pm.hook.sessiontrack_llm_call(session_id=sessiontrack.new_session_id(), model="m")
    pm.hook.sessiontrack_tool_call(session_id=sessiontrack.new_session_id(), name="t")
    await tracker.flush()
    assert (tracker.stats.orphans, tracker.stats.events_stored) == (2, 0)


# --- totals and per-node figures -------------------------------------------------------------


def run(pm: pluggy.PluginManager) -> str:
    """A session with calls in two nodes and one outside any node."""
    hook = pm.hook
    hook.sessiontrack_flow_registered(
        chatbot_id="bot",
        name="Bot",
        flow={"nodes": [{"id": "plan", "data": {"label": "Plan"}}, {"id": "act"}], "edges": []},
    )
    sid = start(pm)
    hook.sessiontrack_llm_call(
        session_id=sid,
        node_id="plan",
        model="gpt-4o",
        provider="openai",
        input_tokens=120,
        output_tokens=30,
        latency_ms=850.5,
        ttfb_ms=210,
        cost=0.0015,
        finish_reason="tool_calls",
        at=T0,
    )
    hook.sessiontrack_tool_call(
        session_id=sid,
        node_id="plan",
        name="search",
        call_id="call_1",
        arguments={"q": "shoes"},
        result=[{"sku": 1}],
        duration_ms=42,
        at=T0 + timedelta(seconds=1),
    )
    hook.sessiontrack_node_executed(session_id=sid, node_id="plan", duration_ms=1000)
    hook.sessiontrack_llm_call(
        session_id=sid, node_id="act", model="gpt-4o", input_tokens=200, error="RateLimitError"
    )
    hook.sessiontrack_tool_call(session_id=sid, node_id="act", name="pay", error="declined")
    hook.sessiontrack_node_executed(session_id=sid, node_id="act", duration_ms=5, error="failed")
    hook.sessiontrack_node_executed(session_id=sid, node_id="plan", duration_ms=20.5)
    hook.sessiontrack_llm_call(session_id=sid, model="small", output_tokens=7, cost=0.0005)
    return sid


EXPECTED_TOTALS = (320, 37, 0.002, 3, 2, 3)


async def test_totals_and_node_figures_in_the_tracker(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = run(pm)
    await tracker.flush()
    d = await tracker.sessions.get(sid)
    assert totals(d) == pytest.approx(EXPECTED_TOTALS)
    (item,) = (await tracker.sessions.list()).data
    assert totals(item) == totals(d)
    (active,) = await tracker.sessions.active()
    assert totals(active) == totals(d)
    plan, act = d.node_totals
    assert (plan.node_id, plan.executions, plan.duration_ms) == ("plan", 2, 1020.5)
    assert (plan.input_tokens, plan.output_tokens, plan.llm_calls, plan.tool_calls) == (
        120,
        30,
        1,
        1,
    )
    assert (plan.cost, plan.error_count) == (pytest.approx(0.0015), 0)
    assert (act.node_id, act.executions, act.duration_ms, act.input_tokens) == ("act", 1, 5, 200)
    assert (act.llm_calls, act.tool_calls, act.error_count, act.cost) == (1, 1, 3, 0)
    first = d.llm_call_history[0]
    assert (first.model, first.provider, first.finish_reason, first.at) == (
        "gpt-4o",
        "openai",
        "tool_calls",
        T0,
    )
    assert (first.latency_ms, first.ttfb_ms) == (850.5, 210)
    assert [c.node_id for c in d.llm_call_history] == ["plan", "act", None]
    assert [c.error for c in d.llm_call_history] == [None, "RateLimitError", None]
    seqs = [c.seq for c in d.llm_call_history]
    assert seqs == sorted(seqs)
    search, pay = d.tool_call_history
    assert (search.name, search.call_id, search.arguments, search.result) == (
        "search",
        "call_1",
        {"q": "shoes"},
        [{"sku": 1}],
    )
    assert (search.duration_ms, search.at, pay.error) == (42, T0 + timedelta(seconds=1), "declined")
    assert [n.node_id for n in d.node_executions] == d.node_history == ["plan", "act", "plan"]


async def test_the_detail_keeps_the_newest_calls_and_counts_them_all(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    for i in range(5):
        pm.hook.sessiontrack_llm_call(session_id=sid, node_id="a", model=f"m{i}", input_tokens=1)
    for i in range(3):
        pm.hook.sessiontrack_tool_call(session_id=sid, node_id="a", name=f"t{i}")
    await tracker.flush()
    d = await tracker.sessions.get(sid, call_limit=2)
    assert [c.model for c in d.llm_call_history] == ["m3", "m4"]
    assert [c.name for c in d.tool_call_history] == ["t1", "t2"]
    assert (d.llm_calls, d.tool_calls, d.input_tokens) == (5, 3, 5)
    (node,) = d.node_totals
    assert (node.llm_calls, node.tool_calls, node.input_tokens) == (5, 3, 5)
    everything = await tracker.sessions.get(sid, call_limit=None)
    assert len(everything.llm_call_history) == 5 and len(everything.tool_call_history) == 3


async def test_totals_and_node_figures_over_rest(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, web_app: Any
) -> None:
    sid = run(pm)
    await tracker.flush()
    transport = httpx.ASGITransport(app=web_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as rest:
        (item,) = (await rest.get("/")).json()["data"]
        (active,) = (await rest.get("/active")).json()
        detail = (await rest.get(f"/{sid}")).json()
    for body in (item, active, detail):
        assert tuple(body[k] for k in WIRE_TOTALS) == pytest.approx(EXPECTED_TOTALS)
    plan, act = detail["nodeTotals"]
    assert plan == {
        "nodeId": "plan",
        "executions": 2,
        "durationMs": 1020.5,
        "inputTokens": 120,
        "outputTokens": 30,
        "cost": 0.0015,
        "llmCalls": 1,
        "toolCalls": 1,
        "errorCount": 0,
    }
    assert (act["nodeId"], act["errorCount"]) == ("act", 3)
    first = detail["llmCallHistory"][0]
    assert set(first) == {
        "seq",
        "nodeId",
        "model",
        "provider",
        "inputTokens",
        "outputTokens",
        "latencyMs",
        "ttfbMs",
        "cost",
        "finishReason",
        "error",
        "at",
    }
    assert (first["model"], first["at"]) == ("gpt-4o", "2026-06-01T09:00:00Z")
    search = detail["toolCallHistory"][0]
    assert set(search) == {
        "seq",
        "nodeId",
        "name",
        "callId",
        "arguments",
        "result",
        "error",
        "durationMs",
        "at",
    }
    assert (search["arguments"], search["result"]) == ({"q": "shoes"}, [{"sku": 1}])


async def test_live_events_carry_the_call_and_the_totals(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, api: httpx.AsyncClient, live_url: str
) -> None:
    await settle(tracker)
    names = [
        "session:started",
        "session:llm-call",
        "session:tool-call",
        "session:node-executed",
        "session:llm-call",
        "session:tool-call",
        "session:node-executed",
        "session:node-executed",
        "session:llm-call",
        "session:completed",
    ]
    async with sse_stream(api) as stream, socket_client(live_url) as probe:
        await probe.call("sessions:subscribe")
        sid = run(pm)
        pm.hook.sessiontrack_session_completed(session_id=sid)
        got = await stream.take(len(names))
        sock = await probe.wait_for(len(names))
    assert [e.event for e in got] == [n for n, _ in sock] == names
    assert [e.data for e in got] == [d for _, d in sock]
    llm, tool = got[1].data, got[2].data
    assert llm == {
        "sessionId": sid,
        "chatbotId": "bot",
        "nodeId": "plan",
        "model": "gpt-4o",
        "provider": "openai",
        "inputTokens": 120,
        "outputTokens": 30,
        "latencyMs": 850.5,
        "ttfbMs": 210,
        "cost": 0.0015,
        "finishReason": "tool_calls",
        "error": None,
        "at": "2026-06-01T09:00:00+00:00",
        "totals": {
            "inputTokens": 120,
            "outputTokens": 30,
            "cost": 0.0015,
            "llmCalls": 1,
            "toolCalls": 0,
            "errorCount": 0,
        },
        "seq": got[1].id,
    }
    assert {k: tool[k] for k in ("name", "callId", "arguments", "result", "durationMs")} == {
        "name": "search",
        "callId": "call_1",
        "arguments": {"q": "shoes"},
        "result": [{"sku": 1}],
        "durationMs": 42,
    }
    assert tool["totals"]["toolCalls"] == 1
    assert got[6].data["totals"]["errorCount"] == 3  # the failing node counts too
    end = got[-1].data["totals"]
    assert tuple(end[k] for k in WIRE_TOTALS) == pytest.approx(EXPECTED_TOTALS)
    # the log replays the same payloads
    async with sse_stream(api, params={"sessionId": sid}, headers={"Last-Event-ID": "0"}) as log:
        assert [e.data for e in await log.take(len(names))] == [e.data for e in got]


def test_an_event_logged_before_totals_were_kept_shows_zeros() -> None:
    event = StoredEvent(
        seq=1,
        kind="node_executed",
        session_id=sessiontrack.new_session_id(),
        chatbot_id="bot",
        at=T0,
        data={"node_id": "n", "node_count": 1},
    )
    assert event.to_wire()["totals"] == dict(zip(WIRE_TOTALS, (0, 0, 0.0, 0, 0, 0), strict=True))


# --- an oracle: the totals are the sums of the reports ----------------------------------------

NODES = ["a", "b", None]
llm_reports = st.fixed_dictionaries(
    {"model": st.sampled_from(["m1", "m2"]), "node_id": st.sampled_from(NODES)},
    optional={
        "input_tokens": st.none() | st.integers(0, L.TOKENS_MAX),
        "output_tokens": st.none() | st.integers(0, 10_000),
        "cost": st.none() | st.floats(0, 100) | st.integers(0, 5),
        "latency_ms": st.none() | st.floats(0, 1e6),
        "error": st.none() | st.text("xyz", max_size=3),
    },
).map(lambda kw: ("llm_call", kw))
tool_reports = st.fixed_dictionaries(
    {"name": st.sampled_from(["t1", "t2"]), "node_id": st.sampled_from(NODES)},
    optional={
        "arguments": st.none() | st.integers(-1000, 1000) | st.text("xyz", max_size=3),
        "duration_ms": st.none() | st.floats(0, 1e6),
        "error": st.none() | st.text("xyz", max_size=3),
    },
).map(lambda kw: ("tool_call", kw))
node_reports = st.fixed_dictionaries(
    {"node_id": st.sampled_from(["a", "b"])},
    optional={
        "duration_ms": st.none() | st.floats(0, 1e6) | st.integers(0, 10**6),
        "error": st.none() | st.just("boom"),
    },
).map(lambda kw: ("node_executed", kw))
reports = st.lists(st.one_of(llm_reports, tool_reports, node_reports), max_size=12)


def oracle(script: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The session's totals and each node's figures, summed in plain Python."""
    total = dict.fromkeys(TOTAL_KEYS, 0)
    total["cost"] = 0.0
    nodes: dict[str, dict[str, Any]] = {}
    for hook, kw in script:
        node = kw.get("node_id")
        sums: dict[str, Any] = {}
        if node is not None:
            sums = nodes.setdefault(
                node,
                {**dict.fromkeys(TOTAL_KEYS, 0), "cost": 0.0, "executions": 0, "duration_ms": 0.0},
            )
        for target in (total, sums) if sums else (total,):
            if hook == "llm_call":
                target["llm_calls"] += 1
                target["input_tokens"] += kw.get("input_tokens") or 0
                target["output_tokens"] += kw.get("output_tokens") or 0
                target["cost"] += kw.get("cost") or 0
            elif hook == "tool_call":
                target["tool_calls"] += 1
            if kw.get("error") is not None:
                target["error_count"] += 1
        if hook == "node_executed":
            sums["executions"] += 1
            sums["duration_ms"] += kw.get("duration_ms") or 0
    return total, nodes


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=reports)
async def test_totals_equal_the_sums_of_the_reports(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, script: list[tuple[str, Any]]
) -> None:
    sid = start(pm)
    for hook, kw in script:
        getattr(pm.hook, f"sessiontrack_{hook}")(session_id=sid, **kw)
    await tracker.flush()
    total, nodes = oracle(script)
    d = await tracker.sessions.get(sid)
    assert {k: getattr(d, k) for k in TOTAL_KEYS} == pytest.approx(total)
    got = {
        n.node_id: {k: getattr(n, k) for k in (*TOTAL_KEYS, "executions", "duration_ms")}
        for n in d.node_totals
    }
    assert list(got) == list(nodes)  # in the order the nodes first appear
    for node, sums in nodes.items():
        assert got[node] == pytest.approx(sums), node
    (item,) = [s for s in (await tracker.sessions.list(limit=100)).data if s.id == sid] or [None]
    assert item is not None and totals(item) == totals(d)
    assert len(d.llm_call_history) == total["llm_calls"]
    assert len(d.tool_call_history) == total["tool_calls"]


# --- migration --------------------------------------------------------------------------------


async def test_upgrade_adds_totals_and_counts_the_node_errors_already_logged(
    database_url: str, prefix: str
) -> None:
    engine = create_async_engine(database_url)
    sqlite = database_url.startswith("sqlite")
    at = T0.replace(tzinfo=None) if sqlite else T0
    ids = [sessiontrack.new_session_id() for _ in range(3)]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate.upgrade, prefix, "0003")
            md = sa.MetaData()
            await conn.run_sync(md.reflect, only=[f"{prefix}sessions", f"{prefix}events"])
            sessions, events = md.tables[f"{prefix}sessions"], md.tables[f"{prefix}events"]
            seq = 0
            for i, sid in enumerate(ids):
                await conn.execute(
                    sessions.insert().values(
                        id=sid,
                        chatbot_id="bot",
                        status="running",
                        variables={},
                        metadata={},
                        started_at=at,
                        updated_at=at,
                    )
                )
                for error in [None, "boom", "again"][: i + 1]:
                    seq += 1
                    await conn.execute(
                        events.insert().values(
                            seq=seq,
                            session_id=sid,
                            chatbot_id="bot",
                            kind="node_executed",
                            at=at,
                            node_id="n",
                            data={"node_id": "n", "error": error},
                        )
                    )
            await conn.execute(sa.text(f"UPDATE {prefix}state SET value = {seq}"))
        async with sessiontrack.Tracker(
            database_url, prefix=prefix, migrate=True, sweep_interval=None
        ) as tracker:
            found = {s.id: s for s in (await tracker.sessions.list()).data}
            assert [found[sid].error_count for sid in ids] == [0, 1, 2]
            assert all(totals(found[sid])[:5] == (0, 0, 0.0, 0, 0) for sid in ids)
            tracker.plugin_manager.hook.sessiontrack_llm_call(
                session_id=ids[2], model="m", cost=0.5, error="x"
            )
            await tracker.flush()
            d = await tracker.sessions.get(ids[2])
            assert (d.cost, d.llm_calls, d.error_count) == (0.5, 1, 3)
            assert d.node_totals[0].error_count == 2  # the call was made outside any node
    finally:
        await engine.dispose()
