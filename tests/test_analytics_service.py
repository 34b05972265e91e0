"""The analytics service (``tracker.analytics``) on hand-written rollup rows, both backends.

The rollups are written here directly (what the writer would have written for the
sessions described in each test), so each figure below is checked by hand against its
definition in docs/analytics.md: argument errors, the tenant check, version resolution,
ranges and time zones (a :30 zone, a DST change), defaults and empty answers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from sessiontrack.analytics import _sketch
from sessiontrack.analytics._service import HISTOGRAM_EDGES, Analytics
from sessiontrack.errors import InvalidParameter, SessionNotFound
from sessiontrack.models import Principal
from sessiontrack.store import SQLAlchemyStore
from tests.adapter_helpers.docs import printed_output, run_documented_example

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
BOT = "shop"
SEP = "\x1f"
T0 = datetime(2026, 11, 2, 10, 7, tzinfo=UTC)  # a Monday, inside the quarter-hour 10:00
FLOW_V1 = {
    "nodes": [
        {"id": "start", "type": "input", "data": {"label": "Start"}},
        {"id": "ask", "type": "default", "data": {"label": "Ask"}},
        {"id": "done", "type": "output", "data": {"label": "Done"}},
    ],
    "edges": [{"id": "e1", "source": "start", "target": "ask"}],
}
FLOW_V2 = {
    "nodes": [
        {"id": "start", "type": "input", "data": {"label": "Hello"}},
        {"id": "pay", "type": "default", "data": {"label": "Pay"}},
    ],
    "edges": [{"id": "e2", "source": "start", "target": "pay"}],
}


def path_key(nodes: list[str]) -> str:
    return hashlib.sha256(json.dumps(nodes).encode()).hexdigest()[:16]


class Rollups:
    """Rows as the writer keeps them: every delta in its quarter-hour and its UTC day."""

    def __init__(self, store: SQLAlchemyStore) -> None:
        self.store = store
        self.counts: dict[tuple[Any, ...], float] = defaultdict(float)
        self.bins: dict[tuple[Any, ...], int] = defaultdict(int)
        self.paths: dict[str, list[str]] = {}
        self.traces: list[dict[str, Any]] = []

    @staticmethod
    def _buckets(at: datetime) -> list[tuple[int, int]]:
        t = int(at.timestamp())
        return [(0, t // 900 * 900), (1, t // 86400 * 86400)]

    def count(self, metric: str, at: datetime, dim: str = "", n: float = 1, version: str = "v2"):
        for grain, bucket in self._buckets(at):
            self.counts[(BOT, metric, grain, bucket, version, dim)] += n

    def sample(self, metric: str, at: datetime, value: float, dim: str = "", version: str = "v2"):
        b = int(value) if metric == "messages" else _sketch.bin_of(value)
        for grain, bucket in self._buckets(at):
            self.bins[(BOT, metric, grain, bucket, version, dim, b)] += 1

    def session(
        self,
        at: datetime,
        path: list[str],
        times: list[float],
        *,
        status: str = "completed",
        version: str = "v2",
        duration_ms: float | None = None,
        messages: int = 0,
        reason: str | None = None,
    ) -> None:
        """One session's rows (status, path, nodes, edges, trace; the end if it ended)."""
        key = path_key(path)
        self.paths[key] = path
        self.count("status", at, status, version=version)
        self.count("path", at, key, version=version)
        for node in set(path):
            self.count("node.sessions", at, node, version=version)
        for node in path:
            self.count("node.visits", at, node, version=version)
        pairs = set(itertools.pairwise(path))
        for pair in pairs:
            self.count("edge", at, SEP.join(pair), version=version)
        for source in {a for a, _ in pairs}:
            self.count("node.onward", at, source, version=version)
        ended = status in ("completed", "expired", "stopped")
        if path:
            self.count(
                "node.exit", at, f"{path[-1]}{SEP}{status if ended else 'active'}", 1, version
            )
        if ended:
            assert duration_ms is not None
            self.count("ended_duration_ms", at, n=duration_ms, version=version)
            self.count("ended_messages", at, n=messages, version=version)
            self.count("ended_nodes", at, n=len(path), version=version)
            self.count("path.ended", at, key, version=version)
            if status == "completed":
                self.count("path.completed", at, key, version=version)
            self.sample("duration", at, duration_ms, version=version)
            self.sample("messages", at, messages, version=version)
            self.sample("path.duration", at, duration_ms, key, version=version)
            if reason:
                self.count("reason", at, f"{status}{SEP}{reason}", version=version)
        self.traces.append(
            {
                "session_id": f"00000000-0000-4000-8000-{len(self.traces):012d}",
                "chatbot_id": BOT,
                "version": version,
                "started_at": at,
                "status": status,
                "path_key": key,
                "state": {"p": path, "t": times},
            }
        )

    async def write(self) -> None:
        t = self.store.tables
        cols = ("chatbot_id", "metric", "grain", "bucket", "version", "dim")
        async with self.store.engine.begin() as conn:
            if self.counts:
                rows = [
                    {**dict(zip(cols, k, strict=True)), "value": v} for k, v in self.counts.items()
                ]
                await conn.execute(sa.insert(t.an_counts), rows)
            if self.bins:
                bcols = (*cols, "bin")
                rows = [{**dict(zip(bcols, k, strict=True)), "n": v} for k, v in self.bins.items()]
                await conn.execute(sa.insert(t.an_bins), rows)
            if self.paths:
                rows = [
                    {"chatbot_id": BOT, "path_key": k, "nodes": v} for k, v in self.paths.items()
                ]
                await conn.execute(sa.insert(t.an_paths), rows)
            if self.traces:
                await conn.execute(sa.insert(t.an_traces), self.traces)


@pytest.fixture
async def store(database_url: str, prefix: str) -> AsyncIterator[SQLAlchemyStore]:
    store = SQLAlchemyStore(database_url, prefix=prefix)
    await store.open(migrate=True)
    t = store.tables
    async with store.engine.begin() as conn:
        now = datetime(2026, 10, 1, tzinfo=UTC)
        await conn.execute(
            sa.insert(t.chatbots),
            [{"chatbot_id": BOT, "name": "Shop", "current_version": "v2", "updated_at": now}],
        )
        await conn.execute(
            sa.insert(t.flows),
            [
                {"chatbot_id": BOT, "version": "v1", "flow": FLOW_V1, "registered_at": now},
                {
                    "chatbot_id": BOT,
                    "version": "v2",
                    "flow": FLOW_V2,
                    "registered_at": now + timedelta(days=1),
                },
            ],
        )
    yield store
    await store.close()


@pytest.fixture
def rollups(store: SQLAlchemyStore) -> Rollups:
    return Rollups(store)


@pytest.fixture
def analytics(store: SQLAlchemyStore) -> Analytics:
    return Analytics(store)


DAY = {"start_date": "2026-11-02", "end_date": "2026-11-02"}


def q(ms: float) -> float:
    """A time as the answers give it: quantized by the sketch."""
    return _sketch.value_of(_sketch.bin_of(ms))


# --- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"chatbot_id": ""}, "chatbotId"),
        ({"chatbot_id": 5}, "chatbotId"),
        ({"chatbot_id": "a\x00b"}, "chatbotId"),
        ({"version": ""}, "version"),
        ({"version": 2}, "version"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": ""}, "tz"),
        ({"tz": "../etc/passwd"}, "tz"),
        ({"start_date": "yesterday"}, "startDate"),
        ({"start_date": 20261101}, "startDate"),
        ({"end_date": "2026-13-01"}, "endDate"),
        ({"start_date": "2026-11-05", "end_date": "2026-11-01"}, "endDate"),
        ({"start_date": "FUTURE"}, "startDate"),  # after the default end (today)
        ({"start_date": "2025-01-01", "end_date": "2026-11-01"}, "endDate"),  # > 400 days
        ({"start_date": "0001-01-01T00:00+14:00"}, "startDate"),
        ({"end_date": "0001-01-03"}, "startDate"),  # the default week starts before year 1
        ({"end_date": date(1, 1, 1)}, "startDate"),
        ({"end_date": "9999-12-31"}, "endDate"),
        ({"end_date": "9999-12-31", "tz": "Asia/Kolkata"}, "endDate"),
        ({"start_date": "0001-01-01T00:00", "end_date": "0001-01-01T00:00"}, "endDate"),
    ],
)
async def test_argument_errors_name_the_field(
    analytics: Analytics, kwargs: dict[str, Any], field: str
) -> None:
    kwargs = {"chatbot_id": BOT, **kwargs}
    if kwargs.get("start_date") == "FUTURE":
        kwargs["start_date"] = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    chatbot_id = kwargs.pop("chatbot_id")
    for call in (analytics.summary, analytics.nodes, analytics.paths):
        with pytest.raises(InvalidParameter) as err:
            await call(chatbot_id, **kwargs)
        assert err.value.field == field, err.value


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_date": "0001-01-01", "end_date": "0001-01-01"},
        {"start_date": "0001-01-01", "end_date": "0001-01-01", "tz": "Etc/GMT+12"},
        {"start_date": "9999-12-30", "end_date": "9999-12-30"},
        {"start_date": "9999-12-31T23:45", "end_date": "9999-12-31T23:50"},
        {"end_date": "0001-01-07"},
    ],
)
async def test_the_first_and_last_supported_days_answer(
    analytics: Analytics, kwargs: dict[str, Any]
) -> None:
    for call in (analytics.summary, analytics.nodes, analytics.paths):
        assert (await call(BOT, **kwargs))["sessions"] == 0
    assert (await analytics.funnel(BOT, steps=["n0"], **kwargs))["sessions"] == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"limit": True}, "limit"),
    ],
)
async def test_paths_limit(analytics: Analytics, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        await analytics.paths(BOT, **kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("steps", [[], [""], ["a", " "], [f"n{i}" for i in range(21)], None, [1]])
async def test_funnel_steps(analytics: Analytics, steps: Any) -> None:
    with pytest.raises(InvalidParameter) as err:
        await analytics.funnel(BOT, steps=steps)
    assert err.value.field == "steps"


async def test_exactly_400_days_is_allowed(analytics: Analytics) -> None:
    answer = await analytics.summary(BOT, start_date="2025-10-01", end_date="2026-11-04")
    assert (
        datetime.fromisoformat(answer["endDate"]) - datetime.fromisoformat(answer["startDate"])
    ).days == 400
    assert len(answer["daily"]) == 400


# --- tenants and chatbots -----------------------------------------------------------------


async def test_unknown_chatbot_and_other_tenants_are_not_found(analytics: Analytics) -> None:
    other = Principal(id="p", chatbot_ids=frozenset({"other"}))
    calls = [
        lambda p, bot: analytics.summary(bot, principal=p),
        lambda p, bot: analytics.nodes(bot, principal=p),
        lambda p, bot: analytics.paths(bot, principal=p),
        lambda p, bot: analytics.funnel(bot, steps=["start"], principal=p),
        lambda p, bot: analytics.versions(bot, principal=p),
    ]
    for call in calls:
        with pytest.raises(SessionNotFound):
            await call(other, BOT)
        with pytest.raises(SessionNotFound) as err:
            await call(None, "nobody")
        assert "nobody" in str(err.value)
        allowed = Principal(id="p", chatbot_ids=frozenset({BOT}))
        assert (await call(allowed, BOT))["chatbotId"] == BOT


# --- versions -------------------------------------------------------------------------------


async def test_version_resolution(analytics: Analytics, rollups: Rollups) -> None:
    rollups.session(T0, ["start", "pay"], [0, 10], version="v2", duration_ms=1000)
    rollups.session(T0, ["start", "ask"], [0, 10], version="v1", duration_ms=3000)
    rollups.session(T0, ["start", "ask", "done"], [0, 5, 9], version="v1", duration_ms=5000)
    await rollups.write()
    current = await analytics.summary(BOT, **DAY)
    assert (current["version"], current["sessions"]) == ("v2", 1)
    v1 = await analytics.summary(BOT, version="v1", **DAY)
    assert (v1["version"], v1["sessions"]) == ("v1", 2)
    everything = await analytics.summary(BOT, version="all", **DAY)
    assert (everything["version"], everything["sessions"]) == ("all", 3)
    assert everything["duration"]["mean"] == 3.0
    unknown = await analytics.summary(BOT, version="v9", **DAY)
    assert (unknown["version"], unknown["sessions"], unknown["completionRate"]) == ("v9", 0, None)

    nodes = await analytics.nodes(BOT, version="all", **DAY)
    # the union graph: v2's node "start" (label Hello) wins, v1's nodes follow
    assert [n["nodeId"] for n in nodes["nodes"]] == ["start", "pay", "ask", "done"]
    assert nodes["nodes"][0]["label"] == "Hello"
    assert nodes["nodes"][0]["sessions"] == 3
    assert {(e["source"], e["target"]) for e in nodes["flowData"]["edges"]} == {
        ("start", "pay"),
        ("start", "ask"),
    }
    only_v1 = await analytics.nodes(BOT, version="v1", **DAY)
    assert only_v1["flowData"] == FLOW_V1
    assert [n["nodeId"] for n in only_v1["nodes"]] == ["start", "ask", "done"]
    none = await analytics.nodes(BOT, version="v9", **DAY)
    assert none["flowData"] == {"nodes": [], "edges": []} and none["nodes"] == []

    versions = await analytics.versions(BOT)
    assert versions == {
        "chatbotId": BOT,
        "current": "v2",
        "versions": [
            {"version": "v2", "registeredAt": "2026-10-02T00:00:00+00:00", "sessions": 1},
            {"version": "v1", "registeredAt": "2026-10-01T00:00:00+00:00", "sessions": 2},
        ],
    }


# --- ranges and time zones -------------------------------------------------------------


async def test_dates_are_local_days_and_end_is_inclusive(analytics: Analytics) -> None:
    answer = await analytics.summary(BOT, start_date="2026-11-01", end_date="2026-11-03", tz="UTC")
    assert answer["startDate"] == "2026-11-01T00:00:00+00:00"
    assert answer["endDate"] == "2026-11-04T00:00:00+00:00"
    assert answer["tz"] == "UTC"
    kolkata = await analytics.summary(
        BOT, start_date=date(2026, 11, 1), end_date=date(2026, 11, 1), tz="Asia/Kolkata"
    )
    assert kolkata["startDate"] == "2026-11-01T00:00:00+05:30"
    assert kolkata["endDate"] == "2026-11-02T00:00:00+05:30"
    assert [d["date"] for d in kolkata["daily"]] == ["2026-11-01"]


async def test_datetimes_are_floored_to_the_quarter_hour(analytics: Analytics) -> None:
    naive = await analytics.summary(
        BOT,
        start_date="2026-11-01T09:44:59",
        end_date=datetime(2026, 11, 1, 10, 1),
        tz="Asia/Kolkata",
    )
    assert naive["startDate"] == "2026-11-01T09:30:00+05:30"
    assert naive["endDate"] == "2026-11-01T10:00:00+05:30"
    aware = await analytics.summary(
        BOT, start_date="2026-11-01T09:52:00Z", end_date="2026-11-01T12:00:00+02:00"
    )
    assert aware["startDate"] == "2026-11-01T09:45:00+00:00"
    assert aware["endDate"] == "2026-11-01T10:00:00+00:00"


async def test_default_range_is_the_last_seven_local_days(analytics: Analytics) -> None:
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14: its today is often not UTC's
    answer = await analytics.summary(BOT, tz="Pacific/Kiritimati")
    today = datetime.now(zone).date()
    assert answer["startDate"] == f"{today - timedelta(days=6)}T00:00:00+14:00"
    assert answer["endDate"] == f"{today + timedelta(days=1)}T00:00:00+14:00"
    assert [d["date"] for d in answer["daily"]] == [
        str(today - timedelta(days=6 - i)) for i in range(7)
    ]
    only_end = await analytics.summary(BOT, end_date="2026-11-10")
    assert only_end["startDate"] == "2026-11-04T00:00:00+00:00"


async def test_range_selects_sessions_by_start(analytics: Analytics, rollups: Rollups) -> None:
    for minutes in (0, 14, 15, 29, 30):
        rollups.session(
            T0.replace(minute=0) + timedelta(minutes=minutes), ["start"], [0], status="running"
        )
    rollups.session(datetime(2026, 11, 1, 23, 59, tzinfo=UTC), ["start"], [0], status="running")
    rollups.session(datetime(2026, 11, 3, 0, 0, tzinfo=UTC), ["start"], [0], status="running")
    await rollups.write()
    window = await analytics.summary(
        BOT, start_date="2026-11-02T10:00", end_date="2026-11-02T10:29"
    )
    assert window["sessions"] == 2  # 10:00 and 10:14; the end 10:29 floors to 10:15
    day = await analytics.summary(BOT, **DAY)
    assert day["sessions"] == 5 and day["active"] == 5
    three = await analytics.summary(BOT, start_date="2026-11-01T23:45", end_date="2026-11-03T00:15")
    assert three["sessions"] == 7  # quarter-hours at both ends plus a whole day


async def test_daily_in_a_half_hour_zone(analytics: Analytics, rollups: Rollups) -> None:
    # 18:29 UTC is 23:59 in Kolkata (Nov 2); 18:30 UTC is 00:00 on Nov 3
    rollups.session(datetime(2026, 11, 2, 18, 29, tzinfo=UTC), ["start"], [0], duration_ms=1)
    rollups.session(
        datetime(2026, 11, 2, 18, 30, tzinfo=UTC), ["start"], [0], status="stopped", duration_ms=1
    )
    rollups.session(
        datetime(2026, 11, 2, 18, 45, tzinfo=UTC), ["start"], [0], status="waiting_input"
    )
    await rollups.write()
    answer = await analytics.summary(
        BOT, start_date="2026-11-02", end_date="2026-11-03", tz="Asia/Kolkata"
    )
    assert answer["daily"] == [
        {"date": "2026-11-02", "started": 1, "completed": 1, "expired": 0, "stopped": 0},
        {"date": "2026-11-03", "started": 2, "completed": 0, "expired": 0, "stopped": 1},
    ]
    utc = await analytics.summary(BOT, **DAY)
    assert utc["daily"] == [
        {"date": "2026-11-02", "started": 3, "completed": 1, "expired": 0, "stopped": 1}
    ]


async def test_daily_across_a_dst_change(analytics: Analytics, rollups: Rollups) -> None:
    # New York leaves DST on 2026-11-01 at 06:00 UTC (02:00 EDT becomes 01:00 EST)
    for at in ("2026-11-01T03:59", "2026-11-01T04:00", "2026-11-02T04:59", "2026-11-02T05:00"):
        rollups.session(
            datetime.fromisoformat(at).replace(tzinfo=UTC), ["start"], [0], status="running"
        )
    await rollups.write()
    answer = await analytics.summary(
        BOT, start_date="2026-10-31", end_date="2026-11-02", tz="America/New_York"
    )
    assert answer["startDate"] == "2026-10-31T00:00:00-04:00"
    assert answer["endDate"] == "2026-11-03T00:00:00-05:00"
    # 03:59 UTC = Oct 31 23:59 EDT; 04:00 = Nov 1 00:00 EDT; Nov 2 04:59 UTC = Nov 1 23:59 EST
    assert [(d["date"], d["started"]) for d in answer["daily"]] == [
        ("2026-10-31", 1),
        ("2026-11-01", 2),
        ("2026-11-02", 1),
    ]
    assert answer["sessions"] == 4


# --- the reports, by hand -----------------------------------------------------------------


async def test_empty_answers(analytics: Analytics) -> None:
    summary = await analytics.summary(BOT, **DAY)
    assert summary["sessions"] == 0 and summary["completionRate"] is None
    assert summary["byStatus"] == dict.fromkeys(
        ["running", "waiting_input", "waiting_flow", "completed", "expired", "stopped"], 0
    )
    assert summary["duration"] == {
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "histogram": [{"le": le, "sessions": 0} for le in [*HISTOGRAM_EDGES, None]],
    }
    assert summary["messages"] == {"mean": None, "p50": None, "p90": None}
    assert summary["tokens"] == {"input": 0, "output": 0} and summary["cost"] == 0
    assert summary["byReason"] == {}
    nodes = await analytics.nodes(BOT, **DAY)
    assert nodes["flowData"] == FLOW_V2 and nodes["edges"] == []
    assert nodes["nodes"][0] == {
        "nodeId": "start",
        "label": "Hello",
        "type": "input",
        "sessions": 0,
        "visits": 0,
        "exits": {"completed": 0, "expired": 0, "stopped": 0, "active": 0},
        "dropOffRate": None,
        "botTime": {"p50": None, "p90": None},
        "waitTime": {"p50": None, "p90": None},
        "errors": 0,
    }
    paths = await analytics.paths(BOT, **DAY)
    assert paths["paths"] == [] and paths["sessions"] == 0
    funnel = await analytics.funnel(BOT, steps=["start", "pay"], **DAY)
    assert [s["sessions"] for s in funnel["steps"]] == [0, 0]
    assert funnel["steps"][0]["conversion"] is None
    assert funnel["steps"][1]["timeFromPrevious"] == {"p50": None, "sessions": 0}


async def test_summary_by_hand(analytics: Analytics, rollups: Rollups) -> None:
    rollups.session(T0, ["start", "pay"], [0, 5], duration_ms=2000, messages=4, reason="paid")
    rollups.session(T0, ["start", "pay"], [0, 5], duration_ms=4000, messages=2, reason="paid")
    rollups.session(
        T0, ["start"], [0], status="expired", duration_ms=60000, messages=1, reason="idle"
    )
    rollups.session(T0, ["start"], [0], status="running")
    for tokens_in, tokens_out, cost in ((100, 20, 0.5), (50, 5, 0.25)):
        rollups.count("tokens_in", T0, n=tokens_in)
        rollups.count("tokens_out", T0, n=tokens_out)
        rollups.count("cost", T0, n=cost)
    await rollups.write()
    s = await analytics.summary(BOT, **DAY)
    assert (s["sessions"], s["active"]) == (4, 1)
    assert s["byStatus"]["completed"] == 2 and s["byStatus"]["expired"] == 1
    assert s["byReason"] == {"idle": 1, "paid": 2}
    assert s["completionRate"] == 2 / 3
    assert s["duration"]["mean"] == 22.0
    # nearest rank on 3 durations: p50 is the 2nd (4 s), p90 and p99 the 3rd (60 s)
    assert s["duration"]["p50"] == round(q(4000) / 1000, 3)
    assert s["duration"]["p90"] == s["duration"]["p99"] == round(q(60000) / 1000, 3)
    assert s["messages"] == {"mean": 7 / 3, "p50": 2, "p90": 4}
    assert s["nodes"] == {"mean": 5 / 3}
    assert s["tokens"] == {"input": 150, "output": 25} and s["cost"] == 0.75
    assert s["daily"] == [
        {"date": "2026-11-02", "started": 4, "completed": 2, "expired": 1, "stopped": 0}
    ]


async def test_nodes_by_hand(analytics: Analytics, rollups: Rollups) -> None:
    rollups.session(T0, ["start", "pay", "start", "pay"], [0, 1, 2, 3], duration_ms=10)
    rollups.session(T0, ["start", "pay"], [0, 1], status="stopped", duration_ms=10)
    rollups.session(T0, ["start", "ghost"], [0, 1], status="expired", duration_ms=10)
    rollups.session(T0, ["start"], [0], status="waiting_input")
    for ms in (10.0, 20.0, 30.0):
        rollups.sample("node.bot", T0, ms, "pay")
    rollups.sample("node.wait", T0, 5000.0, "pay")
    rollups.count("node.errors", T0, "pay", 2)
    await rollups.write()
    answer = await analytics.nodes(BOT, **DAY)
    assert answer["sessions"] == 4
    by_id = {n["nodeId"]: n for n in answer["nodes"]}
    assert list(by_id) == ["start", "pay", "ghost"]  # the flow's, then the others sorted
    start, pay, ghost = by_id["start"], by_id["pay"], by_id["ghost"]
    assert (start["sessions"], start["visits"]) == (4, 5)
    assert start["exits"] == {"completed": 0, "expired": 0, "stopped": 0, "active": 1}
    assert start["dropOffRate"] == 0.0
    assert (pay["sessions"], pay["visits"], pay["errors"]) == (2, 3, 2)
    assert pay["exits"] == {"completed": 1, "expired": 0, "stopped": 1, "active": 0}
    assert pay["dropOffRate"] == 0.5
    assert pay["botTime"] == {"p50": round(q(20), 2), "p90": round(q(30), 2)}
    assert pay["waitTime"] == {"p50": round(q(5000), 2), "p90": round(q(5000), 2)}
    assert (ghost["label"], ghost["type"], ghost["dropOffRate"]) == (None, None, 1.0)
    assert answer["edges"] == [
        # start went on in 3 sessions: to pay in 2, to ghost in 1
        {"source": "start", "target": "pay", "sessions": 2, "share": 2 / 3},
        {"source": "pay", "target": "start", "sessions": 1, "share": 1.0},
        {"source": "start", "target": "ghost", "sessions": 1, "share": 1 / 3},
    ]


async def test_paths_by_hand(analytics: Analytics, rollups: Rollups) -> None:
    for _ in range(3):
        rollups.session(T0, ["start", "pay"], [0, 1], duration_ms=1000)
    rollups.session(T0, ["start", "pay"], [0, 1], status="expired", duration_ms=9000)
    rollups.session(T0, ["start", "b"], [0, 1], duration_ms=500)
    rollups.session(T0, ["start", "a"], [0, 1], status="running")
    rollups.session(T0, ["start"], [0], status="running")
    rollups.session(T0, ["start"], [0], status="running")
    await rollups.write()
    answer = await analytics.paths(BOT, limit=3, **DAY)
    assert answer["sessions"] == 8
    assert answer["paths"] == [
        {
            "nodes": ["start", "pay"],
            "sessions": 4,
            "share": 0.5,
            "completionRate": 0.75,
            "duration": {"p50": round(q(1000) / 1000, 3)},
        },
        {
            "nodes": ["start"],
            "sessions": 2,
            "share": 0.25,
            "completionRate": None,
            "duration": {"p50": None},
        },
        # a tie at 1 session: ["start", "a"] sorts before ["start", "b"]
        {
            "nodes": ["start", "a"],
            "sessions": 1,
            "share": 0.125,
            "completionRate": None,
            "duration": {"p50": None},
        },
    ]
    one = await analytics.paths(BOT, limit=1, **DAY)
    assert [p["nodes"] for p in one["paths"]] == [["start", "pay"]]


async def test_funnel_by_hand(analytics: Analytics, rollups: Rollups) -> None:
    rollups.session(T0, ["start", "pay", "done"], [100, 1100, 4100], duration_ms=5000)
    rollups.session(T0, ["start", "x", "pay", "done"], [0, 10, 3000, 3500], duration_ms=5000)
    # pay before start does not count for the step after start; the later pay does
    rollups.session(T0, ["pay", "start", "x", "pay"], [0, 50, 60, 9050], status="running")
    rollups.session(T0, ["start"], [200], status="running")
    rollups.session(T0, ["x"], [0], status="running")
    rollups.session(T0, ["start", "pay"], [0, 100], version="v1", duration_ms=1)
    await rollups.write()
    answer = await analytics.funnel(BOT, steps=["start", "pay", "done"], **DAY)
    assert answer["sessions"] == 5
    s1, s2, s3 = answer["steps"]
    assert (s1["nodeId"], s1["label"], s1["sessions"]) == ("start", "Hello", 4)
    assert (s1["conversion"], s1["overall"]) == (0.8, 0.8)
    # from the session start: 100, 0, 50, 200 ms -> the 2nd smallest of 4 is 50
    assert s1["timeFromPrevious"] == {"p50": round(q(50) / 1000, 3), "sessions": 4}
    assert (s2["sessions"], s2["conversion"], s2["overall"]) == (3, 0.75, 0.6)
    # start -> pay: 1000, 3000, 9000 ms -> the 2nd of 3
    assert s2["timeFromPrevious"] == {"p50": round(q(3000) / 1000, 3), "sessions": 3}
    assert s2["label"] == "Pay"
    assert (s3["sessions"], s3["conversion"], s3["label"]) == (2, 2 / 3, None)
    # pay -> done: 3000, 500 -> the 1st of 2
    assert s3["timeFromPrevious"] == {"p50": round(q(500) / 1000, 3), "sessions": 2}
    repeated = await analytics.funnel(BOT, steps="start,start", version="all", **DAY)
    assert [s["sessions"] for s in repeated["steps"]] == [5, 0]


async def test_the_funnel_times_sample_the_newest_sessions(
    analytics: Analytics,
    rollups: Rollups,
    store: SQLAlchemyStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for minute, pay in ((0, 1000), (1, 3000), (2, 5000), (3, 7000)):
        at = T0 + timedelta(minutes=minute)
        rollups.session(at, ["start", "pay"], [0, pay], duration_ms=pay + 1)
    await rollups.write()
    key = path_key(["start", "pay"])
    args: dict[str, Any] = {
        "versions": {"v2"},
        "start": datetime(2026, 11, 2, tzinfo=UTC),
        "end": datetime(2026, 11, 3, tzinfo=UTC),
        "positions": {key: [0, 1]},
    }
    one = await store.analytics_step_times(BOT, sample=1, **args)
    assert one[1] == (7000, 1)  # the newest session's time
    two = await store.analytics_step_times(BOT, sample=2, **args)
    assert two[1] == (5000, 2)  # the median (the lower one) of the two newest: 5000, 7000
    every = await store.analytics_step_times(BOT, **args)
    assert every[1] == (3000, 4)
    monkeypatch.setattr("sessiontrack.analytics._service.FUNNEL_TIME_SAMPLE", 2)
    answer = await analytics.funnel(BOT, steps=["start", "pay"], **DAY)
    s1, s2 = answer["steps"]
    assert (s1["sessions"], s2["sessions"]) == (4, 4)  # the counts are every session's
    assert s1["timeFromPrevious"]["sessions"] == s2["timeFromPrevious"]["sessions"] == 2
    assert s2["timeFromPrevious"]["p50"] == round(q(5000) / 1000, 3)


# --- docs/analytics.md ----------------------------------------------------------------------


async def test_the_worked_example_prints_what_the_page_says(backend: str, tmp_path: Path) -> None:
    """The page's example, run as printed through a real tracker (both backends)."""
    page = ROOT / "docs" / "analytics.md"
    done = await run_documented_example(page, backend, tmp_path)
    assert done.stdout == printed_output(page)
