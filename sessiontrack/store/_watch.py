"""Watching the log for other processes' commits: LISTEN on PostgreSQL, polling on SQLite."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa

from ._errors import is_transient

if TYPE_CHECKING:
    from .sqlalchemy import SQLAlchemyStore

log = logging.getLogger(__name__)
Wake = Callable[[int | None], None]


async def watch(
    store: SQLAlchemyStore,
    wake: Wake,
    *,
    poll_interval: float,
    retry_initial: float,
    retry_max: float,
) -> None:
    """See :meth:`sessiontrack.abc.Store.watch`. PostgreSQL wakes on NOTIFY at once (with
    a slow poll in case a notification is lost); SQLite polls the log's head."""
    delay = retry_initial
    while True:
        try:
            if store.dialect == "postgresql":
                await _listen(store, wake, poll_interval)
            else:
                await _poll(store, wake, poll_interval)
        except Exception as exc:
            if not is_transient(exc):
                log.exception("sessiontrack log watcher failed")
            await anyio.sleep(delay)
            delay = min(delay * 2, retry_max)


async def _poll(store: SQLAlchemyStore, wake: Wake, poll_interval: float) -> None:
    seen = await store.last_seq()
    wake(None)  # whatever was committed before this (re)start
    while True:
        await anyio.sleep(poll_interval)
        head = await store.last_seq()
        if head > seen:
            seen = head
            wake(head)


async def _listen(store: SQLAlchemyStore, wake: Wake, poll_interval: float) -> None:
    async with store.engine.connect() as conn:
        # no transaction: the keep-alive's would stay open ("idle in transaction") for
        # the tracker's whole life, holding the database's xmin horizon back, so that no
        # VACUUM could remove a dead row meanwhile (nor an erasure's VACUUM FULL)
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            wake(int(payload) if payload.isdigit() else None)

        await driver.add_listener(store.notify_channel, notified)
        try:
            wake(None)
            while True:
                await anyio.sleep(max(poll_interval * 4, 2.0))
                await conn.execute(sa.text("SELECT 1"))
                wake(None)
        finally:
            with anyio.CancelScope(shield=True):
                await driver.remove_listener(store.notify_channel, notified)
