"""The hook contract: validation at the call site, and the tracker → host hooks."""

from __future__ import annotations

import inspect
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack
from sessiontrack import hookspecs

pytestmark = pytest.mark.anyio
DOCS = Path(__file__).parent.parent / "docs" / "hooks.md"


def _start(pm: pluggy.PluginManager, **extra: Any) -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot", **extra)
    return sid


BAD_CALLS = [
    (
        "sessiontrack_session_started",
        {"session_id": "not-a-uuid", "chatbot_id": "b"},
        ValueError,
        "UUID",
    ),
    (
        "sessiontrack_session_started",
        {"session_id": 42, "chatbot_id": "b"},
        TypeError,
        "session_id",
    ),
    (
        "sessiontrack_session_started",
        {"chatbot_id": "b"},
        TypeError,
        "missing required argument 'session_id'",
    ),
    (
        "sessiontrack_session_started",
        {"session_id": "$sid", "chatbot_id": ""},
        ValueError,
        "chatbot_id",
    ),
    (
        "sessiontrack_session_started",
        {"session_id": "$sid", "chatbot_id": "b", "variables": {"x": object()}},
        TypeError,
        "not JSON-serialisable",
    ),
    (
        "sessiontrack_session_started",
        {"session_id": "$sid", "chatbot_id": "b", "variables": [1, 2]},
        TypeError,
        "mapping",
    ),
    (
        "sessiontrack_session_started",
        {"session_id": "$sid", "chatbot_id": "b", "at": datetime(2026, 1, 1)},
        ValueError,
        "timezone-aware",
    ),
    (
        "sessiontrack_node_executed",
        {"session_id": "$sid"},
        TypeError,
        "missing required argument 'node_id'",
    ),
    (
        "sessiontrack_node_executed",
        {"session_id": "$sid", "node_id": "n", "duration_ms": "fast"},
        TypeError,
        "duration_ms",
    ),
    (
        "sessiontrack_message",
        {"session_id": "$sid", "direction": "sideways"},
        ValueError,
        "direction",
    ),
    (
        "sessiontrack_message",
        {"session_id": "$sid"},
        TypeError,
        "missing required argument 'direction'",
    ),
    (
        "sessiontrack_message",
        {"session_id": "$sid", "direction": "inbound", "payload": {"f": {1, 2}}},
        TypeError,
        "payload",
    ),
    (
        "sessiontrack_status_changed",
        {"session_id": "$sid", "status": "dancing"},
        ValueError,
        "unknown status",
    ),
    (
        "sessiontrack_status_changed",
        {"session_id": "$sid"},
        TypeError,
        "missing required argument 'status'",
    ),
    (
        "sessiontrack_variables_changed",
        {"session_id": "$sid"},
        TypeError,
        "missing required argument 'variables'",
    ),
    (
        "sessiontrack_variables_changed",
        {"session_id": "$sid", "variables": {"when": datetime.now(UTC)}},
        TypeError,
        "not JSON-serialisable",
    ),
    (
        "sessiontrack_session_completed",
        {"session_id": "$sid", "status": "running"},
        ValueError,
        "terminal",
    ),
    (
        "sessiontrack_flow_registered",
        {"chatbot_id": "b", "name": "B"},
        TypeError,
        "missing required argument 'flow'",
    ),
    (
        "sessiontrack_flow_registered",
        {"chatbot_id": "b", "name": "B", "flow": {"nodes": [{"x": 1}]}},
        ValueError,
        "'id'",
    ),
]


@pytest.mark.parametrize(
    ("hook", "kwargs", "error", "words"),
    BAD_CALLS,
    ids=[f"{c[0].removeprefix('sessiontrack_')}-{i}" for i, c in enumerate(BAD_CALLS)],
)
async def test_bad_call_raises_at_call_site_and_stores_nothing(
    pm: pluggy.PluginManager,
    tracker: sessiontrack.Tracker,
    hook: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    kwargs = {k: (sessiontrack.new_session_id() if v == "$sid" else v) for k, v in kwargs.items()}
    before = tracker.stats.enqueued
    with pytest.raises(error, match=re.escape(words)):
        getattr(pm.hook, hook)(**kwargs)
    assert tracker.stats.enqueued == before


async def test_positional_call_is_refused(pm: pluggy.PluginManager) -> None:
    with pytest.raises(TypeError):
        pm.hook.sessiontrack_node_executed(sessiontrack.new_session_id(), "n")


async def test_uuid_objects_and_uppercase_ids_are_normalised(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    import uuid

    raw = uuid.uuid4()
    pm.hook.sessiontrack_session_started(session_id=raw, chatbot_id="bot")
    pm.hook.sessiontrack_node_executed(session_id=str(raw).upper(), node_id="a")
    await tracker.flush()
    detail = await tracker.sessions.get(str(raw))
    assert detail.node_history == ["a"]


async def test_hook_calls_from_another_thread_are_recorded_in_order(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = _start(pm)

    def engine_thread() -> None:
        for i in range(200):
            pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")

    worker = threading.Thread(target=engine_thread)
    worker.start()
    worker.join()
    await anyio.sleep(0.05)  # the thread's calls hop onto the loop before flush is taken
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert detail.node_history == [f"n{i}" for i in range(200)]


async def test_reports_before_start_fail_loudly(tmp_path: Path) -> None:
    tracker = sessiontrack.Tracker(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(sessiontrack.TrackerNotRunning, match="async with"):
        tracker.plugin_manager.hook.sessiontrack_session_started(
            session_id=sessiontrack.new_session_id(), chatbot_id="bot"
        )
    with pytest.raises(sessiontrack.TrackerNotRunning):
        _ = tracker.sessions


class Recorder:
    def __init__(self) -> None:
        self.committed: list[list[sessiontrack.StoredEvent]] = []
        self.stops: list[tuple[str, str | None]] = []
        self.stopped = anyio.Event()

    @sessiontrack.hookimpl
    async def sessiontrack_events_committed(self, events: list[sessiontrack.StoredEvent]) -> None:
        self.committed.append(list(events))

    @sessiontrack.hookimpl
    def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
        self.stops.append((session_id, principal))
        self.stopped.set()


async def test_events_committed_hook_gets_each_batch_after_commit(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    rec = Recorder()
    tracker.plugin_manager.register(rec)
    sid = _start(pm)
    pm.hook.sessiontrack_message(session_id=sid, direction="inbound", text="hi")
    await tracker.flush()
    seen = [e for batch in rec.committed for e in batch]
    assert [e.kind for e in seen] == ["session_started", "message"]
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    # committed means readable: the store already has what the hook was told about
    assert (await tracker.sessions.get(sid)).message_count == 1


async def test_stop_marks_stopped_and_calls_stop_requested(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    rec = Recorder()
    tracker.plugin_manager.register(rec)
    sid = _start(pm)
    await tracker.flush()
    await tracker.stop(sid, sessiontrack.Principal(id="agent-7"))
    with anyio.fail_after(5):
        await rec.stopped.wait()
    assert rec.stops == [(sid, "agent-7")]
    detail = await tracker.sessions.get(sid)
    assert (detail.status, detail.completion_reason) == ("stopped", "stopped_by_api")
    with pytest.raises(sessiontrack.SessionAlreadyTerminal):
        await tracker.stop(sid)
    with pytest.raises(sessiontrack.SessionNotFound):
        await tracker.stop(sessiontrack.new_session_id())


async def test_stop_requested_is_not_called_in_a_process_that_does_not_run_the_session(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, database_url: str, prefix: str
) -> None:
    """Two trackers on one database: only the engine's gets the hook."""
    engine_rec, api_rec = Recorder(), Recorder()
    tracker.plugin_manager.register(engine_rec)
    sid = _start(pm)
    await tracker.flush()
    async with sessiontrack.Tracker(database_url, prefix=prefix, poll_interval=0.05) as api:
        api.plugin_manager.register(api_rec)
        await api.stop(sid, "ops")
        with anyio.fail_after(10):
            await engine_rec.stopped.wait()
    assert engine_rec.stops == [(sid, "ops")]
    assert api_rec.stops == []


def test_every_hookspec_is_documented_with_its_signature() -> None:
    text = DOCS.read_text()
    specs = [n for n in dir(hookspecs) if n.startswith("sessiontrack_")]
    assert len(specs) == 10
    for name in specs:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### `{name}`" in text, f"{name} has no section in docs/hooks.md"
        section = text.split(f"### `{name}`", 1)[1].split("### ", 1)[0]
        for param in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f"`{param}" in section, f"{name}: argument {param} undocumented ({params})"


def test_every_hookspec_is_exercised_by_the_tests() -> None:
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for name in (n for n in dir(hookspecs) if n.startswith("sessiontrack_")):
        assert name in tests.replace(f'"{name}"', ""), f"no test uses {name}"
