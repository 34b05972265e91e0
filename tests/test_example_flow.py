"""The helpdesk example, branch by branch: WhatsApp notifications in through
``POST /webhook``, sessions, node histories, messages and statuses out through the REST API,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from example_helpers import payloads as wa
from example_helpers.harness import Harness, running_helpdesk

pytestmark = pytest.mark.anyio

ANN = "15551234567"


@pytest.fixture
async def hd(database_url: str, prefix: str) -> AsyncIterator[Harness]:
    async with running_helpdesk(database_url, prefix) as harness:
        yield harness


def texts(detail: dict[str, Any], direction: str) -> list[str]:
    return [m["text"] for m in detail["messages"] if m["direction"] == direction]


async def test_order_found_branch(hd: Harness) -> None:
    ann = hd.customer(ANN, "Ann Lee")
    assert await ann.say("hi") == {"received": 1, "handled": 1}
    waiting = await ann.current()
    assert waiting["status"] == "waiting_input"
    assert waiting["currentNodeId"] == "menu"
    assert waiting["currentNodeLabel"] == "Main menu"
    assert waiting["nodeHistory"] == ["start", "welcome", "menu"]
    assert waiting["customerName"] == "Ann Lee"
    assert waiting["customerPhone"] == "+15551234567"
    assert waiting["conversationId"] == ANN
    assert waiting["chatbotId"] == "helpdesk"
    assert waiting["chatbotName"] == "Acme Help Desk"
    assert ann.last()["interactive"]["type"] == "button"

    await ann.tap("order")
    await ann.say("where is my parcel?")  # not an order number: asked again
    assert (await ann.current())["currentNodeId"] == "ask_order"
    await ann.say("a1001")
    at_more = await ann.current()
    assert at_more["currentNodeId"] == "anything_else"
    assert at_more["variables"]["order"]["number"] == "A-1001"
    await ann.tap("no")

    [summary] = await ann.all_sessions()
    done = await hd.session(summary["id"])
    assert done["status"] == "completed"
    assert done["isActive"] is False
    assert done["completionReason"] == "flow_end"
    assert done["completedAt"] is not None
    assert done["nodeHistory"] == [
        "start",
        "welcome",
        "menu",
        "ask_order",
        "lookup_order",
        "order_found",
        "order_status",
        "anything_else",
        "goodbye",
    ]
    assert [e["type"] for e in done["nodeExecutions"]] == [
        "start",
        "message",
        "buttons",
        "question",
        "setVariable",
        "condition",
        "message",
        "buttons",
        "end",
    ]
    assert all(e["durationMs"] is not None and e["error"] is None for e in done["nodeExecutions"])
    assert done["variables"]["menu_choice"] == "order"
    assert done["variables"]["order_number"] == "a1001"
    assert done["variables"]["order"]["status"] == "on its way"
    assert texts(done, "inbound") == [
        "hi",
        "Order status",
        "where is my parcel?",
        "a1001",
        "No, thanks",
    ]
    assert texts(done, "outbound") == [
        "Hi Ann Lee! 👋 Welcome to Acme support.",
        "How can I help you today?",
        "What is your order number? It looks like A-1234.",
        "Hmm, that doesn't look like an order number (it looks like A-1234).",
        "What is your order number? It looks like A-1234.",
        "Order A-1001 is on its way. It should arrive tomorrow.",
        "Can I help you with anything else?",
        "Thanks for contacting Acme, Ann Lee. Have a great day! 👋",
    ]
    assert done["messageCount"] == 13
    assert done["nodeCount"] == 9
    assert {n["id"] for n in done["flowData"]["nodes"]} >= set(done["nodeHistory"])

    messages = await hd.api(f"/{done['id']}/messages")
    assert [m["text"] for m in messages] == [m["text"] for m in done["messages"]]
    tapped = messages[3]
    assert (tapped["direction"], tapped["type"], tapped["nodeId"]) == (
        "inbound",
        "interactive",
        "menu",
    )
    assert tapped["payload"] == {"id": "order", "title": "Order status"}
    menu = messages[2]
    assert menu["payload"]["kind"] == "buttons"
    assert [b["id"] for b in menu["payload"]["buttons"]] == ["order", "support", "agent"]


async def test_order_not_found_retry_then_agent(hd: Harness) -> None:
    bo = hd.customer("15552000001", "Bo Chen")
    await bo.say("hello")
    await bo.tap("order")
    await bo.say("B-9999")
    at = await bo.current()
    assert at["currentNodeId"] == "order_not_found"
    assert at["variables"]["order"] is None
    assert bo.last()["interactive"]["body"]["text"] == (
        "I couldn't find order B-9999. What would you like to do?"
    )
    await bo.tap("retry")
    await bo.say("A-1002")
    await bo.tap("yes")  # anything else? yes: back to the menu
    assert (await bo.current())["currentNodeId"] == "menu"
    await bo.tap("agent")

    [summary] = await bo.all_sessions()
    done = await hd.session(summary["id"])
    assert (done["status"], done["completionReason"]) == ("completed", "handoff")
    assert done["nodeHistory"] == [
        "start",
        "welcome",
        "menu",
        "ask_order",
        "lookup_order",
        "order_found",
        "order_not_found",
        "ask_order",
        "lookup_order",
        "order_found",
        "order_status",
        "anything_else",
        "menu",
        "agent_handoff",
    ]
    assert done["variables"]["handoff_queue"] == "support"
    assert done["variables"]["order"]["number"] == "A-1002"
    assert texts(done, "outbound")[-1] == (
        "Connecting you to an agent. Someone will reply here shortly."
    )


async def test_order_not_found_back_to_menu_then_agent(hd: Harness) -> None:
    cy = hd.customer("15552000002", "Cy Doe")
    await cy.say("hi")
    await cy.tap("order")
    await cy.say("Z-0000")
    await cy.tap("menu")
    await cy.tap("agent")
    [s] = await cy.all_sessions()
    assert (s["status"], s["currentNodeId"]) == ("completed", "agent_handoff")
    detail = await hd.session(s["id"])
    assert detail["nodeHistory"][-3:] == ["order_not_found", "menu", "agent_handoff"]


async def test_support_ticket_with_form(hd: Harness) -> None:
    di = hd.customer("15552000003", "Di Park")
    await di.say("my invoices page crashes")
    await di.tap("support")
    assert di.last()["interactive"]["type"] == "list"
    await di.pick("bug")
    at_form = await di.current()
    assert (at_form["status"], at_form["currentNodeId"]) == ("waiting_flow", "support_form")
    flow_message = di.last()["interactive"]
    assert flow_message["type"] == "flow"
    assert flow_message["action"]["parameters"]["flow_token"] == at_form["id"]

    await di.submit(
        {
            "description": "Invoices page shows error 500",
            "severity": "normal",
            "email": "di@example.com",
        }
    )
    [s] = await di.all_sessions()
    done = await hd.session(s["id"])
    assert (done["status"], done["completionReason"]) == ("completed", "flow_end")
    assert done["nodeHistory"] == [
        "start",
        "welcome",
        "menu",
        "support_topic",
        "support_form",
        "create_ticket",
        "urgent",
        "ticket_created",
        "goodbye",
    ]
    assert done["variables"]["topic"] == "bug"
    assert done["variables"]["ticket"] == {
        "description": "Invoices page shows error 500",
        "severity": "normal",
        "email": "di@example.com",
    }
    ticket = done["variables"]["ticket_id"]
    assert ticket.startswith("T-")
    assert (
        f"Ticket {ticket} is open; we'll email di@example.com within a day."
        in texts(done, "outbound")[-2]
    )
    form_reply = next(m for m in done["messages"] if m["type"] == "form")
    assert form_reply["direction"] == "inbound"
    assert form_reply["payload"]["response"]["severity"] == "normal"
    picked = next(
        m
        for m in done["messages"]
        if m["nodeId"] == "support_topic" and m["direction"] == "inbound"
    )
    assert picked["payload"] == {"id": "bug", "title": "Something is broken"}


async def test_urgent_ticket_goes_to_an_agent(hd: Harness) -> None:
    ed = hd.customer("15552000004", "Ed Ruiz")
    await ed.say("hi")
    await ed.tap("support")
    await ed.pick("login")
    await ed.submit({"description": "locked out", "severity": "high", "email": "ed@example.com"})
    [s] = await ed.all_sessions()
    done = await hd.session(s["id"])
    assert (done["status"], done["completionReason"]) == ("completed", "handoff")
    assert done["nodeHistory"][-3:] == ["create_ticket", "urgent", "urgent_handoff"]
    assert done["variables"]["handoff_queue"] == "priority"


async def test_agent_by_typing_the_button_title(hd: Harness) -> None:
    fy = hd.customer("15552000005", None)
    await fy.say("I want a human")
    await fy.say("talk to an AGENT")
    [s] = await fy.all_sessions()
    assert s["customerName"] is None
    done = await hd.session(s["id"])
    assert done["completionReason"] == "handoff"
    assert done["nodeHistory"] == ["start", "welcome", "menu", "agent_handoff"]
    assert done["variables"]["customer_name"] == "there"


async def test_unexpected_input_asks_again(hd: Harness) -> None:
    gu = hd.customer("15552000006", "Gu Yi")
    await gu.say("hi")
    await gu.say("blah")  # text that is no button title
    await gu.send(wa.image(gu.wa_id, "my screen"))  # media where a choice is expected
    s = await gu.current()
    assert (s["status"], s["currentNodeId"]) == ("waiting_input", "menu")
    assert texts(s, "outbound")[-2:] == [
        "Please tap one of the options below.",
        "How can I help you today?",
    ]
    assert [m["type"] for m in s["messages"] if m["direction"] == "inbound"] == [
        "text",
        "text",
        "image",
    ]
    await gu.tap("support")
    await gu.pick("other")
    await gu.say("here is my problem")  # text instead of the form
    await gu.submit({"description": "x"}, token="00000000-0000-7000-8000-000000000000")
    s = await gu.current()
    assert (s["status"], s["currentNodeId"]) == ("waiting_flow", "support_form")
    assert texts(s, "outbound").count("Please fill in the form above (tap “Open form”).") == 2
    assert "ticket" not in s["variables"]
    await gu.submit({"description": "x", "severity": "low", "email": "g@example.com"})
    assert (await gu.all_sessions())[0]["status"] == "completed"


async def test_status_changes_are_recorded_in_order(hd: Harness) -> None:
    ha = hd.customer("15552000007", "Ha Vo")
    await ha.say("hi")
    await ha.tap("support")
    await ha.pick("billing")
    s = await ha.current()
    async with hd.helpdesk.tracker.subscribe(after=0, session_id=s["id"]) as sub:
        seen: list[str] = []
        with anyio.fail_after(5):
            async for event in sub:
                if event.kind == "status_changed":
                    seen.append(event.data["status"])
                if seen[-1:] == ["waiting_flow"]:
                    break
    assert seen == ["waiting_input", "running", "waiting_input", "running", "waiting_flow"]


async def test_stop_from_the_api(hd: Harness) -> None:
    io = hd.customer("15552000008", "Io Ng")
    await io.say("hi")
    await io.tap("support")
    s = await io.current()
    response = await hd.stop(s["id"])
    assert response.status_code == 200
    stopped = await hd.session(s["id"])
    assert (stopped["status"], stopped["completionReason"]) == ("stopped", "stopped_by_api")
    assert (await hd.stop(s["id"])).status_code == 409

    await io.pick("login")  # the engine does not continue a stopped session …
    after = await hd.session(s["id"])
    assert after["messageCount"] == stopped["messageCount"]
    assert after["nodeHistory"] == stopped["nodeHistory"]
    assert hd.helpdesk.tracker.stats.late == 0  # … nor report into it
    sessions = await io.all_sessions()
    assert [x["status"] for x in sessions] == ["stopped", "waiting_input"]
    assert sessions[1]["currentNodeId"] == "menu"  # a new conversation starts over


async def test_many_customers_at_once(hd: Harness) -> None:
    async def chat(n: int) -> None:
        c = hd.customer(f"1555300{n:04d}", f"Customer {n}")
        await c.say("hi")
        await c.tap("order")
        await c.say(f"A-100{1 + n % 4}")
        await c.tap("no")

    async with anyio.create_task_group() as tg:
        for n in range(12):
            tg.start_soon(chat, n)
    sessions = await hd.sessions(chatbotId="helpdesk")
    assert len(sessions) == 12
    assert {s["status"] for s in sessions} == {"completed"}
    assert {s["nodeCount"] for s in sessions} == {9}
    assert len({s["conversationId"] for s in sessions}) == 12


async def test_abandoned_session_expires_and_next_message_starts_over(
    database_url: str, prefix: str
) -> None:
    options = {"idle_timeout": timedelta(seconds=1), "sweep_interval": 0.2}
    async with running_helpdesk(database_url, prefix, tracker_options=options) as hd:
        jo = hd.customer("15552000009", "Jo Kim")
        await jo.say("hi")
        await jo.tap("order")
        [s] = await jo.all_sessions()
        expired = await hd.wait_for(s["id"], "expired")
        assert expired["completionReason"] == "timeout"
        assert expired["currentNodeId"] == "ask_order"
        await jo.say("A-1001")  # too late: a new session greets the customer again
        sessions = await jo.all_sessions()
        assert [x["status"] for x in sessions] == ["expired", "waiting_input"]
        fresh = await hd.session(sessions[1]["id"])
        assert fresh["nodeHistory"] == ["start", "welcome", "menu"]
        assert hd.helpdesk.tracker.stats.late == 0


async def test_a_restart_continues_conversations(database_url: str, prefix: str) -> None:
    first_mid = wa.wamid()
    async with running_helpdesk(database_url, prefix) as hd:
        ki = hd.customer("15552000010", "Ki Lam")
        await ki.say("hi", mid=first_mid)
        await ki.tap("order")
        await ki.say("A-1003")
        sid = (await ki.current())["id"]

    async with running_helpdesk(database_url, prefix) as hd:  # a new process, same database
        ki = hd.customer("15552000010", "Ki Lam")
        assert await ki.say("hi", mid=first_mid) == {"received": 1, "handled": 0}  # a retry
        assert await ki.send(wa.button_reply(ki.wa_id, "no", "No, thanks")) == {
            "received": 1,
            "handled": 1,
        }
        [s] = await ki.all_sessions()
        assert s["id"] == sid
        done = await hd.session(sid)
        assert (done["status"], done["completionReason"]) == ("completed", "flow_end")
        assert done["nodeHistory"][-2:] == ["anything_else", "goodbye"]
        assert done["variables"]["order"]["number"] == "A-1003"
        assert texts(done, "outbound")[-1] == (
            "Thanks for contacting Acme, Ki Lam. Have a great day! 👋"
        )
