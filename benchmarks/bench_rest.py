"""REST list throughput: 50 concurrent clients on a 1,000,000-session database.

Reuses the data set of ``bench_queries.py`` (1,000,000 sessions, 10,000,000 events; cached
in benchmarks/.data/ for SQLite, under the ``bench_q_`` prefix on PostgreSQL, loaded on
first use). ``sessiontrack serve`` serves it as a user would run it (``--workers N``: N
processes on one port); a second process runs the clients: 50 concurrent HTTP/1.1
keep-alive connections, each sending list requests back to back for the given duration,
cycling through a realistic mix (first page of all sessions, of active ones, of one
chatbot, of completed ones, a search, a second page by cursor). Reports requests/s,
latency percentiles and the CPU time the server and the clients spent per request (the
figure to compare on a machine shared with other work). ``--mix full`` adds a substring
search and a status filter sorted by ``updatedAt``.

    python benchmarks/bench_rest.py                        # SQLite, 15 s
    python benchmarks/bench_rest.py --backend postgresql --duration 20
    python benchmarks/bench_rest.py --workers 2
    python benchmarks/bench_rest.py --code /path/to/main    # a baseline: main's server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for GET
    requests answered with a ``Content-Length`` body. httpx costs 3.6 ms of CPU per request
    here, more than the server does: on two cores it, not the server, capped the figure."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.head = f"Host: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"GET " + target + b" HTTP/1.1\r\n" + self.head)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.writer = None
            raise
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding":
                raise RuntimeError("chunked answers are not expected here")
        return status, await self.reader.readexactly(length)


async def client_main(url: str, concurrency: int, duration: float, mix_name: str) -> None:
    import orjson

    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    status, body = await Connection(host, int(port)).get(MOUNT.encode() + b"/?limit=20")
    assert status == 200, body
    mix = [*QUERIES[mix_name], {"cursor": orjson.loads(body)["nextCursor"]}]
    targets = [f"{MOUNT}/?{urlencode({'limit': '20', **params})}".encode() for params in mix]
    end = time.perf_counter() + duration

    async def worker(i: int) -> None:
        conn = Connection(host, int(port))
        n = i
        while time.perf_counter() < end:
            target = targets[n % len(targets)]
            n += 1
            t0 = time.perf_counter()
            try:
                status, body = await conn.get(target)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(type(exc).__name__)
                continue
            if status == 200:
                orjson.loads(body)  # a whole, valid answer
            latencies.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
        if conn.writer is not None:
            conn.writer.close()

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "elapsed": elapsed,
                "client_cpu": client_cpu,
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


def serve_command(url: str, port: int, workers: int, http: str | None = None) -> list[str]:
    """``sessiontrack serve`` as a user runs it."""
    from bench_queries import PREFIX

    cmd = [sys.executable, "-m", "sessiontrack.cli", "serve", "--database-url", url]
    cmd += ["--prefix", PREFIX, "--port", str(port), "--mount-path", MOUNT]
    if workers != 1:
        cmd += ["--workers", str(workers)]
    if http is not None:
        cmd += ["--http", http]
    return cmd


async def wait_until_serving(url: str, proc: asyncio.subprocess.Process) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url + MOUNT, timeout=60) as http:
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"sessiontrack serve exited with {proc.returncode}")
            try:
                if (await http.get("/stats")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("sessiontrack serve did not answer within 120 s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and its living descendants, from /proc:
    on a machine shared with other work, CPU per request compares runs that the
    requests per second alone cannot."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tasks = Path(f"/proc/{pid}/task").iterdir()
        children = [c for task in tasks for c in (task / "children").read_text().split()]
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / tick
    return own + sum(cpu_seconds(int(child)) for child in children)


async def host_main(args: argparse.Namespace) -> dict[str, Any]:
    from bench_queries import PREFIX, Spec, cached_load

    import sessiontrack

    url, _ = await cached_load(
        args.backend, Spec(sessions=args.sessions, events=args.events), args.postgres_url, False
    )
    # Brings the schema to this checkout's head (serve itself never migrates PostgreSQL).
    tracker = sessiontrack.Tracker(url, prefix=PREFIX, migrate=True, sweep_interval=None)
    async with tracker:
        total = (await tracker.sessions.list(limit=1)).total
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    if args.code:  # another checkout's sessiontrack (e.g. main's), for a same-run baseline
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.code, env.get("PYTHONPATH")]))
    server = await asyncio.create_subprocess_exec(
        *serve_command(url, port, args.workers, args.http),
        env=env,
        cwd=args.code,  # python -m puts the working directory first on sys.path
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_until_serving(base, server)
        cpu_before = cpu_seconds(server.pid)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            base,
            "--concurrency",
            str(args.concurrency),
            "--duration",
            str(args.duration),
            "--mix",
            args.mix,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        result: dict[str, Any] = json.loads(await proc.stdout.readline())
        result["server_cpu"] = cpu_seconds(server.pid) - cpu_before
        await proc.wait()
    finally:
        server.terminate()
        await server.wait()
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
    parser.add_argument(
        "--http",
        choices=["auto", "httptools", "h11"],
        help="sessiontrack serve --http (the HTTP parser; default: serve's own default)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="sessiontrack serve --workers (default 1)"
    )
    parser.add_argument(
        "--code",
        help="serve another checkout's sessiontrack (a folder put first on PYTHONPATH), "
        "e.g. main's, to measure a baseline in the same run",
    )
    parser.add_argument("--sessions", type=int, default=1_000_000, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=10_000_000, help=argparse.SUPPRESS)
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
        f"backend {args.backend}, mix {args.mix}, {args.workers} worker(s)"
        f"{', code ' + args.code if args.code else ''}: {r['sessions']:,} sessions, "
        f"{args.concurrency} clients, "
        f"{r['requests']:,} list requests in {r['elapsed']:.1f} s = "
        f"{r['requests'] / r['elapsed']:.0f} requests/s; latency p50 {r['p50']:.0f} ms, "
        f"p90 {r['p90']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms; "
        f"server CPU {r['server_cpu'] * 1000 / max(r['requests'], 1):.2f} ms per request, "
        f"client CPU {r['client_cpu'] * 1000 / max(r['requests'], 1):.2f} ms per request; "
        f"statuses {r['statuses']}; connection errors {len(r['transport_errors'])} "
        f"{sorted(set(r['transport_errors']))}"
    )


if __name__ == "__main__":
    main()
