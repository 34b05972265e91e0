"""Stop requests: who hears them, and what stop() answers when the session ended first."""

from __future__ import annotations

from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack

pytestmark = pytest.mark.anyio


class Engine:
    """The engine's own plugin, registered on the engine's own manager."""

    def __init__(self) -> None:
        self.stops: list[tuple[str, str | None]] = []
        self.committed: list[int] = []
        self.stopped = anyio.Event()

    @sessiontrack.hookimpl
    def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
        self.stops.append((session_id, principal))
        self.stopped.set()

    @sessiontrack.hookimpl
    def sessiontrack_events_committed(self, events: Any) -> None:
        self.committed.extend(e.seq for e in events)


def engine_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    return pm


async def test_the_readme_wiring_delivers_stop_requests_to_the_engines_plugins(
    database_url: str, prefix: str
) -> None:
    async with sessiontrack.Tracker(database_url, prefix=prefix, migrate=True) as tracker:
        pm = pluggy.PluginManager("sessiontrack")  # exactly as README.md wires it
        pm.add_hookspecs(sessiontrack.hookspecs)
        pm.register(tracker)
        engine = Engine()
        pm.register(engine)
        sid = sessiontrack.new_session_id()
        pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="helpdesk")
        await tracker.flush()
        await tracker.stop(sid, sessiontrack.Principal(id="agent-7"))
        with anyio.fail_after(10):
            await engine.stopped.wait()
        assert engine.stops == [(sid, "agent-7")]
        assert engine.committed == sorted(engine.committed) and len(engine.committed) == 2


async def test_a_manager_that_registered_the_tracker_before_start_hears_it_too(
    database_url: str, prefix: str
) -> None:
    tracker = sessiontrack.Tracker(database_url, prefix=prefix, migrate=True)
    pm, engine = engine_manager(), Engine()
    pm.register(tracker)
    pm.register(engine)
    async with tracker:
        sid = sessiontrack.new_session_id()
        pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
        await tracker.flush()
        await tracker.stop(sid)
        with anyio.fail_after(10):
            await engine.stopped.wait()
    assert engine.stops == [(sid, None)]


async def test_each_manager_hears_a_stop_once_and_an_unregistered_one_not_at_all(
    database_url: str, prefix: str
) -> None:
    own, other, gone = engine_manager(), engine_manager(), engine_manager()
    on_own, on_other, on_gone = Engine(), Engine(), Engine()
    own.register(on_own)
    other.register(on_other)
    gone.register(on_gone)
    tracker = sessiontrack.Tracker(database_url, prefix=prefix, migrate=True, plugin_manager=own)
    other.register(tracker)
    gone.register(tracker)
    gone.unregister(tracker)
    async with tracker:
        sid = sessiontrack.new_session_id()
        other.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
        await tracker.flush()
        await tracker.stop(sid, "ops")
        with anyio.fail_after(10):
            await on_own.stopped.wait()
            await on_other.stopped.wait()
        await tracker.flush()
    assert on_own.stops == on_other.stops == [(sid, "ops")]
    assert on_gone.stops == [] and on_gone.committed == []


async def test_stop_of_a_session_that_ended_just_before_answers_already_terminal(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    engine = Engine()
    pm.register(engine)
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
    await tracker.flush()
    pm.hook.sessiontrack_session_completed(session_id=sid, reason="flow_end")  # not committed
    with pytest.raises(sessiontrack.SessionAlreadyTerminal) as raised:
        await tracker.stop(sid, "ops")
    assert raised.value.status == "completed"
    detail = await tracker.sessions.get(sid)
    assert (detail.status, detail.completion_reason) == ("completed", "flow_end")
    assert tracker.stats.late == 1
    await tracker.flush()
    assert engine.stops == []


async def test_two_stops_at_once_one_succeeds_the_other_is_already_terminal(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
    await tracker.flush()
    outcomes: list[str] = []

    async def stop(who: str) -> None:
        try:
            await tracker.stop(sid, who)
            outcomes.append("ok")
        except sessiontrack.SessionAlreadyTerminal as exc:
            outcomes.append(f"already {exc.status}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop, "a")
        tg.start_soon(stop, "b")
    assert sorted(outcomes) == ["already stopped", "ok"]
