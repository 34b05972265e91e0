"""A stored session as a replayable test fixture (``GET /{id}/fixture``, ``sessiontrack
fixture``); :mod:`sessiontrack.testing` replays it against an engine.

The fixture is plain JSON (camelCase, like the HTTP API)::

    {"format": "sessiontrack-fixture", "formatVersion": 1,
     "session": {"id", "conversationId", "contact": {"phone", "name"}, "startedAt",
                 "status", "completionReason", "metadata"},
     "chatbot": {"id", "name"},
     "flow": {"version", "nodes", "edges"},
     "inbound": [{"turn", "offsetMs", "messageId", "type", "text", "payload", "nodeId"}],
     "expected": {"path": [{"turn", "offsetMs", "nodeId", "label", "type", "error"}],
                  "outbound": [{"turn", "offsetMs", "nodeId", "type", "text", "payload"}],
                  "end": {"status", "reason"}},
     "recorded": {"llmCalls": [{"turn", "offsetMs", "nodeId", "model", "provider",
                                "finishReason", "inputTokens", "outputTokens", "error"}],
                  "toolCalls": [{"turn", "offsetMs", "nodeId", "name", "callId",
                                 "arguments", "result", "error"}]}}

``offsetMs`` counts milliseconds from the session's start. ``turn`` is how many inbound
messages came before the item (an inbound message's own turn counts itself): turn 0 is
what the bot did before the customer said anything, turn 1 what it did in answer to the
first inbound message, and so on. Items are ordered as they were stored.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .models import Message, Principal, SessionDetail
from .query import SessionQueries

FORMAT = "sessiontrack-fixture"
FORMAT_VERSION = 1
"""The fixture format this version writes and reads; a reader refuses other versions."""

Mask = Callable[[str], str]
"""Turns a phone number into its masked form (the web layer's ``mask_phone``)."""


async def session_fixture(
    sessions: SessionQueries,
    session_id: str,
    *,
    principal: Principal | None = None,
    mask: Mask | None = None,
) -> dict[str, Any]:
    """The fixture of one session: every message and every LLM and tool call it recorded.

    :param principal: limits which sessions may be read (others: ``SessionNotFound``).
    :param mask: when given, the customer's phone number (as stored, and as its bare
        digits) is replaced by ``mask(number)`` wherever it appears in the fixture
        (contact, conversation id, texts, payloads, metadata, tool arguments and results),
        so a principal without the PII permission never sees it.
    """
    detail = await sessions.get(session_id, principal=principal, message_limit=1, call_limit=None)
    messages = await sessions.messages(detail.id, principal=principal)
    fixture = build_fixture(detail, messages)
    phone = detail.customer_phone
    if mask is not None and phone:
        fixture = _replace_strings(fixture, _phone_masker(phone, mask))
    return fixture


def _phone_masker(phone: str, mask: Mask) -> Callable[[str], str]:
    """Replaces the phone number as stored and as bare digits (WhatsApp's conversation ids
    are the number without its ``+``)."""
    forms = [phone]
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) >= 7 and digits != phone:
        forms.append(digits)
    pairs = [(form, mask(form)) for form in forms]

    def change(text: str) -> str:
        for form, masked in pairs:
            text = text.replace(form, masked)
        return text

    return change


def build_fixture(detail: SessionDetail, messages: list[Message]) -> dict[str, Any]:
    """The fixture of ``detail`` with ``messages`` (all of them, oldest first)."""
    start = detail.started_at
    inbound_at = [m.timestamp for m in messages if m.direction == "inbound"]

    def when(at: datetime) -> dict[str, Any]:
        return {
            "turn": bisect.bisect_right(inbound_at, at),
            "offsetMs": round((at - start).total_seconds() * 1000, 3),
        }

    inbound: list[dict[str, Any]] = []
    outbound: list[dict[str, Any]] = []
    for m in messages:
        item = {
            **when(m.timestamp),
            "messageId": m.channel_message_id,
            "type": m.type,
            "text": m.text,
            "payload": m.payload,
            "nodeId": m.node_id,
        }
        if m.direction == "inbound":
            inbound.append(item)
        else:
            del item["messageId"]
            outbound.append(item)
    path = [
        {
            **when(e.at),
            "nodeId": e.node_id,
            "label": e.label,
            "type": e.type,
            "error": e.error,
        }
        for e in detail.node_executions
    ]
    llm = [
        {
            **when(c.at),
            "nodeId": c.node_id,
            "model": c.model,
            "provider": c.provider,
            "finishReason": c.finish_reason,
            "inputTokens": c.input_tokens,
            "outputTokens": c.output_tokens,
            "error": c.error,
        }
        for c in detail.llm_call_history
    ]
    tools = [
        {
            **when(c.at),
            "nodeId": c.node_id,
            "name": c.name,
            "callId": c.call_id,
            "arguments": c.arguments,
            "result": c.result,
            "error": c.error,
        }
        for c in detail.tool_call_history
    ]
    return {
        "format": FORMAT,
        "formatVersion": FORMAT_VERSION,
        "session": {
            "id": detail.id,
            "conversationId": detail.conversation_id,
            "contact": {"phone": detail.customer_phone, "name": detail.customer_name},
            "startedAt": start.isoformat(),
            "status": detail.status,
            "completionReason": detail.completion_reason,
            "metadata": detail.metadata,
        },
        "chatbot": {"id": detail.chatbot_id, "name": detail.chatbot_name},
        "flow": {"version": detail.flow_version, **detail.flow_data},
        "inbound": inbound,
        "expected": {
            "path": path,
            "outbound": outbound,
            "end": {"status": detail.status, "reason": detail.completion_reason},
        },
        "recorded": {"llmCalls": llm, "toolCalls": tools},
    }


def check_fixture(data: Any) -> dict[str, Any]:
    """``data`` if it is a fixture of a format version this library reads, else
    ``ValueError`` saying what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'not a sessiontrack fixture (no "format": "{FORMAT}")')
    version = data.get("formatVersion")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"fixture format version {version!r} is not supported (this library reads "
            f"version {FORMAT_VERSION})"
        )
    for key in ("session", "chatbot", "flow", "inbound", "expected", "recorded"):
        if key not in data:
            raise ValueError(f"fixture has no {key!r}")
    return data


def _replace_strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _replace_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_strings(v, change) for v in value]
    return value


__all__ = ["FORMAT", "FORMAT_VERSION", "build_fixture", "check_fixture", "session_fixture"]
