"""The tracker's counters, shared by its parts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrackerStats:
    """Counters since the tracker started (see docs/durability.md for each)."""

    enqueued: int = 0
    committed: int = 0
    batches: int = 0
    events_stored: int = 0
    duplicates: int = 0
    orphans: int = 0
    late: int = 0
    dropped_overflow: int = 0
    failed: int = 0
    retries: int = 0

    @property
    def buffered(self) -> int:
        return self.enqueued - self.committed
