"""A flow graph in React Flow shape, and the small expression language its nodes use.

A flow is ``{"id", "name", "version", "nodes": [...], "edges": [...]}``. A node is
``{"id", "type", "position": {"x", "y"}, "data": {"label", ...}}``; an edge is
``{"id", "source", "target"}`` with a ``sourceHandle`` when the source node has several
exits (the id of a button, list row or condition rule, or ``"else"``).

Texts may contain ``{{variable}}`` or ``{{variable.field}}`` placeholders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_TYPES = frozenset(
    {
        "start",
        "message",
        "question",
        "buttons",
        "list",
        "condition",
        "setVariable",
        "form",
        "handoff",
        "end",
    }
)
"""Node types the engine executes."""

WAITING_TYPES = {
    "question": "waiting_input",
    "buttons": "waiting_input",
    "list": "waiting_input",
    "form": "waiting_flow",
}
"""Node types that wait for the customer, and the session status while they wait."""

_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_MISSING = object()


class FlowError(ValueError):
    """The flow graph is not one the engine can run."""


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    type: str
    label: str
    data: Mapping[str, Any]

    @property
    def waits(self) -> bool:
        return self.type in WAITING_TYPES

    def options(self) -> list[tuple[str, str]]:
        """``(id, title)`` of the choices of a buttons or list node."""
        if self.type == "buttons":
            return [(b["id"], b["title"]) for b in self.data.get("buttons", [])]
        if self.type == "list":
            return [
                (r["id"], r["title"])
                for s in self.data.get("sections", [])
                for r in s.get("rows", [])
            ]
        return []


class Flow:
    """A parsed, checked flow graph."""

    def __init__(self, graph: Mapping[str, Any]) -> None:
        self.id = str(graph.get("id") or "flow")
        self.name = str(graph.get("name") or self.id)
        self.version: str | None = graph.get("version")
        self.graph = {"nodes": list(graph["nodes"]), "edges": list(graph["edges"])}
        self.nodes: dict[str, Node] = {}
        for raw in self.graph["nodes"]:
            data = raw.get("data") or {}
            node = Node(raw["id"], raw.get("type", ""), data.get("label") or raw["id"], data)
            if node.type not in NODE_TYPES:
                raise FlowError(f"node {node.id!r}: unknown type {node.type!r}")
            self.nodes[node.id] = node
        self._exits: dict[str, dict[str | None, str]] = {}
        for edge in self.graph["edges"]:
            source, target = edge["source"], edge["target"]
            if source not in self.nodes or target not in self.nodes:
                raise FlowError(f"edge {edge.get('id')!r} joins unknown nodes")
            self._exits.setdefault(source, {})[edge.get("sourceHandle")] = target
        starts = [n for n in self.nodes.values() if n.type == "start"]
        if len(starts) != 1:
            raise FlowError(f"a flow needs exactly one start node, found {len(starts)}")
        self.start = starts[0]

    @classmethod
    def load(cls, path: str | Path) -> Flow:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def node(self, node_id: str | None) -> Node | None:
        return self.nodes.get(node_id) if node_id is not None else None

    def next(self, node: Node, handle: str | None = None) -> Node | None:
        """The node after ``node`` through the exit ``handle`` (else its plain exit)."""
        exits = self._exits.get(node.id, {})
        target = exits.get(handle, exits.get(None)) if handle is not None else exits.get(None)
        return self.nodes.get(target) if target is not None else None


def lookup(variables: Mapping[str, Any], path: str) -> Any:
    """``variables["a"]["b"]`` for ``"a.b"``; ``None`` when any step is missing."""
    value: Any = variables
    for part in path.split("."):
        value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
        if value is _MISSING:
            return None
    return value


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Replace ``{{path}}`` placeholders; a missing value renders as an empty string."""

    def one(match: re.Match[str]) -> str:
        value = lookup(variables, match.group(1))
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(one, template)


def matches(rule: Mapping[str, Any], variables: Mapping[str, Any]) -> bool:
    """Whether a condition rule ``{"variable", "operator", "value"}`` holds."""
    value = lookup(variables, rule["variable"])
    expected = rule.get("value")
    op = rule.get("operator", "eq")
    if op == "exists":
        return value not in (None, "")
    if op == "not_exists":
        return value in (None, "")
    if op == "eq":
        return bool(_norm(value) == _norm(expected))
    if op == "neq":
        return bool(_norm(value) != _norm(expected))
    if op == "in":
        return _norm(value) in {_norm(v) for v in expected or ()}
    if op == "matches":
        return value is not None and re.fullmatch(str(expected), str(value)) is not None
    if op in ("gt", "lt"):
        try:
            a, b = float(value), float(expected)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return a > b if op == "gt" else a < b
    raise FlowError(f"unknown condition operator {op!r}")


def _norm(value: Any) -> Any:
    return value.strip().casefold() if isinstance(value, str) else value
