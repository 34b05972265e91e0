"""Bulk stop: tracker.stop_many of 1,000 active sessions, by ids and by a filter, against
the same sessions stopped one tracker.stop() after another, on SQLite and PostgreSQL.

Each run starts 1,000 sessions of a chatbot of its own (committed first), then times one
``stop_many`` call until it returns (every stop committed); the baseline stops 100
sessions with ``stop()`` one by one and is scaled to 1,000. Fresh tables with the prefix
``bench_bulk_`` (dropped afterwards on PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pluggy
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    POSTGRES_URL,
    machine,
    median,
    postgres_version,
    print_machine,
    print_table,
    write_json,
)

import sessiontrack

PREFIX = "bench_bulk_"
SESSIONS = 1000
SINGLE = 100


async def _drop(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            for name in names:
                if name.startswith(PREFIX):
                    await conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        await engine.dispose()


async def _start(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, bot: str, n: int
) -> list[str]:
    sids = [sessiontrack.new_session_id() for _ in range(n)]
    for sid in sids:
        pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id=bot)
    await tracker.flush()
    return sids


async def run(url: str, repeat: int) -> dict[str, float]:
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    times: dict[str, list[float]] = {"ids": [], "filter": [], "single": []}
    async with sessiontrack.Tracker(url, plugin_manager=pm, prefix=PREFIX, migrate=True) as t:
        for rep in range(repeat):
            sids = await _start(pm, t, f"ids-{rep}", SESSIONS)
            t0 = time.perf_counter()
            result = await t.stop_many(sids, principal="bench")
            times["ids"].append(time.perf_counter() - t0)
            assert len(result.stopped) == SESSIONS
            await _start(pm, t, f"filter-{rep}", SESSIONS)
            t0 = time.perf_counter()
            result = await t.stop_many(filter={"chatbot_id": f"filter-{rep}"}, principal="bench")
            times["filter"].append(time.perf_counter() - t0)
            assert len(result.stopped) == SESSIONS
            sids = await _start(pm, t, f"single-{rep}", SINGLE)
            t0 = time.perf_counter()
            for sid in sids:
                await t.stop(sid, "bench")
            times["single"].append((time.perf_counter() - t0) * SESSIONS / SINGLE)
    return {k: median(v) for k, v in times.items()}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    backends = args.backends.split(",")
    pg = await postgres_version(args.postgres_url) if "postgresql" in backends else None
    info = machine(pg)
    print_machine(info)
    results: dict[str, Any] = {"machine": info}
    rows = []
    for backend in backends:
        if backend == "sqlite":
            folder = tempfile.mkdtemp(prefix="bench_bulk_")
            figures = await run(f"sqlite+aiosqlite:///{folder}/bulk.db", args.repeat)
        else:
            try:
                figures = await run(args.postgres_url, args.repeat)
            finally:
                await _drop(args.postgres_url)
        results[backend] = figures
        rows.append(
            [
                backend,
                figures["ids"],
                figures["filter"],
                figures["single"],
                figures["single"] / figures["ids"],
            ]
        )
    print(f"stopping {SESSIONS:,} active sessions, medians of {args.repeat} runs (seconds):")
    print_table(
        ["backend", "stop_many(ids)", "stop_many(filter)", "stop() x 1,000", "ids speed-up"], rows
    )
    write_json(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
