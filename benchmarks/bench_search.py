"""Search benchmark on the 1,000,000-session data set of bench_queries.py, both backends.

Uses the data set bench_queries.py loads (benchmarks/.data/ and the ``bench_q_`` tables;
it loads them if they are missing). Opening it with ``migrate=True`` upgrades an older
copy to migration 0007, which builds the search indexes: the time that takes is printed
and recorded. Then the public query service is timed:

- the customer search (``tracker.sessions.list(search=...)``, first page and total) for
  full names, single names (each in about 3% of the sessions) and seven phone digits,
  against the substring scan the list did before 0007 (the same query with the indexes
  out of reach), in the same run;
- message search (``tracker.sessions.search_messages``), the first page of 20, for words
  of very different frequencies, a four-word query and a word no message has; prefixes
  (``option*``) apart;
- the ``q`` list filter (first page and total; informative: its total counts every
  matching session).

    python benchmarks/bench_search.py                    # both backends
    python benchmarks/bench_search.py --backends sqlite --postgres-url URL
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

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
    progress,
    progress_done,
    verdict,
    write_json,
)
from bench_queries import PREFIX, Spec, cached_load, timeit

import sessiontrack
from sessiontrack.store import SQLAlchemyStore, _migrate

FULL_NAMES = ["maria garcía", "kai tanaka", "zoe novak"]
ONE_NAME = ["okafor", "müller", "ann"]
PHONES = ["5123456", "4477123", "3361987"]
WORDS = ["order", "help", "thanks", "step 12 bot 3", "refund"]
TARGETS = {
    "name search, full name": 20.0,
    "phone search, 7 digits": 20.0,
    "message search, first page": 20.0,
}


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def upgrade(url: str) -> float | None:
    """Migrate the data set to HEAD; the seconds it took, or None if it was current."""
    store = SQLAlchemyStore(url, prefix=PREFIX)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_migrate.current, PREFIX)
    finally:
        await engine.dispose()
    if current == _migrate.HEAD:
        return None
    print(f"  upgrading {current} -> {_migrate.HEAD} (the search indexes) ...", flush=True)
    t0 = time.perf_counter()
    await store.open(migrate=True)
    await store.close()
    return time.perf_counter() - t0


async def scan_search(store: Any, term: str) -> Any:
    """The list's customer search as 0006 ran it: LIKE over every row (``|| ''`` keeps
    PostgreSQL's planner off the trigram indexes), first page and total."""
    s = store.tables.sessions
    pattern = f"%{term.casefold()}%"
    cond = sa.or_(
        s.c.name_key.concat("").like(pattern), s.c.customer_phone.concat("").like(pattern)
    )
    async with store.engine.connect() as conn:
        page = (
            await conn.execute(
                sa.select(s.c.id)
                .where(cond)
                .order_by(s.c.started_at.desc(), s.c.id.desc())
                .limit(21)
            )
        ).all()
        total = await conn.scalar(sa.select(sa.func.count()).select_from(s).where(cond))
    return page, total


async def measure(url: str, reps: int) -> dict[str, Any]:
    tracker = sessiontrack.Tracker(url, prefix=PREFIX, migrate=True, sweep_interval=None)
    out: dict[str, Any] = {}
    totals: dict[str, int] = {}
    async with tracker:
        q = tracker.sessions

        def cycle(values: list[str]) -> Any:
            async def run(i: int) -> Any:
                term = values[i % len(values)]
                page = await q.list(search=term, limit=20)
                totals[term] = page.total
                return page

            return run

        progress("name search")
        out["name search, full name"] = await timeit(cycle(FULL_NAMES), reps)
        out["name search, one name (3% of sessions, informative)"] = await timeit(
            cycle(ONE_NAME), max(5, reps // 3), 1
        )
        out["phone search, 7 digits"] = await timeit(cycle(PHONES), reps)
        out["phone prefix 5511 (a fifth of all sessions, informative)"] = await timeit(
            cycle(["5511"]), max(3, reps // 5), 1
        )

        async def scan(i: int) -> Any:
            return await scan_search(tracker.store, FULL_NAMES[i % len(FULL_NAMES)])

        progress("the substring scan (baseline)")
        out["name search, full name, by scan (0006 baseline)"] = await timeit(
            scan, max(5, reps // 3), 1
        )

        async def messages(i: int) -> Any:
            word = WORDS[i % len(WORDS)]
            page = await q.search_messages(word, limit=20)
            totals[f"messages: {word}"] = len(page.data)
            return page

        progress("message search")
        out["message search, first page"] = await timeit(messages, reps)

        async def second(i: int) -> Any:
            first = await q.search_messages(WORDS[i % 3], limit=20)
            return await q.search_messages(WORDS[i % 3], limit=20, cursor=first.next_cursor)

        out["message search, first and second page (informative)"] = await timeit(
            second, max(5, reps // 3), 1
        )

        async def prefix(i: int) -> Any:
            return await q.search_messages(["option*", "than*", "hel*"][i % 3], limit=20)

        out[
            "message search, a prefix (option* in every other message; informative)"
        ] = await timeit(prefix, max(5, reps // 3), 1)

        async def by_q(i: int) -> Any:
            word = ["step 12 bot 3", "refund"][i % 2]
            page = await q.list(q=word, limit=20)
            totals[f"q: {word}"] = page.total
            return page

        progress("q list filter")
        out["q list filter, rare words (informative)"] = await timeit(by_q, max(5, reps // 3), 1)
        progress_done()
    out["totals"] = totals
    return out


def report(backend: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    summary: dict[str, Any] = {}
    for name in runs[0]:
        if name == "totals":
            continue
        med = median([r[name]["median_ms"] for r in runs])
        p95 = median([r[name]["p95_ms"] for r in runs])
        target = TARGETS.get(name)
        summary[name] = {"median_ms": med, "p95_ms": p95, "target_ms": target}
        rows.append(
            [
                name,
                med,
                p95,
                f"≤ {target:g}" if target else "-",
                verdict(med, target, at_most=True) if target else "",
            ]
        )
    print(f"\nresults on {backend} (ms; medians over {len(runs)} runs):")
    print_table(["query", "median", "p95", "target", "verdict"], rows)
    print("matches:", ", ".join(f"{k} {v:,}" for k, v in runs[-1]["totals"].items()))
    return summary


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=30, help="timed calls per query and run")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    logging.basicConfig(format="  %(message)s")
    logging.getLogger("sessiontrack.migrations").setLevel(logging.INFO)
    spec = Spec(sessions=args.sessions, events=args.events)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    pg_version = await postgres_version(args.postgres_url) if "postgresql" in backends else None
    info = machine(pg_version)
    print_machine(info)
    print(f"data set: {spec.sessions:,} sessions, {spec.events:,} events ({spec.key})\n")
    results: dict[str, Any] = {"machine": info, "args": vars(args)}
    for backend in backends:
        if backend == "postgresql" and pg_version is None:
            print(f"PostgreSQL at {args.postgres_url} not reachable: skipped\n")
            continue
        print(f"== {backend} ==", flush=True)
        url, _ = await cached_load(backend, spec, args.postgres_url, reload=False)
        res: dict[str, Any] = {"load_average_before": _load()}
        upgraded = await upgrade(url)
        if upgraded is not None:
            print(f"  migration 0007 took {upgraded:.0f} s (load average {_load()})", flush=True)
        res["migration_0007_seconds"] = upgraded
        runs = [await measure(url, args.reps) for _ in range(args.runs)]
        res["runs"] = runs
        res["summary"] = report(backend, runs)
        res["load_average_after"] = _load()
        print(f"load average: before {res['load_average_before']}, after {_load()}\n")
        results[backend] = res
    write_json(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
