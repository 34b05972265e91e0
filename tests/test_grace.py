"""The completion grace window: the reports of the turn that completed a session, arriving
just after the completion, are stored in order instead of dropped as late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy
import pytest

import sessiontrack

pytestmark = pytest.mark.anyio


def start(pm: pluggy.PluginManager, **kw: Any) -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot", **kw)
    return sid


def final_turn(pm: pluggy.PluginManager, sid: str, at: datetime | None = None) -> None:
    """As a state machine reports its last turn: the completion fires inside the transition
    (transitions' ``on_final``), then the final node and the goodbye message follow."""
    pm.hook.sessiontrack_session_completed(session_id=sid, reason="resolved")
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="goodbye", at=at)
    pm.hook.sessiontrack_message(
        session_id=sid, direction="outbound", text="Bye!", node_id="goodbye", at=at
    )
    pm.hook.sessiontrack_variables_changed(session_id=sid, variables={"rated": True}, at=at)


async def test_the_final_node_and_goodbye_after_the_completion_are_stored_in_order(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="ask")
    pm.hook.sessiontrack_message(session_id=sid, direction="inbound", text="thanks")
    await tracker.flush()
    before = (await tracker.sessions.get(sid)).expires_at
    async with tracker.subscribe(session_id=sid) as sub:
        final_turn(pm, sid)
        await tracker.flush()
        kinds = [(await sub.__anext__()).kind for _ in range(4)]
    assert kinds == ["session_completed", "node_executed", "message", "variables_changed"]
    detail = await tracker.sessions.get(sid)
    assert detail.status == "completed" and detail.completion_reason == "resolved"
    assert detail.node_history == ["ask", "goodbye"]
    assert detail.current_node_id == "goodbye"
    assert (detail.node_count, detail.message_count) == (2, 2)
    assert [m.text for m in detail.messages] == ["thanks", "Bye!"]
    assert detail.variables == {"rated": True}
    assert detail.expires_at == before  # an ended session's expiry does not move
    assert tracker.stats.late == 0
    stats = await tracker.sessions.stats()
    assert (stats.by_status["completed"], stats.active) == (1, 0)
    final = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=final, chatbot_id="bot")
    pm.hook.sessiontrack_session_completed(session_id=final)
    await tracker.flush()  # the completion is committed: the session is no longer owned
    pm.hook.sessiontrack_message(session_id=final, direction="outbound", text="Bye!")
    await tracker.flush()
    assert sid not in tracker._owned and final not in tracker._owned  # no id kept for ever


async def test_a_report_past_the_window_is_late(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    pm.hook.sessiontrack_session_completed(session_id=sid)
    await tracker.flush()
    ended = (await tracker.sessions.get(sid)).completed_at
    assert ended is not None
    within = ended + timedelta(seconds=10)  # the default window, to the microsecond
    past = ended + timedelta(seconds=10, milliseconds=1)
    pm.hook.sessiontrack_message(session_id=sid, direction="outbound", text="in", at=within)
    pm.hook.sessiontrack_message(session_id=sid, direction="outbound", text="out", at=past)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="x", at=past)
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert [m.text for m in detail.messages] == ["in"]
    assert detail.node_history == []
    assert tracker.stats.late == 2


async def test_status_changes_after_the_end_are_still_dropped(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    pm.hook.sessiontrack_session_completed(session_id=sid)
    pm.hook.sessiontrack_status_changed(session_id=sid, status="running")
    pm.hook.sessiontrack_status_changed(session_id=sid, status="waiting_input", node_id="n")
    pm.hook.sessiontrack_session_completed(session_id=sid, status="stopped")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert (detail.status, detail.current_node_id) == ("completed", None)
    assert tracker.stats.late == 3


async def test_nothing_is_taken_after_a_stop_or_an_expiry(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    stopped, expired = start(pm), start(pm)
    await tracker.stop(stopped)
    pm.hook.sessiontrack_session_completed(session_id=expired, status="expired")
    for sid in (stopped, expired):
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id="after")
        pm.hook.sessiontrack_message(session_id=sid, direction="outbound", text="after")
    await tracker.flush()
    for sid in (stopped, expired):
        detail = await tracker.sessions.get(sid)
        assert (detail.node_history, detail.messages) == ([], [])
    assert tracker.stats.late == 4


async def test_a_duplicate_message_in_the_window_is_still_stored_once(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    pm.hook.sessiontrack_message(session_id=sid, direction="inbound", text="hi", message_id=1)
    pm.hook.sessiontrack_session_completed(session_id=sid)
    pm.hook.sessiontrack_message(session_id=sid, direction="inbound", text="hi", message_id=1)
    pm.hook.sessiontrack_message(session_id=sid, direction="outbound", text="bye", message_id=2)
    await tracker.flush()
    messages = await tracker.sessions.messages(sid)
    assert [(m.text, m.channel_message_id) for m in messages] == [("hi", "1"), ("bye", "2")]
    assert tracker.stats.duplicates == 1


@pytest.mark.parametrize("tracker_options", [{"completion_grace": timedelta(0)}])
async def test_a_zero_window_keeps_the_old_rule(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    final_turn(pm, sid, at=datetime.now(UTC) + timedelta(milliseconds=1))
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert (detail.node_history, detail.messages, detail.variables) == ([], [], {})
    assert tracker.stats.late == 3


@pytest.mark.parametrize("tracker_options", [{"completion_grace": timedelta(minutes=2)}])
async def test_a_wider_window(pm: pluggy.PluginManager, tracker: sessiontrack.Tracker) -> None:
    sid = start(pm)
    final_turn(pm, sid, at=datetime.now(UTC) + timedelta(seconds=90))
    await tracker.flush()
    assert (await tracker.sessions.get(sid)).node_history == ["goodbye"]
    assert tracker.stats.late == 0


@pytest.mark.parametrize(
    ("grace", "error"),
    [
        (timedelta(seconds=-1), ValueError),
        (timedelta(hours=1, microseconds=1), ValueError),
        (10, TypeError),
        (None, TypeError),
    ],
)
def test_the_option_is_checked(grace: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="completion_grace"):
        sessiontrack.Tracker("sqlite+aiosqlite:///unused.db", completion_grace=grace)
