"""Seed a helpdesk database with history the browser tests can count on.

Run as ``python tests/dashboard_helpers/seed.py DATABASE_URL`` before the example host app
starts on the same database: it reports through the same hooks the example's engine uses
(the example's own flow is registered by its engine), so the data is what a real engine
would have left behind.

- 30 finished sessions of the helpdesk bot ("Seed Customer 01" …), started hours ago,
  each along the "order status" path;
- "Maria Garcia": active, waiting in the ticket form, with list and form messages, two
  LLM calls and two tool calls (one failed);
- "Stella Stop" and "Rex Race": active sessions the Stop tests end;
- "Long Talker": active, 2,000 messages over two days;
- 6 sessions of a second chatbot, "Billing Bot", whose flow has no node positions.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sessiontrack  # noqa: E402
from examples.helpdesk.app import create_helpdesk  # noqa: E402

ORDER_PATH = [
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
TICKET_PATH = ["start", "welcome", "menu", "support_topic", "support_form"]
SEEDED_COMPLETED = 30
LONG_MESSAGES = 2000
BILLING_SESSIONS = 6

BILLING_FLOW: dict[str, Any] = {
    "nodes": [
        {"id": "b_start", "type": "start", "data": {"label": "Start"}},
        {"id": "b_greet", "type": "message", "data": {"label": "Greeting"}},
        {"id": "b_ask", "type": "question", "data": {"label": "Ask invoice"}},
        {"id": "b_lookup", "type": "setVariable", "data": {"label": "Find invoice"}},
        {"id": "b_found", "type": "condition", "data": {"label": "Invoice found?"}},
        {"id": "b_show", "type": "buttons", "data": {"label": "Show invoice"}},
        {"id": "b_pay", "type": "message", "data": {"label": "Payment link"}},
        {"id": "b_agent", "type": "handoff", "data": {"label": "Billing agent"}},
        {"id": "b_end", "type": "end", "data": {"label": "Done"}},
    ],
    "edges": [
        {"id": "e1", "source": "b_start", "target": "b_greet"},
        {"id": "e2", "source": "b_greet", "target": "b_ask"},
        {"id": "e3", "source": "b_ask", "target": "b_lookup"},
        {"id": "e4", "source": "b_lookup", "target": "b_found"},
        {"id": "e5", "source": "b_found", "target": "b_show", "sourceHandle": "yes"},
        {"id": "e6", "source": "b_found", "target": "b_agent", "sourceHandle": "no"},
        {"id": "e7", "source": "b_show", "target": "b_pay", "sourceHandle": "pay"},
        {"id": "e8", "source": "b_show", "target": "b_ask", "sourceHandle": "another"},
        {"id": "e9", "source": "b_pay", "target": "b_end"},
        {"id": "e10", "source": "b_agent", "target": "b_end"},
    ],
}
BILLING_PATH = [
    "b_start",
    "b_greet",
    "b_ask",
    "b_lookup",
    "b_found",
    "b_show",
    "b_ask",
    "b_lookup",
    "b_found",
    "b_show",
    "b_pay",
    "b_end",
]


class Seeder:
    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def start(self, chatbot: str, name: str, phone: str, at: datetime) -> str:
        sid = sessiontrack.new_session_id()
        self.hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=chatbot,
            conversation_id=phone.lstrip("+"),
            contact={"phone": phone, "name": name},
            variables={"customer_name": name, "phone": phone},
            at=at,
        )
        return sid

    def walk(self, sid: str, path: list[str], at: datetime) -> datetime:
        for node in path:
            at += timedelta(seconds=2)
            self.hook.sessiontrack_node_executed(
                session_id=sid, node_id=node, at=at, duration_ms=3.0
            )
        return at

    def say(
        self,
        sid: str,
        direction: str,
        text: str | None,
        at: datetime,
        *,
        type: str = "text",
        payload: dict[str, Any] | None = None,
        node: str | None = None,
    ) -> None:
        self.hook.sessiontrack_message(
            session_id=sid,
            direction=direction,
            type=type,
            text=text,
            payload=payload,
            node_id=node,
            at=at,
        )


async def seed(url: str) -> None:
    helpdesk = create_helpdesk(url, tracker_options={"migrate": True})
    now = datetime.now(UTC)
    async with helpdesk.tracker as tracker:
        helpdesk.engine.register_flow()
        hook = helpdesk.engine.hook
        hook.sessiontrack_flow_registered(
            chatbot_id="billing", name="Billing Bot", flow=BILLING_FLOW
        )
        s = Seeder(hook)
        for i in range(SEEDED_COMPLETED):
            at = now - timedelta(hours=6) + timedelta(minutes=5 * i)
            sid = s.start("helpdesk", f"Seed Customer {i + 1:02d}", f"+1999000{i:04d}", at)
            s.say(sid, "inbound", "hi", at)
            end = s.walk(sid, ORDER_PATH, at)
            s.say(sid, "outbound", "Order A-1001 is on its way.", end, node="order_status")
            hook.sessiontrack_variables_changed(
                session_id=sid,
                variables={
                    "order_number": "A-1001",
                    "order": {"number": "A-1001", "status": "on its way"},
                },
                at=end,
            )
            hook.sessiontrack_session_completed(
                session_id=sid, reason="flow_end", at=end + timedelta(seconds=1)
            )
        for i in range(BILLING_SESSIONS):
            at = now - timedelta(hours=3) + timedelta(minutes=7 * i)
            sid = s.start("billing", f"Billing Customer {i + 1}", f"+1888000{i:04d}", at)
            end = s.walk(sid, BILLING_PATH, at)
            hook.sessiontrack_session_completed(session_id=sid, reason="paid", at=end)
        await tracker.flush()
        seed_active(s, now)
        await tracker.flush()


def seed_active(s: Seeder, now: datetime) -> None:
    at = now - timedelta(minutes=2)
    sid = s.start("helpdesk", "Maria Garcia", "+15550001234", at)
    s.say(sid, "inbound", "Hello, my invoice looks wrong", at)
    end = s.walk(sid, TICKET_PATH[:3], at)
    s.say(sid, "outbound", "Hi Maria Garcia! Welcome to Acme support.", end, node="welcome")
    s.say(
        sid,
        "outbound",
        "How can I help you today?",
        end,
        type="interactive",
        node="menu",
        payload={
            "kind": "buttons",
            "buttons": [
                {"id": "order", "title": "Order status"},
                {"id": "support", "title": "Tech support"},
                {"id": "agent", "title": "Talk to an agent"},
            ],
        },
    )
    s.say(
        sid,
        "inbound",
        "Tech support",
        end + timedelta(seconds=5),
        type="interactive",
        payload={"id": "support", "title": "Tech support"},
    )
    end = s.walk(sid, TICKET_PATH[3:4], end + timedelta(seconds=5))
    s.say(
        sid,
        "outbound",
        "Sorry you're having trouble. What is it about?",
        end,
        type="interactive",
        node="support_topic",
        payload={
            "kind": "list",
            "button": "Choose a topic",
            "sections": [
                {
                    "title": "Common issues",
                    "rows": [
                        {
                            "id": "login",
                            "title": "Can't log in",
                            "description": "Password, 2FA, locked account",
                        },
                        {
                            "id": "billing",
                            "title": "Billing",
                            "description": "Charges, invoices, refunds",
                        },
                    ],
                }
            ],
        },
    )
    s.say(
        sid,
        "inbound",
        "Billing",
        end + timedelta(seconds=6),
        type="interactive",
        payload={"id": "billing", "title": "Billing"},
    )
    s.hook.sessiontrack_llm_call(
        session_id=sid,
        node_id="support_topic",
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=412,
        output_tokens=37,
        latency_ms=820.0,
        ttfb_ms=240.0,
        cost=0.00009,
        finish_reason="tool_calls",
        at=end + timedelta(seconds=6, milliseconds=100),
    )
    s.hook.sessiontrack_tool_call(
        session_id=sid,
        node_id="support_topic",
        name="find_orders",
        call_id="call_1",
        arguments={"phone": "+15550001234", "limit": 3},
        result=[{"order": "A-1002", "status": "charged twice", "amount": 49.9}],
        duration_ms=64.0,
        at=end + timedelta(seconds=6, milliseconds=200),
    )
    s.hook.sessiontrack_tool_call(
        session_id=sid,
        node_id="support_topic",
        name="refund_preview",
        call_id="call_2",
        arguments={"order": "A-1002"},
        error="billing service timed out",
        duration_ms=5000.0,
        at=end + timedelta(seconds=6, milliseconds=300),
    )
    end = s.walk(sid, TICKET_PATH[4:], end + timedelta(seconds=6))
    s.hook.sessiontrack_llm_call(
        session_id=sid,
        node_id="support_form",
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=530,
        output_tokens=58,
        latency_ms=1140.0,
        ttfb_ms=310.0,
        cost=0.00012,
        finish_reason="stop",
        at=end + timedelta(milliseconds=100),
    )
    s.say(
        sid,
        "outbound",
        "Tell us a little more in this short form.",
        end,
        type="interactive",
        node="support_form",
        payload={
            "kind": "form",
            "cta": "Open form",
            "flow_id": "support_ticket_v1",
            "screen": "TICKET",
        },
    )
    s.say(
        sid,
        "inbound",
        None,
        end + timedelta(seconds=20),
        type="interactive",
        payload={
            "response": {
                "summary": "Charged twice for order A-1002",
                "email": "maria@example.com",
                "urgent": False,
            }
        },
    )
    s.hook.sessiontrack_variables_changed(
        session_id=sid,
        variables={
            "menu_choice": "support",
            "topic": "billing",
            "ticket": {"summary": "Charged twice for order A-1002", "urgent": False},
        },
    )
    s.hook.sessiontrack_status_changed(
        session_id=sid, status="waiting_flow", node_id="support_form"
    )

    for name, phone in (("Stella Stop", "+15550002001"), ("Rex Race", "+15550002002")):
        sid = s.start("helpdesk", name, phone, now)
        s.say(sid, "inbound", "hi", now)
        s.walk(sid, ORDER_PATH[:4], now)
        s.hook.sessiontrack_status_changed(
            session_id=sid, status="waiting_input", node_id="ask_order"
        )

    start = now - timedelta(days=1, hours=2)
    sid = s.start("helpdesk", "Long Talker", "+15550003000", start)
    s.walk(sid, ORDER_PATH[:4], start)
    step = (now - start - timedelta(minutes=1)) / LONG_MESSAGES
    for i in range(LONG_MESSAGES):
        s.say(
            sid, "inbound" if i % 3 == 0 else "outbound", f"Long message {i + 1}", start + step * i
        )
    s.hook.sessiontrack_status_changed(session_id=sid, status="waiting_input", node_id="ask_order")


if __name__ == "__main__":
    anyio.run(seed, sys.argv[1])
