"""The advanced list filters' SQL: node executed, completion reason, message and duration
ranges, errors, variables (``SessionFilter``'s fields after ``version``).

Each condition is written so that an index of migration 0006 (``0006_filters.py``) can
serve it where one helps; docs/http-api.md lists the plan of each combination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..events import NODE_EXECUTED
from ._tables import duration_seconds

if TYPE_CHECKING:
    from ._tables import Tables

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class VariableTest:
    """A top-level variable ``name`` equal to one of ``values`` (JSON scalars, compared with
    their JSON type: the string ``"1"`` is not the number ``1``, ``true`` is not ``1``)."""

    name: str
    values: tuple[JsonScalar, ...]


def advanced_conditions(
    tables: Tables,
    dialect: str,
    *,
    node_id: str | None,
    completion_reason: str | None,
    min_messages: int | None,
    max_messages: int | None,
    min_duration: float | None,
    max_duration: float | None,
    now: datetime | None,
    has_error: bool | None,
    variables: Sequence[VariableTest],
) -> list[Any]:
    s = tables.sessions
    w: list[Any] = []
    if node_id is not None:
        e = tables.events
        ran = sa.select(e.c.session_id).where(e.c.kind == NODE_EXECUTED, e.c.node_id == node_id)
        w.append(s.c.id.in_(ran))
    if completion_reason is not None:
        w.append(s.c.completion_reason == completion_reason)
    if min_messages is not None:
        w.append(s.c.message_count >= min_messages)
    if max_messages is not None:
        w.append(s.c.message_count <= max_messages)
    if min_duration is not None or max_duration is not None:
        w.append(_duration(tables, min_duration, max_duration, now))
    if has_error is not None:
        w.append(s.c.error_count > 0 if has_error else s.c.error_count == 0)
    for test in variables:
        w.append(_variable(tables, dialect, test))
    return w


def _duration(tables: Tables, low: float | None, high: float | None, now: datetime | None) -> Any:
    """Terminal sessions by their stored times; an active session's duration is the time
    since it started (``now - started_at``), a range of ``started_at``."""
    s = tables.sessions
    d = duration_seconds(s.c.completed_at, s.c.started_at)
    ended: list[Any] = [s.c.completed_at.is_not(None)]
    running: list[Any] = [s.c.completed_at.is_(None)]
    if low is not None:
        ended.append(d >= low)
    if high is not None:
        ended.append(d <= high)
    if now is not None:
        if low is not None:
            running.append(s.c.started_at <= now - timedelta(seconds=low))
        if high is not None:
            running.append(s.c.started_at >= now - timedelta(seconds=high))
    return sa.or_(sa.and_(*ended), sa.and_(*running))


def _variable(tables: Tables, dialect: str, test: VariableTest) -> Any:
    v = tables.sessions.c.variables
    if dialect == "postgresql":
        # containment of {name: value} is typed equality of a top-level key, and the GIN
        # index (jsonb_path_ops) serves it
        jsonb = sa.type_coerce(v, postgresql.JSONB())
        return sa.or_(*(jsonb.contains({test.name: value}) for value in test.values))
    path = '$."' + test.name + '"'  # the query service refuses names with a double quote
    kind = sa.func.json_type(v, path)
    got = sa.func.json_extract(v, path)
    tests: list[Any] = []
    for value in test.values:
        if value is None:
            tests.append(kind == "null")
        elif isinstance(value, bool):
            tests.append(kind == ("true" if value else "false"))
        elif isinstance(value, str):
            tests.append(sa.and_(kind == "text", got == value))
        else:
            tests.append(sa.and_(kind.in_(("integer", "real")), got == value))
    return sa.or_(*tests)
