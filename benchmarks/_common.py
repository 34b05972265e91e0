"""Shared helpers of the benchmarks: the machine they ran on, percentiles, printing."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / ".data"
POSTGRES_URL = os.environ.get(
    "SESSIONTRACK_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


async def postgres_version(url: str) -> str | None:
    """The server's version string, or ``None`` when it cannot be reached."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return str(await conn.scalar(text("SHOW server_version")))
    except Exception:
        return None
    finally:
        await engine.dispose()


def machine(pg_version: str | None = None) -> dict[str, Any]:
    """A description of the machine and the software the benchmark runs on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_ram_gib(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version or "not measured",
        "sqlalchemy": _version("sqlalchemy"),
        "aiosqlite": _version("aiosqlite"),
        "asyncpg": _version("asyncpg"),
        "pluggy": _version("pluggy"),
        "load_avg_at_start": " ".join(f"{x:.2f}" for x in load),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def print_machine(info: dict[str, Any]) -> None:
    print("machine:")
    for key, value in info.items():
        print(f"  {key:<18} {value}")
    print(flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation."""
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(value: float, target: float, *, at_most: bool) -> str:
    """``met`` or ``MISSED`` for ``value`` against ``target``."""
    ok = value <= target if at_most else value >= target
    return "met" if ok else "MISSED"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print(flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def progress(message: str) -> None:
    """A progress line on stderr that the next one overwrites."""
    sys.stderr.write(f"\r  {message}\033[K")
    sys.stderr.flush()


def progress_done() -> None:
    sys.stderr.write("\r\033[K")
    sys.stderr.flush()


@contextmanager
def timed(label: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    print(f"  {label}: {time.perf_counter() - t0:.1f} s", flush=True)


def write_json(path: str | None, results: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {path}")
