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


def test_a_repeated_sweeper_expiry_is_not_a_late_report() -> None:
    """Two sweeps can see a session overdue before the first expiry is committed (a slow
    commit, a short sweep interval): the second expiry is dropped, not counted as late."""
    started: Report = ("session_started", SID, T0, {"chatbot_id": "b"})

    def sweep(s: int) -> Report:
        return (
            "session_completed",
            SID,
            T0 + timedelta(seconds=s),
            {"status": "expired", "reason": "timeout", "if_overdue": True},
        )

    res = fold([started, sweep(61), sweep(62)])
    assert res.new_sessions[0].status == "expired"
    assert (res.late, res.dropped) == (0, [])
    assert [r["kind"] for r in res.event_rows] == ["session_started", "session_completed"]
    # an engine's report after the expiry is still late
    node: Report = ("node_executed", SID, T0 + timedelta(seconds=63), {"node_id": "n"})
    assert fold([started, sweep(61), node]).late == 1


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


def test_a_report_stamped_earlier_never_moves_expiry_back() -> None:
    started: Report = ("session_started", SID, T0, {"chatbot_id": "b"})
    late_node: Report = ("node_executed", SID, T0 + timedelta(seconds=30), {"node_id": "a"})
    early_msg: Report = (
        "message",
        SID,
        T0 + timedelta(seconds=10),  # the engine's clock, or a report from another worker
        {"direction": "inbound", "type": "text"},
    )
    (state,) = fold([started, late_node, early_msg], idle=60).new_sessions
    assert state.expires_at == T0 + timedelta(seconds=90)
    assert state.updated_at == T0 + timedelta(seconds=30)


def test_orphans_and_late_reports_are_listed_with_session_and_hook() -> None:
    other = "01a20d22-0000-7000-8000-000000000002"
    reports: list[Report] = [
        ("node_executed", other, T0, {"node_id": "a"}),
        ("session_started", SID, T0, {"chatbot_id": "b"}),
        ("session_completed", SID, T0, {"status": "completed", "reason": None}),
        ("message", SID, T0, {"direction": "outbound", "type": "text"}),
        ("session_completed", SID, T0, {"status": "expired", "node_id": None, "reason": None}),
        (
            "session_completed",
            SID,
            T0,
            {"status": "stopped", "stop_requested": True, "stop_id": "x"},
        ),
    ]
    res = fold(reports)
    assert (res.orphans, res.late) == (1, 3)
    assert [(d.reason, d.session_id, d.hook, d.status, d.stop_id) for d in res.dropped] == [
        ("orphan", other, "sessiontrack_node_executed", None, None),
        ("late", SID, "sessiontrack_message", "completed", None),
        ("late", SID, "sessiontrack_status_changed", "completed", None),
        ("late", SID, "Tracker.stop", "completed", "x"),
    ]


def test_a_flow_registered_in_the_batch_labels_the_nodes_after_it_and_not_before() -> None:
    def flow(label: str) -> Report:
        graph = {"nodes": [{"id": "a", "data": {"label": label}}], "edges": []}
        return (
            "flow_registered",
            "",
            T0,
            {"chatbot_id": "b", "name": "B", "flow": graph, "version": "v"},
        )

    committed = {("b", "v"): {"a": "Committed"}}
    folder = Folder(
        {}, {}, set(), lambda c, v: committed.get((c, v), {}), last_seq=0, idle_timeout_s=None
    )
    res = folder.fold(
        [
            flow("Committed"),
            ("session_started", SID, T0, {"chatbot_id": "b"}),
            ("node_executed", SID, T0, {"node_id": "a"}),
            flow("Grown"),  # the same version again: its graph replaces the old one
            ("node_executed", SID, T0, {"node_id": "a"}),
        ]
    )
    assert [e.data["label"] for e in res.events if e.kind == "node_executed"] == [
        "Committed",
        "Grown",
    ]
    assert res.flow_labels == {("b", "v"): {"a": "Grown"}}  # cached by the store at commit


def test_totals_are_stamped_into_the_events_that_carry_them() -> None:
    sid_reports: list[Report] = [
        ("session_started", SID, T0, {"chatbot_id": "b"}),
        ("llm_call", SID, T0, {"model": "m", "input_tokens": 5, "cost": 0.5, "error": None}),
        ("tool_call", SID, T0, {"name": "t", "arguments": '{"a": 1}', "error": "x"}),
        ("message", SID, T0, {"direction": "inbound", "type": "text"}),
        ("node_executed", SID, T0, {"node_id": "n", "error": "boom"}),
        ("session_completed", SID, T0, {"status": "completed"}),
    ]
    res = fold(sid_reports)
    (state,) = res.new_sessions
    assert (state.input_tokens, state.cost, state.llm_calls, state.tool_calls) == (5, 0.5, 1, 1)
    assert state.error_count == 2
    stamped = [(e.kind, e.data.get("totals", {}).get("error_count")) for e in res.events]
    assert stamped == [
        ("session_started", None),
        ("llm_call", 0),
        ("tool_call", 1),
        ("message", None),
        ("node_executed", 2),
        ("session_completed", 2),
    ]
    assert res.events[2].data["arguments"] == {"a": 1}
    assert fold(sid_reports).event_rows == res.event_rows  # a retried batch folds the same
