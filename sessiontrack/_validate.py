"""Argument checks for the hook implementations: cheap, and raising at the call site."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .hookspecs import REQUIRED


def required(value: Any, name: str, hook: str) -> Any:
    if value is REQUIRED:
        raise TypeError(f"{hook}() missing required argument {name!r}")
    return value


def text(value: Any, name: str, hook: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    required(value, name, hook)
    if type(value) is not str:
        raise TypeError(f"{hook}(): {name} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{hook}(): {name} must not be empty")
    return value


def opt_text(value: Any, name: str, hook: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise TypeError(f"{hook}(): {name} must be a string or None, got {type(value).__name__}")


def moment(value: Any, name: str, hook: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{hook}(): {name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{hook}(): {name} must be timezone-aware (naive {value!r})")
    return value


def json_object(value: Any, name: str, hook: str) -> str:
    """Snapshot a JSON object as text: later mutation by the caller cannot change it."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{hook}(): {name} must be a mapping (a JSON object), got {type(value).__name__}"
        )
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{hook}(): {name} is not JSON-serialisable: {exc}") from None


def flow_graph(value: Any, hook: str) -> dict[str, Any]:
    required(value, "flow", hook)
    graph: dict[str, Any] = json.loads(json_object(value, "flow", hook))
    for key in ("nodes", "edges"):
        items = graph.setdefault(key, [])
        if not isinstance(items, list):
            raise ValueError(f"{hook}(): flow[{key!r}] must be a list")
        for item in items:
            if not isinstance(item, dict) or "id" not in item:
                raise ValueError(f"{hook}(): every item of flow[{key!r}] needs an 'id'")
    return graph


def flow_version(graph: dict[str, Any]) -> str:
    """The default version of a flow: a hash of its canonical JSON."""
    canonical = json.dumps(graph, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
