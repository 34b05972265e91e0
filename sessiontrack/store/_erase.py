"""Erasure on request and the audit table: the store's half of ``tracker.erase``.

An erasure deletes every session of one person (by phone, conversation id or session id,
within the principal's chatbots) in transactions of ``batch_size`` sessions, each under
the log's write lock as a writer's batch: their events (messages included), tags, search
index entries, analytics traces and status counts; the analytics rollups are recomputed
without them (each session's contribution is folded again from its events, alone, and
subtracted: exact for counts and sketch bins; rows left at zero are deleted; unlike a
purge, whose rollups keep counting). An audit row is written first (who, when, the kind
of key and its HMAC-SHA256, never the key) and completed with the counts at the end.

What makes the deleted bytes unreadable afterwards (``scrub``, docs/privacy.md):

- SQLite: ``PRAGMA secure_delete`` on the erasing connection; FTS5's ``'optimize'`` (its
  contentless tables keep a deleted message's tokens in old segments until they merge);
  ``VACUUM``, since older copies of a row (a session row rewritten batch after batch,
  segments merged by FTS5) can sit in free space no delete overwrote; then a
  ``wal_checkpoint(TRUNCATE)`` so the WAL keeps no old frames.
- PostgreSQL: ``VACUUM (FULL, ANALYZE)`` of the tables that held the person's rows: a
  plain VACUUM leaves tuple bytes in compacted heap pages, and a GIN index never drops
  a key whose posting list emptied. ANALYZE renews the sampled values in pg_statistic.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from abc import abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa

from ..analytics._rollup import Rollup
from ..events import MESSAGE, StoredEvent
from ..models import AuditRecord
from ._part import StorePart

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ._bulk import BulkWriter

log = logging.getLogger(__name__)
KEY_KINDS = ("phone", "conversation_id", "session_id")
"""What an erasure can be keyed by."""
COUNT_FIELDS = ("sessions", "events", "messages", "tags", "analytics_traces")
_ZERO = 1e-9  # a rollup sum this close to zero after the subtraction held only theirs
_REWRITES = 6  # VACUUM FULL of a table, at most (waiting 0.2 s, 0.4 s, ... between)
_KEPT = re.compile(r"found \d+ removable, (\d+) nonremovable row versions")
_HORIZON_WAIT = 30.0
"""Seconds a scrub waits for older transactions (PostgreSQL) or readers (SQLite's WAL)."""


def key_hash(key: bytes, kind: str, value: str) -> str:
    """The audit's hash of an erased key: HMAC-SHA256 (hex) of ``kind``, NUL, ``value``."""
    return hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()


class ErasureQueries(StorePart):
    """``erase``, ``audit_records``, ``record_reads`` and ``audit_hash`` (mixed into the
    SQLAlchemy store)."""

    @property
    @abstractmethod
    def _bulk(self) -> BulkWriter:
        """The store's bulk writer."""

    @abstractmethod
    async def _lock_log(self, conn: AsyncConnection) -> int:
        """Take the log's write lock (the store's, as every batch takes it)."""

    async def audit_hash(self, kind: str, value: str, key: bytes | None = None) -> str:
        """The hash an erasure of ``value`` by ``kind`` records, with ``key`` or else
        the database's own audit key."""
        if key is None:
            k = self.tables.audit_key
            async with self.engine.connect() as conn:
                key = await conn.scalar(sa.select(k.c.key).where(k.c.id == 1))
            if key is None:
                raise RuntimeError("the audit key is missing: run sessiontrack migrate")
        return key_hash(bytes(key), kind, value)

    def _selector(self, kind: str, value: str, chatbot_ids: frozenset[str] | None) -> Any:
        s = self.tables.sessions
        if kind == "phone":
            # the phone as the contact gave it, or as the conversation's key (a channel
            # keyed by phone number: WhatsApp, SMS)
            cond = sa.or_(s.c.customer_phone == value, s.c.conversation_id == value)
        elif kind == "conversation_id":
            cond = s.c.conversation_id == value
        else:
            cond = s.c.id == value
        if chatbot_ids is not None:
            cond = sa.and_(cond, s.c.chatbot_id.in_(sorted(chatbot_ids)))
        return cond

    async def erase(
        self,
        kind: str,
        value: str,
        *,
        chatbot_ids: frozenset[str] | None = None,
        principal: str | None = None,
        audit_key: bytes | None = None,
        batch_size: int = 500,
        scrub: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Delete every trace of the sessions ``kind`` = ``value`` selects (see the
        module); returns the counts (:data:`COUNT_FIELDS`), ``audit_id`` and ``scrubbed``."""
        if kind not in KEY_KINDS:
            raise ValueError(f"kind must be one of {KEY_KINDS}, got {kind!r}")
        digest = await self.audit_hash(kind, value, audit_key)
        a = self.tables.audit
        async with self.engine.begin() as conn:
            audit_id = (
                await conn.execute(
                    a.insert()
                    .values(
                        at=datetime.now(UTC),
                        action="erase",
                        principal=principal,
                        key_kind=kind,
                        key_hash=digest,
                    )
                    .returning(a.c.id)
                )
            ).scalar_one()
        totals = dict.fromkeys(COUNT_FIELDS, 0)
        where = self._selector(kind, value, chatbot_ids)
        scrubbed = False
        async with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                await conn.exec_driver_sql("PRAGMA secure_delete=ON")
                await conn.commit()
            try:
                while await self._erase_batch(conn, where, batch_size, totals):
                    if progress is not None:
                        progress(totals["sessions"])
                if scrub and self.dialect == "sqlite":
                    scrubbed = await self._scrub_sqlite(conn)
            finally:
                if self.dialect == "sqlite":
                    await conn.rollback()
                    await conn.exec_driver_sql("PRAGMA secure_delete=OFF")
                    await conn.commit()
        if scrub and self.dialect == "postgresql":
            scrubbed = await self._scrub_postgresql()
        async with self.engine.begin() as conn:
            await conn.execute(a.update().where(a.c.id == audit_id).values(counts=totals))
        log.info("sessiontrack: erasure %d (%s) removed %s", audit_id, kind, totals)
        return {**totals, "audit_id": int(audit_id), "scrubbed": scrubbed}

    async def _erase_batch(
        self, conn: AsyncConnection, where: Any, batch_size: int, totals: dict[str, int]
    ) -> bool:
        """One transaction: up to ``batch_size`` sessions and all they left; ``False``
        once none is left."""
        t = self.tables
        s, e = t.sessions, t.events
        async with conn.begin():
            await self._lock_log(conn)
            rows = (
                await conn.execute(
                    sa.select(s.c.id, s.c.chatbot_id, s.c.status).where(where).limit(batch_size)
                )
            ).all()
            if not rows:
                return False
            ids = [r.id for r in rows]
            totals["analytics_traces"] += await self._take_out_of_rollups(conn, ids)
            n_events, n_messages = (
                await conn.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.coalesce(
                            sa.func.sum(sa.case((e.c.kind == MESSAGE, 1), else_=0)), 0
                        ),
                    ).where(e.c.session_id.in_(ids))
                )
            ).one()
            search = self.search_sql  # type: ignore[attr-defined]
            contacts = await search.purge(conn, ids)  # before the rows go
            await conn.execute(e.delete().where(e.c.session_id.in_(ids)))
            tags = await conn.execute(t.tags.delete().where(t.tags.c.session_id.in_(ids)))
            await conn.execute(s.delete().where(s.c.id.in_(ids)))
            await search.prune_contacts(conn, contacts)  # the values no other session holds
            tr = t.an_traces
            await conn.execute(tr.delete().where(tr.c.session_id.in_(ids)))
            deltas: dict[tuple[str, str], int] = {}
            for r in rows:
                deltas[(r.chatbot_id, r.status)] = deltas.get((r.chatbot_id, r.status), 0) - 1
            await self._bulk.add_counts(conn, [(*k, n) for k, n in deltas.items()])
        totals["sessions"] += len(rows)
        totals["events"] += int(n_events)
        totals["messages"] += int(n_messages)
        totals["tags"] += max(tags.rowcount, 0)
        return True

    async def _take_out_of_rollups(self, conn: AsyncConnection, ids: list[str]) -> int:
        """Subtract these sessions' figures from the rollups: their events folded again,
        alone, give what they added. Only sessions with a trace were counted (the others
        started while analytics were off, and a rebuild has not run since)."""
        traces = await self._bulk.load_traces(conn, ids)
        if not traces:
            return 0
        e = self.tables.events
        rows = await conn.execute(
            sa.select(e).where(e.c.session_id.in_(sorted(traces))).order_by(e.c.seq)
        )
        rollup = Rollup({})
        rollup.add(
            StoredEvent(
                seq=r.seq,
                kind=r.kind,
                session_id=str(r.session_id),
                chatbot_id=r.chatbot_id,
                at=r.at,
                flow_version=r.flow_version,
                data=r.data,
            )
            for r in rows
        )
        counts = [(*row[:-1], -row[-1]) for row in rollup.count_rows()]
        bins = [(*row[:-1], -row[-1]) for row in rollup.bin_rows()]
        bulk: Any = self._bulk
        statements = []
        if counts:
            statements.append((bulk._an_counts_sql, bulk._params(counts)))
        if bins:
            statements.append((bulk._an_bins_sql, bulk._params(bins)))
        await bulk.run(conn, statements)
        await self._drop_zero_rows(conn, counts, bins)
        return len(traces)

    async def _drop_zero_rows(
        self, conn: AsyncConnection, counts: list[tuple[Any, ...]], bins: list[tuple[Any, ...]]
    ) -> None:
        """Delete the rollup rows the subtraction left at zero: what only the erased
        sessions had (a reason they gave, a quarter-hour only they started in)."""
        names = ("chatbot_id", "metric", "grain", "bucket", "version", "dim")
        t = self.tables
        for table, rows, extra, test in (
            (t.an_counts, counts, (), sa.func.abs(t.an_counts.c.value) < _ZERO),
            (t.an_bins, bins, ("bin",), t.an_bins.c.n == 0),
        ):
            if not rows:
                continue
            keys = (*names, *extra)
            cond = [table.c[k] == sa.bindparam(f"k_{k}") for k in keys]
            params = [{f"k_{k}": v for k, v in zip(keys, row, strict=False)} for row in rows]
            await conn.execute(table.delete().where(*cond, test), params)

    async def _scrub_sqlite(self, conn: AsyncConnection) -> bool:
        """Merge the FTS5 indexes, rewrite the file, truncate the WAL; ``False`` if the
        WAL could not be truncated (a reader kept an older snapshot open throughout)."""
        sql = self.search_sql  # type: ignore[attr-defined]
        async with conn.begin():
            await self._lock_log(conn)
            for table in (sql.message_fts, sql.contact_fts):
                await conn.exec_driver_sql(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
        await conn.exec_driver_sql("VACUUM")
        await conn.commit()
        with anyio.move_on_after(_HORIZON_WAIT):
            while True:
                row = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).one()
                await conn.commit()
                if not row[0]:  # not busy
                    return True
                await anyio.sleep(0.1)
        log.warning(
            "sessiontrack: erasure: the WAL could not be truncated within %s s (a reader "
            "kept a snapshot open); its old frames go at the next checkpoint",
            _HORIZON_WAIT,
        )
        return False

    async def _scrub_postgresql(self) -> bool:
        """Rewrite the tables that held the erased rows (with their indexes and TOAST),
        so no page keeps a dead tuple or an index key of theirs; ``False`` if a snapshot
        older than the erasure was still held, which made VACUUM keep those tuples (run
        ``VACUUM FULL`` on them again once it has ended)."""
        t = self.tables
        q = self.engine.dialect.identifier_preparer.quote
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            # a transaction id newer than every deletion of the erasure
            after = await auto.scalar(sa.text("SELECT CAST(pg_current_xact_id() AS text)"))
            older = await self._older_snapshots(auto, str(after))
            if older:
                log.warning(
                    "sessiontrack: erasure: %d transactions of this database still held "
                    "snapshots older than the erasure after %s s; VACUUM FULL keeps the row "
                    "versions they may see: run it again on the sessiontrack tables later",
                    older,
                    _HORIZON_WAIT,
                )
            tables = (t.sessions, t.events, t.tags, t.an_traces, t.an_counts, t.an_bins, t.contacts)
            for table in tables:
                older += await self._rewrite(auto, q(table.name))
        return not older

    async def _rewrite(self, auto: AsyncConnection, name: str) -> int:
        """``VACUUM (FULL, VERBOSE)`` one table until it kept no dead row version, a few
        times at most, then ``ANALYZE`` it (pg_statistic's sampled values); returns 1
        if dead versions were still kept. A snapshot no view showed (a backend starting
        up counts for every database's horizon) can make VACUUM FULL copy them: its
        report's "nonremovable row versions" then exceed the table's rows."""
        raw = await auto.get_raw_connection()
        driver: Any = raw.driver_connection
        reports: list[str] = []

        def note(_conn: Any, message: Any) -> None:
            reports.append(str(message))

        driver.add_log_listener(note)
        try:
            for attempt in range(_REWRITES):
                reports.clear()
                await auto.exec_driver_sql(f"VACUUM (FULL, VERBOSE) {name}")
                rows = int(await auto.scalar(sa.text(f"SELECT count(*) FROM {name}")) or 0)
                found = [int(m.group(1)) for r in reports for m in [_KEPT.search(r)] if m]
                if not found or found[0] <= rows:
                    break
                log.info("sessiontrack: erasure: VACUUM FULL %s kept dead rows; again", name)
                await anyio.sleep(0.2 * 2**attempt)
            else:
                return 1
        finally:
            driver.remove_log_listener(note)
        await auto.exec_driver_sql(f"ANALYZE {name}")
        return 0

    async def _older_snapshots(self, conn: AsyncConnection, after: str) -> int:
        """Wait (``_HORIZON_WAIT`` at most) until no other session of the database, no
        replication slot and no prepared transaction holds a snapshot (or a transaction
        id) older than ``after``: VACUUM keeps what any of them may still see. Returns
        how many still did."""
        x = "age(CAST(CAST(:x AS text) AS xid))"
        sql = sa.text(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            f"AND pid <> pg_backend_pid() AND (age(backend_xmin) > {x} "
            f"OR age(backend_xid) > {x})) "
            f"+ (SELECT count(*) FROM pg_replication_slots WHERE age(xmin) > {x}) "
            "+ (SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database() "
            f"AND age(transaction) > {x})"
        )
        older = 0
        with anyio.move_on_after(_HORIZON_WAIT):
            while True:
                older = int(await conn.scalar(sql, {"x": after}) or 0)
                if not older:
                    break
                await anyio.sleep(0.1)  # polled: PostgreSQL has no event for a snapshot's end
        return older

    # --- the audit ------------------------------------------------------------------

    async def record_reads(self, session_ids: list[str], principal: str | None, what: str) -> None:
        """One audit row per session read (``action='read'``), in one transaction."""
        if not session_ids:
            return
        now = datetime.now(UTC)
        rows = [
            {"at": now, "action": "read", "principal": principal, "session_id": s, "what": what}
            for s in session_ids
        ]
        async with self.engine.begin() as conn:
            await conn.execute(self.tables.audit.insert(), rows)

    async def audit_records(
        self,
        *,
        action: str | None = None,
        key_hash: str | None = None,
        session_id: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Audit rows, newest first (by id), filtered as asked."""
        a = self.tables.audit
        q = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        if action is not None:
            q = q.where(a.c.action == action)
        if key_hash is not None:
            q = q.where(a.c.key_hash == key_hash)
        if session_id is not None:
            q = q.where(a.c.session_id == session_id)
        if before is not None:
            q = q.where(a.c.id < before)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            AuditRecord(
                id=int(r.id),
                at=r.at,
                action=r.action,
                principal=r.principal,
                key_kind=r.key_kind,
                key_hash=r.key_hash,
                counts=r.counts,
                session_id=None if r.session_id is None else str(r.session_id),
                what=r.what,
            )
            for r in rows
        ]
