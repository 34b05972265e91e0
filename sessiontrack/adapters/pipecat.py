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
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
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
    )
    from pipecat.metrics.metrics import (
        LLMUsageMetricsData,
        ProcessingMetricsData,
        TTFBMetricsData,
    )
    from pipecat.observers.base_observer import BaseObserver, FramePushed
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sessiontrack.adapters.pipecat needs pipecat: pip install 'sessiontrack[pipecat]'"
    ) from exc

from ..tracker import Tracker

__all__ = ["PipecatAdapter", "SessionObserver"]

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
