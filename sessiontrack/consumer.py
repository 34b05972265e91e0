"""Durable consumers of the committed event log: the machinery under webhooks, alert rules
and the OpenTelemetry bridge.

The event log is an ordered, durable outbox. A :class:`Consumer` has a name, and under it
a **cursor** stored in the database (``<prefix>cursors``): the sequence number of the last
event it handled. A :class:`ConsumerGroup` runs consumers: each reads the events after its
cursor in batches (:meth:`~sessiontrack.abc.Store.events_after`), hands them to
:meth:`Consumer.handle`, and moves the cursor forward only once ``handle`` returned, so
every event is handled **at least once**, in sequence order, across crashes and restarts.

Each consumer runs in a task of its own, never under the writer's lock and never inside
``sessiontrack_events_committed``: a slow consumer slows only itself. The group wakes when
the tracker's feed dispatches events (this process's commits, and other processes' as the
tracker's log watcher sees them) and polls every ``poll_interval`` seconds as well.

**One process at a time** runs a group, across every host sharing the database: the group
holds a lease named after it (:meth:`~sessiontrack.abc.Store.acquire_lease`: a PostgreSQL
advisory lock on a connection of its own, or a ``flock`` on ``<db file>.<name>.consumers.lock``
on SQLite). The other processes retry every ``lease_retry`` seconds and take over when the
holder stops or dies. Run it with a tracker (``Tracker(consumers=[group])``) or on its own
(``await group.run(store)``).
"""

from __future__ import annotations

import logging
import random
from abc import ABCMeta, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .abc import Lease, Store
from .events import StoredEvent

log = logging.getLogger(__name__)

__all__ = ["Consumer", "ConsumerGroup", "backoff"]


def backoff(failures: int, initial: float, cap: float) -> float:
    """Seconds to wait before the next attempt, after ``failures`` consecutive failures
    (1 or more): exponential backoff with full jitter, uniform in ``[0, min(cap, initial
    * 2 ** (failures - 1))]``."""
    return random.uniform(0, min(cap, initial * 2 ** max(failures - 1, 0)))


def check_backoff(initial: float, cap: float) -> None:
    """Refuse a :func:`backoff` range that is empty or not positive."""
    if not 0 < initial <= cap:
        raise ValueError(f"need 0 < retry_initial <= retry_max, got {initial} and {cap}")


class Consumer(metaclass=ABCMeta):
    """Something that handles committed events, durably, from a cursor of its own.

    Subclass it and set :attr:`name` (unique among the consumers of one database; it
    names the cursor row, e.g. ``"otel"``, ``"alerts"``, ``"webhook:<id>"``).
    """

    name: str
    """The cursor's name (at most 200 characters)."""
    batch_size: int = 500
    """Events handed to :meth:`handle` at once, at the most."""
    start: Literal["head", "beginning"] = "head"
    """Where a new cursor starts: after the events committed so far (``"head"``), or
    before the first event of the log (``"beginning"``). A cursor that exists (after a
    restart) is never moved back."""
    creates_cursor: bool = True
    """Whether the group creates the cursor when there is none. ``False``: the cursor is
    made elsewhere (a webhook's, with its subscription), and a missing one means the
    consumer is gone: the group stops running it."""

    @abstractmethod
    async def handle(self, events: Sequence[StoredEvent]) -> int | None:
        """Handle ``events`` (committed, consecutive in the log after the cursor, in
        sequence order; at least one).

        Return ``None`` once all were handled: the cursor moves past the last one. Return
        a sequence number to say "handled up to this one": the cursor moves there and the
        rest is offered again at once (or, when it handled none of them, after
        ``poll_interval``). Raise
        to say "none of them": the cursor stays, the group logs the error and offers the
        same events again after a backoff with jitter. An event may be offered again
        after a crash, a lost lease or a restart (at least once): make the effect
        idempotent by ``event.seq``.
        """

    @property
    def active(self) -> bool:
        """``False`` makes the group stop running this consumer once the batch it is
        handling is done and the cursor moved (a paused webhook). Default ``True``."""
        return True

    async def stopped(self) -> None:  # noqa: B027 (optional: a no-op by default)
        """Called when the group stops running this consumer (lease lost, shutdown,
        removed); cancellation is shielded."""


class ConsumerGroup:
    """Runs consumers under one lease: in one process at a time across hosts.

    :param name: the lease's name (``"webhooks"``, ``"otel"``): groups of different
        names run independently, in the same process or in different ones.
    :param consumers: the consumers to run; :meth:`add` and :meth:`remove` change them
        while it runs.
    :param poll_interval: the longest an event committed elsewhere waits before the
        group reads it when nothing wakes it (seconds).
    :param lease_retry: seconds between attempts to take the lease while another process
        holds it (the longest a takeover waits after the holder died).
    :param lease_check: seconds between checks that the lease is still held.
    :param retry_initial: the first backoff after ``handle`` raised (seconds).
    :param retry_max: the longest backoff.
    """

    def __init__(
        self,
        name: str,
        consumers: Iterable[Consumer] = (),
        *,
        poll_interval: float = 1.0,
        lease_retry: float = 2.0,
        lease_check: float = 5.0,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
    ) -> None:
        if not name or len(name) > 100:
            raise ValueError(f"a consumer group needs a name of 1-100 characters, got {name!r}")
        self.name = name
        self.poll_interval = poll_interval
        self.lease_retry = lease_retry
        self.lease_check = lease_check
        self.retry = (retry_initial, retry_max)
        self._consumers: dict[str, Consumer] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._tg: TaskGroup | None = None
        self._store: Store | None = None
        self._wake = anyio.Event()
        self.leading = False
        """Whether this process holds the group's lease now (and runs its consumers)."""
        for consumer in consumers:
            self.add(consumer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self._consumers)} consumers)"

    @property
    def consumers(self) -> dict[str, Consumer]:
        """The consumers, by name (a copy)."""
        return dict(self._consumers)

    def add(self, consumer: Consumer) -> None:
        """Run ``consumer`` too (at once, if the group is leading)."""
        name = getattr(consumer, "name", None)
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise ValueError(f"a consumer needs a name of 1-200 characters, got {name!r}")
        if name in self._consumers:
            raise ValueError(f"consumer group {self.name!r} already has a consumer {name!r}")
        self._consumers[name] = consumer
        if self._tg is not None:
            self._tg.start_soon(self._consume, consumer)

    def remove(self, name: str) -> None:
        """Stop running the consumer ``name`` (its cursor stays in the database)."""
        self._consumers.pop(name, None)
        scope = self._scopes.pop(name, None)
        if scope is not None:
            scope.cancel()

    def poke(self) -> None:
        """New events may be in the log: wake the consumers (cheap; call it freely)."""
        if not self._wake.is_set():
            self._wake.set()

    async def run(self, store: Store) -> None:
        """Take the lease (waiting while another process holds it), run the consumers
        while it is held, and take it again if it is lost. Runs until cancelled."""
        self._wake = anyio.Event()  # of this loop
        while True:
            lease = await self._acquire(store)
            log.info("sessiontrack consumer group %r: leading in this process", self.name)
            try:
                await self._lead(store, lease)
            finally:
                self.leading = False
                self._tg = None
                await lease.release()
            log.warning("sessiontrack consumer group %r: lease lost; retrying", self.name)

    async def _acquire(self, store: Store) -> Lease:
        waiting_logged = False
        while True:
            try:
                lease = await store.acquire_lease(self.name)
            except NotImplementedError:
                raise
            except Exception as exc:
                log.warning(
                    "sessiontrack consumer group %r: taking the lease failed: %s",
                    self.name,
                    exc,
                    exc_info=not store.is_transient(exc),
                )
                lease = None
            if lease is not None:
                return lease
            if not waiting_logged:
                log.info(
                    "sessiontrack consumer group %r: another process holds the lease; "
                    "retrying every %ss",
                    self.name,
                    self.lease_retry,
                )
                waiting_logged = True
            await anyio.sleep(self.lease_retry)

    async def _lead(self, store: Store, lease: Lease) -> None:
        self._store = store
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.leading = True
            for consumer in list(self._consumers.values()):
                tg.start_soon(self._consume, consumer)
            tg.start_soon(self.while_leading, store)
            while await self._sleep_then(lease):
                pass
            tg.cancel_scope.cancel()

    async def _sleep_then(self, lease: Lease) -> bool:
        await anyio.sleep(self.lease_check)
        return await lease.alive()

    async def while_leading(self, store: Store) -> None:
        """Runs beside the consumers while this process holds the lease, cancelled when
        it is lost: a subclass's housekeeping (reloading subscriptions, pruning logs).
        The default does nothing."""

    async def _consume(self, consumer: Consumer) -> None:
        name = consumer.name
        with anyio.CancelScope() as scope:
            old = self._scopes.get(name)
            if old is not None:
                old.cancel()
            self._scopes[name] = scope
            try:
                await self._consume_loop(consumer)
            finally:
                if self._scopes.get(name) is scope:
                    del self._scopes[name]
                with anyio.CancelScope(shield=True):
                    try:
                        await consumer.stopped()
                    except Exception:
                        log.exception("consumer %r: stopped() failed", name)

    async def _consume_loop(self, consumer: Consumer) -> None:
        store = self._store
        assert store is not None
        name, initial, cap = consumer.name, *self.retry
        failures = 0
        cursor: int | None = None
        while True:
            wake = self._wake
            try:
                if cursor is None and not consumer.creates_cursor:
                    cursor = await store.read_cursor(name)
                    if cursor is None:
                        log.info("consumer %r: it has no cursor; stopping it", name)
                        self._consumers.pop(name, None)
                        return
                if cursor is None:
                    start = None if consumer.start == "head" else 0
                    cursor = await store.create_cursor(name, start)
                events = await store.events_after(cursor, limit=consumer.batch_size)
                if not events:
                    failures = 0
                    with anyio.move_on_after(self.poll_interval):
                        await wake.wait()
                    if self._wake is wake and wake.is_set():
                        self._wake = anyio.Event()
                    continue
                done = await consumer.handle(events)
                upto = events[-1].seq if done is None else min(done, events[-1].seq)
                if upto <= cursor and consumer.active:  # nothing handled: not now
                    await anyio.sleep(self.poll_interval)
                    continue
                if upto > cursor:
                    if not await store.advance_cursor(name, upto):
                        log.info("consumer %r: its cursor was deleted; stopping it", name)
                        self._consumers.pop(name, None)
                        return
                    cursor = upto
                failures = 0
                if not consumer.active:
                    log.info("consumer %r: inactive; the group stops running it", name)
                    self._consumers.pop(name, None)
                    return
            except Exception:
                # cancelled meanwhile (shutdown, lease lost): that, not the error, ends it
                await anyio.lowlevel.checkpoint_if_cancelled()
                failures += 1
                delay = backoff(failures, initial, cap)
                log.exception(
                    "consumer %r failed after seq %s (%d in a row); retrying in %.1f s",
                    name,
                    cursor,
                    failures,
                    delay,
                )
                await anyio.sleep(delay)
