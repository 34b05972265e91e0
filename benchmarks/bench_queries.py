"""Query benchmark on 1,000,000 sessions and 10,000,000 events, SQLite and PostgreSQL.

A seeded generator makes the data set and loads it straight into the library's tables
(created by its migrations); the SQLite file is cached in benchmarks/.data/ and the
PostgreSQL tables under the prefix ``bench_q_``, so later runs reuse them. Loading takes
several minutes the first time (progress is shown). Then the public query service
(``tracker.sessions``) is timed: first pages of filtered lists with their totals, a page
100,000 rows deep reached by cursor (against offset paging at the same depth), and a
session's detail with 50 messages.

    python benchmarks/bench_queries.py                   # both backends
    python benchmarks/bench_queries.py --backends sqlite --reload
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_DIR,
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

import sessiontrack
from sessiontrack.store import SQLAlchemyStore, make_tables

GENERATOR_VERSION = 1
PREFIX = "bench_q_"
WINDOW = 5_000  # sessions generated (and their events time-sorted) at a time
IDLE_S = 1800

# --- the data set -------------------------------------------------------------------------

FIRST = [
    "Ann",
    "Bob",
    "Chen",
    "Dana",
    "Eve",
    "Femi",
    "Gus",
    "Hana",
    "Ivan",
    "José",
    "Kai",
    "Lea",
    "Maria",
    "Noah",
    "Olga",
    "Pedro",
    "Qi",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Aisha",
    "Bruno",
    "Carla",
    "Diego",
    "Elif",
    "Farah",
]
LAST = [
    "Lee",
    "Smith",
    "Okafor",
    "García",
    "Müller",
    "Nguyen",
    "Rossi",
    "Kowalski",
    "Silva",
    "Johnson",
    "Kim",
    "Patel",
    "Cohen",
    "Dubois",
    "Ivanova",
    "Tanaka",
    "Hughes",
    "Moreau",
    "Santos",
    "Yilmaz",
    "Brown",
    "Novak",
    "Jensen",
    "Ali",
    "Costa",
    "Schmidt",
    "Wang",
]
REASONS = {"completed": "flow_end", "expired": "timeout", "stopped": "stopped_by_api"}


@dataclass
class Spec:
    sessions: int
    events: int
    chatbots: int = 20
    weeks: int = 8
    seed: int = 42
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 1, 12, tzinfo=UTC))

    @property
    def key(self) -> str:
        return f"v{GENERATOR_VERSION}-{self.sessions}-{self.events}-{self.chatbots}-{self.seed}"


def chatbot_defs(spec: Spec) -> list[dict[str, Any]]:
    bots = []
    for i in range(spec.chatbots):
        nodes = [
            {
                "id": f"n{j}",
                "type": "message" if j % 3 else "question",
                "position": {"x": 200 * (j % 4), "y": 120 * (j // 4)},
                "data": {"label": f"Step {j} of bot {i}"},
            }
            for j in range(30)
        ]
        edges = [{"id": f"e{j}", "source": f"n{j}", "target": f"n{j + 1}"} for j in range(29)]
        bots.append(
            {
                "chatbot_id": f"bot-{i:02d}",
                "name": f"Support bot {i}",
                "version": f"v{i:02d}-0001",
                "flow": {"nodes": nodes, "edges": edges},
            }
        )
    return bots


def plan(spec: Spec, rng: random.Random) -> tuple[list[float], list[int], list[str], list[int]]:
    """Start times (sorted), chatbot index, status and report count of every session.

    Starts follow a daily cycle over ``weeks`` weeks; a Zipf-like choice of chatbot; 1 % of
    sessions are long conversations with exactly 50 messages; the others have 3-15 reports,
    adjusted so the total is exactly ``spec.events``. Sessions of the last 45 minutes are
    mostly still active; older ones ended: completed 80 %, expired 17 %, stopped 3 %.
    """
    now = spec.now.timestamp()
    span = spec.weeks * 7 * 86400
    hours = [
        0.2,
        0.1,
        0.1,
        0.1,
        0.2,
        0.4,
        0.8,
        1.5,
        2.2,
        2.6,
        2.7,
        2.6,
        2.4,
        2.5,
        2.6,
        2.5,
        2.3,
        2.0,
        1.8,
        1.6,
        1.3,
        1.0,
        0.6,
        0.3,
    ]
    cum = []
    acc = 0.0
    for h in hours:
        acc += h
        cum.append(acc)
    starts = []
    for _ in range(spec.sessions):
        day = rng.randrange(spec.weeks * 7)
        hour = bisect.bisect(cum, rng.random() * acc)
        t = now - span + day * 86400 + hour * 3600 + rng.random() * 3600
        starts.append(min(t, now - 60))
    starts.sort()
    weights = [1 / (i + 1) for i in range(spec.chatbots)]
    bots = rng.choices(range(spec.chatbots), weights=weights, k=spec.sessions)
    statuses = []
    for t in starts:
        age = now - t
        if age < 2700 and rng.random() < 0.7:
            statuses.append(
                rng.choices(["running", "waiting_input", "waiting_flow"], [0.4, 0.5, 0.1])[0]
            )
        else:
            statuses.append(rng.choices(["completed", "expired", "stopped"], [0.8, 0.17, 0.03])[0])
    lengths = [-1 if rng.random() < 0.01 else rng.randint(3, 15) for _ in range(spec.sessions)]
    total = sum(LONG_REPORTS if n < 0 else n for n in lengths)
    diff = spec.events - total
    while diff:
        i = rng.randrange(spec.sessions)
        if lengths[i] < 0:
            continue
        step = 1 if diff > 0 else -1
        if 3 <= lengths[i] + step <= 40:
            lengths[i] += step
            diff -= step
    return starts, bots, statuses, [LONG_REPORTS if n < 0 else n for n in lengths]


def _script(n: int, long: bool) -> list[str]:
    """The kinds of a session's ``n`` reports (start, nodes, messages, statuses, end)."""
    kinds = ["session_started"]
    cycle = 0
    while len(kinds) < n - 1:
        kinds.append("node_executed")
        kinds.append("message:outbound")
        if cycle % 3 == 2:
            kinds.append("status:waiting_input")
        kinds.append("message:inbound")
        if cycle % 3 == 2:
            kinds.append("status:running")
        cycle += 1
        if long and kinds.count("message:outbound") + kinds.count("message:inbound") >= 50:
            break
    if long:
        return [*kinds, "end"]
    return [*kinds[: n - 1], "end"]


LONG_REPORTS = len(_script(10**6, True))


def sid_for(t: float, rng: random.Random) -> str:
    """A UUIDv7 whose time is the session's start, like ``new_session_id()`` makes."""
    ms = int(t * 1000)
    value = (
        (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    )
    return str(uuid.UUID(int=value))


Row = tuple[Any, ...]
# The columns the generator fills, in this order (the first ones of the tables); columns
# added by later migrations keep their defaults.
SESSION_COLS = [c.name for c in make_tables().sessions.columns][:21]
EVENT_COLS = [c.name for c in make_tables().events.columns][:9]
assert SESSION_COLS[-1] == "last_seq" and EVENT_COLS[-1] == "data"


def generate(spec: Spec) -> Iterator[tuple[list[Row], list[Row]]]:
    """Session rows and event rows, ``WINDOW`` sessions at a time, events in time order
    with increasing ``seq``; datetimes are aware, JSON columns are text."""
    rng = random.Random(spec.seed)
    starts, bot_of, status_of, length_of = plan(spec, rng)
    bots = chatbot_defs(spec)
    labels = [{n["id"]: n["data"]["label"] for n in b["flow"]["nodes"]} for b in bots]
    now = spec.now.timestamp()
    seq = 0
    dumps = json.dumps
    for w in range(0, spec.sessions, WINDOW):
        sessions: list[list[Any]] = []
        events: list[tuple[float, int, list[Any]]] = []
        for i in range(w, min(w + WINDOW, spec.sessions)):
            t0, b, status, n = starts[i], bot_of[i], status_of[i], length_of[i]
            bot = bots[b]
            sid = sid_for(t0, rng)
            country = rng.choice(["1555", "4477", "3361", "5511", "4915"])
            phone = f"+{country}{rng.randrange(10**7):07d}"
            name = None if rng.random() < 0.1 else f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            active = status not in REASONS
            kinds = _script(n, n == LONG_REPORTS)
            if active:
                kinds = kinds[:-1] or kinds
            offsets = [0.0]
            for k in kinds[1:]:
                gap = rng.uniform(2, 90) if k == "message:inbound" else rng.uniform(0.05, 1.5)
                offsets.append(offsets[-1] + gap)
            if active and t0 + offsets[-1] > now - 1:
                f = (now - 1 - t0) / offsets[-1]
                offsets = [o * f for o in offsets]
            node = None
            nodes = msgs = 0
            prev = "running"
            variables = dumps(
                {"lang": rng.choice(["en", "es", "pt", "de"]), "tier": rng.randrange(3)}
            )
            for k, off in zip(kinds, offsets, strict=True):
                at = t0 + off
                mid = None
                if k == "session_started":
                    data: dict[str, Any] = {
                        "chatbot_id": bot["chatbot_id"],
                        "conversation_id": phone,
                        "customer_phone": phone,
                        "customer_name": name,
                        "chatbot_name": bot["name"],
                        "variables": json.loads(variables),
                        "metadata": {},
                        "expires_at": None,
                    }
                elif k == "node_executed":
                    node = f"n{nodes % 30}"
                    nodes += 1
                    data = {
                        "node_id": node,
                        "node_type": "message",
                        "label": labels[b][node],
                        "duration_ms": round(rng.uniform(0.5, 40), 2),
                        "error": None,
                        "node_count": nodes,
                    }
                elif k.startswith("message:"):
                    msgs += 1
                    direction = k[8:]
                    if direction == "inbound":
                        mid = f"wamid.{rng.getrandbits(64):016x}"
                        text = rng.choice(["yes", "no", "1", "2", "help", "thanks!", "my order"])
                    else:
                        text = f"{labels[b][node or 'n0']}: please choose an option"
                    data = {
                        "direction": direction,
                        "type": "text",
                        "text": text,
                        "payload": None,
                        "node_id": node if direction == "outbound" else None,
                        "message_id": mid,
                        "message_count": msgs,
                    }
                elif k.startswith("status:"):
                    new = k[7:]
                    data = {
                        "status": new,
                        "node_id": node,
                        "reason": None,
                        "previous_status": prev,
                        "node_label": labels[b].get(node or ""),
                    }
                    prev = new
                else:  # end
                    data = {
                        "status": status,
                        "reason": REASONS[status],
                        "node_id": node,
                        "previous_status": prev,
                        "node_label": labels[b].get(node or ""),
                        "conversation_id": phone,
                        "total_nodes": nodes,
                        "total_messages": msgs,
                        "duration": round(off, 3),
                    }
                kind = (
                    "message"
                    if k.startswith("message:")
                    else "status_changed"
                    if k.startswith("status:")
                    else "session_completed"
                    if k == "end"
                    else k
                )
                events.append(
                    (
                        at,
                        len(sessions),
                        [
                            0,
                            sid,
                            bot["chatbot_id"],
                            kind,
                            at,
                            bot["version"],
                            data.get("node_id"),
                            mid,
                            dumps(data),
                        ],
                    )
                )
            last = t0 + offsets[-1]
            if active:
                status = prev  # the last status event's (or running, from the start)
            sessions.append(
                [
                    sid,
                    bot["chatbot_id"],
                    bot["version"],
                    phone,
                    phone,
                    name,
                    name.casefold() if name else None,
                    status,
                    node,
                    labels[b].get(node or ""),
                    variables,
                    "{}",
                    t0,
                    last,
                    None if active else last,
                    last + IDLE_S if active else None,
                    IDLE_S,
                    None if active else REASONS[status],
                    nodes,
                    msgs,
                    0,
                ]
            )
        events.sort(key=lambda e: e[0])
        ev_rows = []
        for at, s_idx, row in events:
            seq += 1
            row[0] = seq
            row[4] = datetime.fromtimestamp(at, UTC)
            sessions[s_idx][20] = seq
            ev_rows.append(tuple(row))
        s_rows = []
        for s in sessions:
            for j in (12, 13, 14, 15):
                if s[j] is not None:
                    s[j] = datetime.fromtimestamp(s[j], UTC)
            s_rows.append(tuple(s))
        yield s_rows, ev_rows


# --- loading ------------------------------------------------------------------------------


def _secondary_indexes(prefix: str) -> list[sa.Index]:
    t = make_tables(prefix)
    return [*t.sessions.indexes, *t.events.indexes]


class Loader:
    """Loads the generated rows; subclasses write to one backend."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.counts: Counter[tuple[str, str]] = Counter()

    def feed(
        self, write: Callable[[list[Row], list[Row]], Awaitable[None] | None]
    ) -> Iterator[Awaitable[None] | None]:
        t0 = time.perf_counter()
        done_s = done_e = 0
        for s_rows, e_rows in generate(self.spec):
            for s in s_rows:
                self.counts[(s[1], s[7])] += 1
            yield write(s_rows, e_rows)
            done_s += len(s_rows)
            done_e += len(e_rows)
            el = time.perf_counter() - t0
            eta = el / done_s * (self.spec.sessions - done_s)
            progress(
                f"loading: {done_s:,}/{self.spec.sessions:,} sessions, {done_e:,} events, "
                f"{el:.0f} s, about {eta:.0f} s to go"
            )
        progress_done()
        print(f"  rows written in {time.perf_counter() - t0:.0f} s", flush=True)


async def prepare_tables(url: str, prefix: str) -> None:
    """Create the tables through the library's migrations, then drop the secondary
    indexes for the bulk load (they are built again afterwards)."""
    store = SQLAlchemyStore(url, prefix=prefix)
    await store.open(migrate=True)
    try:
        async with store.engine.begin() as conn:
            for idx in _secondary_indexes(prefix):
                await conn.execute(sa.text(f"DROP INDEX IF EXISTS {idx.name}"))
    finally:
        await store.close()


async def derive(url: str, prefix: str) -> None:
    """Build what the list queries derive from the log for the loaded rows: the bulk load
    wrote only sessions and events, so the migrations after 0005 run again (down to 0005,
    then up to head: the filters' indexes, the search indexes and the tags are built from
    the loaded rows, as an upgrade of an existing database builds them). The analytics
    rollups (0005) stay empty: ``bench_analytics.py`` builds them when it needs them."""
    from alembic import command

    from sessiontrack.store import _migrate

    def run(conn: sa.Connection) -> None:
        command.downgrade(_migrate._config(conn, prefix), "0005")
        _migrate.upgrade(conn, prefix)

    print("  building the derived tables (the migrations after 0005) ...", flush=True)
    t0 = time.perf_counter()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
    finally:
        await engine.dispose()
    print(f"  derived tables built in {time.perf_counter() - t0:.0f} s", flush=True)


def sqlite_path(spec: Spec) -> Path:
    return DATA_DIR / f"queries-{spec.key}.db"


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".json"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    DATA_DIR.mkdir(exist_ok=True)


async def load_sqlite(spec: Spec) -> float:
    path = sqlite_path(spec)
    _remove_sqlite(path)
    t0 = time.perf_counter()
    await prepare_tables(f"sqlite+aiosqlite:///{path}", PREFIX)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-524288")
    t = make_tables(PREFIX)

    def ins(table: sa.Table, cols: list[str]) -> str:
        return f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    s_sql, e_sql = ins(t.sessions, SESSION_COLS), ins(t.events, EVENT_COLS)

    def ts(v: datetime | None) -> str | None:
        return None if v is None else v.replace(tzinfo=None).isoformat(" ", "microseconds")

    def write(s_rows: list[Row], e_rows: list[Row]) -> None:
        db.execute("BEGIN")
        db.executemany(
            s_sql, [(*s[:12], ts(s[12]), ts(s[13]), ts(s[14]), ts(s[15]), *s[16:]) for s in s_rows]
        )
        db.executemany(e_sql, [(*e[:4], ts(e[4]), *e[5:]) for e in e_rows])
        db.execute("COMMIT")

    loader = Loader(spec)
    for _ in loader.feed(write):
        pass
    db.execute("BEGIN")
    _finish_rows_sqlite(db, spec, loader.counts)
    db.execute("COMMIT")
    db.close()
    print("  building indexes ...", flush=True)
    t1 = time.perf_counter()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for idx in _secondary_indexes(PREFIX):
            progress(f"index {idx.name}")
            idx.create(conn)
    engine.dispose()
    progress_done()
    print(f"  indexes built in {time.perf_counter() - t1:.0f} s", flush=True)
    await derive(f"sqlite+aiosqlite:///{path}", PREFIX)
    elapsed = time.perf_counter() - t0
    path.with_suffix(".json").write_text(json.dumps({"key": spec.key, "load_seconds": elapsed}))
    return elapsed


def _bots_rows(spec: Spec) -> tuple[list[Row], list[Row]]:
    at = spec.now - timedelta(weeks=spec.weeks + 1)
    bots, flows = [], []
    for b in chatbot_defs(spec):
        bots.append((b["chatbot_id"], b["name"], b["version"], at))
        flows.append((b["chatbot_id"], b["version"], json.dumps(b["flow"]), at))
    return bots, flows


def _finish_rows_sqlite(
    db: sqlite3.Connection, spec: Spec, counts: Counter[tuple[str, str]]
) -> None:
    bots, flows = _bots_rows(spec)
    p = PREFIX
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    db.executemany(
        f"INSERT INTO {p}chatbots VALUES (?, ?, ?, ?)", [(*b[:3], b[3].strftime(fmt)) for b in bots]
    )
    db.executemany(
        f"INSERT INTO {p}flows VALUES (?, ?, ?, ?)", [(*f[:3], f[3].strftime(fmt)) for f in flows]
    )
    db.executemany(
        f"INSERT INTO {p}counts VALUES (?, ?, ?)", [(c, s, n) for (c, s), n in counts.items()]
    )
    db.execute(f"UPDATE {p}state SET value = ? WHERE key = 'last_seq'", (spec.events,))


def _pg_dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def load_postgres(spec: Spec, url: str) -> float:
    import asyncpg

    t0 = time.perf_counter()
    await drop_postgres(url)
    await prepare_tables(url, PREFIX)
    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        await conn.execute("SET synchronous_commit = off")
        t = make_tables(PREFIX)

        async def write(s_rows: list[Row], e_rows: list[Row]) -> None:
            await conn.copy_records_to_table(t.sessions.name, records=s_rows, columns=SESSION_COLS)
            await conn.copy_records_to_table(t.events.name, records=e_rows, columns=EVENT_COLS)

        loader = Loader(spec)
        for coro in loader.feed(write):
            assert coro is not None
            await coro
        bots, flows = _bots_rows(spec)
        await conn.copy_records_to_table(t.chatbots.name, records=bots)
        await conn.copy_records_to_table(t.flows.name, records=flows)
        await conn.copy_records_to_table(
            t.counts.name, records=[(c, s, n) for (c, s), n in loader.counts.items()]
        )
        await conn.execute(
            f"UPDATE {PREFIX}state SET value = $1 WHERE key = 'last_seq'", spec.events
        )
        print("  building indexes ...", flush=True)
        t1 = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        engine = create_async_engine(url)
        for idx in _secondary_indexes(PREFIX):
            progress(f"index {idx.name}")
            ddl = str(sa.schema.CreateIndex(idx).compile(dialect=engine.dialect))
            await conn.execute(ddl)
        await engine.dispose()
        progress_done()
        print(
            f"  indexes built in {time.perf_counter() - t1:.0f} s; VACUUM ANALYZE ...", flush=True
        )
        await derive(url, PREFIX)
        for table in (t.sessions, t.events, t.counts, t.chatbots, t.flows, t.tags):
            await conn.execute(f"VACUUM ANALYZE {table.name}")
        elapsed = time.perf_counter() - t0
        await conn.execute(f"CREATE TABLE {PREFIX}bench_meta (key text, load_seconds float8)")
        await conn.execute(f"INSERT INTO {PREFIX}bench_meta VALUES ($1, $2)", spec.key, elapsed)
    finally:
        await conn.close()
    return elapsed


async def drop_postgres(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(make_tables(PREFIX).metadata.drop_all)
            for extra in ("alembic_version", "bench_meta"):
                await conn.execute(sa.text(f"DROP TABLE IF EXISTS {PREFIX}{extra}"))
    finally:
        await engine.dispose()


async def cached_load(backend: str, spec: Spec, url: str, reload: bool) -> tuple[str, float | None]:
    """The URL of a loaded data set, loading it if needed; the load time if it loaded now,
    else the time the cached load took (from its metadata)."""
    if backend == "sqlite":
        path = sqlite_path(spec)
        meta = path.with_suffix(".json")
        if not reload and path.exists() and meta.exists():
            info = json.loads(meta.read_text())
            print(f"  reusing {path} (loaded in {info['load_seconds']:.0f} s)", flush=True)
            return f"sqlite+aiosqlite:///{path}", None
        print(f"  generating and loading {path} ...", flush=True)
        return f"sqlite+aiosqlite:///{path}", await load_sqlite(spec)
    if not reload:
        import asyncpg

        conn = await asyncpg.connect(_pg_dsn(url))
        try:
            row = await conn.fetchrow(f"SELECT key, load_seconds FROM {PREFIX}bench_meta")
        except asyncpg.UndefinedTableError:
            row = None
        finally:
            await conn.close()
        if row is not None and row["key"] == spec.key:
            print(
                f"  reusing the {PREFIX}* tables (loaded in {row['load_seconds']:.0f} s)",
                flush=True,
            )
            return url, None
    print(f"  generating and loading the {PREFIX}* tables ...", flush=True)
    return url, await load_postgres(spec, url)


# --- the measurements ---------------------------------------------------------------------


async def timeit(fn: Callable[[int], Awaitable[Any]], n: int, warmup: int = 3) -> dict[str, float]:
    for i in range(warmup):
        await fn(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": median(times), "p95_ms": percentile(times, 95), "n": n}


# The advanced filters alone and combined (docs/http-api.md gives each one's plan): the
# dashboard's list with one filter, or with a chatbot, a status and a second filter.
# "now" is the data set's clock, so that active sessions' durations are what they were.
ADVANCED: list[tuple[str, dict[str, Any]]] = [
    ("status=completed&sortBy=updatedAt", {"status": "completed", "sort_by": "updatedAt"}),
    ("chatbotId&sortBy=updatedAt", {"chatbot_id": "bot-01", "sort_by": "updatedAt"}),
    (
        "chatbotId&status=completed&sortBy=updatedAt",
        {"chatbot_id": "bot-01", "status": "completed", "sort_by": "updatedAt"},
    ),
    ("filter=active&sortBy=updatedAt", {"filter": "active", "sort_by": "updatedAt"}),
    ("nodeId=n0 (almost every session)", {"node_id": "n0"}),
    ("nodeId=n20 (the long sessions)", {"node_id": "n20"}),
    ("chatbotId&nodeId=n3", {"chatbot_id": "bot-01", "node_id": "n3"}),
    ("completionReason=timeout", {"completion_reason": "timeout"}),
    ("minMessages=20", {"min_messages": 20}),
    ("maxMessages=2", {"max_messages": 2}),
    ("minMessages=5&maxMessages=8", {"min_messages": 5, "max_messages": 8}),
    ("minDuration=1800", {"min_duration": 1800}),
    ("maxDuration=5", {"max_duration": 5}),
    ("hasError=true", {"has_error": True}),
    ("hasError=false", {"has_error": False}),
    ("variable=lang:en", {"variable": "lang:en"}),
    ("variable=lang:en&variable=tier:1", {"variable": ["lang:en", "tier:1"]}),
    (
        "status=completed&completionReason=flow_end&minMessages=10",
        {"status": "completed", "completion_reason": "flow_end", "min_messages": 10},
    ),
    (
        "chatbotId&hasError=false&variable=lang:de",
        {"chatbot_id": "bot-02", "has_error": False, "variable": "lang:de"},
    ),
    (
        "filter=active&minDuration=600&sortBy=updatedAt",
        {"filter": "active", "min_duration": 600, "sort_by": "updatedAt"},
    ),
    (
        "nodeId=n1&maxDuration=120&variable=tier:2",
        {"node_id": "n1", "max_duration": 120, "variable": "tier:2"},
    ),
]


async def measure_advanced(q: Any, spec: Spec, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, kwargs in ADVANCED:
        progress(f"advanced: {label}")

        async def page(_: int, kw: dict[str, Any] = kwargs) -> Any:
            return await q.list(limit=20, now=spec.now, **kw)

        first = await page(0)
        out[f"advanced {label}"] = {
            **await timeit(page, reps, 1),
            "total": first.total,
        }
    if q._store.engine.dialect.name == "sqlite":
        # the plan before migration 0006: the status index's range, then a sort
        s = q._store.tables.sessions
        old = sa.text(
            f"SELECT id FROM {s.name} INDEXED BY ix_{PREFIX}sessions_status_started "
            "WHERE status = 'completed' ORDER BY updated_at DESC, id DESC LIMIT 21"
        )

        async def before(_: int) -> Any:
            async with q._store.engine.connect() as conn:
                return (await conn.execute(old)).all()

        progress("advanced: baseline")
        label = "advanced status=completed&sortBy=updatedAt, plan before 0006 (baseline)"
        out[label] = await timeit(before, max(3, reps // 5), 1)
    progress_done()
    return out


async def measure(url: str, spec: Spec, reps: int, sections: set[str]) -> dict[str, Any]:
    tracker = sessiontrack.Tracker(url, prefix=PREFIX, migrate=True, sweep_interval=None)
    out: dict[str, Any] = {}
    t_open = time.perf_counter()
    async with tracker:
        # the first open of a data set made at an older revision migrates it (0006: indexes)
        print(f"  opened in {time.perf_counter() - t_open:.1f} s", flush=True)
        q = tracker.sessions
        if "advanced" in sections:
            out.update(await measure_advanced(q, spec, reps))
        if "basic" not in sections:
            return out
        store = tracker.store
        bots = [f"bot-{i:02d}" for i in range(spec.chatbots)]
        s = store.tables.sessions
        async with store.engine.connect() as conn:
            long_ids = [
                r[0]
                for r in await conn.execute(
                    sa.select(s.c.id).where(s.c.message_count == 50).limit(200)
                )
            ]
        rng = random.Random(1)
        rng.shuffle(long_ids)

        async def first_completed(_: int) -> Any:
            page = await q.list(status="completed", limit=20)
            assert len(page.data) == 20 and page.total > 0
            return page

        async def first_bot_completed(i: int) -> Any:
            page = await q.list(chatbot_id=bots[i % 5], status="completed", limit=20)
            assert len(page.data) == 20
            return page

        async def first_active(_: int) -> Any:
            return await q.list(filter="active", limit=20)

        async def first_all(_: int) -> Any:
            return await q.list(limit=20)

        progress("first pages")
        out["first page status=completed"] = await timeit(first_completed, reps)
        out["first page chatbot+status=completed"] = await timeit(first_bot_completed, reps)
        out["first page filter=active"] = await timeit(first_active, reps)
        out["first page, no filter"] = await timeit(first_all, reps)

        async def search(i: int) -> Any:
            return await q.list(search=["ann", "5511", "garcía"][i % 3], limit=20)

        out["first page search (substring, informative)"] = await timeit(
            search, max(3, reps // 5), 1
        )

        # The cursor of the page 100,000 rows deep, reached by walking the cursors.
        depth = min(100_000, spec.sessions // 10)
        cursors: dict[str, str | None] = {}
        for label, kwargs in (("status=completed", {"status": "completed"}), ("no filter", {})):
            cursor = None
            for n in range(depth // 100):
                if not n % 50:
                    progress(f"walking to depth {depth:,} ({label}): {n * 100:,}")
                page = await q.list(limit=100, cursor=cursor, **kwargs)
                cursor = page.next_cursor
            cursors[label] = cursor
        progress_done()
        for label, kwargs in (("status=completed", {"status": "completed"}), ("no filter", {})):

            async def by_cursor(_: int, kw: dict[str, Any] = kwargs, lb: str = label) -> Any:
                page = await q.list(limit=20, cursor=cursors[lb], **kw)
                assert len(page.data) == 20
                return page

            async def by_offset(_: int, kw: dict[str, Any] = kwargs) -> Any:
                page = await q.list(limit=20, offset=depth, **kw)
                assert len(page.data) == 20
                return page

            progress(f"deep pages ({label})")
            out[f"page {depth:,} deep by cursor, {label}"] = await timeit(by_cursor, reps)
            out[f"page {depth:,} deep by offset, {label} (baseline)"] = await timeit(
                by_offset, max(3, reps // 5), 1
            )
        c = await q.list(limit=20, cursor=cursors["status=completed"], status="completed")
        o = await q.list(limit=20, offset=depth, status="completed")
        assert [x.id for x in c.data] == [x.id for x in o.data], "cursor and offset disagree"

        async def detail(i: int) -> Any:
            d = await q.get(long_ids[i % len(long_ids)])
            assert len(d.messages) == 50
            return d

        progress("details")
        out["detail with 50 messages"] = await timeit(detail, reps)

        async def stats(_: int) -> Any:
            return await q.stats()

        out["stats (informative)"] = await timeit(stats, max(3, reps // 5), 1)
        progress_done()
    return out


TARGETS = {
    "first page status=completed": 20,
    "first page chatbot+status=completed": 20,
    "page 100,000 deep by cursor, status=completed": 20,
    "page 100,000 deep by cursor, no filter": 20,
    "detail with 50 messages": 10,
    **{f"advanced {label}": 20 for label, _ in ADVANCED},
}


def report(backend: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    summary = {}
    for name in runs[0]:
        med = median([r[name]["median_ms"] for r in runs])
        p95 = median([r[name]["p95_ms"] for r in runs])
        target = TARGETS.get(name)
        total = runs[0][name].get("total")
        summary[name] = {"median_ms": med, "p95_ms": p95, "target_ms": target, "total": total}
        rows.append(
            [
                name,
                med,
                p95,
                "-" if total is None else f"{total:,}",
                f"≤ {target}" if target else "-",
                verdict(med, target, at_most=True) if target else "",
            ]
        )
    print(f"\nresults on {backend} (ms; medians over {len(runs)} runs):")
    print_table(["query", "median", "p95", "matching", "target", "verdict"], rows)
    return summary


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--postgres-url", default=POSTGRES_URL)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=30, help="timed calls per query and run")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--reload", action="store_true", help="generate and load again")
    ap.add_argument("--load-only", action="store_true")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument(
        "--sections",
        default="basic,advanced",
        help="basic (the list, cursor and detail queries), advanced (the advanced filters)",
    )
    args = ap.parse_args()
    spec = Spec(sessions=args.sessions, events=args.events)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    pg_version = await postgres_version(args.postgres_url) if "postgresql" in backends else None
    info = machine(pg_version)
    print_machine(info)
    print(
        f"data set: {spec.sessions:,} sessions, {spec.events:,} events, "
        f"{spec.chatbots} chatbots over {spec.weeks} weeks (generator {spec.key})\n"
    )
    results: dict[str, Any] = {"machine": info, "args": vars(args)}
    for backend in backends:
        if backend == "postgresql" and pg_version is None:
            print(f"PostgreSQL at {args.postgres_url} not reachable: skipped\n")
            continue
        print(f"== {backend} ==", flush=True)
        url, load_s = await cached_load(backend, spec, args.postgres_url, args.reload)
        if load_s is not None:
            print(f"  loading took {load_s:.0f} s", flush=True)
        res: dict[str, Any] = {"load_seconds": load_s}
        if not args.load_only:
            sections = {x.strip() for x in args.sections.split(",")}
            runs = [await measure(url, spec, args.reps, sections) for _ in range(args.runs)]
            res["runs"] = runs
            res["summary"] = report(backend, runs)
        results[backend] = res
    write_json(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
