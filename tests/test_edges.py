"""``sessiontrack_edge_observed``: edges learnt at run time join the flow version in place."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack
from sessiontrack.store import _graph

pytestmark = pytest.mark.anyio

FLOW = {
    "nodes": [
        {"id": "start", "data": {"label": "Start"}, "position": {"x": 0, "y": 0}},
        {"id": "menu", "data": {"label": "Menu"}, "position": {"x": 250, "y": 0}},
    ],
    "edges": [{"id": "e1", "source": "start", "target": "menu"}],
}


def register(pm: pluggy.PluginManager, flow: dict[str, Any] = FLOW, **kw: Any) -> None:
    pm.hook.sessiontrack_flow_registered(chatbot_id="bot", name="Bot", flow=flow, **kw)


def start(pm: pluggy.PluginManager) -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
    return sid


def edges(detail: sessiontrack.SessionDetail) -> list[tuple[str, str]]:
    return [(e["source"], e["target"]) for e in detail.flow_data["edges"]]


def nodes(detail: sessiontrack.SessionDetail) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in detail.flow_data["nodes"]}


async def test_an_observed_edge_joins_the_running_sessions_graph_in_place(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    register(pm, version="v1")
    sid = start(pm)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="menu")
    await tracker.flush()
    pm.hook.sessiontrack_edge_observed(
        chatbot_id="bot", source="menu", target="billing", label="Billing", source_handle="b1"
    )
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="billing")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert detail.flow_version == "v1"
    assert edges(detail) == [("start", "menu"), ("menu", "billing")]
    added = detail.flow_data["edges"][1]
    assert (added["label"], added["sourceHandle"]) == ("Billing", "b1")
    billing = nodes(detail)["billing"]
    assert billing["type"] == "default" and billing["data"]["label"] == "billing"
    assert billing["position"] == {"x": 500.0, "y": 0.0}  # after its source
    assert detail.node_executions[-1].label == "billing"
    bots = await tracker.sessions.chatbots()
    assert [b["current_version"] for b in bots] == ["v1"]


async def test_reporting_an_edge_again_changes_nothing(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    register(pm)
    sid = start(pm)
    for _ in range(3):
        pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="start", target="menu")
        pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="menu", target="end")
    await tracker.flush()
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="menu", target="end")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert edges(detail) == [("start", "menu"), ("menu", "end")]
    assert list(nodes(detail)) == ["start", "menu", "end"]


async def test_two_handles_are_two_edges_and_new_nodes_do_not_overlap(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    register(pm)
    sid = start(pm)
    pm.hook.sessiontrack_edge_observed(
        chatbot_id="bot", source="menu", target="a", source_handle="1"
    )
    pm.hook.sessiontrack_edge_observed(
        chatbot_id="bot", source="menu", target="a", source_handle="2"
    )
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="menu", target="b")
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="ghost", target="start")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert edges(detail)[1:] == [("menu", "a"), ("menu", "a"), ("menu", "b"), ("ghost", "start")]
    assert len({e["id"] for e in detail.flow_data["edges"]}) == 5
    placed = [(n["position"]["x"], n["position"]["y"]) for n in nodes(detail).values()]
    assert len(set(placed)) == len(placed)
    assert nodes(detail)["ghost"]["position"] == {"x": 0.0, "y": 200.0}  # below the rest


async def test_registering_the_version_again_keeps_what_was_observed(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    """An engine restarting registers its declared graph again: the learnt edges stay."""
    register(pm)
    sid = start(pm)
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="menu", target="learnt")
    await tracker.flush()
    register(pm)  # the same declared graph, so the same version
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="menu", target="learnt")
    await tracker.flush()
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="learnt")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert edges(detail) == [("start", "menu"), ("menu", "learnt")]
    assert nodes(detail)["learnt"]["position"] == {"x": 500.0, "y": 0.0}
    assert detail.node_executions[-1].label == "learnt"


async def test_an_edge_in_the_batch_that_registers_the_flow(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    register(pm)
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="menu", target="x")
    sid = start(pm)
    await tracker.flush()
    assert edges(await tracker.sessions.get(sid))[-1] == ("menu", "x")


async def test_an_explicit_version_and_an_unknown_chatbot(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sessiontrack")
    register(pm, version="v1")
    old = start(pm)
    await tracker.flush()
    register(pm, flow={"nodes": [], "edges": []}, version="v2")
    new = start(pm)
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="menu", target="y", version="v1")
    pm.hook.sessiontrack_edge_observed(chatbot_id="nobody", source="a", target="b")
    pm.hook.sessiontrack_edge_observed(chatbot_id="bot", source="a", target="b", version="v9")
    await tracker.flush()
    assert edges(await tracker.sessions.get(old))[-1] == ("menu", "y")
    assert edges(await tracker.sessions.get(new)) == []
    assert "edge of chatbot 'nobody' dropped: no flow registered" in caplog.text
    assert "edge of chatbot 'bot' dropped: no flow version 'v9'" in caplog.text
    assert tracker.stats.orphans == 2  # counted, as DESIGN section 7 asks of every drop


async def test_two_processes_adding_edges_to_one_graph_keep_both(
    database_url: str, prefix: str
) -> None:
    """Read, union, write under the batch's write lock: two trackers (two engines, two
    connection pools, as two processes have) adding edges at once lose none."""
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "sweep_interval": None}
    async with sessiontrack.Tracker(database_url, **options) as one:
        register(one.plugin_manager)
        sid = start(one.plugin_manager)
        await one.flush()
        async with sessiontrack.Tracker(database_url, **options) as two:

            async def learn(tracker: sessiontrack.Tracker, side: str) -> None:
                for i in range(40):
                    tracker.plugin_manager.hook.sessiontrack_edge_observed(
                        chatbot_id="bot", source="menu", target=f"{side}{i}"
                    )
                    if i % 4 == 0:
                        await tracker.flush()
                await tracker.flush()

            async with anyio.create_task_group() as tg:
                tg.start_soon(learn, one, "a")
                tg.start_soon(learn, two, "b")
            detail = await two.sessions.get(sid)
    targets = {t for _, t in edges(detail)}
    assert targets == {"menu"} | {f"a{i}" for i in range(40)} | {f"b{i}" for i in range(40)}
    assert len(detail.flow_data["edges"]) == 81


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"source": "a"}, TypeError, "target"),
        ({"source": "", "target": "b"}, ValueError, "source"),
        ({"source": "a", "target": 3}, TypeError, "target"),
        ({"source": "a", "target": "b", "label": "x" * 501}, ValueError, "label"),
        ({"source": "a", "target": "b", "version": "v" * 65}, ValueError, "version"),
        ({"source": "a", "target": "b", "source_handle": 1}, TypeError, "source_handle"),
    ],
)
async def test_arguments_are_checked_at_the_call(
    pm: pluggy.PluginManager, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        pm.hook.sessiontrack_edge_observed(chatbot_id="bot", **kwargs)


def test_the_graph_functions_leave_a_graph_without_positions_readable() -> None:
    graph: dict[str, Any] = {"nodes": [{"id": 1}, {"id": "b", "position": "odd"}]}
    assert _graph.add_edge(graph, {"source": "1", "target": "b"})
    assert not _graph.add_edge(graph, {"source": "1", "target": "b"})
    assert _graph.add_edge(graph, {"source": "1", "target": "c", "label": "go"})
    assert [n["id"] for n in graph["nodes"]] == [1, "b", "c"]
    assert graph["nodes"][2]["position"] == {"x": 0.0, "y": 0.0}
    assert [e["id"] for e in graph["edges"]] == ["1->b", "1->c"]
