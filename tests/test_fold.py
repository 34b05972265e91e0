"""The fold, directly: the pure function the writer applies to each batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sessiontrack.store._fold import Folder, Report

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SID = "01a20d22-0000-7000-8000-000000000001"


def fold(reports: list[Report], idle: int | None = 60):  # type: ignore[no-untyped-def]
    return Folder({}, {}, set(), lambda _c, _v: {}, last_seq=0, idle_timeout_s=idle).fold(reports)


def test_folding_the_same_batch_twice_gives_the_same_result() -> None:
    """A transaction retried after an outage folds its batch again: reports must not change."""
    reports: list[Report] = [
        (
            "session_started",
            SID,
            T0,
            {
                "chatbot_id": "b",
                "expires_at": T0 + timedelta(hours=1),
                "variables": '{"a": 1}',
                "customer_name": "Ann",
            },
        ),
        (
            "message",
            SID,
            T0,
            {"direction": "inbound", "type": "text", "payload": '{"x": 1}', "message_id": "m1"},
        ),
        ("variables_changed", SID, T0, {"variables": '{"b": 2}'}),
    ]
    first, second = fold(reports), fold(reports)
    assert first.event_rows == second.event_rows
    assert [s.row() for s in first.new_sessions] == [s.row() for s in second.new_sessions]
    (state,) = second.new_sessions
    assert state.expires_at == T0 + timedelta(hours=1)
    assert state.variables == {"a": 1, "b": 2}


def test_sweeper_expiry_yields_to_activity_queued_before_it() -> None:
    started: Report = ("session_started", SID, T0, {"chatbot_id": "b"})
    node: Report = ("node_executed", SID, T0 + timedelta(seconds=59), {"node_id": "n"})
    sweep: Report = (
        "session_completed",
        SID,
        T0 + timedelta(seconds=61),
        {"status": "expired", "reason": "timeout", "if_overdue": True},
    )
    res = fold([started, node, sweep])
    assert res.new_sessions[0].status == "running"  # expires at T0+119 s now
    res = fold([started, sweep])
    assert res.new_sessions[0].status == "expired"
    assert "if_overdue" not in res.event_rows[-1]["data"]


def test_utc_text_caches_the_second_and_formats_like_isoformat() -> None:
    """The SQLite writer's timestamp text, against the plain formatting it replaces."""
    import random
    from datetime import timezone

    from sessiontrack.store._bulk import UTCText, utc_text

    rng = random.Random(3)
    fast = UTCText()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    previous = base
    for _ in range(20_000):
        # mostly the same or the next second, as in a batch; now and then anywhere
        step = rng.choice([0, 1, 999_999, 1_000_000, rng.randrange(10**13)])
        moment = previous + timedelta(microseconds=step)
        if rng.random() < 0.1:
            moment = moment.astimezone(timezone(timedelta(minutes=rng.randrange(-720, 721, 15))))
        assert fast(moment) == utc_text(moment)
        previous = moment
    with pytest.raises(ValueError, match="naive"):
        fast(datetime(2026, 1, 1))
