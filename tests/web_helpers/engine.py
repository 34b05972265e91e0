"""A tiny engine: drives sessions through the pluggy hooks, as a real one would."""

from __future__ import annotations

from typing import Any

import pluggy

import sessiontrack

FLOW = {
    "nodes": [
        {"id": "start", "type": "start", "position": {"x": 0, "y": 0}, "data": {"label": "Start"}},
        {
            "id": "ask",
            "type": "question",
            "position": {"x": 0, "y": 100},
            "data": {"label": "Ask name"},
        },
        {"id": "end", "type": "end", "position": {"x": 0, "y": 200}, "data": {"label": "End"}},
    ],
    "edges": [
        {"id": "e1", "source": "start", "target": "ask"},
        {"id": "e2", "source": "ask", "target": "end"},
    ],
}


class Engine:
    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.hook: Any = pm.hook

    def register(self, chatbot_id: str, name: str | None = None) -> None:
        self.hook.sessiontrack_flow_registered(
            chatbot_id=chatbot_id, name=name or chatbot_id, flow=FLOW
        )

    def start(
        self,
        chatbot_id: str,
        *,
        phone: str = "+5511987654321",
        name: str = "Ana Souza",
        conversation_id: str | None = None,
    ) -> str:
        sid = sessiontrack.new_session_id()
        self.hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=chatbot_id,
            conversation_id=conversation_id or phone,
            contact={"phone": phone, "name": name},
            variables={"step": 0},
        )
        return sid

    def node(self, sid: str, node_id: str = "ask") -> None:
        self.hook.sessiontrack_node_executed(
            session_id=sid, node_id=node_id, node_type="question", duration_ms=1.5
        )

    def message(self, sid: str, text: str, direction: str = "outbound") -> None:
        self.hook.sessiontrack_message(
            session_id=sid, direction=direction, text=text, node_id="ask"
        )

    def wait_input(self, sid: str) -> None:
        self.hook.sessiontrack_status_changed(session_id=sid, status="waiting_input", node_id="ask")

    def complete(self, sid: str) -> None:
        self.hook.sessiontrack_session_completed(
            session_id=sid, status="completed", reason="flow_end"
        )

    def full_run(self, chatbot_id: str, *, finish: bool = True, **contact: Any) -> str:
        """started, node, outbound + inbound message, waiting_input, (completed)."""
        sid = self.start(chatbot_id, **contact)
        self.node(sid, "start")
        self.message(sid, "What is your name?")
        self.wait_input(sid)
        self.message(sid, "Ana", direction="inbound")
        if finish:
            self.complete(sid)
        return sid
