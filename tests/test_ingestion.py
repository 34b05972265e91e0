"""Batched durable ingestion: flush, shutdown, order, idempotency, the rules, outages."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pluggy
import pytest
import sqlalchemy as sa

import sessiontrack
from tests.conftest import POSTGRES_URL, require_postgres
from tests.netproxy import Proxy

pytestmark = pytest.mark.anyio


def start(pm: pluggy.PluginManager, bot: str = "bot", **kw: Any) -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id=bot, **kw)
    return sid


async def test_flush_is_a_durability_checkpoint(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, database_url: str, prefix: str
) -> None:
    sid = start(pm, contact={"phone": "+1555", "name": "Ann"})
    for i in range(5):
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
    await tracker.flush()
    # another connection, another tracker: the data is committed, not just in memory
    async with sessiontrack.Tracker(database_url, prefix=prefix, sweep_interval=None) as other:
        detail = await other.sessions.get(sid)
    assert detail.node_history == [f"n{i}" for i in range(5)]
    assert detail.customer_name == "Ann"


async def test_leaving_the_context_flushes_everything(database_url: str, prefix: str) -> None:
    sids = []
    async with sessiontrack.Tracker(database_url, prefix=prefix, migrate=True) as tracker:
        for _ in range(50):
            sid = sessiontrack.new_session_id()
            sids.append(sid)
            tracker.plugin_manager.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
            tracker.plugin_manager.hook.sessiontrack_message(
                session_id=sid, direction="inbound", text="x"
            )
        # no flush: closing must commit it all
    async with sessiontrack.Tracker(database_url, prefix=prefix) as reopened:
        page = await reopened.sessions.list(limit=100)
    assert page.total == 50
    assert {s.id for s in page.data} == set(sids)
    assert all(s.message_count == 1 for s in page.data)


async def test_per_session_order_holds_across_many_interleaved_sessions(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    rng = random.Random(7)
    sessions = {start(pm): 0 for _ in range(40)}
    pending = list(sessions) * 30
    rng.shuffle(pending)
    for sid in pending:
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{sessions[sid]}")
        sessions[sid] += 1
    await tracker.flush()
    for sid in rng.sample(list(sessions), 5):
        detail = await tracker.sessions.get(sid)
        assert detail.node_history == [f"n{i}" for i in range(30)]
        assert detail.node_count == 30
    seqs: list[int] = []
    async with tracker.subscribe(after=0) as sub:
        async for event in sub:
            seqs.append(event.seq)
            if len(seqs) == 40 + 40 * 30:
                break
    assert seqs == list(range(1, len(seqs) + 1))


async def test_same_message_id_is_stored_once(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    other = start(pm)
    pm.hook.sessiontrack_message(
        session_id=sid, direction="inbound", text="hi", message_id="wamid.1"
    )
    pm.hook.sessiontrack_message(
        session_id=sid, direction="inbound", text="hi", message_id="wamid.1"
    )
    await tracker.flush()  # a webhook retry arriving in a later batch
    pm.hook.sessiontrack_message(
        session_id=sid, direction="inbound", text="hi", message_id="wamid.1"
    )
    # the same channel id in another session is another message
    pm.hook.sessiontrack_message(
        session_id=other, direction="inbound", text="hi", message_id="wamid.1"
    )
    await tracker.flush()
    assert [m.text for m in await tracker.sessions.messages(sid)] == ["hi"]
    assert (await tracker.sessions.get(sid)).message_count == 1
    assert (await tracker.sessions.get(other)).message_count == 1
    assert tracker.stats.duplicates == 2


async def test_orphan_late_and_duplicate_start_are_dropped_counted_and_logged(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sessiontrack")
    never_started = sessiontrack.new_session_id()
    pm.hook.sessiontrack_node_executed(session_id=never_started, node_id="a")
    sid = start(pm)
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
    pm.hook.sessiontrack_session_completed(session_id=sid)
    past_grace = datetime.now(UTC) + timedelta(minutes=1)  # beyond the completion grace window
    pm.hook.sessiontrack_message(
        session_id=sid, direction="outbound", text="too late", at=past_grace
    )
    pm.hook.sessiontrack_status_changed(session_id=sid, status="running")
    await tracker.flush()
    s = tracker.stats
    assert (s.orphans, s.late, s.duplicates) == (1, 2, 1)
    assert "1 orphan" in caplog.text and "2 late" in caplog.text
    detail = await tracker.sessions.get(sid)
    assert (detail.status, detail.message_count) == ("completed", 0)
    with pytest.raises(sessiontrack.SessionNotFound):
        await tracker.sessions.get(never_started)
    # the writer goes on
    later = start(pm)
    await tracker.flush()
    assert (await tracker.sessions.get(later)).status == "running"


async def test_payload_and_variables_are_snapshots(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    variables = {"step": 1}
    sid = start(pm, variables=variables)
    variables["step"] = 99  # the engine mutates its dict after the call
    payload = {"buttons": ["a"]}
    pm.hook.sessiontrack_message(
        session_id=sid, direction="outbound", type="interactive", payload=payload
    )
    payload["buttons"].append("b")
    pm.hook.sessiontrack_variables_changed(session_id=sid, variables={"name": "Ann"})
    await tracker.flush()
    detail = await tracker.sessions.get(sid)
    assert detail.variables == {"step": 1, "name": "Ann"}
    assert detail.messages[0].payload == {"buttons": ["a"]}


@pytest.mark.parametrize(
    "tracker_options", [{"max_buffered": 10, "max_batch": 5, "overflow": "raise"}]
)
async def test_overflow_raise_refuses_at_the_call_site_and_loses_nothing_accepted(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    accepted, refused = [], 0
    for _ in range(30):  # no await: the writer cannot run, the buffer fills
        sid = sessiontrack.new_session_id()
        try:
            pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
            accepted.append(sid)
        except sessiontrack.BufferFull as exc:
            assert exc.limit == 10
            refused += 1
    assert (len(accepted), refused) == (10, 20)
    assert tracker.stats.dropped_overflow == 20
    await tracker.flush()
    page = await tracker.sessions.list(limit=100)
    assert {s.id for s in page.data} == set(accepted)


@pytest.mark.parametrize(
    "tracker_options", [{"max_buffered": 10, "max_batch": 5, "overflow": "drop"}]
)
async def test_overflow_drop_counts_and_logs(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sessiontrack")
    for _ in range(25):
        pm.hook.sessiontrack_session_started(
            session_id=sessiontrack.new_session_id(), chatbot_id="b"
        )
    assert tracker.stats.dropped_overflow == 15
    assert "buffer full" in caplog.text
    await tracker.flush()
    assert (await tracker.sessions.stats()).total == 10


@pytest.mark.parametrize(
    "tracker_options", [{"max_buffered": 400, "max_batch": 20, "high_water": 200}]
)
async def test_drain_holds_the_engine_above_high_water_until_a_quarter_is_left(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = start(pm)
    await tracker.drain()  # below the mark: returns without waiting for the writer
    assert tracker.stats.buffered == 1
    for i in range(350):  # no await: the writer cannot run, the buffer fills
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
    assert tracker.stats.buffered == 351
    with anyio.fail_after(10):
        await tracker.drain()
    assert tracker.stats.buffered <= 50  # a quarter of high_water
    await tracker.flush()
    assert (await tracker.sessions.get(sid)).node_count == 350  # drain loses nothing


async def test_a_report_the_database_refuses_in_the_event_log_is_isolated(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL's JSONB refuses a NUL character (\\u0000): the event log's COPY fails,
    and the bisection must find that one report among its batch. SQLite stores it. (The
    hooks refuse NUL at the call site, so the test slips it past their string check.)"""
    caplog.set_level(logging.ERROR, "sessiontrack")
    sids = [start(pm) for _ in range(3)]
    for sid in sids:
        pm.hook.sessiontrack_message(session_id=sid, direction="inbound", text="fine")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sessiontrack._validate, "_check_str", lambda *args: None)
        pm.hook.sessiontrack_message(session_id=sids[1], direction="inbound", text="nul \x00 here")
    for sid in sids:
        pm.hook.sessiontrack_message(session_id=sid, direction="outbound", text="after")
    await tracker.flush()
    counts = [(await tracker.sessions.get(sid)).message_count for sid in sids]
    texts = [m.text for m in await tracker.sessions.messages(sids[1])]
    if tracker.store.dialect == "postgresql":
        assert counts == [2, 2, 2]
        assert texts == ["fine", "after"]
        assert tracker.stats.failed == 1
        assert "rejected a report" in caplog.text
    else:
        assert counts == [2, 3, 2]
        assert texts == ["fine", "nul \x00 here", "after"]
        assert tracker.stats.failed == 0
    assert tracker.stats.retries == 0  # refused, not mistaken for an outage


def test_outages_and_refusals_are_told_apart_by_their_error_codes(tmp_path: Path) -> None:
    import sqlite3

    import asyncpg.exceptions as pg

    from sessiontrack.store import SQLAlchemyStore
    from sessiontrack.store._bulk import driver_error

    _is_transient = SQLAlchemyStore("sqlite+aiosqlite://").is_transient  # the store decides

    dialect = sa.create_engine("postgresql+asyncpg://").dialect

    def via_copy(exc: Exception) -> bool:
        return _is_transient(driver_error(exc, "COPY", dialect))

    assert via_copy(pg.ConnectionDoesNotExistError("gone"))
    assert via_copy(pg.AdminShutdownError("shutting down"))
    assert via_copy(pg.DeadlockDetectedError("deadlock"))
    assert via_copy(ConnectionResetError())
    assert not via_copy(pg.UntranslatableCharacterError("\\u0000"))
    assert not via_copy(pg.StringDataRightTruncationError("too long"))

    def sqlite_error(sql: str, busy: bool = False) -> sa.exc.DBAPIError:
        db = tmp_path / "codes.db"
        first = sqlite3.connect(db, isolation_level=None, timeout=0)
        second = sqlite3.connect(db, isolation_level=None, timeout=0)
        try:
            if busy:
                first.execute("BEGIN EXCLUSIVE")
            second.execute(sql)
        except sqlite3.Error as exc:
            return sa.exc.OperationalError(sql, None, exc)
        finally:
            first.close()
            second.close()
        raise AssertionError(f"{sql} did not fail")

    assert _is_transient(sqlite_error("CREATE TABLE t (x)", busy=True))  # SQLITE_BUSY
    assert not _is_transient(sqlite_error("SELECT json_extract('{bad', '$')"))  # SQLITE_ERROR


@pytest.mark.postgresql
async def test_database_outage_is_retried_with_backoff_and_loses_nothing(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer's connection to PostgreSQL is cut (a real TCP proxy); reports keep being
    accepted and buffered, and all of them land once the database is back."""
    await require_postgres()
    caplog.set_level(logging.WARNING, "sessiontrack")
    url = sa.make_url(POSTGRES_URL)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with sessiontrack.Tracker(
            proxied,
            prefix=prefix,
            migrate=True,
            retry_initial=0.02,
            retry_max=0.2,
            sweep_interval=None,
        ) as tracker:
            pm = tracker.plugin_manager
            sids = [start(pm) for _ in range(20)]
            await tracker.flush()
            await proxy.cut()
            fixed_expiry = datetime.now(UTC) + timedelta(hours=3)
            during = start(pm, expires_at=fixed_expiry, variables={"k": 1})
            for sid in sids:
                pm.hook.sessiontrack_message(
                    session_id=sid, direction="inbound", text="during outage"
                )
            with anyio.move_on_after(1):
                await tracker.flush()  # cannot complete while the database is away
            assert tracker.stats.buffered == 21
            assert tracker.stats.retries >= 2
            await proxy.restore()
            with anyio.fail_after(20):
                await tracker.flush()
            assert tracker.stats.buffered == 0
            stats = await tracker.sessions.stats()
            page = await tracker.sessions.list(limit=100)
            detail = await tracker.sessions.get(during)
        assert stats.total == 21
        assert sum(s.message_count == 1 for s in page.data) == 20
        # the batch was folded again on every retry: it must land as reported
        assert detail.expires_at == fixed_expiry and detail.variables == {"k": 1}
        assert tracker.stats.failed == 0
        assert "database unavailable" in caplog.text
    finally:
        await proxy.cut()
        from tests.conftest import drop_prefixed_tables

        await drop_prefixed_tables(POSTGRES_URL, prefix)


async def test_a_report_the_database_rejects_is_isolated_and_the_rest_commit(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "sessiontrack")
    good = start(pm)
    with pytest.MonkeyPatch.context() as patch:  # past the hooks' length check
        patch.setattr(sessiontrack._validate, "_check_str", lambda *args: None)
        bad = start(pm, bot="x" * 300)  # longer than the chatbot_id column on PostgreSQL
    also_good = start(pm)
    await tracker.flush()
    assert (await tracker.sessions.get(good)).status == "running"
    assert (await tracker.sessions.get(also_good)).status == "running"
    if tracker.store.dialect == "postgresql":
        assert tracker.stats.failed == 1
        assert "rejected a report" in caplog.text
        with pytest.raises(sessiontrack.SessionNotFound):
            await tracker.sessions.get(bad)


def test_a_tracker_can_be_started_again_on_a_new_event_loop(tmp_path: Path) -> None:
    """A host that restarts its app (or a test runner) enters the same tracker twice."""
    tracker = sessiontrack.Tracker(
        f"sqlite+aiosqlite:///{tmp_path / 'again.db'}", poll_interval=0.05
    )

    async def one_run(n: int) -> int:
        async with tracker:
            sid = start(tracker.plugin_manager)
            async with tracker.subscribe() as sub:
                tracker.plugin_manager.hook.sessiontrack_node_executed(session_id=sid, node_id="x")
                with anyio.fail_after(5):
                    async for event in sub:
                        if event.kind == "node_executed":
                            break
            return (await tracker.sessions.stats()).total

    assert anyio.run(one_run, 1) == 1
    assert anyio.run(one_run, 2) == 2


async def test_a_subscription_opened_after_flush_starts_after_what_was_flushed(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    """flush() also waits until this process has published the batch (on PostgreSQL the
    writer's own NOTIFY can route it through a read of the log)."""
    sid = start(pm)
    for i in range(20):
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"before{i}")
        await tracker.flush()
        assert tracker.published_seq == await tracker.store.last_seq()
        async with tracker.subscribe() as sub:
            pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"after{i}")
            with anyio.fail_after(5):
                event = await sub.__anext__()
        assert event.data["node_id"] == f"after{i}"


async def test_subscriptions_end_when_the_tracker_closes(database_url: str, prefix: str) -> None:
    """Live consumers (SSE streams, the socket pump) get everything committed, then stop
    instead of outliving the tracker."""
    tracker = sessiontrack.Tracker(database_url, prefix=prefix, migrate=True, poll_interval=0.05)
    running, subscribed, close_now, ended = (anyio.Event() for _ in range(4))
    got: list[str] = []

    async def run_tracker() -> None:
        async with tracker:
            running.set()
            await close_now.wait()
            start(tracker.plugin_manager)  # committed by the closing flush

    async def consume() -> None:
        async with tracker.subscribe() as sub:
            subscribed.set()
            async for event in sub:
                got.append(event.kind)
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_tracker)
        with anyio.fail_after(10):
            await running.wait()
            tg.start_soon(consume)
            await subscribed.wait()
            close_now.set()
            await ended.wait()
    assert got == ["session_started"]


async def test_an_engine_still_reporting_while_the_tracker_closes_gets_tracker_not_running(
    database_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A live engine does not hold shutdown up: from the moment closing begins its calls
    raise, what it reported before is committed, and the log says how much."""
    caplog.set_level(logging.INFO, "sessiontrack")
    tracker = sessiontrack.Tracker(database_url, prefix=prefix, migrate=True)
    accepted: list[str] = []
    refused: list[BaseException] = []
    busy = anyio.Event()

    async def engine(pm: pluggy.PluginManager, sid: str) -> None:
        for i in range(10**9):
            try:
                pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
            except sessiontrack.TrackerNotRunning as exc:
                refused.append(exc)
                return
            accepted.append(f"n{i}")
            if i == 200:
                busy.set()
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(20):  # a hang guard: the old shutdown waited its full 30 s
        async with anyio.create_task_group() as tg, tracker:
            sid = start(tracker.plugin_manager)
            tg.start_soon(engine, tracker.plugin_manager, sid)
            await busy.wait()
    assert refused and "closing" in str(refused[0])
    assert not tracker.running
    async with sessiontrack.Tracker(database_url, prefix=prefix) as reopened:
        assert (await reopened.sessions.get(sid)).node_history == accepted
    closing = [r.getMessage() for r in caplog.records if "committed while closing" in r.message]
    assert ", 0 not committed" in closing[0]  # [1] is the reopened tracker's
    assert "unavailable" not in caplog.text


@pytest.mark.postgresql
async def test_shutdown_during_an_outage_ends_at_shutdown_timeout_with_exact_counts(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    await require_postgres()
    caplog.set_level(logging.INFO, "sessiontrack")
    url = sa.make_url(POSTGRES_URL)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        tracker = sessiontrack.Tracker(
            proxied,
            prefix=prefix,
            migrate=True,
            retry_initial=0.02,
            retry_max=0.1,
            sweep_interval=None,
            shutdown_timeout=1.0,
        )
        with anyio.fail_after(20):
            async with tracker:
                pm = tracker.plugin_manager
                sids = [start(pm) for _ in range(5)]
                await tracker.flush()
                await proxy.cut()
                for sid in sids:
                    pm.hook.sessiontrack_node_executed(session_id=sid, node_id="lost")
                await anyio.sleep(0.3)  # the writer fails and retries meanwhile
        (line,) = [r.getMessage() for r in caplog.records if "committed while closing" in r.message]
        assert "0 reports committed while closing, 5 not committed" in line
        assert "database unavailable" in line
    finally:
        await proxy.cut()
        from tests.conftest import drop_prefixed_tables

        await drop_prefixed_tables(POSTGRES_URL, prefix)
