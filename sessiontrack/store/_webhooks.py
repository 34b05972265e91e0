"""The webhook subscriptions' SQL (``sessiontrack.notify``): subscriptions, their cursors
(``webhook:<id>`` in ``<prefix>cursors``) and the delivery log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ._part import StorePart
from ._shield import uncancelled

CURSOR_PREFIX = "webhook:"


def cursor_name(webhook_id: str) -> str:
    return f"{CURSOR_PREFIX}{webhook_id}"


class WebhookQueries(StorePart):
    """Mixed into :class:`~sessiontrack.store.SQLAlchemyStore`."""

    async def add_webhook(self, row: Mapping[str, Any]) -> int:
        """Insert a subscription and its cursor at the log's head, in one transaction;
        returns the cursor's sequence number (delivery starts after it)."""
        t = self.tables
        now = datetime.now(UTC)
        async with uncancelled(self.engine.begin()) as conn:
            head = await conn.scalar(sa.select(t.state.c.value).where(t.state.c.key == "last_seq"))
            seq = int(head or 0)
            await conn.execute(t.webhooks.insert().values(**row, created_at=now, updated_at=now))
            await conn.execute(
                t.cursors.insert().values(name=cursor_name(row["id"]), seq=seq, updated_at=now)
            )
        return seq

    async def webhooks_rows(self, webhook_id: str | None = None) -> list[dict[str, Any]]:
        """Subscriptions (one, or all, oldest first), each with ``cursor`` (its cursor's
        sequence number, or ``None``)."""
        t = self.tables
        w, c = t.webhooks, t.cursors
        q = (
            sa.select(w, c.c.seq.label("cursor"))
            .select_from(w.outerjoin(c, c.c.name == sa.literal(CURSOR_PREFIX) + w.c.id))
            .order_by(w.c.created_at, w.c.id)
        )
        if webhook_id is not None:
            q = q.where(w.c.id == webhook_id)
        async with uncancelled(self.engine.connect()) as conn:
            rows = [dict(r._mapping) for r in await conn.execute(q)]
        return rows

    async def delete_webhook(self, webhook_id: str) -> bool:
        t = self.tables
        async with uncancelled(self.engine.begin()) as conn:
            done = await conn.execute(t.webhooks.delete().where(t.webhooks.c.id == webhook_id))
            await conn.execute(
                t.cursors.delete().where(t.cursors.c.name == cursor_name(webhook_id))
            )
            await conn.execute(t.deliveries.delete().where(t.deliveries.c.webhook_id == webhook_id))
        return bool(done.rowcount)

    async def update_webhook(self, webhook_id: str, **values: Any) -> bool:
        w = self.tables.webhooks
        async with uncancelled(self.engine.begin()) as conn:
            done = await conn.execute(
                w.update()
                .where(w.c.id == webhook_id)
                .values(**{"updated_at": datetime.now(UTC), **values})
            )
        return bool(done.rowcount)

    async def set_webhook_failures(self, webhook_id: str, failures: int) -> None:
        """The consecutive failure count (not a change of the subscription: its
        ``updated_at`` stays)."""
        w = self.tables.webhooks
        async with uncancelled(self.engine.begin()) as conn:
            await conn.execute(w.update().where(w.c.id == webhook_id).values(failures=failures))

    async def log_delivery(self, row: Mapping[str, Any]) -> None:
        async with uncancelled(self.engine.begin()) as conn:
            await conn.execute(self.tables.deliveries.insert().values(**row))

    async def webhook_deliveries(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` delivery attempts of a subscription, newest first."""
        d = self.tables.deliveries
        q = sa.select(d).where(d.c.webhook_id == webhook_id).order_by(d.c.id.desc()).limit(limit)
        async with uncancelled(self.engine.connect()) as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def prune_deliveries(self, before: datetime) -> int:
        """Delete delivery attempts logged before ``before``; how many."""
        d = self.tables.deliveries
        async with uncancelled(self.engine.begin()) as conn:
            done = await conn.execute(d.delete().where(d.c.at < before))
        return int(done.rowcount or 0)
