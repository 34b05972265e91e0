"""Fault injection at scale: counts of acknowledged, stored, lost, duplicated, reordered.

The scenarios of tests/test_faults.py (tests/fault_helpers), larger:

- **kill**: an engine process reports and checkpoints with ``flush()``; it is SIGKILLed at
  a random moment after its first acknowledged checkpoint and restarted, ``--kill-rounds``
  times per backend;
- **outage**: a private PostgreSQL cluster crashes (``pg_ctl stop -m immediate``) for
  ``--outage`` seconds while the engine reports ``--rate`` events/s;
- **lock**: another process holds SQLite's write lock past the 10 s busy timeout;
- **soak**: ``--sockets`` Socket.IO and ``--sse`` SSE clients of a ``sessiontrack serve``
  process on PostgreSQL for ``--soak-duration`` seconds at ``--soak-rate`` events/s; the
  server's RSS is sampled.

    python benchmarks/bench_faults.py                          # everything (about 8 min)
    python benchmarks/bench_faults.py --scenarios kill --kill-rounds 20
    python benchmarks/bench_faults.py --scenarios soak --soak-rate 25 --soak-duration 120

"Lost" counts acknowledged reports (hook call returned, then a ``flush()`` returned) not in
the store; "gaps" stored reports of a session that skip an earlier one; "read mismatches"
sessions whose list entry or detail disagrees with the event log.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import POSTGRES_URL, machine, postgres_version, print_machine, print_table, write_json
from conftest import drop_prefixed_tables
from fault_helpers import pgcluster
from fault_helpers.scenarios import FaultResult, kill_rounds, pg_outage, sqlite_lock
from fault_helpers.script import Counts
from fault_helpers.soak import soak

COUNT_HEADERS = ["scenario", "acked", "stored", "lost", "dup", "reordered", "gaps", "reads bad"]


def count_row(name: str, c: Counts) -> list[Any]:
    faults = [c.lost, c.duplicated, c.reordered, c.gaps, c.read_mismatches]
    return [name, c.acknowledged, c.stored, *faults]


async def bench_kill(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend in args.backends:
        prefix = f"bench_faults_{uuid.uuid4().hex[:8]}_"
        d = work / f"kill-{backend}"
        d.mkdir()
        url = f"sqlite+aiosqlite:///{d / 'kill.db'}" if backend == "sqlite" else args.postgres_url
        t0 = time.monotonic()
        try:
            result = await kill_rounds(
                url,
                prefix,
                d,
                rounds=args.kill_rounds,
                seed=args.seed,
                run_after_first_ack=(0.5, 4.0),
                details=args.details,
                on_round=lambda r, n: print(f"    round {r + 1}: {n:,} acknowledged", flush=True),
            )
        finally:
            if backend == "postgresql":
                await drop_prefixed_tables(url, prefix)
        c = result.counts
        out[backend] = {
            **c.as_dict(),
            "rounds": result.rounds,
            "killed": result.killed,
            "sessions acknowledged": c.sessions_acknowledged,
            "details read": c.details_read,
            "seconds": round(time.monotonic() - t0),
            "problems": c.problems,
        }
        print_table(
            [*COUNT_HEADERS, "sessions", "rounds killed"],
            [[*count_row(f"kill -9, {backend}", c), c.sessions_acknowledged, result.killed]],
        )
    return out


def fault_summary(name: str, r: FaultResult) -> dict[str, Any]:
    c = r.counts
    print_table(COUNT_HEADERS, [count_row(name, c)])
    facts = {
        "reported during the fault": r.reported_during_fault,
        "buffered at recovery": r.buffered_at_recovery,
        "max_buffered": r.max_buffered,
        "retries": r.retries,
        "warnings logged": r.warnings,
        "flushes blocked by the fault": r.flushes_blocked,
        "of those returned during the fault": r.flushes_returned_in_fault,
        "hook calls that raised": len(r.hook_errors),
        "dropped (overflow)": r.dropped_overflow,
        "failed": r.failed,
        **r.extra,
    }
    for key, value in facts.items():
        print(f"  {key:<36} {value:,}" if isinstance(value, int) else f"  {key:<36} {value}")
    print(flush=True)
    return {**c.as_dict(), **facts, "details read": c.details_read, "problems": c.problems}


async def bench_outage(args: argparse.Namespace) -> dict[str, Any]:
    problem = pgcluster.available()
    if problem:
        print(f"  outage: not run ({problem})\n")
        return {"skipped": problem}
    cluster = pgcluster.PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        result = await pg_outage(
            cluster,
            "bench_faults_",
            rate=args.rate,
            outage=args.outage,
            before=3,
            after=5,
            seed=args.seed,
            retry_max=5.0,  # the default: recovery may wait up to one full backoff
            details=args.details,
        )
    finally:
        cluster.destroy()
    return fault_summary(f"PostgreSQL down {args.outage:g} s at {args.rate:g}/s", result)


async def bench_lock(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result = await sqlite_lock(
        work / "lock.db",
        "bench_faults_",
        rate=args.rate,
        calls_after_retry=int(args.rate * 5),
        before=2,
        after=3,
        seed=args.seed,
        details=args.details,
    )
    return fault_summary(f"SQLite write lock held, {args.rate:g}/s", result)


async def bench_soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    prefix = f"bench_faults_{uuid.uuid4().hex[:8]}_"
    try:
        r = await soak(
            args.postgres_url,
            prefix,
            work,
            sockets=args.sockets,
            sse=args.sse,
            duration=args.soak_duration,
            rate=args.soak_rate,
            seed=args.seed,
        )
    finally:
        await drop_prefixed_tables(args.postgres_url, prefix)
    mib = 1024
    row = [
        f"{args.sockets} socket + {args.sse} SSE clients, {args.soak_duration:g} s",
        r.events,
        r.expected,
        r.received,
        r.missing,
        r.duplicated,
        r.reordered,
        r.unexpected,
        r.disconnected,
        f"{r.rss_connected_kb / mib:.0f}",
        f"{r.rss_peak_kb / mib:.0f}",
        f"{r.rss_end_kb / mib:.0f}",
    ]
    headers = ["soak", "events", "deliveries due", "received", "missing", "dup", "reordered"]
    headers += ["unexpected", "dropped clients", "RSS MiB connected", "peak", "end"]
    print_table(headers, [row])
    return {
        "events": r.events,
        "deliveries expected": r.expected,
        "received": r.received,
        "missing": r.missing,
        "duplicated": r.duplicated,
        "reordered": r.reordered,
        "unexpected": r.unexpected,
        "disconnected": r.disconnected,
        "rss_connected_mib": round(r.rss_connected_kb / mib, 1),
        "rss_peak_mib": round(r.rss_peak_kb / mib, 1),
        "rss_end_mib": round(r.rss_end_kb / mib, 1),
        "problems": r.problems,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pg = await postgres_version(args.postgres_url)
    info = machine(pg)
    print_machine(info)
    results: dict[str, Any] = {"machine": info, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        work = Path(tmp)
        if "kill" in args.scenarios:
            print(f"kill -9, {args.kill_rounds} rounds per backend (seed {args.seed})")
            results["kill"] = await bench_kill(args, work)
        if "outage" in args.scenarios:
            print(f"PostgreSQL outage of {args.outage:g} s at {args.rate:g} events/s")
            results["outage"] = await bench_outage(args)
        if "lock" in args.scenarios:
            print("SQLite write lock held by another process past the busy timeout")
            results["lock"] = await bench_lock(args, work)
        if "soak" in args.scenarios:
            print(f"live clients on PostgreSQL at {args.soak_rate:g} events/s")
            results["soak"] = await bench_soak(args, work)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="kill,outage,lock,soak", type=lambda s: s.split(","))
    parser.add_argument("--backends", default="sqlite,postgresql", type=lambda s: s.split(","))
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--kill-rounds", type=int, default=10)
    parser.add_argument("--outage", type=float, default=30)
    parser.add_argument("--rate", type=float, default=2000, help="events/s (outage, lock)")
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--sse", type=int, default=50)
    parser.add_argument("--soak-duration", type=float, default=120)
    parser.add_argument("--soak-rate", type=float, default=5)
    parser.add_argument("--details", type=int, default=1000, help="session details read")
    parser.add_argument("--seed", type=int, default=random.randrange(2**31))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = anyio.run(run, args)
    write_json(args.json, results)
    bad = [k for k, v in results.items() if isinstance(v, dict) and _faulty(v)]
    if bad:
        print(f"FAULTS FOUND in: {', '.join(bad)}")
        sys.exit(1)


def _faulty(result: dict[str, Any]) -> bool:
    keys = ("lost", "duplicated", "reordered", "gaps", "read mismatches", "missing", "unexpected")
    nested = [v for v in result.values() if isinstance(v, dict)]
    return any(result.get(k) for k in keys) or any(_faulty(v) for v in nested)


if __name__ == "__main__":
    main()
