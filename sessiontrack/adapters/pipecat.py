"""sessiontrack for pipecat pipelines and pipecat flows.

One :class:`PipecatAdapter` per bot; one :class:`SessionObserver` per conversation (a
pipecat :class:`~pipecat.observers.base_observer.BaseObserver` given to the
``PipelineWorker``). The observer watches the frames the pipeline pushes and reports:

- the customer's words (final ``TranscriptionFrame``\\ s, one inbound message per user
  turn) and the bot's answers (``LLMTextFrame``\\ s, one outbound message per LLM
  response; ``TTSSpeakFrame`` text as its own message);
- each LLM response as an LLM call, with the tokens, time to first byte and processing
  time of pipecat's ``MetricsFrame`` (``PipelineParams(enable_metrics=True,
  enable_usage_metrics=True)``);
- each function call (``FunctionCallInProgressFrame`` → ``FunctionCallResultFrame``) as a
  tool call with its duration;
- ``waiting_input`` once the bot's response ended with no function call pending,
  ``running`` when the customer speaks again;
- with :meth:`SessionObserver.track_flow`, the nodes of a pipecat-flows ``FlowManager``:
  entering a node makes it the session's current node; the visit is reported as a node
  execution once the bot has answered in it (the end of its first LLM response there),
  or when the flow leaves it first, timed from the entry; each transition adds its edge
  (labelled with the function that took it) to the chatbot's flow;
- ``ErrorFrame``\\ s as node errors, ``EndFrame``/``CancelFrame`` as the session's end.

Pipecat hands frames to observers through a queue of their own, so nothing here runs in
the pipeline's path, and the observer only makes hook calls (no I/O). A stop requested
through the API cancels the session's ``PipelineWorker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from .base import BlockingTracker, EngineAdapter, error_text, flow_graph

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        ErrorFrame,
        Frame,
        FunctionCallCancelFrame,
        FunctionCallFromLLM,
        FunctionCallInProgressFrame,
        FunctionCallResultFrame,
        FunctionCallsStartedFrame,
        LLMContextFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMSetToolsFrame,
        LLMTextFrame,
        MetricsFrame,
        TranscriptionFrame,
        TTSSpeakFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from pipecat.metrics.metrics import (
        LLMTokenUsage,
        LLMUsageMetricsData,
        ProcessingMetricsData,
        TTFBMetricsData,
    )
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat.services.llm_service import LLMService
    from pipecat.services.settings import LLMSettings
    from pipecat.workers.runner import WorkerRunner
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sessiontrack.adapters.pipecat needs pipecat: pip install 'sessiontrack[pipecat]'"
    ) from exc

from ..testing import RecordedError, ReplayInbound, ReplayRun, UnrecordedCall
from ..tracker import Tracker

__all__ = [
    "PipecatAdapter",
    "PipecatReplay",
    "RecordedLLMService",
    "RecordedResponse",
    "SessionObserver",
    "recorded_responses",
    "spoken_frames",
]

log = logging.getLogger(__name__)

_STOP_REASON = "stopped through sessiontrack"
_SIBLINGS = 256  # ids of broadcast copies still expected


class Worker(Protocol):
    """What the observer uses of a pipecat ``PipelineWorker`` (``PipelineTask``)."""

    def add_observer(self, observer: BaseObserver) -> Any: ...

    def add_event_handler(self, event_name: str, handler: Any) -> Any: ...

    def cancel(self, *, reason: str | None = None) -> Coroutine[Any, Any, Any]: ...


class FlowManagerLike(Protocol):
    """What the observer uses of a pipecat-flows ``FlowManager`` (``pipecat_flows`` or
    ``pipecat.flows``: nothing is imported from either)."""

    @property
    def current_node(self) -> str | None: ...

    @property
    def state(self) -> dict[str, Any]: ...

    @property
    def worker(self) -> Any: ...


class PipecatAdapter(EngineAdapter):
    """Reports the conversations of one pipecat bot.

    :param tracker: the running :class:`~sessiontrack.Tracker` (or a
        :class:`~sessiontrack.SyncTracker`).
    :param chatbot_id: the bot's id; stop requests for other bots are ignored.
    :param name: its display name (default: ``chatbot_id``).
    :param nodes: the flow's nodes known in advance (ids, or ``(id, label)``); a
        pipecat flow makes its nodes at run time, so the graph is mostly learnt: each
        transition seen adds its edge (and unknown nodes) to this flow version.
    :param edges: known ``(source, target[, label])`` edges.
    :param version: the flow version (default: a hash of the declared graph).
    """

    def __init__(
        self,
        tracker: Tracker | BlockingTracker,
        chatbot_id: str,
        *,
        name: str | None = None,
        nodes: Iterable[str | tuple[str, str | None]] = (),
        edges: Iterable[tuple[str, str] | tuple[str, str, str | None]] = (),
        version: str | None = None,
    ) -> None:
        super().__init__(tracker, chatbot_id, name=name)
        self._observers: dict[str, SessionObserver] = {}
        self.register_flow(flow_graph(nodes, edges), version=version)

    async def observer(
        self,
        conversation_id: str | int,
        *,
        worker: Worker | None = None,
        contact: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SessionObserver:
        """The observer of one conversation: its active session (after a restart, the
        one the store knows), or a new one started with ``contact``, ``variables`` and
        ``metadata``.

        Pass it to ``PipelineWorker(observers=[...])``, or give ``worker`` and it is added
        with ``worker.add_observer`` (and the worker is the one a stop cancels).
        """
        given = {"contact": contact, "variables": variables, "metadata": metadata}
        started = {key: value for key, value in given.items() if value is not None}
        if self._blocking is not None:  # a SyncTracker: its tracker runs on another loop
            find = partial(self.session_for_sync, conversation_id, **started)
            session_id, is_new = await asyncio.to_thread(find)
        else:
            session_id, is_new = await self.session_for(conversation_id, **started)
        observer = SessionObserver(self, session_id, resumed=not is_new)
        with self._lock:
            self._observers[session_id] = observer
        if worker is not None:
            observer.attach(worker)
            worker.add_observer(observer)
        return observer

    def on_stop(self, session_id: str, conversation_id: str | None) -> None:
        observer = self._dismiss(session_id)
        if observer is not None:
            observer.stop_requested()

    def _dismiss(self, session_id: str) -> SessionObserver | None:
        with self._lock:
            return self._observers.pop(session_id, None)


class _Call:
    """An LLM response in progress."""

    __slots__ = (
        "error",
        "input",
        "latency",
        "model",
        "output",
        "processor",
        "provider",
        "started",
        "ttfb",
    )

    def __init__(self, model: str | None, provider: str | None, processor: Any = None) -> None:
        self.started = time.perf_counter()
        self.model = model  # from pipecat's MetricsData.model, as the metrics arrive
        self.provider = provider
        self.processor = processor
        self.input: int | None = None
        self.output: int | None = None
        self.ttfb: float | None = None
        self.latency: float | None = None
        self.error: str | None = None


class SessionObserver(BaseObserver):
    """Reports one conversation's pipeline to its session (see the module docstring).

    Made by :meth:`PipecatAdapter.observer`; every report is a hook call.
    """

    def __init__(self, adapter: PipecatAdapter, session_id: str, *, resumed: bool) -> None:
        super().__init__(name=f"sessiontrack-observer-{session_id}")
        self.adapter = adapter
        self.session_id = session_id
        self.hook = adapter.hook
        self.node_id: str | None = None
        self._node_started = time.perf_counter()
        self._node_reported = True
        self._flow: FlowManagerLike | None = None
        self._state: dict[str, Any] | None = None
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the pipeline's loop
        self._cancel_pending = False  # stopped before the pipeline's loop was known
        self._tasks: set[asyncio.Future[Any]] = set()
        self._mark = f"_sessiontrack_seen_{id(self)}"
        self._siblings: set[int] = set()
        self._sibling_order: deque[int] = deque()
        self._heard: list[str] = []
        self._said: list[str] = []
        self._calls: dict[str, _Call] = {}
        self._tools: dict[str, tuple[float, str, Any]] = {}
        self._pending_tools = 0
        self._last_tool: str | None = None
        self._status: str | None = None if resumed else "running"
        self._finished = False
        self._stopped = False
        self._awaiting = asyncio.Event()  # the bot answered: the customer's turn

    # --- wiring -------------------------------------------------------------------------

    def attach(self, worker: Worker) -> None:
        """Know the session's ``PipelineWorker``: a stop cancels it, and its end completes
        the session even if the last frames were still queued for the observer."""
        self._worker = worker
        worker.add_event_handler("on_pipeline_finished", self._on_pipeline_finished)
        with contextlib.suppress(RuntimeError):  # attached outside the loop: see later
            self._loop = asyncio.get_running_loop()

    def track_flow(self, flow_manager: FlowManagerLike) -> None:
        """Report the nodes of a pipecat-flows ``FlowManager`` (and attach its worker)."""
        self._flow = flow_manager
        if self._worker is None and flow_manager.worker is not None:
            self.attach(flow_manager.worker)

    # --- pipecat's observer interface ---------------------------------------------------

    async def on_pipeline_started(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._cancel_pending:
            self._cancel_pending = False
            self._cancel_worker()

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        kind = type(frame)
        handler = _HANDLERS.get(kind, _UNRESOLVED)
        if handler is _UNRESOLVED:
            handler = _HANDLERS[kind] = _resolve(kind)
        if handler is None or self._stopped:
            return
        # pipecat shows a frame at every hop: a mark in the frame's metadata says it was
        # seen (a window of recent ids misses a frame overtaken by many others; a new
        # attribute on the frame would slow pipecat's own attribute reads of it)
        marks = frame.metadata
        if self._mark in marks:
            return
        marks[self._mark] = True
        sibling = frame.broadcast_sibling_id
        if sibling is not None and self._broadcast(frame.id, sibling):
            return
        try:
            handler(self, frame, data)
        except Exception:
            log.exception("sessiontrack: could not report %s of %s", kind.__name__, self.session_id)

    def _broadcast(self, fid: int, sibling: int) -> bool:
        """Whether this frame is the other copy of a frame broadcast both ways."""
        if fid in self._siblings:
            self._siblings.discard(fid)
            return True
        self._siblings.add(sibling)
        self._sibling_order.append(sibling)
        if len(self._sibling_order) > _SIBLINGS:  # copies that never showed up
            self._siblings.discard(self._sibling_order.popleft())
        return False

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[no-untyped-call]
        self._finish("completed", "flow_end")

    async def _on_pipeline_finished(self, _worker: Any, frame: Frame) -> None:
        if isinstance(frame, CancelFrame):
            self._finish("completed", _cancel_reason(frame))
        else:
            self._finish("completed", "flow_end")

    # --- frames -------------------------------------------------------------------------

    def _transcription(self, frame: TranscriptionFrame, _data: FramePushed) -> None:
        if frame.text:
            self._heard.append(frame.text)
        self._set_status("running")

    def _user_speaking(self, _frame: Frame, _data: FramePushed) -> None:
        self._set_status("running")

    def _context(self, _frame: Frame, _data: FramePushed) -> None:
        self._flush_heard()

    def _set_tools(self, _frame: Frame, _data: FramePushed) -> None:
        if self._flow is not None and (node := self._flow.current_node) is not None:
            self._enter(node)

    def _response_start(self, _frame: Frame, data: FramePushed) -> None:
        self._flush_heard()
        if self._flow is not None:
            node = self._flow.current_node
            if node is not None and node != self.node_id:
                self._enter(node)
        source = data.source
        self._calls[source.name] = _Call(None, _provider(source), source)

    def _text(self, frame: LLMTextFrame, _data: FramePushed) -> None:
        if frame.text:
            self._said.append(frame.text)

    def _speak(self, frame: TTSSpeakFrame, _data: FramePushed) -> None:
        self._flush_said()
        if frame.text:
            self._message("outbound", frame.text)

    def _response_end(self, _frame: Frame, data: FramePushed) -> None:
        self._flush_said()
        call = self._calls.pop(data.source.name, None)
        if call is not None:
            self._report_call(call)
        self._node_answered()
        if self._pending_tools == 0:
            self._set_status("waiting_input")

    def _metrics(self, frame: MetricsFrame, _data: FramePushed) -> None:
        for item in frame.data:
            call = self._calls.get(item.processor)
            if isinstance(item, LLMUsageMetricsData):
                usage = item.value
                if call is None:  # usage outside a response (a summary, say)
                    call = _Call(item.model, None)
                    call.input, call.output = usage.prompt_tokens, usage.completion_tokens
                    self._report_call(call)
                    continue
                call.input, call.output = usage.prompt_tokens, usage.completion_tokens
            elif call is None:
                continue
            elif isinstance(item, TTFBMetricsData):
                if call.ttfb is None:
                    call.ttfb = item.value * 1000
            elif isinstance(item, ProcessingMetricsData):
                call.latency = item.value * 1000
            if item.model and call.model is None:
                call.model = item.model

    def _calls_started(self, frame: FunctionCallsStartedFrame, _data: FramePushed) -> None:
        self._pending_tools += len(frame.function_calls)

    def _tool_started(self, frame: FunctionCallInProgressFrame, _data: FramePushed) -> None:
        start = time.perf_counter()
        self._tools[frame.tool_call_id] = (start, frame.function_name, frame.arguments)

    def _tool_result(self, frame: FunctionCallResultFrame, _data: FramePushed) -> None:
        if frame.properties is not None and not frame.properties.is_final:
            return  # an intermediate update of an asynchronous function
        result = frame.result
        error = None
        if isinstance(result, Mapping) and result.get("status") == "error":
            error = str(result.get("error") or "error")  # how pipecat flows returns a raise
        self._tool_done(frame.tool_call_id, frame.function_name, frame.arguments, result, error)

    def _tool_cancelled(self, frame: FunctionCallCancelFrame, _data: FramePushed) -> None:
        if frame.tool_call_id in self._tools:
            self._tool_done(frame.tool_call_id, frame.function_name, None, None, "cancelled")

    def _error(self, frame: ErrorFrame, data: FramePushed) -> None:
        processor = frame.processor or data.source
        name = getattr(processor, "name", None)
        text = frame.error or (error_text(frame.exception) if frame.exception else "error")
        call = self._calls.get(name) if name is not None else None
        if call is not None and call.error is None:
            call.error = text[:1000]
            return
        for call_id, (_, function, arguments) in list(self._tools.items()):
            if text.startswith(f"Error executing function call [{function}]"):
                self._tool_done(call_id, function, arguments, None, text)  # pipecat's own raise
                return
        node = self.node_id or name or "pipeline"
        self.adapter.node_done(self.session_id, node, self._node_started, error=text)
        self._node_started = time.perf_counter()
        self._node_reported = True

    def _end(self, _frame: EndFrame, _data: FramePushed) -> None:
        self._finish("completed", "flow_end")

    def _cancel(self, frame: CancelFrame, _data: FramePushed) -> None:
        self._finish("completed", _cancel_reason(frame))

    # --- reports ------------------------------------------------------------------------

    def _enter(self, node: str) -> None:
        now = time.perf_counter()
        previous = self.node_id
        if previous is not None:
            self._node_answered()
            self.adapter.observe_edge(previous, node, label=self._last_tool)
        self.node_id = node
        self._node_started = now
        self._node_reported = False
        self._last_tool = None
        self._report_state()
        if not self._finished:
            self._status = "running"
            self.adapter.status(self.session_id, "running", node_id=node)

    def _node_answered(self) -> None:
        """Report the current visit's node execution, once."""
        if not self._node_reported and self.node_id is not None:
            self._node_reported = True
            self.adapter.node_done(self.session_id, self.node_id, self._node_started)
            self._node_started = time.perf_counter()

    def _report_state(self) -> None:
        state = self._flow.state if self._flow is not None else None
        if not isinstance(state, dict) or not state or state == self._state:
            return
        self._state = dict(state)
        self.hook.sessiontrack_variables_changed(
            session_id=self.session_id, variables=_jsonable(state)
        )

    def _set_status(self, status: str) -> None:
        if self._status != status and not self._finished:
            self._status = status
            self.adapter.status(self.session_id, status, node_id=self.node_id)
            if status == "waiting_input":
                self._awaiting.set()

    async def customer_turn(self) -> None:
        """Return when it is the customer's turn: the bot has answered and waits for them
        (its response ended with no function call pending) since the last call returned,
        or the session has ended. What a transport, or a test standing in for one,
        awaits before the customer's next words."""
        await self._awaiting.wait()
        if not self._finished:
            self._awaiting.clear()  # the next call waits for the next answer

    def _message(self, direction: str, text: str) -> None:
        self.hook.sessiontrack_message(
            session_id=self.session_id, direction=direction, text=text, node_id=self.node_id
        )

    def _flush_heard(self) -> None:
        if self._heard:
            text = " ".join(t.strip() for t in self._heard).strip()
            self._heard.clear()
            if text:
                self._message("inbound", text)

    def _flush_said(self) -> None:
        if self._said:
            text = "".join(self._said).strip()
            self._said.clear()
            if text:
                self._message("outbound", text)

    def _report_call(self, call: _Call) -> None:
        latency = call.latency
        if latency is None:
            latency = (time.perf_counter() - call.started) * 1000
        self.hook.sessiontrack_llm_call(
            session_id=self.session_id,
            model=call.model or _model(call.processor) or "unknown",
            node_id=self.node_id,
            provider=call.provider,
            input_tokens=call.input,
            output_tokens=call.output,
            latency_ms=latency,
            ttfb_ms=call.ttfb,
            error=call.error,
        )

    def _tool_done(
        self, call_id: str, name: str, arguments: Any, result: Any, error: str | None
    ) -> None:
        started = self._tools.pop(call_id, None)
        self._pending_tools = max(0, self._pending_tools - 1)
        self._last_tool = name
        duration = None if started is None else (time.perf_counter() - started[0]) * 1000
        if arguments is None and started is not None:
            arguments = started[2]
        report: dict[str, Any] = {
            "session_id": self.session_id,
            "name": name,
            "node_id": self.node_id,
            "call_id": call_id,
            "arguments": _jsonable(arguments),
            "result": _jsonable(result),
            "error": error[:1000] if error else None,
            "duration_ms": duration,
        }
        try:
            self.hook.sessiontrack_tool_call(**report)
        except (TypeError, ValueError):  # a result too large or too deep: keep its start
            report["arguments"] = _short(arguments)
            report["result"] = _short(result)
            self.hook.sessiontrack_tool_call(**report)

    def _finish(self, status: str, reason: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._awaiting.set()  # nothing more to wait for
        self.adapter._dismiss(self.session_id)
        try:
            self._report_end(status, reason)
        except Exception:
            log.exception("sessiontrack: could not report the end of session %s", self.session_id)

    def _report_end(self, status: str, reason: str | None) -> None:
        if self._stopped:
            return  # the tracker ended the session; anything reported now would be late
        self._flush_heard()
        self._flush_said()
        for name, call in list(self._calls.items()):
            del self._calls[name]
            self._report_call(call)
        self._node_answered()
        self.adapter.complete(self.session_id, status, reason)

    # --- stops --------------------------------------------------------------------------

    def stop_requested(self) -> None:
        """The session was stopped through the API: cancel its pipeline (called by the
        adapter, on the tracker's thread; the cancel runs on the pipeline's loop)."""
        if self._stopped:
            return
        self._stopped = True  # (reports after the stop would be dropped as late)
        worker = self._worker
        if worker is None:
            log.warning(
                "sessiontrack: session %s was stopped but its observer knows no worker "
                "(pass worker= to PipecatAdapter.observer or call attach()): the pipeline "
                "goes on",
                self.session_id,
            )
            return
        loop = self._loop
        if loop is None:  # the pipeline has not started: it is cancelled when it does
            self._cancel_pending = True
            return
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is here:
            self._cancel_worker()
            return
        try:
            loop.call_soon_threadsafe(self._cancel_worker)  # a SyncTracker's thread: hand it over
        except RuntimeError:
            log.warning("sessiontrack: the loop of session %s is closed", self.session_id)

    def _cancel_worker(self) -> None:
        """Cancel the pipeline, on its loop."""
        worker = self._worker
        if worker is None or self._finished:
            return
        task = asyncio.get_running_loop().create_task(worker.cancel(reason=_STOP_REASON))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _resolve(kind: type) -> Callable[[SessionObserver, Any, FramePushed], None] | None:
    for base, handler in _BY_CLASS:
        if issubclass(kind, base):
            return handler
    return None


_UNRESOLVED: Any = object()
_BY_CLASS: tuple[tuple[type, Callable[[SessionObserver, Any, FramePushed], None]], ...] = (
    (TranscriptionFrame, SessionObserver._transcription),
    (LLMTextFrame, SessionObserver._text),
    (TTSSpeakFrame, SessionObserver._speak),
    (LLMFullResponseStartFrame, SessionObserver._response_start),
    (LLMFullResponseEndFrame, SessionObserver._response_end),
    (MetricsFrame, SessionObserver._metrics),
    (FunctionCallsStartedFrame, SessionObserver._calls_started),
    (FunctionCallInProgressFrame, SessionObserver._tool_started),
    (FunctionCallResultFrame, SessionObserver._tool_result),
    (FunctionCallCancelFrame, SessionObserver._tool_cancelled),
    (ErrorFrame, SessionObserver._error),
    (EndFrame, SessionObserver._end),
    (CancelFrame, SessionObserver._cancel),
    (UserStartedSpeakingFrame, SessionObserver._user_speaking),
    (LLMContextFrame, SessionObserver._context),
    (LLMSetToolsFrame, SessionObserver._set_tools),
)
# frame class → its handler (None: not watched); filled as classes are first seen
_HANDLERS: dict[type, Callable[[SessionObserver, Any, FramePushed], None] | None] = {}


def _model(processor: Any) -> str | None:
    """The model of a response that brought no metrics (pipecat's ``MetricsData.model``
    is the public source): a last resort, pipecat's private ``AIService._settings``,
    read defensively as it may change without notice."""
    if processor is None:
        return None
    try:
        model = getattr(getattr(processor, "_settings", None), "model", None)
    except Exception:
        return None
    return model if isinstance(model, str) and model else None


def _provider(processor: Any) -> str | None:
    """``openai`` for ``pipecat.services.openai.llm``; ``None`` outside pipecat's
    services."""
    parts = type(processor).__module__.split(".")
    if parts[:2] == ["pipecat", "services"] and len(parts) > 2:
        return parts[2]
    return None


def _cancel_reason(frame: CancelFrame) -> str:
    return f"cancelled: {frame.reason}"[:1000] if frame.reason else "cancelled"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON (mappings, sequences, scalars; anything else as its ``str``)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if depth > 20:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return _jsonable(dump(), depth + 1)
    return str(value)


def _short(value: Any) -> str | None:
    return None if value is None else str(value)[:1000]


# --- replaying a recorded session (sessiontrack.testing) ---------------------------------

_SAID_WITHIN_MS = 50.0
"""An outbound message reported at most this long before an LLM call at its node is that
call's text (the observer reports a response's text and then its call, at its end; a
``tts_say`` at the node's entry comes a model's time to first byte earlier)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedResponse:
    """One recorded LLM response, rebuilt from a fixture (:func:`recorded_responses`)."""

    turn: int
    node_id: str | None
    model: str | None
    text: str | None
    """What the bot said at the end of the response (``None``: nothing)."""
    function_calls: tuple[dict[str, Any], ...] = ()
    """The recorded tool calls the response asked for (``name``, ``arguments``,
    ``callId``, ``result``, ``error``)."""
    input_tokens: int | None = None
    output_tokens: int | None = None


def recorded_responses(fixture: Mapping[str, Any]) -> list[RecordedResponse]:
    """The LLM responses of a session the pipecat adapter recorded, one per recorded LLM
    call (the ``sessiontrack_llm_call`` hook records a call's figures, not its words). The
    observer reports a response's text just before its call, at the response's end, and
    a function's result after it (pipecat runs functions as tasks): a response's text is
    the outbound message its node said at most 50 ms before the call, and its function
    calls are the tool calls of its turn and node reported after it, before the next
    response of that turn."""
    calls = sorted(fixture["recorded"]["llmCalls"], key=lambda c: (c["turn"], c["offsetMs"]))
    said = fixture["expected"]["outbound"]
    tools = sorted(fixture["recorded"]["toolCalls"], key=lambda t: (t["turn"], t["offsetMs"]))
    made: list[list[dict[str, Any]]] = [[] for _ in calls]
    for tool in tools:
        owner = None
        for i, call in enumerate(calls):
            same = call["turn"] == tool["turn"] and call["nodeId"] == tool["nodeId"]
            if same and call["offsetMs"] <= tool["offsetMs"]:
                owner = i  # the last response of its node and turn before it
        if owner is None:  # a result before its response ended: the next response
            owner = next(
                (
                    i
                    for i, c in enumerate(calls)
                    if c["turn"] == tool["turn"] and c["nodeId"] == tool["nodeId"]
                ),
                None,
            )
        if owner is not None:
            made[owner].append(tool)
    out: list[RecordedResponse] = []
    previous: float | None = None
    for i, call in enumerate(calls):
        if i and calls[i - 1]["turn"] != call["turn"]:
            previous = None
        at = call["offsetMs"]
        texts = [
            m
            for m in said
            if m["turn"] == call["turn"]
            and m["nodeId"] == call["nodeId"]
            and m["offsetMs"] <= at
            and at - m["offsetMs"] <= _SAID_WITHIN_MS
            and (previous is None or m["offsetMs"] > previous)
        ]
        previous = at
        out.append(
            RecordedResponse(
                turn=call["turn"],
                node_id=call["nodeId"],
                model=call["model"],
                text=texts[-1]["text"] if texts else None,
                function_calls=tuple(made[i]),
                input_tokens=call["inputTokens"],
                output_tokens=call["outputTokens"],
            )
        )
    return out


class RecordedLLMService(LLMService):
    """A pipecat ``LLMService`` answering each context with the next recorded response
    (:func:`recorded_responses`): its text as one ``LLMTextFrame``, its tokens as usage
    metrics, its function calls (recorded name, arguments and call id) through pipecat's
    own ``run_function_calls``. The function's handler runs as in production (a
    pipecat-flows handler picks the next node); the result it hands back is replaced by
    the recorded one. A response more than the recording had is an ``ErrorFrame`` and a
    difference of kind ``llm``.

    :param node: the node the conversation is at (for the report of an unrecorded call).
    """

    def __init__(self, run: ReplayRun, *, node: Callable[[], str | None] = lambda: None) -> None:
        self.responses = deque(recorded_responses(run.fixture))
        model = next((r.model for r in self.responses if r.model), None) or "recorded"
        unset: dict[str, Any] = {
            f.name: None for f in fields(LLMSettings) if f.name not in ("model", "extra")
        }
        super().__init__(settings=LLMSettings(model=model, **unset))
        self.run = run
        self.node = node
        self._results: dict[str, Any] = {}  # tool call id → the recorded result

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._respond(frame.context)
        else:
            await self.push_frame(frame, direction)

    async def _respond(self, context: Any) -> None:
        await self.push_frame(LLMFullResponseStartFrame())
        try:
            try:
                self.run.llm(node_id=self.node())
            except UnrecordedCall as exc:
                await self.push_error(error_msg=f"replay: {exc}")
                return
            response = self.responses.popleft()
            if response.text:
                await self.push_frame(LLMTextFrame(response.text))
            if response.input_tokens is not None or response.output_tokens is not None:
                prompt, completion = response.input_tokens or 0, response.output_tokens or 0
                usage = LLMTokenUsage(
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    total_tokens=prompt + completion,
                )
                await self.start_llm_usage_metrics(usage)
            calls = [self._call(n, tool, context) for n, tool in enumerate(response.function_calls)]
            if calls:
                await self.run_function_calls(calls)
        finally:
            await self.push_frame(LLMFullResponseEndFrame())

    def _call(self, n: int, tool: Mapping[str, Any], context: Any) -> FunctionCallFromLLM:
        name, arguments = tool["name"], tool["arguments"]
        call_id = tool["callId"] or f"replay-call-{len(self.responses)}-{n}"
        # unrecorded, or failed when recorded: the handler's own result
        with contextlib.suppress(UnrecordedCall, RecordedError):
            self._results[call_id] = self.run.tool(name, arguments, node_id=self.node())
        self._replace_results(name)
        return FunctionCallFromLLM(
            function_name=name,
            tool_call_id=call_id,
            arguments=arguments if isinstance(arguments, Mapping) else {},
            context=context,
        )

    def _replace_results(self, name: str) -> None:
        """Wrap the registered handler of ``name`` (registered by the host, or by
        pipecat flows from the node's functions) so its result is the recorded one."""
        registry = getattr(self, "_functions", None)  # pipecat's own registry (private)
        item = registry.get(name) if isinstance(registry, dict) else None
        handler = getattr(item, "handler", None)
        if item is None or not callable(handler) or getattr(handler, "_sessiontrack", False):
            return
        results = self._results

        async def replayed(params: Any) -> None:
            if params.tool_call_id in results:
                recorded = results.pop(params.tool_call_id)
                given = params.result_callback

                async def result_callback(result: Any, *, properties: Any = None) -> None:
                    final = properties is None or properties.is_final
                    await given(recorded if final else result, properties=properties)

                params.result_callback = result_callback
            await handler(params)

        replayed._sessiontrack = True  # type: ignore[attr-defined]
        item.handler = replayed


class PipecatReplay:
    """A :class:`~sessiontrack.testing.ReplayEngine` for a pipecat pipeline: builds it on
    a :class:`RecordedLLMService`, watches it with a :class:`SessionObserver` of a
    :class:`PipecatAdapter` on the replay's tracker, runs it, and pushes each inbound
    message as the frames a transport with its own voice detection and a speech-to-text
    service push (``UserStartedSpeakingFrame``, a final ``TranscriptionFrame``,
    ``UserStoppedSpeakingFrame``)::

        replayer = PipecatReplay(build, start=lambda flow: flow.initialize(first_node()))
        await assert_replays(fixture, replayer)

    :param build: ``build(llm)`` makes the conversation's ``PipelineWorker`` around the
        given LLM service, or a pipecat-flows ``FlowManager`` on one (its nodes are then
        tracked): the pipeline from the user context aggregator on, without transport and
        speech-to-text; the aggregator's user turn strategies must take the pushed frames
        (``ExternalUserTurnStrategies``).
    :param start: ``start(built)``, once the pipeline runs (may be ``async``): a flow's
        ``initialize(first_node)``, a bot that speaks first.
    :param frames: the frames for an inbound message (default: :func:`spoken_frames` of
        its text).
    :param nodes: ``edges``, ``version``: as for :class:`PipecatAdapter`.
    :param answer_timeout: seconds to wait, per turn, for the bot to answer (the
        observer's :meth:`~SessionObserver.customer_turn`) before the next message.

    Each turn ends once the bot waits for the customer again (its response ended with
    no function call pending) or the pipeline ended: the adapter reports a node once the
    bot has answered in it, so everything a turn did is reported by then. A turn whose
    recording has no LLM call and no outbound message is not waited for. At the end a
    pipeline still running is cancelled: with the recorded reason when the recording
    ended with a cancel (a hang-up), else silently, as a stop.
    """

    def __init__(
        self,
        build: Callable[[RecordedLLMService], Any],
        *,
        start: Callable[[Any], Any] | None = None,
        frames: Callable[[ReplayInbound], list[Frame]] | None = None,
        nodes: Iterable[str | tuple[str, str | None]] = (),
        edges: Iterable[tuple[str, str] | tuple[str, str, str | None]] = (),
        version: str | None = None,
        answer_timeout: float = 5.0,
    ) -> None:
        self.build = build
        self.start = start
        self.frames = frames or _spoken
        self.nodes, self.edges, self.version = list(nodes), list(edges), version
        self.answer_timeout = answer_timeout
        self.llm: RecordedLLMService | None = None
        self.built: Any = None
        self.worker: Any = None
        self.observer: SessionObserver | None = None
        self.errors: list[str] = []
        """Turns the bot did not answer within ``answer_timeout``, a pipeline that did
        not end."""
        self._runner: asyncio.Task[Any] | None = None

    async def replay_start(self, run: ReplayRun) -> None:
        tracker = await run.tracker()
        adapter = PipecatAdapter(
            tracker,
            run.chatbot_id,
            name=run.flow.get("name"),
            nodes=self.nodes,
            edges=self.edges,
            version=self.version,
        )
        adapter.make_session_id = run.new_session_id
        run.at_end(adapter.close)
        llm = RecordedLLMService(run)
        built = self.build(llm)
        worker = built if isinstance(built, PipelineWorker) else built.worker
        observer = await adapter.observer(
            run.conversation_id or run.session_id,
            worker=worker,
            contact=run.contact or None,
            metadata=run.metadata or None,
        )
        if worker is not built:
            observer.track_flow(built)
        llm.node = lambda: observer.node_id
        self.llm, self.built, self.worker, self.observer = llm, built, worker, observer
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        self._runner = asyncio.get_running_loop().create_task(runner.run())
        run.at_end(partial(self._end, run))
        if self.start is not None:
            started = self.start(built)
            if inspect.isawaitable(started):
                await started
        await self._answered(run, 0)

    async def replay_inbound(self, message: ReplayInbound, run: ReplayRun) -> None:
        assert self.worker is not None, "replay_start() first"
        if self._runner is not None and self._runner.done():
            return  # the pipeline ended: the session's end is in the report
        await self.worker.queue_frames(self.frames(message))
        await self._answered(run, message.turn)

    async def _answered(self, run: ReplayRun, turn: int) -> None:
        """Wait for the end of ``turn``: the bot's answer, or the pipeline's end."""
        observer = self.observer
        assert observer is not None
        recorded = run.fixture
        if not any(
            item["turn"] == turn
            for item in (*recorded["recorded"]["llmCalls"], *recorded["expected"]["outbound"])
        ):
            await asyncio.sleep(0.05)  # nothing to wait for: let the frames settle
            return
        try:
            await asyncio.wait_for(observer.customer_turn(), self.answer_timeout)
        except TimeoutError:
            self.errors.append(f"turn {turn}: no answer within {self.answer_timeout} s")
        if run.status is not None and not run.active:  # an EndFrame: the frames still
            await self._ended()  # on their way (the goodbye) belong to this turn

    async def _ended(self) -> None:
        runner = self._runner
        if runner is None or runner.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(runner), self.answer_timeout)
        except TimeoutError:
            self.errors.append(f"the pipeline did not end within {self.answer_timeout} s")
            runner.cancel()

    async def _end(self, run: ReplayRun) -> None:
        runner, observer = self._runner, self.observer
        if runner is None or observer is None:
            return
        if not runner.done() and run.active:
            end = run.fixture["expected"]["end"]
            reason = end.get("reason") or ""
            if end["status"] == "completed" and reason.startswith("cancelled"):
                await self.worker.cancel(reason=reason.partition(": ")[2] or None)  # hang-up
            else:
                observer.stop_requested()  # as a stop: nothing more is reported
        await self._ended()


def spoken_frames(text: str, user_id: str = "customer") -> list[Frame]:
    """The frames of a customer saying ``text``, as a transport with its own voice
    detection and a speech-to-text service push them: ``UserStartedSpeakingFrame``, a
    final ``TranscriptionFrame``, ``UserStoppedSpeakingFrame``."""
    return [
        UserStartedSpeakingFrame(),
        TranscriptionFrame(text, user_id, _timestamp()),
        UserStoppedSpeakingFrame(),
    ]


def _spoken(message: ReplayInbound) -> list[Frame]:
    return spoken_frames(message.text or "")


def _timestamp() -> str:
    return datetime.now(UTC).isoformat()
