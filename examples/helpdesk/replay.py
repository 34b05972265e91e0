"""The flow engine as a :class:`sessiontrack.testing.ReplayEngine`: replays a recorded
helpdesk session against a flow (by default today's ``flow.json``) with the recorded
order-book and ticket answers::

    report = await replay(fixture, HelpdeskReplay())            # today's flow
    report = await replay(fixture, HelpdeskReplay.recorded(fixture))  # the recorded version

Nothing is sent anywhere: replies go to a sender that keeps them, and the engine finds its
session in the replay (``run.active``, ``run.node_id``) instead of the tracker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiontrack.testing import ReplayInbound, ReplayRun, load_fixture

from .engine import ActiveSession, FlowEngine, Inbound, Reply, SavedState
from .flow import Flow


class _KeptReplies:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Reply]] = []

    async def send(self, to: str, reply: Reply) -> str | None:
        self.sent.append((to, reply))
        return None


class _RunLookup:
    """The engine's SessionLookup, answered from the replay."""

    def __init__(self, run: ReplayRun) -> None:
        self.run = run

    async def find_active(self, chatbot_id: str, conversation_id: str) -> ActiveSession | None:
        run = self.run
        if not run.active:
            return None
        return ActiveSession(run.session_id, run.status or "running", run.node_id)

    async def restore(self, session_id: str) -> SavedState:
        return SavedState(self.run.variables, set())


def _lookup_names(flow: Flow) -> set[str]:
    return {
        spec["lookup"]
        for node in flow.nodes.values()
        if node.type == "setVariable"
        for spec in node.data.get("assign", {}).values()
        if isinstance(spec, Mapping) and "lookup" in spec
    }


class HelpdeskReplay:
    """Replays helpdesk sessions through :class:`~.engine.FlowEngine` running ``flow``."""

    def __init__(self, flow: Flow | None = None) -> None:
        from .app import FLOW_PATH

        self.flow = flow if flow is not None else Flow.load(FLOW_PATH)
        self.engine: FlowEngine | None = None
        self.replies = _KeptReplies()

    @classmethod
    def recorded(cls, fixture: Any) -> HelpdeskReplay:
        """Replay on the exact flow version the session ran (from the fixture)."""
        data = load_fixture(fixture)
        return cls(
            Flow({"id": data["chatbot"]["id"], "name": data["chatbot"]["name"], **data["flow"]})
        )

    def replay_start(self, run: ReplayRun) -> None:
        def recorded(name: str) -> Any:
            return lambda key: run.tool(name, {"key": key})

        self.engine = FlowEngine(
            run.hook,
            self.flow,
            self.replies,
            _RunLookup(run),
            new_id=lambda: run.session_id,
            lookups={name: recorded(name) for name in _lookup_names(self.flow)},
        )
        self.engine.register_flow()

    async def replay_inbound(self, message: ReplayInbound, run: ReplayRun) -> None:
        assert self.engine is not None
        await self.engine.handle(_to_inbound(message, run))


def _to_inbound(message: ReplayInbound, run: ReplayRun) -> Inbound:
    payload = message.payload or {}
    kind, choice, form = "text", None, None
    if "response" in payload:
        kind, form = "form", payload["response"]
    elif "id" in payload:
        kind, choice = "choice", payload["id"]
    elif message.type not in ("text", "interactive"):
        kind = "unsupported"
    return Inbound(
        conversation_id=run.conversation_id or run.session_id,
        message_id=message.message_id or f"replay-{message.turn}",
        kind=kind,
        phone=run.contact.get("phone"),
        name=run.contact.get("name"),
        text=message.text,
        choice_id=choice,
        form=form,
        channel_type=message.type,
    )


__all__ = ["HelpdeskReplay"]
