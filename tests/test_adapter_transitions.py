"""The transitions adapter against a real ``transitions.Machine`` and a real
:class:`~sessiontrack.SyncTracker` on SQLite and PostgreSQL.

The machine is a small help desk: ``start`` → ``asking`` (waits for the customer) →
``answering`` → ``more`` (waits) → ``asking`` again or ``done`` (final). The tests drive
it as a host would (triggers, plus the adapter's message helpers) and read back what the
tracker stored.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from transitions import EventData, Machine, MachineError
from transitions.extensions import LockedMachine

import sessiontrack
from sessiontrack.adapters.transitions import SessionStopped, TransitionsAdapter
from sessiontrack.web import create_app
from tests.adapter_helpers.docs import run_documented_example

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "adapters" / "transitions.md"

STATES: list[Any] = ["start", "asking", "answering", "more", {"name": "done", "final": True}]
TRANSITIONS: list[Any] = [
    {"trigger": "hello", "source": "start", "dest": "asking"},
    {"trigger": "question", "source": "asking", "dest": "answering", "conditions": "clear"},
    {"trigger": "answered", "source": "answering", "dest": "more"},
    {"trigger": "again", "source": "more", "dest": "asking"},
    {"trigger": "bye", "source": "more", "dest": "done"},
    {"trigger": "thanks", "source": "more", "dest": "done"},
]
WAITING = {"asking", "more"}
CHATBOT = "helpdesk"


class Chat:
    """One customer's conversation (the machine's model)."""

    def __init__(self) -> None:
        self.questions: list[str] = []

    def clear(self, event: EventData) -> bool:
        return bool(event.kwargs.get("text", "").strip())

    def on_enter_answering(self, event: EventData) -> None:
        text = event.kwargs["text"]
        if text == "boom":
            raise RuntimeError("the knowledge base is down")
        time.sleep(0.002)  # looking the answer up
        self.questions.append(text)


def make_machine(cls: type[Machine] = Machine, **options: Any) -> Machine:
    return cls(states=STATES, transitions=TRANSITIONS, initial="start", send_event=True, **options)


@pytest.fixture
def open_tracker(
    database_url: str, prefix: str
) -> Iterator[Callable[..., sessiontrack.SyncTracker]]:
    """Opens SyncTrackers on the test's database (each closed at the end)."""
    opened: list[sessiontrack.SyncTracker] = []

    def open_(**options: Any) -> sessiontrack.SyncTracker:
        sync = sessiontrack.SyncTracker(
            database_url, prefix=prefix, migrate=True, poll_interval=0.05, **options
        )
        sync.start()
        opened.append(sync)
        return sync

    yield open_
    for sync in opened:
        sync.close()


@pytest.fixture
def sync(open_tracker: Callable[..., sessiontrack.SyncTracker]) -> sessiontrack.SyncTracker:
    return open_tracker()


def adapter_for(
    sync: sessiontrack.SyncTracker, machine: Machine | None = None
) -> TransitionsAdapter:
    return TransitionsAdapter(
        sync, machine or make_machine(), CHATBOT, name="Help desk", waiting=WAITING
    )


def history(sync: sessiontrack.SyncTracker, session_id: str) -> Any:
    sync.flush()
    return sync.sessions.get(session_id)


def converse(adapter: TransitionsAdapter, chat: Chat, n: int) -> None:
    """A whole conversation: hello, one question with its answer, goodbye."""
    chat.hello()
    adapter.outbound(chat, "How can I help?", message_id=f"out-{n}-1")
    adapter.inbound(chat, "Where is my order?", message_id=f"in-{n}-1")
    chat.question(text="Where is my order?")
    chat.answered()
    adapter.outbound(chat, "It ships today.", message_id=f"out-{n}-2")
    chat.bye()


# --- the flow -----------------------------------------------------------------------


async def test_the_flow_is_the_machine(sync: sessiontrack.SyncTracker) -> None:
    adapter = adapter_for(sync)
    graph = adapter.graph()
    types = {n["id"]: n["type"] for n in graph["nodes"]}
    assert types == {
        "start": "input",
        "asking": "default",
        "answering": "default",
        "more": "default",
        "done": "output",
    }
    edges = {(e["source"], e["target"]): e["label"] for e in graph["edges"]}
    assert edges == {
        ("start", "asking"): "hello",
        ("asking", "answering"): "question",
        ("answering", "more"): "answered",
        ("more", "asking"): "again",
        ("more", "done"): "bye | thanks",  # two triggers, one edge
    }  # the automatic to_<state> transitions are left out
    xs = {n["id"]: n["position"]["x"] for n in graph["nodes"]}
    assert xs["start"] < xs["asking"] < xs["answering"] < xs["more"] < xs["done"]

    chat = Chat()
    sid = adapter.track(chat, conversation_id="c1")
    chat.hello()
    chat.to_done()  # an automatic transition: its edge is learnt when taken
    detail = history(sync, sid)
    assert detail.status == "completed"
    stored = {(e["source"], e["target"]): e.get("label") for e in detail.flow_data["edges"]}
    assert stored[("asking", "done")] == "to_done"
    assert stored[("more", "done")] == "bye | thanks"
    bots = {b["chatbot_id"]: b for b in sync.sessions.chatbots()}
    assert bots[CHATBOT]["name"] == "Help desk"


async def test_the_machine_must_send_events(sync: sessiontrack.SyncTracker) -> None:
    with pytest.raises(ValueError, match="send_event=True"):
        TransitionsAdapter(sync, Machine(states=["a", "b"], initial="a"), CHATBOT)
    with pytest.raises(ValueError, match="nowhere"):
        TransitionsAdapter(sync, make_machine(), CHATBOT, waiting={"asking", "nowhere"})


# --- conversations ------------------------------------------------------------------


async def test_a_completed_conversation(sync: sessiontrack.SyncTracker) -> None:
    adapter = adapter_for(sync)
    chat = Chat()
    sid = adapter.track(chat, conversation_id=4155550100, contact={"name": "Ann"})
    assert adapter.session_of(chat) == sid
    converse(adapter, chat, 1)
    detail = history(sync, sid)
    assert detail.status == "completed" and detail.completed_at is not None
    assert detail.completion_reason == "flow_end"
    assert detail.conversation_id == "4155550100" and detail.customer_name == "Ann"
    assert detail.node_history == ["start", "asking", "answering", "more", "done"]
    executions = detail.node_executions
    assert executions[0].duration_ms == 0.0  # the state it started in
    answering = executions[2]
    assert answering.error is None and answering.duration_ms is not None
    assert answering.duration_ms >= 2  # on_enter_answering's work is in it
    assert [(m.direction, m.text, m.channel_message_id, m.node_id) for m in detail.messages] == [
        ("outbound", "How can I help?", "out-1-1", "asking"),
        ("inbound", "Where is my order?", "in-1-1", "asking"),
        ("outbound", "It ships today.", "out-1-2", "more"),
    ]
    assert chat.questions == ["Where is my order?"]


async def test_waiting_for_the_customer_then_resumed(sync: sessiontrack.SyncTracker) -> None:
    adapter = adapter_for(sync)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-wait")
    assert history(sync, sid).status == "running"
    chat.hello()
    detail = history(sync, sid)
    assert (detail.status, detail.current_node_id) == ("waiting_input", "asking")
    # a trigger whose condition fails leaves the model waiting: waiting again
    assert chat.question(text="   ") is False
    assert history(sync, sid).status == "waiting_input"
    chat.question(text="Is it open on Sunday?")
    detail = history(sync, sid)
    assert (detail.status, detail.current_node_id) == ("running", "answering")
    chat.answered()
    assert history(sync, sid).status == "waiting_input"
    chat.again()
    assert history(sync, sid).status == "waiting_input"  # from one waiting state to another
    assert history(sync, sid).node_history == ["start", "asking", "answering", "more", "asking"]


async def test_a_callback_that_raises(sync: sessiontrack.SyncTracker) -> None:
    adapter = adapter_for(sync)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-boom")
    chat.hello()
    with pytest.raises(RuntimeError, match="knowledge base"):
        chat.question(text="boom")
    detail = history(sync, sid)
    failed = detail.node_executions[-1]
    assert (failed.node_id, failed.error) == (
        "answering",
        "RuntimeError: the knowledge base is down",
    )
    assert detail.status == "running"  # the conversation goes on
    with pytest.raises(MachineError):
        chat.hello()  # not a trigger of state "answering": the host's error, not reported
    chat.answered()
    detail = history(sync, sid)
    assert [(e.node_id, e.error is not None) for e in detail.node_executions] == [
        ("start", False),
        ("asking", False),
        ("answering", True),
        ("more", False),
    ]


async def test_a_machine_with_on_exception(sync: sessiontrack.SyncTracker) -> None:
    """With ``on_exception`` transitions hands the error to it instead of raising: the
    adapter reports it all the same."""
    seen: list[BaseException | None] = []
    machine = make_machine(on_exception=lambda event: seen.append(event.error))
    adapter = adapter_for(sync, machine)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-exc")
    chat.hello()
    assert chat.question(text="boom") is False
    assert [type(e) for e in seen] == [RuntimeError]
    assert history(sync, sid).node_executions[-1].error == (
        "RuntimeError: the knowledge base is down"
    )


async def test_the_final_node_and_goodbye_after_the_completion(
    sync: sessiontrack.SyncTracker,
) -> None:
    """The completion is reported when the final state's trigger ends; what the host
    reports just after it (its own finalize callback, the goodbye sent once the trigger
    returned) is stored in the completed session thanks to the completion grace."""
    machine = make_machine()
    adapter = adapter_for(sync, machine)
    late: list[str] = []

    def farewell(event: EventData) -> None:  # the host's own finalize callback
        if event.state.final:
            adapter.outbound(event.model, "Rate us 1-5", message_id="rate")
            late.append("rate")

    machine.finalize_event.append(farewell)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-bye")
    chat.hello()
    chat.question(text="hours?")
    chat.answered()
    chat.thanks()
    adapter.outbound(chat, "Goodbye!", message_id="bye")
    detail = history(sync, sid)
    assert late == ["rate"]
    assert detail.status == "completed"
    assert detail.node_history[-1] == "done"
    assert [m.channel_message_id for m in detail.messages] == ["rate", "bye"]
    assert detail.message_count == 2
    assert all(m.node_id == "done" for m in detail.messages)


async def test_a_final_state_left_again_starts_a_new_session(
    sync: sessiontrack.SyncTracker,
) -> None:
    machine = make_machine()
    machine.add_transition("restart", "done", "asking")
    adapter = adapter_for(sync, machine)
    chat = Chat()
    first = adapter.track(chat, conversation_id="c-again")
    converse(adapter, chat, 1)
    chat.restart()
    second = adapter.session_of(chat)
    assert second is not None and second != first
    sync.flush()
    assert sync.sessions.get(first).status == "completed"
    detail = sync.sessions.get(second)
    assert (detail.status, detail.node_history) == ("waiting_input", ["asking"])
    assert detail.conversation_id == "c-again"


async def test_a_session_the_tracker_expired_is_continued_by_a_new_one(
    open_tracker: Callable[..., sessiontrack.SyncTracker],
) -> None:
    sync = open_tracker(idle_timeout=timedelta(seconds=1), sweep_interval=0.1)
    adapter = adapter_for(sync)
    chat, quiet = Chat(), Chat()
    first = adapter.track(chat, conversation_id="c-idle")
    chat.hello()
    quiet_first = adapter.track(quiet, conversation_id="c-quiet")
    quiet.hello()
    wait_until(lambda: adapter.cached_session("c-idle") is None)
    wait_until(lambda: adapter.cached_session("c-quiet") is None)
    assert history(sync, first).status == "expired"
    chat.question(text="back again")  # the next trigger: a new session, same conversation
    second = adapter.session_of(chat)
    assert second is not None and second != first
    adapter.inbound(quiet, "anyone?", message_id="m-1")  # the next message, likewise
    quiet_second = adapter.session_of(quiet)
    assert quiet_second is not None and quiet_second != quiet_first
    detail = history(sync, second)
    assert (detail.conversation_id, detail.node_history) == ("c-idle", ["asking", "answering"])
    assert detail.status == "running"
    quiet_detail = history(sync, quiet_second)
    assert [m.channel_message_id for m in quiet_detail.messages] == ["m-1"]
    assert quiet_detail.status == "waiting_input"
    assert history(sync, first).node_history == ["start", "asking"]


async def test_a_model_gone_is_no_longer_held(sync: sessiontrack.SyncTracker) -> None:
    adapter = adapter_for(sync)
    chat = Chat()
    adapter.track(chat, conversation_id="c-gone")
    converse(adapter, chat, 1)
    adapter.machine.remove_model(chat)
    del chat
    gc.collect()
    assert adapter._models == {} and adapter._by_conversation == {}


class EagerChat(Chat):
    """Answers at once: its enter callback fires the next trigger itself."""

    leave = False

    def on_enter_answering(self, event: EventData) -> None:
        super().on_enter_answering(event)
        self.leave = event.kwargs.get("bye", False)
        self.answered()

    def on_enter_more(self, event: EventData) -> None:
        if self.leave:
            self.bye()


@pytest.mark.parametrize("queued", [False, True])
async def test_a_trigger_fired_from_a_callback(
    sync: sessiontrack.SyncTracker, queued: bool
) -> None:
    """Nested (or, with ``queued=True``, queued) triggers: the states in the order the
    model entered them."""
    machine = make_machine(queued=queued)
    adapter = adapter_for(sync, machine)
    chat = EagerChat()
    sid = adapter.track(chat, conversation_id=f"c-eager-{queued}")
    chat.hello()
    chat.question(text="hours?")
    detail = history(sync, sid)
    assert chat.state == "more"
    assert detail.node_history == ["start", "asking", "answering", "more"]
    assert (detail.status, detail.current_node_id) == ("waiting_input", "more")
    chat.again()
    chat.question(text="and the price?", bye=True)  # answering > more > done in one go
    detail = history(sync, sid)
    assert chat.state == "done"
    assert detail.status == "completed"
    assert detail.node_history[-4:] == ["asking", "answering", "more", "done"]
    assert all(e.error is None for e in detail.node_executions)


async def test_an_error_in_a_nested_trigger_is_recorded_once(
    sync: sessiontrack.SyncTracker,
) -> None:
    machine = make_machine()
    machine.get_state("more").add_callback("enter", lambda event: event.model.nope())
    adapter = adapter_for(sync, machine)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-nested-boom")
    chat.hello()
    chat.question(text="hours?")
    with pytest.raises(AttributeError, match="nope"):
        chat.answered()
    detail = history(sync, sid)
    errors = [(e.node_id, e.error) for e in detail.node_executions if e.error]
    assert errors == [("more", "AttributeError: 'Chat' object has no attribute 'nope'")]


# --- stops --------------------------------------------------------------------------


def stop_through_the_api(sync: sessiontrack.SyncTracker, session_id: str) -> httpx.Response:
    """POST /{id}/stop on the real sub-app, served on the SyncTracker's own event loop."""

    async def post() -> httpx.Response:
        app = create_app(sync.tracker)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.post(f"/{session_id}/stop")

    return sync.call(post())


def wait_until(condition: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


async def test_stopped_from_the_rest_api(sync: sessiontrack.SyncTracker) -> None:
    adapter = adapter_for(sync)
    other = TransitionsAdapter(sync, make_machine(), "sales", waiting=WAITING)
    chat, bystander, sales_chat = Chat(), Chat(), Chat()
    sid = adapter.track(chat, conversation_id="c-stop")
    calm = adapter.track(bystander, conversation_id="c-calm")
    sales = other.track(sales_chat, conversation_id="c-stop")
    chat.hello()
    bystander.hello()
    sales_chat.hello()
    sync.flush()
    response = stop_through_the_api(sync, sid)
    assert response.status_code == 200, response.text
    wait_until(lambda: adapter.stopped(sid))
    assert not other.stopped(sid)  # another chatbot's adapter ignores it
    with pytest.raises(SessionStopped, match=sid) as refused:
        chat.question(text="still there?")
    assert (refused.value.session_id, refused.value.conversation_id) == (sid, "c-stop")
    assert chat.state == "asking" and chat.questions == []  # the trigger did nothing
    with pytest.raises(SessionStopped):
        chat.may_question(text="still there?")
    adapter.outbound(chat, "ignored", message_id="late")  # nothing more is reported
    detail = history(sync, sid)
    assert detail.status == "stopped"
    assert detail.node_history == ["start", "asking"] and detail.messages == []
    # the other conversations go on
    bystander.question(text="hours?")
    sales_chat.question(text="price?")
    assert history(sync, calm).current_node_id == "answering"
    assert history(sync, sales).status == "running"
    # tracked again, the model starts a new session of the same conversation
    new = adapter.track(chat, conversation_id="c-stop")
    assert new != sid
    chat.question(text="hello again")
    assert history(sync, new).node_history == ["asking", "answering"]


async def test_stopped_from_an_api_served_apart(
    sync: sessiontrack.SyncTracker, tracker: sessiontrack.Tracker
) -> None:
    """A sync host serves the API from an async tracker of its own on the same database
    (docs/integrating.md): the stop reaches the adapter through the SyncTracker's feed."""
    adapter = adapter_for(sync)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-apart")
    chat.hello()
    sync.flush()
    transport = httpx.ASGITransport(app=create_app(tracker))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.post(f"/{sid}/stop")
    assert response.status_code == 200, response.text
    await anyio.to_thread.run_sync(wait_until, lambda: adapter.stopped(sid))
    with pytest.raises(SessionStopped):
        chat.question(text="anyone?")
    assert history(sync, sid).status == "stopped"


# --- restarts and threads -------------------------------------------------------------


async def test_a_restart_mid_conversation(
    open_tracker: Callable[..., sessiontrack.SyncTracker],
) -> None:
    first = open_tracker()
    adapter = adapter_for(first)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-restart", contact={"name": "Bo"})
    chat.hello()
    adapter.inbound(chat, "My parcel?", message_id="in-1")
    chat.question(text="My parcel?")
    chat.answered()
    saved = chat.state  # what the host persists with its conversation
    first.close()

    second = open_tracker()
    machine = make_machine()
    adapter = adapter_for(second, machine)
    restored = Chat()
    assert adapter.track(restored, conversation_id="c-restart", initial=saved) == sid
    adapter.inbound(restored, "My parcel?", message_id="in-1")  # the channel redelivers it
    adapter.inbound(restored, "Thanks!", message_id="in-2")
    restored.thanks()
    detail = history(second, sid)
    assert detail.status == "completed"
    assert detail.node_history == ["start", "asking", "answering", "more", "done"]
    assert [m.channel_message_id for m in detail.messages] == ["in-1", "in-2"]
    page = second.sessions.list(chatbot_id=CHATBOT)
    assert [s.id for s in page.data] == [sid]  # no duplicate start


@pytest.mark.parametrize("cls", [Machine, LockedMachine])
async def test_models_driven_from_several_threads(
    sync: sessiontrack.SyncTracker, cls: type[Machine]
) -> None:
    adapter = adapter_for(sync, make_machine(cls))
    chats = [Chat() for _ in range(8)]
    sids = [adapter.track(chat, conversation_id=f"t{n}") for n, chat in enumerate(chats)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(chats))

    def run(n: int, chat: Chat) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                if chat.state == "start":
                    chat.hello()
                else:
                    chat.again()
                chat.question(text=f"q{n}")
                chat.answered()
            chat.bye()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(chats)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    sync.flush()
    expected = ["start"] + ["asking", "answering", "more"] * 5 + ["done"]
    for sid in sids:
        detail = sync.sessions.get(sid)
        assert (detail.status, detail.node_history) == ("completed", expected)


async def test_close_takes_the_callbacks_off(sync: sessiontrack.SyncTracker) -> None:
    machine = make_machine()
    before = [len(machine.prepare_event), len(machine.finalize_event)]
    adapter = adapter_for(sync, machine)
    chat = Chat()
    sid = adapter.track(chat, conversation_id="c-close")
    adapter.close()
    assert [len(machine.prepare_event), len(machine.finalize_event)] == before
    assert not machine.on_final
    chat.hello()
    assert history(sync, sid).node_history == ["start"]


# --- the documentation's example ----------------------------------------------------


async def test_the_documented_example(backend: str, tmp_path: Path) -> None:
    """The page's first code block, run as printed (on PostgreSQL: its one SQLite URL
    replaced by a fresh database's, migrated first as the README says)."""
    done = await run_documented_example(DOC, backend, tmp_path)
    lines = done.stdout.splitlines()
    assert lines == [
        "completed start > asking > answering > asking > done",
        "messages: 4",
    ], done.stdout
