"""The fault scenarios, shared by tests/test_faults.py (small) and bench_faults.py (large).

Each runs real processes and a real database, then checks the store with the ledger of
:mod:`.script` and returns what it found; the caller asserts (tests) or prints (benchmark).
Durations here only drive the scenarios; nothing is asserted about them.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from web_helpers.live import wait_until

import sessiontrack

from .paced import PacedEngine
from .pgcluster import PrivateCluster
from .script import Counts, check_reads, compare_log, read_acks, read_log

TESTS_DIR = Path(__file__).resolve().parent.parent


DETAILS = 150  # session details read per check, drawn at random (the list reads all)


async def verify(url: str, prefix: str, acked: dict[str, int], *, details: int = DETAILS) -> Counts:
    """Open the store afresh (as a restarted dashboard would) and check it: the whole log,
    the whole list, and ``details`` session details drawn at random."""
    async with sessiontrack.Tracker(url, prefix=prefix, sweep_interval=None) as tracker:
        log = await read_log(tracker)
        counts = compare_log(log, acked)
        counts.details_read = await check_reads(tracker, log, counts, sample=details)
    return counts


# --- kill -9 --------------------------------------------------------------------------------


@dataclass
class KillResult:
    counts: Counts
    rounds: int
    killed: int  # rounds that ended with SIGKILL (an engine that died first is a failure)
    acked_per_round: list[int] = field(default_factory=list)


async def _start_engine(url: str, prefix: str, acks: Path, seed: int, log: Path) -> Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path])}
    args = [url, prefix, str(acks), "--seed", str(seed)]
    with log.open("wb") as err:
        proc = await anyio.open_process(
            [sys.executable, "-m", "fault_helpers.engine_proc", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
    assert proc.stdout is not None
    with anyio.fail_after(60):
        line = b""
        while b"ready" not in line:
            chunk = await proc.stdout.receive()
            line += chunk
    return proc


async def kill_rounds(
    url: str,
    prefix: str,
    workdir: Path,
    *,
    rounds: int,
    seed: int,
    run_after_first_ack: tuple[float, float] = (0.2, 1.5),
    on_round: Callable[[int, int], None] | None = None,
    details: int = DETAILS,
) -> KillResult:
    """Start an engine process, let it report and checkpoint, SIGKILL it at a random
    moment after its first acknowledged checkpoint; ``rounds`` times; then check."""
    rng = random.Random(seed)
    result = KillResult(Counts(), rounds, 0)
    paths: list[Path] = []
    for r in range(rounds):
        acks = workdir / f"acks-{r}.txt"
        paths.append(acks)
        proc = await _start_engine(url, prefix, acks, rng.randrange(2**31), workdir / f"e{r}.log")
        try:
            with anyio.fail_after(60):
                while not acks.exists() or acks.stat().st_size == 0:
                    if proc.returncode is not None:
                        break
                    await anyio.sleep(0.02)
            await anyio.sleep(rng.uniform(*run_after_first_ack))
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            with anyio.fail_after(30):
                await proc.wait()
        if proc.returncode == -signal.SIGKILL:
            result.killed += 1
        else:
            result.counts.note(f"round {r}: engine exited with {proc.returncode}")
        result.acked_per_round.append(sum(read_acks([acks]).values()))
        if on_round is not None:
            on_round(r, result.acked_per_round[-1])
    problems = result.counts.problems
    result.counts = await verify(url, prefix, read_acks(paths), details=details)
    result.counts.problems[:0] = problems
    return result


# --- faults under a paced in-process engine -------------------------------------------------


class _Warnings(logging.Handler):
    """Counts the library's warnings while installed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@asynccontextmanager
async def _warnings() -> AsyncIterator[_Warnings]:
    handler = _Warnings()
    logger = logging.getLogger("sessiontrack")
    logger.addHandler(handler)
    old = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


@dataclass
class FaultResult:
    counts: Counts
    reported: int
    reported_during_fault: int
    buffered_at_recovery: int  # tracker.stats.buffered just before the fault ended
    max_buffered: int
    retries: int
    dropped_overflow: int
    failed: int
    warnings: int
    flushes: int
    flushes_blocked: int  # called before recovery, needing reports uncommitted at the fault
    flushes_returned_in_fault: int  # of those, returned while the fault lasted: must be 0
    hook_errors: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


async def run_with_fault(
    url: str,
    prefix: str,
    *,
    rate: float,
    before: float,
    after: float,
    inject: Callable[[PacedEngine], Awaitable[None]],
    max_buffered: int = 100_000,
    retry_max: float = 1.0,
    seed: int = 0,
    details: int = DETAILS,
) -> FaultResult:
    """Run a paced engine; ``inject`` starts the fault, calls ``engine.begin_fault()``, waits
    as long as the fault should last, ends it and calls ``engine.end_fault()``."""
    options: dict[str, Any] = {"max_buffered": max_buffered, "retry_max": retry_max}
    async with (
        _warnings() as warned,
        sessiontrack.Tracker(
            url, prefix=prefix, migrate=True, sweep_interval=None, poll_interval=0.2, **options
        ) as tracker,
    ):
        engine = PacedEngine(tracker, rate, seed=seed)
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.report_forever)
            tg.start_soon(engine.checkpoint_forever)
            await anyio.sleep(before)
            warned_before = len(warned.records)
            await inject(engine)
            await anyio.sleep(after)
            engine.stop()
        await engine.checkpoint()  # everything reported is acknowledged after this
        stats = tracker.stats
        warnings = len(warned.records) - warned_before
    blocked = engine.blocked_flushes()
    counts = await verify(url, prefix, engine.acked, details=details)
    return FaultResult(
        counts=counts,
        reported=engine.made,
        reported_during_fault=engine.made_at_recovery - (engine.made_at_fault or 0),
        buffered_at_recovery=engine.buffered_at_recovery,
        max_buffered=max_buffered,
        retries=stats.retries,
        dropped_overflow=stats.dropped_overflow,
        failed=stats.failed,
        warnings=warnings,
        flushes=len(engine.flushes),
        flushes_blocked=len(blocked),
        flushes_returned_in_fault=sum(f.returned_in_fault for f in blocked),
        hook_errors=[repr(e) for e in engine.errors],
    )


async def pg_outage(
    cluster: PrivateCluster, prefix: str, *, rate: float, outage: float, **kw: Any
) -> FaultResult:
    """PostgreSQL crashes (``pg_ctl stop -m immediate``) for ``outage`` seconds."""

    async def inject(engine: PacedEngine) -> None:
        await anyio.to_thread.run_sync(cluster.crash)
        engine.begin_fault()
        await anyio.sleep(outage)
        engine.sample_buffer()
        await anyio.to_thread.run_sync(cluster.start)
        engine.end_fault()

    return await run_with_fault(cluster.url, prefix, rate=rate, inject=inject, **kw)


LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
print("released", flush=True)
"""


async def sqlite_lock(
    path: Path, prefix: str, *, rate: float, calls_after_retry: int, **kw: Any
) -> FaultResult:
    """Another process holds SQLite's write lock (``BEGIN IMMEDIATE``) until the writer
    has given up waiting at least once (the 10 s busy timeout) and the engine has made
    ``calls_after_retry`` more hook calls; then it lets go."""
    url = f"sqlite+aiosqlite:///{path}"
    extra: dict[str, Any] = {}

    async def inject(engine: PacedEngine) -> None:
        async with await anyio.open_process(
            [sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE
        ) as locker:
            assert locker.stdout is not None and locker.stdin is not None
            with anyio.fail_after(30):
                assert b"locked" in await locker.stdout.receive()
            # A batch that committed just before the locker got the lock may not be
            # counted yet (the writer resumes after its COMMIT in its own time); nothing
            # can commit from here on, so let that count settle before noting the fault.
            await anyio.sleep(0.2)
            engine.begin_fault()
            retries = engine.tracker.stats.retries
            await wait_until(lambda: engine.tracker.stats.retries > retries, within=60)
            extra["calls_before_first_retry"] = engine.made - (engine.made_at_fault or 0)
            target = engine.made + calls_after_retry
            await wait_until(lambda: engine.made >= target, within=60)
            engine.sample_buffer()
            await locker.stdin.send(b"go\n")
            with anyio.fail_after(30):
                await locker.wait()
            engine.end_fault()

    result = await run_with_fault(url, prefix, rate=rate, inject=inject, **kw)
    result.extra.update(extra)
    return result
