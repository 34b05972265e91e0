"""Analytics benchmark on the bench_queries.py data set (1,000,000 sessions, 10,000,000 events).

Reuses that benchmark's generator, loader and cache (SQLite file in benchmarks/.data/,
PostgreSQL tables under ``bench_q_``). The loader writes the tables directly, so the
rollups are built afterwards, once, and cached with the data: by migration 0005 when the
tables are still at an older revision (timed: that is the migration of an existing
database), otherwise by ``sessiontrack analytics rebuild`` (timed, events/s). Then every
analytics call (``tracker.analytics.summary/nodes/paths/funnel/versions``) and the REST
routes are timed for one chatbot over 30 days, for the biggest chatbot and a middling
one, against baselines measured in the same run: the first page of the chatbot's
sessions (``tracker.sessions.list`` and ``GET /``) and the summary's figures computed by
a plain SQL aggregate over the sessions table.

    python benchmarks/bench_analytics.py                      # both backends
    python benchmarks/bench_analytics.py --backends sqlite --reps 50
    python benchmarks/bench_analytics.py --rebuild            # time a full rebuild again
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import pstats
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
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
    percentile,
    postgres_version,
    print_machine,
    print_table,
    progress,
    progress_done,
    verdict,
    write_json,
)
from bench_queries import PREFIX, Spec, _pg_dsn, cached_load, sqlite_path

import sessiontrack
from sessiontrack.store import SQLAlchemyStore, _migrate

MOUNT = "/api/chatbot-sessions"
DAYS = 30
TARGET_MS = 100.0
GOAL_MS = 20.0
FUNNEL_STEPS = ["n0", "n3", "n6", "n9"]
ROUTES = ["summary", "nodes", "paths", "funnel", "versions"]

# --- the rollups: migration and rebuild, cached with the data ----------------------------


def _meta_path(spec: Spec) -> Path:
    return sqlite_path(spec).with_suffix(".analytics.json")


async def _load_id(backend: str, spec: Spec, url: str) -> str:
    """What identifies the cached load (a reload gives another), for the cached figures."""
    if backend == "sqlite":
        return sqlite_path(spec).with_suffix(".json").read_text()
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(sa.text(f"SELECT key, load_seconds FROM {PREFIX}bench_meta"))
            ).one()
            return f"{row[0]}/{row[1]}"
    finally:
        await engine.dispose()


async def _read_meta(backend: str, spec: Spec, url: str) -> dict[str, Any]:
    load_id = await _load_id(backend, spec, url)
    if backend == "sqlite":
        path = _meta_path(spec)
        meta = json.loads(path.read_text()) if path.exists() else {}
    else:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(f"CREATE TABLE IF NOT EXISTS {PREFIX}bench_an_meta (doc text)")
                )
                doc = await conn.scalar(sa.text(f"SELECT doc FROM {PREFIX}bench_an_meta"))
            meta = json.loads(doc) if doc else {}
        finally:
            await engine.dispose()
    return meta if meta.get("load_id") == load_id else {"load_id": load_id}


async def _write_meta(backend: str, spec: Spec, url: str, meta: dict[str, Any]) -> None:
    if backend == "sqlite":
        _meta_path(spec).write_text(json.dumps(meta, indent=2))
        return
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DELETE FROM {PREFIX}bench_an_meta"))
            await conn.execute(
                sa.text(f"INSERT INTO {PREFIX}bench_an_meta VALUES (:d)"), {"d": json.dumps(meta)}
            )
    finally:
        await engine.dispose()


async def _revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_migrate.current, PREFIX)
    finally:
        await engine.dispose()


async def _count(url: str, table: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {PREFIX}{table}")) or 0)
    except sa.exc.DBAPIError:
        return -1
    finally:
        await engine.dispose()


async def _analyze(backend: str, url: str) -> None:
    """PostgreSQL: ANALYZE the rollup tables, as autovacuum soon does after a bulk build
    (the data set's other tables got VACUUM ANALYZE at load). SQLite: nothing, as for
    the rest of the data set."""
    if backend != "postgresql":
        return
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            names = await conn.run_sync(
                lambda c: [
                    n for n in sa.inspect(c).get_table_names() if n.startswith(PREFIX + "an_")
                ]
            )
            for name in names:
                await conn.execute(sa.text(f"VACUUM ANALYZE {name}"))
    finally:
        await engine.dispose()


async def time_migration(url: str, *, again: bool) -> float | None:
    """Upgrade the tables to the newest revision, timed (``None`` if already there).
    ``again``: first downgrade to the revision before analytics (0004), then upgrade."""
    rev = await _revision(url)
    if again and rev is not None and rev > "0004":
        from alembic import command

        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(
                    lambda c: command.downgrade(_migrate._config(c, PREFIX), "0004")
                )
        finally:
            await engine.dispose()
        rev = "0004"
    if rev == _migrate.HEAD:
        return None
    print(f"  upgrading the tables from revision {rev} to {_migrate.HEAD} ...", flush=True)
    t0 = time.perf_counter()

    class Show(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            progress(f"{time.perf_counter() - t0:.0f} s: {record.getMessage()}")

    log = logging.getLogger("sessiontrack.migrations")
    handler, level = Show(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    store = SQLAlchemyStore(url, prefix=PREFIX)
    try:
        await store.open(migrate=True)
        await store.close()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        progress_done()
    return time.perf_counter() - t0


async def time_rebuild(url: str) -> float:
    """What ``sessiontrack analytics rebuild`` runs (``analytics._rebuild.rebuild``: clear
    and replay the whole log in one transaction), in this process, with its progress."""
    from sessiontrack.analytics._rebuild import rebuild

    print("  rebuilding the rollups from the log ...", flush=True)
    store = SQLAlchemyStore(url, prefix=PREFIX)
    await store.open(migrate=False)
    t0 = time.perf_counter()

    def show(done: int, total: int) -> None:
        el = time.perf_counter() - t0
        progress(f"rebuild: {done:,}/{total:,} events, {el:.0f} s, {done / max(el, 1e-9):,.0f}/s")

    try:
        await rebuild(store, progress=show)
    finally:
        progress_done()
        await store.close()
    return time.perf_counter() - t0


async def copy_rollups(spec: Spec, url: str) -> float:
    """PostgreSQL: the rollups built on the SQLite copy of the same data set (the same
    log, seq for seq), copied over, instead of replaying the log a second time: the
    tables are created as migration 0005 creates them and the revision stamped 0005.
    Returns the seconds the copy took (not a figure of the library)."""
    import asyncpg

    from sessiontrack.store._tables import analytics_tables

    src = sqlite_path(spec)
    db = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    if (
        db.execute(f"SELECT version_num FROM {PREFIX}alembic_version").fetchone()
        != (_migrate.HEAD,)
        or db.execute(f"SELECT count(*) FROM {PREFIX}an_traces").fetchone()[0] < spec.sessions
    ):
        raise SystemExit(f"{src} has no rollups yet: run --backends sqlite first")
    t0 = time.perf_counter()
    md = sa.MetaData()
    tables = analytics_tables(md, PREFIX)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for t in reversed(tables):
            await conn.execute(sa.text(f"DROP TABLE IF EXISTS {t.name}"))
        await conn.run_sync(md.create_all)
        await conn.execute(
            sa.text(f"UPDATE {PREFIX}alembic_version SET version_num = :v"), {"v": _migrate.HEAD}
        )
    await engine.dispose()
    pg = await asyncpg.connect(_pg_dsn(url))
    try:
        for t in tables:
            cols = [c.name for c in t.columns]
            conv = []
            for c in t.columns:
                if c.name == "started_at":
                    conv.append(lambda v: datetime.fromisoformat(v).replace(tzinfo=UTC))
                else:
                    conv.append(None)
            cur = db.execute(f"SELECT {', '.join(cols)} FROM {t.name}")
            done = 0
            while rows := cur.fetchmany(50_000):
                recs = [
                    tuple(v if f is None else f(v) for f, v in zip(conv, r, strict=True))
                    for r in rows
                ]
                await pg.copy_records_to_table(t.name, records=recs, columns=cols)
                done += len(rows)
                progress(f"copying {t.name}: {done:,} rows")
            progress_done()
            print(f"  {t.name}: {done:,} rows copied", flush=True)
    finally:
        await pg.close()
        db.close()
    return time.perf_counter() - t0


# --- the storage layout of the rollups, brought up to date in place -----------------------

# The layout wanted is the library's own (``_tables.py``), which changed after the data
# set's rollups were cached: on SQLite the additive rollups and the path dictionary are
# WITHOUT ROWID tables (one b-tree each, rows in key order); on PostgreSQL the primary keys
# of the additive rollups INCLUDE the summed column, so a range of them is an index-only
# scan.


def _sqlite_without_rowid() -> list[str]:
    from sessiontrack.store._tables import analytics_tables

    tables = analytics_tables(sa.MetaData(), PREFIX)
    return [
        t.name.removeprefix(PREFIX)
        for t in tables
        if t.dialect_options["sqlite"]["with_rowid"] is False
    ]


def _pg_pk_include() -> dict[str, list[str]]:
    from sessiontrack.store._tables import analytics_tables

    out = {}
    for t in analytics_tables(sa.MetaData(), PREFIX):
        include = t.primary_key.dialect_options["postgresql"]["include"]
        if include:
            out[t.name.removeprefix(PREFIX)] = [str(c) for c in include]
    return out


def _rollup_table(name: str) -> sa.Table:
    from sessiontrack.store._tables import analytics_tables

    md = sa.MetaData()
    return {t.name: t for t in analytics_tables(md, PREFIX)}[PREFIX + name]


def upgrade_sqlite_layout(path: Path) -> dict[str, float]:
    """Rebuild each rollup table that ``_tables.py`` makes WITHOUT ROWID but that still has
    a rowid as a WITHOUT ROWID copy (the columns and primary key of ``_tables.py``), copied
    a chatbot at a time in key order, then the old table dropped, the copy renamed and
    ANALYZEd; one transaction per table. Idempotent: a table already without rowid is left alone.
    Returns the seconds per table converted (the file keeps the freed pages: no VACUUM)."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateTable

    db = sqlite3.connect(path, isolation_level=None)
    done: dict[str, float] = {}
    try:
        for name in _sqlite_without_rowid():
            table = PREFIX + name
            sql = db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            if sql is None:
                continue  # no rollups yet: migration 0005 makes them with the new layout
            if "WITHOUT ROWID" in sql[0].upper():
                print(f"  layout: {table} already WITHOUT ROWID", flush=True)
                continue
            t0 = time.perf_counter()
            tmp = f"{table}_wr"
            t = _rollup_table(name).to_metadata(sa.MetaData(), name=tmp)
            t.dialect_options["sqlite"]["with_rowid"] = False
            ddl = str(CreateTable(t).compile(dialect=sqlite_dialect.dialect()))
            assert "WITHOUT ROWID" in ddl, ddl
            cols = ", ".join(c.name for c in t.columns)
            pk = ", ".join(c.name for c in t.primary_key.columns)
            total = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            bots = [r[0] for r in db.execute(f"SELECT DISTINCT chatbot_id FROM {table}")]
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"DROP TABLE IF EXISTS {tmp}")
                db.execute(ddl)
                copied = 0
                for i, bot in enumerate(bots, 1):
                    cur = db.execute(
                        f"INSERT INTO {tmp} ({cols}) SELECT {cols} FROM {table} "
                        f"WHERE chatbot_id = ? ORDER BY {pk}",
                        (bot,),
                    )
                    copied += cur.rowcount
                    progress(
                        f"layout: {table} WITHOUT ROWID: chatbot {i}/{len(bots)}, "
                        f"{copied:,}/{total:,} rows, {time.perf_counter() - t0:.0f} s"
                    )
                assert copied == total, (table, copied, total)
                db.execute(f"DROP TABLE {table}")
                db.execute(f"ALTER TABLE {tmp} RENAME TO {table}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                progress_done()
            progress(f"layout: ANALYZE {table}")
            db.execute(f"ANALYZE {table}")
            progress_done()
            done[table] = time.perf_counter() - t0
            print(
                f"  layout: {table} rebuilt WITHOUT ROWID ({total:,} rows) in {done[table]:.0f} s",
                flush=True,
            )
        if done:
            progress("layout: WAL checkpoint")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            progress_done()
    finally:
        db.close()
    return done


async def upgrade_pg_layout(url: str) -> dict[str, float]:
    """Give each rollup primary key that ``_tables.py`` makes covering its INCLUDE columns
    (one ``ALTER TABLE ... DROP CONSTRAINT ..., ADD PRIMARY KEY (...) INCLUDE (...)``, the
    index build's progress polled from ``pg_stat_progress_create_index``), then ``VACUUM
    ANALYZE`` so the visibility map allows index-only scans. Idempotent: a primary key
    that already includes them is left alone. Returns the seconds per table converted."""
    import asyncpg

    pg = await asyncpg.connect(_pg_dsn(url))
    watch = await asyncpg.connect(_pg_dsn(url))
    done: dict[str, float] = {}
    try:
        for name, include in _pg_pk_include().items():
            table = PREFIX + name
            row = await pg.fetchrow(
                "SELECT c.conname, i.indnkeyatts, i.indnatts, "
                "array(SELECT a.attname::text FROM unnest(i.indkey[i.indnkeyatts:]) k "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) AS inc "
                "FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid "
                "WHERE c.conrelid = to_regclass($1) AND c.contype = 'p'",
                table,
            )
            if row is None:
                continue  # no rollups yet
            if sorted(row["inc"]) == sorted(include):
                print(f"  layout: {table} primary key already INCLUDE ({', '.join(include)})")
                continue
            key = ", ".join(c.name for c in _rollup_table(name).primary_key.columns)
            t0 = time.perf_counter()
            task = asyncio.ensure_future(
                pg.execute(
                    f"ALTER TABLE {table} DROP CONSTRAINT {row['conname']}, "
                    f"ADD PRIMARY KEY ({key}) INCLUDE ({', '.join(include)})"
                )
            )
            while not task.done():
                await asyncio.wait([task], timeout=1.0)
                p = await watch.fetchrow(
                    "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total "
                    "FROM pg_stat_progress_create_index WHERE relid = to_regclass($1)",
                    table,
                )
                if p is not None:
                    progress(
                        f"layout: {table} primary key INCLUDE ({', '.join(include)}): "
                        f"{p['phase']}, blocks {p['blocks_done']:,}/{p['blocks_total']:,}, "
                        f"tuples {p['tuples_done']:,}/{p['tuples_total']:,}, "
                        f"{time.perf_counter() - t0:.0f} s"
                    )
            progress_done()
            await task
            progress(f"layout: VACUUM ANALYZE {table}")
            await pg.execute(f"VACUUM ANALYZE {table}")
            progress_done()
            done[table] = time.perf_counter() - t0
            print(
                f"  layout: {table} primary key now INCLUDE ({', '.join(include)}), "
                f"with VACUUM ANALYZE, in {done[table]:.0f} s",
                flush=True,
            )
    finally:
        await watch.close()
        await pg.close()
    return done


async def upgrade_layout(backend: str, spec: Spec, url: str) -> dict[str, float]:
    if backend == "sqlite":
        return await asyncio.to_thread(upgrade_sqlite_layout, sqlite_path(spec))
    return await upgrade_pg_layout(url)


async def ensure_rollups(
    backend: str,
    spec: Spec,
    url: str,
    *,
    rebuild: bool,
    migration: bool,
    copy: bool,
    layout: bool = True,
) -> dict[str, Any]:
    """Build the rollups for the loaded data if needed; the build figures (measured now or
    cached from the run that built them)."""
    meta = await _read_meta(backend, spec, url)
    if copy and backend == "postgresql" and await _revision(url) != _migrate.HEAD:
        meta["copied_from_sqlite_seconds"] = await copy_rollups(spec, url)
        await _analyze(backend, url)
    mig_s = await time_migration(url, again=migration)
    if mig_s is not None:
        meta["migration_seconds"] = mig_s
        meta["migration_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        meta["migration_load_avg"] = os.getloadavg()[0]
    traces = await _count(url, "an_traces")
    rebuilt = rebuild or traces < spec.sessions
    if rebuilt:
        if traces < spec.sessions and not rebuild:
            print(f"  {max(traces, 0):,} traces for {spec.sessions:,} sessions", flush=True)
        reb_s = await time_rebuild(url)
        meta["rebuild_seconds"] = reb_s
        meta["rebuild_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        meta["rebuild_load_avg"] = os.getloadavg()[0]
        traces = await _count(url, "an_traces")
    if mig_s is not None or rebuilt:
        await _analyze(backend, url)
    meta["traces"] = traces
    if layout:
        for table, secs in (await upgrade_layout(backend, spec, url)).items():
            meta.setdefault("layout_upgrade", {})[table] = {
                "seconds": secs,
                "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_avg": os.getloadavg()[0],
            }
    await _write_meta(backend, spec, url, meta)
    if "copied_from_sqlite_seconds" in meta:
        print(
            f"  rollups copied from the SQLite file in {meta['copied_from_sqlite_seconds']:.0f} s"
            " (not migrated here)",
            flush=True,
        )
    for table, up in meta.get("layout_upgrade", {}).items():
        print(
            f"  layout of {table} upgraded in place in {up['seconds']:.0f} s "
            f"({up['at']}, load {up['load_avg']:.1f})",
            flush=True,
        )
    for what in ("migration", "rebuild"):
        s = meta.get(f"{what}_seconds")
        if s is not None:
            print(
                f"  {what}: {s:.1f} s = {spec.events / s:,.0f} events/s "
                f"({meta[f'{what}_at']}, load {meta[f'{what}_load_avg']:.1f})",
                flush=True,
            )
    return meta


# --- the measurements ---------------------------------------------------------------------


async def timeit(fn: Callable[[], Awaitable[Any]], n: int, warmup: int = 3) -> dict[str, Any]:
    for _ in range(warmup):
        await fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": median(times), "p90_ms": percentile(times, 90), "n": n, "times": times}


def window(spec: Spec) -> tuple[str, str, datetime, datetime]:
    """The last 30 whole UTC days of the data set (its ``now`` is a day's noon): ISO dates
    for the analytics calls (end inclusive) and the half-open UTC range they mean."""
    end_day = spec.now.date()
    start_day = end_day - timedelta(days=DAYS - 1)
    lo = datetime(start_day.year, start_day.month, start_day.day, tzinfo=UTC)
    return start_day.isoformat(), end_day.isoformat(), lo, lo + timedelta(days=DAYS)


async def sql_summary(store: Any, bot: str, lo: datetime, hi: datetime) -> dict[str, Any]:
    """The baseline: the summary's counts and means by one plain aggregate over the
    chatbot's sessions in the range (index on (chatbot_id, started_at)); no percentiles,
    no daily series, no rollups."""
    s = store.tables.sessions
    if store.dialect == "sqlite":
        dur = sa.func.julianday(s.c.completed_at) - sa.func.julianday(s.c.started_at)
        dur = dur * 86400.0
    else:
        dur = sa.func.extract("epoch", s.c.completed_at - s.c.started_at)
    q = (
        sa.select(
            s.c.status,
            sa.func.count(),
            sa.func.avg(dur),
            sa.func.avg(s.c.message_count),
            sa.func.avg(s.c.node_count),
            sa.func.sum(s.c.input_tokens),
            sa.func.sum(s.c.output_tokens),
            sa.func.sum(s.c.cost),
        )
        .where(
            s.c.chatbot_id == bot,
            s.c.started_at >= lo,
            s.c.started_at < hi,
        )
        .group_by(s.c.status)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return {r[0]: r[1] for r in rows}


async def sql_nodes_from_events(store: Any, bot: str, lo: datetime, hi: datetime) -> int:
    """What per-node counts cost without rollups: node executions of the chatbot's sessions
    in the range, grouped by node, from the event log (informative, a few calls)."""
    e, s = store.tables.events, store.tables.sessions
    q = (
        sa.select(e.c.node_id, sa.func.count())
        .select_from(e.join(s, s.c.id == e.c.session_id))
        .where(
            s.c.chatbot_id == bot,
            s.c.started_at >= lo,
            s.c.started_at < hi,
            e.c.kind == "node_executed",
        )
        .group_by(e.c.node_id)
    )
    async with store.engine.connect() as conn:
        return len((await conn.execute(q)).all())


async def measure(
    url: str, spec: Spec, bots: list[str], reps: int, naive_reps: int, profile_over: float
) -> dict[str, Any]:
    import httpx

    from sessiontrack.web import create_app

    tracker = sessiontrack.Tracker(url, prefix=PREFIX, migrate=True, sweep_interval=None)
    out: dict[str, Any] = {}
    async with tracker:
        transport = httpx.ASGITransport(app=create_app(tracker), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            for bot in bots:
                out[bot] = await measure_bot(
                    tracker, http, spec, bot, reps, naive_reps, profile_over
                )
    return out


async def measure_bot(
    tracker: Any,
    http: Any,
    spec: Spec,
    bot: str,
    reps: int,
    naive_reps: int,
    profile_over: float,
) -> dict[str, Any]:
    start, end, lo, hi = window(spec)
    an = tracker.analytics
    common: dict[str, Any] = {"start_date": start, "end_date": end}
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "summary": lambda: an.summary(bot, **common),
        "nodes": lambda: an.nodes(bot, **common),
        "paths": lambda: an.paths(bot, **common, limit=20),
        "funnel": lambda: an.funnel(bot, **common, steps=FUNNEL_STEPS),
        "versions": lambda: an.versions(bot),
    }
    res: dict[str, Any] = {}
    res["sessions in range"] = (await an.summary(bot, **common))["sessions"]
    for name, fn in calls.items():
        progress(f"{bot}: {name}")
        res[name] = await timeit(fn, reps)

    params = {"chatbotId": bot, "startDate": start, "endDate": end}
    route_params: dict[str, dict[str, str]] = {
        "summary": params,
        "summary?format=csv": {**params, "format": "csv"},
        "nodes": params,
        "paths": {**params, "limit": "20"},
        "funnel": {**params, "steps": ",".join(FUNNEL_STEPS)},
        "versions": {"chatbotId": bot},
    }
    for name, p in route_params.items():
        path = f"/analytics/{name.split('?')[0]}"
        r = await http.get(path, params=p)
        if r.status_code == 404 and "analytics" not in r.text:
            continue  # the route is not there (yet)
        assert r.status_code == 200, (name, r.status_code, r.text[:300])

        async def rest(path: str = path, p: dict[str, str] = p) -> None:
            r = await http.get(path, params=p)
            assert r.status_code == 200

        progress(f"{bot}: GET /analytics/{name}")
        res[f"GET /analytics/{name}"] = await timeit(rest, reps)

    # Baselines, same run, same chatbot and range.
    progress(f"{bot}: baselines")

    async def first_page() -> None:
        page = await tracker.sessions.list(chatbot_id=bot, limit=20)
        assert len(page.data) == 20

    async def first_page_rest() -> None:
        r = await http.get("/", params={"chatbotId": bot, "limit": "20"})
        assert r.status_code == 200

    res["baseline: sessions.list first page"] = await timeit(first_page, reps)
    res["baseline: GET / first page"] = await timeit(first_page_rest, reps)
    res["baseline: SQL aggregate over sessions"] = await timeit(
        lambda: sql_summary(tracker.store, bot, lo, hi), max(5, reps // 3), 1
    )
    by_status = await sql_summary(tracker.store, bot, lo, hi)
    res["check: sessions by SQL"] = sum(by_status.values())
    if naive_reps:
        res["informative: node counts from the event log"] = await timeit(
            lambda: sql_nodes_from_events(tracker.store, bot, lo, hi), naive_reps, 0
        )
    progress_done()
    # Profile whatever is over the threshold, once each.
    for name, fn in calls.items():
        if res[name]["median_ms"] > profile_over:
            res[f"profile {name}"] = await profile(fn)
    return res


async def profile(fn: Callable[[], Awaitable[Any]], n: int = 5) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        await fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    return buf.getvalue()


def report(backend: str, bot: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of each call's median and p90; ratios to the baselines."""
    res = [r[bot] for r in runs]
    names = [k for k, v in res[0].items() if isinstance(v, dict) and "median_ms" in v]
    base_list = median([r["baseline: sessions.list first page"]["median_ms"] for r in res])
    base_rest = median([r["baseline: GET / first page"]["median_ms"] for r in res])
    base_sql = median([r["baseline: SQL aggregate over sessions"]["median_ms"] for r in res])
    rows, summary = [], {}
    for name in names:
        med = median([r[name]["median_ms"] for r in res if name in r])
        p90 = median([r[name]["p90_ms"] for r in res if name in r])
        base = base_rest if name.startswith("GET /analytics") else base_list
        measured = not name.startswith(("baseline", "informative"))
        summary[name] = {
            "median_ms": med,
            "p90_ms": p90,
            "x_first_page": med / base,
            "x_sql_aggregate": med / base_sql,
        }
        rows.append(
            [
                name,
                med,
                p90,
                f"{med / base:.1f}x",
                f"{med / base_sql:.2f}x",
                (
                    f"{verdict(med, TARGET_MS, at_most=True)}"
                    f"{', goal met' if med <= GOAL_MS else ', goal missed'}"
                )
                if measured
                else "",
            ]
        )
    print(
        f"\n{backend}, {bot} ({res[0]['sessions in range']:,} sessions in range; "
        f"SQL says {res[0]['check: sessions by SQL']:,}), ms, medians over {len(runs)} run(s):"
    )
    print_table(
        ["call", "median", "p90", "÷ first page", "÷ SQL aggregate", f"≤ {TARGET_MS:.0f} ms"],
        rows,
    )
    for k, v in res[0].items():
        if k.startswith("profile "):
            print(f"  {k} (cProfile, 5 calls):\n{v}")
    summary["sessions in range"] = res[0]["sessions in range"]
    return summary


def pick_bots(spec: Spec, names: str | None) -> list[str]:
    """The biggest chatbot (bot-00) and a middling one (the median of popularity)."""
    if names:
        return [b.strip() for b in names.split(",") if b.strip()]
    return ["bot-00", f"bot-{spec.chatbots // 2 - 1:02d}"]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--bots", help="comma-separated chatbot ids (default bot-00 and bot-09)")
    ap.add_argument("--reps", type=int, default=30, help="timed calls per route and run")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument(
        "--naive-reps",
        type=int,
        default=2,
        help="calls of the informative event-log aggregate (0: skip; seconds each)",
    )
    ap.add_argument("--rebuild", action="store_true", help="time a full rebuild again")
    ap.add_argument(
        "--migration", action="store_true", help="downgrade to 0004 and time the upgrade again"
    )
    ap.add_argument(
        "--rollups-from-sqlite",
        action="store_true",
        help="PostgreSQL at revision 0004: copy the rollups built on the SQLite file "
        "(same log) instead of migrating (which replays 10M events)",
    )
    ap.add_argument(
        "--keep-layout",
        action="store_true",
        help="leave cached rollups in their old storage layout (by default they are "
        "upgraded in place, once: WITHOUT ROWID on SQLite, covering primary keys on "
        "PostgreSQL)",
    )
    ap.add_argument("--build-only", action="store_true", help="load and build, measure nothing")
    ap.add_argument(
        "--profile-over", type=float, default=TARGET_MS, help="cProfile calls slower (ms)"
    )
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    spec = Spec(sessions=args.sessions, events=args.events)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    pg_version = await postgres_version(args.postgres_url) if "postgresql" in backends else None
    info = machine(pg_version)
    print_machine(info)
    start, end, _, _ = window(spec)
    bots = pick_bots(spec, args.bots)
    print(
        f"data set: {spec.sessions:,} sessions, {spec.events:,} events, "
        f"{spec.chatbots} chatbots over {spec.weeks} weeks (generator {spec.key}); "
        f"range {start} .. {end} ({DAYS} days, UTC), chatbots {', '.join(bots)}\n"
    )
    results: dict[str, Any] = {"machine": info, "args": vars(args)}
    for backend in backends:
        if backend == "postgresql" and pg_version is None:
            print(f"PostgreSQL at {args.postgres_url} not reachable: skipped\n")
            continue
        print(f"== {backend} ==", flush=True)
        url, load_s = await cached_load(backend, spec, args.postgres_url, False)
        if load_s is not None:
            print(f"  loading took {load_s:.0f} s", flush=True)
        build = await ensure_rollups(
            backend,
            spec,
            url,
            rebuild=args.rebuild,
            migration=args.migration,
            copy=args.rollups_from_sqlite,
            layout=not args.keep_layout,
        )
        res: dict[str, Any] = {"load_seconds": load_s, "build": build}
        if not args.build_only:
            runs = []
            for i in range(args.runs):
                runs.append(
                    await measure(
                        url,
                        spec,
                        bots,
                        args.reps,
                        args.naive_reps if i == 0 else 0,
                        args.profile_over,
                    )
                )
            for r in runs:
                for b in r.values():
                    for v in b.values():
                        if isinstance(v, dict):
                            v.pop("times", None)
            res["runs"] = runs
            res["summary"] = {bot: report(backend, bot, runs) for bot in bots}
            print(f"  load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
        results[backend] = res
    write_json(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
