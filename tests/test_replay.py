"""Recorded helpdesk sessions replayed as regression tests (``sessiontrack.testing``): real
conversations through the example's webhook on SQLite and PostgreSQL, their fixtures from
``GET /{id}/fixture``, replayed against the example's flow engine unchanged (clean) and
with a changed flow (fails at the node that changed, with a readable diff)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import example_helpers  # noqa: F401  (puts the repository's root on sys.path)
import pytest
from example_helpers.harness import Harness, running_helpdesk

from examples.helpdesk.app import FLOW_PATH
from examples.helpdesk.flow import Flow
from examples.helpdesk.replay import HelpdeskReplay
from sessiontrack.testing import ReplayFailed, assert_replays, load_fixture, replay

pytestmark = pytest.mark.anyio

ANN = "15551234567"
DI = "15552000003"


@pytest.fixture
async def hd(database_url: str, prefix: str) -> AsyncIterator[Harness]:
    async with running_helpdesk(database_url, prefix) as harness:
        yield harness


async def fixture_of(hd: Harness, wa_id: str) -> dict[str, Any]:
    [summary] = await hd.sessions(conversationId=wa_id)
    await hd.helpdesk.tracker.flush()
    fixture: dict[str, Any] = await hd.api(f"/{summary['id']}/fixture")
    return fixture


async def record_order(hd: Harness) -> dict[str, Any]:
    """Ann: menu → order → a wrong answer (asked again) → A-1001 found → no, goodbye."""
    ann = hd.customer(ANN, "Ann Lee")
    await ann.say("hi")
    await ann.tap("order")
    await ann.say("where is my parcel?")
    await ann.say("a1001")
    await ann.tap("no")
    return await fixture_of(hd, ANN)


async def record_ticket(hd: Harness) -> dict[str, Any]:
    """Di: menu → support → a list pick → the form → a ticket from the new_ticket lookup."""
    di = hd.customer(DI, "Di Park")
    await di.say("my invoices page crashes")
    await di.tap("support")
    await di.pick("bug")
    await di.submit({"description": "Error 500", "severity": "normal", "email": "di@example.com"})
    return await fixture_of(hd, DI)


def changed_flow(change: Any) -> Flow:
    graph = json.loads(FLOW_PATH.read_text(encoding="utf-8"))
    change(graph)
    return Flow(graph)


def node(graph: dict[str, Any], node_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in graph["nodes"] if n["id"] == node_id)
    return found


async def test_unchanged_engine_replays_both_conversations_clean(hd: Harness) -> None:
    order = await record_order(hd)
    ticket = await record_ticket(hd)
    for fixture in (order, ticket):
        report = await replay(fixture, HelpdeskReplay())
        assert report.ok, str(report)
        assert str(report).endswith(f"clean, {sum(map(len, report.actual))} steps")
        assert report.diff() == "", report.diff()
        # and on the exact flow version the session ran, taken from the fixture
        await assert_replays(fixture, HelpdeskReplay.recorded(fixture))
    # the ticket number came from the recording, not from a new call to new_ticket
    [call] = ticket["recorded"]["toolCalls"]
    assert call["name"] == "new_ticket" and call["nodeId"] == "create_ticket"
    replayer = HelpdeskReplay()
    await assert_replays(ticket, replayer)
    said = [reply.text for _, reply in replayer.replies.sent]
    assert (
        f"Thanks! Ticket {call['result']} is open; we'll email di@example.com within a day." in said
    )


async def test_a_changed_branch_fails_at_the_node_where_the_path_departs(hd: Harness) -> None:
    fixture = await record_order(hd)

    def found_goes_nowhere(graph: dict[str, Any]) -> None:
        for edge in graph["edges"]:
            if edge["source"] == "order_found" and edge.get("sourceHandle") == "found":
                edge["target"] = "order_not_found"

    report = await replay(fixture, HelpdeskReplay(changed_flow(found_goes_nowhere)))
    assert not report.ok
    first = report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("path", 4, "order_status")
    assert first.expected == "node 'order_status'"
    assert first.actual == "node 'order_not_found'"
    assert first.path_before[-3:] == ("ask_order", "lookup_order", "order_found")
    text = str(report)
    assert "first difference (path) in turn 4 at node 'order_status'" in text
    assert 'after inbound message 4 ("a1001"' in text
    assert "path so far: start → welcome → menu → ask_order → lookup_order → order_found\n" in text
    assert "\n-  node order_status\n" in text  # the unified diff
    assert "\n+  node order_not_found\n" in text
    with pytest.raises(ReplayFailed) as failed:
        await assert_replays(fixture, HelpdeskReplay(changed_flow(found_goes_nowhere)))
    assert isinstance(failed.value, AssertionError)
    assert str(failed.value) == text


async def test_a_changed_text_fails_at_the_node_that_says_it(hd: Harness) -> None:
    fixture = await record_order(hd)

    def reworded(graph: dict[str, Any]) -> None:
        node(graph, "order_status")["data"]["text"] = (
            "Your order {{order.number}}: {{order.status}}."
        )

    report = await replay(fixture, HelpdeskReplay(changed_flow(reworded)))
    first = report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("message", 4, "order_status")
    assert first.expected == (
        'say [order_status] text: "Order A-1001 is on its way. It should arrive tomorrow."'
    )
    assert first.actual == 'say [order_status] text: "Your order A-1001: on its way."'
    assert '\n-    say [order_status] text: "Order A-1001' in report.diff()


async def test_a_changed_tool_call_is_reported_where_it_is_made(hd: Harness) -> None:
    fixture = await record_order(hd)

    def other_key(graph: dict[str, Any]) -> None:
        node(graph, "lookup_order")["data"]["assign"]["order"]["key"] = "#{{order_number}}"

    report = await replay(fixture, HelpdeskReplay(changed_flow(other_key)))
    first = report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("tool", 4, "lookup_order")
    assert first.expected == 'tool orders({"key": "a1001"})'
    assert first.actual == 'tool orders({"key": "#a1001"})'
    assert "node errors while replaying: lookup_order: UnrecordedCall" in str(report)


async def test_payloads_count_unless_told_not_to(hd: Harness) -> None:
    fixture = await record_order(hd)

    def retitled(graph: dict[str, Any]) -> None:
        node(graph, "menu")["data"]["buttons"][0]["title"] = "My order"

    flow = changed_flow(retitled)
    report = await replay(fixture, HelpdeskReplay(flow))
    assert report.first is not None and report.first.kind == "message"
    assert (report.first.turn, report.first.node_id) == (1, "menu")
    assert (await replay(fixture, HelpdeskReplay(flow), compare_payloads=False)).ok


async def test_a_fixture_file_round_trips_and_bad_ones_are_refused(
    hd: Harness, tmp_path: Path
) -> None:
    fixture = await record_order(hd)
    path = tmp_path / "order.json"
    path.write_text(json.dumps(fixture), encoding="utf-8")
    assert load_fixture(path) == fixture
    assert (await replay(path, HelpdeskReplay())).ok
    newer = copy.deepcopy(fixture)
    newer["formatVersion"] = 2
    with pytest.raises(ValueError, match="format version 2 is not supported"):
        await replay(newer, HelpdeskReplay())
    with pytest.raises(ValueError, match="not a sessiontrack fixture"):
        load_fixture({"session": {}})


async def test_a_stopped_session_replays_its_path_and_not_its_end(hd: Harness) -> None:
    ann = hd.customer(ANN, "Ann Lee")
    await ann.say("hi")
    await ann.tap("order")
    sid = (await ann.current())["id"]
    assert (await hd.stop(sid)).status_code == 200
    fixture = await fixture_of(hd, ANN)
    assert fixture["expected"]["end"] == {"status": "stopped", "reason": "stopped_by_api"}
    report = await replay(fixture, HelpdeskReplay(), pace=0.01)
    assert report.ok, str(report)
    assert [s.line() for s in report.actual[2]] == [
        "node ask_order",
        '  say [ask_order] text: "What is your order number? It looks like A-1234."',
    ]
