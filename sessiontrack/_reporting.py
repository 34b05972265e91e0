"""The tracker's implementations of the engine → tracker hooks.

Each one validates its arguments (raising ``TypeError``/``ValueError`` at the call site),
snapshots JSON arguments, stamps the time and hands a report to ``_enqueue``. No I/O: this
is the engine's hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from . import _validate as v
from . import events as ev
from ._conversations import Conversations
from ._ids import normalize_session_id
from ._redact import Redaction
from .hookspecs import hookimpl
from .limits import (
    CALL_TEXT,
    CHATBOT_ID,
    CHATBOT_NAME,
    CONVERSATION_ID,
    COST_MAX,
    CUSTOMER_NAME,
    CUSTOMER_PHONE,
    FLOW_VERSION,
    MESSAGE_ID,
    NODE_ID,
    NODE_LABEL,
    REASON,
    TEXT,
    TOKENS_MAX,
)
from .models import MESSAGE_DIRECTIONS
from .status import ALL_STATUSES, TERMINAL_STATUSES
from .store._fold import EDGE_OBSERVED, FLOW_REGISTERED, Report

_DIRECTIONS = {d: d for d in MESSAGE_DIRECTIONS}
_STATUSES = {s: s for s in ALL_STATUSES}
_TERMINAL = {s: s for s in TERMINAL_STATUSES}


class ReportingHooks:
    """Mixin of :class:`~sessiontrack.Tracker`: the hookimpls pluggy finds on it."""

    # Provided by the tracker: the ids it has accepted, and the hand-over to its writer.
    _owned: set[str]
    _enqueue: Callable[[Report], None]
    _conversations: Conversations  # starts and completions not yet committed
    _redaction: Redaction | None  # Tracker(redact=...): runs before the report is queued

    @staticmethod
    def _at(at: Any, hook: str) -> Any:
        return time.time() if at is None else v.moment(at, "at", hook)

    def _sid(self, session_id: Any, hook: str) -> str:
        if type(session_id) is str and session_id in self._owned:
            return session_id  # already checked and canonical: skip the regex (hot path)
        sid = normalize_session_id(v.required(session_id, "session_id", hook))
        self._owned.add(sid)
        return sid

    @hookimpl(tryfirst=True)
    def sessiontrack_flow_registered(
        self, chatbot_id: str, name: str, flow: Mapping[str, Any], version: str | None
    ) -> None:
        h = "sessiontrack_flow_registered"
        graph = v.flow_graph(flow, h)
        version = v.text(version, "version", h, FLOW_VERSION, optional=True)
        data = {
            "chatbot_id": v.text(chatbot_id, "chatbot_id", h, CHATBOT_ID),
            "name": v.text(name, "name", h, CHATBOT_NAME),
            "flow": graph,
            "version": version or v.flow_version(graph),
        }
        self._enqueue((FLOW_REGISTERED, "", time.time(), data))

    @hookimpl(tryfirst=True)
    def sessiontrack_session_started(
        self,
        session_id: str,
        chatbot_id: str,
        conversation_id: str | int | None,
        contact: Mapping[str, Any] | None,
        variables: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        at: datetime | None,
        expires_at: datetime | None,
    ) -> None:
        h = "sessiontrack_session_started"
        sid = self._sid(session_id, h)
        data: dict[str, Any] = {
            "chatbot_id": v.text(chatbot_id, "chatbot_id", h, CHATBOT_ID),
            "conversation_id": v.opt_text(
                conversation_id, "conversation_id", h, CONVERSATION_ID, ints=True
            ),
        }
        if contact is not None:
            if not isinstance(contact, Mapping):
                raise TypeError(f"{h}(): contact must be a mapping with phone and name")
            phone, name = contact.get("phone"), contact.get("name")
            data["customer_phone"] = v.opt_text(phone, "contact['phone']", h, CUSTOMER_PHONE)
            name = data["customer_name"] = v.opt_text(name, "contact['name']", h, CUSTOMER_NAME)
            v.casefolded(name, "contact['name']", h, CUSTOMER_NAME)
        if variables is not None:
            data["variables"] = v.json_object(variables, "variables", h)
        if metadata is not None:
            data["metadata"] = v.json_object(metadata, "metadata", h)
        if expires_at is not None:
            data["expires_at"] = v.moment(expires_at, "expires_at", h)
        if self._redaction is not None:
            self._redaction.report(ev.SESSION_STARTED, data, h)
        self._enqueue((ev.SESSION_STARTED, sid, self._at(at, h), data))
        if data["conversation_id"] is not None:
            self._conversations.started(data["chatbot_id"], data["conversation_id"], sid)

    @hookimpl(tryfirst=True)
    def sessiontrack_node_executed(
        self,
        session_id: str,
        node_id: str,
        node_type: str | None,
        label: str | None,
        at: datetime | None,
        duration_ms: float | None,
        error: str | None,
    ) -> None:
        h = "sessiontrack_node_executed"
        sid = self._sid(session_id, h)
        data = {
            "node_id": v.text(node_id, "node_id", h, NODE_ID),
            "node_type": v.opt_text(node_type, "node_type", h, TEXT),
            "label": v.opt_text(label, "label", h, NODE_LABEL),
            "duration_ms": v.duration(duration_ms, "duration_ms", h),
            "error": v.opt_text(error, "error", h, TEXT),
        }
        if self._redaction is not None:
            self._redaction.report(ev.NODE_EXECUTED, data, h)
        self._enqueue((ev.NODE_EXECUTED, sid, self._at(at, h), data))

    @hookimpl(tryfirst=True)
    def sessiontrack_message(
        self,
        session_id: str,
        direction: str,
        type: str,
        text: str | None,
        payload: Mapping[str, Any] | None,
        node_id: str | None,
        message_id: str | int | None,
        at: datetime | None,
    ) -> None:
        h = "sessiontrack_message"
        sid = self._sid(session_id, h)
        data = {
            "direction": direction  # (``type`` is an argument here, not the builtin)
            if direction.__class__ is str and direction in _DIRECTIONS
            else v.choice(direction, _DIRECTIONS, "direction", h),
            "type": v.text(type, "type", h, TEXT),
            "text": v.opt_text(text, "text", h, TEXT),
            "payload": None if payload is None else v.json_object(payload, "payload", h),
            "node_id": v.opt_text(node_id, "node_id", h, NODE_ID),
            "message_id": v.opt_text(message_id, "message_id", h, MESSAGE_ID, ints=True),
        }
        if self._redaction is not None:
            self._redaction.report(ev.MESSAGE, data, h)
        self._enqueue((ev.MESSAGE, sid, self._at(at, h), data))

    @hookimpl(tryfirst=True)
    def sessiontrack_status_changed(
        self,
        session_id: str,
        status: str,
        node_id: str | None,
        reason: str | None,
        at: datetime | None,
    ) -> None:
        h = "sessiontrack_status_changed"
        sid = self._sid(session_id, h)
        if type(status) is not str or status not in _STATUSES:
            status = v.choice(status, _STATUSES, "status", h)
        kind = ev.SESSION_COMPLETED if status in TERMINAL_STATUSES else ev.STATUS_CHANGED
        data = {
            "status": status,
            "node_id": v.opt_text(node_id, "node_id", h, NODE_ID),
            "reason": v.opt_text(reason, "reason", h, REASON),
        }
        if self._redaction is not None:
            self._redaction.report(kind, data, h)
        self._enqueue((kind, sid, self._at(at, h), data))
        if kind == ev.SESSION_COMPLETED:
            self._conversations.ended(sid)

    @hookimpl(tryfirst=True)
    def sessiontrack_variables_changed(
        self, session_id: str, variables: Mapping[str, Any], at: datetime | None
    ) -> None:
        h = "sessiontrack_variables_changed"
        sid = self._sid(session_id, h)
        data = {"variables": v.json_object(v.required(variables, "variables", h), "variables", h)}
        if self._redaction is not None:
            self._redaction.report(ev.VARIABLES_CHANGED, data, h)
        self._enqueue((ev.VARIABLES_CHANGED, sid, self._at(at, h), data))

    @hookimpl(tryfirst=True)
    def sessiontrack_session_completed(
        self, session_id: str, status: str, reason: str | None, at: datetime | None
    ) -> None:
        h = "sessiontrack_session_completed"
        sid = self._sid(session_id, h)
        if type(status) is not str or status not in _TERMINAL:
            status = v.choice(status, _TERMINAL, "terminal status", h)
        data = {"status": status, "reason": v.opt_text(reason, "reason", h, REASON)}
        if self._redaction is not None:
            self._redaction.report(ev.SESSION_COMPLETED, data, h)
        self._enqueue((ev.SESSION_COMPLETED, sid, self._at(at, h), data))
        self._conversations.ended(sid)

    @hookimpl(tryfirst=True)
    def sessiontrack_edge_observed(
        self,
        chatbot_id: str,
        source: str,
        target: str,
        version: str | None,
        label: str | None,
        source_handle: str | None,
    ) -> None:
        h = "sessiontrack_edge_observed"
        data = {
            "chatbot_id": v.text(chatbot_id, "chatbot_id", h, CHATBOT_ID),
            "source": v.text(source, "source", h, NODE_ID),
            "target": v.text(target, "target", h, NODE_ID),
            "version": v.text(version, "version", h, FLOW_VERSION, optional=True),
            "label": v.opt_text(label, "label", h, NODE_LABEL),
            "source_handle": v.opt_text(source_handle, "source_handle", h, NODE_ID),
        }
        self._enqueue((EDGE_OBSERVED, "", time.time(), data))

    @hookimpl(tryfirst=True)
    def sessiontrack_llm_call(
        self,
        session_id: str,
        model: str,
        node_id: str | None,
        provider: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        latency_ms: float | None,
        ttfb_ms: float | None,
        cost: float | None,
        finish_reason: str | None,
        error: str | None,
        at: datetime | None,
    ) -> None:
        h = "sessiontrack_llm_call"
        sid = self._sid(session_id, h)
        data = {
            "node_id": v.opt_text(node_id, "node_id", h, NODE_ID),
            "model": v.text(model, "model", h, CALL_TEXT),
            "provider": v.opt_text(provider, "provider", h, CALL_TEXT),
            "input_tokens": v.count(input_tokens, "input_tokens", h, TOKENS_MAX),
            "output_tokens": v.count(output_tokens, "output_tokens", h, TOKENS_MAX),
            "latency_ms": v.duration(latency_ms, "latency_ms", h),
            "ttfb_ms": v.duration(ttfb_ms, "ttfb_ms", h),
            "cost": v.amount(cost, "cost", h, COST_MAX),
            "finish_reason": v.opt_text(finish_reason, "finish_reason", h, CALL_TEXT),
            "error": v.opt_text(error, "error", h, TEXT),
        }
        if self._redaction is not None:
            self._redaction.report(ev.LLM_CALL, data, h)
        self._enqueue((ev.LLM_CALL, sid, self._at(at, h), data))

    @hookimpl(tryfirst=True)
    def sessiontrack_tool_call(
        self,
        session_id: str,
        name: str,
        node_id: str | None,
        call_id: str | None,
        arguments: Any,
        result: Any,
        error: str | None,
        duration_ms: float | None,
        at: datetime | None,
    ) -> None:
        h = "sessiontrack_tool_call"
        sid = self._sid(session_id, h)
        data = {
            "node_id": v.opt_text(node_id, "node_id", h, NODE_ID),
            "name": v.text(name, "name", h, CALL_TEXT),
            "call_id": v.opt_text(call_id, "call_id", h, CALL_TEXT),
            "arguments": None if arguments is None else v.json_value(arguments, "arguments", h),
            "result": None if result is None else v.json_value(result, "result", h),
            "error": v.opt_text(error, "error", h, TEXT),
            "duration_ms": v.duration(duration_ms, "duration_ms", h),
        }
        if self._redaction is not None:
            self._redaction.report(ev.TOOL_CALL, data, h)
        self._enqueue((ev.TOOL_CALL, sid, self._at(at, h), data))
