"""The pipecat adapter against a real pipecat pipeline and a real pipecat-flows FlowManager,
offline: the LLM is a scripted ``LLMService`` subclass that streams text frames, reports
usage and time-to-first-byte metrics as pipecat services do, and asks for function calls;
the customer's turns are the frames a transport with its own voice detection pushes
(``UserStartedSpeakingFrame``, a final ``TranscriptionFrame``, ``UserStoppedSpeakingFrame``).
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import sessiontrack
from sessiontrack.adapters.pipecat import PipecatAdapter, SessionObserver
from sessiontrack.models import SessionDetail
from sessiontrack.web import create_app
from tests.adapter_helpers.docs import run_documented_example

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # "moves into pipecat.flows"
    from pipecat_flows import FlowManager, FlowsFunctionSchema, NodeConfig

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import LLMTokenUsage
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings
from pipecat.turns.user_start.external_user_turn_start_strategy import (
    ExternalUserTurnStartStrategy,
)
from pipecat.turns.user_stop.external_user_turn_stop_strategy import ExternalUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

pytestmark = pytest.mark.anyio
DOC = Path(__file__).resolve().parent.parent / "docs" / "adapters" / "pipecat.md"

BOT = "pizza-bot"
PROMPT_TOKENS, COMPLETION_TOKENS = 40, 7


class ScriptedLLM(LLMService):  # type: ignore[misc]
    """An LLM that answers each context with the next step of its script: text chunks,
    a function call, or an exception, with pipecat's metrics around it."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        super().__init__(settings=LLMSettings(model="scripted-1", **_unset_llm_settings()))
        self.script = script

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        step = self.script.pop(0)
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        try:
            await asyncio.sleep(0.005)
            if "raise" in step:
                raise RuntimeError(step["raise"])
            await self.stop_ttfb_metrics()
            for chunk in step.get("text", ()):
                await self.push_frame(LLMTextFrame(chunk))
            usage = LLMTokenUsage(
                prompt_tokens=PROMPT_TOKENS,
                completion_tokens=COMPLETION_TOKENS,
                total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
            )
            await self.start_llm_usage_metrics(usage)
            if "call" in step:
                name, arguments = step["call"]
                call = FunctionCallFromLLM(
                    function_name=name,
                    tool_call_id=f"call-{name}-{len(self.script)}",
                    arguments=arguments,
                    context=frame.context,
                )
                await self.run_function_calls([call])
        except Exception as exc:
            await self.push_error(error_msg=f"Error during completion: {exc}", exception=exc)
        finally:
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())


def _unset_llm_settings() -> dict[str, Any]:
    names = ("system_instruction", "temperature", "max_tokens", "top_p", "top_k")
    more = ("frequency_penalty", "presence_penalty", "seed", "user_turn_completion_config")
    return {**dict.fromkeys(names + more), "filter_incomplete_user_turns": False}


# --- the flow: greeting → order → goodbye ---------------------------------------------


async def collect_name(args: dict[str, Any], flow_manager: FlowManager) -> tuple[Any, Any]:
    flow_manager.state["name"] = args["name"]
    return {"name": args["name"]}, order_node()


async def check_stock(args: dict[str, Any], flow_manager: FlowManager) -> tuple[Any, Any]:
    raise RuntimeError("stock service down")


async def place_order(args: dict[str, Any], flow_manager: FlowManager) -> tuple[Any, Any]:
    flow_manager.state["order"] = args["item"]
    return {"order": args["item"], "total": 12.5}, goodbye_node()


def _function(function: str, handler: Any, **properties: Any) -> FlowsFunctionSchema:
    return FlowsFunctionSchema(
        name=function,
        description=function,
        properties={k: {"type": t} for k, t in properties.items()},
        required=list(properties),
        handler=handler,
    )


def greeting_node() -> NodeConfig:
    return {
        "name": "greeting",
        "task_messages": [{"role": "system", "content": "Ask for the customer's name."}],
        "functions": [_function("collect_name", collect_name, name="string")],
    }


def order_node() -> NodeConfig:
    return {
        "name": "order",
        "task_messages": [{"role": "system", "content": "Take the order."}],
        "functions": [
            _function("place_order", place_order, item="string"),
            _function("check_stock", check_stock),
        ],
    }


def goodbye_node() -> NodeConfig:
    return {
        "name": "goodbye",
        "task_messages": [{"role": "system", "content": "Say goodbye."}],
        "functions": [],
        "post_actions": [{"type": "end_conversation"}],
    }


GREET = {"text": ["Hello! ", "What is ", "your name?"]}
NAME = {"call": ("collect_name", {"name": "Ada"})}
ASK = {"text": ["What would ", "you like?"]}
ORDER = {"call": ("place_order", {"item": "pizza"})}
BYE = {"text": ["Bye, ", "Ada!"]}


# --- one call of the bot ----------------------------------------------------------------


class Call:
    """One conversation's pipeline: user aggregator → scripted LLM → assistant aggregator,
    a FlowManager, and the adapter's observer."""

    def __init__(self, observer: SessionObserver, script: list[dict[str, Any]]) -> None:
        self.observer = observer
        self.llm = ScriptedLLM(script)
        strategies = UserTurnStrategies(
            start=[ExternalUserTurnStartStrategy()],
            stop=[ExternalUserTurnStopStrategy(timeout=0.02)],
        )
        aggregators = LLMContextAggregatorPair(
            LLMContext(), user_params=LLMUserAggregatorParams(user_turn_strategies=strategies)
        )
        pipeline = Pipeline([aggregators.user(), self.llm, aggregators.assistant()])
        self.worker = PipelineWorker(
            pipeline,
            params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
            observers=[observer],
            idle_timeout_secs=None,
            enable_rtvi=False,
        )
        self.flow = FlowManager(worker=self.worker, llm=self.llm, context_aggregator=aggregators)
        observer.track_flow(self.flow)

    async def say(self, text: str) -> None:
        frames = [
            UserStartedSpeakingFrame(),
            TranscriptionFrame(text, "customer", "2026-12-01T12:00:00Z"),
            UserStoppedSpeakingFrame(),
        ]
        await self.worker.queue_frames(frames)


async def start(tg: anyio.abc.TaskGroup, call: Call, first: NodeConfig) -> anyio.Event:
    """Run the call's pipeline in ``tg`` and enter the flow's first node; the event is
    set once the pipeline has ended."""
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(call.worker)
    ended = anyio.Event()

    async def run() -> None:
        await runner.run()
        ended.set()

    tg.start_soon(run)
    await call.flow.initialize(first)
    return ended


@asynccontextmanager
async def running(call: Call, first: NodeConfig) -> AsyncIterator[Call]:
    """Run the call's pipeline; leave once the pipeline has ended."""
    async with anyio.create_task_group() as tg:
        ended = await start(tg, call, first)
        yield call
        with anyio.fail_after(10):
            await ended.wait()


async def until(
    tracker: sessiontrack.Tracker, sid: str, ok: Callable[[SessionDetail], bool]
) -> SessionDetail:
    """The session's detail once ``ok`` holds (the reports are committed and read back)."""
    with anyio.fail_after(10):
        while True:
            await tracker.flush()
            detail = await tracker.sessions.get(sid)
            if ok(detail):
                return detail
            await anyio.sleep(0.02)


def conversation(detail: SessionDetail) -> list[tuple[str, str | None, str | None]]:
    return [(m.direction, m.text, m.node_id) for m in detail.messages]


def waiting(detail: SessionDetail) -> bool:
    return detail.status == "waiting_input"


# --- the tests --------------------------------------------------------------------------


async def test_a_completed_conversation_records_nodes_messages_calls_and_the_learnt_flow(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = PipecatAdapter(tracker, BOT, name="Pizza")
    observer = await adapter.observer("call-1", contact={"phone": "+15550001", "name": "Ada"})
    call = Call(observer, [GREET, NAME, ASK, ORDER, BYE])
    async with running(call, greeting_node()):
        await until(tracker, observer.session_id, waiting)
        await call.say("I am Ada")
        await until(tracker, observer.session_id, lambda d: len(d.messages) == 3 and waiting(d))
        await call.say("A pizza, please")
    detail = await until(tracker, observer.session_id, lambda d: d.status == "completed")
    detail = await until(tracker, observer.session_id, lambda d: len(d.messages) == 5)

    assert detail.customer_name == "Ada" and detail.conversation_id == "call-1"
    assert detail.completion_reason == "flow_end"  # an EndFrame: the flow's normal end
    assert conversation(detail) == [
        ("outbound", "Hello! What is your name?", "greeting"),
        ("inbound", "I am Ada", "greeting"),
        ("outbound", "What would you like?", "order"),
        ("inbound", "A pizza, please", "order"),
        ("outbound", "Bye, Ada!", "goodbye"),
    ]
    assert detail.node_history == ["greeting", "order", "goodbye"]
    assert all(e.duration_ms is not None and e.error is None for e in detail.node_executions)
    assert detail.variables == {"name": "Ada", "order": "pizza"}

    assert [(c.model, c.node_id) for c in detail.llm_call_history] == [
        ("scripted-1", "greeting"),
        ("scripted-1", "greeting"),
        ("scripted-1", "order"),
        ("scripted-1", "order"),
        ("scripted-1", "goodbye"),
    ]
    for llm_call in detail.llm_call_history:
        assert (llm_call.input_tokens, llm_call.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
        assert llm_call.ttfb_ms is not None and llm_call.ttfb_ms >= 4
        assert llm_call.latency_ms is not None and llm_call.latency_ms >= llm_call.ttfb_ms
    assert detail.input_tokens == 5 * PROMPT_TOKENS and detail.llm_calls == 5
    tools = [(t.name, t.node_id, t.arguments, t.result) for t in detail.tool_call_history]
    assert tools == [
        ("collect_name", "greeting", {"name": "Ada"}, {"name": "Ada"}),
        ("place_order", "order", {"item": "pizza"}, {"order": "pizza", "total": 12.5}),
    ]
    assert all(t.duration_ms is not None and t.error is None for t in detail.tool_call_history)
    assert detail.tool_calls == 2 and detail.error_count == 0
    totals = {t.node_id: (t.llm_calls, t.tool_calls) for t in detail.node_totals}
    assert totals == {"greeting": (2, 1), "order": (2, 1), "goodbye": (1, 0)}

    edges = {(e["source"], e["target"], e.get("label")) for e in detail.flow_data["edges"]}
    assert edges == {("greeting", "order", "collect_name"), ("order", "goodbye", "place_order")}
    assert {n["id"] for n in detail.flow_data["nodes"]} == {"greeting", "order", "goodbye"}


async def test_the_session_waits_for_the_customer_and_runs_again_when_they_speak(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = PipecatAdapter(tracker, BOT)
    observer = await adapter.observer("call-2")
    call = Call(observer, [GREET, NAME, ASK])
    seen: list[str] = []

    async with running(call, greeting_node()):
        detail = await until(tracker, observer.session_id, waiting)
        seen.append(detail.status)
        assert detail.current_node_id == "greeting"
        async with tracker.subscribe(session_id=observer.session_id) as events:
            await call.say("I am Ada")
            with anyio.fail_after(10):
                async for event in events:
                    if event.wire_name == "session:status-changed":
                        seen.append(event.to_wire()["newStatus"])
                        if seen[-1] == "waiting_input":
                            break
        await call.worker.queue_frame(EndFrame())
    detail = await until(tracker, observer.session_id, lambda d: d.status == "completed")
    assert seen[0] == "waiting_input" and seen[1] == "running" and seen[-1] == "waiting_input"
    assert detail.current_node_id == "order"
    assert [m.direction for m in detail.messages] == ["outbound", "inbound", "outbound"]


async def test_a_stop_through_the_rest_api_cancels_the_pipeline_mid_conversation(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = PipecatAdapter(tracker, BOT)
    other = PipecatAdapter(tracker, "another-bot")  # must not act on this bot's stop
    observer = await adapter.observer("call-3")
    other_observer = await other.observer("call-3")  # the same conversation, another bot
    assert other_observer.session_id != observer.session_id
    call = Call(observer, [GREET, NAME, ASK])
    app = create_app(tracker)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))  # a local agent
    async with running(call, greeting_node()):
        await until(tracker, observer.session_id, waiting)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            answer = await client.post(f"/{observer.session_id}/stop")
        assert answer.status_code == 200, answer.text
        # leaving `running` waits until the pipeline has ended: the stop cancelled it
    assert call.worker.has_finished()
    detail = await until(tracker, observer.session_id, lambda d: d.status == "stopped")
    assert detail.completion_reason != "cancelled"
    assert detail.node_history == ["greeting"]
    assert adapter.stopped(observer.session_id)
    assert not other.stopped(observer.session_id)
    assert not other.stopped(other_observer.session_id)
    assert other.cached_session("call-3") == other_observer.session_id
    assert adapter.cached_session("call-3") is None
    other.close()
    adapter.close()


async def test_a_hang_up_completes_the_session_with_the_cancels_reason(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = PipecatAdapter(tracker, BOT)
    observer = await adapter.observer("call-3c")
    call = Call(observer, [GREET, NAME, ASK])
    async with running(call, greeting_node()):
        await until(tracker, observer.session_id, waiting)
        await call.worker.cancel(reason="hang-up")
    detail = await until(tracker, observer.session_id, lambda d: d.status == "completed")
    assert detail.completion_reason == "cancelled: hang-up"
    adapter.close()


async def test_a_stop_before_the_pipeline_started_cancels_it_as_it_starts(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = PipecatAdapter(tracker, BOT)
    observer = await adapter.observer("call-3b")
    call = Call(observer, [GREET, NAME, ASK])
    observer._loop = None  # as when attached outside the pipeline's loop
    await tracker.stop(observer.session_id)
    assert observer._cancel_pending
    with anyio.fail_after(10):
        async with running(call, greeting_node()):
            pass  # leaving waits for the pipeline's end: cancelled as it started
    assert call.worker.has_finished() and not observer._cancel_pending
    detail = await until(tracker, observer.session_id, lambda d: d.status == "stopped")
    assert detail.llm_calls == 0
    adapter.close()


async def test_a_function_that_raises_and_a_failing_llm_call_are_recorded_as_errors(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = PipecatAdapter(tracker, BOT)
    observer = await adapter.observer("call-4")
    failing = {"raise": "model overloaded"}
    stock = {"call": ("check_stock", {})}
    sorry = {"text": ["Sorry, ", "no stock info."]}
    call = Call(observer, [GREET, NAME, ASK, stock, sorry, failing])
    async with running(call, greeting_node()):
        await until(tracker, observer.session_id, waiting)
        await call.say("I am Ada")
        await until(tracker, observer.session_id, lambda d: len(d.messages) == 3 and waiting(d))
        await call.say("Do you have pizza?")
        await until(tracker, observer.session_id, lambda d: len(d.messages) == 5)
        await call.say("Hello?")
        await until(tracker, observer.session_id, lambda d: d.llm_calls == 6)
        await call.worker.queue_frame(EndFrame())
    detail = await until(tracker, observer.session_id, lambda d: d.status == "completed")
    assert detail.completion_reason == "flow_end"

    [stock_call] = [t for t in detail.tool_call_history if t.name == "check_stock"]
    assert stock_call.error == "stock service down" and stock_call.node_id == "order"
    assert stock_call.duration_ms is not None
    failed = detail.llm_call_history[-1]
    assert failed.error is not None and "model overloaded" in failed.error
    assert failed.node_id == "order" and failed.output_tokens is None
    assert detail.error_count == 2
    [order] = [t for t in detail.node_totals if t.node_id == "order"]
    assert order.error_count == 2 and order.tool_calls == 1


async def test_an_error_frame_outside_a_call_is_the_current_nodes_error(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = PipecatAdapter(tracker, BOT)
    observer = await adapter.observer("call-5")
    call = Call(observer, [GREET])
    async with running(call, greeting_node()):
        await until(tracker, observer.session_id, waiting)
        await call.llm.push_error("the speaker caught fire")  # an ErrorFrame upstream
        await until(tracker, observer.session_id, lambda d: d.error_count == 1)
        await call.worker.queue_frame(EndFrame())
    detail = await until(tracker, observer.session_id, lambda d: d.status == "completed")
    errors = [(e.node_id, e.error) for e in detail.node_executions if e.error]
    assert errors == [("greeting", "the speaker caught fire")]
    assert detail.node_history == ["greeting", "greeting"]  # the failed stretch, then the rest


async def test_a_restart_mid_conversation_continues_the_same_session(
    database_url: str, prefix: str
) -> None:
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    async with anyio.create_task_group() as tg:  # the pipeline outlives the first tracker
        async with sessiontrack.Tracker(database_url, **options) as first:
            adapter = PipecatAdapter(first, BOT)
            observer = await adapter.observer("call-6", contact={"name": "Ada"})
            sid = observer.session_id
            call = Call(observer, [GREET, NAME, ASK])
            await start(tg, call, greeting_node())
            await until(first, sid, lambda d: len(d.messages) == 1 and waiting(d))
            await call.say("I am Ada")
            await until(first, sid, lambda d: len(d.messages) == 3 and waiting(d))
        # the host process goes away: its tracker first, then its pipeline, whose last
        # reports (the cancel) reach no tracker
        await call.worker.cancel()
    # ...and comes back: a new tracker and a new adapter on the same database
    async with sessiontrack.Tracker(database_url, **options) as second:
        adapter = PipecatAdapter(second, BOT)
        observer = await adapter.observer("call-6", contact={"name": "Ada"})
        assert observer.session_id == sid
        call = Call(observer, [ORDER, BYE])
        resumed: NodeConfig = {**order_node(), "respond_immediately": False}  # no repeat
        async with running(call, resumed):
            await call.say("A pizza, please")
        detail = await until(second, sid, lambda d: d.status == "completed")
        detail = await until(second, sid, lambda d: len(d.messages) == 5)
        page = await second.sessions.list(conversation_id="call-6")
    assert page.total == 1
    assert conversation(detail) == [
        ("outbound", "Hello! What is your name?", "greeting"),
        ("inbound", "I am Ada", "greeting"),
        ("outbound", "What would you like?", "order"),
        ("inbound", "A pizza, please", "order"),
        ("outbound", "Bye, Ada!", "goodbye"),
    ]
    assert detail.node_history[-2:] == ["order", "goodbye"]
    assert detail.variables == {"name": "Ada", "order": "pizza"}


async def test_a_sync_tracker_in_another_thread_serves_the_pipeline_and_its_stops(
    database_url: str, prefix: str
) -> None:
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    with sessiontrack.SyncTracker(database_url, **options) as sync:
        adapter = PipecatAdapter(sync, BOT)
        observer = await adapter.observer("call-7")
        sid = observer.session_id
        call = Call(observer, [GREET, NAME, ASK])
        threads: list[int] = []  # where the cancel runs
        cancel = observer._cancel_worker

        def recorded() -> None:
            threads.append(threading.get_ident())
            cancel()

        observer._cancel_worker = recorded  # type: ignore[method-assign]
        async with running(call, greeting_node()):
            with anyio.fail_after(10):
                while not waiting(await anyio.to_thread.run_sync(committed, sync, sid)):  # noqa: ASYNC110
                    await anyio.sleep(0.02)  # (the session lives in the tracker's thread)
            await anyio.to_thread.run_sync(sync.stop, sid)  # on the tracker's thread
        assert call.worker.has_finished()
        assert threads == [threading.get_ident()]  # on the pipeline's loop, not the tracker's
        sync.flush()
        detail = sync.sessions.get(sid)
    assert detail.status == "stopped"
    assert conversation(detail) == [("outbound", "Hello! What is your name?", "greeting")]


async def test_a_burst_of_turns_is_reported_once_each(tracker: sessiontrack.Tracker) -> None:
    """Many responses in flight at once: each frame still counts once, however many others
    overtake it between two hops."""
    adapter = PipecatAdapter(tracker, BOT)
    observer = await adapter.observer("call-8")
    turns = 60
    words = [f"w{i} " for i in range(30)]
    call = Call(observer, [GREET] + [{"text": [*words, str(n)]} for n in range(turns)])
    async with running(call, greeting_node()):
        await until(tracker, observer.session_id, waiting)
        await call.worker.queue_frames([LLMContextFrame(LLMContext()) for _ in range(turns)])
        await until(tracker, observer.session_id, lambda d: d.llm_calls == turns + 1)
        await call.worker.queue_frame(EndFrame())
    detail = await until(tracker, observer.session_id, lambda d: d.status == "completed")
    texts = [m.text for m in detail.messages]
    assert texts[1:] == ["".join(words) + str(n) for n in range(turns)]
    assert detail.llm_calls == turns + 1 and detail.input_tokens == (turns + 1) * PROMPT_TOKENS


def committed(sync: sessiontrack.SyncTracker, sid: str) -> SessionDetail:
    sync.flush()
    return sync.sessions.get(sid)


# --- the documentation's example ----------------------------------------------------


async def test_the_documented_example(backend: str, tmp_path: Path) -> None:
    """The page's first code block, run as printed (on PostgreSQL: its one SQLite URL
    replaced by a fresh database's, migrated first as the README says)."""
    done = await run_documented_example(DOC, backend, tmp_path)
    printed = DOC.read_text(encoding="utf-8").split("It prints\n\n```text\n", 1)[1]
    assert done.stdout == printed.split("```", 1)[0], done.stdout
