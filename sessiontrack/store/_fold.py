"""Folding a batch of reports into log rows and session projection changes.

Pure Python, no I/O: the writer loads the sessions a batch touches, folds, and writes the
result in one transaction. Every lifecycle rule lives here:

- a session is created by its start; a second start for the same id is a *duplicate*;
- a report for a session that was never started is an *orphan*;
- a report after the session's terminal status is *late*, except a non-status report
  (node, message, variables …) of a ``completed`` session stamped no later than the
  completion grace window after the completion: the final node or goodbye message of
  the turn that completed it, stored in order (the status stays terminal);
- a message whose channel ``message_id`` the session already has is a *duplicate*;
- a terminal status ends the session: ``completed_at``, reason and duration are set.

Duplicates, orphans and late reports are dropped, counted and logged by the caller; they
never stop a batch. Orphans and late reports are also listed (:class:`Dropped`), so the
log can name the session and the hook.

Registering a version that exists again replaces its graph (keeping the edges observed
in it); sessions keep the version name they ran. Observed edges
(``sessiontrack_edge_observed``) need no session: they are listed in
:attr:`FoldResult.edges`, in order, and the store adds them to the stored graph.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import events as ev
from ..events import StoredEvent
from ..status import TERMINAL_STATUSES

Report = tuple[str, str, Any, dict[str, Any]]
"""``(kind, session_id, at, data)`` as the hook implementations enqueue it; ``at`` is an
aware datetime or a POSIX timestamp (float) taken at the call."""

FLOW_REGISTERED = "flow_registered"
EDGE_OBSERVED = "edge_observed"
_STATUS_KINDS = frozenset({ev.STATUS_CHANGED, ev.SESSION_COMPLETED})
SESSION_COLUMNS = (
    "id",
    "chatbot_id",
    "flow_version",
    "conversation_id",
    "customer_phone",
    "customer_name",
    "name_key",
    "status",
    "current_node_id",
    "current_node_label",
    "variables",
    "metadata",
    "started_at",
    "updated_at",
    "completed_at",
    "expires_at",
    "idle_timeout_s",
    "completion_reason",
    "node_count",
    "message_count",
    "last_seq",
    *ev.TOTALS,
)
MUTABLE_COLUMNS = (
    "status",
    "current_node_id",
    "current_node_label",
    "variables",
    "updated_at",
    "completed_at",
    "expires_at",
    "completion_reason",
    "node_count",
    "message_count",
    "last_seq",
    *ev.TOTALS,
)


@dataclass(slots=True)
class SessionState:
    """The projection row of one session while a batch is folded."""

    id: str
    chatbot_id: str
    flow_version: str | None
    conversation_id: str | None
    customer_phone: str | None
    customer_name: str | None
    name_key: str | None
    status: str
    current_node_id: str | None
    current_node_label: str | None
    variables: dict[str, Any]
    metadata: dict[str, Any]
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    idle_timeout_s: int | None
    completion_reason: str | None
    node_count: int
    message_count: int
    last_seq: int
    # the session's totals of LLM and tool calls (error_count: node errors as well)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    error_count: int = 0
    is_new: bool = False

    def row(self, columns: Iterable[str] = SESSION_COLUMNS) -> dict[str, Any]:
        return {c: getattr(self, c) for c in columns}


@dataclass(slots=True)
class Chatbot:
    name: str
    version: str | None


@dataclass(frozen=True, slots=True)
class Dropped:
    """An orphan or late report: which rule dropped it, for which session, from where."""

    reason: str  # "orphan" or "late"
    session_id: str
    hook: str
    status: str | None  # the session's status when the report arrived (None: no session)
    stop_id: str | None = None  # set for a report of Tracker.stop()


def hook_name(kind: str, data: dict[str, Any]) -> str:
    """The hook (or tracker part) a report came from, for log lines."""
    if kind == ev.SESSION_COMPLETED:
        if data.get("stop_requested"):
            return "Tracker.stop"
        if "if_overdue" in data:
            return "the expiry sweeper"
        if "node_id" in data:  # only a terminal status_changed carries one
            return "sessiontrack_status_changed"
    return f"sessiontrack_{kind}"


@dataclass(slots=True)
class FoldResult:
    events: list[StoredEvent] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    flow_labels: dict[tuple[str, str | None], dict[str, str]] = field(default_factory=dict)
    new_sessions: list[SessionState] = field(default_factory=list)
    changed_sessions: list[SessionState] = field(default_factory=list)
    count_deltas: dict[tuple[str, str], int] = field(default_factory=dict)
    flows: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)  # observed, in report order
    duplicates: int = 0
    orphans: int = 0
    late: int = 0
    last_seq: int = 0

    @property
    def event_rows(self) -> list[dict[str, Any]]:
        """The event log rows of :attr:`events`, column → value (the writer builds its
        statement's parameters from :attr:`events` directly)."""
        return [
            {
                "seq": e.seq,
                "session_id": e.session_id,
                "chatbot_id": e.chatbot_id,
                "kind": e.kind,
                "at": e.at,
                "flow_version": e.flow_version,
                "node_id": e.data.get("node_id"),
                "message_id": e.data.get("message_id"),
                "data": e.data,
            }
            for e in self.events
        ]


def to_datetime(at: Any) -> datetime:
    return at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)


def name_key(name: str | None) -> str | None:
    """What customer-name search matches against: the name, case-folded."""
    return name.casefold() if name else None


class Folder:
    """Folds one batch. ``labels(chatbot_id, version)`` maps node ids to flow labels."""

    def __init__(
        self,
        sessions: dict[str, SessionState],
        chatbots: dict[str, Chatbot],
        known_messages: set[tuple[str, str]],
        labels: Callable[[str, str | None], dict[str, str]],
        last_seq: int,
        idle_timeout_s: int | None,
        completion_grace_s: float = 0.0,
    ) -> None:
        self.sessions = sessions
        self.chatbots = chatbots
        self.known_messages = known_messages
        self.labels = labels
        self.idle_timeout_s = idle_timeout_s
        self.grace = timedelta(seconds=completion_grace_s) if completion_grace_s > 0 else None
        self.result = FoldResult(last_seq=last_seq)
        self._changed: dict[str, SessionState] = {}
        self._idle_deltas: dict[int, timedelta] = {}
        self._observed: dict[tuple[str, str | None], set[str]] = {}  # nodes of edges

    def fold(self, reports: Iterable[Report]) -> FoldResult:
        for kind, sid, at, data in reports:
            if kind == FLOW_REGISTERED:
                self._flow(data, to_datetime(at))
            elif kind == EDGE_OBSERVED:
                self._edge(data)
            else:
                self._report(kind, sid, to_datetime(at), data)
        res = self.result
        res.changed_sessions = [s for s in self._changed.values() if not s.is_new]
        return res

    def _flow(self, data: dict[str, Any], at: datetime) -> None:
        self.chatbots[data["chatbot_id"]] = Chatbot(data["name"], data["version"])
        self.result.flows.append({**data, "registered_at": at})
        # later reports of this batch label their nodes from this graph; the store caches
        # these labels only once the batch has committed
        self.result.flow_labels[(data["chatbot_id"], data["version"])] = flow_labels(data["flow"])

    def _edge(self, data: dict[str, Any]) -> None:
        self.result.edges.append(data)
        # the store adds the edge's nodes it lacks, labelled with their ids: later
        # reports of this batch label them so already
        cid, bot = data["chatbot_id"], self.chatbots.get(data["chatbot_id"])
        version = data["version"] or (bot.version if bot else None)
        self._observed.setdefault((cid, version), set()).update((data["source"], data["target"]))

    def _count(self, chatbot_id: str, status: str, delta: int) -> None:
        key = (chatbot_id, status)
        self.result.count_deltas[key] = self.result.count_deltas.get(key, 0) + delta

    def _report(self, kind: str, sid: str, at: datetime, data: dict[str, Any]) -> None:
        # Fold a copy: a batch is folded again when its transaction is retried.
        data = dict(data)
        res = self.result
        st = self.sessions.get(sid)
        if kind == ev.SESSION_STARTED:
            if st is not None:
                res.duplicates += 1
                return
            st = self._start(sid, at, data)
            self._count(st.chatbot_id, st.status, 1)
        elif st is None:
            res.orphans += 1
            res.dropped.append(Dropped("orphan", sid, hook_name(kind, data), None))
            return
        elif st.status in TERMINAL_STATUSES and not self._in_grace(kind, st, at):
            if data.get("if_overdue"):
                # The sweeper's own repeat: it saw the session overdue again before its
                # first expiry was committed (a slow commit, a short sweep interval).
                return
            res.late += 1
            stop_id = data.get("stop_id")
            res.dropped.append(Dropped("late", sid, hook_name(kind, data), st.status, stop_id))
            return
        else:
            fold = _FOLDS[kind]
            if not fold(self, st, at, data):
                return
        seq = res.last_seq = res.last_seq + 1
        st.last_seq = seq
        if at > st.updated_at:
            st.updated_at = at
        idle = st.idle_timeout_s
        if idle is not None and st.status not in TERMINAL_STATUSES:
            delta = self._idle_deltas.get(idle)
            if delta is None:
                delta = self._idle_deltas[idle] = timedelta(seconds=idle)
            expires_at = at + delta
            # a report stamped earlier than one already folded never pulls expiry back
            if st.expires_at is None or expires_at > st.expires_at:
                st.expires_at = expires_at
        self._changed[sid] = st
        res.events.append(
            StoredEvent(
                seq=seq,
                kind=kind,
                session_id=sid,
                chatbot_id=st.chatbot_id,
                at=at,
                flow_version=st.flow_version,
                data=data,
            )
        )

    def _in_grace(self, kind: str, st: SessionState, at: datetime) -> bool:
        """Whether a report after the end is one of the turn that completed the session: a
        non-status report of a ``completed`` session stamped within the grace window
        (a stop or an expiry cuts a session short: nothing after it belongs to it)."""
        return (
            self.grace is not None
            and kind not in _STATUS_KINDS
            and st.status == "completed"
            and st.completed_at is not None
            and at <= st.completed_at + self.grace
        )

    def _start(self, sid: str, at: datetime, data: dict[str, Any]) -> SessionState:
        chatbot_id = data["chatbot_id"]
        bot = self.chatbots.get(chatbot_id)
        expires_at: datetime | None = data.pop("expires_at", None)
        idle = None if expires_at is not None else self.idle_timeout_s
        variables = _loads(data.pop("variables", None))
        metadata = _loads(data.pop("metadata", None))
        st = SessionState(
            id=sid,
            chatbot_id=chatbot_id,
            flow_version=bot.version if bot else None,
            conversation_id=data.get("conversation_id"),
            customer_phone=data.get("customer_phone"),
            customer_name=data.get("customer_name"),
            name_key=name_key(data.get("customer_name")),
            status="running",
            current_node_id=None,
            current_node_label=None,
            variables=variables,
            metadata=metadata,
            started_at=at,
            updated_at=at,
            completed_at=None,
            expires_at=expires_at,
            idle_timeout_s=idle,
            completion_reason=None,
            node_count=0,
            message_count=0,
            last_seq=0,
            is_new=True,
        )
        data["chatbot_name"] = bot.name if bot else None
        data["variables"] = variables
        data["metadata"] = metadata
        data["expires_at"] = expires_at.isoformat() if expires_at else None
        self.sessions[sid] = st
        self.result.new_sessions.append(st)
        return st

    def _label(self, st: SessionState, node_id: str) -> str | None:
        key = (st.chatbot_id, st.flow_version)
        registered = self.result.flow_labels.get(key)
        labels = registered if registered is not None else self.labels(*key)
        label = labels.get(node_id)
        if label is None and node_id in self._observed.get(key, ()):
            return node_id
        return label

    def _node(self, st: SessionState, at: datetime, data: dict[str, Any]) -> bool:
        node_id = data["node_id"]
        if data.get("label") is None:
            data["label"] = self._label(st, node_id)
        st.node_count += 1
        st.current_node_id = node_id
        st.current_node_label = data["label"]
        data["node_count"] = st.node_count
        if data.get("error") is not None:
            st.error_count += 1
        data["totals"] = totals(st)
        return True

    def _message(self, st: SessionState, at: datetime, data: dict[str, Any]) -> bool:
        mid = data.get("message_id")
        if mid is not None:
            key = (mid, st.id)
            if key in self.known_messages:
                self.result.duplicates += 1
                return False
            self.known_messages.add(key)
        if data.get("payload") is not None:
            data["payload"] = _loads(data["payload"])
        st.message_count += 1
        data["message_count"] = st.message_count
        return True

    def _status(self, st: SessionState, at: datetime, data: dict[str, Any]) -> bool:
        data["previous_status"] = st.status
        self._count(st.chatbot_id, st.status, -1)
        self._count(st.chatbot_id, data["status"], 1)
        st.status = data["status"]
        node_id = data.get("node_id")
        if node_id is not None and node_id != st.current_node_id:
            st.current_node_id = node_id
            st.current_node_label = self._label(st, node_id)
        data["node_id"] = st.current_node_id
        data["node_label"] = st.current_node_label
        return True

    def _variables(self, st: SessionState, at: datetime, data: dict[str, Any]) -> bool:
        patch = _loads(data["variables"])
        data["variables"] = patch
        st.variables = {**st.variables, **patch}
        return True

    def _complete(self, st: SessionState, at: datetime, data: dict[str, Any]) -> bool:
        data.pop("stop_id", None)  # the stop's own token, not part of the event
        if data.pop("if_overdue", False) and (st.expires_at is None or st.expires_at > at):
            return False  # the sweeper saw it overdue, but activity queued since moved it on
        self._status(st, at, data)
        st.completed_at = at
        st.completion_reason = data.get("reason")
        data["conversation_id"] = st.conversation_id
        data["total_nodes"] = st.node_count
        data["total_messages"] = st.message_count
        data["duration"] = round((at - st.started_at).total_seconds(), 3)
        data["totals"] = totals(st)
        return True

    def _llm_call(self, st: SessionState, at: datetime, data: dict[str, Any]) -> bool:
        st.llm_calls += 1
        st.input_tokens += data.get("input_tokens") or 0
        st.output_tokens += data.get("output_tokens") or 0
        st.cost += data.get("cost") or 0.0
        if data.get("error") is not None:
            st.error_count += 1
        data["totals"] = totals(st)
        return True

    def _tool_call(self, st: SessionState, at: datetime, data: dict[str, Any]) -> bool:
        for key in ("arguments", "result"):
            if isinstance(data.get(key), str):  # snapshotted JSON text
                data[key] = json.loads(data[key])
        st.tool_calls += 1
        if data.get("error") is not None:
            st.error_count += 1
        data["totals"] = totals(st)
        return True


def totals(st: SessionState) -> dict[str, Any]:
    """The session's totals (the names of ``events.TOTALS``), as stamped into the data of
    the events that carry them."""
    return {
        "input_tokens": st.input_tokens,
        "output_tokens": st.output_tokens,
        "cost": st.cost,
        "llm_calls": st.llm_calls,
        "tool_calls": st.tool_calls,
        "error_count": st.error_count,
    }


def flow_labels(flow: dict[str, Any]) -> dict[str, str]:
    """Node id → label of a React Flow graph."""
    labels: dict[str, str] = {}
    for node in flow.get("nodes", ()):
        label = (node.get("data") or {}).get("label")
        if isinstance(label, str) and "id" in node:
            labels[str(node["id"])] = label
    return labels


def _loads(value: Any) -> dict[str, Any]:
    """Hook implementations snapshot JSON arguments as text; decode them (``None`` → {})."""
    if value is None:
        return {}
    if isinstance(value, str):
        decoded: dict[str, Any] = json.loads(value)
        return decoded
    return dict(value)


_FOLDS: dict[str, Callable[[Folder, SessionState, datetime, dict[str, Any]], bool]] = {
    ev.NODE_EXECUTED: Folder._node,
    ev.MESSAGE: Folder._message,
    ev.STATUS_CHANGED: Folder._status,
    ev.VARIABLES_CHANGED: Folder._variables,
    ev.SESSION_COMPLETED: Folder._complete,
    ev.LLM_CALL: Folder._llm_call,
    ev.TOOL_CALL: Folder._tool_call,
}
