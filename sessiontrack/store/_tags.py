"""The sessions' tags (migration 0008_filter_plans): one row per session and node it
executed (``n<node id>``) and per top-level scalar variable it has (``v"<name>"=<value>``),
with the session's ``started_at`` and ``chatbot_id``.

The writer keeps them in step with the events and the ``variables`` column in the batch's
transaction (:func:`tag_changes`), purge deletes them with their sessions. A list filtered
by ``nodeId`` or ``variable`` reads the matching sessions in ``started_at`` order from the
tag's index, ``(tag, started_at, session_id)`` or ``(tag, chatbot_id, started_at,
session_id)``, and stops after one page (store/_filters.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..events import NODE_EXECUTED, StoredEvent

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ._bulk import BulkWriter
    from ._fold import SessionState
    from ._tables import Tables

MAX_TAG = 400
"""Longer tags (a long string value, a long name) are not stored: a test of such a value
reads the ``variables`` column instead (:func:`variable_tag` gives ``None`` for both)."""


def node_tag(node_id: str) -> str | None:
    tag = "n" + node_id
    return tag if len(tag) <= MAX_TAG else None


def test_tags(name: str, values: Iterable[Any]) -> list[str] | None:
    """The tags any of which a session has when its variable ``name`` equals one of
    ``values``; ``None`` when one of them has no tag (the test reads ``variables``)."""
    out = []
    for value in values:
        tag = variable_tag(name, value)
        if tag is None:
            return None
        out.append(tag)
    return sorted(set(out))


def _token(value: Any) -> str | None:
    """A JSON scalar as text that is equal exactly when the values are equal with their
    JSON types (numbers by value: ``1`` is ``1.0``; ``"1"`` is not ``1``, ``true`` not 1)."""
    if value is None:
        return "z"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return "s" + value
    if isinstance(value, int):
        return "d" + str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == 0:
            return "d0"
        return "d" + format(Decimal(repr(value)).normalize(), "f")
    return None  # objects and arrays never match a variable test


def variable_tag(name: str, value: Any) -> str | None:
    """The tag of the top-level variable ``name`` equal to ``value``, or ``None`` when the
    value is not a scalar or the tag would be longer than :data:`MAX_TAG`."""
    token = _token(value)
    if token is None:
        return None
    tag = "v" + json.dumps(name) + "=" + token
    return tag if len(tag) <= MAX_TAG else None


def variable_tags(variables: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    if not isinstance(variables, Mapping):
        return out
    for name, value in variables.items():
        tag = variable_tag(name, value)
        if tag is not None:
            out.add(tag)
    return out


@dataclass(frozen=True, slots=True)
class Before:
    """What a session's tags depended on before the batch folded it."""

    variables: dict[str, Any]
    started_at: datetime


def snapshot(states: Mapping[str, SessionState]) -> dict[str, Before]:
    return {sid: Before(dict(st.variables), st.started_at) for sid, st in states.items()}


def session_tags(
    session_id: str,
    chatbot_id: str,
    started_at: datetime,
    variables: Mapping[str, Any],
    node_ids: Iterable[str],
) -> list[dict[str, Any]]:
    """The tag rows of a whole session (an import writes them with the session)."""
    tags = variable_tags(variables)
    tags |= {tag for tag in map(node_tag, node_ids) if tag is not None}
    return [
        {"session_id": session_id, "tag": tag, "chatbot_id": chatbot_id, "started_at": started_at}
        for tag in sorted(tags)
    ]


def tag_changes(
    before: Mapping[str, Before],
    states: Iterable[SessionState],
    events: Sequence[StoredEvent],
) -> tuple[list[tuple[str, str, str, datetime]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The batch's tag rows ``(session_id, tag, chatbot_id, started_at)`` to insert (unless
    there), to delete, and the sessions whose ``started_at`` moved (their tags follow)."""
    by_id = {st.id: st for st in states}
    add: dict[tuple[str, str], tuple[str, str, str, datetime]] = {}
    drop: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []

    def row(st: SessionState, tag: str) -> None:
        add[(st.id, tag)] = (st.id, tag, st.chatbot_id, st.started_at)

    for st in by_id.values():
        old = before.get(st.id)
        if old is not None and old.started_at != st.started_at:
            moved.append({"sid": st.id, "started": st.started_at})
        if old is not None and old.variables == st.variables:
            continue
        was = variable_tags(old.variables) if old is not None else set()
        now = variable_tags(st.variables)
        for tag in sorted(now - was):
            row(st, tag)
        drop += [{"sid": st.id, "t": tag} for tag in sorted(was - now)]
    for e in events:
        node_id = e.data.get("node_id")
        if e.kind != NODE_EXECUTED or node_id is None or e.session_id not in by_id:
            continue
        ran = node_tag(str(node_id))
        if ran is not None:
            row(by_id[e.session_id], ran)
    return list(add.values()), drop, moved


async def write_tags(
    conn: AsyncConnection,
    tables: Tables,
    bulk: BulkWriter,
    before: Mapping[str, Before],
    states: Iterable[SessionState],
    events: Sequence[StoredEvent],
) -> None:
    """Keep the tags in step with the batch (in its transaction)."""
    add, drop, moved = tag_changes(before, states, events)
    t = tables.tags
    if drop:
        await conn.execute(
            t.delete().where(t.c.session_id == sa.bindparam("sid"), t.c.tag == sa.bindparam("t")),
            drop,
        )
    if moved:
        await conn.execute(
            t.update()
            .where(t.c.session_id == sa.bindparam("sid"))
            .values(started_at=sa.bindparam("started")),
            moved,
        )
    if add:  # one statement, however many (a node's tag is one a node execution)
        await bulk.tags(conn, add)
