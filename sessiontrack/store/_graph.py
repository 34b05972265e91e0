"""Observed edges in a stored flow graph (React Flow shape): pure functions, no I/O.

An engine that learns its graph at run time reports each edge it takes
(``sessiontrack_edge_observed``); the store adds it to the graph of that flow version in
place. Adding is idempotent, and an edge added this way is marked ``data.observed`` so that
the engine registering the same version again (after a restart) keeps it.
"""

from __future__ import annotations

from typing import Any

_STEP_X = 250  # a new node's offset from its source, and between nodes stacked below
_STEP_Y = 100


def _key(edge: dict[str, Any]) -> tuple[str, str, str | None]:
    handle = edge.get("sourceHandle")
    return str(edge.get("source")), str(edge.get("target")), None if handle is None else str(handle)


def has_edge(graph: dict[str, Any], source: str, target: str, handle: str | None) -> bool:
    """Whether ``graph`` has the edge (any handle, when ``handle`` is ``None``)."""
    for edge in graph.get("edges", ()):
        s, t, h = _key(edge)
        if s == source and t == target and (handle is None or h == handle):
            return True
    return False


def _position(node: dict[str, Any] | None) -> tuple[float, float] | None:
    pos = node.get("position") if node else None
    if isinstance(pos, dict):
        x, y = pos.get("x"), pos.get("y")
        if isinstance(x, int | float) and isinstance(y, int | float):
            return float(x), float(y)
    return None


def _add_node(graph: dict[str, Any], node_id: str, after: str | None) -> None:
    """Add a node labelled with its id: right of ``after`` (below the nodes already
    there), or below every node."""
    nodes: list[dict[str, Any]] = graph["nodes"]
    taken = {p for p in map(_position, nodes) if p is not None}
    source = next((n for n in nodes if str(n.get("id")) == after), None)
    anchor = _position(source) if after is not None else None
    if anchor is not None:
        x, y = anchor[0] + _STEP_X, anchor[1]
    else:
        x, y = 0.0, max((p[1] for p in taken), default=-_STEP_Y) + _STEP_Y
    while (x, y) in taken:
        y += _STEP_Y
    nodes.append(
        {"id": node_id, "type": "default", "data": {"label": node_id}, "position": {"x": x, "y": y}}
    )


def add_edge(graph: dict[str, Any], edge: dict[str, Any]) -> bool:
    """Add the observed ``edge`` (``source``, ``target``, ``label``, ``source_handle``) to
    ``graph`` with the nodes it lacks; whether anything changed."""
    source, target, handle = edge["source"], edge["target"], edge.get("source_handle")
    nodes = graph.setdefault("nodes", [])
    edges = graph.setdefault("edges", [])
    if has_edge(graph, source, target, handle):
        return False
    known = {str(n.get("id")) for n in nodes}
    if source not in known:
        _add_node(graph, source, None)
    if target not in known:
        _add_node(graph, target, source)
    base = f"{source}->{target}" + (f":{handle}" if handle is not None else "")
    ids = {str(e.get("id")) for e in edges}
    edge_id, n = base, 1
    while edge_id in ids:
        n += 1
        edge_id = f"{base}#{n}"
    new: dict[str, Any] = {"id": edge_id, "source": source, "target": target}
    if handle is not None:
        new["sourceHandle"] = handle
    if edge.get("label") is not None:
        new["label"] = edge["label"]
    new["data"] = {"observed": True}
    edges.append(new)
    return True


def with_observed(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``new`` (a version registered again) with the observed edges of ``old`` that it
    lacks, and their nodes (from ``old``, where they were placed)."""
    observed = [
        e
        for e in old.get("edges", ())
        if isinstance(e, dict) and isinstance(e.get("data"), dict) and e["data"].get("observed")
    ]
    if not observed:
        return new
    graph = {**new, "nodes": list(new.get("nodes", [])), "edges": list(new.get("edges", []))}
    old_nodes = {str(n.get("id")): n for n in old.get("nodes", ()) if isinstance(n, dict)}
    for edge in observed:
        s, t, h = _key(edge)
        if has_edge(graph, s, t, h):
            continue
        known = {str(n.get("id")) for n in graph["nodes"]}
        for node_id in (s, t):
            if node_id not in known and node_id in old_nodes:
                graph["nodes"].append(old_nodes[node_id])
                known.add(node_id)
        graph["edges"].append(edge)
    return graph
