"""Folding committed events into additive analytics rollups, per flow version.

Pure Python, no I/O. The writer runs it in each batch's transaction on the batch's
:class:`~sessiontrack.events.StoredEvent` list (seq order) and the analytics state of the
batch's sessions (their :class:`Trace`), and ``rebuild`` runs the same code over the
whole log, so both give the same rollups. What comes out:

- :attr:`Rollup.counts`: ``(chatbot_id, metric, bucket, version, dim) → delta`` for
  ``an_counts``; :meth:`Rollup.count_rows` writes each delta to both grains (the
  quarter-hour ``bucket`` of the session's start, and its UTC day).
- :attr:`Rollup.bins`: ``(chatbot_id, metric, bucket, version, dim, bin) → delta`` for
  ``an_bins`` (sketch bins, see :mod:`._sketch`; ``messages`` bins are the counts).
- :attr:`Rollup.paths`: every ``(chatbot_id, path key)`` a session passed through, with
  its nodes, for the ``an_paths`` dictionary (all of them, so the dictionary does not
  depend on how the log was cut into batches).
- the traces that changed (:meth:`Rollup.changed`), for ``an_traces``.

The metrics and the visit/wait definitions are those of docs/analytics.md. Times are
clamped at zero: a report stamped before the one it follows (clocks of several processes)
gives a time of 0, never a negative one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .. import events as ev
from ..events import StoredEvent
from ..status import TERMINAL_STATUSES
from ._sketch import ZERO_BIN, bin_of

SEP: Final = "\x1f"
"""Joins the parts of a composite ``dim``; an edge's node ids are escaped (:func:`escape`)."""
REBUILDS: Final = "analytics_rebuilds"
"""The ``state`` key a rebuild increments (writers forget the path rows they wrote)."""
MAX_PATH: Final = 100
"""Path entries kept per session; a longer path keeps its first ``MAX_PATH``."""
QUARTER: Final = 900
DAY: Final = 86400
GRAIN_QUARTER: Final = 0
GRAIN_DAY: Final = 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_QUARTER_TD: Final = timedelta(seconds=QUARTER)
_MS: Final = timedelta(milliseconds=1)
_WAITING: Final = "waiting_input"
_MEMO_MAX: Final = 100_000

CountKey = tuple[str, str, int, str, str]
BinKey = tuple[str, str, int, str, str, int]


def path_key(nodes: Sequence[str], truncated: bool = False) -> str:
    """The key of a path: the first 16 hex digits of the SHA-256 of ``json.dumps(nodes)``,
    with ``"+"`` appended for a truncated path. The version is not part of it."""
    digest = hashlib.sha256(json.dumps(list(nodes)).encode()).hexdigest()[:16]
    return digest + "+" if truncated else digest


EMPTY_PATH_KEY: Final = path_key([])
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def escape(node: str) -> str:
    """A node id without :data:`SEP`: ``\\`` is doubled and :data:`SEP` becomes ``\\f``,
    so ``escape(a) + SEP + escape(b)`` splits back at its one :data:`SEP`."""
    return node.replace("\\", "\\\\").replace(SEP, "\\f")


def unescape(text: str) -> str:
    """The node id :func:`escape` made ``text`` from."""
    return _ESCAPED.sub(lambda m: SEP if m.group(1) == "f" else m.group(1), text)


def split_edge(dim: str) -> tuple[str, str]:
    """``(source, target)`` of an ``edge`` dim."""
    source, _, target = dim.partition(SEP)
    return unescape(source), unescape(target)


def quarter_of(at: datetime) -> int:
    """Epoch seconds of the UTC quarter-hour ``at`` falls in."""
    return (at - _EPOCH) // _QUARTER_TD * QUARTER


def day_of(bucket: int) -> int:
    """Epoch seconds of the UTC midnight of a quarter-hour bucket."""
    return bucket - bucket % DAY


@dataclass(slots=True, eq=False)
class Trace:
    """The analytics state of one session (a row of ``an_traces``)."""

    session_id: str
    chatbot_id: str
    version: str
    started_at: datetime
    status: str = "running"
    path_key: str = EMPTY_PATH_KEY
    p: list[str] = field(default_factory=list)  # node ids, in order, at most MAX_PATH
    t: list[float] = field(default_factory=list)  # ms since the start, of each entry
    x: bool = False  # truncated
    last: str | None = None  # the last executed node
    vo: float | None = None  # the open visit's start (ms)
    ws: float | None = None  # the open wait's start (ms)
    wm: float = 0.0  # wait of the open visit so far (ms)
    hw: bool = False  # the open visit had a wait
    d: float | None = None  # duration (ms) once ended
    # nodes executed, edges, nodes gone on from: derived from p until truncated, kept
    # (and stored) once it is; built when first needed
    seen: set[str] | None = None
    edges: set[tuple[str, str]] | None = None
    onward: set[str] | None = None
    bucket: int = 0
    dirty: bool = False
    new: bool = False

    def __post_init__(self) -> None:
        self.bucket = quarter_of(self.started_at)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def state(self) -> dict[str, Any]:
        """The ``state`` JSON (default values left out)."""
        s: dict[str, Any] = {"p": self.p, "t": self.t}
        if self.x:
            s["x"] = True
            s["l"] = self.last
            s["vs"] = sorted(self._seen())
            s["es"] = sorted(list(e) for e in self._edges())
            s["on"] = sorted(self._onward())
        if self.vo is not None:
            s["vo"] = self.vo
        if self.ws is not None:
            s["ws"] = self.ws
        if self.wm:
            s["wm"] = self.wm
        if self.hw:
            s["hw"] = True
        if self.d is not None:
            s["d"] = self.d
        return s

    @classmethod
    def from_row(
        cls,
        session_id: str,
        chatbot_id: str,
        version: str,
        started_at: datetime,
        status: str,
        key: str,
        state: dict[str, Any],
    ) -> Trace:
        p = state.get("p") or []
        tr = cls(
            session_id,
            chatbot_id,
            version,
            started_at,
            status,
            key,
            p,
            state.get("t") or [],
            bool(state.get("x")),
            state.get("l") if state.get("x") else (p[-1] if p else None),
            state.get("vo"),
            state.get("ws"),
            state.get("wm", 0.0),
            bool(state.get("hw")),
            state.get("d"),
        )
        if tr.x:
            tr.seen = set(state.get("vs") or ())
            tr.edges = {(a, b) for a, b in state.get("es") or ()}
            tr.onward = set(state.get("on") or ())
        return tr

    def _seen(self) -> set[str]:
        if self.seen is None:
            self.seen = set(self.p)
        return self.seen

    def _edges(self) -> set[tuple[str, str]]:
        if self.edges is None:
            self.edges = set(zip(self.p, self.p[1:], strict=False))
        return self.edges

    def _onward(self) -> set[str]:
        if self.onward is None:
            self.onward = set(self.p[:-1])
        return self.onward


class Rollup:
    """Deltas of one batch (or one chunk of a replay) over ``traces`` (by session id:
    those of the batch's sessions that have one; new sessions get theirs here).

    What depends on a session's current state only (its status, its last node's exit,
    its path, and the ended-path figures) is not moved at every event: each session's
    state is noted when the batch first touches it, and :meth:`settle` counts the
    difference once (-1 for the state before, +1 for the state after), which is what the
    moves add up to. ``path_keys`` memoises :func:`path_key` by (key of the path so far,
    next node); share one between batches.
    """

    def __init__(
        self, traces: dict[str, Trace], path_keys: dict[tuple[str, str], str] | None = None
    ) -> None:
        self.traces = traces
        self.counts: dict[CountKey, float] = {}
        self.bins: dict[BinKey, int] = {}
        self.paths: dict[tuple[str, str], list[str]] = {}  # (chatbot_id, key) → nodes
        self.path_keys = {} if path_keys is None else path_keys
        self._before: dict[str, tuple[str, str | None, str, float | None] | None] = {}
        self.failed = False  # set by a writer that skips the rollups of a failed fold

    # --- folding ---------------------------------------------------------------------

    def add(self, events: Iterable[StoredEvent]) -> None:
        traces, before = self.traces, self._before
        for e in events:
            kind = e.kind
            sid = e.session_id
            if kind == ev.SESSION_STARTED:
                if sid not in traces:
                    self._start(e)
                continue
            handler = _HANDLERS.get(kind)
            if handler is None:
                continue
            tr = traces.get(sid)
            if tr is None:  # started while analytics were off: rebuild covers it
                continue
            if sid not in before:
                before[sid] = (tr.status, tr.last, tr.path_key, tr.d)
            handler(self, tr, e)

    def _count(self, tr: Trace, metric: str, dim: str, delta: float) -> None:
        key = (tr.chatbot_id, metric, tr.bucket, tr.version, dim)
        counts = self.counts
        counts[key] = counts.get(key, 0) + delta

    def _bin(self, tr: Trace, metric: str, dim: str, b: int, delta: int = 1) -> None:
        key = (tr.chatbot_id, metric, tr.bucket, tr.version, dim, b)
        bins = self.bins
        bins[key] = bins.get(key, 0) + delta

    def _start(self, e: StoredEvent) -> None:
        tr = Trace(e.session_id, e.chatbot_id, e.flow_version or "", e.at)
        tr.dirty = tr.new = True
        self.traces[e.session_id] = tr
        self._before[e.session_id] = None
        self.paths.setdefault((tr.chatbot_id, tr.path_key), [])

    def _node(self, tr: Trace, e: StoredEvent) -> None:
        # the hot path: dict updates inlined
        d = e.data
        node = d["node_id"]
        m = (e.at - tr.started_at) / _MS
        last = tr.last
        if tr.vo is not None and last is not None:
            self._close(tr, last, m)
        counts = self.counts
        cid, b, version = tr.chatbot_id, tr.bucket, tr.version
        key: CountKey = (cid, "node.visits", b, version, node)
        counts[key] = counts.get(key, 0) + 1
        if d.get("error") is not None:
            key = (cid, "node.errors", b, version, node)
            counts[key] = counts.get(key, 0) + 1
        seen = tr.seen if tr.seen is not None else tr._seen()
        if node not in seen:
            seen.add(node)
            key = (cid, "node.sessions", b, version, node)
            counts[key] = counts.get(key, 0) + 1
        if last is not None:
            edges = tr.edges if tr.edges is not None else tr._edges()
            pair = (last, node)
            if pair not in edges:
                edges.add(pair)
                key = (cid, "edge", b, version, escape(last) + SEP + escape(node))
                counts[key] = counts.get(key, 0) + 1
            onward = tr.onward if tr.onward is not None else tr._onward()
            if last not in onward:
                onward.add(last)
                key = (cid, "node.onward", b, version, last)
                counts[key] = counts.get(key, 0) + 1
        tr.last = node
        if not tr.x:
            self._grow(tr, node, m)
        if tr.status in TERMINAL_STATUSES:  # a node of the grace window: a visit of no
            self._bin(tr, "node.bot", node, ZERO_BIN)  # time, and one node more
            self._count(tr, "ended_nodes", "", 1)
        else:
            tr.vo, tr.ws, tr.wm, tr.hw = m, None, 0.0, False
        tr.dirty = True

    def _grow(self, tr: Trace, node: str, m: float) -> None:
        """Add ``node`` to the path (or mark it truncated) and key it."""
        p = tr.p
        if len(p) < MAX_PATH:
            p.append(node)
            tr.t.append(m)
            memo = (tr.path_key, node)
            key = self.path_keys.get(memo)
            if key is None:
                key = path_key(p)
                if len(self.path_keys) >= _MEMO_MAX:
                    self.path_keys.clear()
                self.path_keys[memo] = key
        else:
            tr.x = True
            key = path_key(p, True)
        tr.path_key = key
        pk = (tr.chatbot_id, key)
        if pk not in self.paths:
            self.paths[pk] = list(p)

    def _close(self, tr: Trace, node: str, m: float) -> None:
        """Close the open visit of ``node`` at ``m`` ms."""
        assert tr.vo is not None
        wait = tr.wm
        if tr.ws is not None:
            wait += max(0.0, m - tr.ws)
        bins = self.bins
        if tr.hw:
            key = (tr.chatbot_id, "node.wait", tr.bucket, tr.version, node, bin_of(wait))
            bins[key] = bins.get(key, 0) + 1
        bot = m - tr.vo - wait
        b = bin_of(bot) if bot > 0.0 else ZERO_BIN
        key = (tr.chatbot_id, "node.bot", tr.bucket, tr.version, node, b)
        bins[key] = bins.get(key, 0) + 1
        tr.vo, tr.ws, tr.wm, tr.hw = None, None, 0.0, False

    def _message(self, tr: Trace, e: StoredEvent) -> None:
        if tr.ended:  # a message of the grace window: the session's count grows
            mc = int(e.data.get("message_count") or 0)
            self._count(tr, "ended_messages", "", 1)
            self._bin(tr, "messages", "", mc - 1, -1)
            self._bin(tr, "messages", "", mc, 1)
        elif tr.ws is not None and e.data.get("direction") == "inbound":
            m = (e.at - tr.started_at) / _MS
            tr.wm += max(0.0, m - tr.ws)
            tr.ws = None
            tr.dirty = True

    def _status(self, tr: Trace, e: StoredEvent) -> None:
        status = str(e.data.get("status"))
        # every report of waiting_input opens a wait, also one repeated after an answer
        # without a status in between (a second question at the same node)
        if status == _WAITING and tr.vo is not None and tr.ws is None:
            tr.ws = (e.at - tr.started_at) / _MS
            tr.hw = True
            tr.dirty = True
        if status != tr.status:
            tr.status = status
            tr.dirty = True

    def _complete(self, tr: Trace, e: StoredEvent) -> None:
        if tr.ended:
            return
        d = e.data
        status = str(d.get("status"))
        m = (e.at - tr.started_at) / _MS
        duration = max(0.0, m)
        messages = int(d.get("total_messages") or 0)
        reason = d.get("reason")
        if reason is not None:
            self._count(tr, "reason", status + SEP + str(reason), 1)
        self._count(tr, "ended_duration_ms", "", duration)
        self._count(tr, "ended_messages", "", messages)
        self._count(tr, "ended_nodes", "", int(d.get("total_nodes") or 0))
        self._bin(tr, "duration", "", bin_of(duration))
        self._bin(tr, "messages", "", messages)
        if tr.vo is not None and tr.last is not None:
            self._close(tr, tr.last, m)
        tr.status = status
        tr.d = duration
        tr.dirty = True

    def _llm_call(self, tr: Trace, e: StoredEvent) -> None:
        d = e.data
        tokens_in, tokens_out, cost = d.get("input_tokens"), d.get("output_tokens"), d.get("cost")
        if tokens_in:
            self._count(tr, "tokens_in", "", tokens_in)
        if tokens_out:
            self._count(tr, "tokens_out", "", tokens_out)
        if cost:
            self._count(tr, "cost", "", float(cost))

    def settle(self) -> None:
        """Count the change of every touched session's current state (see the class)."""
        traces = self.traces
        for sid, old in self._before.items():
            tr = traces[sid]
            new = (tr.status, tr.last, tr.path_key, tr.d)
            if old == new:
                continue
            if old is not None:
                self._current(tr, *old, -1)
            self._current(tr, *new, 1)
        self._before = {}

    def _current(
        self, tr: Trace, status: str, last: str | None, key: str, d: float | None, sign: int
    ) -> None:
        """The counts of a session's state (``sign`` -1 to take them away)."""
        self._count(tr, "status", status, sign)
        self._count(tr, "path", key, sign)
        ended = status in TERMINAL_STATUSES
        if last is not None:
            self._count(tr, "node.exit", last + SEP + (status if ended else "active"), sign)
        if ended:
            self._count(tr, "path.ended", key, sign)
            if status == "completed":
                self._count(tr, "path.completed", key, sign)
            self._bin(tr, "path.duration", key, bin_of(d or 0.0), sign)

    # --- results ---------------------------------------------------------------------

    def count_rows(self) -> list[tuple[str, str, int, int, str, str, float]]:
        """``(chatbot_id, metric, grain, bucket, version, dim, delta)``, both grains, the
        deltas that are not zero."""
        self.settle()
        out: dict[tuple[str, str, int, int, str, str], float] = {}
        for (cid, metric, bucket, version, dim), v in self.counts.items():
            if not v:
                continue
            out[(cid, metric, GRAIN_QUARTER, bucket, version, dim)] = v
            day = (cid, metric, GRAIN_DAY, day_of(bucket), version, dim)
            out[day] = out.get(day, 0) + v
        return [(*k, v) for k, v in out.items() if v]

    def bin_rows(self) -> list[tuple[str, str, int, int, str, str, int, int]]:
        """``(chatbot_id, metric, grain, bucket, version, dim, bin, delta)``, both grains."""
        self.settle()
        out: dict[tuple[str, str, int, int, str, str, int], int] = {}
        for (cid, metric, bucket, version, dim, b), n in self.bins.items():
            if not n:
                continue
            out[(cid, metric, GRAIN_QUARTER, bucket, version, dim, b)] = n
            day = (cid, metric, GRAIN_DAY, day_of(bucket), version, dim, b)
            out[day] = out.get(day, 0) + n
        return [(*k, n) for k, n in out.items() if n]

    def path_rows(
        self, known: set[tuple[str, str]] | None = None
    ) -> list[tuple[str, str, list[str]]]:
        """``(chatbot_id, path_key, nodes)`` of every path key met, but those in ``known``."""
        return [
            (cid, key, nodes)
            for (cid, key), nodes in self.paths.items()
            if known is None or (cid, key) not in known
        ]

    def changed(self) -> list[Trace]:
        """The traces this batch changed (new ones included)."""
        return [tr for tr in self.traces.values() if tr.dirty]


_HANDLERS = {
    ev.NODE_EXECUTED: Rollup._node,
    ev.MESSAGE: Rollup._message,
    ev.STATUS_CHANGED: Rollup._status,
    ev.SESSION_COMPLETED: Rollup._complete,
    ev.LLM_CALL: Rollup._llm_call,
}
