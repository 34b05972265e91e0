"""Property: whatever a hook accepts comes back through every read path, unchanged.

Arbitrary hook arguments (NUL, lone surrogates, astral characters, strings around the
column lengths, ``str`` subclasses, deep and wide JSON, big and non-finite numbers,
extreme datetimes in odd time zones) drive one session per example, on SQLite and on
PostgreSQL. A call either raises ``TypeError``/``ValueError`` at the call site and queues
nothing, or its report is stored and reads back, without error, through
``tracker.sessions``, REST (in process), SSE (read from the log, and live) and Socket.IO
(live), equal to what was given: changed only as docs/hooks.md ("Limits") says (times
in UTC; on PostgreSQL a float may come back as an int of the same value).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pluggy
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from web_helpers.fixtures import live_url, web_app
from web_helpers.live import PREFIX
from web_helpers.sockets import Probe, socket_client
from web_helpers.sse_client import SSEReader, sse_stream

import sessiontrack
from sessiontrack import limits
from sessiontrack.status import ACTIVE_STATUSES, TERMINAL_STATUSES

__all__ = ["live_url", "web_app"]
pytestmark = pytest.mark.anyio
REFUSED = (TypeError, ValueError)


class Sub(str):
    """A ``str`` subclass, as LangChain's ``AIMessage.text`` is."""


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    # No expiry: a session started in 1950 must not be swept while the example runs.
    return {"idle_timeout": None, "sweep_interval": None}


@pytest.fixture
def authenticate() -> Any:
    return lambda request: sessiontrack.Principal(id="property")


@pytest.fixture
def app_options() -> dict[str, Any]:
    return {}


# --- strategies ---------------------------------------------------------------------------


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` seven times in eight: most values are fine, so most sessions go on."""
    return st.one_of(*[good] * 7, bad)


safe_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
any_chars = st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff"])
safe_texts = (
    st.text(safe_chars, max_size=12)
    | st.builds(Sub, st.text(safe_chars, max_size=8))
    | st.sampled_from(["\\u0000", "a\r\nb", "null", "NaN", "😀", "\u2028\x85", "ßΐ"])
)
texts = mostly(safe_texts, st.text(any_chars, max_size=12))


def around(limit: int) -> st.SearchStrategy[str]:
    """Strings one short of, at and one past ``limit`` characters."""
    return st.builds(lambda n, c: c * n, st.integers(limit - 1, limit + 1), st.sampled_from("aé😀"))


def sized(limit: int) -> st.SearchStrategy[str]:
    return mostly(texts, around(limit))


def maybe(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


def deep(levels: int, leaf: Any = 1) -> dict[str, Any]:
    value: Any = leaf
    for _ in range(levels - 1):
        value = {"k": value}
    return {"k": value}


safe_numbers = st.integers(-(2**53 - 1), 2**53 - 1) | st.floats(
    allow_nan=False, allow_infinity=False
)
numbers = mostly(
    safe_numbers,
    st.integers() | st.floats() | st.sampled_from([10**400, 2**53, 1e16, 1.5e300, -0.0, 5e-324]),
)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
)
small_objects = st.dictionaries(texts, json_values, max_size=4)
json_objects = mostly(
    small_objects,
    st.integers(limits.JSON_DEPTH - 1, limits.JSON_DEPTH + 1).map(deep)
    | st.builds(deep, st.sampled_from([300, 1100]))
    | st.just({"": [[]] * 3}),
)
zones = (
    st.builds(
        timezone,
        st.timedeltas(
            min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
        ),
    )
    | st.timezones()
)
safe_moments = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(8999, 12, 30), timezones=zones
)
moments = mostly(
    safe_moments,
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
    | st.sampled_from(
        [
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
            datetime(9999, 12, 31, 23, tzinfo=UTC),
        ]
    ),
)
durations = mostly(st.none() | numbers, st.booleans() | texts)


@dataclass
class Script:
    """One example: an optional flow registration, a session start and what follows."""

    start: dict[str, Any]
    ops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    flow: dict[str, Any] | None = None


chatbot_ids = st.sampled_from(["bot", "Bot-2"]) | sized(limits.CHATBOT_ID)
node_ids = st.sampled_from(["a", "b", "1"]) | sized(limits.NODE_ID)
flow_nodes = st.lists(
    st.fixed_dictionaries(
        {"id": node_ids | st.integers(0, 3)},
        optional={
            "data": st.fixed_dictionaries({}, optional={"label": sized(limits.NODE_LABEL)})
            | json_values
        },
    ),
    max_size=3,
)
flows = st.fixed_dictionaries(
    {
        "name": sized(limits.CHATBOT_NAME),
        "flow": st.fixed_dictionaries({"nodes": flow_nodes, "edges": st.just([])}),
    }
)
starts = st.fixed_dictionaries(
    {"chatbot_id": chatbot_ids},
    optional={
        "conversation_id": maybe(sized(limits.CONVERSATION_ID)),
        "contact": st.fixed_dictionaries(
            {},
            optional={
                "phone": maybe(sized(limits.CUSTOMER_PHONE)),
                "name": maybe(sized(limits.CUSTOMER_NAME)),
            },
        ),
        "variables": json_objects,
        "metadata": json_objects,
        "at": moments,
        "expires_at": moments,
    },
)
ops = st.one_of(
    st.tuples(
        st.just("node_executed"),
        st.fixed_dictionaries(
            {"node_id": node_ids},
            optional={
                "node_type": maybe(texts),
                "label": maybe(sized(limits.NODE_LABEL)),
                "at": moments,
                "duration_ms": durations,
                "error": maybe(texts),
            },
        ),
    ),
    st.tuples(
        st.just("message"),
        st.fixed_dictionaries(
            {"direction": mostly(st.sampled_from(["inbound", "outbound"]), texts)},
            optional={
                "type": texts,
                "text": maybe(texts),
                "payload": maybe(json_objects),
                "node_id": maybe(node_ids),
                "message_id": maybe(sized(limits.MESSAGE_ID)),
                "at": moments,
            },
        ),
    ),
    st.tuples(
        st.just("status_changed"),
        st.fixed_dictionaries(
            {"status": st.sampled_from(sorted(ACTIVE_STATUSES))},
            optional={
                "node_id": maybe(node_ids),
                "reason": maybe(sized(limits.REASON)),
                "at": moments,
            },
        ),
    ),
    st.tuples(
        st.just("variables_changed"),
        st.fixed_dictionaries({"variables": json_objects}, optional={"at": moments}),
    ),
)
tokens = mostly(
    st.none() | st.integers(0, limits.TOKENS_MAX),
    st.integers() | st.booleans() | st.floats() | st.just(limits.TOKENS_MAX + 1),
)
call_texts = sized(limits.CALL_TEXT)
call_ops = st.one_of(
    st.tuples(
        st.just("llm_call"),
        st.fixed_dictionaries(
            {"model": call_texts},
            optional={
                "node_id": maybe(node_ids),
                "provider": maybe(call_texts),
                "input_tokens": tokens,
                "output_tokens": tokens,
                "latency_ms": durations,
                "ttfb_ms": durations,
                "cost": mostly(st.none() | st.floats(0, 1e6) | st.integers(0, 1000), numbers),
                "finish_reason": maybe(call_texts),
                "error": maybe(texts),
                "at": moments,
            },
        ),
    ),
    st.tuples(
        st.just("tool_call"),
        st.fixed_dictionaries(
            {"name": call_texts},
            optional={
                "node_id": maybe(node_ids),
                "call_id": maybe(call_texts),
                "arguments": maybe(json_values),
                "result": maybe(json_values | json_objects),
                "error": maybe(texts),
                "duration_ms": durations,
                "at": moments,
            },
        ),
    ),
)
completions = st.tuples(
    st.just("session_completed"),
    st.fixed_dictionaries(
        {"status": st.sampled_from(sorted(TERMINAL_STATUSES))},
        optional={"reason": maybe(sized(limits.REASON)), "at": moments},
    ),
)
scripts = st.builds(
    Script,
    start=starts,
    ops=st.builds(
        lambda body, end: body + end,
        st.lists(ops | call_ops, max_size=6),
        st.lists(completions, max_size=1),
    ),
    flow=maybe(flows),
)


# --- the corpus: the cases, by name -------------------------------------------------

TEXT_ARGUMENTS: list[tuple[str, str]] = [
    ("start", "chatbot_id"),
    ("start", "conversation_id"),
    ("start", "contact.phone"),
    ("start", "contact.name"),
    ("node_executed", "node_id"),
    ("node_executed", "node_type"),
    ("node_executed", "label"),
    ("node_executed", "error"),
    ("message", "type"),
    ("message", "text"),
    ("message", "node_id"),
    ("message", "message_id"),
    ("status_changed", "node_id"),
    ("status_changed", "reason"),
    ("session_completed", "reason"),
    ("flow", "name"),
]
BASE_OPS: dict[str, dict[str, Any]] = {
    "node_executed": {"node_id": "a"},
    "message": {"direction": "inbound", "text": "hi"},
    "status_changed": {"status": "waiting_input"},
    "session_completed": {"status": "completed"},
}


def with_text(hook: str, argument: str, value: str) -> Script:
    """A plain script whose ``argument`` of ``hook`` is ``value``."""
    script = Script(start={"chatbot_id": "bot"})
    if hook == "flow":
        script.flow = {"name": value, "flow": {"nodes": [], "edges": []}}
    elif hook == "start":
        if argument.startswith("contact."):
            script.start["contact"] = {argument.removeprefix("contact."): value}
        else:
            script.start[argument] = value
    else:
        script.ops.append((hook, {**BASE_OPS[hook], argument: value}))
    return script


def _corpus() -> Iterator[tuple[str, Script]]:
    for hook, argument in TEXT_ARGUMENTS:
        yield f"NUL in {hook} {argument}", with_text(hook, argument, "a\x00b")
    yield "lone surrogate", with_text("message", "text", "caf\ud800")
    yield (
        "lone surrogate in JSON",
        Script(start={"chatbot_id": "bot", "variables": {"k": "\udc00"}}),
    )
    yield "astral characters", with_text("message", "text", "😀" * 3)
    yield "str subclass", with_text("message", "text", Sub("an AIMessage.text"))
    yield "str subclass key", Script(start={"chatbot_id": "bot", "variables": {Sub("k"): Sub("v")}})
    for name, limit, (hook, argument) in [
        ("chatbot_id", limits.CHATBOT_ID, ("start", "chatbot_id")),
        ("customer_name", limits.CUSTOMER_NAME, ("start", "contact.name")),
        ("node_id", limits.NODE_ID, ("node_executed", "node_id")),
        ("reason", limits.REASON, ("session_completed", "reason")),
    ]:
        yield f"{name} at its column length", with_text(hook, argument, "é" * limit)
        yield f"{name} one past its column length", with_text(hook, argument, "é" * (limit + 1))
    yield "name longer once case-folded", with_text("start", "contact.name", "ß" * 300)
    for levels in (limits.JSON_DEPTH, limits.JSON_DEPTH + 1, 600, 1100):
        yield (
            f"variables {levels} levels deep",
            Script(start={"chatbot_id": "bot", "variables": deep(levels)}),
        )
    yield (
        "duration_ms=10**400",
        Script(
            start={"chatbot_id": "bot"},
            ops=[("node_executed", {"node_id": "a", "duration_ms": 10**400})],
        ),
    )
    yield (
        "duration_ms NaN",
        Script(
            start={"chatbot_id": "bot"},
            ops=[("node_executed", {"node_id": "a", "duration_ms": math.nan})],
        ),
    )
    yield "JSON integer 2**53", Script(start={"chatbot_id": "bot", "variables": {"n": 2**53}})
    yield (
        "JSON integer 2**53 - 1",
        Script(start={"chatbot_id": "bot", "variables": {"n": 2**53 - 1}}),
    )
    yield "JSON infinity", Script(start={"chatbot_id": "bot", "metadata": {"x": [math.inf]}})
    yield (
        "JSON big float",
        Script(start={"chatbot_id": "bot", "variables": {"x": 1.5e300, "y": 1e16}}),
    )
    yield "year 1", Script(start={"chatbot_id": "bot", "at": datetime(1, 1, 1, tzinfo=UTC)})
    yield (
        "year 1 at +14:00",
        Script(
            start={
                "chatbot_id": "bot",
                "at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
            }
        ),
    )
    yield (
        "year 9999",
        Script(start={"chatbot_id": "bot", "expires_at": datetime(9999, 12, 31, tzinfo=UTC)}),
    )
    yield (
        "the limits' ends",
        Script(
            start={"chatbot_id": "bot", "at": limits.TIME_MIN},
            ops=[
                (
                    "message",
                    {"direction": "outbound", "at": limits.TIME_MAX - timedelta(microseconds=1)},
                )
            ],
        ),
    )
    yield (
        "an odd time zone",
        Script(
            start={
                "chatbot_id": "bot",
                "at": datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=-9, seconds=-17))),
            }
        ),
    )
    yield "line separators", with_text("message", "text", "a\u2028b\u2029c\x85d")
    yield (
        "LLM and tool calls",
        Script(
            start={"chatbot_id": "bot"},
            ops=[
                (
                    "llm_call",
                    {
                        "model": "gpt-4o",
                        "node_id": "a",
                        "provider": "openai",
                        "input_tokens": limits.TOKENS_MAX,
                        "output_tokens": 0,
                        "latency_ms": 12.5,
                        "ttfb_ms": 3,
                        "cost": 1e16,
                        "finish_reason": "stop",
                    },
                ),
                ("tool_call", {"name": Sub("search"), "node_id": "a", "arguments": ("x", 1)}),
                ("node_executed", {"node_id": "a", "error": "boom"}),
                ("llm_call", {"model": "m", "cost": 0.1, "error": "RateLimitError"}),
                ("tool_call", {"name": "t", "result": Sub("ok"), "error": "", "duration_ms": 1}),
                ("llm_call", {"model": "m", "cost": 0.2, "input_tokens": True}),
                ("llm_call", {"model": "m", "cost": math.nan}),
                ("tool_call", {"name": "t", "arguments": {"x": math.inf}}),
                ("session_completed", {"status": "completed"}),
            ],
        ),
    )
    yield (
        "tool results of every JSON kind",
        Script(
            start={"chatbot_id": "bot"},
            ops=[
                ("tool_call", {"name": "t", "result": value, "arguments": value})
                for value in ["s", 0, -1.5, False, [], {}, [None], deep(limits.JSON_DEPTH - 1)]
            ],
        ),
    )


CORPUS = dict(_corpus())


def with_corpus(test: Callable[..., Any]) -> Callable[..., Any]:
    for name, script in CORPUS.items():
        test = example(script=script).via(name)(test)
    return test


# --- what the reads must show ---------------------------------------------------------------


def same(expected: Any, got: Any, where: str = "") -> None:
    """Equal, but a float may come back as an int of the same value (PostgreSQL's jsonb
    keeps numbers as decimals, and prints 1e16 as 10000000000000000)."""
    if isinstance(expected, float) and not isinstance(got, bool) and isinstance(got, int | float):
        assert float(got) == expected, (where, expected, got)
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), (where, expected, got)
        for k in expected:
            same(expected[k], got[k], f"{where}[{k!r}]")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), (where, expected, got)
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            same(e, g, f"{where}[{i}]")
    elif isinstance(expected, datetime):  # in UTC (an instant with fold=1 equals nothing)
        assert got == expected.astimezone(UTC) and got.utcoffset() == timedelta(0), (where, got)
    elif isinstance(expected, str):  # str subclasses come back as plain str
        assert type(got) is str and got == expected, (where, expected, got)
    else:
        assert type(got) is type(expected) and got == expected, (where, expected, got)


def plain(value: Any) -> Any:
    """What a JSON argument reads back as: plain types, tuples as lists."""
    return json.loads(json.dumps(value))


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


@dataclass
class Expected:
    """The model of one session, built from the calls the hooks accepted."""

    sid: str
    chatbot_id: str
    flow: dict[str, Any] | None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)
    current_node: str | None = None
    llm_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(
        default_factory=lambda: {
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": 0.0,
            "llm_calls": 0,
            "tool_calls": 0,
            "error_count": 0,
        }
    )

    def label(self, node_id: str) -> str | None:
        for node in (self.flow or {}).get("nodes", []):
            data = node.get("data")
            if str(node["id"]) == node_id and isinstance(data, dict):
                label = data.get("label")
                return label if isinstance(label, str) else None
        return None

    def started(self, kw: dict[str, Any]) -> None:
        contact = kw.get("contact") or {}
        self.variables = plain(kw.get("variables") or {})
        self.metadata = plain(kw.get("metadata") or {})
        self.fields = {
            "conversation_id": kw.get("conversation_id"),
            "customer_phone": contact.get("phone"),
            "customer_name": contact.get("name"),
            "status": "running",
            "expires_at": kw.get("expires_at"),
        }
        if kw.get("at") is not None:
            self.fields["started_at"] = kw["at"]
        wire = {
            "chatbotId": self.chatbot_id,
            **_camel(self.fields, "conversation_id", "customer_phone", "customer_name"),
        }
        self._event("session:started", wire, kw, "startedAt")

    def node_executed(self, kw: dict[str, Any]) -> None:
        node_id = kw["node_id"]
        label = kw.get("label")
        label = self.label(node_id) if label is None else label
        duration = kw.get("duration_ms")
        node = {
            "node_id": node_id,
            "label": label,
            "type": kw.get("node_type"),
            "duration_ms": duration,
            "error": kw.get("error"),
        }
        self.nodes.append(node)
        self.current_node = node_id
        wire = {
            "nodeId": node_id,
            "nodeLabel": label,
            "nodeType": node["type"],
            "error": node["error"],
        }
        if duration is not None:
            wire["durationMs"] = duration if isinstance(duration, float) else int(duration)
        if node["error"] is not None:
            self.totals["error_count"] += 1
        self._event("session:node-executed", {**wire, "totals": self.wire_totals()}, kw, "at")

    def wire_totals(self) -> dict[str, Any]:
        return _camel(self.totals, *self.totals)

    def llm_call(self, kw: dict[str, Any]) -> None:
        cost = None if kw.get("cost") is None else float(kw["cost"])
        call = {
            "node_id": kw.get("node_id"),
            "model": kw["model"],
            "provider": kw.get("provider"),
            "input_tokens": kw.get("input_tokens"),
            "output_tokens": kw.get("output_tokens"),
            "cost": cost,
            "finish_reason": kw.get("finish_reason"),
            "error": kw.get("error"),
        }
        for key in ("latency_ms", "ttfb_ms"):
            value = kw.get(key)
            if value is not None:
                call[key] = value if isinstance(value, float) else int(value)
        self.llm_calls.append({**call, "at": kw.get("at")})
        t = self.totals
        t["llm_calls"] += 1
        t["input_tokens"] += call["input_tokens"] or 0
        t["output_tokens"] += call["output_tokens"] or 0
        t["cost"] += cost or 0.0
        t["error_count"] += call["error"] is not None
        wire = {**_camel(call, *call), "totals": self.wire_totals()}
        self._event("session:llm-call", wire, kw, "at")

    def tool_call(self, kw: dict[str, Any]) -> None:
        call = {
            "node_id": kw.get("node_id"),
            "name": kw["name"],
            "call_id": kw.get("call_id"),
            "arguments": None if kw.get("arguments") is None else plain(kw["arguments"]),
            "result": None if kw.get("result") is None else plain(kw["result"]),
            "error": kw.get("error"),
        }
        duration = kw.get("duration_ms")
        if duration is not None:
            call["duration_ms"] = duration if isinstance(duration, float) else int(duration)
        self.tool_calls.append({**call, "at": kw.get("at")})
        self.totals["tool_calls"] += 1
        self.totals["error_count"] += call["error"] is not None
        wire = {**_camel(call, *call), "totals": self.wire_totals()}
        self._event("session:tool-call", wire, kw, "at")

    def message(self, kw: dict[str, Any]) -> None:
        mid = kw.get("message_id")
        if mid is not None:
            if mid in self.message_ids:
                return  # a channel retry: stored once (documented)
            self.message_ids.add(mid)
        msg = {
            "direction": kw["direction"],
            "type": kw.get("type", "text"),
            "text": kw.get("text"),
            "payload": None if kw.get("payload") is None else plain(kw["payload"]),
            "node_id": kw.get("node_id"),
        }
        self.messages.append({**msg, "at": kw.get("at")})
        self._event("session:message-sent", _camel(msg, *msg), kw, "timestamp")

    def status_changed(self, kw: dict[str, Any]) -> None:
        node_id = kw.get("node_id")
        if node_id is not None:
            self.current_node = node_id
        self.fields["status"] = kw["status"]
        self._event(
            "session:status-changed",
            {
                "newStatus": kw["status"],
                "reason": kw.get("reason"),
                "currentNodeId": self.current_node,
            },
            kw,
            "updatedAt",
        )

    def variables_changed(self, kw: dict[str, Any]) -> None:
        patch = plain(kw["variables"])
        self.variables = {**self.variables, **patch}
        self._event("session:variables-changed", {"variables": patch}, kw, "updatedAt")

    def session_completed(self, kw: dict[str, Any]) -> None:
        status = kw.get("status", "completed")
        self.fields["status"] = status
        self.fields["completion_reason"] = kw.get("reason")
        self._event(
            "session:completed",
            {"status": status, "completionReason": kw.get("reason"), "totals": self.wire_totals()},
            kw,
            "completedAt",
        )

    def _event(self, name: str, wire: dict[str, Any], kw: dict[str, Any], at_key: str) -> None:
        if kw.get("at") is not None:
            wire[at_key] = iso(kw["at"])
        self.events.append((name, {"sessionId": self.sid, **wire}))


def _camel(values: dict[str, Any], *keys: str) -> dict[str, Any]:
    def camel(k: str) -> str:
        head, *rest = k.split("_")
        return head + "".join(p.title() for p in rest)

    return {"nodeId" if k == "node_id" else camel(k): values[k] for k in keys}


# --- the test ------------------------------------------------------------------------------


@dataclass
class Readers:
    """Everything that reads: the tracker, REST in process, and live SSE and socket clients."""

    tracker: sessiontrack.Tracker
    pm: pluggy.PluginManager
    rest: httpx.AsyncClient
    sse_api: httpx.AsyncClient
    live_sse: SSEReader
    socket: Probe
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)


@pytest.fixture
async def readers(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager, web_app: Any, live_url: str
) -> AsyncIterator[Readers]:
    async with AsyncExitStack() as stack:
        transport = httpx.ASGITransport(app=web_app)
        rest = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://test")
        )
        sse_api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=live_url + PREFIX, timeout=10)
        )
        live_sse = await stack.enter_async_context(sse_stream(sse_api))
        socket = await stack.enter_async_context(socket_client(live_url))
        await socket.call("sessions:subscribe")
        yield Readers(tracker, pm, rest, sse_api, live_sse, socket)


def call(r: Readers, hook: str, **kwargs: Any) -> bool:
    """Call a hook; True if accepted. A refusal must raise at once and queue nothing."""
    before = r.tracker.stats.enqueued
    try:
        getattr(r.pm.hook, f"sessiontrack_{hook}")(**kwargs)
    except REFUSED as exc:
        assert r.tracker.stats.enqueued == before
        assert f"sessiontrack_{hook}()" in str(exc), exc  # the error names the hook
        event(f"{hook} refused: {type(exc).__name__}")
        return False
    event(f"{hook} accepted")
    return True


async def run_script(r: Readers, script: Script) -> Expected | None:
    if script.flow is not None:
        kw = {"chatbot_id": script.start["chatbot_id"], **script.flow}
        if call(r, "flow_registered", **kw):
            r.flows[kw["chatbot_id"]] = plain(kw["flow"])
    sid = sessiontrack.new_session_id()
    if not call(r, "session_started", session_id=sid, **script.start):
        await r.tracker.flush()
        with pytest.raises(sessiontrack.SessionNotFound):
            await r.tracker.sessions.get(sid)
        return None
    exp = Expected(sid, script.start["chatbot_id"], r.flows.get(script.start["chatbot_id"]))
    exp.started(script.start)
    for hook, kw in script.ops:
        if call(r, hook, session_id=sid, **kw):
            getattr(exp, hook)(kw)
    await r.tracker.flush()
    stats = r.tracker.stats
    assert (stats.failed, stats.orphans, stats.late) == (0, 0, 0)
    return exp


def check_wire(exp: Expected, got: list[tuple[str, dict[str, Any]]], route: str) -> None:
    assert [n for n, _ in got] == [n for n, _ in exp.events], route
    for (name, want), (_, data) in zip(exp.events, got, strict=True):
        same(want, {k: data[k] for k in want}, f"{route} {name}")


async def check_reads(r: Readers, exp: Expected) -> None:
    detail = await r.tracker.sessions.get(exp.sid)
    for key, value in exp.fields.items():
        same(value, getattr(detail, key), key)
    same(exp.variables, detail.variables, "variables")
    same(exp.metadata, detail.metadata, "metadata")
    same(
        exp.nodes,
        [{k: getattr(n, k) for k in exp.nodes[0]} for n in detail.node_executions]
        if exp.nodes
        else [],
        "nodes",
    )
    flow = exp.flow or {"nodes": [], "edges": []}
    same(flow, detail.flow_data, "flow")
    same(exp.totals, {k: getattr(detail, k) for k in exp.totals}, "totals")
    for want_calls, got_calls in (
        (exp.llm_calls, detail.llm_call_history),
        (exp.tool_calls, detail.tool_call_history),
    ):
        assert len(got_calls) == len(want_calls)
        for want, c in zip(want_calls, got_calls, strict=True):
            same(
                {k: v for k, v in want.items() if k != "at"},
                {k: getattr(c, k) for k in want if k != "at"},
                "call",
            )
            if want["at"] is not None:
                same(want["at"], c.at, "call at")
    messages = await r.tracker.sessions.messages(exp.sid)
    for got_messages in (detail.messages, messages):
        assert len(got_messages) == len(exp.messages)
        for want, m in zip(exp.messages, got_messages, strict=True):
            same(
                {k: v for k, v in want.items() if k != "at"},
                {k: getattr(m, k) for k in want if k != "at"},
                "message",
            )
            if want["at"] is not None:
                same(want["at"], m.timestamp, "message timestamp")
    page = await r.tracker.sessions.list(chatbot_id=exp.chatbot_id, limit=100)
    assert exp.sid in {s.id for s in page.data} or page.has_next

    await check_rest(r, exp)
    log = await read_sse(r, exp)
    check_wire(exp, log, "SSE from the log")
    live = await read_live_sse(r, exp)
    check_wire(exp, live, "SSE live")
    check_wire(exp, await read_socket(r, exp), "Socket.IO")
    for a, b in zip(live, log, strict=True):  # live and log agree, up to float/int
        same(json.loads(json.dumps(a[1])), b[1], "live vs log")


async def check_rest(r: Readers, exp: Expected) -> None:
    res = await r.rest.get(f"/{exp.sid}")
    assert res.status_code == 200, res.text
    body = res.json()
    same(exp.variables, body["variables"], "REST variables")
    for key in (
        "customer_name",
        "customer_phone",
        "conversation_id",
        "status",
        "completion_reason",
    ):
        if key in exp.fields:
            same(exp.fields[key], body[_camel({key: 0}, key).popitem()[0]], f"REST {key}")
    same([n["node_id"] for n in exp.nodes], body["nodeHistory"], "REST nodeHistory")
    same([m["text"] for m in exp.messages], [m["text"] for m in body["messages"]], "REST texts")
    same(
        [m["payload"] for m in exp.messages],
        [m["payload"] for m in body["messages"]],
        "REST payloads",
    )
    same(exp.flow or {"nodes": [], "edges": []}, body["flowData"], "REST flowData")
    same(exp.wire_totals(), {k: body[k] for k in exp.wire_totals()}, "REST totals")
    same(
        [c["arguments"] for c in exp.tool_calls],
        [c["arguments"] for c in body["toolCallHistory"]],
        "REST tool arguments",
    )
    res = await r.rest.get(f"/{exp.sid}/messages")
    assert res.status_code == 200, res.text
    same([m["text"] for m in exp.messages], [m["text"] for m in res.json()], "REST messages")
    res = await r.rest.get("/", params={"chatbotId": exp.chatbot_id, "limit": 100})
    assert res.status_code == 200, res.text


async def read_live_sse(r: Readers, exp: Expected) -> list[tuple[str, dict[str, Any]]]:
    """This session's events from the stream of all sessions (skipping what an earlier,
    failed example left unread)."""
    got: list[tuple[str, dict[str, Any]]] = []
    while len(got) < len(exp.events):
        event = await r.live_sse.next()
        if event.data["sessionId"] == exp.sid:
            got.append((event.event, event.data))
    return got


async def read_socket(r: Readers, exp: Expected) -> list[tuple[str, dict[str, Any]]]:
    def mine() -> list[tuple[str, Any]]:
        return [(n, d) for n, d in r.socket.events() if d["sessionId"] == exp.sid]

    while len(mine()) < len(exp.events):
        await r.socket.wait_for(len(r.socket.events()) + 1)
    return mine()


async def read_sse(r: Readers, exp: Expected) -> list[tuple[str, dict[str, Any]]]:
    headers = {"Last-Event-ID": "0"}
    async with sse_stream(r.sse_api, params={"sessionId": exp.sid}, headers=headers) as stream:
        return [(e.event, e.data) for e in await stream.take(len(exp.events))]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@with_corpus
@given(script=scripts)
async def test_accepted_reports_read_back_everywhere(readers: Readers, script: Script) -> None:
    exp = await run_script(readers, script)
    if exp is not None:
        await check_reads(readers, exp)
