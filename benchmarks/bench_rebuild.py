"""Replay benchmark: ``sessiontrack analytics rebuild`` (the replay migration 0005 runs too).

A log of ``--sessions`` sessions (26 events each, bench_ingest's workload, their starts
spread over ``--days`` days) is written once per backend through a real Tracker with
analytics off, then the rollups are rebuilt from it ``--repeat`` times; events/s of each
rebuild is printed (the median last).

    python benchmarks/bench_rebuild.py                         # both backends, 8,000 sessions
    python benchmarks/bench_rebuild.py --backends sqlite --repeat 1
    python benchmarks/bench_rebuild.py --reuse                 # keep the log of the last run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, POSTGRES_URL, median
from bench_ingest import hooks_of, new_tracker, workload

from sessiontrack.analytics._rebuild import rebuild
from sessiontrack.store import SQLAlchemyStore

PREFIX = "bench_ingest_"  # bench_ingest's new_tracker drops and creates these tables


def url_of(backend: str, pg_url: str) -> str:
    if backend == "postgresql":
        return pg_url
    DATA_DIR.mkdir(exist_ok=True)
    return f"sqlite+aiosqlite:///{DATA_DIR / 'rebuild.db'}"


def remove_sqlite() -> None:
    path = DATA_DIR / "rebuild.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def build_log(url: str, n_sessions: int, days: float, concurrency: int) -> int:
    if url.startswith("sqlite"):
        remove_sqlite()
    calls = list(workload(n_sessions, concurrency, seed=12))
    step = timedelta(seconds=days * 86400 / len(calls))
    t0 = datetime.now(UTC) - timedelta(days=days)
    tracker, pm = await new_tracker(url, analytics=False, high_water=20_000)
    hooks = hooks_of(pm)
    try:
        for i, (name, kw) in enumerate(calls):
            hooks[name](**kw, at=t0 + i * step)
            if not i % 100:
                await asyncio.sleep(0)
                await tracker.drain()
        await tracker.flush()
    finally:
        await tracker.aclose()
    return len(calls)


async def time_rebuild(url: str) -> tuple[int, float, float]:
    store = SQLAlchemyStore(url, prefix=PREFIX)
    await store.open(migrate=False)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        n = await rebuild(store)
        return n, time.perf_counter() - t0, time.process_time() - c0
    finally:
        await store.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--sessions", type=int, default=8000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument(
        "--concurrency", type=int, default=200, help="sessions in progress at once in the log"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="rebuild the log already there")
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    args = ap.parse_args()
    for backend in args.backends.split(","):
        url = url_of(backend, args.postgres_url)
        if not args.reuse:
            t0 = time.perf_counter()
            n = await build_log(url, args.sessions, args.days, args.concurrency)
            print(f"{backend}: log of {n} events written in {time.perf_counter() - t0:.1f} s")
        rates, cpu_rates = [], []
        for r in range(args.repeat):
            n, s, cpu = await time_rebuild(url)
            rates.append(n / s)
            cpu_rates.append(n / cpu)
            print(
                f"{backend}: rebuild {r + 1}: {n} events in {s:.2f} s = {n / s:,.0f} events/s; "
                f"this process's CPU {cpu:.2f} s = {n / cpu:,.0f} events/CPU-s "
                f"(load {os.getloadavg()[0]:.1f})"
            )
        print(
            f"{backend}: median {median(rates):,.0f} events/s, "
            f"{median(cpu_rates):,.0f} events/CPU-s"
        )


if __name__ == "__main__":
    asyncio.run(main())
