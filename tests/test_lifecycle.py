"""Session lifecycle: status rules, flow versions, expiry and the sweeper, purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack

pytestmark = pytest.mark.anyio

FLOW_V1 = {
    "nodes": [
        {"id": "start", "type": "start", "position": {"x": 0, "y": 0}, "data": {"label": "Start"}},
        {
            "id": "ask",
            "type": "question",
            "position": {"x": 0, "y": 100},
            "data": {"label": "Ask name"},
        },
    ],
    "edges": [{"id": "e1", "source": "start", "target": "ask"}],
}


def start(pm: pluggy.PluginManager, **kw: Any) -> str:
    sid = sessiontrack.new_session_id()
    kw.setdefault("chatbot_id", "bot")
    pm.hook.sessiontrack_session_started(session_id=sid, **kw)
    return sid


async def test_active_statuses_move_freely_and_terminal_is_final(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    for status in ("waiting_input", "running", "waiting_flow", "running"):
        pm.hook.sessiontrack_status_changed(session_id=sid, status=status)
    pm.hook.sessiontrack_status_changed(session_id=sid, status="completed", reason="done")
    pm.hook.sessiontrack_status_changed(session_id=sid, status="running")
    pm.hook.sessiontrack_session_completed(session_id=sid, status="stopped")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert (detail.status, detail.completion_reason) == ("completed", "done")
    assert detail.completed_at is not None
    assert tracker.stats.late == 2
    by_status = (await tracker.sessions.stats()).by_status
    assert by_status["completed"] == 1 and by_status["running"] == 0


async def test_status_change_moves_current_node_and_resolves_its_label(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    pm.hook.sessiontrack_flow_registered(chatbot_id="bot", name="Bot", flow=FLOW_V1)
    sid = start(pm)
    pm.hook.sessiontrack_status_changed(session_id=sid, status="waiting_input", node_id="ask")
    await tracker.flush()
    summary = (await tracker.sessions.list()).data[0]
    assert (summary.status, summary.current_node_id, summary.current_node_label) == (
        "waiting_input",
        "ask",
        "Ask name",
    )
    assert summary.chatbot_name == "Bot"


async def test_each_session_keeps_the_flow_version_it_ran(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    pm.hook.sessiontrack_flow_registered(chatbot_id="bot", name="Bot", flow=FLOW_V1)
    old = start(pm)
    pm.hook.sessiontrack_node_executed(session_id=old, node_id="ask")
    flow_v2 = {
        **FLOW_V1,
        "nodes": [
            *FLOW_V1["nodes"][:1],
            {"id": "ask", "type": "question", "data": {"label": "Ask email"}},
        ],
    }
    pm.hook.sessiontrack_flow_registered(chatbot_id="bot", name="Bot 2", flow=flow_v2, version="v2")
    new = start(pm)
    pm.hook.sessiontrack_node_executed(session_id=new, node_id="ask")
    await tracker.flush()
    d_old, d_new = await tracker.sessions.get(old), await tracker.sessions.get(new)
    assert d_old.flow_data == FLOW_V1 and d_old.node_executions[0].label == "Ask name"
    assert d_old.flow_version is not None and len(d_old.flow_version) == 16  # content hash
    assert d_new.flow_data == flow_v2 and d_new.node_executions[0].label == "Ask email"
    assert d_new.flow_version == "v2"
    assert d_new.chatbot_name == "Bot 2"
    # registering the same content again gives the same version: no new flow row
    pm.hook.sessiontrack_flow_registered(chatbot_id="bot", name="Bot", flow=FLOW_V1)
    await tracker.flush()
    assert start(pm) and True
    await tracker.flush()
    bots = await tracker.sessions.chatbots()
    assert [(b["chatbot_id"], b["current_version"]) for b in bots] == [("bot", d_old.flow_version)]


@pytest.mark.parametrize("tracker_options", [{"idle_timeout": timedelta(minutes=5)}])
async def test_idle_timeout_slides_forward_with_activity_and_explicit_expiry_does_not(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    idle = start(pm, at=t0)
    pm.hook.sessiontrack_message(
        session_id=idle, direction="inbound", text="hi", at=t0 + timedelta(minutes=3)
    )
    fixed_at = t0 + timedelta(hours=2)
    fixed = start(pm, at=t0, expires_at=fixed_at)
    pm.hook.sessiontrack_message(
        session_id=fixed, direction="inbound", text="hi", at=t0 + timedelta(minutes=3)
    )
    await tracker.flush()
    assert (await tracker.sessions.get(idle)).expires_at == t0 + timedelta(minutes=8)
    assert (await tracker.sessions.get(fixed)).expires_at == fixed_at


@pytest.mark.parametrize(
    "tracker_options", [{"idle_timeout": timedelta(seconds=1), "sweep_interval": 0.1}]
)
async def test_sweeper_expires_overdue_sessions_and_publishes_it(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    idle = start(pm)
    busy = start(pm, expires_at=datetime.now(UTC) + timedelta(hours=1))
    await tracker.flush()
    async with tracker.subscribe() as sub:
        with anyio.fail_after(10):
            async for event in sub:
                if event.kind == "session_completed":
                    break
    assert event.session_id == idle
    assert event.wire_name == "session:completed"
    assert event.to_wire()["status"] == "expired"
    assert event.to_wire()["completionReason"] == "timeout"
    detail = await tracker.sessions.get(idle)
    assert (detail.status, detail.completion_reason) == ("expired", "timeout")
    assert (await tracker.sessions.get(busy)).status == "running"


async def test_purge_deletes_only_sessions_that_ended_before_the_cutoff(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    now = datetime.now(UTC)
    old = [start(pm, at=now - timedelta(days=40)) for _ in range(3)]
    for sid in old:
        pm.hook.sessiontrack_message(
            session_id=sid, direction="inbound", text="x", at=now - timedelta(days=40)
        )
        pm.hook.sessiontrack_session_completed(session_id=sid, at=now - timedelta(days=39))
    recent = start(pm, at=now - timedelta(days=40))
    pm.hook.sessiontrack_session_completed(
        session_id=recent, status="expired", at=now - timedelta(days=2)
    )
    still_active = start(pm, at=now - timedelta(days=90))
    await tracker.flush()
    progress: list[int] = []
    purged = await tracker.purge(timedelta(days=30), batch_size=2, progress=progress.append)
    assert purged == 3 and progress == [2, 3]
    stats = await tracker.sessions.stats()
    assert (stats.total, stats.by_status["completed"], stats.by_status["expired"]) == (2, 0, 1)
    for sid in old:
        with pytest.raises(sessiontrack.SessionNotFound):
            await tracker.sessions.get(sid)
    assert (await tracker.sessions.get(still_active)).status == "running"
    events = [e async for e in _drain(tracker)]
    assert {e.session_id for e in events} == {recent, still_active}


async def _drain(tracker: sessiontrack.Tracker):  # type: ignore[no-untyped-def]
    for event in await tracker.store.events_after(0, limit=10_000):
        yield event


API_PROCESS = """
import sys, anyio, sessiontrack

async def main():
    url, prefix, sid = sys.argv[1:]
    async with sessiontrack.Tracker(url, prefix=prefix, sweep_interval=None) as api:
        await api.stop(sid, sessiontrack.Principal(id="supervisor"))
    print("stopped", flush=True)

anyio.run(main)
"""


async def test_stop_from_another_process_reaches_the_engines_process(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, database_url: str, prefix: str
) -> None:
    import subprocess
    import sys

    stops: list[tuple[str, str | None]] = []
    stopped = anyio.Event()

    class Engine:
        @sessiontrack.hookimpl
        async def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
            stops.append((session_id, principal))
            stopped.set()

    tracker.plugin_manager.register(Engine())
    sid = start(pm)
    await tracker.flush()
    done = await anyio.run_process(
        [sys.executable, "-c", API_PROCESS, database_url, prefix, sid],
        stderr=subprocess.STDOUT,
    )
    assert done.stdout.decode().strip().endswith("stopped")
    with anyio.fail_after(10):
        await stopped.wait()
    assert stops == [(sid, "supervisor")]
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="after-stop")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert (detail.status, detail.node_history) == ("stopped", [])
    assert tracker.stats.late == 1


def _graph(label: str) -> dict[str, Any]:
    return {"nodes": [{"id": "ask", "type": "question", "data": {"label": label}}], "edges": []}


async def test_registering_a_version_again_replaces_its_graph(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    """Adapters add edges they first see at run time to the version they registered."""
    pm.hook.sessiontrack_flow_registered(
        chatbot_id="bot", name="Bot", flow=_graph("Ask"), version="v7"
    )
    await tracker.flush()
    grown = {**_graph("Ask again"), "edges": [{"id": "e", "source": "ask", "target": "ask"}]}
    pm.hook.sessiontrack_flow_registered(chatbot_id="bot", name="Bot", flow=grown, version="v7")
    await tracker.flush()
    sid = start(pm)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="ask")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert (detail.flow_version, detail.flow_data) == ("v7", grown)
    assert detail.node_executions[0].label == "Ask again"


async def test_a_rolled_back_batch_leaves_no_flow_labels_behind(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    pm.hook.sessiontrack_flow_registered(
        chatbot_id="bot", name="Bot", flow=_graph("Real"), version="v1"
    )
    await tracker.flush()
    ghost = {"chatbot_id": "bot", "name": "Bot", "flow": _graph("Ghost"), "version": "v1"}
    broken = {"chatbot_id": "bot", "variables": "{not json"}  # the fold fails: rollback
    with pytest.raises(ValueError):
        await tracker.store.apply(
            [
                ("flow_registered", "", datetime.now(UTC), ghost),
                ("session_started", sessiontrack.new_session_id(), datetime.now(UTC), broken),
            ],
            idle_timeout_s=None,
        )
    sid = start(pm)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="ask")
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert detail.flow_data == _graph("Real")
    assert detail.node_executions[0].label == "Real"


async def test_orphan_and_late_warnings_name_the_session_and_the_hook(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.WARNING, "sessiontrack")
    never = sessiontrack.new_session_id()
    pm.hook.sessiontrack_message(session_id=never, direction="inbound", text="hi")
    sid = start(pm)
    pm.hook.sessiontrack_session_completed(session_id=sid)
    past_grace = datetime.now(UTC) + timedelta(minutes=1)  # beyond the completion grace window
    pm.hook.sessiontrack_variables_changed(session_id=sid, variables={"a": 1}, at=past_grace)
    await tracker.flush()
    assert f"orphan sessiontrack_message for session {never}" in caplog.text
    assert (
        f"late sessiontrack_variables_changed for session {sid} (already completed)" in caplog.text
    )
    assert (tracker.stats.orphans, tracker.stats.late) == (1, 1)


@pytest.mark.parametrize(
    "idle_timeout", [timedelta(0), timedelta(milliseconds=500), timedelta(days=3654)]
)
def test_an_idle_timeout_out_of_range_is_refused_at_construction(idle_timeout: timedelta) -> None:
    # An expiry is an accepted time plus the timeout: it must stay a storable time.
    with pytest.raises(ValueError, match="idle_timeout"):
        sessiontrack.Tracker("sqlite+aiosqlite:///unused.db", idle_timeout=idle_timeout)


async def test_a_start_that_cannot_open_the_database_leaves_nothing_open() -> None:
    # A closed port on this machine: refused at once, no server needed.
    tracker = sessiontrack.Tracker("postgresql://postgres@127.0.0.1:9/test")
    with pytest.raises(OSError):
        await tracker.start()
    assert not tracker.running
    assert getattr(tracker.store, "_engine", None) is None  # disposed, not leaked
