"""Sessions of ``transitions`` state machines: one model, one conversation.

:class:`TransitionsAdapter` adds machine-level callbacks to a
:class:`transitions.Machine` made with ``send_event=True`` and reports, for each model
given to :meth:`~TransitionsAdapter.track`:

- the machine's states and transitions as the chatbot's flow (a transition is an edge
  labelled with its trigger; a transition first taken at run time, such as an automatic
  ``to_<state>`` one, is added to the flow when it happens);
- each state entered as an execution of that node, timed from the trigger's
  ``prepare_event`` to its ``finalize_event`` (the work the trigger did: the previous
  state's exit callbacks, the transition's own callbacks, the new state's enter
  callbacks and the machine's ``after_state_change``);
- an exception raised by a trigger as an error of the state the model was in when it
  was raised;
- entering a state marked as waiting for the customer as ``waiting_input``, and the next
  trigger as ``running``;
- entering a final state (``final=True``) as the session's completion;
- the messages the host reports with :meth:`~TransitionsAdapter.inbound` and
  :meth:`~TransitionsAdapter.outbound` (``transitions`` has no messages of its own).

A session stopped through the API is refused from then on: the model's next trigger
raises :class:`SessionStopped` and nothing more is reported for it.

``transitions`` is synchronous, so the adapter works with a
:class:`~sessiontrack.SyncTracker`. Its callbacks only call hooks (a few microseconds);
:meth:`~TransitionsAdapter.track` asks the tracker for the conversation's active session
once per conversation and process, which waits on the database.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio.to_thread
from transitions import EventData, Machine

from ..errors import SessionTrackError
from ..testing import ReplayInbound, ReplayRun
from .base import BlockingTracker, EngineAdapter, error_text, flow_graph

log = logging.getLogger(__name__)

__all__ = ["SessionStopped", "TransitionsAdapter", "TransitionsReplay"]

WAITING_TAG = "waiting"
"""A state with this tag (``transitions.extensions.states.Tags``) waits for the customer."""

_T0 = "_sessiontrack_t0"  # attributes the adapter sets on a trigger's EventData
_ENTERED = "_sessiontrack_entered"
_FINAL = "_sessiontrack_final"


class SessionStopped(SessionTrackError, RuntimeError):
    """A trigger of a model whose session was stopped through the API.

    :ivar session_id: the stopped session.
    :ivar conversation_id: its conversation.
    """

    def __init__(self, session_id: str, conversation_id: str) -> None:
        super().__init__(
            f"session {session_id} (conversation {conversation_id}) was stopped: "
            "this model takes no more triggers; track it again to start a new session"
        )
        self.session_id = session_id
        self.conversation_id = conversation_id


class _Tracked:
    """What the adapter keeps per tracked model."""

    __slots__ = (
        "active",
        "completed",
        "conversation_id",
        "error",
        "expired",
        "model",
        "session_id",
        "started",
        "stopped",
        "waiting",
    )

    def __init__(
        self, model: object, conversation_id: str, session_id: str, started: dict[str, Any]
    ) -> None:
        self.model: object = model  # a weakref.ref to it when the model allows one
        self.conversation_id = conversation_id
        self.session_id = session_id
        self.started = started
        self.waiting = False  # whether waiting_input was the last status reported
        self.completed = False
        self.expired = False  # the tracker expired the session: the next turn starts anew
        self.stopped = False  # the session was stopped: the model takes no more triggers
        self.active: list[EventData] = []  # the model's triggers running, innermost last
        self.error: BaseException | None = None  # the last error reported


class TransitionsAdapter(EngineAdapter):
    """Report the conversations that the models of ``machine`` run.

    :param tracker: a running :class:`~sessiontrack.SyncTracker`.
    :param machine: a :class:`transitions.Machine` (or a subclass: ``LockedMachine``,
        ``GraphMachine``…) made with ``send_event=True``; its states and transitions
        are registered as the chatbot's flow. Configure its own machine-level callbacks
        before making the adapter (assigning ``machine.prepare_event = ...`` afterwards
        would drop the adapter's).
    :param chatbot_id: the bot's id.
    :param name: the bot's display name (default: ``chatbot_id``).
    :param waiting: the names of the states in which the bot waits for the customer
        (reported as ``waiting_input``); states tagged ``"waiting"`` count too.
    :param version: the flow's version label (default: a hash of the graph).
    """

    def __init__(
        self,
        tracker: BlockingTracker,
        machine: Machine,
        chatbot_id: str,
        *,
        name: str | None = None,
        waiting: Iterable[str] = (),
        version: str | None = None,
    ) -> None:
        if not machine.send_event:
            raise ValueError(
                "TransitionsAdapter needs Machine(send_event=True): its callbacks need the "
                "model of each event (with send_event=True your callbacks get an EventData; "
                "the trigger's arguments are event.args and event.kwargs)"
            )
        waiting = set(waiting)
        unknown = sorted(waiting - set(machine.states))
        if unknown:
            raise ValueError(f"waiting names states the machine does not have: {unknown}")
        super().__init__(tracker, chatbot_id, name=name)
        self.machine = machine
        self.waiting: frozenset[str] = frozenset(
            waiting
            | {n for n, s in machine.states.items() if WAITING_TAG in getattr(s, "tags", ())}
        )
        self._waiting_states = {machine.states[n] for n in self.waiting}
        self._models: dict[int, _Tracked] = {}
        self._by_conversation: dict[str, dict[int, _Tracked]] = {}
        # reentrant: a model's weakref callback (garbage collection) may run in any thread,
        # also one that holds it
        self._models_lock = threading.RLock()
        self._node_executed = self.hook.sessiontrack_node_executed
        self.register_flow(self.graph(), version)
        # Timing starts before the machine's other prepare callbacks; finalize runs first
        # because transitions skips the remaining finalize callbacks after one raises.
        machine.prepare_event.insert(0, self._prepare)
        machine.on_final.append(self._final)
        machine.finalize_event.insert(0, self._finalize)

    def close(self) -> None:
        """Take the adapter's callbacks off the machine and stop hearing stop requests.
        The sessions stay as they are (active ones continue after a restart)."""
        for callbacks, own in (
            (self.machine.prepare_event, self._prepare),
            (self.machine.on_final, self._final),
            (self.machine.finalize_event, self._finalize),
        ):
            while own in callbacks:
                callbacks.remove(own)
        super().close()

    # --- the flow -----------------------------------------------------------------------

    def graph(self) -> dict[str, Any]:
        """The machine as a React Flow graph: a node per state (``input`` for the initial
        state, ``output`` for final ones), an edge per pair of states a trigger connects,
        labelled with the trigger's name (several triggers: ``a | b``). Internal
        transitions (no destination) and the automatic ``to_<state>`` transitions are left
        out; the latter are added when a model takes one."""
        machine = self.machine
        initial = machine.initial
        nodes = []
        for state_name, state in machine.states.items():
            kind = "output" if state.final else "input" if state_name == initial else "default"
            nodes.append((state_name, state_name, kind))
        auto = self._auto_triggers()
        labels: dict[tuple[str, str], list[str]] = {}
        for trigger, event in machine.events.items():
            if trigger in auto:
                continue
            for source, transitions in event.transitions.items():
                for transition in transitions:
                    if transition.dest is not None:
                        pair = (str(source), str(transition.dest))
                        names = labels.setdefault(pair, [])
                        if trigger not in names:
                            names.append(trigger)
        edges = [(s, t, " | ".join(names)) for (s, t), names in labels.items()]
        return flow_graph(nodes, edges, entry=initial)

    def _auto_triggers(self) -> set[str]:
        machine = self.machine
        if not getattr(machine, "auto_transitions", False):
            return set()
        attribute = machine.model_attribute
        prefix = "to_" if attribute == "state" else f"to_{attribute}_"
        return {prefix + name for name in machine.states}

    # --- models -------------------------------------------------------------------------

    def track(
        self,
        model: object,
        conversation_id: str | int,
        *,
        contact: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        initial: str | None = None,
    ) -> str:
        """Report ``model``'s triggers as the session of ``conversation_id`` and return its
        id: the conversation's active session if there is one (after a restart too), else
        a new one, which starts with the model's current state as its first node.

        ``model`` is added to the machine (in state ``initial``, default the machine's
        initial state) if it is not one of its models yet. Blocks while it asks the
        tracker for the active session (once per conversation and process).
        """
        if model not in self.machine.models:
            self.machine.add_model(model, initial=initial)
        started = {"contact": contact, "variables": variables, "metadata": metadata}
        session_id, is_new = self.session_for_sync(conversation_id, **started)
        conv = str(conversation_id)
        key = id(model)
        record = _Tracked(model, conv, session_id, started)
        # the machine holds its models; the adapter only until the model is gone (a model
        # without weak references, __slots__, until untrack())
        with contextlib.suppress(TypeError):
            record.model = weakref.ref(model, lambda _: self._drop(key, record))
        state = self.machine.get_model_state(model).name
        record.waiting = state in self.waiting
        with self._models_lock:
            self._drop_locked(key)
            self._models[key] = record
            self._by_conversation.setdefault(conv, {})[key] = record
        record.stopped = session_id in self._stopped  # stopped while it was asked for
        if is_new:
            self.hook.sessiontrack_node_executed(
                session_id=session_id, node_id=state, duration_ms=0.0
            )
            if record.waiting:
                self.status(session_id, "waiting_input", state)
        return session_id

    def untrack(self, model: object) -> None:
        """Stop reporting ``model``'s triggers (its session is left as it is)."""
        with self._models_lock:
            self._drop_locked(id(model))

    def _drop(self, key: int, record: _Tracked) -> None:
        with self._models_lock:
            if self._models.get(key) is record:
                self._drop_locked(key)

    def _drop_locked(self, key: int) -> None:
        record = self._models.pop(key, None)
        if record is not None:
            same = self._by_conversation.get(record.conversation_id)
            if same is not None:
                same.pop(key, None)
                if not same:
                    del self._by_conversation[record.conversation_id]

    def _records(self, session_id: str, conversation_id: str | None) -> list[_Tracked]:
        with self._models_lock:
            same = self._by_conversation.get(conversation_id or "", {})
            return [r for r in list(same.values()) if r.session_id == session_id]

    def session_of(self, model: object) -> str | None:
        """The session ``model``'s triggers are reported to, or ``None`` if untracked."""
        record = self._models.get(id(model))
        return None if record is None else record.session_id

    # --- messages -----------------------------------------------------------------------

    def inbound(
        self,
        model: object,
        text: str | None = None,
        *,
        message_id: str | int | None = None,
        type: str = "text",
        payload: Mapping[str, Any] | None = None,
        node_id: str | None = None,
    ) -> None:
        """Report a message from the customer in ``model``'s session; ``message_id`` is the
        channel's id for it (the same id twice is stored once). ``node_id`` defaults to the
        model's current state."""
        self._message(model, "inbound", text, message_id, type, payload, node_id)

    def outbound(
        self,
        model: object,
        text: str | None = None,
        *,
        message_id: str | int | None = None,
        type: str = "text",
        payload: Mapping[str, Any] | None = None,
        node_id: str | None = None,
    ) -> None:
        """Report a message the bot sent in ``model``'s session (see :meth:`inbound`). A
        goodbye sent right after the final state is stored in the completed session
        (within the tracker's ``completion_grace``)."""
        self._message(model, "outbound", text, message_id, type, payload, node_id)

    def _message(
        self,
        model: object,
        direction: str,
        text: str | None,
        message_id: str | int | None,
        type: str,
        payload: Mapping[str, Any] | None,
        node_id: str | None,
    ) -> None:
        record = self._models.get(id(model))
        if record is None:
            raise ValueError("this model is not tracked: call adapter.track(model, ...) first")
        if record.stopped or record.session_id in self._stopped:
            log.debug(
                "sessiontrack: %s message of stopped session %s dropped",
                direction,
                record.session_id,
            )
            return
        if record.expired:
            self._renew(record, model)
        self.hook.sessiontrack_message(
            session_id=record.session_id,
            direction=direction,
            type=type,
            text=text,
            payload=payload,
            node_id=node_id or self.machine.get_model_state(model).name,
            message_id=None if message_id is None else str(message_id),
        )

    # --- stops --------------------------------------------------------------------------

    def on_stop(self, session_id: str, conversation_id: str | None) -> None:
        """Nothing to cancel: a transitions trigger runs to its end in the caller's thread.
        The stopped model's next trigger raises :class:`SessionStopped`."""
        for record in self._records(session_id, conversation_id):
            record.stopped = True
        log.debug("sessiontrack: conversation %s stopped", conversation_id)

    def on_session_ended(self, session_id: str, conversation_id: str) -> None:
        """The tracker expired the session: the model's next trigger or message starts a
        new session of the same conversation."""
        for record in self._records(session_id, conversation_id):
            record.expired = True

    def _renew(self, record: _Tracked, model: object) -> None:
        """A new session for a model whose session expired, starting in its state."""
        record.expired = False
        record.session_id = self.start_session(record.conversation_id, **record.started)
        state = self.machine.get_model_state(model).name
        self._node_executed(session_id=record.session_id, node_id=state, duration_ms=0.0)
        if record.waiting:
            self.status(record.session_id, "waiting_input", state)

    # --- the machine's callbacks --------------------------------------------------------
    # The hot path: a trigger calls _prepare and _finalize, and nothing else of the
    # adapter's unless it enters a final state.

    def _prepare(self, event: EventData) -> None:
        record = self._models.get(id(event.model))
        if record is None:
            return
        if record.stopped or record.session_id in self._stopped:
            raise SessionStopped(record.session_id, record.conversation_id)
        if event.transition is not None:
            return  # a may_<trigger>() check (a trigger prepares before its transitions)
        event.__dict__[_T0] = time.perf_counter()
        try:
            active = record.active
            if active:  # fired from a callback of a trigger still running
                outer = active[-1]
                if outer.transition is not None and outer.state.name == outer.transition.dest:
                    self._report_entered(record, outer, time.perf_counter(), moved_on=True)
            active.append(event)
            if record.expired:
                self._renew(record, event.model)
            elif record.completed:  # a final state left again: the conversation goes on anew
                record.session_id = self.start_session(record.conversation_id, **record.started)
                record.completed = False
            if record.waiting:
                record.waiting = False
                self.status(record.session_id, "running", event.state.name)
        except Exception:
            log.exception("sessiontrack: could not report a trigger of %s", record.session_id)

    def _final(self, event: EventData) -> None:
        event.__dict__[_FINAL] = True

    def _finalize(self, event: EventData) -> None:
        now = time.perf_counter()
        marks = event.__dict__
        if _T0 not in marks:
            return  # not tracked, or refused before it began (MachineError, a stop)
        record = self._models.get(id(event.model))
        if record is None:
            return
        active = record.active
        if active and active[-1] is event:
            active.pop()
        try:
            if event.result:
                self._report_entered(record, event, now, moved_on=False)
            elif event.error is not None:
                self._report_error(record, event, now)
            if _FINAL in marks:
                if not record.completed and not record.stopped:
                    record.completed = True
                    self.complete(record.session_id, reason="flow_end")
            elif not record.waiting and event.state in self._waiting_states:
                self._wait(record, event.state.name)
        except Exception:
            log.exception("sessiontrack: could not report a trigger of %s", record.session_id)

    def _report_entered(
        self, record: _Tracked, event: EventData, now: float, *, moved_on: bool
    ) -> None:
        """The state ``event`` entered, once; ``moved_on``: a trigger fired from its
        callbacks has taken the model further already."""
        transition = event.transition
        if transition is None or transition.dest is None:
            return  # an internal transition: no state entered
        marks = event.__dict__
        sid = record.session_id
        if _ENTERED in marks or record.stopped:
            return
        marks[_ENTERED] = True
        state = transition.dest
        self._node_executed(session_id=sid, node_id=state, duration_ms=(now - marks[_T0]) * 1000)
        if (transition.source, state) not in self._edges:
            self.observe_edge(str(transition.source), state, event.event.name)
        if not moved_on and not record.waiting and state in self.waiting:
            self._wait(record, state)

    def _report_error(self, record: _Tracked, event: EventData, now: float) -> None:
        error = event.error
        sid = record.session_id
        if (
            isinstance(error, SessionStopped)
            or _ENTERED in event.__dict__
            or error is record.error  # a nested trigger's, reported already
            or record.stopped
        ):
            return
        record.error = error
        self._node_executed(
            session_id=sid,
            node_id=event.state.name,
            duration_ms=(now - event.__dict__[_T0]) * 1000,
            error=error_text(error) if error is not None else None,
        )

    def _wait(self, record: _Tracked, state: str) -> None:
        if not record.stopped and not record.completed:
            record.waiting = True
            self.status(record.session_id, "waiting_input", state)


# --- replaying a recorded session (sessiontrack.testing) ---------------------------------


class _Model:
    """The default model of a replayed conversation (the machine gives it its state)."""


class TransitionsReplay:
    """A :class:`~sessiontrack.testing.ReplayEngine` for a ``transitions`` machine: makes
    the machine, a :class:`TransitionsAdapter` on the replay's tracker and one tracked
    model, and hands each inbound message to your turn function, the code that fires
    triggers in production::

        def turn(adapter, model, message):  # message: .text, .message_id, .type, .payload
            adapter.inbound(model, message.text, message_id=message.message_id)
            model.trigger(intent(message.text))
            adapter.outbound(model, reply_for(model))

        await assert_replays(fixture, TransitionsReplay(make_machine, turn, waiting=WAITING))

    :param machine: makes the machine (``send_event=True``), a new one per replay.
    :param turn: ``turn(adapter, model, message)`` handles one inbound message; an
        exception it raises is kept in :attr:`errors` (the adapter reports a trigger's
        error as the state's), and the replay goes on.
    :param model: makes the model (default: a plain object).
    :param start: ``start(adapter, model)``, once the model is tracked: a bot that speaks
        first does so here.
    :param waiting: as for :class:`TransitionsAdapter`.
    :param version: the flow version (default: a hash of the machine's graph).

    The turn function runs in a worker thread, as the synchronous engine does in
    production; the adapter reports to the replay's :class:`~sessiontrack.SyncTracker`.
    """

    def __init__(
        self,
        machine: Callable[[], Machine],
        turn: Callable[[TransitionsAdapter, Any, ReplayInbound], object],
        *,
        model: Callable[[], object] = _Model,
        start: Callable[[TransitionsAdapter, Any], object] | None = None,
        waiting: Iterable[str] = (),
        version: str | None = None,
    ) -> None:
        self.machine = machine
        self.turn = turn
        self.make_model = model
        self.start = start
        self.waiting = tuple(waiting)
        self.version = version
        self.adapter: TransitionsAdapter | None = None
        self.model: object = None
        self.errors: list[BaseException] = []
        """The exceptions the turn function raised."""

    async def replay_start(self, run: ReplayRun) -> None:
        tracker = await run.sync_tracker()
        adapter = TransitionsAdapter(
            tracker,
            self.machine(),
            run.chatbot_id,
            name=run.flow.get("name"),
            waiting=self.waiting,
            version=self.version,
        )
        adapter.make_session_id = run.new_session_id
        run.at_end(adapter.close)
        self.adapter, self.model = adapter, self.make_model()

        def begin() -> None:
            adapter.track(
                self.model,
                run.conversation_id or run.session_id,
                contact=run.contact or None,
                metadata=run.metadata or None,
            )
            if self.start is not None:
                self.start(adapter, self.model)

        await anyio.to_thread.run_sync(self._guarded, begin)

    async def replay_inbound(self, message: ReplayInbound, run: ReplayRun) -> None:
        adapter = self.adapter
        assert adapter is not None, "replay_start() first"
        await anyio.to_thread.run_sync(
            self._guarded, lambda: self.turn(adapter, self.model, message)
        )

    def _guarded(self, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:  # reported by the adapter as the state's error
            self.errors.append(exc)
