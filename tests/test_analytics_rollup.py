"""Analytics rollups (the write side): what the writer keeps in each batch's transaction
equals what a replay of the whole log builds, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy
import pytest
import sqlalchemy as sa
from alembic import command

import sessiontrack
from sessiontrack.analytics._rebuild import rebuild
from sessiontrack.analytics._rollup import (
    _HANDLERS,
    EMPTY_PATH_KEY,
    MAX_PATH,
    SEP,
    Rollup,
    day_of,
    path_key,
    quarter_of,
)
from sessiontrack.analytics._sketch import ZERO_BIN, bin_of, percentile, value_of
from sessiontrack.limits import TIME_MAX, TIME_MIN
from sessiontrack.store import SQLAlchemyStore, _migrate

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 11, 2, 9, 7, 30, tzinfo=UTC)
Rows = dict[str, list[tuple[Any, ...]]]


def flow(n: int, version: str) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "data": {"label": f"Step {i}"}} for i in range(n)]
    edges = [{"id": f"e{i}", "source": f"n{i}", "target": f"n{i + 1}"} for i in range(n - 1)]
    return {"nodes": nodes, "edges": edges, "version": version}


def register(pm: pluggy.PluginManager, bot: str, version: str) -> None:
    pm.hook.sessiontrack_flow_registered(
        chatbot_id=bot, name=bot.title(), flow=flow(6, version), version=version
    )


def start(pm: pluggy.PluginManager, bot: str, at: datetime) -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id=bot, at=at)
    return sid


async def dump(store: SQLAlchemyStore) -> Rows:
    """Every rollup table's rows, sorted (counts and bins that add up to zero left out:
    a row may reach 0 after a move across batches, where a replay never wrote it)."""
    t = store.tables
    out: Rows = {}
    async with store.engine.connect() as conn:
        for table, value in (
            (t.an_counts, "value"),
            (t.an_bins, "n"),
            (t.an_paths, None),
            (t.an_traces, None),
        ):
            rows = [tuple(r) for r in await conn.execute(sa.select(table))]
            if value is not None:
                i = list(table.c.keys()).index(value)
                rows = [r for r in rows if r[i] != 0]
            out[table.name.removeprefix(t.prefix)] = sorted(rows, key=repr)
    return out


def assert_same(live: Rows, rebuilt: Rows) -> None:
    assert live.keys() == rebuilt.keys()
    for name in live:
        a, b = live[name], rebuilt[name]
        assert [r[:-1] for r in a] == [r[:-1] for r in b], name
        for x, y in zip(a, b, strict=True):
            if isinstance(x[-1], float):  # sums of floats in another order
                assert math.isclose(x[-1], y[-1], rel_tol=1e-9, abs_tol=1e-9), (name, x, y)
            else:
                assert x[-1] == y[-1], (name, x, y)


def counts(rows: Rows, metric: str, grain: int = 0) -> dict[tuple[int, str, str], float]:
    """``(bucket, version, dim) → value`` of a metric's count rows at ``grain``."""
    return {(r[3], r[4], r[5]): r[6] for r in rows["an_counts"] if r[1] == metric and r[2] == grain}


def total(rows: Rows, metric: str, grain: int = 0) -> float:
    return sum(r[6] for r in rows["an_counts"] if r[1] == metric and r[2] == grain)


def bins(rows: Rows, metric: str, dim: str = "", grain: int = 0) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in rows["an_bins"]:
        if r[1] == metric and r[2] == grain and r[5] == dim:
            out[r[6]] = out.get(r[6], 0) + r[7]
    return out


def workload(pm: pluggy.PluginManager, rng: random.Random, n: int, base: datetime) -> None:
    """Sessions of two bots and two versions that wander the flow (loops, errors, waits,
    LLM calls), end in every way or stay active; reported in interleaved order."""
    scripts = []
    for i in range(n):
        bot = f"bot{i % 2}"
        at = base + timedelta(minutes=rng.randrange(0, 60 * 30), seconds=rng.random())
        sid = start(pm, bot, at)
        steps: list[tuple[str, dict[str, Any]]] = []
        node = 0
        for _ in range(rng.randrange(0, 9)):
            at += timedelta(milliseconds=rng.randrange(1, 5000))
            node = max(0, min(5, node + rng.choice((-1, 1, 1, 0))))
            error = "boom" if rng.random() < 0.1 else None
            steps.append(("node_executed", {"node_id": f"n{node}", "error": error, "at": at}))
            if rng.random() < 0.4:
                at += timedelta(milliseconds=rng.randrange(0, 800))
                steps.append(("status_changed", {"status": "waiting_input", "at": at}))
                if rng.random() < 0.7:
                    at += timedelta(milliseconds=rng.randrange(0, 9000))
                    steps.append(("message", {"direction": "inbound", "text": "hi", "at": at}))
                    steps.append(("status_changed", {"status": "running", "at": at}))
            if rng.random() < 0.3:
                steps.append(
                    (
                        "llm_call",
                        {"model": "m", "input_tokens": 10, "output_tokens": 3, "cost": 0.001},
                    )
                )
            steps.append(("message", {"direction": "outbound", "text": "q", "at": at}))
        end = rng.random()
        at += timedelta(seconds=rng.randrange(1, 30))
        if end < 0.5:
            steps.append(("session_completed", {"reason": "done" if end < 0.3 else None}))
            if rng.random() < 0.3:  # the goodbye node, in the grace window
                steps.append(("node_executed", {"node_id": "n5", "at": at + timedelta(seconds=1)}))
                steps.append(
                    ("message", {"direction": "outbound", "text": "bye", "at": at}),
                )
        elif end < 0.65:
            steps.append(("session_completed", {"status": "expired", "reason": "idle"}))
        elif end < 0.75:
            steps.append(("session_completed", {"status": "stopped"}))
        for kind, kw in steps:
            kw.setdefault("at", at)
            if kind == "session_completed":
                kw["at"] = at
        scripts.append((sid, steps))
    while scripts:
        i = rng.randrange(len(scripts))
        sid, steps = scripts[i]
        if not steps:
            scripts.pop(i)
            continue
        kind, kw = steps.pop(0)
        getattr(pm.hook, f"sessiontrack_{kind}")(session_id=sid, **kw)


async def ingest(tracker: sessiontrack.Tracker, rng: random.Random, rounds: int = 3) -> None:
    pm = tracker.plugin_manager
    register(pm, "bot0", "v1")
    register(pm, "bot1", "v1")
    for r in range(rounds):
        if r == 1:
            register(pm, "bot0", "v2")  # later sessions of bot0 run v2
        workload(pm, rng, 40, T0 + timedelta(hours=r))
        await tracker.flush()  # sessions span batches: their traces go back and forth


def tracker_for(url: str, prefix: str, **kw: Any) -> sessiontrack.Tracker:
    return sessiontrack.Tracker(
        url, prefix=prefix, migrate=True, sweep_interval=None, commit_delay=0.0, **kw
    )


async def test_live_rollups_equal_a_rebuild_from_the_log(database_url: str, prefix: str) -> None:
    async with tracker_for(database_url, prefix, max_batch=97) as tracker:
        await ingest(tracker, random.Random(12))
        store = tracker.store
        assert isinstance(store, SQLAlchemyStore)
        live = await dump(store)
        seen: list[tuple[int, int]] = []
        replayed = await rebuild(store, chunk=50, progress=lambda d, t: seen.append((d, t)))
        rebuilt = await dump(store)
    assert replayed == seen[-1][0] == seen[-1][1] and len(seen) > 3
    assert_same(live, rebuilt)
    # the figures hang together: every started session has one current status and path
    assert total(live, "status") == 120 == len(live["an_traces"])
    assert total(live, "path") == total(live, "status", grain=1) == 120
    ended = sum(1 for r in live["an_traces"] if r[4] in ("completed", "expired", "stopped"))
    assert total(live, "path.ended") == ended == sum(bins(live, "duration").values())
    versions = {(r[0], r[4]) for r in live["an_counts"] if r[1] == "status"}
    assert versions == {("bot0", "v1"), ("bot0", "v2"), ("bot1", "v1")}
    path_keys = {(r[0], r[1]) for r in live["an_paths"]}
    assert {(r[0], r[5]) for r in live["an_counts"] if r[1] == "path"} <= path_keys
    assert {(r[1], r[5]) for r in live["an_traces"]} <= path_keys


async def test_one_session_in_detail(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    sid = start(pm, "bot", T0)
    s = timedelta(seconds=1)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="a", at=T0 + s)
    pm.hook.sessiontrack_status_changed(session_id=sid, status="waiting_input", at=T0 + 1.5 * s)
    await tracker.flush()  # the wait is open across batches
    pm.hook.sessiontrack_message(session_id=sid, direction="inbound", text="x", at=T0 + 4 * s)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="b", at=T0 + 5 * s, error="e")
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="b", at=T0 + 5.25 * s)
    pm.hook.sessiontrack_session_completed(session_id=sid, reason="done", at=T0 + 6 * s)
    await tracker.flush()
    assert isinstance(tracker.store, SQLAlchemyStore)
    rows = await dump(tracker.store)
    q, day = quarter_of(T0), day_of(quarter_of(T0))
    assert q == int(datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp())
    for grain, bucket in ((0, q), (1, day)):
        assert counts(rows, "status", grain) == {(bucket, "", "completed"): 1}
        assert counts(rows, "reason", grain) == {(bucket, "", "completed" + SEP + "done"): 1}
        assert counts(rows, "node.visits", grain) == {(bucket, "", "a"): 1, (bucket, "", "b"): 2}
        assert counts(rows, "node.errors", grain) == {(bucket, "", "b"): 1}
        assert counts(rows, "node.sessions", grain) == {(bucket, "", "a"): 1, (bucket, "", "b"): 1}
        assert counts(rows, "node.onward", grain) == {(bucket, "", "a"): 1, (bucket, "", "b"): 1}
        assert counts(rows, "edge", grain) == {
            (bucket, "", "a" + SEP + "b"): 1,
            (bucket, "", "b" + SEP + "b"): 1,
        }
        assert counts(rows, "node.exit", grain) == {(bucket, "", "b" + SEP + "completed"): 1}
        key = path_key(["a", "b", "b"])
        for metric in ("path", "path.ended", "path.completed"):
            assert counts(rows, metric, grain) == {(bucket, "", key): 1}
        assert counts(rows, "ended_duration_ms", grain) == {(bucket, "", ""): 6000.0}
        assert counts(rows, "ended_messages", grain) == {(bucket, "", ""): 1}
        assert counts(rows, "ended_nodes", grain) == {(bucket, "", ""): 3}
    # a: open 1 s, waiting 1.5 → 4 s (2.5 s), closed at 5 s; b: 250 ms, then 750 ms
    assert bins(rows, "node.wait", "a") == {bin_of(2500): 1}
    assert bins(rows, "node.bot", "a") == {bin_of(1500): 1}
    assert bins(rows, "node.bot", "b") == {bin_of(250): 1, bin_of(750): 1}
    assert bins(rows, "node.wait", "b") == {}
    assert bins(rows, "duration") == {bin_of(6000): 1}
    assert bins(rows, "messages") == {1: 1}
    assert bins(rows, "path.duration", path_key(["a", "b", "b"])) == {bin_of(6000): 1}
    (trace,) = rows["an_traces"]
    assert trace[4:6] == ("completed", path_key(["a", "b", "b"]))
    assert trace[6]["p"] == ["a", "b", "b"] and trace[6]["t"] == [1000.0, 5000.0, 5250.0]


def test_sketch() -> None:
    for ms in (0.01, 0.5, 1, 7.3, 250, 1e3, 12345.678, 3.6e6, 1e12):
        assert abs(value_of(bin_of(ms)) - ms) <= 0.02 * ms * (1 + 1e-9)  # an edge: exactly 2 %
    assert bin_of(0) == bin_of(0.009) == bin_of(-5) == ZERO_BIN and value_of(ZERO_BIN) == 0.0
    values = [5, 1, 9, 3, 7, 100, 0]
    b: dict[int, int] = {}
    for v in values:
        b[bin_of(v)] = b.get(bin_of(v), 0) + 1
    ordered = sorted(values)
    for q in (0.01, 0.5, 0.9, 0.99, 1.0):
        exact = ordered[max(1, math.ceil(q * len(values))) - 1]
        assert percentile(b, q) == value_of(bin_of(exact))
    assert percentile({}, 0.5) is None
    assert percentile({3: 2, 10: 1}, 0.9, exact=True) == 10.0
    # 0.07 * 100 is 7.000000000000001 in binary: the rank stays 7
    hundred = {i: 1 for i in range(1, 101)}
    assert percentile(hundred, 0.07, exact=True) == 7.0


async def test_upgrading_a_0004_database_builds_the_rollups(database_url: str, prefix: str) -> None:
    async with tracker_for(database_url, prefix) as tracker:
        await ingest(tracker, random.Random(3), rounds=2)
        assert isinstance(tracker.store, SQLAlchemyStore)
        live = await dump(tracker.store)
        engine = tracker.store.engine
        async with engine.begin() as conn:  # back to 0004: the log, without analytics
            await conn.run_sync(lambda c: command.downgrade(_migrate._config(c, prefix), "0004"))
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert not [n for n in names if n.startswith(f"{prefix}an_")]
            await conn.run_sync(_migrate.upgrade, prefix)
            assert await conn.run_sync(_migrate.current, prefix) == _migrate.HEAD
        assert_same(live, await dump(tracker.store))


async def test_analytics_off_writes_no_rollups(database_url: str, prefix: str) -> None:
    async with tracker_for(database_url, prefix, analytics=False) as tracker:
        await ingest(tracker, random.Random(5), rounds=1)
        store = tracker.store
        assert isinstance(store, SQLAlchemyStore) and store.analytics is False
        assert all(rows == [] for rows in (await dump(store)).values())
        await rebuild(store)
        rebuilt = await dump(store)
    assert len(rebuilt["an_traces"]) == 40
    async with tracker_for(database_url, prefix) as tracker:  # on again: the log replayed
        assert isinstance(tracker.store, SQLAlchemyStore)
        await rebuild(tracker.store)
        assert_same(rebuilt, await dump(tracker.store))


async def test_purge_removes_traces_and_keeps_the_figures(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    now = datetime.now(UTC)
    old = [start(pm, "bot", now - timedelta(days=40)) for _ in range(3)]
    for sid in old:
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id="a", at=now - timedelta(days=40))
        pm.hook.sessiontrack_session_completed(session_id=sid, at=now - timedelta(days=39))
    active = start(pm, "bot", now)
    await tracker.flush()
    assert isinstance(tracker.store, SQLAlchemyStore)
    before = await dump(tracker.store)
    assert len(before["an_traces"]) == 4
    assert await tracker.purge(timedelta(days=30)) == 3
    after = await dump(tracker.store)
    assert [r[0] for r in after["an_traces"]] == [active]
    assert after["an_counts"] == before["an_counts"]


async def test_hostile_input_never_breaks_a_batch(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    odd = ["a\x1fb", "ünï\u2603", "x" * 200, " ", "quote\"'\\", "\x1f"]
    loop = start(pm, "bot\x1f☃", T0)
    for i in range(3 * MAX_PATH):
        pm.hook.sessiontrack_node_executed(session_id=loop, node_id=odd[i % len(odd)])
    weird = start(pm, "bot", TIME_MIN)  # clocks all over the place
    pm.hook.sessiontrack_node_executed(session_id=weird, node_id="a", at=TIME_MAX - timedelta(1))
    pm.hook.sessiontrack_status_changed(session_id=weird, status="waiting_input", at=TIME_MIN)
    pm.hook.sessiontrack_node_executed(session_id=weird, node_id="b", at=TIME_MIN)
    pm.hook.sessiontrack_session_completed(session_id=weird, at=TIME_MAX - timedelta(1))
    late = start(pm, "bot", T0)
    pm.hook.sessiontrack_node_executed(session_id=late, node_id="a", at=T0)
    pm.hook.sessiontrack_session_completed(session_id=late, at=T0 + timedelta(seconds=2))
    await tracker.flush()  # the grace window's reports come in another batch
    pm.hook.sessiontrack_node_executed(session_id=late, node_id="bye", at=T0 + timedelta(seconds=3))
    pm.hook.sessiontrack_message(
        session_id=late, direction="outbound", text="bye", at=T0 + timedelta(seconds=3)
    )
    past = start(pm, "bot", T0 - timedelta(days=3000))
    pm.hook.sessiontrack_node_executed(session_id=past, node_id="a", at=T0)
    await tracker.flush()
    assert tracker.stats.committed == tracker.stats.enqueued
    store = tracker.store
    assert isinstance(store, SQLAlchemyStore)
    live = await dump(store)
    traces = {r[0]: r for r in live["an_traces"]}
    assert set(traces) == {loop, weird, late, past}
    state = traces[loop][6]
    assert len(state["p"]) == len(state["t"]) == MAX_PATH and state["x"] is True
    assert traces[loop][5].endswith("+") and set(state["vs"]) == set(odd)
    assert state["l"] == odd[(3 * MAX_PATH - 1) % len(odd)]
    assert traces[late][6]["p"] == ["a", "bye"]  # the goodbye node is the last one
    exits = counts(live, "node.exit")
    bucket = quarter_of(T0)
    assert exits[(bucket, "", "bye" + SEP + "completed")] == 1
    assert exits.get((bucket, "", "a" + SEP + "completed"), 0) == 0
    assert counts(live, "ended_messages")[(bucket, "", "")] == 1
    assert bins(live, "messages") == {0: 1, 1: 1}  # weird: none; late: its goodbye
    await rebuild(store)
    assert_same(live, await dump(store))


async def test_hostile_node_ids_in_the_answers(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    """Node ids holding the dims' separator, backslashes, commas or spaces come back whole
    from ``nodes()`` (exits and edges) and ``paths()``, live and after a rebuild."""
    odd = ["a\x1fb", "\x1f", "back\\slash", "\\", "\\f", "a,b", " sp ace ", "\\\x1f"]
    register(pm, "hostile", "v1")
    sid = start(pm, "hostile", T0)
    for node in odd:
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id=node, at=T0)
    pm.hook.sessiontrack_session_completed(session_id=sid, at=T0 + timedelta(seconds=5))
    await tracker.flush()
    store = tracker.store
    assert isinstance(store, SQLAlchemyStore)
    kwargs: dict[str, Any] = {
        "version": "all",
        "start_date": "2026-11-02",
        "end_date": "2026-11-02",
    }
    edges = [{"source": a, "target": b} for a, b in itertools.pairwise(odd)]

    async def check() -> None:
        nodes = await tracker.analytics.nodes("hostile", **kwargs)
        by_id = {n["nodeId"]: n for n in nodes["nodes"]}
        assert set(odd) <= set(by_id)
        assert by_id[odd[-1]]["exits"]["completed"] == 1
        assert all(by_id[n]["exits"]["completed"] == 0 for n in odd[:-1])
        got = [{"source": e["source"], "target": e["target"]} for e in nodes["edges"]]
        assert sorted(got, key=str) == sorted(edges, key=str)
        paths = await tracker.analytics.paths("hostile", **kwargs)
        assert [p["nodes"] for p in paths["paths"]] == [odd]

    await check()
    live = await dump(store)
    await rebuild(store)
    assert_same(live, await dump(store))
    await check()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sessiontrack.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


async def test_cli_rebuild_with_progress_on_stderr(database_url: str, prefix: str) -> None:
    async with tracker_for(database_url, prefix) as tracker:
        await ingest(tracker, random.Random(8), rounds=1)
        assert isinstance(tracker.store, SQLAlchemyStore)
        live = await dump(tracker.store)
        events = await tracker.store.last_seq()
    done = cli("analytics", "rebuild", "--database-url", database_url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    assert f"analytics rebuilt from {events} events" in done.stdout
    assert f"analytics: {events} of {events} events" in done.stderr
    async with tracker_for(database_url, prefix) as tracker:
        assert isinstance(tracker.store, SQLAlchemyStore)
        assert_same(live, await dump(tracker.store))


async def test_a_failing_rollup_costs_the_batch_only_its_rollups(
    tracker: sessiontrack.Tracker,
    pm: pluggy.PluginManager,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(self: Rollup, tr: Any, e: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setitem(_HANDLERS, "node_executed", broken)
    sid = start(pm, "bot", T0)
    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="a", at=T0)
    await tracker.flush()
    assert (await tracker.sessions.get(sid)).node_count == 1
    assert "analytics rebuild" in caplog.text
    assert isinstance(tracker.store, SQLAlchemyStore)
    assert all(rows == [] for rows in (await dump(tracker.store)).values())
    monkeypatch.undo()
    await rebuild(tracker.store)
    assert len((await dump(tracker.store))["an_traces"]) == 1


async def test_a_repeated_waiting_input_opens_another_wait(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    sid = start(pm, "bot", T0)
    for s, hook, kw in [
        (0, "node_executed", {"node_id": "ask"}),
        (1, "status_changed", {"status": "waiting_input"}),
        (3, "message", {"direction": "inbound", "text": "x"}),
        (4, "status_changed", {"status": "waiting_input"}),  # asked again, no running between
        (10, "message", {"direction": "inbound", "text": "y"}),
        (11, "node_executed", {"node_id": "next"}),
    ]:
        getattr(pm.hook, f"sessiontrack_{hook}")(session_id=sid, at=T0 + timedelta(seconds=s), **kw)
        await tracker.flush()  # each in its own batch: the state goes through the table
    assert isinstance(tracker.store, SQLAlchemyStore)
    rows = await dump(tracker.store)
    assert bins(rows, "node.wait", "ask") == {bin_of(8000): 1}
    assert bins(rows, "node.bot", "ask") == {bin_of(3000): 1}


async def test_a_chatbot_without_a_flow_answers_its_unversioned_sessions(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    """No flow registered (no chatbots row): the chatbot is known by its sessions, its
    default version is the sessions without a flow version (``"version": null``)."""
    for i, path in enumerate([["a", "b"], ["a", "b"], ["a"]]):
        sid = start(pm, "noflow", T0 + timedelta(minutes=i))
        for node in path:
            pm.hook.sessiontrack_node_executed(session_id=sid, node_id=node, at=T0)
        if i < 2:
            pm.hook.sessiontrack_session_completed(session_id=sid, at=T0 + timedelta(seconds=9))
    await tracker.flush()
    analytics = tracker.analytics
    day = {"start_date": "2026-11-02", "end_date": "2026-11-02"}
    for version in (None, "all"):
        kwargs: dict[str, Any] = {"version": version, **day}
        summary = await analytics.summary("noflow", **kwargs)
        assert summary["version"] == (version or None)
        assert summary["sessions"] == 3 and summary["byStatus"]["completed"] == 2
        nodes = await analytics.nodes("noflow", **kwargs)
        assert nodes["flowData"] == {"nodes": [], "edges": []}
        assert {n["nodeId"]: n["sessions"] for n in nodes["nodes"]} == {"a": 3, "b": 2}
        assert [(e["source"], e["target"], e["sessions"]) for e in nodes["edges"]] == [
            ("a", "b", 2)
        ]
        paths = await analytics.paths("noflow", **kwargs)
        assert [(p["nodes"], p["sessions"]) for p in paths["paths"]] == [
            (["a", "b"], 2),
            (["a"], 1),
        ]
        funnel = await analytics.funnel("noflow", steps="a,b", **kwargs)
        assert [s["sessions"] for s in funnel["steps"]] == [3, 2]
        assert funnel["steps"][1]["timeFromPrevious"]["sessions"] == 2
    assert (await analytics.summary("noflow", version="v1", **day))["sessions"] == 0
    versions = await analytics.versions("noflow")
    assert versions == {
        "chatbotId": "noflow",
        "current": None,
        "versions": [{"version": None, "registeredAt": None, "sessions": 3}],
    }
    with pytest.raises(sessiontrack.SessionNotFound):
        await analytics.summary("nobody", **day)
    with pytest.raises(sessiontrack.SessionNotFound):
        await analytics.versions("nobody")


async def test_a_refused_rollup_row_costs_the_batch_its_rollups_not_its_events(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager, caplog: pytest.LogCaptureFixture
) -> None:
    store = tracker.store
    assert isinstance(store, SQLAlchemyStore)
    table = store.tables.an_counts.name
    if store.dialect == "postgresql":
        ddl = [
            f'CREATE FUNCTION "{table}_refuse"() RETURNS trigger LANGUAGE plpgsql AS $$ '
            "BEGIN RAISE EXCEPTION 'refused'; END $$",
            f'CREATE TRIGGER "{table}_refuse" BEFORE INSERT ON "{table}" FOR EACH ROW '
            f"WHEN (NEW.chatbot_id = 'refused') EXECUTE FUNCTION \"{table}_refuse\"()",
        ]
        undo = [f'DROP TRIGGER "{table}_refuse" ON "{table}"', f'DROP FUNCTION "{table}_refuse"']
    else:
        ddl = [
            f'CREATE TRIGGER "{table}_refuse" BEFORE INSERT ON "{table}" '
            "WHEN NEW.chatbot_id = 'refused' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
        undo = [f'DROP TRIGGER "{table}_refuse"']
    async with store.engine.begin() as conn:
        for sql in ddl:
            await conn.exec_driver_sql(sql)
    refused = start(pm, "refused", T0)
    pm.hook.sessiontrack_node_executed(session_id=refused, node_id="a", at=T0)
    with caplog.at_level("ERROR", logger="sessiontrack.store.sqlalchemy"):
        await tracker.flush()
    assert tracker.stats.committed == tracker.stats.enqueued
    assert "run 'sessiontrack analytics rebuild'" in caplog.text
    session = await tracker.sessions.get(refused)
    assert session.chatbot_id == "refused"
    live = await dump(store)
    assert not [r for r in live["an_counts"] if r[0] == "refused"]
    fine = start(pm, "bot", T0)  # the next batch has its rollups again
    pm.hook.sessiontrack_node_executed(session_id=fine, node_id="a", at=T0)
    await tracker.flush()
    assert counts(await dump(store), "node.visits")[(quarter_of(T0), "", "a")] == 1
    async with store.engine.begin() as conn:
        for sql in undo:
            await conn.exec_driver_sql(sql)
    await rebuild(store)
    assert [r for r in (await dump(store))["an_counts"] if r[0] == "refused"]


async def test_a_path_row_committed_once_is_not_written_again_until_a_rebuild(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    store = tracker.store
    assert isinstance(store, SQLAlchemyStore)
    paths = store.tables.an_paths

    async def session() -> None:
        sid = start(pm, "bot", T0)
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id="a", at=T0)
        await tracker.flush()

    async def stored() -> set[str]:
        async with store.engine.connect() as conn:
            return set((await conn.execute(sa.select(paths.c.path_key))).scalars())

    async def forget() -> None:  # as if the rows were never there: only a write shows
        async with store.engine.begin() as conn:
            await conn.execute(paths.delete())

    await session()
    assert await stored() == {EMPTY_PATH_KEY, path_key(["a"])}
    await forget()
    await session()  # the same paths: nothing to insert
    assert await stored() == set()
    await rebuild(store)
    assert await stored() == {EMPTY_PATH_KEY, path_key(["a"])}
    await forget()
    await session()  # after a rebuild (its row in state), the writer inserts them again
    assert await stored() == {EMPTY_PATH_KEY, path_key(["a"])}
    assert (await tracker.analytics.paths("bot", version="all", start_date="2026-11-02"))["paths"][
        0
    ]["nodes"] == ["a"]
