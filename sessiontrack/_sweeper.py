"""The sweepers: sessions past their ``expires_at`` become ``expired``, and terminal
sessions past their chatbot's retention period are purged."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from . import events as ev
from .abc import Store
from .errors import TrackerNotRunning
from .limits import CHATBOT_ID
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


ANY_CHATBOT = "*"
"""The ``retention`` key that stands for every chatbot without a key of its own."""
_MAX_RETENTION = timedelta(days=36525)


def check_retention(
    retention: Mapping[str, timedelta], completion_grace: timedelta
) -> dict[str, timedelta]:
    """``retention`` as the tracker keeps it, checked key by key.

    :raises TypeError: if it is not a mapping of strings to ``timedelta``.
    :raises ValueError: for a key that cannot be a chatbot id, or a period not longer than
        ``completion_grace`` (the late reports of a session's last turn must still find
        it) or over 100 years.
    """
    if not isinstance(retention, Mapping):
        raise TypeError(
            "retention must be a mapping of chatbot id (or '*') to timedelta, "
            f"got {type(retention).__name__}"
        )
    out: dict[str, timedelta] = {}
    for key, period in retention.items():
        if not isinstance(key, str):
            raise TypeError(f"retention key {key!r} must be a chatbot id (a string) or '*'")
        if not key or len(key) > CHATBOT_ID:
            raise ValueError(
                f"retention key {key!r} must be a chatbot id of 1 to {CHATBOT_ID} characters"
            )
        if not isinstance(period, timedelta):
            raise TypeError(f"retention[{key!r}] must be a timedelta, got {type(period).__name__}")
        if not completion_grace < period <= _MAX_RETENTION:
            raise ValueError(
                f"retention[{key!r}] must be longer than completion_grace ({completion_grace}) "
                f"and at most 100 years, got {period}"
            )
        out[key] = period
    return out


class Retention:
    """Purges terminal sessions completed longer ago than their chatbot's retention
    period: each chatbot with a key of its own by that key's period, every other one by
    ``"*"``'s (without ``"*"``, they are kept). A purge runs in the store's batches, one
    transaction each, under the writer's lock; it runs beside the expiry sweeper, so a
    long first purge does not hold expiries back."""

    def __init__(self, store: Store, rules: Mapping[str, timedelta]) -> None:
        self._store = store
        self.rules = dict(rules)

    async def run(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            try:
                await self.apply()
            except Exception as exc:
                if not self._store.is_transient(exc):
                    log.exception("sessiontrack retention purge failed")

    async def apply(self, *, batch_size: int = 1000) -> int:
        """Purge what is past its retention now; returns how many sessions went."""
        now = datetime.now(UTC)
        own = [key for key in self.rules if key != ANY_CHATBOT]
        total = 0
        for key in own:
            total += await self._purge(key, now - self.rules[key], batch_size, chatbot_ids=[key])
        if ANY_CHATBOT in self.rules:
            cutoff = now - self.rules[ANY_CHATBOT]
            total += await self._purge(ANY_CHATBOT, cutoff, batch_size, exclude_chatbot_ids=own)
        return total

    async def _purge(self, key: str, cutoff: datetime, batch_size: int, **which: Any) -> int:
        purged = await self._store.purge(cutoff, batch_size=batch_size, **which)
        if purged:
            whose = "every other chatbot" if key == ANY_CHATBOT else f"chatbot {key!r}"
            log.info(
                "sessiontrack retention: purged %d sessions of %s completed before %s",
                purged,
                whose,
                cutoff.isoformat(timespec="seconds"),
            )
        return purged
