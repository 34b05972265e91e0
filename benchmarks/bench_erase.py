"""What an erasure costs, with and without its scrub, on SQLite and PostgreSQL.

``python benchmarks/bench_erase.py [--sessions N] [--postgres URL]``: writes N sessions of
about 9 events each (two customers in every hundred share a phone number), then erases
one phone number with ``scrub=False`` and another with ``scrub=True`` (SQLite: FTS5
optimize, VACUUM, WAL truncate; PostgreSQL: VACUUM FULL of the touched tables), and
prints the seconds each took and the database's size. docs/privacy.md quotes the figures.
Give PostgreSQL a database of its own: the scrub waits (30 s at most) for snapshots other
sessions of the same database hold.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sessiontrack

FLOW = {"nodes": [{"id": "ask", "type": "input", "position": {"x": 0, "y": 0}}], "edges": []}


async def fill(tracker: sessiontrack.Tracker, n: int) -> None:
    hook = tracker.plugin_manager.hook
    hook.sessiontrack_flow_registered(chatbot_id="bench", name="Bench", flow=FLOW)
    start = datetime.now(UTC) - timedelta(days=1)
    for i in range(n):
        sid = sessiontrack.new_session_id()
        phone = f"+4915{i % (n // 2 or 1):08d}"
        at = start + timedelta(seconds=i)
        hook.sessiontrack_session_started(
            session_id=sid, chatbot_id="bench", contact={"phone": phone, "name": f"N {i}"}, at=at
        )
        hook.sessiontrack_node_executed(session_id=sid, node_id="ask", at=at)
        for k in range(5):
            hook.sessiontrack_message(
                session_id=sid,
                direction="inbound" if k % 2 else "outbound",
                text=f"message {k} of session {i} about order {i * 7 + k}",
                at=at + timedelta(milliseconds=k + 1),
            )
        hook.sessiontrack_session_completed(session_id=sid, at=at + timedelta(milliseconds=9))
        if i % 5000 == 4999:
            await tracker.flush()
    await tracker.flush()


async def run(url: str, n: int, prefix: str) -> None:
    async with sessiontrack.Tracker(url, prefix=prefix, migrate=True, sweep_interval=None) as t:
        began = time.perf_counter()
        await fill(t, n)
        filled = time.perf_counter() - began
        for scrub, phone in ((False, "+491500000001"), (True, "+491500000002")):
            began = time.perf_counter()
            result = await t.erase(phone=phone, scrub=scrub)
            took = time.perf_counter() - began
            print(
                f"{t.store.dialect}: {n} sessions ({filled:.0f} s to write); erase "
                f"scrub={scrub}: {took:.2f} s ({result.sessions} sessions, {result.events} "
                f"events, scrubbed={result.scrubbed})"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1/test")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    sqlite = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    asyncio.run(run(sqlite, args.sessions, "sessiontrack_"))
    size = sum(f.stat().st_size for f in folder.glob("bench.db*"))
    print(f"sqlite: file {size / 1e6:.0f} MB")
    prefix = f"bench_erase_{uuid.uuid4().hex[:6]}_"
    try:
        asyncio.run(run(args.postgres, args.sessions, prefix))
    finally:
        asyncio.run(drop(args.postgres, prefix))


async def drop(url: str, prefix: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        for name in names:
            if name.startswith(prefix):
                await conn.execute(sa.text(f'DROP TABLE "{name}" CASCADE'))
    await engine.dispose()


if __name__ == "__main__":
    main()
