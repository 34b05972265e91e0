"""What every engine adapter needs: sessions by conversation, flows, nodes, stops.

An adapter translates one engine's extension points into hook calls. The parts that do
not depend on the engine are here:

- **sessions by conversation**: the engine knows its own key (a LangGraph ``thread_id``, a
  Telegram chat id); :meth:`EngineAdapter.session_for` finds that conversation's active
  session (from a local cache, else :meth:`Tracker.active_session
  <sessiontrack.Tracker.active_session>`, which also knows sessions reported and not yet
  committed, and, after a restart, the store) or starts a new one. A second conversation
  on the same key gets a new session once the first has ended;
- **the flow**: :func:`flow_graph` lays out the engine's nodes and edges in React Flow
  shape; :meth:`EngineAdapter.observe_edge` adds an edge first seen at run time to the
  same flow version (``sessiontrack_edge_observed``), once;
- **nodes**: :meth:`EngineAdapter.node` times a node and reports its error;
- **stops**: the adapter is a plugin on the tracker's manager; it keeps the stop requests
  of its own chatbot, marks the session stopped and calls :meth:`EngineAdapter.on_stop`;
  a session the tracker ended itself (expired) is forgotten, so that the conversation's
  next turn starts a new one, and :meth:`EngineAdapter.on_session_ended` is called.

Every method is a hook call or a dictionary operation: none waits on I/O, except
:meth:`~EngineAdapter.session_for` when the session is not cached (once per
conversation and process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .._ids import new_session_id
from ..events import SESSION_COMPLETED, StoredEvent
from ..hookspecs import hookimpl
from ..limits import TEXT
from ..tracker import Tracker

log = logging.getLogger(__name__)

_COLUMN_GAP = 260  # horizontal distance between layers of the laid-out graph, in pixels
_ROW_GAP = 110
_ENDED_KEPT = 10_000


class BlockingTracker(Protocol):
    """What an adapter uses of :class:`sessiontrack.SyncTracker`."""

    @property
    def tracker(self) -> Tracker: ...

    def active_session(self, chatbot_id: str, conversation_id: str) -> str | None: ...


def error_text(exc: BaseException | str) -> str:
    """How a node's or a call's error is reported: ``Type: message``, within the limit."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".rstrip(": ")
    return text[:TEXT]


def flow_graph(
    nodes: Iterable[str | tuple[str, str | None] | tuple[str, str | None, str | None]],
    edges: Iterable[tuple[str, str] | tuple[str, str, str | None]],
    *,
    entry: str | None = None,
) -> dict[str, Any]:
    """A React Flow graph of ``nodes`` (``id`` or ``(id, label[, type])``) and ``edges``
    (``(source, target[, label])``), laid out in layers from ``entry`` (default: the first
    node): each node one column after the first node that reaches it."""
    specs: dict[str, tuple[str, str]] = {}
    for item in nodes:
        parts: tuple[Any, ...] = (item,) if isinstance(item, str) else tuple(item)
        node_id = str(parts[0])
        label = parts[1] if len(parts) > 1 else None
        node_type = parts[2] if len(parts) > 2 else None
        specs[node_id] = (label or node_id, node_type or "default")
    edge_list = [(str(e[0]), str(e[1]), e[2] if len(e) > 2 else None) for e in edges]
    for source, target, _ in edge_list:
        for node_id in (source, target):
            specs.setdefault(node_id, (node_id, "default"))
    layers = _layers(list(specs), edge_list, entry)
    rows: dict[int, int] = {}
    out_nodes = []
    for node_id, (label, node_type) in specs.items():
        layer = layers[node_id]
        row = rows[layer] = rows.get(layer, -1) + 1
        out_nodes.append(
            {
                "id": node_id,
                "type": node_type,
                "position": {"x": layer * _COLUMN_GAP, "y": row * _ROW_GAP},
                "data": {"label": label},
            }
        )
    out_edges = []
    for source, target, label in edge_list:
        edge: dict[str, Any] = {"id": f"{source}->{target}", "source": source, "target": target}
        if label:
            edge["label"] = label
        out_edges.append(edge)
    return {"nodes": out_nodes, "edges": out_edges}


def _layers(
    order: list[str], edges: list[tuple[str, str, str | None]], entry: str | None
) -> dict[str, int]:
    """Breadth-first depth of each node from ``entry``; unreached nodes after the rest."""
    succ: dict[str, list[str]] = {}
    for source, target, _ in edges:
        succ.setdefault(source, []).append(target)
    depth: dict[str, int] = {}
    start = entry if entry is not None else (order[0] if order else None)
    queue = [start] if start is not None else []
    if start is not None:
        depth[start] = 0
    for node_id in queue:
        for nxt in succ.get(node_id, ()):
            if nxt not in depth:
                depth[nxt] = depth[node_id] + 1
                queue.append(nxt)
    last = max(depth.values(), default=-1) + 1
    return {n: depth.get(n, last) for n in order}


class EngineAdapter:
    """The engine-independent part of an adapter (see the module docstring).

    :param tracker: a running :class:`~sessiontrack.Tracker` (async engines) or
        :class:`~sessiontrack.SyncTracker` (engines that run in threads).
    :param chatbot_id: the bot this adapter reports for; stop requests for other chatbots
        are ignored.
    :param name: the bot's display name (default: ``chatbot_id``).
    """

    def __init__(
        self, tracker: Tracker | BlockingTracker, chatbot_id: str, *, name: str | None = None
    ) -> None:
        self._blocking: BlockingTracker | None = None
        if isinstance(tracker, Tracker):
            self.tracker = tracker
        else:
            self._blocking = tracker
            self.tracker = tracker.tracker
        self.chatbot_id = chatbot_id
        self.name = name or chatbot_id
        self.plugin_manager = self.tracker.plugin_manager
        self.hook = self.plugin_manager.hook
        self._lock = threading.Lock()
        self._sessions: dict[str, str] = {}  # conversation id → active session id
        self._conversations: dict[str, str] = {}  # session id → conversation id
        # conversations whose session this adapter ended: the next turn starts a new one
        # without asking the store (oldest first, at most _ENDED_KEPT of them)
        self._ended_here: dict[str, None] = {}
        self._stopped = _Recent()  # stopped sessions (the last _ENDED_KEPT of them)
        self._edges: set[tuple[str, str]] = set()
        self.make_session_id: Callable[[], str] = new_session_id
        """Gives each session this adapter starts its id (default: a new UUIDv7); a replay
        (:mod:`sessiontrack.testing`) sets it to give the recorded session's id."""
        self.plugin_manager.register(self)

    def close(self) -> None:
        """Unregister from the tracker's plugin manager (no more stop notifications)."""
        if self.plugin_manager.is_registered(self):
            self.plugin_manager.unregister(self)

    # --- the flow -----------------------------------------------------------------------

    def register_flow(self, flow: Mapping[str, Any], version: str | None = None) -> None:
        """Register the engine's graph as this chatbot's flow; known edges are noted so
        that :meth:`observe_edge` reports only new ones."""
        self.hook.sessiontrack_flow_registered(
            chatbot_id=self.chatbot_id, name=self.name, flow=flow, version=version
        )
        with self._lock:
            self._edges.update((str(e["source"]), str(e["target"])) for e in flow.get("edges", ()))

    def observe_edge(self, source: str, target: str, label: str | None = None) -> None:
        """Add ``source → target`` to the current flow version if this adapter has not
        seen it yet (engines that learn their graph as they run)."""
        key = (source, target)
        with self._lock:
            if key in self._edges:
                return
            self._edges.add(key)
        self.hook.sessiontrack_edge_observed(
            chatbot_id=self.chatbot_id, source=source, target=target, label=label
        )

    # --- sessions by conversation -------------------------------------------------------

    def cached_session(self, conversation_id: str | int) -> str | None:
        """The session this adapter knows for the conversation, without asking the
        tracker."""
        return self._sessions.get(str(conversation_id))

    async def session_for(self, conversation_id: str | int, **started: Any) -> tuple[str, bool]:
        """``(session_id, is_new)``: the conversation's active session, or a new one
        started with ``started`` (``contact``, ``variables``, ``metadata``…)."""
        conv = str(conversation_id)
        sid = self._sessions.get(conv)
        if sid is None and conv not in self._ended_here:
            sid = await self.tracker.active_session(self.chatbot_id, conv)
        return self._adopt(conv, sid, started)

    def session_for_sync(self, conversation_id: str | int, **started: Any) -> tuple[str, bool]:
        """:meth:`session_for` for synchronous engines (blocking; needs a
        :class:`~sessiontrack.SyncTracker`)."""
        if self._blocking is None:
            raise RuntimeError("session_for_sync() needs a SyncTracker; await session_for()")
        conv = str(conversation_id)
        sid = self._sessions.get(conv)
        if sid is None and conv not in self._ended_here:
            sid = self._blocking.active_session(self.chatbot_id, conv)
        return self._adopt(conv, sid, started)

    def _adopt(self, conv: str, sid: str | None, started: dict[str, Any]) -> tuple[str, bool]:
        # a stop that arrived while the tracker was asked: that session is over
        if sid is not None and sid not in self._stopped:
            self._remember(conv, sid)
            return sid, False
        return self.start_session(conv, **started), True

    def start_session(self, conversation_id: str | int, **started: Any) -> str:
        """Start a new session for the conversation (ending nothing) and return its id."""
        conv = str(conversation_id)
        sid = self.make_session_id()
        self.hook.sessiontrack_session_started(
            session_id=sid, chatbot_id=self.chatbot_id, conversation_id=conv, **started
        )
        self._remember(conv, sid)
        return sid

    def _remember(self, conv: str, sid: str) -> None:
        with self._lock:
            self._sessions[conv] = sid
            self._conversations[sid] = conv
            self._ended_here.pop(conv, None)

    def _forget(self, sid: str) -> str | None:
        with self._lock:
            conv = self._conversations.pop(sid, None)
            if conv is not None and self._sessions.get(conv) == sid:
                del self._sessions[conv]
                _keep(self._ended_here, conv)
            return conv

    def complete(
        self, session_id: str, status: str = "completed", reason: str | None = None
    ) -> None:
        """Report the session's end; the next turn of its conversation starts a new one."""
        self._forget(session_id)
        self.hook.sessiontrack_session_completed(
            session_id=session_id, status=status, reason=reason
        )

    # --- nodes and statuses -------------------------------------------------------------

    @contextmanager
    def node(
        self,
        session_id: str,
        node_id: str,
        *,
        node_type: str | None = None,
        label: str | None = None,
    ) -> Iterator[None]:
        """Time the block as one execution of ``node_id``; an exception is reported as the
        node's error and raised on."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.node_done(session_id, node_id, start, error=exc, node_type=node_type, label=label)
            raise
        self.node_done(session_id, node_id, start, node_type=node_type, label=label)

    def node_done(
        self,
        session_id: str,
        node_id: str,
        started: float,
        *,
        error: BaseException | str | None = None,
        node_type: str | None = None,
        label: str | None = None,
    ) -> None:
        """Report an execution of ``node_id`` that began at ``started``
        (:func:`time.perf_counter`)."""
        self.hook.sessiontrack_node_executed(
            session_id=session_id,
            node_id=node_id,
            node_type=node_type,
            label=label,
            duration_ms=(time.perf_counter() - started) * 1000,
            error=None if error is None else error_text(error),
        )

    def status(self, session_id: str, status: str, node_id: str | None = None) -> None:
        """Report an active status (``waiting_input`` when the engine waits for the
        customer, ``running`` when it resumes)."""
        self.hook.sessiontrack_status_changed(session_id=session_id, status=status, node_id=node_id)

    # --- stops --------------------------------------------------------------------------

    def stopped(self, session_id: str) -> bool:
        """Whether a stop was requested for the session: the engine must not continue it."""
        return session_id in self._stopped

    @hookimpl
    def sessiontrack_stop_requested(
        self, session_id: str, principal: str | None, chatbot_id: str
    ) -> None:
        # (pluggy passes an implementation only the arguments it names without a default)
        if chatbot_id != self.chatbot_id:
            return
        log.info("sessiontrack: stop requested for session %s (by %s)", session_id, principal)
        self._stop(session_id, self._forget(session_id))

    @hookimpl
    def sessiontrack_events_committed(self, events: Sequence[StoredEvent]) -> None:
        # a session of ours that ended without us: stopped (this hook and the stop request
        # arrive in either order: the first one handles it) or expired by the sweeper (the
        # conversation's next turn starts a new session instead of reporting to it)
        for event in events:
            if event.kind == SESSION_COMPLETED and event.session_id in self._conversations:
                conv = self._forget(event.session_id)
                if conv is None:
                    continue
                if event.data.get("status") == "stopped":
                    self._stop(event.session_id, conv)
                    continue
                try:
                    self.on_session_ended(event.session_id, conv)
                except Exception:
                    log.exception("on_session_ended failed for session %s", event.session_id)

    def _stop(self, session_id: str, conversation_id: str | None) -> None:
        """Mark the session stopped and call :meth:`on_stop`, once."""
        with self._lock:
            if session_id in self._stopped:
                return
            self._stopped.add(session_id)
        try:
            self.on_stop(session_id, conversation_id)
        except Exception:
            log.exception("on_stop failed for session %s", session_id)

    def on_session_ended(self, session_id: str, conversation_id: str) -> None:
        """Called (on the tracker's event loop) when a session of this adapter ended
        without it (the tracker's sweeper expired it); the adapter has forgotten it, so
        the conversation's next :meth:`session_for` starts a new one."""

    def on_stop(self, session_id: str, conversation_id: str | None) -> None:
        """Called (on the tracker's event loop) when a session of this chatbot was stopped
        through the API; adapters cancel the engine's run here."""


def _keep(bounded: dict[str, None], key: str) -> None:
    """Add ``key`` as the newest of ``bounded``, dropping the oldest past _ENDED_KEPT."""
    bounded.pop(key, None)
    bounded[key] = None
    if len(bounded) > _ENDED_KEPT:
        del bounded[next(iter(bounded))]


class _Recent(dict[str, None]):
    """A set of the last _ENDED_KEPT keys added (``in`` and ``add``)."""

    def add(self, key: str) -> None:
        _keep(self, key)
