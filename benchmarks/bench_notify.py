"""Webhooks' cost to ingestion: the bench_ingest workload with no subscription, and with a
subscription to a receiver that answers every POST after 2 seconds, in the same run.

The receiver is a real uvicorn server in another process on 127.0.0.1. Each run starts a
fresh tracker (tables dropped); with the subscription, a ``sessiontrack.notify.Webhooks``
group runs in the tracker's process and delivers while ingestion is measured (it falls
behind, by design: a 2 s receiver takes at most 100 events every 2 s). The two variants
alternate run after run; the ratio of their rates is the cost. See docs/benchmarks.md.

    python benchmarks/bench_notify.py                        # both backends, < 1 min each
    python benchmarks/bench_notify.py --backends sqlite --sessions 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pluggy
from _common import (
    POSTGRES_URL,
    machine,
    median,
    postgres_version,
    print_machine,
    print_table,
    verdict,
    write_json,
)
from bench_ingest import PREFIX, drop_tables, flows, fresh_url, hooks_of, workload

import sessiontrack
from sessiontrack.notify import Webhooks, WebhookService

TARGET = 50_000  # events/s (issue 15)
RECEIVER = textwrap.dedent(
    """
    import asyncio, sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    count = 0
    async def hook(request):
        global count
        await request.body()
        count += 1
        await asyncio.sleep(float(sys.argv[2]))
        return Response(status_code=200)
    uvicorn.run(Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
                host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


def start_receiver(delay: float) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port), str(delay)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/hook"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the receiver did not start")


async def run_once(
    url: str, calls: list[Any], high_water: int, hook_url: str | None
) -> dict[str, Any]:
    await drop_tables(url, PREFIX)
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    hooks = Webhooks(refresh_interval=0.2, timeout=30.0) if hook_url else None
    tracker = sessiontrack.Tracker(
        url,
        plugin_manager=pm,
        prefix=PREFIX,
        migrate=True,
        sweep_interval=None,
        high_water=high_water,
        consumers=[hooks] if hooks else [],
    )
    await tracker.start()
    try:
        if hooks is not None and hook_url is not None:
            await WebhookService(tracker.store).create(hook_url, batch=100)
            hooks.refresh()
            async with asyncio.timeout(30):
                while not hooks.consumers:  # noqa: ASYNC110 - another task's state
                    await asyncio.sleep(0.05)
        for f in flows():
            pm.hook.sessiontrack_flow_registered(**f)
        await tracker.flush()
        hook_calls = hooks_of(pm)
        stats = tracker.stats
        before = stats.events_stored
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for i, (name, kw) in enumerate(calls):
            hook_calls[name](**kw)
            if not i % 100:
                await asyncio.sleep(0)
                await tracker.drain()
        await tracker.flush()
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        stored = stats.events_stored - before
        delivered = None
        if hooks is not None:
            service = WebhookService(tracker.store)
            (hook,) = await service.list()
            attempts = await service.deliveries(hook.id, limit=1000)
            delivered = sum(d.events for d in attempts if d.error is None)
    finally:
        await tracker.aclose()
    if stored != len(calls):
        raise RuntimeError(f"stored {stored} of {len(calls)} reports")
    return {
        "events": stored,
        "seconds": elapsed,
        "events_per_s": stored / elapsed,
        # this process's CPU per event (engine, writer, SQLite's thread, the deliveries):
        # less sensitive than the rate to other load on the machine
        "cpu_us_per_event": cpu / stored * 1e6,
        "delivered_meanwhile": delivered,
    }


async def run_backend(backend: str, args: argparse.Namespace, hook_url: str) -> dict[str, Any]:
    print(f"== {backend} ==", flush=True)
    calls = list(workload(args.sessions, args.concurrency, seed=1))
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "slow_receiver": []}
    for r in range(args.repeat):
        for variant in ("none", "slow_receiver") if r % 2 == 0 else ("slow_receiver", "none"):
            target = hook_url if variant == "slow_receiver" else None
            run = await run_once(
                fresh_url(backend, args.postgres_url), calls, args.high_water, target
            )
            runs[variant].append(run)
            print(
                f"  run {r + 1} {variant:<13} {run['events_per_s']:>10,.0f} events/s "
                f"({run['seconds']:.1f} s, {run['cpu_us_per_event']:.1f} µs CPU/event; "
                f"delivered meanwhile: {run['delivered_meanwhile']})",
                flush=True,
            )
    none = median([x["events_per_s"] for x in runs["none"]])
    slow = median([x["events_per_s"] for x in runs["slow_receiver"]])
    ratio = slow / none
    cpu_none = median([x["cpu_us_per_event"] for x in runs["none"]])
    cpu_slow = median([x["cpu_us_per_event"] for x in runs["slow_receiver"]])
    print_table(
        ["variant", "events/s (median)", "µs CPU/event", f"target >= {TARGET:,} events/s"],
        [
            ["no subscription", none, cpu_none, verdict(none, TARGET, at_most=False)],
            ["2 s receiver", slow, cpu_slow, verdict(slow, TARGET, at_most=False)],
            ["ratio (2 s receiver / none)", ratio, cpu_slow / cpu_none, "~1"],
        ],
    )
    return {
        "runs": runs,
        "none_events_per_s": none,
        "slow_events_per_s": slow,
        "ratio": ratio,
        "cpu_ratio": cpu_slow / cpu_none,
    }


async def main(args: argparse.Namespace) -> None:
    pg = await postgres_version(args.postgres_url) if "postgresql" in args.backends else None
    info = machine(pg)
    print_machine(info)
    receiver, hook_url = start_receiver(args.receiver_delay)
    results: dict[str, Any] = {
        "machine": info,
        "sessions": args.sessions,
        "receiver_delay_s": args.receiver_delay,
        "backends": {},
    }
    try:
        for backend in args.backends.split(","):
            if backend == "postgresql" and pg is None:
                print("== postgresql: not reachable, skipped ==")
                continue
            results["backends"][backend] = await run_backend(backend, args, hook_url)
    finally:
        receiver.kill()
        receiver.wait()
    write_json(args.json, results)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    ap.add_argument("--sessions", type=int, default=1_500, help="sessions per run (26 events each)")
    ap.add_argument("--concurrency", type=int, default=1_000, help="sessions in progress at once")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each variant")
    ap.add_argument("--high-water", type=int, default=50_000)
    ap.add_argument("--receiver-delay", type=float, default=2.0, help="seconds per answer")
    ap.add_argument("--json", help="also write the results to this file")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(ap.parse_args()))
