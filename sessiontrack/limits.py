"""The limits every hook argument is checked against before its report is queued.

A report the hooks accept must be stored, unchanged, by SQLite and by PostgreSQL alike and
read back by every read path (``tracker.sessions``, REST, SSE, Socket.IO). So the
tracker refuses, at the call site, what one of them would truncate, refuse or fail to
read:

- **lengths** of the text arguments that land in a column: read from the column types
  of :func:`sessiontrack.store.make_tables` when this module is imported (the smallest of
  the columns an argument reaches), so that the schema stays the one source of truth;
- **free text** that is kept only inside an event's JSON, and **JSON arguments** as a
  whole: a generous size cap, so that one report stays far from the databases' limits;
- **NUL characters** (PostgreSQL refuses them in ``text`` and in ``jsonb``) and **lone
  surrogates** (not encodable as UTF-8: SQLite would store invalid text that every later
  read fails on, PostgreSQL refuses them) in every string, JSON keys included;
- **JSON nesting depth**, **JSON integers** within ±(2**53 - 1) (the range every JSON
  reader keeps exactly, JavaScript's included) and **finite floats** only;
- **timestamps** within a range that both backends store and every read path can convert
  to any time zone.

``docs/hooks.md`` ("Limits") lists each one with its value; the checks themselves are in
``sessiontrack/_validate.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

import sqlalchemy as sa

from .store._tables import Tables, make_tables

__all__ = [
    "CALL_TEXT",
    "CHATBOT_ID",
    "CHATBOT_NAME",
    "COLUMNS",
    "CONVERSATION_ID",
    "COST_MAX",
    "CUSTOMER_NAME",
    "CUSTOMER_PHONE",
    "DURATION_MS_MAX",
    "FLOW_VERSION",
    "JSON_BYTES",
    "JSON_DEPTH",
    "JSON_INT_MAX",
    "LENGTHS",
    "MESSAGE_ID",
    "NODE_ID",
    "NODE_LABEL",
    "REASON",
    "TEXT",
    "TIME_MAX",
    "TIME_MIN",
    "TOKENS_MAX",
]

COLUMNS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "chatbot_id": (
            "chatbots.chatbot_id",
            "flows.chatbot_id",
            "sessions.chatbot_id",
            "events.chatbot_id",
            "counts.chatbot_id",
        ),
        "chatbot_name": ("chatbots.name",),
        "flow_version": (
            "chatbots.current_version",
            "flows.version",
            "sessions.flow_version",
            "events.flow_version",
        ),
        "conversation_id": ("sessions.conversation_id",),
        "customer_phone": ("sessions.customer_phone",),
        # name_key holds the name case-folded, which can be longer than the name ("ß" → "ss")
        "customer_name": ("sessions.customer_name", "sessions.name_key"),
        "node_id": ("sessions.current_node_id", "events.node_id"),
        "node_label": ("sessions.current_node_label",),
        "message_id": ("events.message_id",),
        # a terminal status keeps its reason as the session's completion reason
        "reason": ("sessions.completion_reason",),
    }
)
"""What each length-limited value is, → the ``table.column``\\ s it is stored in."""


def _column_length(tables: Tables, where: str) -> int:
    table, column = where.split(".")
    kind = getattr(tables, table).c[column].type
    if not isinstance(kind, sa.String) or kind.length is None:
        raise TypeError(f"{where} is not a String(n) column: {kind!r}")
    return kind.length


def _lengths(tables: Tables) -> Mapping[str, int]:
    return MappingProxyType(
        {name: min(_column_length(tables, c) for c in cols) for name, cols in COLUMNS.items()}
    )


LENGTHS: Final = _lengths(make_tables())
"""The most characters (code points) each value of :data:`COLUMNS` may have."""

CHATBOT_ID: Final = LENGTHS["chatbot_id"]
CHATBOT_NAME: Final = LENGTHS["chatbot_name"]
FLOW_VERSION: Final = LENGTHS["flow_version"]
CONVERSATION_ID: Final = LENGTHS["conversation_id"]
CUSTOMER_PHONE: Final = LENGTHS["customer_phone"]
CUSTOMER_NAME: Final = LENGTHS["customer_name"]
NODE_ID: Final = LENGTHS["node_id"]
NODE_LABEL: Final = LENGTHS["node_label"]
MESSAGE_ID: Final = LENGTHS["message_id"]
REASON: Final = LENGTHS["reason"]

TEXT: Final = 1_000_000
"""Characters of a free-text argument kept only in the event's JSON (a message's ``text``
and ``type``, a node's ``node_type`` and ``error``)."""

JSON_BYTES: Final = 1_000_000
"""Bytes of a JSON argument (``variables``, ``metadata``, ``payload``, ``flow``) in its
compact UTF-8 encoding."""

JSON_DEPTH: Final = 100
"""Levels of nested objects and arrays in a JSON argument; the argument itself is level 1.
Far inside what every encoder on the read paths accepts (orjson 254, pydantic 256)."""

JSON_INT_MAX: Final = 2**53 - 1
"""JSON integers must be within ±this: beyond it JavaScript (the dashboard) rounds them."""

DURATION_MS_MAX: Final = 2**53 - 1
"""``duration_ms`` is a finite number from 0 to this (so are an LLM call's ``latency_ms``
and ``ttfb_ms``)."""

CALL_TEXT: Final = 200
"""Characters of the short texts of an LLM or tool call (``model``, ``provider``,
``finish_reason``, ``name``, ``call_id``): names to group by, sized like a column."""

TOKENS_MAX: Final = 2**31 - 1
"""``input_tokens`` and ``output_tokens`` of one LLM call are integers from 0 to this, so
that a session's sums stay far inside the 64-bit columns that hold them."""

COST_MAX: Final = 2**53 - 1
"""An LLM call's ``cost`` is a finite number from 0 to this (a session's sum stays finite)."""

TIME_MIN: Final = datetime(1900, 1, 1, tzinfo=UTC)
TIME_MAX: Final = datetime(9000, 1, 1, tzinfo=UTC)
"""Timestamps must be at or after :data:`TIME_MIN` and before :data:`TIME_MAX`: far from
the ends of Python's ``datetime`` range (year 1 to 9999), so that converting a stored
time to any time zone, or adding an idle timeout to it, never overflows."""
