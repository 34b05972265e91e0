"""Which session a conversation is in, as far as this process knows before the database.

``Tracker.active_session`` answers from the store, except for what this process has
reported and the writer has not committed yet: a start (the session is active already)
and a completion (it is not). The hook implementations note those here, from any thread;
an entry counts until the writer has committed past the report.

A report's position is the tracker's ``enqueued`` count read just after the report was
handed over: never less than the report's own place in the intake (other threads may
have added theirs in between), so an entry is never taken for committed too early. The
writer commits in that order and counts ``committed`` after each batch, on the tracker's
loop, where ``active_session`` runs too.
"""

from __future__ import annotations

import threading

from ._stats import TrackerStats

_PRUNE_MIN = 1024  # entries held before committed ones are cleared out


class Conversations:
    """Starts and completions reported and not yet committed."""

    def __init__(self, stats: TrackerStats) -> None:
        self._stats = stats
        self._lock = threading.Lock()
        self._starts: dict[tuple[str, str], tuple[str, int]] = {}
        self._ends: dict[str, int] = {}
        self._prune_at = _PRUNE_MIN

    def started(self, chatbot_id: str, conversation_id: str, session_id: str) -> None:
        """A start of ``session_id`` in that conversation was just handed to the intake."""
        position = self._stats.enqueued
        with self._lock:
            self._starts[(chatbot_id, conversation_id)] = (session_id, position)
            if len(self._starts) >= self._prune_at:
                self._prune()

    def ended(self, session_id: str) -> None:
        """A completion of ``session_id`` was just handed to the intake."""
        position = self._stats.enqueued
        with self._lock:
            self._ends[session_id] = position
            if len(self._ends) >= self._prune_at:
                self._prune()

    def _prune(self) -> None:
        done = self._stats.committed
        self._starts = {k: v for k, v in self._starts.items() if v[1] > done}
        self._ends = {k: v for k, v in self._ends.items() if v > done}
        self._prune_at = max(_PRUNE_MIN, 2 * max(len(self._starts), len(self._ends)))

    def pending_start(self, chatbot_id: str, conversation_id: str) -> str | None:
        """The session whose start in that conversation is not committed yet, unless its
        completion was reported too."""
        with self._lock:
            entry = self._starts.get((chatbot_id, conversation_id))
            if entry is None or entry[1] <= self._stats.committed:
                return None
            session_id, position = entry
            return None if self._ends.get(session_id, 0) > position else session_id

    def ending(self, session_id: str) -> bool:
        """Whether a completion of ``session_id`` was reported and is not committed yet."""
        with self._lock:
            return self._ends.get(session_id, 0) > self._stats.committed
