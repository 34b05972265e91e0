"""REST list throughput: 50 concurrent clients on a 1,000,000-session database.

Reuses the data set of ``bench_queries.py`` (1,000,000 sessions, 10,000,000 events; cached
in benchmarks/.data/ for SQLite, under the ``bench_q_`` prefix on PostgreSQL, loaded on
first use). One process serves the sub-app with uvicorn; a second process runs the
clients: 50 concurrent HTTP/1.1 keep-alive connections, each sending list requests back
to back for the given duration, cycling through a realistic mix (first page of all
sessions, of active ones, of one chatbot, of completed ones, a search, a second page by
cursor). Reports requests/s and latency percentiles. ``--mix full`` adds a substring
search and a status filter sorted by ``updatedAt``.

    python benchmarks/bench_rest.py                        # SQLite, 15 s
    python benchmarks/bench_rest.py --backend postgresql --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import POSTGRES_URL, machine, percentile, postgres_version, print_machine

MOUNT = "/api/chatbot-sessions"
QUERIES: dict[str, list[dict[str, str]]] = {
    # What the dashboard asks: first pages of indexed lists, and the next page by cursor.
    "lists": [
        {},
        {"filter": "active"},
        {"chatbotId": "bot-03"},
        {"filter": "completed"},
        {"chatbotId": "bot-11", "filter": "completed", "sortOrder": "asc"},
        {"status": "waiting_input"},
    ],
    # Plus a substring search (a scan by nature) and a status filter sorted by updatedAt.
    "full": [
        {},
        {"filter": "active"},
        {"chatbotId": "bot-03"},
        {"status": "completed", "sortBy": "updatedAt"},
        {"search": "maria"},
        {"chatbotId": "bot-11", "filter": "completed", "sortOrder": "asc"},
    ],
}


async def client_main(url: str, concurrency: int, duration: float, mix_name: str) -> None:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url + MOUNT, limits=limits, timeout=60) as http:
        first = (await http.get("/", params={"limit": 20})).json()
        cursor = first["nextCursor"]
        mix = [*QUERIES[mix_name], {"cursor": cursor}]
        end = time.perf_counter() + duration

        async def worker(i: int) -> None:
            n = i
            while time.perf_counter() < end:
                params = {"limit": "20", **mix[n % len(mix)]}
                n += 1
                t0 = time.perf_counter()
                try:
                    r = await http.get("/", params=params)
                except httpx.TransportError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "elapsed": elapsed,
                "statuses": statuses,
                "transport_errors": errors,
                "p50": percentile(latencies, 50),
                "p90": percentile(latencies, 90),
                "p99": percentile(latencies, 99),
                "max": max(latencies),
            }
        ),
        flush=True,
    )


async def host_main(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn
    from bench_queries import PREFIX, Spec, cached_load
    from starlette.applications import Starlette
    from starlette.routing import Mount

    import sessiontrack
    from sessiontrack.web import create_app

    url, _ = await cached_load(
        args.backend, Spec(sessions=1_000_000, events=10_000_000), args.postgres_url, False
    )
    tracker = sessiontrack.Tracker(url, prefix=PREFIX, migrate=True, sweep_interval=None)
    async with tracker:
        total = (await tracker.sessions.list(limit=1)).total
        app = Starlette(routes=[Mount(MOUNT, app=create_app(tracker))])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                lifespan="off",
                log_level="warning",
                backlog=2048,
                timeout_keep_alive=30,
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.01)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            f"http://127.0.0.1:{port}",
            "--concurrency",
            str(args.concurrency),
            "--duration",
            str(args.duration),
            "--mix",
            args.mix,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        result = json.loads(await proc.stdout.readline())
        await proc.wait()
        server.should_exit = True
        await serving
    result["sessions"] = total
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument(
        "--mix",
        choices=sorted(QUERIES),
        default="lists",
        help="lists: the dashboard's lists (default); full: with search",
    )
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.client:
        asyncio.run(client_main(args.client, args.concurrency, args.duration, args.mix))
        return
    pg = asyncio.run(postgres_version(args.postgres_url)) if args.backend == "postgresql" else None
    print_machine(machine(pg))
    r = asyncio.run(host_main(args))
    print(
        f"backend {args.backend}, mix {args.mix}: {r['sessions']:,} sessions, "
        f"{args.concurrency} clients, "
        f"{r['requests']:,} list requests in {r['elapsed']:.1f} s = "
        f"{r['requests'] / r['elapsed']:.0f} requests/s; latency p50 {r['p50']:.0f} ms, "
        f"p90 {r['p90']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms; "
        f"statuses {r['statuses']}; connection errors {len(r['transport_errors'])} "
        f"{sorted(set(r['transport_errors']))}"
    )


if __name__ == "__main__":
    main()
