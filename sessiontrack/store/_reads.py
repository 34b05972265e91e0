"""The read queries: every SQL the query service needs, and nothing else."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from ..events import LLM_CALL, MESSAGE, NODE_EXECUTED, TOOL_CALL
from ..models import (
    LLMCall,
    Message,
    NodeExecution,
    NodeTotals,
    SessionDetail,
    SessionSummary,
    Stats,
    ToolCall,
)
from ..status import ACTIVE_STATUSES, ALL_STATUSES
from ._filters import (
    RAN,
    RARE_NODE,
    Drive,
    Plan,
    VariableTest,
    advanced_conditions,
    drive,
    json_conditions,
    tag_conditions,
)
from ._search import Contacts, SearchReads

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from ._readers import QuickReaders, Readers
    from ._tables import Tables

_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionFilter:
    """A validated list query (the query service builds it from user input)."""

    statuses: frozenset[str] | None = None
    chatbot_ids: frozenset[str] | None = None
    conversation_id: str | None = None
    search: str | None = None
    search_phones: bool = True
    start: datetime | None = None
    end: datetime | None = None
    path_keys: frozenset[str] | None = None
    """Sessions whose current analytics path has one of these keys (``an_traces``)."""
    version: str | None = None
    """Sessions that started with this flow version (``flow_version``)."""
    # the advanced filters (store/_filters.py)
    node_id: str | None = None
    """Sessions that executed this node at least once."""
    completion_reason: str | None = None
    min_messages: int | None = None
    max_messages: int | None = None
    min_duration: float | None = None
    """Seconds: ``completed_at - started_at``, or ``now - started_at`` while active."""
    max_duration: float | None = None
    now: datetime | None = None
    """The time active sessions' durations run to (the query service sets it)."""
    has_error: bool | None = None
    """``error_count > 0`` (node, LLM call and tool call errors), or ``= 0``."""
    variables: tuple[VariableTest, ...] = ()
    """Each test must hold (a top-level variable equal to one of its values)."""
    count_limit: int | None = None
    """With advanced filters: count at most this many matches, plus one to tell that there
    are more (``None``: count them all)."""
    words: tuple[str, ...] | None = None
    """Sessions with a message whose text has every one of these words (as prefixes)."""
    completed_before: datetime | None = None
    """Terminal sessions completed before this time (what an archive takes)."""

    @property
    def countable_from_counters(self) -> bool:
        return (
            self.conversation_id is None
            and not self.search
            and not self.start
            and not self.end
            and self.path_keys is None
            and self.version is None
            and self.words is None
            and self.completed_before is None
            and not self.advanced
        )

    @property
    def advanced(self) -> bool:
        """Whether any of the advanced filters is set."""
        return (
            self.node_id is not None
            or self.completion_reason is not None
            or self.min_messages is not None
            or self.max_messages is not None
            or self.min_duration is not None
            or self.max_duration is not None
            or self.has_error is not None
            or bool(self.variables)
        )


class _Marks:
    """Placeholders of one statement: ``?`` (sqlite3) or ``$1, $2, ...`` (asyncpg)."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return "?" if self.style == "?" else f"${self.n}"

    def among(self, column: str, values: list[Any]) -> str:
        """``column`` is one of ``values`` (none: nothing matches)."""
        if not values:
            return "1 = 0"
        if len(values) == 1:
            return f"{column} = {self.next()}"
        return f"{column} IN ({', '.join(self.next() for _ in values)})"


def _matching(f: SessionFilter, counts: dict[str, int]) -> int:
    """Sessions the counters count for the filter's statuses."""
    return sum(n for st, n in counts.items() if f.statuses is None or st in f.statuses)


def _broad(f: SessionFilter, counts: dict[str, int]) -> bool:
    """Several statuses are read from the status index range by range and then sorted;
    when they match most sessions, walking the sort order's index and stopping after one
    page is far cheaper. The counters tell which case this is."""
    return (
        f.statuses is not None
        and len(f.statuses) > 1
        and _matching(f, counts) > _BROAD_SHARE * max(sum(counts.values()), 1)
    )


_QUICK_OFFSET = 1_000
"""A list the counters count is a quick list up to this ``offset`` (deeper, the index walk
to the page grows with it: it is read as every other list, on SQLite in a worker thread)."""
_BROAD_SHARE = 0.05
"""A multi-status filter matching more than this share of sessions walks the sort index."""
_FEW_CONTACTS = 8
"""A customer search that matches at most this many distinct names and phones (a full
name, a phone) reads their sessions by those values' indexes, page and total in one pass
(``_counted_page``), with any other filters, advanced ones included: it is the narrowest
of them (a full name with a message-count range took 100-300 ms planned by the range)."""
_WALK_FROM = 5_000
"""A customer search matching more distinct values is counted first; from this many
sessions, its page walks the sort order's index, testing each session's name and phone,
instead of reading and sorting every match: one session in 200 matches at the least,
so a page of 20 reads a few thousand rows at most. (On 1M sessions a single first name,
3 % of them, took about 100 ms read and sorted; counted by the name index and walked,
a few ms.)"""


def _summary(keys: list[str], row: Any) -> SessionSummary:
    values = dict(zip(keys, row, strict=True))
    values["cost"] = float(values["cost"])
    return SessionSummary(**values)


def _float(value: Any) -> float | None:
    """A stored number as a float (PostgreSQL's jsonb may give 1e16 back as an int)."""
    return None if value is None else float(value)


@dataclass
class _Activity:
    """What a session's detail shows of its node and call events, and the per-node sums."""

    call_limit: int | None = None  # the newest this many LLM and tool calls are kept
    executions: list[NodeExecution] = field(default_factory=list)
    llm_calls: deque[LLMCall] = field(init=False)
    tool_calls: deque[ToolCall] = field(init=False)
    _nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the per-node sums count every call; only the histories are bounded
        self.llm_calls = deque(maxlen=self.call_limit)
        self.tool_calls = deque(maxlen=self.call_limit)

    def _node(self, node_id: str | None) -> dict[str, Any]:
        if node_id is None:
            return {}  # a call outside any node counts in the session's totals only
        sums = self._nodes.get(node_id)
        if sums is None:
            sums = self._nodes[node_id] = {
                "node_id": node_id,
                "executions": 0,
                "duration_ms": 0.0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost": 0.0,
                "llm_calls": 0,
                "tool_calls": 0,
                "error_count": 0,
            }
        return sums

    def add(self, seq: int, kind: str, node_id: str | None, at: datetime, d: Any) -> None:
        sums = self._node(node_id)
        if kind == NODE_EXECUTED:
            assert node_id is not None
            execution = NodeExecution(
                node_id=node_id,
                label=d.get("label"),
                type=d.get("node_type"),
                at=at,
                duration_ms=d.get("duration_ms"),
                error=d.get("error"),
            )
            self.executions.append(execution)
            sums["executions"] += 1
            sums["duration_ms"] += execution.duration_ms or 0
        elif kind == LLM_CALL:
            call = LLMCall(
                seq=seq,
                node_id=node_id,
                model=d["model"],
                provider=d.get("provider"),
                input_tokens=d.get("input_tokens"),
                output_tokens=d.get("output_tokens"),
                latency_ms=d.get("latency_ms"),
                ttfb_ms=d.get("ttfb_ms"),
                cost=_float(d.get("cost")),
                finish_reason=d.get("finish_reason"),
                error=d.get("error"),
                at=at,
            )
            self.llm_calls.append(call)
            if sums:
                sums["llm_calls"] += 1
                sums["input_tokens"] += call.input_tokens or 0
                sums["output_tokens"] += call.output_tokens or 0
                sums["cost"] += call.cost or 0.0
        else:
            tool = ToolCall(
                seq=seq,
                node_id=node_id,
                name=d["name"],
                call_id=d.get("call_id"),
                arguments=d.get("arguments"),
                result=d.get("result"),
                error=d.get("error"),
                duration_ms=d.get("duration_ms"),
                at=at,
            )
            self.tool_calls.append(tool)
            if sums:
                sums["tool_calls"] += 1
        if sums and d.get("error") is not None:
            sums["error_count"] += 1

    def node_totals(self) -> list[NodeTotals]:
        return [NodeTotals(**sums) for sums in self._nodes.values()]


class ReadQueries(SearchReads):
    tables: Tables
    readers: Readers | None = None
    """SQLite's synchronous reader engine, if the store has one (see :meth:`_read`)."""
    read_engine: AsyncEngine | None = None
    """PostgreSQL: the engine in autocommit, for reads that need no transaction: no BEGIN
    and no ROLLBACK, two round trips fewer per request."""
    quick_readers: QuickReaders | None = None
    """PostgreSQL, a store that made its own engine: the asyncpg pool of the quick lists."""

    def _summary_columns(self) -> list[Any]:
        s, c = self.tables.sessions, self.tables.chatbots
        return [
            s.c.id,
            s.c.conversation_id,
            s.c.chatbot_id,
            c.c.name.label("chatbot_name"),
            s.c.customer_phone,
            s.c.customer_name,
            s.c.status,
            s.c.current_node_id,
            s.c.current_node_label,
            s.c.started_at,
            s.c.updated_at,
            s.c.completed_at,
            s.c.node_count,
            s.c.message_count,
            s.c.input_tokens,
            s.c.output_tokens,
            s.c.cost,
            s.c.llm_calls,
            s.c.tool_calls,
            s.c.error_count,
        ]

    @functools.cached_property
    def _summary_select(self) -> sa.Select[Any]:
        """The list's SELECT of summary columns, built once: coercing its twenty columns
        cost a list request more than SQLite's work did."""
        return sa.select(*self._summary_columns()).select_from(self._from())

    @functools.cached_property
    def _counts_select(self) -> sa.Select[Any]:
        c = self.tables.counts
        return sa.select(c.c.status, sa.func.sum(c.c.n)).group_by(c.c.status)

    def _from(self) -> Any:
        s, c = self.tables.sessions, self.tables.chatbots
        return s.outerjoin(c, c.c.chatbot_id == s.c.chatbot_id)

    def _where(
        self,
        f: SessionFilter,
        *,
        status_index: bool = True,
        plan: Plan | None = None,
        found: Contacts | None = None,
        contact_index: bool = True,
    ) -> list[Any]:
        """The filter's conditions. ``status_index=False`` writes the status test so that
        no index on ``status`` can serve it (``status || ''``), leaving the planner the
        sort order's index: the right plan when the statuses match most rows;
        ``contact_index=False`` does the same for the customer search's values."""
        s = self.tables.sessions
        w: list[Any] = []
        if f.statuses is not None:
            status = s.c.status if status_index else s.c.status.concat("")
            w.append(
                status.in_(sorted(f.statuses))
                if len(f.statuses) != 1
                else status == next(iter(f.statuses))
            )
        if f.chatbot_ids is not None:
            w.append(
                s.c.chatbot_id.in_(sorted(f.chatbot_ids))
                if len(f.chatbot_ids) != 1
                else s.c.chatbot_id == next(iter(f.chatbot_ids))
            )
        if f.conversation_id is not None:
            w.append(s.c.conversation_id == f.conversation_id)
        if f.search:
            term = f.search.casefold()
            w.append(
                self.search_sql.contact_match(term, f.search_phones, found, indexed=contact_index)
            )
        if f.words is not None:  # () (a query of punctuation) matches nothing
            w.append(self.search_sql.sessions_with_message(list(f.words)))
        if f.start is not None:
            w.append(s.c.started_at >= f.start)
        if f.end is not None:
            w.append(s.c.started_at <= f.end)
        if f.path_keys is not None:
            t = self.tables.an_traces
            on_path = sa.select(t.c.session_id).where(t.c.path_key.in_(sorted(f.path_keys)))
            if f.chatbot_ids is not None:  # the index leads with chatbot_id
                on_path = on_path.where(t.c.chatbot_id.in_(sorted(f.chatbot_ids)))
            w.append(s.c.id.in_(on_path))
        if f.version is not None:
            w.append(s.c.flow_version == f.version)
        if f.completed_before is not None:
            w.append(s.c.completed_at < f.completed_before)
        if f.advanced:
            w += advanced_conditions(
                self.tables,
                self.engine.dialect.name,
                node_id=f.node_id,
                completion_reason=f.completion_reason,
                min_messages=f.min_messages,
                max_messages=f.max_messages,
                min_duration=f.min_duration,
                max_duration=f.max_duration,
                now=f.now,
                has_error=f.has_error,
                variables=f.variables,
                plan=plan or Plan(),
            )
        return w

    async def list_sessions(
        self,
        f: SessionFilter,
        *,
        sort_by: str,
        descending: bool,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None,
    ) -> tuple[list[SessionSummary], int, bool]:
        """One page (``limit`` rows after ``offset`` or after the keyset ``after``), the
        total matching, and whether more rows follow."""

        def page(conn: sa.Connection) -> tuple[list[SessionSummary], int, bool]:
            return self._list_page(conn, f, sort_by, descending, limit, offset, after)

        # a list the counters count, read along an index (a first page, or a page by
        # cursor or shallow offset) takes well under a millisecond of the database's time
        quick = f.countable_from_counters and offset <= _QUICK_OFFSET
        readers = self.readers
        if quick and readers is not None:
            with readers.quick.connect() as conn:
                raw: Any = conn.connection.dbapi_connection

                async def on_sqlite(sql: str, params: list[Any]) -> Any:
                    return raw.execute(sql, params).fetchall()  # on the loop: no await

                return await self._quick_page(
                    on_sqlite, f, sort_by, descending, limit, offset, after
                )
        if quick and self.quick_readers is not None:
            async with self.quick_readers.acquire() as driver:

                async def on_quick(sql: str, params: list[Any]) -> Any:
                    return await driver.fetch(sql, *params)

                return await self._quick_page(
                    on_quick, f, sort_by, descending, limit, offset, after
                )
        if quick and self.dialect == "postgresql" and self.read_engine is not None:
            async with self.read_engine.connect() as aconn:
                asyncpg_conn: Any = (await aconn.get_raw_connection()).driver_connection

                async def on_postgresql(sql: str, params: list[Any]) -> Any:
                    return await asyncpg_conn.fetch(sql, *params)

                return await self._quick_page(
                    on_postgresql, f, sort_by, descending, limit, offset, after
                )
        return await self._read(page)

    # --- quick lists: the counters' filters, their statements written out -----------------
    #
    # A list whose total the counters give (statuses, chatbots, either sort; a page by
    # cursor or at a shallow offset) is an index walk of one page. Its two statements,
    # the same as :meth:`_list_page` builds for such a filter (the same plans), are written
    # out here and run on the driver's own connection: on SQLite on the event loop (even
    # one hop to a worker thread and back cost a list request about 0.9 ms of CPU on the
    # 2-core benchmark machine, several times the statements' own time), and without
    # SQLAlchemy's execution and row processing (0.4 ms more) on both. Every read that may
    # take long (a search, a count of matching rows, a deep offset) goes through
    # :meth:`_list_page`, on SQLite in a worker thread, so that it never holds up the
    # loop. ``tests/test_queries.py``'s oracle tests cover both paths on both backends.

    async def _quick_page(
        self,
        fetch: Callable[[str, list[Any]], Awaitable[Any]],
        f: SessionFilter,
        sort_by: str,
        descending: bool,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None,
    ) -> tuple[list[SessionSummary], int, bool]:
        """The quick list's two statements, through the driver's ``fetch`` (``?``
        placeholders for sqlite3, ``$n`` for asyncpg)."""
        style = "?" if self.dialect == "sqlite" else "$"
        counts_sql, params = self._quick_counts(f, _Marks(style))
        counts = {r[0]: int(r[1]) for r in await fetch(counts_sql, params)}
        sql, params = self._quick_sql(f, counts, sort_by, descending, limit, offset, after, style)
        rows = await fetch(sql, params)
        summaries = self._quick_rows(rows, limit, parse_times=style == "?")
        return summaries, _matching(f, counts), len(rows) > limit

    def _quick_counts(self, f: SessionFilter, marks: _Marks) -> tuple[str, list[Any]]:
        sql = f"SELECT status, sum(n) FROM {self.tables.counts.name}"
        bots = [] if f.chatbot_ids is None else sorted(f.chatbot_ids)
        if f.chatbot_ids is not None:
            sql += f" WHERE {marks.among('chatbot_id', bots)}"
        return sql + " GROUP BY status", bots

    def _quick_sql(
        self,
        f: SessionFilter,
        counts: dict[str, int],
        sort_by: str,
        descending: bool,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None,
        style: str,
    ) -> tuple[str, list[Any]]:
        marks = _Marks(style)
        broad = _broad(f, counts)
        where: list[str] = []
        params: list[Any] = []
        for column, chosen in (
            ("s.status || ''" if broad else "s.status", f.statuses),
            ("s.chatbot_id", f.chatbot_ids),
        ):
            if chosen is not None:
                listed = sorted(chosen)
                where.append(marks.among(column, listed))
                params += listed
        if after is not None:
            at = self._stored_time(after[0]) if style == "?" else after[0]
            where.append(
                f"(s.{sort_by}, s.id) {'<' if descending else '>'} ({marks.next()}, {marks.next()})"
            )
            params += [at, after[1]]
        way = "DESC" if descending else "ASC"
        sql = self._quick_select + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += f" ORDER BY s.{sort_by} {way}, s.id {way} LIMIT {marks.next()} OFFSET {marks.next()}"
        return sql, [*params, limit + 1, offset]

    def _quick_rows(self, rows: Any, limit: int, *, parse_times: bool) -> list[SessionSummary]:
        """Summaries of the page's rows: SQLite gives the times as its stored text (UTC),
        asyncpg as aware datetimes, and the session id as a UUID."""
        keys = self._quick_keys
        out = []
        for row in rows[:limit]:
            item = dict(zip(keys, row, strict=True))
            if parse_times:
                for key in ("started_at", "updated_at", "completed_at"):
                    if item[key] is not None:
                        item[key] = datetime.fromisoformat(item[key]).replace(tzinfo=UTC)
            item["id"] = str(item["id"])
            item["cost"] = float(item["cost"])
            out.append(SessionSummary(**item))
        return out

    @functools.cached_property
    def _quick_keys(self) -> list[str]:
        return [str(col.key) for col in self._summary_columns()]

    @functools.cached_property
    def _quick_select(self) -> str:
        t = self.tables
        names = ["c.name" if key == "chatbot_name" else f"s.{key}" for key in self._quick_keys]
        return (
            f"SELECT {', '.join(names)} FROM {t.sessions.name} AS s LEFT OUTER JOIN "
            f"{t.chatbots.name} AS c ON c.chatbot_id = s.chatbot_id"
        )

    def _stored_time(self, at: datetime) -> Any:
        """A time as SQLite stores it (the column type's own conversion)."""
        process = self._time_processor
        return process(at) if process is not None else at

    @functools.cached_property
    def _time_processor(self) -> Callable[[Any], Any] | None:
        dialect = self.engine.dialect
        column = self.tables.sessions.c.started_at
        return column.type.dialect_impl(dialect).bind_processor(dialect)

    async def _read(self, fn: Callable[[sa.Connection], _T]) -> _T:
        """Run the synchronous read ``fn`` on a connection: on SQLite (a file), in one
        thread hop on the store's synchronous reader engine; elsewhere in one greenlet on
        the async engine. aiosqlite hands every call (cursor, execute, fetch, close) to
        the connection's thread and back, and under concurrent requests those hand-offs
        (and the GIL passed back and forth with them) cost more than the queries."""
        readers = self.readers
        if readers is None:
            async with (self.read_engine or self.engine).connect() as conn:
                return await conn.run_sync(fn)

        def run() -> _T:
            with readers.engine.connect() as conn:
                return fn(conn)

        # an executor of its own: anyio's to_thread cost a list request more than its
        # query (SQLAlchemy's async engine means asyncio anyway)
        return await asyncio.get_running_loop().run_in_executor(readers.executor, run)

    def _list_page(
        self,
        conn: sa.Connection,
        f: SessionFilter,
        sort_by: str,
        descending: bool,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None,
    ) -> tuple[list[SessionSummary], int, bool]:
        s = self.tables.sessions
        sort_col = s.c[sort_by]
        order = [sort_col.desc(), s.c.id.desc()] if descending else [sort_col.asc(), s.c.id.asc()]
        counts = self._status_counts_sync(conn, f.chatbot_ids)
        matching = _matching(f, counts)
        broad = _broad(f, counts)
        # the customer search's candidates, looked up once for the page and the total
        search = self.search_sql
        found = (
            search.contacts_sync(conn, f.search, f.search_phones)
            if search.indexed(f.search)
            else None
        )
        plan, total = Plan(), matching
        walk = False  # a broad customer search's page walks the sort order's index
        if found is not None and len(found.names) + len(found.phones) <= _FEW_CONTACTS:
            # a full name or a phone: the narrowest filter there is, whatever else is set
            return self._counted_page(conn, f, sort_col, descending, limit, offset, after, found)
        driven = None
        if f.advanced and sort_by == "started_at":
            dialect = self.engine.dialect.name
            chatbots = f.chatbot_ids is not None
            driven = drive(f.node_id, f.variables, dialect, chatbots=chatbots)
        if driven is not None:
            return self._driven_page(conn, f, driven, descending, limit, offset, after, found)
        if f.advanced:
            # a status most sessions have (the counters tell) is no index to count from
            common = f.statuses is None or matching > _BROAD_SHARE * sum(counts.values())
            plan, total = self._advanced_plan(conn, f, common_status=common)
        elif found is not None:
            count = sa.select(sa.func.count()).select_from(s).where(*self._where(f, found=found))
            total = int(conn.scalar(count) or 0)
            if total < _WALK_FROM:
                return self._counted_page(
                    conn, f, sort_col, descending, limit, offset, after, found
                )
            walk = True
        elif not f.countable_from_counters:
            count = sa.select(sa.func.count()).select_from(s).where(*self._where(f, found=found))
            total = int(conn.scalar(count) or 0)
        where = self._where(
            f, status_index=not broad, plan=plan, found=found, contact_index=not walk
        )
        if after is not None:
            where.append(self._keyset(f, sort_col, after, descending))
        q = self._summary_select.where(*where).order_by(*order).limit(limit + 1).offset(offset)
        result = conn.execute(q)
        keys = list(result.keys())
        rows = result.all()
        return [_summary(keys, r) for r in rows[:limit]], total, len(rows) > limit

    def _counted_page(
        self,
        conn: sa.Connection,
        f: SessionFilter,
        sort_col: Any,
        descending: bool,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None,
        found: Contacts | None,
    ) -> tuple[list[SessionSummary], int, bool]:
        """A customer search's page and exact total from one pass over its matches.

        The matching names and phones (``found``) lead to their sessions by index, and
        each session must be read (the other filters and the sort key) for the total
        anyway: a count and then a page read them twice (on 1M sessions a full name
        matches about 1,000, which was most of the search's time). One query reads each
        match once, with
        ``count(*) OVER ()`` beside its id and sort key, and the page's ids come out of
        that sorted set (keyset and offset applied after the count); a second query reads
        the page's rows by id."""
        s = self.tables.sessions
        matches = (
            sa.select(s.c.id, sort_col.label("k"), sa.func.count().over().label("total"))
            .where(*self._where(f, found=found))
            .subquery()
        )
        key = [matches.c.k, matches.c.id]
        ids = sa.select(matches.c.id, matches.c.total)
        if after is not None:
            lhs = sa.tuple_(*key)
            rhs = sa.tuple_(
                sa.literal(after[0], type_=sort_col.type), sa.literal(after[1], type_=s.c.id.type)
            )
            ids = ids.where(lhs < rhs if descending else lhs > rhs)
        ids = ids.order_by(*[k.desc() if descending else k.asc() for k in key])
        picked = conn.execute(ids.limit(limit + 1).offset(offset)).all()
        if not picked:  # past the last match: the count still has to be made
            count = sa.select(sa.func.count()).select_from(s).where(*self._where(f, found=found))
            return [], int(conn.scalar(count) or 0), False
        order = [sort_col.desc(), s.c.id.desc()] if descending else [sort_col.asc(), s.c.id.asc()]
        page = [r.id for r in picked[:limit]]
        result = conn.execute(self._summary_select.where(s.c.id.in_(page)).order_by(*order))
        keys = list(result.keys())
        rows = [_summary(keys, r) for r in result]
        return rows, int(picked[0].total), len(picked) > limit

    def _driven_page(
        self,
        conn: sa.Connection,
        f: SessionFilter,
        driven: Drive,
        descending: bool,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None,
        found: Contacts | None,
    ) -> tuple[list[SessionSummary], int, bool]:
        """A page sorted by ``started_at`` read from the driving tag's index (migration
        0008: ``(tag, started_at, session_id)``, or ``(tag, chatbot_id, ...)`` with
        chatbots), and its total counted from the same range in the page's order (up to
        ``f.count_limit + 1``). The chatbots and the time range are tested on the tag's
        copy of the session's columns, the status so that no status index can serve it
        (``status || ''``)."""
        s, c = self.tables.sessions, self.tables.chatbots
        d = self.tables.tags.alias("d")
        dialect = self.engine.dialect.name
        rest = replace(f, chatbot_ids=None, start=None, end=None)
        on_session = self._where(rest, status_index=False, plan=Plan(tags=True), found=found)
        on_session += json_conditions(self.tables, dialect, driven)
        where = [*on_session, *tag_conditions(self.tables, dialect, driven, d)]
        if f.chatbot_ids is not None:
            bots = sorted(f.chatbot_ids)
            where.append(d.c.chatbot_id.in_(bots) if len(bots) != 1 else d.c.chatbot_id == bots[0])
        if f.start is not None:
            where.append(d.c.started_at >= f.start)
        if f.end is not None:
            where.append(d.c.started_at <= f.end)
        joined = d.join(s, s.c.id == d.c.session_id)
        key = [d.c.started_at, d.c.session_id]
        order = [k.desc() for k in key] if descending else [k.asc() for k in key]
        # nothing to test on the session: the count reads the tags alone
        matches = sa.select(sa.literal(1)).select_from(joined if on_session else d).where(*where)
        if f.count_limit is not None:
            # in the page's order: PostgreSQL then walks the tag's index with one seek per
            # session and stops at the limit, rather than hashing every tagged session
            matches = matches.order_by(*order).limit(f.count_limit + 1)
        count = sa.select(sa.func.count()).select_from(matches.subquery())
        total = int(conn.scalar(count) or 0)
        if after is not None:
            lhs = sa.tuple_(*key)
            rhs = sa.tuple_(*[sa.literal(v, type_=k.type) for v, k in zip(after, key, strict=True)])
            where.append(lhs < rhs if descending else lhs > rhs)
        q = (
            sa.select(*self._summary_columns())
            .select_from(joined.outerjoin(c, c.c.chatbot_id == s.c.chatbot_id))
            .where(*where)
            .order_by(*order)
            .limit(limit + 1)
            .offset(offset)
        )
        result = conn.execute(q)
        keys = list(result.keys())
        rows = result.all()
        return [_summary(keys, r) for r in rows[:limit]], total, len(rows) > limit

    def _advanced_plan(
        self, conn: sa.Connection, f: SessionFilter, *, common_status: bool
    ) -> tuple[Plan, int]:
        """The plan of a list with advanced filters, and its total (counted up to
        ``f.count_limit + 1`` rows: past the limit the filter is broad, and one page is
        found fastest by walking the sort order's index)."""
        s, e = self.tables.sessions, self.tables.events
        rare = True
        if f.node_id is not None:
            runs = sa.select(sa.literal(1)).where(e.c.kind == RAN, e.c.node_id == f.node_id)
            probe = sa.select(sa.func.count()).select_from(runs.limit(RARE_NODE).subquery())
            rare = int(conn.scalar(probe) or 0) < RARE_NODE
        ranged = any(
            v is not None for v in (f.min_messages, f.max_messages, f.min_duration, f.max_duration)
        )
        first = ranged and common_status and self.engine.dialect.name == "sqlite"
        plan = Plan(rare_node=rare, ranges_first=first)
        where = self._where(f, status_index=not first, plan=plan)
        matches = sa.select(sa.literal(1)).select_from(s).where(*where)
        if f.count_limit is not None:
            matches = matches.limit(f.count_limit + 1)
        count = sa.select(sa.func.count()).select_from(matches.subquery())
        total = int(conn.scalar(count) or 0)
        walk = f.count_limit is not None and total > f.count_limit
        # walking, each session costs one seek into the node index: no list to build first
        return Plan(walk=walk, rare_node=rare and not walk), total

    def _keyset(
        self, f: SessionFilter, sort_col: Any, after: tuple[datetime, str], descending: bool
    ) -> Any:
        """Rows strictly past ``after`` in sort order.

        Only ``(sort column, id)`` is compared: next to an equality on the leading columns
        (``status = ?``) both SQLite and PostgreSQL seek an index such as
        ``(status, started_at, id)`` straight to the position. Putting the status into the
        row comparison as well made both scan from the end of the status's range instead
        (on 1M sessions, 100,000 rows deep: 20-60 ms instead of under 1 ms).
        """
        s = self.tables.sessions
        left: list[Any] = [sort_col, s.c.id]
        right: list[Any] = [after[0], after[1]]
        lhs = sa.tuple_(*left)
        rhs = sa.tuple_(*[sa.literal(v, type_=c.type) for v, c in zip(right, left, strict=True)])
        return lhs < rhs if descending else lhs > rhs

    async def _status_counts(
        self, conn: AsyncConnection, chatbot_ids: frozenset[str] | None
    ) -> dict[str, int]:
        """Sessions per status (of some chatbots), from the counters table."""
        return await conn.run_sync(self._status_counts_sync, chatbot_ids)

    def _status_counts_sync(
        self, conn: sa.Connection, chatbot_ids: frozenset[str] | None
    ) -> dict[str, int]:
        c = self.tables.counts
        q = self._counts_select
        if chatbot_ids is not None:
            q = q.where(c.c.chatbot_id.in_(sorted(chatbot_ids)))
        return {status: int(n) for status, n in conn.execute(q)}

    async def get_session(
        self, session_id: str, *, message_limit: int, call_limit: int | None = None
    ) -> SessionDetail | None:
        """A session with node executions, its newest ``message_limit`` messages, its newest
        ``call_limit`` LLM and tool calls (all, with ``None``) and its flow."""
        s, fl, c = self.tables.sessions, self.tables.flows, self.tables.chatbots
        cols = [
            *self._summary_columns(),
            s.c.variables,
            s.c.metadata,
            s.c.flow_version,
            s.c.expires_at,
            s.c.completion_reason,
        ]
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(*cols).select_from(self._from()).where(s.c.id == session_id)
                )
            ).first()
            if row is None:
                return None
            version = row.flow_version
            if version is None:
                version = await conn.scalar(
                    sa.select(c.c.current_version).where(c.c.chatbot_id == row.chatbot_id)
                )
            flow = await conn.scalar(
                sa.select(fl.c.flow).where(
                    fl.c.chatbot_id == row.chatbot_id, fl.c.version == version
                )
            )
            activity = await self._activity(conn, session_id, call_limit)
            messages = await self._messages(
                conn, session_id, row.conversation_id, limit=message_limit, before=None
            )
        values = row._asdict()
        values["cost"] = float(values["cost"])
        return SessionDetail(
            **values,
            node_history=[n.node_id for n in activity.executions],
            node_executions=activity.executions,
            messages=messages,
            flow_data=flow or {"nodes": [], "edges": []},
            node_totals=activity.node_totals(),
            llm_call_history=list(activity.llm_calls),
            tool_call_history=list(activity.tool_calls),
        )

    async def _activity(
        self, conn: AsyncConnection, session_id: str, call_limit: int | None
    ) -> _Activity:
        """The session's node executions, LLM calls and tool calls, in log order."""
        e = self.tables.events
        rows = await conn.execute(
            sa.select(e.c.seq, e.c.kind, e.c.node_id, e.c.at, e.c.data)
            .where(e.c.session_id == session_id, e.c.kind.in_((NODE_EXECUTED, LLM_CALL, TOOL_CALL)))
            .order_by(e.c.seq)
        )
        activity = _Activity(call_limit)
        for r in rows:
            activity.add(r.seq, r.kind, r.node_id, r.at, r.data)
        return activity

    async def _messages(
        self,
        conn: AsyncConnection,
        session_id: str,
        conversation_id: str | None,
        *,
        limit: int | None,
        before: int | None,
    ) -> list[Message]:
        e = self.tables.events
        q = (
            sa.select(e.c.seq, e.c.at, e.c.node_id, e.c.message_id, e.c.data)
            .where(e.c.session_id == session_id, e.c.kind == MESSAGE)
            .order_by(e.c.seq.desc())
        )
        if before is not None:
            q = q.where(e.c.seq < before)
        if limit is not None:
            q = q.limit(limit)
        rows = list((await conn.execute(q)).all())
        rows.reverse()
        return [
            Message(
                id=r.seq,
                session_id=session_id,
                conversation_id=conversation_id,
                direction=r.data["direction"],
                type=r.data.get("type", "text"),
                text=r.data.get("text"),
                payload=r.data.get("payload"),
                node_id=r.node_id,
                timestamp=r.at,
                channel_message_id=r.message_id,
            )
            for r in rows
        ]

    async def session_head(self, session_id: str) -> tuple[str, str, str | None] | None:
        """``(chatbot_id, status, conversation_id)`` of a session, or ``None``."""
        s = self.tables.sessions
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(s.c.chatbot_id, s.c.status, s.c.conversation_id).where(
                        s.c.id == session_id
                    )
                )
            ).first()
        return (row.chatbot_id, row.status, row.conversation_id) if row else None

    async def messages(
        self, session_id: str, conversation_id: str | None, *, limit: int | None, before: int | None
    ) -> list[Message]:
        async with self.engine.connect() as conn:
            return await self._messages(
                conn, session_id, conversation_id, limit=limit, before=before
            )

    async def stats(self, *, chatbot_ids: frozenset[str] | None, since: datetime) -> Stats:
        s = self.tables.sessions
        # ``status || ''`` keeps the planner on the partial completed_at index: today's
        # completions are few, the completed status is most of the table.
        today = (
            sa.select(sa.func.count())
            .select_from(s)
            .where(
                s.c.completed_at.is_not(None),
                s.c.completed_at >= since,
                s.c.status.concat("") == "completed",
            )
        )
        if chatbot_ids is not None:
            today = today.where(s.c.chatbot_id.in_(sorted(chatbot_ids)))
        async with self.engine.connect() as conn:
            by_status = {st: 0 for st in sorted(ALL_STATUSES)}
            by_status.update(await self._status_counts(conn, chatbot_ids))
            completed_today = int(await conn.scalar(today) or 0)
        return Stats(
            active=sum(by_status[st] for st in ACTIVE_STATUSES),
            completed_today=completed_today,
            total=sum(by_status.values()),
            by_status=by_status,
        )

    async def chatbots(self) -> list[dict[str, Any]]:
        """Every registered chatbot: ``{chatbot_id, name, current_version, updated_at}``."""
        c = self.tables.chatbots
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(c).order_by(c.c.name))
            return [r._asdict() for r in rows]
