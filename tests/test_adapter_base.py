"""The engine-independent part of the adapters: the flow layout and error texts."""

from __future__ import annotations

from sessiontrack.adapters import flow_graph
from sessiontrack.adapters.base import error_text
from sessiontrack.limits import TEXT


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
