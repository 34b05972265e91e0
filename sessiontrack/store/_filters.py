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
from ._tags import node_tag, test_tags

if TYPE_CHECKING:
    from ._tables import Tables

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Plan:
    """How to write the advanced filters' terms for one query."""

    walk: bool = False
    """The filter is broad: walk the sort order's index (SQLite: hide the other indexes)."""
    rare_node: bool = False
    """The ``node_id`` has few executions: read its sessions from the node index's range
    (else each session costs one seek into that index)."""
    ranges_first: bool = False
    """SQLite's count: a message or duration range is read from its index, the completion
    reason (like a broad status) tested as it goes: SQLite, without statistics, prefers an
    equality's index, and walks most of the table when the range is the narrow term."""
    tags: bool = False
    """The node and the variables are tested in the tags table (store/_tags.py): the query
    is driven by one tag (``Drive``), the others are one primary key seek each."""


@dataclass(frozen=True, slots=True)
class Drive:
    """The tag whose index range drives a list sorted by ``started_at`` (migration 0008):
    the node's, else the first variable test with one tag; ``tests`` are the other
    variable tests' tags (a session has one of each), ``json`` the tests without tags."""

    tag: str
    tests: tuple[tuple[str, ...], ...]
    json: tuple[VariableTest, ...]


RARE_NODE = 20_000
"""A node executed fewer times than this is read from its index range (``Plan.rare_node``)."""


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
    plan: Plan,
) -> list[Any]:
    s = tables.sessions
    w: list[Any] = []
    # Written as ``col + 0`` (``|| ''`` for text) a term can use no index: the plan for a
    # broad filter on SQLite, which has no statistics to know that walking the sort
    # order's index and stopping after one page beats reading a wide range and sorting.
    hide = plan.walk and dialect == "sqlite"
    hide_reason = hide or (plan.ranges_first and dialect == "sqlite")
    reason = s.c.completion_reason.concat("") if hide_reason else s.c.completion_reason
    messages = s.c.message_count + 0 if hide else s.c.message_count
    errors = s.c.error_count + 0 if hide else s.c.error_count
    if node_id is not None and not plan.tags:
        w.append(_ran(tables, node_id, plan.rare_node))
    if completion_reason is not None:
        w.append(reason == completion_reason)
    if min_messages is not None:
        w.append(messages >= min_messages)
    if max_messages is not None:
        w.append(messages <= max_messages)
    if min_duration is not None or max_duration is not None:
        w.append(_duration(tables, dialect, min_duration, max_duration, now, hide))
    if has_error is not None:
        zero: Any = sa.literal_column("0")  # a literal, so the partial index's WHERE matches
        w.append(errors > zero if has_error else errors == zero)
    if not plan.tags:
        for test in variables:
            w.append(_variable(tables, dialect, test))
    return w


def drive(
    node_id: str | None, variables: Sequence[VariableTest], dialect: str, *, chatbots: bool
) -> Drive | None:
    """The tag that drives the list (``None``: no node nor variable test has one tag).

    On PostgreSQL the tags drive a node without variable tests, or one variable test
    with chatbots (the ``(tag, chatbot_id, ...)`` index); other variable tests use the
    GIN index of ``variables`` (``variables @> ...``), which its planner combines with the
    other indexes faster than it joins the variables' tags (measured on the benchmark's
    data set: 15 against 43 ms for ``variable=lang:en&variable=tier:1``)."""
    one_with_chatbots = node_id is None and len(variables) == 1 and chatbots
    if dialect != "sqlite" and variables and not one_with_chatbots:
        return None
    tagged: list[tuple[str, ...]] = []
    json: list[VariableTest] = []
    for test in variables:
        tags = test_tags(test.name, test.values)
        if tags is None:
            json.append(test)
        else:
            tagged.append(tuple(tags))
    lead = node_tag(node_id) if node_id is not None else None
    if lead is None:
        if node_id is not None:
            return None
        single = [t for t in tagged if len(t) == 1]
        if not single:
            return None
        lead = single[0][0]
        tagged.remove(single[0])
    return Drive(lead, tuple(tagged), tuple(json))


def tag_conditions(tables: Tables, dialect: str, d: Drive, driver: Any) -> list[Any]:
    """The driven query's terms on the tags: the driving tag (of the ``driver`` alias of
    the tags table), one seek into the tags' primary key per other test."""
    t = tables.tags
    w: list[Any] = [driver.c.tag == d.tag]
    for tags in d.tests:
        # one exact key each (PostgreSQL does not use ``tag = ANY(...)`` as a key of the
        # primary key, it filters every tag of the session)
        seeks = [
            sa.select(sa.literal(1))
            .where(t.c.session_id == driver.c.session_id, t.c.tag == tag)
            .exists()
            for tag in tags
        ]
        w.append(sa.or_(*seeks))
    return w


def json_conditions(tables: Tables, dialect: str, d: Drive) -> list[Any]:
    """The driven query's variable tests without tags (on the sessions' ``variables``)."""
    return [_variable(tables, dialect, test) for test in d.json]


RAN: sa.ColumnElement[str] = sa.literal_column(f"'{NODE_EXECUTED}'", sa.String())
"""The partial index's ``kind = 'node_executed'``, as a literal so that SQLite matches it."""


def _ran(tables: Tables, node_id: str, rare: bool) -> Any:
    """The sessions that executed ``node_id``: for a rare node, the few sessions of its
    executions (the node index's range); else, per session, one seek into that index."""
    s, e = tables.sessions, tables.events
    if rare:
        ids = sa.select(e.c.session_id).where(e.c.kind == RAN, e.c.node_id == node_id)
        return s.c.id.in_(ids)
    one = sa.select(sa.literal(1)).where(
        e.c.kind == RAN, e.c.node_id == node_id, e.c.session_id == s.c.id
    )
    return one.exists()


def _duration(
    tables: Tables,
    dialect: str,
    low: float | None,
    high: float | None,
    now: datetime | None,
    hide: bool,
) -> Any:
    """Terminal sessions by their stored times; an active session's duration is the time
    since it started (``now - started_at``), a range of ``started_at``."""
    s = tables.sessions
    d: sa.ColumnElement[Any] = duration_seconds(s.c.completed_at, s.c.started_at)
    if hide:
        d = d + 0
    # the duration is NULL while active: no ``completed_at IS NOT NULL`` term, which SQLite
    # would serve from the completed_at index instead of the duration's
    ended: list[Any] = []
    running: list[Any] = [s.c.completed_at.is_(None)]
    pg = dialect == "postgresql"
    if low is not None:
        ended.append(d >= (_numeric(low) if pg else low))
    if high is not None:
        ended.append(d <= (_numeric(high) if pg else high))
    if now is not None:
        if low is not None:
            running.append(s.c.started_at <= now - timedelta(seconds=low))
        if high is not None:
            running.append(s.c.started_at >= now - timedelta(seconds=high))
    return sa.or_(sa.and_(*ended), sa.and_(*running))


def _numeric(seconds: float) -> Any:
    """A bound of the duration as a numeric, as PostgreSQL's EXTRACT gives: compared with
    a double precision, the expression would be cast and its index not used."""
    return sa.cast(sa.literal(seconds, sa.Float()), sa.Numeric())


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
