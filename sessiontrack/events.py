"""Stored events and their wire form.

Every report an engine makes becomes one :class:`StoredEvent` in the append-only log, with
a sequence number that increases with commit order. The writer enriches each event's
``data`` with what it knew at fold time (counts, previous status, node label), so any
process can turn an event into the payload live clients receive without another query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

SESSION_STARTED: Final = "session_started"
NODE_EXECUTED: Final = "node_executed"
MESSAGE: Final = "message"
STATUS_CHANGED: Final = "status_changed"
VARIABLES_CHANGED: Final = "variables_changed"
SESSION_COMPLETED: Final = "session_completed"
LLM_CALL: Final = "llm_call"
TOOL_CALL: Final = "tool_call"

WIRE_NAMES: Final[dict[str, str]] = {
    SESSION_STARTED: "session:started",
    NODE_EXECUTED: "session:node-executed",
    MESSAGE: "session:message-sent",
    STATUS_CHANGED: "session:status-changed",
    VARIABLES_CHANGED: "session:variables-changed",
    SESSION_COMPLETED: "session:completed",
    LLM_CALL: "session:llm-call",
    TOOL_CALL: "session:tool-call",
}
"""Event kind → the name used on Socket.IO and as the SSE ``event:`` field."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredEvent:
    """One committed event of the log."""

    seq: int
    kind: str
    session_id: str
    chatbot_id: str
    at: datetime
    flow_version: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def wire_name(self) -> str:
        return WIRE_NAMES[self.kind]

    def to_wire(self) -> dict[str, Any]:
        """The JSON payload sent for this event over Socket.IO and SSE."""
        return _PAYLOADS[self.kind](self)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _started(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "sessionId": e.session_id,
        "conversationId": d.get("conversation_id"),
        "chatbotId": e.chatbot_id,
        "chatbotName": d.get("chatbot_name"),
        "customerPhone": d.get("customer_phone"),
        "customerName": d.get("customer_name"),
        "startedAt": _iso(e.at),
        "seq": e.seq,
    }


def _status_changed(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "sessionId": e.session_id,
        "chatbotId": e.chatbot_id,
        "previousStatus": d.get("previous_status"),
        "newStatus": d.get("status"),
        "currentNodeId": d.get("node_id"),
        "currentNodeLabel": d.get("node_label"),
        "reason": d.get("reason"),
        "updatedAt": _iso(e.at),
        "seq": e.seq,
    }


def _node_executed(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "sessionId": e.session_id,
        "chatbotId": e.chatbot_id,
        "nodeId": d.get("node_id"),
        "nodeLabel": d.get("label"),
        "nodeType": d.get("node_type"),
        "at": _iso(e.at),
        "durationMs": d.get("duration_ms"),
        "error": d.get("error"),
        "nodeCount": d.get("node_count"),
        "totals": _totals(d),
        "seq": e.seq,
    }


def _message(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "sessionId": e.session_id,
        "chatbotId": e.chatbot_id,
        "messageId": e.seq,
        "direction": d.get("direction"),
        "type": d.get("type"),
        "text": d.get("text"),
        "payload": d.get("payload"),
        "nodeId": d.get("node_id"),
        "timestamp": _iso(e.at),
        "messageCount": d.get("message_count"),
        "seq": e.seq,
    }


def _variables_changed(e: StoredEvent) -> dict[str, Any]:
    return {
        "sessionId": e.session_id,
        "chatbotId": e.chatbot_id,
        "variables": e.data.get("variables"),
        "updatedAt": _iso(e.at),
        "seq": e.seq,
    }


def _completed(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "sessionId": e.session_id,
        "chatbotId": e.chatbot_id,
        "conversationId": d.get("conversation_id"),
        "status": d.get("status"),
        "previousStatus": d.get("previous_status"),
        "completedAt": _iso(e.at),
        "completionReason": d.get("reason"),
        "totalNodes": d.get("total_nodes"),
        "totalMessages": d.get("total_messages"),
        "duration": d.get("duration"),
        "totals": _totals(d),
        "seq": e.seq,
    }


TOTALS: Final = ("input_tokens", "output_tokens", "cost", "llm_calls", "tool_calls", "error_count")
"""A session's running totals, as the fold stamps them into ``data["totals"]``."""
_TOTALS_WIRE: Final = {
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "cost": "cost",
    "llm_calls": "llmCalls",
    "tool_calls": "toolCalls",
    "error_count": "errorCount",
}


def _totals(d: dict[str, Any]) -> dict[str, Any]:
    """The session's totals after this event (zeros for an event logged before they were
    kept)."""
    totals = d.get("totals") or {}
    out = {wire: totals.get(name, 0) for name, wire in _TOTALS_WIRE.items()}
    out["cost"] = float(out["cost"])  # PostgreSQL's jsonb may give 1e16 back as an int
    return out


def _llm_call(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "sessionId": e.session_id,
        "chatbotId": e.chatbot_id,
        "nodeId": d.get("node_id"),
        "model": d.get("model"),
        "provider": d.get("provider"),
        "inputTokens": d.get("input_tokens"),
        "outputTokens": d.get("output_tokens"),
        "latencyMs": d.get("latency_ms"),
        "ttfbMs": d.get("ttfb_ms"),
        "cost": None if d.get("cost") is None else float(d["cost"]),
        "finishReason": d.get("finish_reason"),
        "error": d.get("error"),
        "at": _iso(e.at),
        "totals": _totals(d),
        "seq": e.seq,
    }


def _tool_call(e: StoredEvent) -> dict[str, Any]:
    d = e.data
    return {
        "sessionId": e.session_id,
        "chatbotId": e.chatbot_id,
        "nodeId": d.get("node_id"),
        "name": d.get("name"),
        "callId": d.get("call_id"),
        "arguments": d.get("arguments"),
        "result": d.get("result"),
        "error": d.get("error"),
        "durationMs": d.get("duration_ms"),
        "at": _iso(e.at),
        "totals": _totals(d),
        "seq": e.seq,
    }


_PAYLOADS = {
    SESSION_STARTED: _started,
    NODE_EXECUTED: _node_executed,
    MESSAGE: _message,
    STATUS_CHANGED: _status_changed,
    VARIABLES_CHANGED: _variables_changed,
    SESSION_COMPLETED: _completed,
    LLM_CALL: _llm_call,
    TOOL_CALL: _tool_call,
}
