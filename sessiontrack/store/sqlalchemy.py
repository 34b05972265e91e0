"""The SQLAlchemy Core store: SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..abc import BatchAttempt, Store
from ..analytics._rollup import REBUILDS, Rollup
from ..errors import SchemaOutdated
from ..events import StoredEvent
from . import _graph, _migrate, _watch
from ._alerts import AlertQueries
from ._analytics_reads import AnalyticsReads
from ._bulk import BulkWriter, bulk_writer
from ._cursors import CursorQueries
from ._erase import ErasureQueries
from ._errors import is_transient
from ._fold import (
    EDGE_OBSERVED,
    Chatbot,
    Folder,
    FoldResult,
    Report,
    SessionState,
    flow_labels,
)
from ._readers import postgresql_quick_readers, sqlite_readers
from ._search import Contacts
from ._shield import uncancelled
from ._tables import DEFAULT_PREFIX, make_tables
from ._tags import snapshot, write_tags
from ._transfer import TransferQueries
from ._urls import normalize_url
from ._webhooks import WebhookQueries

log = logging.getLogger(__name__)
_CHATBOT_KINDS = ("session_started", EDGE_OBSERVED)  # reports the fold needs the chatbot of
_PATHS_WRITTEN_MAX = 100_000  # path keys remembered as written (see _paths_written)
_FOLD_CHUNK = 2000  # reports folded before their events go to the log (see _fold_and_append)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; NORMAL sync in WAL survives an application
    # crash (not a power loss): docs/durability.md says so.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


POSTGRESQL_SETTINGS = {"max_parallel_workers_per_gather": "0"}
"""Session settings of the connections a store opens itself on PostgreSQL. Every read of
the store is an index walk that stops after a page or a bounded count; for the larger
ones (a count up to 1,001 through a semi-join, say) the planner chose parallel workers,
whose start-up alone took 5 ms of a 13 ms statement, on cores the other requests needed.
No parallel plans: on the 1M-session data set the slowest advanced filters went from
18.6 to 8.9 ms (docs/benchmarks.md). Index builds (``max_parallel_maintenance_workers``)
are not affected."""


def _attempt_key(writer_id: str) -> str:
    """The ``state`` key recording a writer's last committed attempt (see ``apply``)."""
    return f"batch:{writer_id}"


def _rollup_failed(rollup: Rollup) -> None:
    """A bug in the analytics fold must not cost the batch its events: log it, and let
    the batch commit without its rollups (``sessiontrack analytics rebuild`` mends them)."""
    rollup.failed = True
    log.exception(
        "sessiontrack: the analytics rollups of a batch failed and were skipped; "
        "run 'sessiontrack analytics rebuild' to rebuild them from the log"
    )


def mask_url(url: str | sa.URL) -> str:
    """The URL with its password hidden, for logs and reprs."""
    return sa.make_url(url).render_as_string(hide_password=True)


class SQLAlchemyStore(
    ErasureQueries,
    TransferQueries,
    AnalyticsReads,
    CursorQueries,
    WebhookQueries,
    AlertQueries,
    Store,
):
    """Stores events and the session projection with SQLAlchemy's async engine.

    :param url_or_engine: a database URL (``sqlite+aiosqlite:///file.db``,
        ``postgresql+asyncpg://user@host/db``) or an existing :class:`AsyncEngine`, which the
        store uses but never disposes.
    :param prefix: the prefix of every table and index name.
    :param analytics: keep the analytics rollups in each batch's transaction (default);
        ``False`` skips them (the ``an_*`` tables stay as they are; ``sessiontrack
        analytics rebuild`` builds them from the log later). Settable as an attribute.
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine,
        *,
        prefix: str = DEFAULT_PREFIX,
        analytics: bool = True,
    ) -> None:
        self.tables = make_tables(prefix)
        self.analytics = analytics
        self._own_engine = not isinstance(url_or_engine, AsyncEngine)
        self._url = normalize_url(url_or_engine) if isinstance(url_or_engine, str) else None
        self._engine: AsyncEngine | None = None if self._own_engine else url_or_engine  # type: ignore[assignment]
        self._labels: dict[tuple[str, str | None], dict[str, str]] = {}
        self._bulk_writer: BulkWriter | None = None
        self._path_keys: dict[tuple[str, str], str] = {}  # Rollup's memo, pure: kept
        # (chatbot_id, path_key) of the an_paths rows committed: a batch inserts only the
        # others. A rebuild deletes the rows: it bumps REBUILDS, and the set is emptied.
        self._paths_written: set[tuple[str, str]] = set()
        self._rebuilds: int | None = None

    def __repr__(self) -> str:
        url = self._url or (self._engine.url if self._engine else "?")
        return f"{type(self).__name__}({mask_url(url)!r})"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    @property
    def _bulk(self) -> BulkWriter:
        if self._bulk_writer is None:
            self._bulk_writer = bulk_writer(self.tables, self.engine.dialect)
        return self._bulk_writer

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def notify_channel(self) -> str:
        return f"{self.tables.prefix}events"

    async def open(self, *, migrate: bool | None = None) -> None:
        """Connect and make sure the tables are current.

        ``migrate=None`` upgrades SQLite automatically and only checks PostgreSQL, whose
        schema changes belong to a deliberate ``sessiontrack migrate``.
        """
        if self._engine is None:
            assert self._url is not None
            url = sa.make_url(self._url)
            kwargs: dict[str, Any] = {}
            if url.get_backend_name() == "postgresql":
                kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
                kwargs["connect_args"] = {"server_settings": POSTGRESQL_SETTINGS}
            self._engine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
            if self._own_engine:
                self.readers = sqlite_readers(self._engine.url)
        else:
            self.read_engine = self._engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._own_engine and self.quick_readers is None:
                self.quick_readers = await postgresql_quick_readers(
                    self._engine, POSTGRESQL_SETTINGS
                )
        if migrate is None:
            migrate = self.dialect == "sqlite"
        if migrate:
            async with _migrate.one_at_a_time(), self.engine.begin() as conn:
                await conn.run_sync(_migrate.upgrade_to_head, self.tables.prefix)
            return
        async with self.engine.begin() as conn:
            current = await conn.run_sync(_migrate.current, self.tables.prefix)
            if current != _migrate.HEAD:
                raise SchemaOutdated(current, _migrate.HEAD)

    async def close(self) -> None:
        self.read_engine = None
        if self.quick_readers is not None:
            pool, self.quick_readers = self.quick_readers, None
            await pool.close()
        if self.readers is not None:
            self.readers.dispose()
            self.readers = None
        if self._engine is not None and self._own_engine:
            await self._engine.dispose()
            self._engine = None

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    async def watch(
        self,
        wake: Callable[[int | None], None],
        *,
        poll_interval: float,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        await _watch.watch(
            self,
            wake,
            poll_interval=poll_interval,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )

    # --- writes -------------------------------------------------------------------------

    async def apply(
        self,
        reports: Sequence[Report],
        *,
        idle_timeout_s: int | None,
        attempt: BatchAttempt | None = None,
        completion_grace_s: float = 0.0,
    ) -> FoldResult:
        """Fold ``reports`` into the log and the projection in one transaction.

        The first statement takes the write lock (a row lock on PostgreSQL, the database
        lock on SQLite), so batches from several processes commit one after another and
        sequence numbers grow in commit order: a reader that has seen seq N never later
        finds a smaller one appear. With ``attempt``, the ``state`` row
        ``batch:<writer id>`` takes the attempt's number in the same transaction. With
        :attr:`analytics`, the batch's events update the rollups in it too.
        """
        t = self.tables
        async with self.engine.begin() as conn:
            last_seq = await self._lock_log(conn)
            await self._lookup_plans(conn, True)
            ids = {sid for _, sid, _, _ in reports if sid}  # flows and edges have no session
            sessions = await self._bulk.load_sessions(conn, list(ids))
            tags_before = snapshot(sessions)  # the tags' inputs before the fold (_tags.py)
            chatbot_ids = {d["chatbot_id"] for k, _, _, d in reports if k in _CHATBOT_KINDS}
            chatbots = await self._load_chatbots(conn, chatbot_ids)
            mids = [
                d["message_id"] for k, _, _, d in reports if k == "message" and d.get("message_id")
            ]
            known = await self._bulk.known_messages(conn, mids)
            await self._prefetch_labels(conn, sessions, chatbots)
            rollup = None
            if self.analytics:
                traces = await self._bulk.load_traces(conn, list(sessions))
                rollup = Rollup(traces, self._path_keys)
            folder = Folder(
                sessions,
                chatbots,
                known,
                self._node_labels,
                last_seq,
                idle_timeout_s,
                completion_grace_s=completion_grace_s,
            )
            await self._lookup_plans(conn, False)
            res = await self._fold_and_append(conn, folder, reports, rollup)
            await self._write(conn, res, rollup)
            written = [*res.new_sessions, *res.changed_sessions]
            await write_tags(conn, t, self._bulk, tags_before, written, res.events)
            if res.events:
                # the search indexes see the batch's messages and contacts in its transaction
                contacts = Contacts(
                    {st.name_key for st in res.new_sessions if st.name_key is not None},
                    {st.customer_phone for st in res.new_sessions if st.customer_phone is not None},
                )
                await self.search_sql.index_batch(
                    conn, contacts, res.events[0].seq - 1, res.last_seq
                )
                await conn.execute(
                    t.state.update().where(t.state.c.key == "last_seq").values(value=res.last_seq)
                )
                if self.dialect == "postgresql":
                    await conn.execute(
                        sa.select(sa.func.pg_notify(self.notify_channel, str(res.last_seq)))
                    )
            if attempt is not None:
                key = _attempt_key(attempt.writer_id)
                await conn.execute(self._mark, {"key": key, "value": attempt.number})
                attempt.result = res  # from here on, a failure may follow the commit
        self._after_commit(res)
        if rollup is not None and not rollup.failed:
            if len(self._paths_written) + len(rollup.paths) > _PATHS_WRITTEN_MAX:
                self._paths_written.clear()  # bounded: a key forgotten is inserted again
            self._paths_written.update(rollup.paths)
        return res

    @functools.cached_property
    def _mark(self) -> sa.Insert:
        """The one statement a batch adds for :meth:`attempt_committed`, built once."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(self.tables.state).values(
            key=sa.bindparam("key"), value=sa.bindparam("value")
        )
        return stmt.on_conflict_do_update(
            index_elements=["key"], set_={"value": stmt.excluded.value}
        )

    def _after_commit(self, res: FoldResult) -> None:
        # only now may the batch's flow graphs label later batches' nodes
        self._labels.update(res.flow_labels)

    async def attempt_committed(self, attempt: BatchAttempt) -> bool:
        st = self.tables.state
        async with self.engine.begin() as conn:
            # the lock orders this read after the attempt's own transaction, if it is
            # still open in the database, so the answer cannot change afterwards
            await self._lock_log(conn)
            number = await conn.scalar(
                sa.select(st.c.value).where(st.c.key == _attempt_key(attempt.writer_id))
            )
        res = attempt.result
        if res is None or number != attempt.number:
            return False
        self._after_commit(res)
        return True

    async def forget_writer(self, writer_id: str) -> None:
        st = self.tables.state
        async with self.engine.begin() as conn:
            await conn.execute(st.delete().where(st.c.key == _attempt_key(writer_id)))

    async def _fold_and_append(
        self,
        conn: AsyncConnection,
        folder: Folder,
        reports: Sequence[Report],
        rollup: Rollup | None = None,
    ) -> FoldResult:
        """Fold ``reports`` a chunk at a time, appending each chunk's events to the log
        while the next chunk is folded (and, with ``rollup``, the chunk's events folded
        into the analytics rollups): the database's work on the log (SQLite's thread,
        PostgreSQL's server) overlaps the fold's Python work instead of following it."""
        res = folder.result
        pending: asyncio.Future[None] | None = None
        sent = 0
        try:
            for i in range(0, len(reports), _FOLD_CHUNK):
                folder.fold(reports[i : i + _FOLD_CHUNK])
                if pending is not None:
                    await pending
                    pending = None
                if len(res.events) > sent:
                    chunk = res.events[sent:]
                    pending = asyncio.ensure_future(self._bulk.events(conn, chunk))
                    sent = len(res.events)
                    await asyncio.sleep(0)  # the statement reaches the driver, then fold on
                    # aiosqlite's thread needs the GIL to start the statement, and would
                    # wait for it until the fold's switch interval (5 ms) ran out: yield it
                    # once here; SQLite releases it again for the statement's whole step
                    time.sleep(0)  # noqa: ASYNC251 (zero seconds: a GIL hand-over, no wait)
                    if rollup is not None and not rollup.failed:
                        try:
                            rollup.add(chunk)
                        except Exception:
                            _rollup_failed(rollup)
            if pending is not None:
                await pending
                pending = None
        finally:
            if pending is not None:  # the fold failed: the statement ends before the rollback
                await asyncio.wait([pending])
        return res

    async def _lookup_plans(self, conn: AsyncConnection, on: bool) -> None:
        """Make the batch's lookups (of many ids at once) use their indexes, always.

        Every lookup of a batch is by primary key or by the message-id index. PostgreSQL
        plans them from table statistics, which a new or fast-growing table lacks until
        autovacuum analyses it (not within the first minute, and a minute of ingestion
        is millions of rows): without statistics it chose to scan the whole log for the
        message-id dedupe, a cost that grows with the log. asyncpg also prepares
        statements, and a generic plan chosen while a table is small keeps scanning it
        later; custom plans avoid that. The writes go back to the defaults.
        """
        if self.dialect == "postgresql":
            plans, seqscan = ("force_custom_plan", "off") if on else ("auto", "on")
            await conn.exec_driver_sql(
                f"SELECT set_config('plan_cache_mode', '{plans}', true), "
                f"set_config('enable_seqscan', '{seqscan}', true)"
            )

    async def _lock_log(self, conn: AsyncConnection) -> int:
        st = self.tables.state
        await conn.execute(st.update().where(st.c.key == "last_seq").values(value=st.c.value))
        rows = await conn.execute(
            sa.select(st.c.key, st.c.value).where(st.c.key.in_(("last_seq", REBUILDS)))
        )
        values: dict[str, int] = {key: value for key, value in rows}
        rebuilds = values.get(REBUILDS)
        if rebuilds != self._rebuilds:  # the path rows were rebuilt: insert them again
            self._paths_written.clear()
            self._rebuilds = rebuilds
        return int(values.get("last_seq") or 0)

    async def _load_chatbots(self, conn: AsyncConnection, ids: set[str]) -> dict[str, Chatbot]:
        if not ids:
            return {}
        c = self.tables.chatbots
        rows = await conn.execute(
            sa.select(c.c.chatbot_id, c.c.name, c.c.current_version).where(c.c.chatbot_id.in_(ids))
        )
        return {r.chatbot_id: Chatbot(r.name, r.current_version) for r in rows}

    async def _prefetch_labels(
        self,
        conn: AsyncConnection,
        sessions: dict[str, SessionState],
        chatbots: dict[str, Chatbot],
    ) -> None:
        # Flows registered in this batch label its later nodes through the fold itself
        # (FoldResult.flow_labels); what is read here is committed, so it may be cached.
        wanted = {(s.chatbot_id, s.flow_version) for s in sessions.values()}
        wanted |= {(cid, b.version) for cid, b in chatbots.items()}
        missing = [k for k in wanted if k not in self._labels and k[1] is not None]
        f = self.tables.flows
        for cid, version in missing:
            flow = await conn.scalar(
                sa.select(f.c.flow).where(f.c.chatbot_id == cid, f.c.version == version)
            )
            self._labels[(cid, version)] = flow_labels(flow or {})

    def _node_labels(self, chatbot_id: str, version: str | None) -> dict[str, str]:
        return self._labels.get((chatbot_id, version), {})

    async def _write(
        self, conn: AsyncConnection, res: FoldResult, rollup: Rollup | None = None
    ) -> None:
        t = self.tables
        for flow in res.flows:
            graph = flow["flow"]
            old = await conn.scalar(
                sa.select(t.flows.c.flow).where(
                    t.flows.c.chatbot_id == flow["chatbot_id"], t.flows.c.version == flow["version"]
                )
            )
            if old:  # registered again (an engine restarting): keep the edges it observed
                graph = _graph.with_observed(graph, old)
                if graph is not flow["flow"]:
                    key = (flow["chatbot_id"], flow["version"])
                    res.flow_labels[key] = flow_labels(graph)
            await self._upsert(
                conn,
                t.flows,
                {
                    "chatbot_id": flow["chatbot_id"],
                    "version": flow["version"],
                    "flow": graph,
                    "registered_at": flow["registered_at"],
                },
                ["chatbot_id", "version"],
                ["flow"],  # the same version registered again: its graph grew or changed
            )
            await self._upsert(
                conn,
                t.chatbots,
                {
                    "chatbot_id": flow["chatbot_id"],
                    "name": flow["name"],
                    "current_version": flow["version"],
                    "updated_at": flow["registered_at"],
                },
                ["chatbot_id"],
                ["name", "current_version", "updated_at"],
            )
        if res.edges:
            await self._add_edges(conn, res)
        pending = None
        if res.new_sessions or res.changed_sessions:
            rows = [*res.new_sessions, *res.changed_sessions]
            pending = asyncio.ensure_future(self._bulk.sessions(conn, rows))
        try:
            statements = []
            if rollup is not None and not rollup.failed and res.events:
                if pending is not None:  # the statement runs while the rollups' rows are made
                    await asyncio.sleep(0)
                    time.sleep(0)  # noqa: ASYNC251 (a GIL hand-over, as in _fold_and_append)
                try:
                    statements = self._bulk.rollup_statements(rollup, self._paths_written)
                except Exception:
                    _rollup_failed(rollup)
        finally:
            if pending is not None:
                await pending
        deltas = [(cid, status, n) for (cid, status), n in res.count_deltas.items() if n]
        if deltas:
            await self._bulk.add_counts(conn, deltas)
        if statements:
            assert rollup is not None
            await self._run_rollups(conn, rollup, statements)

    async def _run_rollups(
        self, conn: AsyncConnection, rollup: Rollup, statements: list[tuple[str, Any]]
    ) -> None:
        """Run the rollups' statements in a SAVEPOINT: a row the database refuses costs the
        batch its rollups (logged, as a failed fold is), not its events; a transient error
        (the connection lost) still fails the batch, to be retried."""
        savepoint = await conn.begin_nested()
        try:
            await self._bulk.run(conn, statements)
        except Exception as exc:
            if is_transient(exc):
                raise
            await savepoint.rollback()
            _rollup_failed(rollup)
        else:
            await savepoint.commit()

    async def _add_edges(self, conn: AsyncConnection, res: FoldResult) -> None:
        """Add the batch's observed edges to the stored graphs, in place: read, union,
        write, under the batch's write lock (so processes adding edges to one graph take
        turns). The graphs' labels are cached once the batch has committed."""
        f, c = self.tables.flows, self.tables.chatbots
        current: dict[str, str | None] = {}
        graphs: dict[tuple[str, str], dict[str, Any] | None] = {}
        changed: set[tuple[str, str]] = set()
        for edge in res.edges:
            cid, version = edge["chatbot_id"], edge["version"]
            if version is None:
                if cid not in current:
                    current[cid] = await conn.scalar(
                        sa.select(c.c.current_version).where(c.c.chatbot_id == cid)
                    )
                version = current[cid]
            if version is None:
                log.warning("sessiontrack: edge of chatbot %r dropped: no flow registered", cid)
                res.orphans += 1  # counted with the reports that have nothing to join
                continue
            key = (cid, version)
            if key not in graphs:
                graphs[key] = await conn.scalar(
                    sa.select(f.c.flow).where(f.c.chatbot_id == cid, f.c.version == version)
                )
                if graphs[key] is None:
                    log.warning(
                        "sessiontrack: edge of chatbot %r dropped: no flow version %r", cid, version
                    )
            graph = graphs[key]
            if graph is None:
                res.orphans += 1
            if graph is not None and _graph.add_edge(graph, edge):
                changed.add(key)
        for cid, version in changed:
            graph = graphs[(cid, version)]
            await conn.execute(
                f.update().where(f.c.chatbot_id == cid, f.c.version == version).values(flow=graph)
            )
            res.flow_labels[(cid, version)] = flow_labels(graph or {})

    async def _upsert(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        row: dict[str, Any],
        keys: list[str],
        update: list[str],
    ) -> None:
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(table).values(row)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: stmt.excluded[c] for c in update}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        await conn.execute(stmt)

    async def active_sessions(
        self, chatbot_id: str, conversation_id: str, *, limit: int = 10
    ) -> list[str]:
        s = self.tables.sessions
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(s.c.id)
                .where(
                    s.c.conversation_id == conversation_id,
                    s.c.chatbot_id == chatbot_id,
                    s.c.completed_at.is_(None),
                )
                .order_by(s.c.started_at.desc(), s.c.id.desc())
                .limit(limit)
            )
            return [str(r.id) for r in rows]

    # --- maintenance --------------------------------------------------------------------

    async def overdue_sessions(self, now: datetime, limit: int = 1000) -> list[str]:
        """Ids of active sessions whose ``expires_at`` has passed."""
        s = self.tables.sessions
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(s.c.id)
                .where(s.c.completed_at.is_(None), s.c.expires_at < now)
                .order_by(s.c.expires_at)
                .limit(limit)
            )
            return [r.id for r in rows]

    async def purge(
        self,
        cutoff: datetime,
        *,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        chatbot_ids: Collection[str] | None = None,
        exclude_chatbot_ids: Collection[str] = (),
        ids: Collection[str] | None = None,
    ) -> int:
        """Delete terminal sessions completed before ``cutoff`` with their events, search
        index entries and analytics traces (the analytics rollups keep counting them).

        Works in batches of ``batch_size`` sessions, one transaction each, so a long purge
        never holds the write lock for long; ``progress`` gets the running total.
        ``chatbot_ids`` keeps to those chatbots' sessions, ``exclude_chatbot_ids`` leaves
        those chatbots' alone, and ``ids`` keeps to these sessions (an archive purges
        exactly what it wrote; ids no longer stored are passed over).
        """
        if ids is not None and len(ids) > batch_size:
            return await self._purge_ids(cutoff, list(ids), batch_size, progress)
        t = self.tables
        s, e = t.sessions, t.events
        which = [s.c.completed_at.is_not(None), s.c.completed_at < cutoff]
        if chatbot_ids is not None:
            which.append(s.c.chatbot_id.in_(sorted(chatbot_ids)))
        if exclude_chatbot_ids:
            which.append(s.c.chatbot_id.not_in(sorted(exclude_chatbot_ids)))
        if ids is not None:
            which.append(s.c.id.in_(sorted(ids)))
        total = 0
        while True:
            async with self.engine.begin() as conn:
                await self._lock_log(conn)
                rows = (
                    await conn.execute(
                        sa.select(s.c.id, s.c.chatbot_id, s.c.status)
                        .where(*which)
                        .limit(batch_size)
                    )
                ).all()
                if not rows:
                    return total
                ids = [r.id for r in rows]
                contacts = await self.search_sql.purge(conn, ids)  # before the rows go
                await conn.execute(e.delete().where(e.c.session_id.in_(ids)))
                await conn.execute(t.tags.delete().where(t.tags.c.session_id.in_(ids)))
                await conn.execute(s.delete().where(s.c.id.in_(ids)))
                await self.search_sql.prune_contacts(conn, contacts)
                # the rollups keep counting them: they are figures of the past
                tr = t.an_traces
                await conn.execute(tr.delete().where(tr.c.session_id.in_(ids)))
                deltas: dict[tuple[str, str], int] = {}
                for r in rows:
                    deltas[(r.chatbot_id, r.status)] = deltas.get((r.chatbot_id, r.status), 0) - 1
                await self._bulk.add_counts(conn, [(*k, n) for k, n in deltas.items()])
            total += len(rows)
            if progress is not None:
                progress(total)

    async def _purge_ids(
        self,
        cutoff: datetime,
        ids: list[str],
        batch_size: int,
        progress: Callable[[int], None] | None,
    ) -> int:
        """:meth:`purge` of many ids, ``batch_size`` at a time (one bound list each)."""
        total = 0
        for at in range(0, len(ids), batch_size):
            total += await self.purge(cutoff, batch_size=batch_size, ids=ids[at : at + batch_size])
            if progress is not None:
                progress(total)
        return total

    async def events_after(
        self,
        after: int,
        *,
        limit: int = 1000,
        session_id: str | None = None,
        until: int | None = None,
    ) -> list[StoredEvent]:
        """Committed events with ``seq > after`` (and ``<= until``), oldest first."""
        e = self.tables.events
        q = sa.select(e).where(e.c.seq > after).order_by(e.c.seq).limit(limit)
        if session_id is not None:
            q = q.where(e.c.session_id == session_id)
        if until is not None:
            q = q.where(e.c.seq <= until)
        # run to its end when cancelled (the consumers and the watcher poll it): _shield.py
        async with uncancelled(self.engine.connect()) as conn:
            rows = await conn.execute(q)
            events = [
                StoredEvent(
                    seq=r.seq,
                    kind=r.kind,
                    session_id=r.session_id,
                    chatbot_id=r.chatbot_id,
                    at=r.at,
                    flow_version=r.flow_version,
                    data=r.data,
                )
                for r in rows
            ]
        return events

    async def last_seq(self) -> int:
        st = self.tables.state
        # run to its end when cancelled (the watcher polls it): _shield.py
        async with uncancelled(self.engine.connect()) as conn:
            value = await conn.scalar(sa.select(st.c.value).where(st.c.key == "last_seq"))
        return int(value or 0)
