"""``SyncTracker``: the tracker for synchronous engines (a state machine, a thread per chat).

It runs a :class:`~sessiontrack.Tracker` on an asyncio loop in a daemon thread of its own.
The engine calls the hooks from any of its threads, as it would with an async tracker
(they only validate and enqueue); ``flush``, ``drain``, ``stop``, ``stop_many``,
``active_session``, ``purge``, ``apply_retention``, ``erase``, ``audit`` and every
``sessions`` query are blocking calls that run on that loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, Unpack

import pluggy

from ._intake import CLOSING, NOT_STARTED
from .abc import Store
from .analytics import Analytics
from .errors import TrackerNotRunning
from .models import AuditRecord, ErasureResult, Principal, StopManyResult
from .query import SessionQueries
from .tracker import Tracker, TrackerOptions

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class SyncTracker:
    """A :class:`~sessiontrack.Tracker` for code that does not run an event loop.

    Use it as a context manager (or call :meth:`start` and :meth:`close`)::

        with sessiontrack.SyncTracker("sqlite+aiosqlite:///sessions.db") as tracker:
            tracker.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")

    :param url_or_engine: as for :class:`~sessiontrack.Tracker`; an ``AsyncEngine`` must
        not be bound to another running loop.
    :param options: every keyword option of :class:`~sessiontrack.Tracker`.

    ``tracker`` is the :class:`~sessiontrack.Tracker` itself (the pluggy plugin; register
    it on the engine's own manager if it has one), ``plugin_manager`` its manager and
    ``hook`` that manager's hooks. The tracker → host hooks
    (``sessiontrack_stop_requested``) run on the tracker's thread: an implementation
    should hand the stop to the engine's thread rather than do the engine's work there,
    and must not call this object's blocking methods (they would wait for themselves).
    ``subscribe`` is not offered: iterate events with an async tracker.
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine | Store = "sqlite+aiosqlite:///sessiontrack.db",
        **options: Unpack[TrackerOptions],
    ) -> None:
        self.tracker = Tracker(url_or_engine, **options)
        self.plugin_manager: pluggy.PluginManager = self.tracker.plugin_manager
        self.hook = self.plugin_manager.hook
        self.sessions = SyncSessionQueries(self)
        self.analytics = SyncAnalytics(self)
        self._shutdown_timeout = options.get("shutdown_timeout", 30.0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing: asyncio.Event | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SyncTracker({self.tracker.store!r})"

    def __enter__(self) -> SyncTracker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self.tracker.running

    def start(self) -> None:
        """Start the loop's thread and the tracker on it; returns once it accepts reports.
        :raises: what :meth:`Tracker.start` raises (the database is unreachable, say)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("tracker already started")
            started: concurrent.futures.Future[None] = concurrent.futures.Future()
            thread = threading.Thread(
                target=self._run, args=(started,), name="sessiontrack-tracker", daemon=True
            )
            thread.start()
            try:
                started.result()
            except BaseException:
                thread.join()
                raise
            self._thread = thread

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        asyncio.run(self._main(started))

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        try:
            await self.tracker.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        try:
            await self._closing.wait()
        finally:
            await self.tracker.aclose()

    def close(self) -> None:
        """Stop accepting reports, commit what was accepted (waiting ``shutdown_timeout``
        at the most, as :meth:`Tracker.aclose`) and end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            assert self._loop is not None and self._closing is not None
            self._loop.call_soon_threadsafe(self._closing.set)
            thread.join(self._shutdown_timeout + 10)
            if thread.is_alive():
                log.error("sessiontrack: the tracker's thread did not end after closing")

    def call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the tracker's loop and return its result (blocking)."""
        loop, thread = self._loop, self._thread
        if thread is None or loop is None:
            coro.close()
            raise TrackerNotRunning(NOT_STARTED if loop is None else CLOSING)
        if threading.current_thread() is thread:
            coro.close()
            raise RuntimeError(
                "a blocking SyncTracker call on the tracker's own thread would wait for "
                "itself (in a tracker → host hook): hand the work to another thread"
            )
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop has closed: close() ran meanwhile
            coro.close()
            raise TrackerNotRunning(CLOSING) from None
        try:
            while True:
                try:
                    return future.result(timeout=0.5)
                except concurrent.futures.TimeoutError:
                    if future.done():
                        raise  # the call's own TimeoutError
                    if not thread.is_alive():  # the loop ended without running it
                        raise TrackerNotRunning(CLOSING) from None
        except concurrent.futures.CancelledError:  # the loop shut down under it
            raise TrackerNotRunning(CLOSING) from None
        except BaseException:
            future.cancel()  # KeyboardInterrupt while waiting: do not leave it running
            raise

    # --- the blocking API ---------------------------------------------------------------

    def flush(self) -> None:
        """Return once everything reported before this call is committed and published
        (:meth:`Tracker.flush`)."""
        self.call(self.tracker.flush())

    def drain(self) -> None:
        """Back-pressure (:meth:`Tracker.drain`): blocks while the buffer is above
        ``high_water``, until the writer has brought it down."""
        self.call(self.tracker.drain())

    def stop(
        self,
        session_id: str,
        principal: Principal | str | None = None,
        *,
        reason: str = "stopped_by_api",
    ) -> None:
        """Stop an active session (:meth:`Tracker.stop`)."""
        self.call(self.tracker.stop(session_id, principal, reason=reason))

    def stop_many(
        self,
        ids: Iterable[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        principal: Principal | str | None = None,
        reason: str = "stopped_by_api",
    ) -> StopManyResult:
        """Stop several sessions, by id or by filter (:meth:`Tracker.stop_many`)."""
        return self.call(
            self.tracker.stop_many(ids, filter=filter, principal=principal, reason=reason)
        )

    def active_session(self, chatbot_id: str, conversation_id: str | int) -> str | None:
        """The conversation's active session, or ``None`` (:meth:`Tracker.active_session`)."""
        return self.call(self.tracker.active_session(chatbot_id, conversation_id))

    def purge(self, older_than: timedelta, **kwargs: Any) -> int:
        """Delete sessions that ended more than ``older_than`` ago (:meth:`Tracker.purge`)."""
        return self.call(self.tracker.purge(older_than, **kwargs))

    def apply_retention(self) -> int:
        """Purge now what is past its retention (:meth:`Tracker.apply_retention`)."""
        return self.call(self.tracker.apply_retention())

    def erase(
        self,
        *,
        phone: str | None = None,
        conversation_id: str | None = None,
        session_id: str | None = None,
        principal: Principal | str | None = None,
        scrub: bool = True,
        batch_size: int = 500,
    ) -> ErasureResult:
        """Remove every stored trace of one person (:meth:`Tracker.erase`)."""
        return self.call(
            self.tracker.erase(
                phone=phone,
                conversation_id=conversation_id,
                session_id=session_id,
                principal=principal,
                scrub=scrub,
                batch_size=batch_size,
            )
        )

    def audit(self, **kwargs: Any) -> list[AuditRecord]:
        """The audit records, newest first (:meth:`Tracker.audit`)."""
        return self.call(self.tracker.audit(**kwargs))


def _blocking(
    method: Callable[Concatenate[SessionQueries, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncSessionQueries, P], R]:
    """A blocking twin of a :class:`SessionQueries` method: same arguments, same result."""

    def call(self: SyncSessionQueries, /, *args: P.args, **kwargs: P.kwargs) -> R:
        owner = self._owner
        return owner.call(method(owner.tracker.sessions, *args, **kwargs))

    functools.update_wrapper(call, method)  # name, docstring and signature
    return call


def _next_chunk(stream: AsyncIterator[bytes]) -> Coroutine[Any, Any, bytes | None]:
    async def step() -> bytes | None:
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return None

    return step()


def _blocking_export(self: SyncSessionQueries, /, **kwargs: Any) -> Iterator[bytes]:
    owner = self._owner
    # checked now, in the caller's thread, as the coroutine method checks before it reads
    stream = owner.tracker.sessions.export(**kwargs)
    return _chunks(owner, stream)


def _chunks(owner: SyncTracker, stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The chunks of ``stream``, each read on the tracker's loop; a consumer that stops
    early closes it there too."""
    try:
        while (chunk := owner.call(_next_chunk(stream))) is not None:
            yield chunk
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None and owner.running:
            owner.call(close())


functools.update_wrapper(_blocking_export, SessionQueries.export)


class SyncSessionQueries:
    """``SyncTracker.sessions``: every :class:`~sessiontrack.query.SessionQueries` method,
    with the same arguments and results, as a blocking call."""

    def __init__(self, owner: SyncTracker) -> None:
        self._owner = owner

    list = _blocking(SessionQueries.list)
    active = _blocking(SessionQueries.active)
    completed = _blocking(SessionQueries.completed)
    by_chatbot = _blocking(SessionQueries.by_chatbot)
    get = _blocking(SessionQueries.get)
    messages = _blocking(SessionQueries.messages)
    stats = _blocking(SessionQueries.stats)
    chatbots = _blocking(SessionQueries.chatbots)
    search_messages = _blocking(SessionQueries.search_messages)
    export = _blocking_export
    """:meth:`SessionQueries.export`, blocking: an iterator of the same chunks of bytes,
    each read on the tracker's loop."""

    def session_filter(self, **kwargs: Any) -> Any:
        return self._owner.tracker.sessions.session_filter(**kwargs)

    functools.update_wrapper(session_filter, SessionQueries.session_filter)


def _blocking_analytics(
    method: Callable[Concatenate[Analytics, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncAnalytics, P], R]:
    """A blocking twin of an :class:`Analytics` method: same arguments, same result."""

    def call(self: SyncAnalytics, /, *args: P.args, **kwargs: P.kwargs) -> R:
        owner = self._owner
        return owner.call(method(owner.tracker.analytics, *args, **kwargs))

    functools.update_wrapper(call, method)
    return call


class SyncAnalytics:
    """``SyncTracker.analytics``: every :class:`~sessiontrack.analytics.Analytics` method,
    with the same arguments and results, as a blocking call."""

    def __init__(self, owner: SyncTracker) -> None:
        self._owner = owner

    summary = _blocking_analytics(Analytics.summary)
    nodes = _blocking_analytics(Analytics.nodes)
    paths = _blocking_analytics(Analytics.paths)
    funnel = _blocking_analytics(Analytics.funnel)
    versions = _blocking_analytics(Analytics.versions)


__all__ = ["SyncAnalytics", "SyncSessionQueries", "SyncTracker"]
