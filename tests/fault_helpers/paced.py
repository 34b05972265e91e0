"""An in-process engine that reports at a steady rate and checkpoints with ``flush()``.

The reporter never awaits durability (hook calls only); a separate checkpoint task
awaits ``flush()`` over and over and acknowledges what was reported before each call, as
a webhook handler does before answering 200. Each flush is recorded with whether it was
in flight while the fault was active, so a scenario can show that it blocked.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import anyio

import sessiontrack

from .script import BOTS, LAST, report


@dataclass
class FlushRecord:
    target: int  # tracker.stats.enqueued when it was called: what it waits for
    started_before_recovery: bool
    returned_in_fault: bool


@dataclass
class PacedEngine:
    tracker: sessiontrack.Tracker
    rate: float  # reports per second
    concurrent: int = 200
    seed: int = 0
    made: int = 0
    acked: dict[str, int] = field(default_factory=dict)
    flushes: list[FlushRecord] = field(default_factory=list)
    fault_active: bool = False
    fault_over: bool = False
    made_at_fault: int | None = None
    committed_at_fault: int | None = None  # nothing can commit after this while it lasts
    errors: list[BaseException] = field(default_factory=list)
    buffered_at_recovery: int = 0
    made_at_recovery: int = 0
    _progress: dict[str, int] = field(default_factory=dict)
    _bots: dict[str, str] = field(default_factory=dict)
    _finished: dict[str, int] = field(default_factory=dict)
    _stop: bool = False

    def begin_fault(self) -> None:
        """Called once the fault is in place (the server is gone, the lock is held)."""
        self.fault_active, self.made_at_fault = True, self.made
        self.committed_at_fault = self.tracker.stats.committed

    def sample_buffer(self) -> None:
        """Record how much is buffered just before the fault ends."""
        self.buffered_at_recovery = self.tracker.stats.buffered
        self.made_at_recovery = self.made

    def end_fault(self) -> None:
        self.fault_active, self.fault_over = False, True

    def blocked_flushes(self) -> list[FlushRecord]:
        """Flushes that needed a report not yet committed when the fault began."""
        if self.committed_at_fault is None:
            return []
        return [
            f
            for f in self.flushes
            if f.started_before_recovery and f.target > (self.committed_at_fault or 0)
        ]

    def stop(self) -> None:
        self._stop = True

    def _one(self, rng: random.Random) -> None:
        while len(self._progress) < self.concurrent:
            sid = sessiontrack.new_session_id()
            self._progress[sid], self._bots[sid] = 0, rng.choice(BOTS)
        sid = rng.choice(list(self._progress))
        report(self.tracker.plugin_manager.hook, sid, self._progress[sid], self._bots[sid])
        self._progress[sid] += 1
        self.made += 1
        if self._progress[sid] > LAST:
            self._finished[sid] = self._progress[sid]
            del self._progress[sid], self._bots[sid]

    async def report_forever(self) -> None:
        """Report at ``rate`` on the wall clock (catching up after a slow tick)."""
        rng = random.Random(self.seed)
        t0 = time.monotonic()
        try:
            while not self._stop:
                due = int((time.monotonic() - t0) * self.rate)
                while self.made < due:
                    self._one(rng)
                await anyio.sleep(0.01)
        except Exception as exc:  # a hook call that raised is a finding: record it
            self.errors.append(exc)
            raise

    def snapshot(self) -> dict[str, int]:
        return dict(self._progress)

    async def checkpoint(self) -> None:
        """One flush; what was reported before it is acknowledged once it returns."""
        target, before_recovery = self.tracker.stats.enqueued, not self.fault_over
        before = self.snapshot()
        finished, self._finished = self._finished, {}
        await self.tracker.flush()
        self.flushes.append(FlushRecord(target, before_recovery, self.fault_active))
        for sid, n in (*before.items(), *finished.items()):
            self.acked[sid] = max(self.acked.get(sid, 0), n)

    async def checkpoint_forever(self, every: float = 0.5) -> None:
        while not self._stop:
            await self.checkpoint()
            await anyio.sleep(every)
