"""Comparing the library's analytics answers with the oracle's, figure by figure."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

REL = 1e-9


class Mismatch(AssertionError):
    pass


def same(expected: Any, actual: Any, where: str, problems: list[str]) -> None:
    """Collect every difference: exact for counts and text, 1e-9 relative for floats."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            problems.append(f"{where}: expected an object, got {actual!r}")
            return
        for key in expected.keys() | actual.keys():
            if key not in actual:
                problems.append(f"{where}.{key}: missing (expected {expected[key]!r})")
            elif key not in expected:
                problems.append(f"{where}.{key}: unexpected {actual[key]!r}")
            else:
                same(expected[key], actual[key], f"{where}.{key}", problems)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            problems.append(f"{where}: expected {expected!r}, got {actual!r}")
            return
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, f"{where}[{i}]", problems)
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        if expected != actual or type(expected) is not type(actual):
            problems.append(f"{where}: expected {expected!r}, got {actual!r}")
    elif isinstance(expected, int):
        ok = isinstance(actual, int | float) and not isinstance(actual, bool)
        if not ok or actual != expected:
            problems.append(f"{where}: expected {expected!r}, got {actual!r}")
    elif isinstance(expected, float):
        ok = isinstance(actual, int | float) and not isinstance(actual, bool)
        if not ok or not math.isclose(expected, actual, rel_tol=REL, abs_tol=1e-12):
            problems.append(f"{where}: expected {expected!r}, got {actual!r}")
    elif isinstance(expected, datetime):
        try:
            got = datetime.fromisoformat(actual)
        except (TypeError, ValueError):
            problems.append(f"{where}: expected {expected.isoformat()}, got {actual!r}")
            return
        if got != expected:
            problems.append(f"{where}: expected {expected.isoformat()}, got {actual!r}")
    else:  # pragma: no cover
        raise TypeError(f"{where}: cannot compare {expected!r}")


def offsets(answer: dict[str, Any], tz: str, where: str, problems: list[str]) -> None:
    """``startDate``/``endDate`` carry the tz's offset at that instant."""
    zone = ZoneInfo(tz)
    for key in ("startDate", "endDate"):
        try:
            got = datetime.fromisoformat(answer[key])
        except (KeyError, TypeError, ValueError):
            continue  # reported by same()
        want = got.astimezone(zone).utcoffset()
        if got.utcoffset() != want:
            problems.append(f"{where}.{key}: {answer[key]} lacks {tz}'s offset {want}")


def nodes_answer(
    expected: dict[str, Any], actual: dict[str, Any], where: str, problems: list[str]
) -> None:
    """The nodes route: flowData by ids/labels/types and edge pairs; nodes in flow order
    then sorted; edges by sessions desc (ties in any order)."""
    exp = dict(expected)
    flow_nodes, flow_edges = exp.pop("flowNodes"), exp.pop("flowEdges")
    act = dict(actual)
    flow = act.pop("flowData", None)
    if not isinstance(flow, dict):
        problems.append(f"{where}.flowData: expected a graph, got {flow!r}")
    else:
        got_nodes = [
            (n.get("id"), (n.get("data") or {}).get("label"), n.get("type"))
            for n in flow.get("nodes", [])
        ]
        want_nodes = [(n["id"], n["data"]["label"], n["type"]) for n in flow_nodes]
        if sorted(got_nodes) != sorted(want_nodes):
            problems.append(f"{where}.flowData.nodes: expected {want_nodes}, got {got_nodes}")
        got_edges = {(e.get("source"), e.get("target")) for e in flow.get("edges", [])}
        if got_edges != flow_edges:
            problems.append(
                f"{where}.flowData.edges: missing {sorted(flow_edges - got_edges)}, "
                f"extra {sorted(got_edges - flow_edges)}"
            )
        # nodes of the graph come first, in the graph's order, then the others sorted
        order = [n.get("id") for n in flow.get("nodes", [])]
        known = set(order)
        rows = act.get("nodes") or []
        exp_ids = [r["nodeId"] for r in exp["nodes"]]
        want_order = [i for i in order if i in set(exp_ids)] + sorted(
            i for i in exp_ids if i not in known
        )
        got_order = [r.get("nodeId") for r in rows]
        if got_order != want_order:
            problems.append(f"{where}.nodes order: expected {want_order}, got {got_order}")
        by_id = {r["nodeId"]: r for r in exp["nodes"]}
        exp["nodes"] = [by_id[i] for i in got_order if i in by_id] + [
            r for r in exp["nodes"] if r["nodeId"] not in set(got_order)
        ]
    edges = act.get("edges")
    if isinstance(edges, list):
        counts = [e.get("sessions") for e in edges]
        if counts != sorted(counts, reverse=True):
            problems.append(f"{where}.edges: not by sessions desc: {counts}")
        act["edges"] = sorted(edges, key=lambda e: (-e["sessions"], e["source"], e["target"]))
    same(exp, act, where, problems)
