"""The engine-independent part of the adapters (:mod:`sessiontrack.adapters.base`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import sessiontrack
from sessiontrack import hookimpl
from sessiontrack.adapters import EngineAdapter, flow_graph
from sessiontrack.adapters.base import error_text
from sessiontrack.events import SESSION_COMPLETED, StoredEvent
from sessiontrack.limits import TEXT

pytestmark = pytest.mark.anyio


def test_flow_graph_lays_out_layers_from_the_entry() -> None:
    graph = flow_graph(
        [("start", "Start"), ("ask", "Ask", "input"), "answer", "end"],
        [("start", "ask"), ("ask", "answer", "question"), ("answer", "ask"), ("answer", "end")],
    )
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert [n["id"] for n in graph["nodes"]] == ["start", "ask", "answer", "end"]
    assert nodes["start"]["data"] == {"label": "Start"}
    assert nodes["ask"]["type"] == "input"
    assert nodes["answer"]["data"]["label"] == "answer"  # a bare id is its own label
    xs = {node_id: n["position"]["x"] for node_id, n in nodes.items()}
    assert xs["start"] < xs["ask"] < xs["answer"] < xs["end"]  # one layer a step
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    assert edges[("ask", "answer")]["label"] == "question"
    assert len({e["id"] for e in graph["edges"]}) == 4


def test_flow_graph_adds_nodes_only_named_by_edges_and_places_unreached_ones_last() -> None:
    graph = flow_graph(["a", "island"], [("a", "b"), ("b", "c")], entry="a")
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"a", "island", "b", "c"}
    assert nodes["island"]["position"]["x"] > nodes["c"]["position"]["x"]
    same_layer = [n["position"] for n in graph["nodes"] if n["position"]["x"] == 0]
    assert len(same_layer) == 1


def test_error_text_names_the_type_and_stays_within_the_limit() -> None:
    assert error_text(ValueError("bad input")) == "ValueError: bad input"
    assert error_text(KeyError()) == "KeyError"
    assert error_text("already text") == "already text"
    assert len(error_text(RuntimeError("x" * (TEXT + 10)))) == TEXT


# --- EngineAdapter on a real tracker, both backends ----------------------------------------


class _Recorder(EngineAdapter):
    def __init__(self, tracker: sessiontrack.Tracker, chatbot_id: str) -> None:
        super().__init__(tracker, chatbot_id, name=f"{chatbot_id} bot")
        self.stops: list[tuple[str, str | None]] = []

    def on_stop(self, session_id: str, conversation_id: str | None) -> None:
        self.stops.append((session_id, conversation_id))


async def test_a_conversation_keeps_its_session_until_it_completes(
    tracker: sessiontrack.Tracker,
) -> None:
    bot = _Recorder(tracker, "base-bot")
    bot.register_flow(flow_graph(["hello", "bye"], [("hello", "bye")]))
    sid, new = await bot.session_for(42, contact={"name": "Ana"})
    assert new and bot.cached_session("42") == sid
    assert await bot.session_for("42") == (sid, False)
    with bot.node(sid, "hello"):
        pass
    with pytest.raises(ZeroDivisionError), bot.node(sid, "bye"):
        1 / 0  # noqa: B018
    bot.complete(sid, reason="done")
    second, new = await bot.session_for(42)
    assert new and second != sid  # the same thread's next conversation: a new session
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert detail.conversation_id == "42" and detail.customer_name == "Ana"
    assert detail.status == "completed" and detail.completion_reason == "done"
    hello, bye = detail.node_executions
    assert (hello.node_id, hello.error) == ("hello", None)
    assert bye.error == "ZeroDivisionError: division by zero"
    assert hello.duration_ms is not None and hello.duration_ms >= 0


async def test_a_restarted_adapter_finds_the_session_in_the_store(
    database_url: str, prefix: str
) -> None:
    options: dict[str, Any] = {"prefix": prefix, "migrate": True}
    async with sessiontrack.Tracker(database_url, **options) as first:
        sid, _ = await _Recorder(first, "base-bot").session_for("thread-1")
    async with sessiontrack.Tracker(database_url, **options) as second:
        bot = _Recorder(second, "base-bot")
        assert bot.cached_session("thread-1") is None
        assert await bot.session_for("thread-1") == (sid, False)
        assert (await second.sessions.list()).total == 1


async def test_stops_reach_only_the_adapter_of_their_chatbot(
    tracker: sessiontrack.Tracker,
) -> None:
    ours, theirs = _Recorder(tracker, "base-ours"), _Recorder(tracker, "base-theirs")
    sid, _ = await ours.session_for("c-1")
    other, _ = await theirs.session_for("c-1")
    await tracker.stop(sid, "ops")  # not committed before the call: stop() flushes first
    await tracker.flush()
    for _ in range(100):
        if ours.stops:
            break
        await anyio.sleep(0.02)
    assert ours.stops == [(sid, "c-1")] and ours.stopped(sid)
    assert theirs.stops == [] and not theirs.stopped(other)
    assert ours.cached_session("c-1") is None  # the next turn starts a new session
    ours.close()
    assert not tracker.plugin_manager.is_registered(ours)


async def test_an_observed_edge_is_reported_once_and_joins_the_flow(
    tracker: sessiontrack.Tracker,
) -> None:
    bot = _Recorder(tracker, "base-edges")
    bot.register_flow(flow_graph(["a", "b"], [("a", "b")]))
    sid, _ = await bot.session_for("c")
    calls: list[dict[str, Any]] = []

    class Spy:
        @hookimpl
        def sessiontrack_edge_observed(self, source: str, target: str) -> None:
            calls.append({"source": source, "target": target})

    tracker.plugin_manager.register(Spy())
    bot.observe_edge("a", "b")  # declared: not reported
    bot.observe_edge("b", "c")
    bot.observe_edge("b", "c")
    assert calls == [{"source": "b", "target": "c"}]
    await tracker.flush()
    flow = (await tracker.sessions.get(sid)).flow_data
    assert {(e["source"], e["target"]) for e in flow["edges"]} == {("a", "b"), ("b", "c")}
    assert "c" in {n["id"] for n in flow["nodes"]}


async def test_a_session_the_tracker_expired_is_not_continued(
    database_url: str, prefix: str
) -> None:
    options: dict[str, Any] = {
        "prefix": prefix,
        "migrate": True,
        "idle_timeout": timedelta(seconds=1),
        "sweep_interval": 0.1,
    }
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        bot = _Recorder(tracker, "base-expiry")
        sid, _ = await bot.session_for("c")
        for _ in range(200):  # the sweeper expires it, the adapter hears the commit
            if bot.cached_session("c") is None:
                break
            await anyio.sleep(0.05)
        assert bot.cached_session("c") is None
        assert (await tracker.sessions.get(sid)).status == "expired"
        second, new = await bot.session_for("c")
        assert new and second != sid


async def test_a_stop_while_the_tracker_is_asked_starts_a_new_session(
    tracker: sessiontrack.Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, _ = await _Recorder(tracker, "base-race").session_for("c")
    restarted = _Recorder(tracker, "base-race")  # nothing cached: it asks the tracker
    asked = tracker.active_session

    async def stopped_meanwhile(chatbot_id: str, conversation_id: str) -> str | None:
        found = await asked(chatbot_id, conversation_id)
        restarted.sessiontrack_stop_requested(
            session_id=sid, principal="ops", chatbot_id="base-race"
        )
        return found

    monkeypatch.setattr(tracker, "active_session", stopped_meanwhile)
    second, new = await restarted.session_for("c")
    assert new and second != sid and restarted.cached_session("c") == second
    assert restarted.stops == [(sid, None)] and restarted.stopped(sid)


async def test_a_stop_heard_first_as_a_committed_event_is_handled_once(
    tracker: sessiontrack.Tracker,
) -> None:
    """The committed ``stopped`` event and the stop request reach the adapter in either
    order (two tasks of the tracker): whichever comes first handles the stop, once."""
    bot = _Recorder(tracker, "base-order")
    sid, _ = await bot.session_for("c-9")
    event = StoredEvent(
        seq=1,
        kind=SESSION_COMPLETED,
        session_id=sid,
        chatbot_id="base-order",
        at=datetime.now(UTC),
        data={"status": "stopped"},
    )
    bot.sessiontrack_events_committed([event])
    bot.sessiontrack_stop_requested(session_id=sid, principal="ops", chatbot_id="base-order")
    assert bot.stops == [(sid, "c-9")] and bot.stopped(sid)
    assert bot.cached_session("c-9") is None
