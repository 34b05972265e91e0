"""The expiry sweeper: sessions past their ``expires_at`` become ``expired``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import anyio

from . import events as ev
from .abc import Store
from .errors import TrackerNotRunning
from .store._fold import Report

log = logging.getLogger(__name__)


class Sweeper:
    """Every ``interval`` seconds, reports an expiry for each overdue session. The report
    only takes effect if the session is still overdue when it is folded (activity queued
    meanwhile wins), so a sweep never races the engine."""

    def __init__(self, store: Store, put: Callable[[Report], None], interval: float) -> None:
        self._store = store
        self._put = put
        self.interval = interval

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            try:
                await self.sweep()
            except TrackerNotRunning:
                return  # closing: the writer takes no more work
            except Exception as exc:
                if not self._store.is_transient(exc):
                    log.exception("sessiontrack sweeper failed")

    async def sweep(self) -> int:
        now = datetime.now(UTC)
        overdue = await self._store.overdue_sessions(now)
        for sid in overdue:
            data = {"status": "expired", "reason": "timeout", "if_overdue": True}
            self._put((ev.SESSION_COMPLETED, sid, now.timestamp(), data))
        return len(overdue)
