"""Many live clients of a real ``sessiontrack serve`` process while an engine reports.

Socket.IO clients (python-socketio, websocket transport) and SSE clients connect to the
server; most follow every session, the others one long-running session each. The engine
(this process's own tracker) reports at a steady rate. Afterwards each client's events
are compared with the engine's own subscription to the log: every event it should get,
once, in order. The server's resident memory is sampled from /proc meanwhile.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from web_helpers.live import PREFIX, wait_until
from web_helpers.processes import rss_kib, serve_pid, serve_process
from web_helpers.sockets import Probe, socket_client
from web_helpers.sse_client import SSEEvent, SSEReader, sse_stream

import sessiontrack
from sessiontrack.events import StoredEvent

from .script import BOTS, LAST, report

LONG_SESSIONS = 10
Seen = list[tuple[int, str]]  # (seq, event name) as a client received them


@dataclass
class SoakResult:
    socket_clients: int
    sse_clients: int
    events: int = 0
    expected: int = 0  # deliveries: the events each client should get, summed
    received: int = 0
    missing: int = 0
    duplicated: int = 0
    reordered: int = 0
    unexpected: int = 0
    disconnected: int = 0  # socket clients the server dropped (a ping timeout, say)
    rss_connected_kb: int = 0  # the server once every client is connected, before load
    rss_peak_kb: int = 0
    rss_end_kb: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def faults(self) -> int:
        return self.missing + self.duplicated + self.reordered + self.unexpected

    def compare(self, name: str, got: Seen, want: Seen) -> None:
        self.expected += len(want)
        self.received += len(got)
        seqs = [s for s, _ in got]
        self.duplicated += len(seqs) - len(set(seqs))
        self.reordered += sum(b < a for a, b in itertools.pairwise(seqs))
        missing, unexpected = set(want) - set(got), set(got) - set(want)
        self.missing += len(missing)
        self.unexpected += len(unexpected)
        if got != want and len(self.problems) < 20:
            self.problems.append(
                f"{name}: got {len(got)} events, want {len(want)}; "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )


class _Engine:
    """Short scripted sessions, plus node executions on the long sessions clients follow."""

    def __init__(self, tracker: sessiontrack.Tracker, seed: int) -> None:
        self.tracker = tracker
        self.hook: Any = tracker.plugin_manager.hook
        self.long_sids = [sessiontrack.new_session_id() for _ in range(LONG_SESSIONS)]
        self.rng = random.Random(seed)
        self.progress: dict[str, int] = {}
        self.made = 0
        for sid in self.long_sids:
            report(self.hook, sid, 0, BOTS[1])

    def one(self) -> None:
        self.made += 1
        if self.rng.random() < 0.2:
            sid = self.rng.choice(self.long_sids)
            self.hook.sessiontrack_node_executed(session_id=sid, node_id=f"x{self.made}")
            return
        while len(self.progress) < 20:
            self.progress[sessiontrack.new_session_id()] = 0
        sid = self.rng.choice(list(self.progress))
        report(self.hook, sid, self.progress[sid], BOTS[0])
        self.progress[sid] += 1
        if self.progress[sid] > LAST:
            del self.progress[sid]

    async def run(self, duration: float, rate: float) -> None:
        """Report at ``rate`` for ``duration`` seconds, checkpointing every second."""
        t0 = time.monotonic()
        next_flush = t0 + 1
        while (now := time.monotonic()) < t0 + duration:
            while self.made < int((now - t0) * rate):
                self.one()
            if now >= next_flush:
                await self.tracker.flush()
                next_flush = now + 1
            await anyio.sleep(0.02)
        await self.tracker.flush()


@dataclass
class _Clients:
    """The connected clients: (session followed or None for all, what it received)."""

    sockets: list[tuple[str | None, Probe]] = field(default_factory=list)
    sse: list[tuple[str | None, SSEReader, list[SSEEvent]]] = field(default_factory=list)

    def received(self) -> list[tuple[str, str | None, Seen]]:
        out = [
            (f"socket {n}", f, [(int(d["seq"]), name) for name, d in probe.events()])
            for n, (f, probe) in enumerate(self.sockets)
        ]
        out += [
            (f"sse {n}", f, [(e.id, e.event) for e in got])
            for n, (f, _, got) in enumerate(self.sse)
        ]
        return out


async def _socket(base: str, follows: str | None, clients: _Clients, stop: anyio.Event) -> None:
    """One Socket.IO client, connected and subscribed until ``stop``."""
    async with socket_client(base) as probe:
        if follows is None:
            answer = await probe.call("sessions:subscribe")
        else:
            answer = await probe.call("session:join", {"sessionId": follows})
        assert answer["success"], answer
        clients.sockets.append((follows, probe))
        await stop.wait()


async def _connected(clients: _Clients, n: int) -> None:
    await wait_until(lambda: len(clients.sockets) >= n, within=60)


async def _connect(
    stack: AsyncExitStack, base: str, long_sids: list[str], sockets: int, sse: int
) -> _Clients:
    """Connect the clients, a few at a time (connecting 200 one by one takes long on a
    busy machine); they disconnect when ``stack`` closes."""
    clients, stop = _Clients(), anyio.Event()
    tg = await stack.enter_async_context(anyio.create_task_group())
    stack.callback(stop.set)  # runs first: the task group then waits for the disconnects
    for i in range(sockets):
        follows = long_sids[i % len(long_sids)] if i % 4 == 3 else None
        tg.start_soon(_socket, base, follows, clients, stop)
        if i % 20 == 19:
            await _connected(clients, i + 1)
    await _connected(clients, sockets)
    http = await stack.enter_async_context(
        httpx.AsyncClient(base_url=base + PREFIX, limits=httpx.Limits(max_connections=sse + 5))
    )
    for i in range(sse):
        follows = long_sids[i % len(long_sids)] if i % 5 == 4 else None
        params = {"sessionId": follows} if follows else {}
        reader = await stack.enter_async_context(sse_stream(http, params=params))
        clients.sse.append((follows, reader, []))
    return clients


async def _read_sse(reader: SSEReader, into: list[SSEEvent]) -> None:
    while True:
        try:
            into.append(await reader.next(within=3600))
        except EOFError:
            return


async def _sample_rss(pid: int, into: list[tuple[float, int]]) -> None:
    t0 = time.monotonic()
    while True:
        into.append((time.monotonic() - t0, rss_kib(pid)))
        await anyio.sleep(1)


def _want(ref: list[StoredEvent], follows: str | None) -> Seen:
    return [(e.seq, e.wire_name) for e in ref if follows is None or e.session_id == follows]


async def _catch_up(clients: _Clients, ref: list[StoredEvent], made: int) -> None:
    """Wait (bounded) until every client has as many events as it should; what is still
    missing after that is reported as missing."""
    try:
        await wait_until(lambda: len(ref) >= made, within=60)
        await wait_until(
            lambda: all(len(got) >= len(_want(ref, f)) for _, f, got in clients.received()),
            within=60,
        )
    except TimeoutError:
        return
    await anyio.sleep(1)  # anything extra or repeated would arrive now


async def soak(
    url: str,
    prefix: str,
    log_dir: Path,
    *,
    sockets: int = 200,
    sse: int = 50,
    duration: float = 60,
    rate: float = 25,
    seed: int = 0,
) -> SoakResult:
    result = SoakResult(sockets, sse)
    async with sessiontrack.Tracker(
        url, prefix=prefix, migrate=True, sweep_interval=None
    ) as tracker:
        engine = _Engine(tracker, seed)
        await tracker.flush()  # the long sessions exist before the server starts
        ref: list[StoredEvent] = []
        async with serve_process(url, prefix, log_dir) as base, AsyncExitStack() as stack:
            pid = serve_pid(int(base.rsplit(":", 1)[1]))
            sub = await stack.enter_async_context(tracker.subscribe())
            clients = await _connect(stack, base, engine.long_sids, sockets, sse)
            result.rss_connected_kb = rss_kib(pid)
            async with anyio.create_task_group() as tg:

                async def collect_ref() -> None:
                    async for event in sub:
                        ref.append(event)

                tg.start_soon(collect_ref)
                for _, reader, into in clients.sse:
                    tg.start_soon(_read_sse, reader, into)
                tg.start_soon(_sample_rss, pid, result.rss_samples)
                await engine.run(duration, rate)
                result.events = engine.made
                await _catch_up(clients, ref, engine.made)
                result.rss_end_kb = rss_kib(pid)
                tg.cancel_scope.cancel()
            for name, follows, got in clients.received():
                result.compare(name, got, _want(ref, follows))
            result.disconnected = sum(not p.client.connected for _, p in clients.sockets)
            if result.disconnected:
                load = " ".join(f"{x:.1f}" for x in os.getloadavg())
                result.problems.insert(
                    0, f"{result.disconnected} socket clients disconnected (load {load})"
                )
    result.rss_peak_kb = max(kb for _, kb in result.rss_samples)
    return result
