"""Retention per chatbot: ``Tracker(retention=...)`` checked at construction, enforced by
the sweeper and by ``apply_retention`` (and its ``SyncTracker`` twin), on both backends:
only terminal sessions past their chatbot's period go, with their events, and the purge
is logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack
from sessiontrack._sync import SyncTracker

pytestmark = pytest.mark.anyio
NOW = datetime.now(UTC)


def session(pm: pluggy.PluginManager, chatbot_id: str, ended_days_ago: float | None) -> str:
    """A session of ``chatbot_id`` started 200 days ago, with a message, that ended (was
    completed) ``ended_days_ago`` days ago, or is still running (``None``)."""
    sid = sessiontrack.new_session_id()
    hook = pm.hook
    hook.sessiontrack_session_started(
        session_id=sid, chatbot_id=chatbot_id, at=NOW - timedelta(days=200)
    )
    hook.sessiontrack_message(
        session_id=sid, direction="inbound", text="hello", at=NOW - timedelta(days=200)
    )
    if ended_days_ago is not None:
        hook.sessiontrack_session_completed(session_id=sid, at=NOW - timedelta(days=ended_days_ago))
    return sid


def population(pm: pluggy.PluginManager) -> dict[str, list[str]]:
    """Sessions of three chatbots at several ages; ``gone`` are those that the retention
    ``{"short": 10 days, "*": 30 days}`` purges."""
    out: dict[str, list[str]] = {"gone": [], "kept": []}
    for bot, ages in (
        ("short", [5, 9, 11, 40, None]),
        ("other", [5, 11, 29, 31, 100, None]),
        ("third", [31, 1]),
    ):
        period = 10 if bot == "short" else 30
        for age in ages:
            sid = session(pm, bot, age)
            out["gone" if age is not None and age > period else "kept"].append(sid)
    return out


async def stored_ids(tracker: sessiontrack.Tracker) -> set[str]:
    page = await tracker.sessions.list(limit=100)
    return {s.id for s in page.data}


async def event_session_ids(tracker: sessiontrack.Tracker) -> set[str]:
    return {e.session_id for e in await tracker.store.events_after(0, limit=10_000)}


RULES = {"short": timedelta(days=10), "*": timedelta(days=30)}


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    return {"retention": RULES, "sweep_interval": None}


async def test_apply_retention_purges_each_chatbot_by_its_period_and_logs_it(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    made = population(pm)
    await tracker.flush()
    with caplog.at_level(logging.INFO, logger="sessiontrack._sweeper"):
        assert await tracker.apply_retention() == len(made["gone"]) == 5
    assert await stored_ids(tracker) == set(made["kept"])
    assert await event_session_ids(tracker) == set(made["kept"])  # events went with them
    stats = await tracker.sessions.stats()
    assert stats.total == len(made["kept"]) and stats.active == 2
    lines = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("sessiontrack retention: purged 2 sessions of chatbot 'short'")
    assert lines[1].startswith("sessiontrack retention: purged 3 sessions of every other chatbot")
    assert await tracker.apply_retention() == 0  # nothing left past it: nothing logged
    assert len([r for r in caplog.records if "retention" in r.getMessage()]) == 2


async def test_without_a_star_only_the_named_chatbots_are_purged(
    pm: pluggy.PluginManager, database_url: str, prefix: str
) -> None:
    async with sessiontrack.Tracker(
        database_url,
        prefix=prefix,
        migrate=True,
        sweep_interval=None,
        retention={"short": timedelta(days=10)},
    ) as tracker:
        pm.register(tracker, name="second")
        try:
            old_other = session(pm, "other", 400)
            old_short = session(pm, "short", 400)
            await tracker.flush()
            assert await tracker.apply_retention() == 1
            assert await stored_ids(tracker) == {old_other}
            with pytest.raises(sessiontrack.SessionNotFound):
                await tracker.sessions.get(old_short)
        finally:
            pm.unregister(name="second")


async def test_the_sweeper_enforces_retention_on_its_own(
    database_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with sessiontrack.Tracker(
        database_url, prefix=prefix, migrate=True, sweep_interval=0.05, retention=RULES
    ) as tracker:
        pm = tracker.plugin_manager
        made = population(pm)
        await tracker.flush()
        with caplog.at_level(logging.INFO, logger="sessiontrack._sweeper"):
            with anyio.fail_after(10):
                while await stored_ids(tracker) != set(made["kept"]):  # noqa: ASYNC110 - polls the db
                    await anyio.sleep(0.05)
        assert any("purged" in r.getMessage() for r in caplog.records)
        # the search index and the tags lost them too: a word of theirs finds only the kept
        found = await tracker.sessions.search_messages("hello", limit=100)
        assert {m.session_id for m in found.data} == set(made["kept"])


async def test_the_sync_tracker_twin(database_url: str, prefix: str) -> None:
    def run() -> tuple[int, int, int]:
        with SyncTracker(
            database_url, prefix=prefix, migrate=True, sweep_interval=None, retention=RULES
        ) as sync:
            pm = sync.plugin_manager
            made = population(pm)
            sync.flush()
            purged = sync.apply_retention()
            return purged, len(made["gone"]), sync.sessions.list(limit=100).total

    purged, gone, left = await anyio.to_thread.run_sync(run)
    assert purged == gone == 5 and left == 8


async def test_a_tracker_without_retention_purges_nothing(database_url: str, prefix: str) -> None:
    async with sessiontrack.Tracker(
        database_url, prefix=prefix, migrate=True, sweep_interval=None
    ) as tracker:
        session(tracker.plugin_manager, "any", 10_000)
        await tracker.flush()
        assert await tracker.apply_retention() == 0
        assert (await tracker.sessions.stats()).total == 1


async def test_the_store_purge_filters_by_chatbot_and_by_id(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    a = [session(pm, "a", 50) for _ in range(3)]
    b = [session(pm, "b", 50) for _ in range(3)]
    running = session(pm, "a", None)
    await tracker.flush()
    cutoff = NOW - timedelta(days=1)
    store = tracker.store
    # ids: exactly these (one of them still running, one unknown: both passed over), in
    # batches smaller than the list
    unknown = sessiontrack.new_session_id()
    assert await store.purge(cutoff, ids=[a[0], b[0], running, unknown], batch_size=1) == 2
    assert await store.purge(cutoff, chatbot_ids=["b"]) == 2
    assert await stored_ids(tracker) == {a[1], a[2], running}
    assert await store.purge(cutoff, exclude_chatbot_ids=["a"]) == 0
    assert await store.purge(cutoff, exclude_chatbot_ids=["b"]) == 2
    assert await stored_ids(tracker) == {running}


@pytest.mark.parametrize(
    ("retention", "error", "words"),
    [
        ([("*", timedelta(days=1))], TypeError, "retention must be a mapping"),
        ({3: timedelta(days=1)}, TypeError, "retention key 3 must be a chatbot id"),
        ({"": timedelta(days=1)}, ValueError, "retention key '' must be a chatbot id of 1 to"),
        ({"x" * 300: timedelta(days=1)}, ValueError, "must be a chatbot id of 1 to"),
        ({"bot": 30}, TypeError, "retention['bot'] must be a timedelta, got int"),
        ({"*": timedelta(seconds=5)}, ValueError, "retention['*'] must be longer than"),
        ({"*": timedelta(0)}, ValueError, "retention['*'] must be longer than"),
        ({"bot": timedelta(days=40_000)}, ValueError, "at most 100 years, got 40000 days"),
    ],
)
def test_a_bad_retention_raises_at_construction_naming_the_key(
    retention: Any, error: type[Exception], words: str, tmp_path: Any
) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("*", r"\*")):
        sessiontrack.Tracker(f"sqlite+aiosqlite:///{tmp_path}/x.db", retention=retention)
    with pytest.raises(error):
        SyncTracker(f"sqlite+aiosqlite:///{tmp_path}/x.db", retention=retention)
