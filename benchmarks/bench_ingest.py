"""Ingestion benchmark: hook-call cost, durable throughput, naive baseline, bounded memory.

Many concurrent sessions are reported through ``pm.hook`` calls into a running Tracker, on
SQLite (a file) and PostgreSQL, and measured until durable (``await tracker.flush()``).
The same workload is written the naive way (one INSERT and COMMIT per event with
SQLAlchemy) in the same run. Durable throughput is measured with the analytics rollups
on (the default) and off, run after run alternately, and their ratio reported. See
benchmarks/README.md and docs/benchmarks.md.

    python benchmarks/bench_ingest.py                      # both backends, about 100 seconds
    python benchmarks/bench_ingest.py --backends sqlite --repeat 1
    python benchmarks/bench_ingest.py --parts throughput --repeat 2   # on vs off only
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pluggy
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_DIR,
    POSTGRES_URL,
    machine,
    median,
    percentile,
    postgres_version,
    print_machine,
    print_table,
    progress,
    progress_done,
    verdict,
    write_json,
)

import sessiontrack
from sessiontrack import redact
from sessiontrack.store import make_tables

PREFIX = "bench_ingest_"
Call = tuple[str, dict[str, Any]]
CHATBOTS = [f"bot-{i}" for i in range(8)]
FIRST = ["Ann", "Bob", "Chen", "Dana", "Eve", "Femi", "Gus", "Hana", "Ivan", "José", "Kai", "Lea"]
LAST = ["Lee", "Smith", "Okafor", "García", "Müller", "Nguyen", "Rossi", "Kowalski", "Silva"]

# --- the workload -------------------------------------------------------------------------


def flows() -> list[dict[str, Any]]:
    out = []
    for bot in CHATBOTS:
        nodes = [
            {
                "id": f"n{i}",
                "type": "message",
                "position": {"x": 0, "y": 80 * i},
                "data": {"label": f"Step {i}"},
            }
            for i in range(12)
        ]
        edges = [{"id": f"e{i}", "source": f"n{i}", "target": f"n{i + 1}"} for i in range(11)]
        out.append(
            {"chatbot_id": bot, "name": bot.title(), "flow": {"nodes": nodes, "edges": edges}}
        )
    return out


def session_script(rng: random.Random) -> list[Call]:
    """One session: a start, 10 nodes, 10 messages (inbound ones carry the channel's
    message id), 4 status changes and a completion — 26 reports."""
    sid = sessiontrack.new_session_id()
    phone = f"+1555{rng.randrange(10**7):07d}"
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    calls: list[Call] = [
        (
            "sessiontrack_session_started",
            {
                "session_id": sid,
                "chatbot_id": rng.choice(CHATBOTS),
                "conversation_id": phone,
                "contact": {"phone": phone, "name": name},
                "variables": {"lang": "en", "channel": "wa"},
            },
        )
    ]
    for i in range(10):
        node = f"n{i}"
        calls.append(
            (
                "sessiontrack_node_executed",
                {
                    "session_id": sid,
                    "node_id": node,
                    "node_type": "message",
                    "duration_ms": round(rng.uniform(0.2, 30.0), 2),
                },
            )
        )
        if i % 2 == 0:
            calls.append(
                (
                    "sessiontrack_message",
                    {
                        "session_id": sid,
                        "direction": "outbound",
                        "text": f"Question {i} for {name}?",
                        "node_id": node,
                    },
                )
            )
        else:
            calls.append(
                (
                    "sessiontrack_message",
                    {
                        "session_id": sid,
                        "direction": "inbound",
                        "text": f"answer {rng.random():.6f}",
                        "message_id": f"wamid.{rng.getrandbits(64):016x}",
                    },
                )
            )
        if i in (3, 7):
            calls.append(
                (
                    "sessiontrack_status_changed",
                    {"session_id": sid, "status": "waiting_input", "node_id": node},
                )
            )
            calls.append(("sessiontrack_status_changed", {"session_id": sid, "status": "running"}))
    calls.append(("sessiontrack_session_completed", {"session_id": sid, "reason": "flow_end"}))
    return calls


def workload(n_sessions: int, concurrency: int, seed: int) -> Iterator[Call]:
    """Reports of ``n_sessions`` sessions, ``concurrency`` of them in progress at once,
    interleaved round-robin (each session's own reports stay in order)."""
    rng = random.Random(seed)
    started = 0
    active: list[Iterator[Call]] = []
    while started < n_sessions or active:
        while len(active) < concurrency and started < n_sessions:
            active.append(iter(session_script(rng)))
            started += 1
        still = []
        for script in active:
            call = next(script, None)
            if call is not None:
                yield call
                still.append(script)
        active = still


# --- helpers ------------------------------------------------------------------------------


class NoOp:
    """A plugin whose hookimpls take the same arguments as the tracker's and do nothing:
    the bare cost of a pluggy call."""

    @sessiontrack.hookimpl
    def sessiontrack_session_started(
        self,
        session_id: Any,
        chatbot_id: Any,
        conversation_id: Any,
        contact: Any,
        variables: Any,
        metadata: Any,
        at: Any,
        expires_at: Any,
    ) -> None:
        pass

    @sessiontrack.hookimpl
    def sessiontrack_node_executed(
        self,
        session_id: Any,
        node_id: Any,
        node_type: Any,
        label: Any,
        at: Any,
        duration_ms: Any,
        error: Any,
    ) -> None:
        pass

    @sessiontrack.hookimpl
    def sessiontrack_message(
        self,
        session_id: Any,
        direction: Any,
        type: Any,
        text: Any,
        payload: Any,
        node_id: Any,
        message_id: Any,
        at: Any,
    ) -> None:
        pass

    @sessiontrack.hookimpl
    def sessiontrack_status_changed(
        self, session_id: Any, status: Any, node_id: Any, reason: Any, at: Any
    ) -> None:
        pass

    @sessiontrack.hookimpl
    def sessiontrack_session_completed(
        self, session_id: Any, status: Any, reason: Any, at: Any
    ) -> None:
        pass


def noop_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    pm.register(NoOp())
    return pm


def hooks_of(pm: pluggy.PluginManager) -> dict[str, Callable[..., Any]]:
    names = [
        "sessiontrack_session_started",
        "sessiontrack_node_executed",
        "sessiontrack_message",
        "sessiontrack_status_changed",
        "sessiontrack_session_completed",
        "sessiontrack_flow_registered",
    ]
    return {n: getattr(pm.hook, n) for n in names}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def sqlite_url() -> str:
    DATA_DIR.mkdir(exist_ok=True)
    path = DATA_DIR / "ingest.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


async def drop_tables(url: str, prefix: str) -> None:
    if not url.startswith("postgresql"):
        return
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(make_tables(prefix).metadata.drop_all)
            await conn.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}alembic_version"))
            await conn.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}naive_events"))
    finally:
        await engine.dispose()


def fresh_url(backend: str, pg_url: str) -> str:
    return sqlite_url() if backend == "sqlite" else pg_url


async def new_tracker(url: str, **kwargs: Any) -> tuple[sessiontrack.Tracker, pluggy.PluginManager]:
    await drop_tables(url, PREFIX)
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    tracker = sessiontrack.Tracker(
        url, plugin_manager=pm, prefix=PREFIX, migrate=True, sweep_interval=None, **kwargs
    )
    await tracker.start()
    for f in flows():
        pm.hook.sessiontrack_flow_registered(**f)
    await tracker.flush()
    return tracker, pm


# --- the measurements ---------------------------------------------------------------------


async def hook_cost(url: str, calls: list[Call], chunk: int = 520) -> dict[str, Any]:
    """Time each call on a no-op plugin manager and on the tracker, chunk by chunk
    alternately, with the writer idle during both (flush between chunks)."""
    tracker, pm = await new_tracker(url)
    bare, tracked = hooks_of(noop_manager()), hooks_of(pm)
    clock = time.perf_counter_ns
    t_bare: list[int] = []
    t_tracked: list[int] = []
    per_hook: dict[str, list[int]] = {}
    try:
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            for name, kw in part:
                h = bare[name]
                t0 = clock()
                h(**kw)
                t_bare.append(clock() - t0)
            for name, kw in part:
                h = tracked[name]
                t0 = clock()
                h(**kw)
                dt = clock() - t0
                t_tracked.append(dt)
                per_hook.setdefault(name, []).append(dt)
            await tracker.flush()
    finally:
        await tracker.aclose()
    us = 1000.0
    return {
        "bare_median_us": median(t_bare) / us,
        "bare_p99_us": percentile(t_bare, 99) / us,
        "tracker_median_us": median(t_tracked) / us,
        "tracker_p99_us": percentile(t_tracked, 99) / us,
        "per_hook_median_us": {
            k.removeprefix("sessiontrack_"): median(v) / us for k, v in per_hook.items()
        },
        "calls": len(t_tracked),
    }


async def throughput(
    url: str, calls: list[Call], high_water: int, *, analytics: bool = True, **options: Any
) -> dict[str, Any]:
    """Report every call, yielding to the loop every 100 calls (as an engine serving many
    conversations does) and awaiting ``tracker.drain()`` there (back-pressure: it waits
    while more than ``high_water`` reports are buffered, until a quarter of that is left);
    measured until the final ``flush()`` returns. ``analytics`` is the tracker's option:
    keep the analytics rollups in each batch's transaction, or not; ``options`` go to
    the tracker too (``redact=``)."""
    tracker, pm = await new_tracker(url, high_water=high_water, analytics=analytics, **options)
    hooks = hooks_of(pm)
    stats = tracker.stats
    try:
        before = stats.events_stored
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for i, (name, kw) in enumerate(calls):
            hooks[name](**kw)
            if not i % 100:
                await asyncio.sleep(0)
                await tracker.drain()
        await tracker.flush()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        stored = stats.events_stored - before
        batches = stats.batches
        problems = stats.duplicates + stats.orphans + stats.late + stats.failed
    finally:
        await tracker.aclose()
    if stored != len(calls) or problems:
        raise RuntimeError(f"stored {stored} of {len(calls)} reports ({stats})")
    return {
        "events": stored,
        "seconds": elapsed,
        "events_per_s": stored / elapsed,
        "batches": batches,
        # this process's CPU (the engine's calls, the writer, SQLite's thread; not the
        # PostgreSQL server's): less sensitive than seconds to other load on the machine
        "cpu_us_per_event": cpu / stored * 1e6,
        "analytics": analytics,
    }


async def naive(url: str, calls: list[Call], workers: int, budget_s: float) -> dict[str, Any]:
    """One INSERT and one COMMIT per event, with SQLAlchemy Core, into a table like the
    library's event log; ``workers`` sessions written concurrently (each in order)."""
    engine: AsyncEngine = create_async_engine(url)
    if url.startswith("sqlite"):
        from sessiontrack.store.sqlalchemy import _sqlite_pragmas

        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    md = sa.MetaData()
    table = sa.Table(
        f"{PREFIX}naive_events",
        md,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    async with engine.begin() as conn:
        await conn.run_sync(md.drop_all)
        await conn.run_sync(md.create_all)
    by_session: dict[str, list[Call]] = {}
    for call in calls:
        by_session.setdefault(call[1]["session_id"], []).append(call)
    queue = list(by_session.values())
    done = 0
    deadline = time.perf_counter() + budget_s
    insert = table.insert()

    async def worker() -> None:
        nonlocal done
        while queue and time.perf_counter() < deadline:
            for name, kw in queue.pop():
                row = {
                    "session_id": kw["session_id"],
                    "kind": name.removeprefix("sessiontrack_"),
                    "at": datetime.now(UTC),
                    "data": kw,
                }
                async with engine.begin() as conn:
                    await conn.execute(insert, row)
                done += 1

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - t0
        async with engine.begin() as conn:
            stored = await conn.scalar(sa.select(sa.func.count()).select_from(table))
            await conn.run_sync(md.drop_all)
    finally:
        await engine.dispose()
    assert stored == done
    return {"events": done, "seconds": elapsed, "events_per_s": done / elapsed, "workers": workers}


async def memory(url: str, n_sessions: int, max_buffered: int) -> dict[str, Any]:
    """Report as fast as the engine can (yielding every 100 calls, never flushing) into a
    tracker with ``overflow="drop"``: the buffer, and with it memory, must stay bounded."""
    logging.getLogger("sessiontrack").setLevel(logging.ERROR)  # drop/orphan warnings
    tracker, pm = await new_tracker(url, max_buffered=max_buffered, overflow="drop")
    hooks = hooks_of(pm)
    stats = tracker.stats
    total = n_sessions * 26
    marks = {total * q // 4: q * 25 for q in (1, 2, 3, 4)}
    at_mark: dict[int, float] = {}
    peak_buffered = 0
    try:
        base = rss_mib()
        peak = base
        for i, (name, kw) in enumerate(workload(n_sessions, 1000, seed=7), 1):
            hooks[name](**kw)
            if not i % 100:
                peak_buffered = max(peak_buffered, stats.buffered)
                peak = max(peak, rss_mib())
                await asyncio.sleep(0)
            if i in marks:
                at_mark[marks[i]] = rss_mib()
                progress(
                    f"memory: {i:,}/{total:,} reports, buffered {stats.buffered:,}, "
                    f"dropped {stats.dropped_overflow:,}, RSS {at_mark[marks[i]]:.0f} MiB"
                )
        await tracker.flush()
        progress_done()
        result = {
            "reports": total,
            "max_buffered": max_buffered,
            "peak_buffered": peak_buffered,
            "dropped": stats.dropped_overflow,
            "committed": stats.committed,
            "rss_base_mib": base,
            "rss_peak_mib": peak,
            "rss_at_pct_mib": at_mark,
        }
    finally:
        await tracker.aclose()
        logging.getLogger("sessiontrack").setLevel(logging.NOTSET)
    return result


# --- the run ------------------------------------------------------------------------------


async def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    pg = args.postgres_url
    print(f"== {backend} ==", flush=True)
    calls = list(workload(args.sessions, args.concurrency, seed=1))
    # The pre-built workload (millions of objects) is the benchmark's, not the engine's:
    # keep the garbage collector from scanning it again and again during the runs.
    gc.freeze()
    out: dict[str, Any] = {"reports": len(calls), "concurrency": args.concurrency}
    parts = args.parts
    try:
        if "cost" in parts:
            costs = []
            for r in range(args.repeat):
                progress(f"hook-call cost, run {r + 1}/{args.repeat}")
                cost_calls = list(workload(args.cost_sessions, 20, seed=100 + r))
                costs.append(await hook_cost(fresh_url(backend, pg), cost_calls))
            progress_done()
            out["hook_cost_runs"] = costs
        if "throughput" in parts:
            runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
            for r in range(args.repeat):
                for analytics in (True, False) if r % 2 == 0 else (False, True):
                    onoff = "on" if analytics else "off"
                    progress(
                        f"durable throughput, run {r + 1}/{args.repeat}, analytics {onoff}: "
                        f"{len(calls):,} reports"
                    )
                    run = await throughput(
                        fresh_url(backend, pg), calls, args.high_water, analytics=analytics
                    )
                    runs[analytics].append(run)
                    progress_done()
                    print(
                        f"  throughput run {r + 1}, analytics {onoff}: "
                        f"{run['events_per_s']:,.0f} events/s ({run['events']:,} in "
                        f"{run['seconds']:.2f} s, {run['batches']} batches, "
                        f"{run['cpu_us_per_event']:.1f} µs CPU/event)",
                        flush=True,
                    )
            out["throughput_runs"] = runs[True]
            out["throughput_off_runs"] = runs[False]
        if "redaction" in parts:
            # the same workload with redact.ALL (its answers hold 7 digits, so the phone
            # pattern runs on every inbound text) and without, alternately, analytics on
            red: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
            for r in range(args.repeat):
                for on in (True, False) if r % 2 == 0 else (False, True):
                    progress(f"redaction {'on' if on else 'off'}, run {r + 1}/{args.repeat}")
                    options = {"redact": [*redact.ALL]} if on else {}
                    run = await throughput(
                        fresh_url(backend, pg), calls, args.high_water, **options
                    )
                    red[on].append(run)
                    progress_done()
                    print(
                        f"  redaction {'on' if on else 'off'}, run {r + 1}: "
                        f"{run['events_per_s']:,.0f} events/s, "
                        f"{run['cpu_us_per_event']:.1f} µs CPU/event",
                        flush=True,
                    )
            out["redaction_on_runs"], out["redaction_off_runs"] = red[True], red[False]
        if "naive" in parts:
            nv = []
            for r in range(args.repeat):
                progress(f"naive baseline, run {r + 1}/{args.repeat}")
                nv.append(
                    await naive(
                        fresh_url(backend, pg),
                        calls[: args.naive_events],
                        args.naive_workers,
                        args.naive_budget,
                    )
                )
                progress_done()
                print(
                    f"  naive run {r + 1}: {nv[-1]['events_per_s']:,.0f} events/s "
                    f"({nv[-1]['events']:,} in {nv[-1]['seconds']:.2f} s)",
                    flush=True,
                )
            out["naive_runs"] = nv
        if "memory" in parts:
            progress("memory under overload")
            out["memory"] = await memory(
                fresh_url(backend, pg), args.memory_sessions, args.memory_max_buffered
            )
            progress_done()
    finally:
        await drop_tables(pg if backend == "postgresql" else "", PREFIX)
    summarize(backend, out)
    return out


def summarize(backend: str, out: dict[str, Any]) -> None:
    """Print (and add to ``out["summary"]``) the medians of the parts that ran."""
    summary: dict[str, Any] = {}
    rows: list[list[Any]] = []
    c = out.get("hook_cost_runs")
    if c:
        tr_med = median([x["tracker_median_us"] for x in c])
        tr_p99 = median([x["tracker_p99_us"] for x in c])
        bare_med = median([x["bare_median_us"] for x in c])
        bare_p99 = median([x["bare_p99_us"] for x in c])
        ratio = median([x["tracker_median_us"] / x["bare_median_us"] for x in c])
        summary.update(
            hook_median_us=tr_med,
            hook_p99_us=tr_p99,
            bare_median_us=bare_med,
            bare_p99_us=bare_p99,
            hook_vs_bare=ratio,
        )
        rows += [
            ["hook call, tracker, median (µs)", tr_med, "≤ 5", verdict(tr_med, 5, at_most=True)],
            ["hook call, tracker, p99 (µs)", tr_p99, "-", ""],
            ["hook call, bare pluggy no-op, median (µs)", bare_med, "-", ""],
            ["hook call, bare pluggy no-op, p99 (µs)", bare_p99, "-", ""],
            ["tracker / bare (median)", ratio, "≤ 2", verdict(ratio, 2, at_most=True)],
        ]
    eps = None
    if out.get("throughput_runs"):
        eps = median([x["events_per_s"] for x in out["throughput_runs"]])
        off = median([x["events_per_s"] for x in out["throughput_off_runs"]])
        pairs = zip(out["throughput_runs"], out["throughput_off_runs"], strict=True)
        on_off = median([a["events_per_s"] / b["events_per_s"] for a, b in pairs])
        cpu_on = median([x["cpu_us_per_event"] for x in out["throughput_runs"]])
        cpu_off = median([x["cpu_us_per_event"] for x in out["throughput_off_runs"]])
        summary.update(
            events_per_s=eps,
            events_per_s_analytics_off=off,
            analytics_on_off=on_off,
            cpu_us_per_event=cpu_on,
            cpu_us_per_event_analytics_off=cpu_off,
        )
        rows += [
            [
                "durable events/s, analytics on",
                eps,
                "≥ 50,000",
                verdict(eps, 50_000, at_most=False),
            ],
            ["durable events/s, analytics off", off, "-", ""],
            ["analytics on / off (median of pairs)", on_off, "-", ""],
            ["process CPU µs/event, analytics on", cpu_on, "-", ""],
            ["process CPU µs/event, analytics off", cpu_off, "-", ""],
        ]
    if out.get("redaction_on_runs"):
        r_on = median([x["events_per_s"] for x in out["redaction_on_runs"]])
        r_off = median([x["events_per_s"] for x in out["redaction_off_runs"]])
        cpu_r_on = median([x["cpu_us_per_event"] for x in out["redaction_on_runs"]])
        cpu_r_off = median([x["cpu_us_per_event"] for x in out["redaction_off_runs"]])
        summary.update(
            events_per_s_redaction_on=r_on,
            events_per_s_redaction_off=r_off,
            cpu_us_per_event_redaction_on=cpu_r_on,
            cpu_us_per_event_redaction_off=cpu_r_off,
        )
        rows += [
            [
                "durable events/s, redact.ALL",
                r_on,
                "≥ 50,000",
                verdict(r_on, 50_000, at_most=False),
            ],
            ["durable events/s, no redaction (same runs)", r_off, "-", ""],
            [
                "process CPU µs/event, redact.ALL / none",
                f"{cpu_r_on:.1f} / {cpu_r_off:.1f}",
                "-",
                "",
            ],
        ]
    if out.get("naive_runs"):
        naive_eps = median([x["events_per_s"] for x in out["naive_runs"]])
        summary["naive_events_per_s"] = naive_eps
        rows.append(["naive events/s (INSERT+COMMIT each)", naive_eps, "-", ""])
        if eps is not None:
            summary["vs_naive"] = eps / naive_eps
            rows.append(
                [
                    "tracker / naive",
                    eps / naive_eps,
                    "≥ 30",
                    verdict(eps / naive_eps, 30, at_most=False),
                ]
            )
    out["summary"] = summary
    runs = len(
        c
        or out.get("throughput_runs")
        or out.get("redaction_on_runs")
        or out.get("naive_runs")
        or [None]
    )
    print(f"\nresults on {backend} (medians of {runs} runs):")
    print_table(["measure", "value", "target", "verdict"], rows)
    if c:
        print(
            "  per-hook median (µs): "
            + ", ".join(f"{k} {v:.2f}" for k, v in c[len(c) // 2]["per_hook_median_us"].items())
        )
    m = out.get("memory")
    if m:
        pct = ", ".join(f"{k}% {v:.0f}" for k, v in m["rss_at_pct_mib"].items())
        print(
            f"  memory, overflow='drop', max_buffered={m['max_buffered']:,}: "
            f"{m['reports']:,} reports, peak buffered {m['peak_buffered']:,}, "
            f"dropped {m['dropped']:,}; RSS base {m['rss_base_mib']:.0f} MiB, "
            f"peak {m['rss_peak_mib']:.0f} MiB, after {pct} MiB",
        )
    print(flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    ap.add_argument("--sessions", type=int, default=10_000, help="sessions per throughput run")
    ap.add_argument("--concurrency", type=int, default=1_000, help="sessions in progress at once")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--high-water",
        type=int,
        default=50_000,
        help="the tracker's high_water: buffered reports past which drain() waits",
    )
    ap.add_argument("--cost-sessions", type=int, default=2_000)
    ap.add_argument("--naive-events", type=int, default=6_000)
    ap.add_argument("--naive-workers", type=int, default=1)
    ap.add_argument("--naive-budget", type=float, default=15.0, help="seconds per naive run")
    ap.add_argument("--memory-sessions", type=int, default=30_000)
    ap.add_argument("--memory-max-buffered", type=int, default=20_000)
    ap.add_argument(
        "--parts",
        default="cost,throughput,naive,memory",
        help="what to measure, comma-separated (default: cost,throughput,naive,memory; "
        "also: redaction)",
    )
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    pg_version = await postgres_version(args.postgres_url) if "postgresql" in backends else None
    info = machine(pg_version)
    print_machine(info)
    results: dict[str, Any] = {"machine": info, "args": vars(args)}
    t0 = time.perf_counter()
    for backend in backends:
        if backend == "postgresql" and pg_version is None:
            print(f"PostgreSQL at {args.postgres_url} not reachable: skipped\n")
            continue
        results[backend] = await run_backend(backend, args)
    print(f"total time {time.perf_counter() - t0:.0f} s")
    write_json(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
