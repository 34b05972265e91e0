"""The hook contract: validation at the call site, and the tracker → host hooks."""

from __future__ import annotations

import enum
import inspect
import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack
from sessiontrack import hookspecs, limits
from sessiontrack.store import make_tables

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


class Sub(str):
    """A str subclass, like LangChain's AIMessage.text."""


def _deep(levels: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return dict(value)


_FAR_EAST = timezone(timedelta(hours=14))
_FAR_WEST = timezone(timedelta(hours=-12))
L = limits
LIMIT_CALLS = [
    # (limit, hook, kwargs, error, words in the message)
    (
        "chatbot_id length",
        "session_started",
        {"chatbot_id": "b" * (L.CHATBOT_ID + 1)},
        ValueError,
        "chatbot_id is longer than 200",
    ),
    (
        "conversation_id length",
        "session_started",
        {"chatbot_id": "b", "conversation_id": "c" * (L.CONVERSATION_ID + 1)},
        ValueError,
        "conversation_id is longer",
    ),
    (
        "phone length",
        "session_started",
        {"chatbot_id": "b", "contact": {"phone": "1" * (L.CUSTOMER_PHONE + 1)}},
        ValueError,
        "contact['phone'] is longer than 64",
    ),
    (
        "name length",
        "session_started",
        {"chatbot_id": "b", "contact": {"name": "n" * (L.CUSTOMER_NAME + 1)}},
        ValueError,
        "contact['name'] is longer",
    ),
    (
        "name case-folded",
        "session_started",
        {"chatbot_id": "b", "contact": {"name": "ß" * 300}},
        ValueError,
        "once case-folded",
    ),
    (
        "node_id length",
        "node_executed",
        {"node_id": "n" * (L.NODE_ID + 1)},
        ValueError,
        "node_id is longer",
    ),
    (
        "label length",
        "node_executed",
        {"node_id": "n", "label": "l" * (L.NODE_LABEL + 1)},
        ValueError,
        "label is longer",
    ),
    (
        "free text length",
        "message",
        {"direction": "inbound", "text": "t" * (L.TEXT + 1)},
        ValueError,
        "text is longer",
    ),
    (
        "message_id length",
        "message",
        {"direction": "inbound", "message_id": "m" * (L.MESSAGE_ID + 1)},
        ValueError,
        "message_id is longer",
    ),
    (
        "reason length",
        "session_completed",
        {"reason": "r" * (L.REASON + 1)},
        ValueError,
        "reason is longer",
    ),
    (
        "status reason length",
        "status_changed",
        {"status": "stopped", "reason": "r" * (L.REASON + 1)},
        ValueError,
        "reason is longer",
    ),
    (
        "version length",
        "flow_registered",
        {"chatbot_id": "b", "name": "B", "flow": {}, "version": "v" * (L.FLOW_VERSION + 1)},
        ValueError,
        "version is longer",
    ),
    (
        "flow label length",
        "flow_registered",
        {
            "chatbot_id": "b",
            "name": "B",
            "flow": {"nodes": [{"id": "a", "data": {"label": "l" * (L.NODE_LABEL + 1)}}]},
        },
        ValueError,
        "['label'] is longer",
    ),
    (
        "flow node data",
        "flow_registered",
        {"chatbot_id": "b", "name": "B", "flow": {"nodes": [{"id": "a", "data": [1]}]}},
        ValueError,
        "['data'] must be an object",
    ),
    (
        "NUL in text",
        "message",
        {"direction": "inbound", "text": "a\x00b"},
        ValueError,
        "text contains a NUL",
    ),
    (
        "NUL in an id",
        "session_started",
        {"chatbot_id": "b\x00"},
        ValueError,
        "chatbot_id contains a NUL",
    ),
    (
        "NUL in JSON",
        "variables_changed",
        {"variables": {"a": ["\x00"]}},
        ValueError,
        "variables['a'][0] has a string with a NUL",
    ),
    (
        "NUL in a JSON key",
        "session_started",
        {"chatbot_id": "b", "metadata": {"\x00": 1}},
        ValueError,
        "metadata has a key with a NUL",
    ),
    (
        "lone surrogate",
        "message",
        {"direction": "inbound", "text": "caf\udce9"},
        ValueError,
        "text contains a lone surrogate",
    ),
    (
        "lone surrogate in JSON",
        "message",
        {"direction": "inbound", "payload": {"b": "\ud800"}},
        ValueError,
        "payload['b'] has a string with a lone surrogate",
    ),
    (
        "surrogate pair as two",
        "node_executed",
        {"node_id": "\ud83d\ude00"},
        ValueError,
        "node_id contains a lone surrogate",
    ),
    (
        "depth past the limit",
        "variables_changed",
        {"variables": _deep(L.JSON_DEPTH + 1)},
        ValueError,
        "nested deeper than 100 levels",
    ),
    (
        "depth 1,100",
        "variables_changed",
        {"variables": _deep(1100)},
        ValueError,
        "nested deeper than 100 levels",
    ),
    (
        "JSON size",
        "variables_changed",
        {"variables": {"a": "x" * L.JSON_BYTES}},
        ValueError,
        "larger than 1000000 bytes",
    ),
    (
        "JSON integer",
        "variables_changed",
        {"variables": {"n": 2**53}},
        ValueError,
        "variables['n'] is 9007199254740992, beyond",
    ),
    (
        "JSON negative integer",
        "variables_changed",
        {"variables": {"n": -(2**53)}},
        ValueError,
        "beyond",
    ),
    (
        "JSON 10**400",
        "variables_changed",
        {"variables": {"n": 10**400}},
        ValueError,
        "an integer of 1329 bits",
    ),
    (
        "JSON NaN",
        "variables_changed",
        {"variables": {"x": float("nan")}},
        ValueError,
        "is nan: JSON has no NaN",
    ),
    (
        "JSON infinity",
        "message",
        {"direction": "inbound", "payload": {"x": [float("-inf")]}},
        ValueError,
        "payload['x'][0] is -inf",
    ),
    (
        "JSON key type",
        "variables_changed",
        {"variables": {1: "one"}},
        TypeError,
        "JSON keys are strings",
    ),
    (
        "duration 10**400",
        "node_executed",
        {"node_id": "n", "duration_ms": 10**400},
        ValueError,
        "duration_ms must be a finite number",
    ),
    (
        "duration NaN",
        "node_executed",
        {"node_id": "n", "duration_ms": float("nan")},
        ValueError,
        "got nan",
    ),
    (
        "duration infinite",
        "node_executed",
        {"node_id": "n", "duration_ms": float("inf")},
        ValueError,
        "got inf",
    ),
    (
        "duration negative",
        "node_executed",
        {"node_id": "n", "duration_ms": -1},
        ValueError,
        "from 0 to",
    ),
    (
        "duration bool",
        "node_executed",
        {"node_id": "n", "duration_ms": True},
        TypeError,
        "duration_ms must be a number",
    ),
    (
        "year 1",
        "session_started",
        {"chatbot_id": "b", "at": datetime(1, 1, 1, tzinfo=UTC)},
        ValueError,
        "at must be from 1900-01-01",
    ),
    (
        "year 1 east of UTC",
        "message",
        {"direction": "inbound", "at": datetime(1, 1, 1, tzinfo=_FAR_EAST)},
        ValueError,
        "at must be from",
    ),
    (
        "year 9999",
        "session_started",
        {"chatbot_id": "b", "expires_at": datetime(9999, 12, 31, tzinfo=UTC)},
        ValueError,
        "expires_at must be from",
    ),
    (
        "year 9999 west of UTC",
        "node_executed",
        {"node_id": "n", "at": datetime(9999, 12, 31, 23, tzinfo=_FAR_WEST)},
        ValueError,
        "at must be from",
    ),
    (
        "the upper end",
        "status_changed",
        {"status": "running", "at": L.TIME_MAX},
        ValueError,
        "to before 9000-01-01",
    ),
    ("unhashable status", "status_changed", {"status": ["running"]}, ValueError, "unknown status"),
]


@pytest.mark.parametrize(
    ("limit", "hook", "kwargs", "error", "words"), LIMIT_CALLS, ids=[c[0] for c in LIMIT_CALLS]
)
async def test_a_value_past_a_limit_is_refused_naming_hook_and_argument(
    pm: pluggy.PluginManager,
    tracker: sessiontrack.Tracker,
    limit: str,
    hook: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    if hook not in ("session_started", "flow_registered"):
        kwargs = {"session_id": _start(pm), **kwargs}
    elif hook == "session_started":
        kwargs = {"session_id": sessiontrack.new_session_id(), **kwargs}
    before = tracker.stats.enqueued
    with pytest.raises(
        error, match=re.escape(f"sessiontrack_{hook}(): ") + ".*" + re.escape(words)
    ):
        getattr(pm.hook, f"sessiontrack_{hook}")(**kwargs)
    assert tracker.stats.enqueued == before


async def test_values_at_the_limits_are_stored_whole_and_read_back(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    """The same on SQLite and PostgreSQL: nothing truncated, nothing dropped."""
    bot, name = "é" * L.CHATBOT_ID, Sub("ñ" * L.CHATBOT_NAME)
    label = "л" * L.NODE_LABEL
    flow = {"nodes": [{"id": "a", "data": {"label": label}}], "edges": []}
    pm.hook.sessiontrack_flow_registered(chatbot_id=bot, name=name, flow=flow, version="v" * 64)
    variables = {"deep": _deep(L.JSON_DEPTH - 1), "big": L.JSON_INT_MAX, "small": -L.JSON_INT_MAX}
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(
        session_id=sid,
        chatbot_id=bot,
        conversation_id="c" * L.CONVERSATION_ID,
        contact={"phone": Sub("+" + "1" * (L.CUSTOMER_PHONE - 1)), "name": "ß" * 166},
        variables=variables,
        at=L.TIME_MIN,
        expires_at=datetime(8999, 12, 31, 11, 59, tzinfo=_FAR_WEST),
    )
    pm.hook.sessiontrack_node_executed(
        session_id=sid, node_id="a", duration_ms=L.DURATION_MS_MAX, error="😀" * 1000
    )
    pm.hook.sessiontrack_message(
        session_id=sid,
        direction="outbound",
        text=Sub("an AIMessage.text"),
        message_id="m" * L.MESSAGE_ID,
        at=L.TIME_MAX - timedelta(microseconds=1),
    )
    pm.hook.sessiontrack_session_completed(session_id=sid, reason="r" * L.REASON)
    await tracker.flush()
    assert (tracker.stats.failed, tracker.stats.events_stored) == (0, 4)
    d = await tracker.sessions.get(sid)
    assert (d.chatbot_id, d.chatbot_name, d.conversation_id) == (bot, name, "c" * 200)
    assert type(d.chatbot_name) is str and type(d.customer_phone) is str
    assert (d.customer_phone, d.customer_name) == ("+" + "1" * 63, "ß" * 166)
    assert d.variables == variables and d.flow_version == "v" * 64
    assert d.current_node_label == label and d.completion_reason == "r" * 200
    assert d.started_at == L.TIME_MIN and d.expires_at == datetime(8999, 12, 31, 23, 59, tzinfo=UTC)
    assert d.node_executions[0].duration_ms == L.DURATION_MS_MAX
    assert d.node_executions[0].error == "😀" * 1000
    (m,) = d.messages
    assert (m.text, type(m.text), m.channel_message_id) == ("an AIMessage.text", str, "m" * 200)
    assert m.timestamp == datetime(8999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


async def test_times_are_stored_in_utc(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    odd = timezone(timedelta(hours=5, minutes=45, seconds=7))
    sid = _start(pm, at=datetime(2026, 3, 1, 12, tzinfo=odd))
    await tracker.flush()
    committed: list[sessiontrack.StoredEvent] = []
    async with tracker.subscribe(after=tracker.published_seq) as sub:
        pm.hook.sessiontrack_message(
            session_id=sid, direction="inbound", at=datetime(2026, 3, 1, 13, tzinfo=odd)
        )
        await tracker.flush()
        committed.append(await anext(aiter(sub)))
    live = committed[0].to_wire()["timestamp"]
    assert live == "2026-03-01T07:14:53+00:00"  # the live event, as the log has it
    assert (await tracker.sessions.get(sid)).started_at.isoformat() == "2026-03-01T06:14:53+00:00"


class _Kind(enum.Enum):
    ONE = 1
    NUL = "a\x00"


def test_str_subclasses_and_mappings_are_copied_as_plain_values() -> None:
    from types import MappingProxyType

    from sessiontrack import _validate

    h = "sessiontrack_message"
    assert type(_validate.text(Sub("x"), "text", h, 10)) is str
    assert _validate.json_object(MappingProxyType({Sub("k"): (Sub("v"), 1.5)}), "payload", h) == (
        '{"k":["v",1.5]}'
    )
    # JSON forms are checked like any value: an Enum member's NUL is still a NUL
    assert _validate.json_object({"u": uuid.UUID(int=1), "e": _Kind.ONE}, "payload", h) == (
        '{"u":"00000000-0000-0000-0000-000000000001","e":1}'
    )
    with pytest.raises(ValueError, match=re.escape("payload['e'] has a string with a NUL")):
        _validate.json_object({"e": _Kind.NUL}, "payload", h)
    # a literal backslash-u-0000, the word null and 100 brackets inside strings are fine
    text = "\\u0000 null " + "[{" * 60
    assert _validate.json_object({"t": text}, "payload", h) == json.dumps(
        {"t": text}, separators=(",", ":")
    )


def test_length_limits_come_from_the_table_definitions() -> None:
    tables = make_tables("other_")
    for name, columns in limits.COLUMNS.items():
        lengths = [getattr(tables, c.split(".")[0]).c[c.split(".")[1]].type.length for c in columns]
        assert limits.LENGTHS[name] == min(lengths), name
    assert limits._lengths(tables) == limits.LENGTHS


def test_every_limit_is_documented_with_its_value() -> None:
    text = DOCS.read_text().split("## Limits", 1)[1].split("\n## ", 1)[0]
    for name in limits.__all__:
        value = getattr(limits, name)
        if isinstance(value, int):
            assert f"`{name}`" in text and f"{value:,}" in text, name
    for name, columns in limits.COLUMNS.items():
        for column in columns:
            assert column in text, (name, column)


async def test_positional_call_is_refused(pm: pluggy.PluginManager) -> None:
    with pytest.raises(TypeError):
        pm.hook.sessiontrack_node_executed(sessiontrack.new_session_id(), "n")


async def test_uuid_objects_and_uppercase_ids_are_normalised(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
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
    assert len(specs) == 12
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
