"""`sessiontrack serve --workers 2`: two processes on one port, each delivering every
event once and in order to its own SSE and Socket.IO clients (real uvicorn workers, real
clients, connections checked in /proc to have reached both workers), on both backends."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx
import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import engine
from web_helpers.live import PREFIX, settle
from web_helpers.processes import serve_pid, serve_process
from web_helpers.sockets import Probe, socket_client
from web_helpers.sse_client import SSEReader, sse_stream

import sessiontrack

__all__ = ["engine"]
pytestmark = [pytest.mark.anyio, pytest.mark.slow]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
SESSIONS = 6
PER_SESSION = 6
TWO = ("--workers", "2")


def workers_of(port: int) -> list[int]:
    """The worker processes of the ``sessiontrack serve`` listening on ``port``."""
    parent = serve_pid(port)
    workers = []
    # a worker started again is the child of the supervisor's thread that started it
    for task in Path(f"/proc/{parent}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # a thread that ended
            continue
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # a worker that just died
                continue
            if b"multiprocessing.spawn" in cmdline:
                workers.append(int(pid))
    return workers


def connections_by_worker(port: int) -> dict[int, int]:
    """How many established connections to ``port`` each worker holds (from /proc)."""
    owner: dict[str, int] = {}
    workers = workers_of(port)
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    counts = dict.fromkeys(workers, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in owner:
                counts[owner[fields[9]]] += 1
    return counts


def serve_log(folder: Path) -> str:
    return next(folder.glob("serve-*.log")).read_text()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def expected(tracker: sessiontrack.Tracker, after: int) -> list[tuple[int, str, str]]:
    events = await tracker.store.events_after(after, limit=10_000)
    return [(e.seq, e.wire_name, e.session_id) for e in events]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_client_of_every_worker_gets_every_event(
    database_url: str, prefix: str, tracker: sessiontrack.Tracker, engine: Engine, tmp_path: Path
) -> None:
    engine.register("bot")
    await settle(tracker)
    start = await tracker.store.last_seq()
    async with (
        serve_process(database_url, prefix, tmp_path, args=TWO) as url,
        AsyncExitStack() as stack,
    ):
        port = port_of(url)
        assert len(workers_of(port)) == 2
        clients: list[Probe | SSEReader] = []
        # New connections spread over the workers: open clients until both have some.
        with anyio.fail_after(60):
            while min(connections_by_worker(port).values()) < 2 or len(clients) < 4:
                probe = await stack.enter_async_context(socket_client(url))
                assert await probe.call("sessions:subscribe") == {"success": True}
                http = await stack.enter_async_context(httpx.AsyncClient(base_url=url + PREFIX))
                reader = await stack.enter_async_context(sse_stream(http))
                clients += [probe, reader]
        for _ in range(SESSIONS):
            engine.full_run("bot")
        await tracker.flush()
        total = SESSIONS * PER_SESSION
        want = await expected(tracker, start)
        assert len(want) == total
        for client in clients:
            if isinstance(client, Probe):
                got = [(d["seq"], n, d["sessionId"]) for n, d in await client.wait_for(total)]
            else:
                got = [(e.id, e.event, e.data["sessionId"]) for e in await client.take(total)]
            assert got == want
        # A client resumes with Last-Event-ID on whichever worker its new connection meets.
        middle = want[total // 2][0]
        async with (
            httpx.AsyncClient(base_url=url + PREFIX) as http,
            sse_stream(http, headers={"Last-Event-ID": str(middle)}) as resumed,
        ):
            rest = await resumed.take(total - total // 2 - 1)
        assert [e.id for e in rest] == [w[0] for w in want[total // 2 + 1 :]]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_polling_is_refused_and_lists_answer_from_both_workers(
    database_url: str, prefix: str, tracker: sessiontrack.Tracker, engine: Engine, tmp_path: Path
) -> None:
    engine.register("bot")
    for _ in range(3):
        engine.full_run("bot")
    await tracker.flush()
    async with serve_process(database_url, prefix, tmp_path, args=TWO) as url:
        port = port_of(url)
        # Long-polling would scatter one Socket.IO connection's requests over the workers.
        async with httpx.AsyncClient(base_url=url + PREFIX) as http:
            polled = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert polled.status_code == 400
        clients = [httpx.AsyncClient(base_url=url + PREFIX) for _ in range(16)]
        async with AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
                page = (await client.get("/", params={"limit": 2})).json()
                assert page["total"] == 3 and len(page["data"]) == 2
            assert all(n > 0 for n in connections_by_worker(port).values())


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_dead_worker_is_replaced(
    database_url: str, prefix: str, tracker: sessiontrack.Tracker, tmp_path: Path
) -> None:
    async with serve_process(database_url, prefix, tmp_path, args=TWO) as url:
        port = port_of(url)
        first, second = workers_of(port)
        os.kill(first, signal.SIGKILL)
        with anyio.fail_after(60):
            while True:
                workers = workers_of(port)
                if len(workers) == 2 and first not in workers:
                    break
                await anyio.sleep(0.2)
        assert second in workers
        # the new worker serves once its tracker runs; every request finds a worker
        async with httpx.AsyncClient(base_url=url + PREFIX) as http:
            for _ in range(20):
                assert (await http.get("/stats")).status_code == 200
    assert "exited with -9; starting it again" in serve_log(tmp_path)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_workers_must_be_positive(database_url: str, tracker: sessiontrack.Tracker) -> None:
    cmd = [sys.executable, "-m", "sessiontrack.cli", "serve", "--database-url", database_url]
    proc = await anyio.run_process([*cmd, "--workers", "0"], check=False)
    assert proc.returncode == 2
    assert b"--workers must be at least 1, got 0" in proc.stderr
