"""The alert rules' SQL (``sessiontrack.notify``): rules, the alerts they fired (unique
per rule and key, so evaluating an event twice fires once), the alerts' outbox, and the
reads the periodic rules need (sessions stuck in a status)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..events import STATUS_CHANGED
from ._part import StorePart
from ._shield import uncancelled

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


class AlertQueries(StorePart):
    """Mixed into :class:`~sessiontrack.store.SQLAlchemyStore`."""

    # --- rules ------------------------------------------------------------------------

    async def put_alert_rule(self, row: Mapping[str, Any], *, replace: bool) -> bool:
        """Insert a rule; with ``replace`` an existing one of the same id is updated (the
        code's rules, written again at each start). Whether a row was written."""
        r = self.tables.alert_rules
        now = datetime.now(UTC)
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(r)
        stmt = insert.values(**row, created_at=now, updated_at=now)
        if replace:
            changed = {k: stmt.excluded[k] for k in row if k not in ("id", "created_by")}
            stmt = stmt.on_conflict_do_update(
                index_elements=["id"], set_={**changed, "updated_at": now}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["id"])
        async with uncancelled(self.engine.begin()) as conn:
            done = await conn.execute(stmt)
        return bool(done.rowcount)

    async def alert_rules_rows(self, rule_id: str | None = None) -> list[dict[str, Any]]:
        """Rules (one, or all, oldest first)."""
        r = self.tables.alert_rules
        q = sa.select(r).order_by(r.c.created_at, r.c.id)
        if rule_id is not None:
            q = q.where(r.c.id == rule_id)
        async with uncancelled(self.engine.connect()) as conn:
            rows = [dict(row._mapping) for row in await conn.execute(q)]
        return rows

    async def delete_alert_rule(self, rule_id: str) -> bool:
        """Delete a rule and the deliveries of its alerts still pending (its alerts stay,
        as history)."""
        t = self.tables
        pending = sa.select(t.alerts.c.id).where(t.alerts.c.rule_id == rule_id)
        async with uncancelled(self.engine.begin()) as conn:
            done = await conn.execute(t.alert_rules.delete().where(t.alert_rules.c.id == rule_id))
            await conn.execute(
                t.alert_deliveries.delete().where(
                    t.alert_deliveries.c.alert_id.in_(pending),
                    t.alert_deliveries.c.state == PENDING,
                )
            )
        return bool(done.rowcount)

    # --- alerts and their outbox ------------------------------------------------------

    async def fire_alerts(
        self, alerts: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]]
    ) -> list[int | None]:
        """Insert alerts, each with a pending delivery per target, in one transaction;
        each one's id, or ``None`` when its rule already fired for its ``key`` (nothing
        of it is written)."""
        t = self.tables
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(t.alerts)
        ids: list[int | None] = []
        async with uncancelled(self.engine.begin()) as conn:
            for row, targets in alerts:
                stmt = (
                    insert.values(**row)
                    .on_conflict_do_nothing(index_elements=["rule_id", "key"])
                    .returning(t.alerts.c.id)
                )
                alert_id = await conn.scalar(stmt)
                ids.append(None if alert_id is None else int(alert_id))
                if alert_id is None or not targets:
                    continue
                await conn.execute(
                    t.alert_deliveries.insert(),
                    [
                        {
                            "alert_id": alert_id,
                            "position": i,
                            "type": target["type"],
                            "target": dict(target),
                            "state": PENDING,
                            "attempts": 0,
                            "next_at": row["fired_at"],
                        }
                        for i, target in enumerate(targets)
                    ],
                )
        return ids

    async def alerts_rows(
        self,
        *,
        limit: int,
        before: int | None = None,
        rule_id: str | None = None,
        chatbot_ids: Collection[str] | None = None,
        open_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Alerts, newest first, each with ``deliveries`` (its outbox rows, by position,
        without the targets' secrets)."""
        a, d = self.tables.alerts, self.tables.alert_deliveries
        q = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        if before is not None:
            q = q.where(a.c.id < before)
        if rule_id is not None:
            q = q.where(a.c.rule_id == rule_id)
        if chatbot_ids is not None:
            q = q.where(a.c.chatbot_id.in_(sorted(chatbot_ids)))
        if open_only:
            q = q.where(a.c.resolved_at.is_(None))
        async with uncancelled(self.engine.connect()) as conn:
            rows = [dict(r._mapping) for r in await conn.execute(q)]
            ids = [r["id"] for r in rows]
            outbox = sa.select(
                d.c.alert_id,
                d.c.position,
                d.c.type,
                d.c.state,
                d.c.attempts,
                d.c.error,
                d.c.delivered_at,
            ).where(d.c.alert_id.in_(ids))
            found = await conn.execute(outbox.order_by(d.c.alert_id, d.c.position))
            by_alert: dict[int, list[dict[str, Any]]] = {}
            for r in found:
                by_alert.setdefault(r.alert_id, []).append(dict(r._mapping))
        for row in rows:
            row["deliveries"] = by_alert.get(row["id"], [])
        return rows

    async def fired_keys(self, rule_id: str, keys: Collection[str]) -> set[str]:
        """Which of ``keys`` the rule already fired for."""
        a = self.tables.alerts
        found: set[str] = set()
        wanted = sorted(keys)
        async with uncancelled(self.engine.connect()) as conn:
            for i in range(0, len(wanted), 500):
                q = sa.select(a.c.key).where(
                    a.c.rule_id == rule_id, a.c.key.in_(wanted[i : i + 500])
                )
                found.update(str(k) for k in await conn.scalars(q))
        return found

    async def prune_alerts(self, before: datetime) -> int:
        """Delete the alerts fired before ``before`` with their deliveries, but the node
        rate alerts still open (what a later evaluation resolves); how many."""
        a, d = self.tables.alerts, self.tables.alert_deliveries
        old = sa.and_(
            a.c.fired_at < before, sa.or_(a.c.kind != "node_rate", a.c.resolved_at.is_not(None))
        )
        async with uncancelled(self.engine.begin()) as conn:
            await conn.execute(d.delete().where(d.c.alert_id.in_(sa.select(a.c.id).where(old))))
            done = await conn.execute(a.delete().where(old))
        return int(done.rowcount or 0)

    async def resolve_alert(self, alert_id: int, at: datetime) -> None:
        a = self.tables.alerts
        async with uncancelled(self.engine.begin()) as conn:
            await conn.execute(a.update().where(a.c.id == alert_id).values(resolved_at=at))

    async def due_alert_deliveries(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Pending deliveries due by ``now``, oldest first, each with its alert's row
        (``alert``)."""
        a, d = self.tables.alerts, self.tables.alert_deliveries
        q = (
            sa.select(d, *(c.label(f"a__{c.name}") for c in a.c))
            .select_from(d.join(a, a.c.id == d.c.alert_id))
            .where(d.c.state == PENDING, d.c.next_at <= now)
            .order_by(d.c.next_at, d.c.id)
            .limit(limit)
        )
        async with uncancelled(self.engine.connect()) as conn:
            rows = [dict(r._mapping) for r in await conn.execute(q)]
        out = []
        for row in rows:
            alert = {c.name: row.pop(f"a__{c.name}") for c in a.c}
            out.append({**row, "alert": alert})
        return out

    async def update_alert_delivery(self, delivery_id: int, **values: Any) -> None:
        d = self.tables.alert_deliveries
        async with uncancelled(self.engine.begin()) as conn:
            await conn.execute(d.update().where(d.c.id == delivery_id).values(**values))

    async def next_alert_delivery_at(self) -> datetime | None:
        """When the earliest pending delivery is due."""
        d = self.tables.alert_deliveries
        async with uncancelled(self.engine.connect()) as conn:
            value = await conn.scalar(
                sa.select(sa.func.min(d.c.next_at)).where(d.c.state == PENDING)
            )
        if isinstance(value, str):  # SQLite's min() loses the column's type
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    # --- what the periodic rules read ---------------------------------------------------

    async def stuck_sessions(
        self,
        status: str,
        since: datetime,
        chatbot_ids: Collection[str] | None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Active sessions in ``status`` since before ``since``: ``session_id``,
        ``chatbot_id``, ``spell_seq`` (the sequence number of the status change that
        began the spell; 0 when the session started in it) and ``spell_at`` (when)."""
        s, e = self.tables.sessions, self.tables.events
        last = (
            sa.select(sa.func.max(e.c.seq))
            .where(e.c.session_id == s.c.id, e.c.kind == STATUS_CHANGED)
            .scalar_subquery()
        )
        q = sa.select(s.c.id, s.c.chatbot_id, s.c.started_at, last.label("spell_seq")).where(
            s.c.status == status, s.c.completed_at.is_(None), s.c.started_at < since
        )
        if chatbot_ids:
            q = q.where(s.c.chatbot_id.in_(sorted(chatbot_ids)))
        async with uncancelled(self.engine.connect()) as conn:
            rows = list(await conn.execute(q.order_by(s.c.started_at).limit(limit)))
            seqs = [int(r.spell_seq) for r in rows if r.spell_seq is not None]
            times: dict[int, datetime] = {}
            for chunk in range(0, len(seqs), 500):
                part = seqs[chunk : chunk + 500]
                found = await conn.execute(sa.select(e.c.seq, e.c.at).where(e.c.seq.in_(part)))
                times.update({int(r.seq): r.at for r in found})
        out = []
        for r in rows:
            seq = int(r.spell_seq or 0)
            at = times.get(seq, r.started_at)
            if at < since:
                out.append(
                    {
                        "session_id": r.id,
                        "chatbot_id": r.chatbot_id,
                        "spell_seq": seq,
                        "spell_at": at,
                    }
                )
        return out
