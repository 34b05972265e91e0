"""Export and import: sessions read in keyset batches, and whole sessions written back.

Each batch is one short read on a connection of its own, so an export of any size never
holds a transaction (or SQLite's WAL) open, and its memory is one batch's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..events import LLM_CALL, MESSAGE, NODE_EXECUTED, TOOL_CALL
from ..models import Message, SessionDetail
from ._fold import name_key
from ._reads import ReadQueries, SessionFilter, _Activity
from ._tables import UTCDateTime
from ._tags import session_tags

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

_DETAIL_KINDS = (NODE_EXECUTED, MESSAGE, LLM_CALL, TOOL_CALL)
_FLOW_CACHE = 256
"""Flow graphs kept between batches (one per chatbot version seen); cleared when full."""


SummaryRow = tuple[Any, ...]
"""A list item as a tuple: the fields of :class:`~sessiontrack.models.SessionSummary`, in
their order, as typed there (times aware, in UTC)."""


class NotEmpty(Exception):
    """The database an import writes into already holds sessions or events."""


@dataclass(frozen=True, slots=True)
class FullSession:
    """A session's whole detail, and the sequence number of each node execution (the
    detail shows node executions without one, but their order among the calls is part of
    what the detail derives from the log)."""

    detail: SessionDetail
    node_seqs: list[int]


@dataclass(frozen=True, slots=True)
class ExportOrder:
    """The keyset order of an export: ``sort_by`` (a sessions column) then id."""

    sort_by: str = "started_at"
    descending: bool = True


class TransferQueries(ReadQueries):
    async def iter_summaries(
        self, f: SessionFilter, order: ExportOrder, *, batch_size: int = 1000
    ) -> AsyncIterator[list[SummaryRow]]:
        """Every session matching ``f`` as list items, in batches of ``batch_size``, in
        ``order``: tuples of the fields of ``SessionSummary`` in their order (a million
        dataclasses would cost more than the rest of a CSV export). Each batch is one
        keyset query, so a deep batch costs as the first; the next batch is read while the
        caller handles this one."""
        s = self.tables.sessions
        cols = self._summary_columns()
        times = [i for i, c in enumerate(cols) if isinstance(c.type, UTCDateTime)]
        sort_at = [c.name for c in cols].index(order.sort_by)
        raw = self.engine.dialect.name == "sqlite"
        # SQLite: the stored text, parsed in C below (SQLAlchemy's parser is Python code);
        # PostgreSQL: asyncpg's aware datetimes as they come, no decorator call per value
        as_read = sa.String() if raw else sa.DateTime(timezone=True)
        cols = [
            sa.type_coerce(c, as_read).label(c.name) if i in times else c
            for i, c in enumerate(cols)
        ]
        cost_at = [c.name for c in cols].index(s.c.cost.name)

        async def read(after: tuple[datetime, str] | None) -> list[SummaryRow]:
            q = self._batch(f, order, after, batch_size, columns=cols)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(q)).all()
            if not raw:  # double precision: cost is a float already
                return [tuple(r) for r in rows]
            out = []
            for r in rows:
                values = list(r)
                for i in times:  # naive UTC text: one C call with the offset appended
                    text = values[i]
                    if text is not None:
                        values[i] = datetime.fromisoformat(text + "+00:00")
                values[cost_at] = float(values[cost_at])  # SQLite may hold the default 0
                out.append(tuple(values))
            return out

        pending = asyncio.ensure_future(read(None))
        try:
            while True:
                batch = await pending
                if len(batch) == batch_size:
                    last = batch[-1]
                    pending = asyncio.ensure_future(read((last[sort_at], last[0])))
                if batch:
                    yield batch
                if len(batch) < batch_size:
                    return
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    async def iter_details(
        self, f: SessionFilter, order: ExportOrder, *, batch_size: int = 200
    ) -> AsyncIterator[list[FullSession]]:
        """Every session matching ``f`` with all its messages, node executions and calls,
        in batches, in ``order``: three queries a batch (sessions, their events, the flow
        graphs not seen yet)."""
        after: tuple[datetime, str] | None = None
        flows: dict[tuple[str, str | None], dict[str, Any] | None] = {}
        while True:
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(self._batch(f, order, after, batch_size, detail=True))
                ).all()
                if not rows:
                    return
                events = await self._events_of(conn, [r.id for r in rows])
                if len(flows) > _FLOW_CACHE:
                    flows.clear()
                await self._flows_of(conn, rows, flows)
            yield [self._full(r, events.get(r.id, []), flows) for r in rows]
            if len(rows) < batch_size:
                return
            last = rows[-1]
            after = (getattr(last, order.sort_by), last.id)

    def _batch(
        self,
        f: SessionFilter,
        order: ExportOrder,
        after: tuple[datetime, str] | None,
        limit: int,
        *,
        detail: bool = False,
        columns: list[Any] | None = None,
    ) -> Any:
        s = self.tables.sessions
        sort_col = s.c[order.sort_by]
        where = self._where(f)
        if after is not None:
            where.append(self._keyset(f, sort_col, after, order.descending))
        cols = columns or self._summary_columns()
        if detail:
            cols += [
                s.c.variables,
                s.c.metadata,
                s.c.flow_version,
                s.c.expires_at,
                s.c.completion_reason,
            ]
        keys = [sort_col, s.c.id]
        return (
            sa.select(*cols)
            .select_from(self._from())
            .where(*where)
            .order_by(*[k.desc() if order.descending else k.asc() for k in keys])
            .limit(limit)
        )

    async def _events_of(self, conn: AsyncConnection, ids: list[str]) -> dict[str, list[Any]]:
        e = self.tables.events
        rows = await conn.execute(
            sa.select(
                e.c.seq, e.c.session_id, e.c.kind, e.c.node_id, e.c.at, e.c.message_id, e.c.data
            )
            .where(e.c.session_id.in_(ids), e.c.kind.in_(_DETAIL_KINDS))
            .order_by(e.c.session_id, e.c.seq)
        )
        out: dict[str, list[Any]] = {}
        for r in rows:
            out.setdefault(r.session_id, []).append(r)
        return out

    async def _flows_of(
        self,
        conn: AsyncConnection,
        rows: Sequence[Any],
        flows: dict[tuple[str, str | None], dict[str, Any] | None],
    ) -> None:
        """Add the flow graph of each (chatbot, version) of ``rows`` missing from ``flows``;
        version ``None`` is the chatbot's current version, as a detail shows it."""
        fl, c = self.tables.flows, self.tables.chatbots
        missing = {(r.chatbot_id, r.flow_version) for r in rows} - flows.keys()
        for chatbot_id, version in sorted(missing, key=lambda k: (k[0], k[1] or "")):
            wanted = version
            if wanted is None:
                wanted = await conn.scalar(
                    sa.select(c.c.current_version).where(c.c.chatbot_id == chatbot_id)
                )
            flows[(chatbot_id, version)] = await conn.scalar(
                sa.select(fl.c.flow).where(fl.c.chatbot_id == chatbot_id, fl.c.version == wanted)
            )

    def _full(
        self,
        row: Any,
        events: list[Any],
        flows: dict[tuple[str, str | None], dict[str, Any] | None],
    ) -> FullSession:
        activity = _Activity(None)
        node_seqs: list[int] = []
        messages: list[Message] = []
        for e in events:
            if e.kind == MESSAGE:
                messages.append(
                    Message(
                        id=e.seq,
                        session_id=row.id,
                        conversation_id=row.conversation_id,
                        direction=e.data["direction"],
                        type=e.data.get("type", "text"),
                        text=e.data.get("text"),
                        payload=e.data.get("payload"),
                        node_id=e.node_id,
                        timestamp=e.at,
                        channel_message_id=e.message_id,
                    )
                )
                continue
            if e.kind == NODE_EXECUTED:
                node_seqs.append(e.seq)
            activity.add(e.seq, e.kind, e.node_id, e.at, e.data)
        values = row._asdict()
        values["cost"] = float(values["cost"])
        detail = SessionDetail(
            **values,
            node_history=[n.node_id for n in activity.executions],
            node_executions=activity.executions,
            messages=messages,
            flow_data=flows.get((row.chatbot_id, row.flow_version)) or {"nodes": [], "edges": []},
            node_totals=activity.node_totals(),
            llm_call_history=list(activity.llm_calls),
            tool_call_history=list(activity.tool_calls),
        )
        return FullSession(detail, node_seqs)

    # --- import ---------------------------------------------------------------------

    async def is_empty(self) -> bool:
        """Whether no session and no event is stored."""
        s, e = self.tables.sessions, self.tables.events
        async with self.engine.connect() as conn:
            has_session = await conn.scalar(sa.select(s.c.id).limit(1))
            has_event = await conn.scalar(sa.select(e.c.seq).limit(1))
        return has_session is None and has_event is None

    async def import_sessions(
        self, sessions: Sequence[FullSession], chatbots: Sequence[dict[str, Any]]
    ) -> None:
        """Write whole sessions in one transaction: their rows, the log events their details
        are read from (under their own sequence numbers), the status counters, and the
        ``chatbots`` rows (``chatbot_id, name, current_version, updated_at``, plus
        ``flows``: ``{version: graph}``) not stored yet.

        :raises NotEmpty: if a session or an event of the batch is stored already.
        """
        t = self.tables
        async with self.engine.begin() as conn:
            st = t.state
            # the write lock first, as every batch of the writer takes it
            await conn.execute(st.update().where(st.c.key == "last_seq").values(value=st.c.value))
            await self._import_chatbots(conn, chatbots)
            ids = [fs.detail.id for fs in sessions]
            clash = await conn.scalar(
                sa.select(sa.func.count()).select_from(t.sessions).where(t.sessions.c.id.in_(ids))
            )
            if clash:
                raise NotEmpty(f"{clash} of these sessions are stored already")
            if sessions:
                await conn.execute(t.sessions.insert(), [_session_row(fs) for fs in sessions])
            events = [ev for fs in sessions for ev in _event_rows(fs)]
            if events:
                await conn.execute(t.events.insert(), events)
            await self.search_sql.index_sessions(conn, ids)  # the writer's indexes too
            tags = [
                row
                for fs in sessions
                for row in session_tags(
                    fs.detail.id,
                    fs.detail.chatbot_id,
                    fs.detail.started_at,
                    fs.detail.variables,
                    fs.detail.node_history,
                )
            ]
            if tags:  # the list filters' tags (store/_tags.py), as the writer keeps them
                await conn.execute(t.tags.insert(), tags)
            await self._add_counts(conn, sessions)
            top = max((ev["seq"] for ev in events), default=0)
            await conn.execute(
                st.update().where(st.c.key == "last_seq", st.c.value < top).values(value=top)
            )

    async def _import_chatbots(
        self, conn: AsyncConnection, chatbots: Sequence[dict[str, Any]]
    ) -> None:
        c, fl = self.tables.chatbots, self.tables.flows
        if not chatbots:
            return
        ids = [b["chatbot_id"] for b in chatbots]
        known = set(
            (await conn.scalars(sa.select(c.c.chatbot_id).where(c.c.chatbot_id.in_(ids)))).all()
        )
        stored_flows = {
            (r.chatbot_id, r.version)
            for r in await conn.execute(
                sa.select(fl.c.chatbot_id, fl.c.version).where(fl.c.chatbot_id.in_(ids))
            )
        }
        for b in chatbots:
            if "name" in b and b["chatbot_id"] not in known:
                await conn.execute(
                    c.insert().values(
                        chatbot_id=b["chatbot_id"],
                        name=b["name"],
                        current_version=b["current_version"],
                        updated_at=b["updated_at"],
                    )
                )
            registered = b.get("updated_at") or datetime.now(UTC)
            for version, graph in b["flows"].items():
                if (b["chatbot_id"], version) not in stored_flows:
                    await conn.execute(
                        fl.insert().values(
                            chatbot_id=b["chatbot_id"],
                            version=version,
                            flow=graph,
                            registered_at=registered,
                        )
                    )

    async def _add_counts(self, conn: AsyncConnection, sessions: Sequence[FullSession]) -> None:
        deltas: dict[tuple[str, str], int] = {}
        for fs in sessions:
            key = (fs.detail.chatbot_id, fs.detail.status)
            deltas[key] = deltas.get(key, 0) + 1
        if not deltas:
            return
        c = self.tables.counts
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(c)
        stmt = stmt.on_conflict_do_update(
            index_elements=["chatbot_id", "status"], set_={"n": c.c.n + stmt.excluded.n}
        )
        await conn.execute(
            stmt, [{"chatbot_id": k[0], "status": k[1], "n": n} for k, n in deltas.items()]
        )


def _session_row(fs: FullSession) -> dict[str, Any]:
    d = fs.detail
    seqs = [m.id for m in d.messages] + fs.node_seqs
    seqs += [c.seq for c in d.llm_call_history] + [c.seq for c in d.tool_call_history]
    return {
        "id": d.id,
        "chatbot_id": d.chatbot_id,
        "flow_version": d.flow_version,
        "conversation_id": d.conversation_id,
        "customer_phone": d.customer_phone,
        "customer_name": d.customer_name,
        "name_key": name_key(d.customer_name),
        "status": d.status,
        "current_node_id": d.current_node_id,
        "current_node_label": d.current_node_label,
        "variables": d.variables,
        "metadata": d.metadata,
        "started_at": d.started_at,
        "updated_at": d.updated_at,
        "completed_at": d.completed_at,
        "expires_at": d.expires_at,
        "idle_timeout_s": None,
        "completion_reason": d.completion_reason,
        "node_count": d.node_count,
        "message_count": d.message_count,
        "last_seq": max(seqs, default=0),
        "input_tokens": d.input_tokens,
        "output_tokens": d.output_tokens,
        "cost": d.cost,
        "llm_calls": d.llm_calls,
        "tool_calls": d.tool_calls,
        "error_count": d.error_count,
    }


def _event_rows(fs: FullSession) -> list[dict[str, Any]]:
    """The log events a detail is read from, with the data keys the writer stores."""
    d = fs.detail

    def row(
        seq: int,
        kind: str,
        node_id: str | None,
        at: datetime,
        data: dict[str, Any],
        message_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "seq": seq,
            "session_id": d.id,
            "chatbot_id": d.chatbot_id,
            "kind": kind,
            "at": at,
            "flow_version": d.flow_version,
            "node_id": node_id,
            "message_id": message_id,
            "data": data,
        }

    out = [
        row(
            m.id,
            MESSAGE,
            m.node_id,
            m.timestamp,
            {
                "direction": m.direction,
                "type": m.type,
                "text": m.text,
                "payload": m.payload,
                "node_id": m.node_id,
                "message_id": m.channel_message_id,
            },
            m.channel_message_id,
        )
        for m in d.messages
    ]
    for seq, n in zip(fs.node_seqs, d.node_executions, strict=True):
        data = {
            "node_id": n.node_id,
            "label": n.label,
            "node_type": n.type,
            "duration_ms": n.duration_ms,
            "error": n.error,
        }
        out.append(row(seq, NODE_EXECUTED, n.node_id, n.at, data))
    for c in d.llm_call_history:
        llm = {
            "node_id": c.node_id,
            "model": c.model,
            "provider": c.provider,
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "latency_ms": c.latency_ms,
            "ttfb_ms": c.ttfb_ms,
            "cost": c.cost,
            "finish_reason": c.finish_reason,
            "error": c.error,
        }
        out.append(row(c.seq, LLM_CALL, c.node_id, c.at, llm))
    for tc in d.tool_call_history:
        tool = {
            "node_id": tc.node_id,
            "name": tc.name,
            "call_id": tc.call_id,
            "arguments": tc.arguments,
            "result": tc.result,
            "error": tc.error,
            "duration_ms": tc.duration_ms,
        }
        out.append(row(tc.seq, TOOL_CALL, tc.node_id, tc.at, tool))
    return out
