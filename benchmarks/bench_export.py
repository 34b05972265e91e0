"""Export benchmark: ``sessiontrack export --format csv`` of 1,000,000 sessions, SQLite and
PostgreSQL, with the peak memory of the exporting process.

Uses the data set of bench_queries.py (run that first: it loads benchmarks/.data/ and the
``bench_q_*`` tables). Each export runs the real command in a process of its own: its wall
time, its peak RSS (``ru_maxrss`` from ``wait4``), and its RSS sampled every 0.2 s, so a
memory that grows with the export would show. Two exports show that memory does not
depend on how many sessions are exported: one chatbot's sessions, then all of them. The
baseline in the same run is the floor the driver sets: the same columns of every session
read with the plain driver (sqlite3, asyncpg COPY) and written as CSV.

    python benchmarks/bench_export.py                     # both backends
    python benchmarks/bench_export.py --backends sqlite --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

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
from bench_queries import PREFIX, Spec, sqlite_path

TARGET_S = 60.0
COLUMNS = (
    "id, conversation_id, chatbot_id, customer_phone, customer_name, status, current_node_id, "
    "current_node_label, started_at, updated_at, completed_at, node_count, message_count"
)


def _rss_kib(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def run_export(url: str, out: Path, *extra: str) -> dict[str, Any]:
    """One ``sessiontrack export`` in a child process: seconds, sessions, peak RSS, samples."""
    cmd = [
        sys.executable,
        "-m",
        "sessiontrack.cli",
        "export",
        "--database-url",
        url,
        "--prefix",
        PREFIX,
        "--format",
        "csv",
        "--output",
        str(out),
        *extra,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            rss = _rss_kib(proc.pid)
            if rss is not None:
                samples.append((time.monotonic() - started, rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(stderr.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    stop.set()
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = b"".join(err_chunks).decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"export failed ({proc.returncode}): {err[-2000:]}")
    m = re.search(r"exported (\d+) sessions as csv", err)
    return {
        "seconds": seconds,
        "sessions": int(m.group(1)) if m else None,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "bytes": out.stat().st_size,
        "rss_samples_mib": [
            (round(t, 1), round(k / 1024, 1)) for t, k in samples[:: max(1, len(samples) // 40)]
        ],
    }


def baseline_sqlite(path: Path, out: Path) -> float:
    started = time.monotonic()
    conn = sqlite3.connect(path)
    try:
        with out.open("w", newline="") as fh:
            w = csv.writer(fh)
            cur = conn.execute(
                f"SELECT {COLUMNS} FROM {PREFIX}sessions ORDER BY started_at DESC, id DESC"
            )
            while rows := cur.fetchmany(5000):
                w.writerows(rows)
    finally:
        conn.close()
    return time.monotonic() - started


async def baseline_postgres(url: str, out: Path) -> float:
    import asyncpg

    started = time.monotonic()
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.copy_from_query(
            f"SELECT {COLUMNS} FROM {PREFIX}sessions ORDER BY started_at DESC, id DESC",
            output=str(out),
            format="csv",
        )
    finally:
        await conn.close()
    return time.monotonic() - started


async def ready(backend: str, spec: Spec, pg_url: str) -> str | None:
    if backend == "sqlite":
        path = sqlite_path(spec)
        return f"sqlite+aiosqlite:///{path}" if path.exists() else None
    import asyncpg

    try:
        conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        key = await conn.fetchval(f"SELECT key FROM {PREFIX}bench_meta")
    except asyncpg.UndefinedTableError:
        key = None
    finally:
        await conn.close()
    return pg_url if key == spec.key else None


async def bench(backend: str, url: str, spec: Spec, runs: int, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{backend}.csv"
    load_before = os.getloadavg()
    if backend == "sqlite":
        base = [baseline_sqlite(sqlite_path(spec), out) for _ in range(runs)]
    else:
        base = [await baseline_postgres(url, out) for _ in range(runs)]
    one_bot = run_export(url, out, "--chatbot-id", "bot-03")
    full = [run_export(url, out) for _ in range(runs)]
    load_after = os.getloadavg()
    seconds = median([r["seconds"] for r in full])
    res = {
        "baseline_seconds": base,
        "one_chatbot": one_bot,
        "all": full,
        "median_seconds": seconds,
        "sessions_per_second": (full[0]["sessions"] or 0) / seconds,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    print_table(
        ["export", "sessions", "seconds", "sessions/s", "peak RSS MiB", "MiB written"],
        [
            [
                "one chatbot",
                one_bot["sessions"],
                f"{one_bot['seconds']:.1f}",
                f"{(one_bot['sessions'] or 0) / one_bot['seconds']:,.0f}",
                f"{one_bot['peak_rss_mib']:.0f}",
                f"{one_bot['bytes'] / 2**20:.0f}",
            ],
            *[
                [
                    f"all, run {i + 1}",
                    r["sessions"],
                    f"{r['seconds']:.1f}",
                    f"{(r['sessions'] or 0) / r['seconds']:,.0f}",
                    f"{r['peak_rss_mib']:.0f}",
                    f"{r['bytes'] / 2**20:.0f}",
                ]
                for i, r in enumerate(full)
            ],
            ["baseline (driver → csv)", "", f"{median(base):.1f}", "", "", ""],
        ],
    )
    rss = [mib for _, mib in full[-1]["rss_samples_mib"]]
    if rss:
        print(f"  RSS over the last full export: min {min(rss):.0f}, max {max(rss):.0f} MiB")
    print(
        f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"median {seconds:.1f} s: {verdict(seconds, TARGET_S, at_most=True)} "
        f"(target ≤ {TARGET_S:.0f} s)\n",
        flush=True,
    )
    return res


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    spec = Spec(sessions=args.sessions, events=args.events)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    pg_version = await postgres_version(args.postgres_url) if "postgresql" in backends else None
    info = machine(pg_version)
    print_machine(info)
    results: dict[str, Any] = {"machine": info, "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            print(f"== {backend} ==", flush=True)
            url = await ready(backend, spec, args.postgres_url)
            if url is None:
                print("  no data set: run benchmarks/bench_queries.py --load-only first\n")
                continue
            results[backend] = await bench(backend, url, spec, args.runs, Path(tmp))
    write_json(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
