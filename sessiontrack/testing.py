"""Recorded sessions as regression tests: replay a fixture against an engine.

A fixture (``GET /{id}/fixture``, ``sessiontrack fixture``; the format is described in
``docs/replay.md``) holds what a customer sent, what the bot answered, the node path it
took and the results its LLM and tool calls returned. :func:`replay` feeds the inbound
messages to an engine, hands it the recorded call results instead of live ones, listens to
what it reports through the sessiontrack hooks and compares, turn by turn, the node path and
the outbound messages with the recording::

    async def test_the_order_conversation_still_works() -> None:
        report = await replay("tests/fixtures/order.json", HelpdeskReplay())
        report.assert_clean()  # AssertionError with the first difference and a diff

An engine takes part through two methods (:class:`ReplayEngine`); it reports exactly as in
production, to ``run.hook``.
"""

from __future__ import annotations

import builtins
import difflib
import inspect
import json
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread
import pluggy

from . import hookspecs
from ._fixture import check_fixture
from ._ids import new_session_id
from .hookspecs import hookimpl
from .status import ACTIVE_STATUSES

if TYPE_CHECKING:
    from ._sync import SyncTracker
    from .tracker import Tracker

__all__ = [
    "Difference",
    "RecordedError",
    "ReplayEngine",
    "ReplayFailed",
    "ReplayInbound",
    "ReplayReport",
    "ReplayRun",
    "Step",
    "UnrecordedCall",
    "assert_replays",
    "load_fixture",
    "recorded_error",
    "replay",
]


class ReplayFailed(AssertionError):
    """The engine did not do what the recording did; the message is the report."""

    def __init__(self, report: ReplayReport) -> None:
        super().__init__(str(report))
        self.report = report


class UnrecordedCall(LookupError):
    """The engine made an LLM or tool call the recording does not have at this point."""


class RecordedError(Exception):
    """A tool call that failed when recorded fails again when replayed:
    :meth:`ReplayRun.tool` raises the recorded error. Its class is named as the recorded
    one was (``LookupError: no order 9999`` raises a ``LookupError``, a subclass of the
    builtin where there is one, and of this class), so the engine handles, reports and
    words it as it did; :attr:`recorded` is the recorded text."""

    recorded: str = ""


_RECORDED_ERRORS: dict[str, type[RecordedError]] = {}


def recorded_error(text: str) -> RecordedError:
    """The exception replaying a call whose recorded error was ``text`` (``Type: message``,
    as the adapters report errors)."""
    name, sep, message = text.partition(": ")
    if not sep:
        name, message = (text, "") if text.isidentifier() else ("", text)
    cls: type[RecordedError] = RecordedError
    if name.isidentifier():
        cls = _RECORDED_ERRORS.get(name) or _error_class(name)
        _RECORDED_ERRORS[name] = cls
    exc = cls(message) if cls is not RecordedError else RecordedError(text)
    exc.recorded = text
    return exc


def _error_class(name: str) -> type[RecordedError]:
    builtin = getattr(builtins, name, None)
    bases: tuple[type, ...] = (RecordedError,)
    if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin is not Exception:
        bases = (RecordedError, builtin)
    try:
        return type(name, bases, {"__module__": __name__})
    except TypeError:  # a builtin whose layout cannot be mixed in (OSError …)
        return type(name, (RecordedError,), {"__module__": __name__})


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayInbound:
    """One inbound message of the fixture, as the engine gets it."""

    turn: int
    offset_ms: float
    message_id: str | None
    type: str
    text: str | None
    payload: dict[str, Any] | None
    node_id: str | None
    """The node the session was at when the message came (as recorded)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the engine did: ran a node (``kind="node"``), said something
    (``"message"``) or ended the session (``"end"``)."""

    kind: str
    node_id: str | None
    text: str | None = None
    type: str | None = None
    payload: Any = None

    def line(self) -> str:
        if self.kind == "node":
            return f"node {self.node_id}"
        if self.kind == "end":
            return f"end {self.text}"
        shown = json.dumps(self.text, ensure_ascii=False)
        extra = "" if self.payload is None else " " + json.dumps(self.payload, sort_keys=True)
        return f"  say [{self.node_id}] {self.type}: {shown}{extra}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Difference:
    """Where the replay first departed from the recording.

    :param kind: ``path`` (another node ran, or none), ``message`` (another text, type or
        payload), ``end`` (the session ended otherwise), ``tool`` or ``llm`` (a call the
        recording does not have).
    :param turn: the turn it happened in (0: before the first inbound message).
    :param node_id: the node where it happened (the recorded one for ``path``).
    """

    kind: str
    turn: int
    node_id: str | None
    expected: str
    actual: str
    inbound: ReplayInbound | None = None
    path_before: tuple[str, ...] = ()

    def __str__(self) -> str:
        after = (
            "before the first inbound message"
            if self.inbound is None
            else f"after inbound message {self.turn} "
            f"({json.dumps(self.inbound.text, ensure_ascii=False)} "
            f"at +{self.inbound.offset_ms / 1000:.2f} s)"
        )
        where = f" at node {self.node_id!r}" if self.node_id else ""
        lines = [
            f"first difference ({self.kind}) in turn {self.turn}{where}, {after}:",
            f"  expected: {self.expected}",
            f"  actual:   {self.actual}",
        ]
        if self.path_before:
            lines.append(f"  path so far: {' → '.join(self.path_before)}")
        return "\n".join(lines)


@dataclass(kw_only=True)
class ReplayReport:
    """What a replay found. ``ok`` when nothing differed; ``first`` is the first
    difference; ``expected``/``actual`` are the steps per turn."""

    session_id: str
    flow_version: str | None
    engine_flow_version: str | None
    expected: list[list[Step]]
    actual: list[list[Step]]
    first: Difference | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first is None

    def diff(self) -> str:
        """A unified diff of the recorded steps against the replayed ones."""
        return "\n".join(
            difflib.unified_diff(
                _lines(self.expected),
                _lines(self.actual),
                "recorded",
                "replayed",
                lineterm="",
            )
        )

    def assert_clean(self) -> None:
        """Raise :class:`ReplayFailed` (an ``AssertionError``) unless the replay was clean."""
        if not self.ok:
            raise ReplayFailed(self)

    def __str__(self) -> str:
        head = f"replay of session {self.session_id}"
        if self.flow_version != self.engine_flow_version:
            head += (
                f" (recorded on flow version {self.flow_version!r}, "
                f"replayed on {self.engine_flow_version!r})"
            )
        if self.ok:
            return f"{head}: clean, {sum(map(len, self.actual))} steps"
        return "\n".join([f"{head}: differs", str(self.first), *self.notes, self.diff()])


class ReplayRun:
    """What a replaying engine gets: where to report, the session it replays and the
    recorded results of its LLM and tool calls."""

    def __init__(self, fixture: dict[str, Any], plugin_manager: pluggy.PluginManager) -> None:
        session = fixture["session"]
        self.fixture = fixture
        self.plugin_manager = plugin_manager
        self.hook: pluggy.HookRelay = plugin_manager.hook
        """Report here, as to the tracker's plugin manager in production."""
        self.session_id: str = session["id"]
        self.chatbot_id: str = fixture["chatbot"]["id"]
        self.conversation_id: str | None = session["conversationId"]
        self.contact: dict[str, Any] = dict(session.get("contact") or {})
        self.metadata: dict[str, Any] = dict(session.get("metadata") or {})
        self.flow: dict[str, Any] = {
            "id": self.chatbot_id,
            "name": fixture["chatbot"].get("name"),
            **fixture["flow"],
        }
        """The recorded flow version: ``{"id", "name", "version", "nodes", "edges"}``."""
        self._tools = list(fixture["recorded"]["toolCalls"])
        self._llm = list(fixture["recorded"]["llmCalls"])
        self._probe: _Capture | None = None
        self._id_given = False
        self._at_end: list[Callable[[], Awaitable[None] | None]] = []
        self._tracker: Tracker | None = None
        self._sync_tracker: SyncTracker | None = None

    def new_session_id(self) -> str:
        """The id for a session the engine starts: the recorded session's the first time,
        a new one after that (a second session is reported as a difference)."""
        if self._id_given:
            return new_session_id()
        self._id_given = True
        return self.session_id

    def at_end(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``callback`` (may be ``async``) when the replay ends, the last one
        registered first (e.g. an application's ``shutdown``)."""
        self._at_end.append(callback)

    async def tracker(self) -> Tracker:
        """A real, running :class:`~sessiontrack.Tracker` on a throwaway SQLite file,
        reporting to :attr:`plugin_manager`: for adapters, which need one. The same one on
        every call; closed (and its file removed) when the replay ends."""
        if self._tracker is None:
            from .tracker import Tracker

            tracker = Tracker(
                _throwaway_database(self),
                plugin_manager=self.plugin_manager,
                sweep_interval=None,
                analytics=False,
                commit_delay=0,
            )
            await tracker.start()
            self.at_end(tracker.aclose)
            self._tracker = tracker
        return self._tracker

    async def sync_tracker(self) -> SyncTracker:
        """:meth:`tracker` as a running :class:`~sessiontrack.SyncTracker`, for adapters of
        synchronous engines (transitions)."""
        if self._sync_tracker is None:
            from ._sync import SyncTracker

            tracker = SyncTracker(
                _throwaway_database(self),
                plugin_manager=self.plugin_manager,
                sweep_interval=None,
                analytics=False,
                commit_delay=0,
            )
            await anyio.to_thread.run_sync(tracker.start)
            self.at_end(lambda: anyio.to_thread.run_sync(tracker.close))
            self._sync_tracker = tracker
        return self._sync_tracker

    async def _close(self) -> None:
        while self._at_end:
            await _call(self._at_end.pop()())

    # The state the engine's own session lookup would read from the tracker.
    @property
    def status(self) -> str | None:
        """The replayed session's status so far (``None`` before it started)."""
        return self._capture().status

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def node_id(self) -> str | None:
        """The last node the replayed session ran."""
        return self._capture().node_id

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self._capture().variables)

    def tool(self, name: str, arguments: Any = None, *, node_id: str | None = None) -> Any:
        """The recorded result of the next tool call; :class:`UnrecordedCall` (noted in
        the report) when the recording's next call is another tool or other arguments, and
        the recorded error (:func:`recorded_error`) when the recorded call failed.

        :param node_id: the node making the call, when the engine knows it (the report
            names the recorded call's node otherwise)."""
        expected = self._tools[0] if self._tools else None
        actual = f"tool {name}({_json(arguments)})"
        if expected is None or expected["name"] != name or expected["arguments"] != arguments:
            shown = (
                "no further tool call"
                if expected is None
                else f"tool {expected['name']}({_json(expected['arguments'])})"
            )
            where = node_id or (expected or {}).get("nodeId")
            self._capture().unrecorded("tool", where, shown, actual)
            raise UnrecordedCall(f"{actual}: the recording has {shown}")
        self._tools.pop(0)
        if expected.get("error"):
            raise recorded_error(str(expected["error"]))
        return expected["result"]

    def llm(self, *, node_id: str | None = None) -> dict[str, Any]:
        """The next recorded LLM call (``model``, ``finishReason``, tokens …), for an
        engine whose scripted model answers as the recorded one did; the model's answer
        itself is what the node then said (``expected.outbound``)."""
        if not self._llm:
            self._capture().unrecorded("llm", node_id, "no further LLM call", "an LLM call")
            raise UnrecordedCall("an LLM call the recording does not have")
        call: dict[str, Any] = self._llm.pop(0)
        return call

    def outbound(self, node_id: str | None) -> list[str | None]:
        """The texts the recording says at ``node_id``, in order (for scripted models)."""
        return [m["text"] for m in self.fixture["expected"]["outbound"] if m["nodeId"] == node_id]

    def _capture(self) -> _Capture:
        assert self._probe is not None, "the replay has not started"
        return self._probe


class ReplayEngine(Protocol):
    """An engine that can be replayed. Either method may be ``async``."""

    def replay_start(self, run: ReplayRun) -> Awaitable[None] | None:
        """Set up for one session: report to ``run.hook``, make the session id
        ``run.session_id``, answer calls from ``run.tool``/``run.llm``, and look the
        conversation's session up in ``run`` (``run.active``, ``run.node_id``,
        ``run.variables``). A bot that speaks first does so here (turn 0)."""

    def replay_inbound(self, message: ReplayInbound, run: ReplayRun) -> Awaitable[None] | None:
        """Handle one inbound message as the engine does in production."""


def load_fixture(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A fixture from a file path or an already parsed mapping; ``ValueError`` if it is not
    one this library reads."""
    if isinstance(source, str | Path):
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    else:
        data = dict(source)
    return check_fixture(data)


async def replay(
    fixture: str | Path | Mapping[str, Any],
    engine: ReplayEngine,
    *,
    pace: float = 0.0,
    compare_payloads: bool = True,
) -> ReplayReport:
    """Feed the fixture's inbound messages to ``engine`` and compare what it does with the
    recording; returns a :class:`ReplayReport` (``report.assert_clean()`` to fail a test).

    :param pace: ``0`` (default) feeds messages as fast as the engine takes them; ``1``
        waits as long between them as the customer did, ``0.1`` a tenth of that.
    :param compare_payloads: also compare the structured part of outbound messages
        (buttons, lists, forms), not only their type and text.
    """
    data = load_fixture(fixture)
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(hookspecs)
    capture = _Capture(data["session"]["id"])
    pm.register(capture)
    run = ReplayRun(data, pm)
    run._probe = capture
    inbound = [_inbound(m) for m in data["inbound"]]
    try:
        await _call(engine.replay_start(run))
        previous = 0.0
        for message in inbound:
            if pace > 0:
                await anyio.sleep(max(0.0, message.offset_ms - previous) / 1000 * pace)
            previous = message.offset_ms
            capture.turn = message.turn
            await _call(engine.replay_inbound(message, run))
    finally:
        await run._close()
    turns = max(len(inbound), capture.turn) + 1
    expected = _expected(data, turns, compare_payloads)
    actual = capture.steps(turns, compare_payloads)
    report = ReplayReport(
        session_id=run.session_id,
        flow_version=data["flow"].get("version"),
        engine_flow_version=capture.flow_version or data["flow"].get("version"),
        expected=[_canonical(t) for t in expected],
        actual=[_canonical(t) for t in actual],
    )
    report.first = _first_difference(expected, actual, capture, inbound)
    if capture.errors:
        report.notes.append("node errors while replaying: " + "; ".join(capture.errors))
    return report


async def assert_replays(
    fixture: str | Path | Mapping[str, Any], engine: ReplayEngine, **options: Any
) -> ReplayReport:
    """:func:`replay`, raising :class:`ReplayFailed` with the readable report unless clean."""
    report = await replay(fixture, engine, **options)
    report.assert_clean()
    return report


# --- what the engine reports ----------------------------------------------------------------


class _Capture:
    """A plugin on the replay's plugin manager: records the engine's reports per turn."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.turn = 0
        self.status: str | None = None
        self.node_id: str | None = None
        self.variables: dict[str, Any] = {}
        self.flow_version: str | None = None
        self.errors: list[str] = []
        self._steps: list[tuple[int, Step]] = []
        self.calls: list[tuple[int, int, Difference]] = []  # (turn, position, difference)

    def _mine(self, session_id: str) -> bool:
        return session_id == self.session_id

    def steps(self, turns: int, payloads: bool) -> list[list[Step]]:
        out: list[list[Step]] = [[] for _ in range(turns)]
        for turn, step in self._steps:
            out[turn].append(step if payloads else _no_payload(step))
        return out

    def unrecorded(self, kind: str, node_id: str | None, expected: str, actual: str) -> None:
        position = sum(1 for t, s in self._steps if t == self.turn and s.kind == "node")
        self.calls.append(
            (
                self.turn,
                position,
                Difference(
                    kind=kind, turn=self.turn, node_id=node_id, expected=expected, actual=actual
                ),
            )
        )

    @hookimpl
    def sessiontrack_flow_registered(self, chatbot_id: str, version: str | None) -> None:
        self.flow_version = version

    @hookimpl
    def sessiontrack_session_started(
        self, session_id: str, variables: dict[str, Any] | None
    ) -> None:
        if self._mine(session_id):
            self.status = "running"
            self.variables = dict(variables or {})
        else:
            self.errors.append(f"the engine started another session {session_id!r}")

    @hookimpl
    def sessiontrack_node_executed(self, session_id: str, node_id: str, error: str | None) -> None:
        if self._mine(session_id):
            self.node_id = node_id
            self._steps.append((self.turn, Step("node", node_id)))
            if error:
                self.errors.append(f"{node_id}: {error}")

    @hookimpl
    def sessiontrack_message(
        self,
        session_id: str,
        direction: str,
        type: str,
        text: str | None,
        payload: dict[str, Any] | None,
        node_id: str | None,
    ) -> None:
        if self._mine(session_id) and direction == "outbound":
            self._steps.append((self.turn, Step("message", node_id, text, type, payload)))

    @hookimpl
    def sessiontrack_status_changed(self, session_id: str, status: str) -> None:
        if self._mine(session_id) and self.status in ACTIVE_STATUSES:
            self.status = status

    @hookimpl
    def sessiontrack_variables_changed(self, session_id: str, variables: dict[str, Any]) -> None:
        if self._mine(session_id):
            self.variables.update(variables)

    @hookimpl
    def sessiontrack_session_completed(
        self, session_id: str, status: str, reason: str | None
    ) -> None:
        if self._mine(session_id) and self.status in ACTIVE_STATUSES:
            self.status = status
            self._steps.append((self.turn, Step("end", self.node_id, _end(status, reason))))


# --- comparing ------------------------------------------------------------------------------


def _expected(data: dict[str, Any], turns: int, payloads: bool) -> list[list[Step]]:
    rows: list[tuple[int, float, int, Step]] = []
    for i, n in enumerate(data["expected"]["path"]):
        rows.append((n["turn"], n["offsetMs"], i, Step("node", n["nodeId"])))
    for i, m in enumerate(data["expected"]["outbound"]):
        step = Step("message", m["nodeId"], m["text"], m["type"], m["payload"])
        rows.append((m["turn"], m["offsetMs"], i, step if payloads else _no_payload(step)))
    out: list[list[Step]] = [[] for _ in range(turns)]
    for turn, _, _, step in sorted(rows, key=lambda r: (r[0], r[1], r[3].kind != "node", r[2])):
        out[min(turn, turns - 1)].append(step)
    end = data["expected"]["end"]
    if end["status"] == "completed":  # expired and stopped come from outside the engine
        last = data["expected"]["path"][-1]["nodeId"] if data["expected"]["path"] else None
        last_turn = max((t for t in range(turns) if out[t]), default=0)
        out[last_turn].append(Step("end", last, _end(end["status"], end["reason"])))
    return out


def _first_difference(
    expected: list[list[Step]],
    actual: list[list[Step]],
    capture: _Capture,
    inbound: list[ReplayInbound],
) -> Difference | None:
    path_so_far: list[str] = []
    for turn, (want, got) in enumerate(zip(expected, actual, strict=True)):
        message = inbound[turn - 1] if 0 < turn <= len(inbound) else None
        found = _turn_difference(turn, want, got, message, tuple(path_so_far))
        calls = [(pos, d) for t, pos, d in capture.calls if t == turn]
        if calls and (found is None or calls[0][0] <= found[0]):
            pos, d = calls[0]
            nodes = [s.node_id or "" for s in got if s.kind == "node"][:pos]
            return Difference(
                kind=d.kind,
                turn=turn,
                node_id=d.node_id,
                expected=d.expected,
                actual=d.actual,
                inbound=message,
                path_before=(*path_so_far, *nodes),
            )
        if found is not None:
            return found[1]
        path_so_far += [s.node_id or "" for s in want if s.kind == "node"]
    return None


def _turn_difference(
    turn: int,
    want: list[Step],
    got: list[Step],
    message: ReplayInbound | None,
    before: tuple[str, ...],
) -> tuple[int, Difference] | None:
    """The first difference within one turn: the path first (position = node index), then
    the messages, then how the session ended."""
    want_nodes = [s for s in want if s.kind == "node"]
    got_nodes = [s for s in got if s.kind == "node"]
    for i in range(max(len(want_nodes), len(got_nodes))):
        w = want_nodes[i] if i < len(want_nodes) else None
        g = got_nodes[i] if i < len(got_nodes) else None
        if w != g:
            return i, Difference(
                kind="path",
                turn=turn,
                node_id=(w or g or Step("node", None)).node_id,
                expected=f"node {w.node_id!r}" if w else "no further node",
                actual=f"node {g.node_id!r}" if g else "no further node",
                inbound=message,
                path_before=(*before, *(s.node_id or "" for s in want_nodes[:i])),
            )
    nodes = tuple(s.node_id or "" for s in want_nodes)
    for kind in ("message", "end"):
        want_k = [s for s in want if s.kind == kind]
        got_k = [s for s in got if s.kind == kind]
        for i in range(max(len(want_k), len(got_k))):
            w = want_k[i] if i < len(want_k) else None
            g = got_k[i] if i < len(got_k) else None
            if w != g:
                return len(nodes), Difference(
                    kind=kind,
                    turn=turn,
                    node_id=(w or g or Step(kind, None)).node_id,
                    expected=w.line().strip() if w else f"no further {kind}",
                    actual=g.line().strip() if g else f"no further {kind}",
                    inbound=message,
                    path_before=(*before, *nodes),
                )
    return None


def _canonical(steps: list[Step]) -> list[Step]:
    """One turn's steps laid out the same way whatever order the engine reported them in
    (some report a node before what it says, some after): each node followed by the
    messages it said, messages of no node of this turn next, the end last."""
    nodes = [s for s in steps if s.kind == "node"]
    said: list[list[Step]] = [[] for _ in nodes]
    loose: list[Step] = []
    at = 0
    for m in (s for s in steps if s.kind == "message"):
        j = next((j for j in range(at, len(nodes)) if nodes[j].node_id == m.node_id), None)
        if j is None:
            loose.append(m)
        else:
            said[j].append(m)
            at = j
    out = [step for n, msgs in zip(nodes, said, strict=True) for step in (n, *msgs)]
    return [*out, *loose, *(s for s in steps if s.kind == "end")]


def _lines(turns: list[list[Step]]) -> list[str]:
    out: list[str] = []
    for turn, steps in enumerate(turns):
        out.append(f"turn {turn}")
        out.extend(f"  {s.line()}" for s in steps)
    return out


def _inbound(m: Mapping[str, Any]) -> ReplayInbound:
    return ReplayInbound(
        turn=m["turn"],
        offset_ms=m["offsetMs"],
        message_id=m.get("messageId"),
        type=m.get("type") or "text",
        text=m.get("text"),
        payload=m.get("payload"),
        node_id=m.get("nodeId"),
    )


def _no_payload(step: Step) -> Step:
    return Step(step.kind, step.node_id, step.text, step.type, None)


def _end(status: str, reason: str | None) -> str:
    return f"{status} ({reason})" if reason else status


def _throwaway_database(run: ReplayRun) -> str:
    folder = tempfile.mkdtemp(prefix="sessiontrack-replay-")
    run.at_end(lambda: shutil.rmtree(folder, ignore_errors=True))
    return f"sqlite+aiosqlite:///{folder}/replay.db"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


async def _call(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result
