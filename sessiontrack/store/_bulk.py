"""The writer's two statements that grow with a batch: one statement each, not one per row.

A batch appends thousands of events and rewrites the row of every session it touches. Sent
row by row (an ``executemany``), each row costs a round of driver work; on SQLite it also
costs the GIL: the driver's thread releases it around every row's step and must win it
back from the engine's thread, which keeps it for a whole switch interval (5 ms) while the
engine is busy. So the writer sends each table's rows at once:

- **SQLite**: the rows as one JSON array, one ``INSERT ... SELECT ... FROM json_each(?)``.
  SQLite unpacks and inserts every row in C within a single step, without the GIL.
- **PostgreSQL**: the events by binary ``COPY``; the sessions as one array per column,
  one ``INSERT ... SELECT ... FROM unnest(...)``.

Session rows, new or changed, go through one upsert (``ON CONFLICT (id) DO UPDATE`` of the
mutable columns). Values arrive already in the form each column stores (timestamps and
JSON converted by each writer's ``ts`` and ``dumps``), skipping SQLAlchemy's per-row type
processing. Errors keep their usual form: the
SQL statements run through SQLAlchemy, and the driver's COPY errors are re-raised as
SQLAlchemy's own (:func:`driver_error`), so the writer tells an outage from a bad report
in the same way for every statement.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from ..analytics._rollup import Rollup, Trace
from ..events import StoredEvent
from ._fold import MUTABLE_COLUMNS, SESSION_COLUMNS, SessionState
from ._tables import Tables, UTCDateTime

EVENT_COLUMNS = (
    "seq",
    "session_id",
    "chatbot_id",
    "kind",
    "at",
    "flow_version",
    "node_id",
    "message_id",
    "data",
)
AN_KEY = ("chatbot_id", "metric", "grain", "bucket", "version", "dim")
TAG_COLUMNS = ("session_id", "tag", "chatbot_id", "started_at")
TRACE_COLUMNS = ("session_id", "chatbot_id", "version", "started_at", "status", "path_key", "state")


def utc_text(value: datetime | None) -> str | None:
    """What :class:`UTCDateTime` stores on SQLite: naive UTC text with microseconds."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: sessiontrack stores aware timestamps")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without its "+00:00"


class UTCText:
    """:func:`utc_text`, formatting each second's "YYYY-MM-DD HH:MM:SS" once: the events
    of a batch mostly share a handful of seconds, and ``isoformat`` costs more than the
    rest of a row."""

    def __init__(self) -> None:
        self._second: tuple[tuple[int, ...], str] = ((), "")

    def __call__(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}: sessiontrack stores aware timestamps")
            value = value.astimezone(UTC)
        key = (value.second, value.minute, value.hour, value.day, value.month, value.year)
        second = self._second
        if key != second[0]:
            second = self._second = (key, value.replace(microsecond=0, tzinfo=None).isoformat(" "))
        return f"{second[1]}.{value.microsecond:06d}"


def dumps(value: Any) -> str:
    """JSON text of ``value``: orjson's (several times faster than the standard library's,
    and as strict), or the standard library's for what orjson refuses but JSON allows
    (integers past 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


_MAX_PARAMS = 30_000
"""Values a SQLite ``INSERT ... VALUES`` binds at the most: under SQLite's limit of 32,766
(the log's 9 columns: 3,333 rows; a batch's events arrive 2,000 reports a chunk)."""


def _json_or_null(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _utc_datetime(text: str) -> datetime:
    """A timestamp as SQLite stores it (naive UTC text), aware again."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: sessiontrack stores aware timestamps")
    return value


def _kinds(table: sa.Table, columns: Sequence[str]) -> list[str]:
    out = []
    for name in columns:
        t = table.c[name].type
        out.append("ts" if isinstance(t, UTCDateTime) else "json" if isinstance(t, sa.JSON) else "")
    return out


class BulkWriter(ABC):
    """Writes the events and session rows of one folded batch (one subclass a dialect)."""

    def __init__(self, tables: Tables, dialect: sa.Dialect) -> None:
        self.tables = tables
        self.dialect = dialect
        self._q = dialect.identifier_preparer.quote
        s, e = tables.sessions, tables.events
        self._session_kinds = _kinds(s, SESSION_COLUMNS)
        cols = ", ".join(map(self._q, SESSION_COLUMNS))
        updates = ", ".join(f"{self._q(c)} = excluded.{self._q(c)}" for c in MUTABLE_COLUMNS)
        self._sessions_sql = (
            f"INSERT INTO {self._q(s.name)} ({cols}) {self._source(s, SESSION_COLUMNS)} "
            f"ON CONFLICT ({self._q('id')}) DO UPDATE SET {updates}"
        )
        c = tables.counts
        self._counts_sql = (
            f"INSERT INTO {self._q(c.name)} (chatbot_id, status, n) "
            f"{self._source(c, ('chatbot_id', 'status', 'n'))} "
            f"ON CONFLICT (chatbot_id, status) DO UPDATE SET n = {self._q(c.name)}.n + excluded.n"
        )
        self._events_sql = (
            f"INSERT INTO {self._q(e.name)} ({', '.join(map(self._q, EVENT_COLUMNS))}) "
            f"{self._source(e, EVENT_COLUMNS)}"
        )
        self._an_counts_sql = self._add_sql(tables.an_counts, (*AN_KEY, "value"))
        self._an_bins_sql = self._add_sql(tables.an_bins, (*AN_KEY, "bin", "n"))
        pa = tables.an_paths
        self._an_paths_sql = (
            f"INSERT INTO {self._q(pa.name)} (chatbot_id, path_key, nodes) "
            f"{self._source(pa, ('chatbot_id', 'path_key', 'nodes'))} "
            "ON CONFLICT (chatbot_id, path_key) DO NOTHING"
        )
        tg = tables.tags
        self._tags_sql = (
            f"INSERT INTO {self._q(tg.name)} ({', '.join(TAG_COLUMNS)}) "
            f"{self._source(tg, TAG_COLUMNS)} ON CONFLICT DO NOTHING"
        )
        tr = tables.an_traces
        self._an_traces_sql = (
            f"INSERT INTO {self._q(tr.name)} ({', '.join(TRACE_COLUMNS)}) "
            f"{self._source(tr, TRACE_COLUMNS)} ON CONFLICT (session_id) DO UPDATE SET "
            "status = excluded.status, path_key = excluded.path_key, state = excluded.state"
        )

    def _add_sql(self, table: sa.Table, columns: Sequence[str]) -> str:
        """An upsert adding the last column's value to the row's (the rollups are sums)."""
        key, value = ", ".join(columns[:-1]), columns[-1]
        return (
            f"INSERT INTO {self._q(table.name)} ({', '.join(columns)}) "
            f"{self._source(table, columns)} ON CONFLICT ({key}) DO UPDATE SET "
            f"{value} = {self._q(table.name)}.{value} + excluded.{value}"
        )

    @abstractmethod
    def _source(self, table: sa.Table, columns: Sequence[str]) -> str:
        """``SELECT ...`` producing the rows from the statement's parameters."""

    ts: Callable[[datetime | None], Any]
    dumps: Callable[[Any], Any]

    def _states(
        self, rows: Iterable[Sequence[Any]], kind: str, convert: Callable[[Any], Any]
    ) -> dict[str, SessionState]:
        """Session states, by id, from rows of the session columns as the driver returned
        them, converting the columns of ``kind`` ("ts" or "json")."""
        at = [i for i, k in enumerate(self._session_kinds) if k == kind]
        out = {}
        for record in rows:
            row = list(record)
            for i in at:
                if row[i] is not None:
                    row[i] = convert(row[i])
            st = SessionState(*row)
            out[st.id] = st
        return out

    def _session_rows(self, states: Sequence[SessionState]) -> list[list[Any]]:
        ts, dumps = self.ts, self.dumps
        convert = [ts if k == "ts" else dumps if k == "json" else None for k in self._session_kinds]
        rows = []
        for st in states:
            row = [getattr(st, c) for c in SESSION_COLUMNS]
            for i, f in enumerate(convert):
                if f is not None:
                    row[i] = f(row[i])
            rows.append(row)
        return rows

    def _event_rows(self, events: Sequence[StoredEvent]) -> list[tuple[Any, ...]]:
        ts, dumps = self.ts, self.dumps
        return [
            (
                e.seq,
                e.session_id,
                e.chatbot_id,
                e.kind,
                ts(e.at),
                e.flow_version,
                e.data.get("node_id"),
                e.data.get("message_id"),
                dumps(e.data),
            )
            for e in events
        ]

    # --- analytics rollups: the same statements for the writer (async) and a replay
    # (a sync connection: the migration's, or the CLI's through run_sync)

    @abstractmethod
    def _params(self, rows: Sequence[Sequence[Any]]) -> Any:
        """The parameters of a ``_source`` statement for ``rows``."""

    def rollup_statements(
        self, rollup: Rollup, known: set[tuple[str, str]] | None = None
    ) -> list[tuple[str, Any]]:
        """The statements writing ``rollup``: count and bin deltas added to the rows,
        the path keys inserted unless in the table already (or in ``known``: those of
        ``(chatbot_id, path_key)`` committed before), the changed traces upserted."""
        out = []
        counts = rollup.count_rows()
        if counts:
            out.append((self._an_counts_sql, self._params(counts)))
        bins = rollup.bin_rows()
        if bins:
            out.append((self._an_bins_sql, self._params(bins)))
        dumps = self.dumps
        paths = [(cid, key, dumps(nodes)) for cid, key, nodes in rollup.path_rows(known)]
        if paths:
            out.append((self._an_paths_sql, self._params(paths)))
        traces = rollup.changed()
        if traces:
            ts = self.ts
            rows = [
                (
                    tr.session_id,
                    tr.chatbot_id,
                    tr.version,
                    ts(tr.started_at),
                    tr.status,
                    tr.path_key,
                    dumps(tr.state()),
                )
                for tr in traces
            ]
            out.append((self._an_traces_sql, self._params(rows)))
        return out

    @abstractmethod
    def _traces_sql(self) -> str:
        """The query of the traces of the session ids in its one parameter."""

    @abstractmethod
    def _traces_of(self, rows: Iterable[Sequence[Any]]) -> dict[str, Trace]:
        """Traces by session id from the rows of :meth:`_traces_sql`."""

    def load_traces_sync(self, conn: Connection, ids: Sequence[str]) -> dict[str, Trace]:
        if not ids:
            return {}
        return self._traces_of(conn.exec_driver_sql(self._traces_sql(), self._ids(ids)).all())

    def write_rollup_sync(self, conn: Connection, rollup: Rollup) -> None:
        for sql, params in self.rollup_statements(rollup):
            conn.exec_driver_sql(sql, params)

    @abstractmethod
    def _ids(self, ids: Sequence[str]) -> Any:
        """The parameters of :meth:`_traces_sql` for ``ids``."""

    @abstractmethod
    async def load_traces(self, conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Trace]:
        """The analytics traces of these sessions (those that have one), by session id."""

    async def write_rollup(self, conn: AsyncConnection, rollup: Rollup) -> None:
        """Write :meth:`rollup_statements`."""
        await self.run(conn, self.rollup_statements(rollup))

    @abstractmethod
    async def run(self, conn: AsyncConnection, statements: Sequence[tuple[str, Any]]) -> None:
        """Run statements made by :meth:`rollup_statements`."""

    @abstractmethod
    async def add_counts(
        self, conn: AsyncConnection, deltas: Sequence[tuple[str, str, int]]
    ) -> None:
        """Add ``n`` to the session counter of each ``(chatbot_id, status, n)``."""

    async def tags(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert tag rows ``(session_id, tag, chatbot_id, started_at)`` unless there."""
        ts = self.ts
        rows = [(sid, tag, cid, ts(started)) for sid, tag, cid, started in rows]
        await self.run(conn, [(self._tags_sql, self._params(rows))])

    @abstractmethod
    async def load_sessions(
        self, conn: AsyncConnection, ids: Sequence[str]
    ) -> dict[str, SessionState]:
        """The sessions with these ids, by id."""

    @abstractmethod
    async def known_messages(
        self, conn: AsyncConnection, mids: Sequence[str]
    ) -> set[tuple[str, str]]:
        """``(message_id, session_id)`` of these channel message ids already in the log."""

    @abstractmethod
    async def events(self, conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
        """Append ``events`` to the log."""

    @abstractmethod
    async def sessions(self, conn: AsyncConnection, states: Sequence[SessionState]) -> None:
        """Insert or update the rows of ``states``."""


class SQLiteBulk(BulkWriter):
    """One JSON array parameter a statement, unpacked by ``json_each`` inside SQLite.

    The statements go straight to aiosqlite (in the transaction SQLAlchemy opened): one
    request to its thread each, where SQLAlchemy's cursor adapter makes two, and the
    request is queued as soon as the statement's task first runs, so the database works
    while the writer folds on (see ``SQLAlchemyStore._fold_and_append``).
    """

    async def _run(self, conn: AsyncConnection, sql: str, param: str) -> list[Any]:
        driver = await _driver(conn)
        with _translated(sql, self.dialect):
            return list(await driver.execute_fetchall(sql, (param,)))

    def __init__(self, tables: Tables, dialect: sa.Dialect) -> None:
        super().__init__(tables, dialect)
        self.ts = UTCText()
        self._values_sql: dict[tuple[str, int], str] = {}
        q = self._q
        s, e, tg = tables.sessions, tables.events, tables.tags
        updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in MUTABLE_COLUMNS)
        self._values_heads = {
            "events": (
                f"INSERT INTO {q(e.name)} ({', '.join(map(q, EVENT_COLUMNS))})",
                len(EVENT_COLUMNS),
                "",
            ),
            "sessions": (
                f"INSERT INTO {q(s.name)} ({', '.join(map(q, SESSION_COLUMNS))})",
                len(SESSION_COLUMNS),
                f"ON CONFLICT ({q('id')}) DO UPDATE SET {updates}",
            ),
            "tags": (
                f"INSERT INTO {q(tg.name)} ({', '.join(TAG_COLUMNS)})",
                len(TAG_COLUMNS),
                "ON CONFLICT DO NOTHING",
            ),
        }

    @staticmethod
    def dumps(value: Any) -> Any:
        return value  # nested in the batch's JSON array; the column gets its JSON text

    def _source(self, table: sa.Table, columns: Sequence[str]) -> str:
        # json_extract returns an object or array as its JSON text, a scalar as its value;
        # WHERE true: SQLite needs it before an upsert's ON CONFLICT after a SELECT
        picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
        return f"SELECT {picks} FROM json_each(?) WHERE true"

    # Lookups come back as one JSON array in one row: fetching a row each would hand the
    # GIL back and forth once a row.

    async def load_sessions(
        self, conn: AsyncConnection, ids: Sequence[str]
    ) -> dict[str, SessionState]:
        if not ids:
            return {}
        s = self.tables.sessions
        picks = ", ".join(
            f"json({self._q(c)})" if k == "json" else self._q(c)
            for c, k in zip(SESSION_COLUMNS, self._session_kinds, strict=True)
        )
        sql = (
            f"SELECT json_group_array(json_array({picks})) FROM {self._q(s.name)} "
            f"WHERE {self._q('id')} IN (SELECT value FROM json_each(?))"
        )
        text = (await self._run(conn, sql, dumps(list(ids))))[0][0] or "[]"
        return self._states(orjson.loads(text), "ts", _utc_datetime)

    async def known_messages(
        self, conn: AsyncConnection, mids: Sequence[str]
    ) -> set[tuple[str, str]]:
        if not mids:
            return set()
        e = self.tables.events
        sql = (
            "SELECT json_group_array(json_array(message_id, session_id)) "
            f"FROM {self._q(e.name)} WHERE message_id IS NOT NULL "
            "AND message_id IN (SELECT value FROM json_each(?))"
        )
        text = (await self._run(conn, sql, dumps(list(mids))))[0][0] or "[]"
        return {(m, s) for m, s in orjson.loads(text)}

    # The rows of the three big writes (the log, the touched sessions, the tags) go as
    # the bound parameters of a multi-row VALUES, not as one JSON array: unpacking a row
    # with json_extract parses its text again for every column (the log's rows: 5.8
    # against 2.9 µs a row in SQLite's thread). The values of a statement are bound in one
    # call, so the GIL passes to SQLite's thread and back once a statement, not once a row.

    async def events(self, conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
        ts = self.ts
        params: list[Any] = []
        extend = params.extend
        for e in events:
            data = e.data
            extend(
                (
                    e.seq,
                    e.session_id,
                    e.chatbot_id,
                    e.kind,
                    ts(e.at),
                    e.flow_version,
                    data.get("node_id"),
                    data.get("message_id"),
                    dumps(data),  # the module's: JSON text
                )
            )
        await self._values(conn, "events", params)

    async def sessions(self, conn: AsyncConnection, states: Sequence[SessionState]) -> None:
        ts = self.ts
        convert = [
            ts if k == "ts" else _json_or_null if k == "json" else None for k in self._session_kinds
        ]
        params: list[Any] = []
        for st in states:
            row = [getattr(st, c) for c in SESSION_COLUMNS]
            for i, f in enumerate(convert):
                if f is not None:
                    row[i] = f(row[i])
            params.extend(row)
        await self._values(conn, "sessions", params)

    async def tags(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> None:
        ts = self.ts
        params: list[Any] = []
        for sid, tag, cid, started in rows:
            params += (sid, tag, cid, ts(started))
        await self._values(conn, "tags", params)

    async def _values(self, conn: AsyncConnection, table: str, params: list[Any]) -> None:
        """Run the ``table`` statement of :attr:`_values_heads` over ``params`` (a row's
        columns after another), in statements of :data:`_MAX_PARAMS` values at most."""
        if not params:
            return
        head, width, tail = self._values_heads[table]
        per = _MAX_PARAMS // width * width
        driver = await _driver(conn)
        for start in range(0, len(params), per):
            part = params[start : start + per]
            rows = len(part) // width
            sql = self._values_sql.get((table, rows))
            if sql is None:
                one = "(" + ", ".join("?" * width) + ")"
                sql = f"{head} VALUES {', '.join([one] * rows)} {tail}"
                if len(self._values_sql) < 32:  # the full statements, and a few others
                    self._values_sql[(table, rows)] = sql
            with _translated(sql, self.dialect):
                await driver.execute_fetchall(sql, part)

    async def add_counts(
        self, conn: AsyncConnection, deltas: Sequence[tuple[str, str, int]]
    ) -> None:
        await self._run(conn, self._counts_sql, dumps(deltas))

    def _params(self, rows: Sequence[Sequence[Any]]) -> Any:
        return (dumps(rows),)

    def _ids(self, ids: Sequence[str]) -> Any:
        return (dumps(list(ids)),)

    def _traces_sql(self) -> str:
        t = self.tables.an_traces
        picks = ", ".join("json(state)" if c == "state" else c for c in TRACE_COLUMNS)
        return (
            f"SELECT json_group_array(json_array({picks})) FROM {self._q(t.name)} "
            "WHERE session_id IN (SELECT value FROM json_each(?))"
        )

    def _traces_of(self, rows: Iterable[Sequence[Any]]) -> dict[str, Trace]:
        out = {}
        for (text,) in rows:
            for sid, cid, version, started, status, key, state in orjson.loads(text or "[]"):
                started_at = _utc_datetime(started)
                out[sid] = Trace.from_row(sid, cid, version, started_at, status, key, state)
        return out

    async def load_traces(self, conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Trace]:
        if not ids:
            return {}
        return self._traces_of(await self._run(conn, self._traces_sql(), self._ids(ids)[0]))

    async def run(self, conn: AsyncConnection, statements: Sequence[tuple[str, Any]]) -> None:
        for sql, params in statements:
            await self._run(conn, sql, params[0])


class PostgresBulk(BulkWriter):
    """Events by binary COPY; session rows as one array a column through ``unnest``."""

    ts = staticmethod(aware)
    dumps = staticmethod(dumps)

    def _source(self, table: sa.Table, columns: Sequence[str]) -> str:
        arrays, picks = [], []
        for i, (name, kind) in enumerate(zip(columns, _kinds(table, columns), strict=True)):
            sql_type = "text" if kind == "json" else table.c[name].type.compile(self.dialect)
            arrays.append(f"${i + 1}::{sql_type}[]")
            picks.append(f"c{i}::jsonb" if kind == "json" else f"c{i}")
        names = ", ".join(f"c{i}" for i in range(len(columns)))
        return f"SELECT {', '.join(picks)} FROM unnest({', '.join(arrays)}) AS u({names})"

    # Lookups go to asyncpg directly: one round trip with an array of any length, and
    # rows decoded by the driver instead of SQLAlchemy's row processing. They run with
    # the transaction's index-only settings (SQLAlchemyStore._lookup_plans).

    async def _fetch(self, conn: AsyncConnection, sql: str, values: list[str]) -> list[Any]:
        driver = await _driver(conn)
        with _translated(sql, self.dialect):
            return list(await driver.fetch(sql, values))

    async def load_sessions(
        self, conn: AsyncConnection, ids: Sequence[str]
    ) -> dict[str, SessionState]:
        if not ids:
            return {}
        picks = ", ".join(
            f"{self._q(c)}::text" if k == "json" or c == "id" else self._q(c)
            for c, k in zip(SESSION_COLUMNS, self._session_kinds, strict=True)
        )
        sql = (
            f"SELECT {picks} FROM {self._q(self.tables.sessions.name)} "
            f"WHERE {self._q('id')} = ANY($1::uuid[])"
        )
        return self._states(await self._fetch(conn, sql, list(ids)), "json", orjson.loads)

    async def known_messages(
        self, conn: AsyncConnection, mids: Sequence[str]
    ) -> set[tuple[str, str]]:
        if not mids:
            return set()
        sql = (
            f"SELECT message_id, session_id::text FROM {self._q(self.tables.events.name)} "
            "WHERE message_id IS NOT NULL AND message_id = ANY($1::text[])"
        )
        return {(r[0], r[1]) for r in await self._fetch(conn, sql, list(mids))}

    async def events(self, conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
        driver = await _driver(conn)
        with _translated(f"COPY {self.tables.events.name}", self.dialect):
            await driver.copy_records_to_table(
                self.tables.events.name, records=self._event_rows(events), columns=EVENT_COLUMNS
            )

    async def sessions(self, conn: AsyncConnection, states: Sequence[SessionState]) -> None:
        columns = tuple(list(c) for c in zip(*self._session_rows(states), strict=True))
        await conn.exec_driver_sql(self._sessions_sql, columns)

    async def add_counts(
        self, conn: AsyncConnection, deltas: Sequence[tuple[str, str, int]]
    ) -> None:
        columns = tuple(list(c) for c in zip(*deltas, strict=True))
        await conn.exec_driver_sql(self._counts_sql, columns)

    def _params(self, rows: Sequence[Sequence[Any]]) -> Any:
        return tuple(list(c) for c in zip(*rows, strict=True))

    def _ids(self, ids: Sequence[str]) -> Any:
        return (list(ids),)

    def _traces_sql(self) -> str:
        t = self.tables.an_traces
        picks = ", ".join(
            f"{c}::text" if c in ("state", "session_id") else c for c in TRACE_COLUMNS
        )
        return f"SELECT {picks} FROM {self._q(t.name)} WHERE session_id = ANY($1::uuid[])"

    def _traces_of(self, rows: Iterable[Sequence[Any]]) -> dict[str, Trace]:
        out = {}
        for sid, cid, version, started_at, status, key, state in rows:
            out[sid] = Trace.from_row(
                sid, cid, version, started_at, status, key, orjson.loads(state)
            )
        return out

    async def load_traces(self, conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Trace]:
        if not ids:
            return {}
        return self._traces_of(await self._fetch(conn, self._traces_sql(), list(ids)))

    async def run(self, conn: AsyncConnection, statements: Sequence[tuple[str, Any]]) -> None:
        for sql, params in statements:
            await conn.exec_driver_sql(sql, params)


def bulk_writer(tables: Tables, dialect: sa.Dialect) -> BulkWriter:
    return (PostgresBulk if dialect.name == "postgresql" else SQLiteBulk)(tables, dialect)


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection (aiosqlite's, asyncpg's), in ``conn``'s transaction."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return driver


@contextmanager
def _translated(statement: str, dialect: sa.Dialect) -> Iterator[None]:
    """Re-raise what the driver raises for ``statement`` as SQLAlchemy would have."""
    try:
        yield
    except Exception as exc:
        raise driver_error(exc, statement, dialect) from exc


def transient_sqlstate(state: str | None) -> bool:
    """A PostgreSQL error code meaning "not now" rather than "not this": connection
    (08), insufficient resources (53), transaction rollback (40: serialization, deadlock)
    and the server shutting down or not accepting connections yet (57P)."""
    if not state:
        return False
    return state[:2] in ("08", "53", "40") or state[:3] == "57P"


def driver_error(exc: Exception, statement: str, dialect: sa.Dialect) -> Exception:
    """A driver exception raised outside SQLAlchemy, as SQLAlchemy would have raised it:
    a :class:`sqlalchemy.exc.DBAPIError` carrying the driver's error as ``orig``, with
    ``connection_invalidated`` set when the connection is gone."""
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return exc
    if getattr(exc, "sqlite_errorname", None) is not None:  # sqlite3's own DB-API classes
        cls = getattr(sa.exc, type(exc).__name__, sa.exc.DBAPIError)
        return cls(statement, None, exc)
    state = getattr(exc, "sqlstate", None)
    lost = (state or "").startswith("08") or isinstance(exc, OSError | TimeoutError)
    lost = lost or type(exc).__name__ == "InterfaceError"  # asyncpg: connection closed
    base = sa.exc.OperationalError if lost or transient_sqlstate(state) else sa.exc.DBAPIError
    return base(statement, None, exc, connection_invalidated=lost)
