"""``Tracker.active_session``: a conversation's session, before and after the database
knows it; and ``stop()`` / ``sessiontrack_stop_requested`` for such sessions."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pluggy
import pytest

import sessiontrack

pytestmark = pytest.mark.anyio


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    # A writer that never runs on its own while the test looks: only flush() commits.
    return {"sweep_interval": None}


class Paused:
    """Holds the writer's next transaction until released: what was reported stays
    uncommitted for as long as the test needs."""

    def __init__(self, tracker: sessiontrack.Tracker) -> None:
        self.store = tracker.store
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self._apply = self.store.apply

    async def apply(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        await self.release.wait()
        return await self._apply(*args, **kwargs)

    def __enter__(self) -> Paused:
        self.store.apply = self.apply  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.apply = self._apply  # type: ignore[method-assign]
        self.release.set()


def start(pm: pluggy.PluginManager, conversation: Any, bot: str = "bot") -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(
        session_id=sid, chatbot_id=bot, conversation_id=conversation
    )
    return sid


async def test_before_and_after_the_start_is_committed(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    assert await tracker.active_session("bot", "chat-1") is None
    with Paused(tracker) as paused:
        sid = start(pm, "chat-1")
        with anyio.fail_after(10):
            await paused.entered.wait()  # the writer holds the start, uncommitted
        assert await tracker.store.session_head(sid) is None
        assert await tracker.active_session("bot", "chat-1") == sid
        assert await tracker.active_session("other-bot", "chat-1") is None
        assert await tracker.active_session("bot", "chat-2") is None
    await tracker.flush()
    assert await tracker.active_session("bot", "chat-1") == sid


async def test_a_reported_completion_ends_it_before_it_is_committed(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm, "chat-1")
    await tracker.flush()
    with Paused(tracker) as paused:
        pm.hook.sessiontrack_session_completed(session_id=sid)
        with anyio.fail_after(10):
            await paused.entered.wait()
        assert (await tracker.store.session_head(sid) or ("", ""))[1] == "running"
        assert await tracker.active_session("bot", "chat-1") is None
    await tracker.flush()
    assert await tracker.active_session("bot", "chat-1") is None


async def test_a_start_and_its_completion_both_uncommitted(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    with Paused(tracker) as paused:
        sid = start(pm, "c")
        pm.hook.sessiontrack_status_changed(session_id=sid, status="completed")
        with anyio.fail_after(10):
            await paused.entered.wait()
        assert await tracker.active_session("bot", "c") is None
    await tracker.flush()
    assert await tracker.active_session("bot", "c") is None


async def test_two_conversations_of_one_thread_in_sequence_are_two_sessions(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    first = start(pm, "thread-9")
    assert await tracker.active_session("bot", "thread-9") == first
    pm.hook.sessiontrack_session_completed(session_id=first)
    assert await tracker.active_session("bot", "thread-9") is None
    second = start(pm, "thread-9")
    assert await tracker.active_session("bot", "thread-9") == second
    await tracker.flush()
    assert await tracker.active_session("bot", "thread-9") == second
    page = await tracker.sessions.list(conversation_id="thread-9")
    assert {s.id: s.status for s in page.data} == {first: "completed", second: "running"}


async def test_after_a_restart_it_comes_from_the_store(
    database_url: str, prefix: str, backend: str
) -> None:
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "sweep_interval": None}
    async with sessiontrack.Tracker(database_url, **options) as before:
        pm = before.plugin_manager
        old = start(pm, "42")
        pm.hook.sessiontrack_session_completed(session_id=old)
        sid = start(pm, 42)  # an integer conversation id, as Telegram's chat ids
        done = start(pm, "7")
        pm.hook.sessiontrack_session_completed(session_id=done)
    async with sessiontrack.Tracker(database_url, **options) as after:
        assert await after.active_session("bot", 42) == sid
        assert await after.active_session("bot", "42") == sid
        assert await after.active_session("bot", "7") is None
        # it goes on in the new process: another completion there ends it at once
        after.plugin_manager.hook.sessiontrack_session_completed(session_id=sid)
        assert await after.active_session("bot", 42) is None
        await after.flush()
        assert await after.active_session("bot", 42) is None


async def test_the_newest_active_session_of_a_conversation_wins(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    older = start(pm, "c")
    await tracker.flush()
    newer = start(pm, "c")
    await tracker.flush()
    assert await tracker.active_session("bot", "c") == newer
    pm.hook.sessiontrack_session_completed(session_id=newer)
    assert await tracker.active_session("bot", "c") == older


async def test_arguments_are_checked(tracker: sessiontrack.Tracker) -> None:
    with pytest.raises(TypeError, match="conversation_id"):
        await tracker.active_session("bot", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="conversation_id"):
        await tracker.active_session("bot", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chatbot_id"):
        await tracker.active_session("", "c")


async def test_many_conversations_answer_right_while_the_writer_commits(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    """Starts and completions interleaved with commits: every answer is the session
    the engine would expect at that moment, whichever side of a commit it falls."""
    expected: dict[str, str | None] = {}
    for round_ in range(3):
        for i in range(300):
            conv = f"c{i}"
            if expected.get(conv) is not None and (i + round_) % 3 == 0:
                pm.hook.sessiontrack_session_completed(session_id=expected[conv])
                expected[conv] = None
            elif expected.get(conv) is None:
                expected[conv] = start(pm, conv)
            if i % 50 == 0:
                await anyio.lowlevel.checkpoint()  # the writer commits part of it meanwhile
            if i % 7 == 0:
                assert await tracker.active_session("bot", conv) == expected[conv]
        answers = {c: await tracker.active_session("bot", c) for c in expected}
        assert answers == expected
    await tracker.flush()
    assert {c: await tracker.active_session("bot", c) for c in expected} == expected


# --- stops ---------------------------------------------------------------------------------


class Engine:
    def __init__(self) -> None:
        self.full: list[tuple[str, str | None, str, str | None]] = []
        self.short: list[tuple[str, str | None]] = []
        self.heard = anyio.Event()

    @sessiontrack.hookimpl
    def sessiontrack_stop_requested(
        self, session_id: str, principal: str | None, chatbot_id: str, conversation_id: str | None
    ) -> None:
        self.full.append((session_id, principal, chatbot_id, conversation_id))
        self.heard.set()


class OldEngine:
    """An implementation written before the hook had chatbot_id and conversation_id."""

    def __init__(self) -> None:
        self.stops: list[tuple[str, str | None]] = []

    @sessiontrack.hookimpl
    def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
        self.stops.append((session_id, principal))


async def test_stop_of_a_session_reported_and_not_yet_committed(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    engine, old = Engine(), OldEngine()
    pm.register(engine)
    pm.register(old)
    sid = start(pm, 555, bot="helpdesk")
    await tracker.stop(sid, "agent-1")  # no flush first: stop() commits the start itself
    with anyio.fail_after(10):
        await engine.heard.wait()
    assert engine.full == [(sid, "agent-1", "helpdesk", "555")]
    assert old.stops == [(sid, "agent-1")]
    assert (await tracker.sessions.get(sid)).status == "stopped"
    assert await tracker.active_session("helpdesk", 555) is None


async def test_stop_of_an_unknown_session_still_raises(tracker: sessiontrack.Tracker) -> None:
    with pytest.raises(sessiontrack.SessionNotFound):
        await tracker.stop(sessiontrack.new_session_id())


async def test_stop_requested_gets_no_conversation_for_a_session_without_one(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    engine = Engine()
    pm.register(engine)
    sid = start(pm, None)
    await tracker.stop(sid)
    with anyio.fail_after(10):
        await engine.heard.wait()
    assert engine.full == [(sid, None, "bot", None)]
