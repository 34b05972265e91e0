"""The example's flow engine on its own: the flow file, the node semantics, and the rule that
the engine talks to sessiontrack through the hooks only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import example_helpers  # noqa: F401  (puts the repository's root on sys.path)
import httpx
import pluggy
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import examples.helpdesk.engine as engine_module
import sessiontrack
from examples.helpdesk.app import FLOW_PATH, find_order
from examples.helpdesk.engine import ActiveSession, FlowEngine, Inbound, Reply, SavedState
from examples.helpdesk.flow import NODE_TYPES, Flow, FlowError, matches, render
from examples.helpdesk.sender import CloudApiSender, RecordingSender

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parent.parent


def test_the_engine_imports_only_the_hookspecs_of_sessiontrack() -> None:
    tree = ast.parse(Path(engine_module.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module)
    assert {m for m in imported if m.split(".")[0] == "sessiontrack"} == {"sessiontrack.hookspecs"}


@pytest.fixture(scope="module")
def graph() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FLOW_PATH.read_text(encoding="utf-8"))
    return doc


def test_the_flow_file_is_react_flow_shaped(graph: dict[str, Any]) -> None:
    ids = [n["id"] for n in graph["nodes"]]
    assert len(ids) == len(set(ids))
    for node in graph["nodes"]:
        assert set(node) >= {"id", "type", "position", "data"}
        assert isinstance(node["position"]["x"], int | float)
        assert isinstance(node["position"]["y"], int | float)
        assert node["data"]["label"]
    for edge in graph["edges"]:
        assert {"id", "source", "target"} <= set(edge)
    assert {n["type"] for n in graph["nodes"]} == NODE_TYPES  # the flow shows every node type


def test_every_node_is_reachable_and_every_choice_leads_somewhere(graph: dict[str, Any]) -> None:
    flow = Flow(graph)
    seen, todo = {flow.start.id}, deque([flow.start])
    while todo:
        node = todo.popleft()
        handles: list[str | None] = [i for i, _ in node.options()]
        handles += [r["id"] for r in node.data.get("rules", [])]
        handles = handles or [None]
        if node.type == "condition":
            handles.append("else")
        for handle in handles:
            nxt = flow.next(node, handle)
            if node.type not in ("end", "handoff"):
                assert nxt is not None, f"{node.id} has no exit for {handle!r}"
            if nxt is not None and nxt.id not in seen:
                seen.add(nxt.id)
                todo.append(nxt)
    assert seen == set(flow.nodes)


def test_reply_buttons_fit_whatsapp_limits(graph: dict[str, Any]) -> None:
    for node in Flow(graph).nodes.values():
        if node.type == "buttons":
            assert 1 <= len(node.options()) <= 3
            assert all(len(title) <= 20 for _, title in node.options())
        if node.type == "list":
            assert len(node.options()) <= 10
            assert all(len(title) <= 24 for _, title in node.options())


@pytest.mark.parametrize(
    ("graph", "error"),
    [
        ({"nodes": [], "edges": []}, "exactly one start node"),
        (
            {"nodes": [{"id": "a", "type": "start"}, {"id": "b", "type": "start"}], "edges": []},
            "exactly one start node",
        ),
        (
            {"nodes": [{"id": "a", "type": "start"}, {"id": "b", "type": "video"}], "edges": []},
            "unknown type 'video'",
        ),
        (
            {
                "nodes": [{"id": "a", "type": "start"}],
                "edges": [{"id": "e", "source": "a", "target": "zz"}],
            },
            "joins unknown nodes",
        ),
    ],
)
def test_a_broken_flow_is_refused(graph: dict[str, Any], error: str) -> None:
    with pytest.raises(FlowError, match=error):
        Flow(graph)


def test_templates_and_conditions() -> None:
    v = {"name": "Ann", "order": {"status": "shipped", "items": 3}, "empty": "", "none": None}
    assert render("Hi {{name}}, {{ order.status }}{{missing}}!", v) == "Hi Ann, shipped!"
    assert matches({"variable": "order.status", "operator": "eq", "value": "SHIPPED "}, v)
    assert matches({"variable": "order.status", "operator": "neq", "value": "lost"}, v)
    assert matches({"variable": "order.status", "operator": "in", "value": ["x", "Shipped"]}, v)
    assert matches({"variable": "order", "operator": "exists"}, v)
    assert not matches({"variable": "empty", "operator": "exists"}, v)
    assert matches({"variable": "none", "operator": "not_exists"}, v)
    assert matches({"variable": "order.items", "operator": "gt", "value": 2}, v)
    assert not matches({"variable": "name", "operator": "lt", "value": 2}, v)
    assert matches({"variable": "name", "operator": "matches", "value": "A.n"}, v)
    with pytest.raises(FlowError):
        matches({"variable": "name", "operator": "like"}, v)


def test_order_lookup_normalises_the_number() -> None:
    for typed in ("A-1001", "a1001", " A 1001 ", "a - 1001"):
        order = find_order(typed)
        assert order is not None and order["number"] == "A-1001"
    assert find_order("B-9999") is None


class MemoryLookup:
    """A SessionLookup that knows nothing: every message starts a session."""

    async def find_active(self, chatbot_id: str, conversation_id: str) -> ActiveSession | None:
        return None

    async def restore(self, session_id: str) -> SavedState:  # pragma: no cover - unused
        raise AssertionError("nothing to restore")


def recorder_plugin(calls: list[tuple[str, dict[str, Any]]]) -> object:
    """A host plugin recording some of the engine's reports."""

    class Plugin:
        @sessiontrack.hookimpl
        def sessiontrack_session_started(self, session_id: str, chatbot_id: str) -> None:
            calls.append(("started", {"session_id": session_id, "chatbot_id": chatbot_id}))

        @sessiontrack.hookimpl
        def sessiontrack_node_executed(self, node_id: str, node_type: str, error: str) -> None:
            calls.append(("node", {"node_id": node_id, "node_type": node_type, "error": error}))

        @sessiontrack.hookimpl
        def sessiontrack_session_completed(self, status: str, reason: str) -> None:
            calls.append(("completed", {"status": status, "reason": reason}))

    return Plugin()


@pytest.fixture
def calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    yield []


async def test_a_failing_node_is_reported_and_ends_the_session(
    calls: list[tuple[str, dict[str, Any]]],
) -> None:
    """Any pluggy plugin sees the engine's reports; a node that raises is reported with its
    error and the session ends with reason ``error``."""
    flow = Flow(
        {
            "id": "bot",
            "nodes": [
                {"id": "s", "type": "start", "data": {}},
                {
                    "id": "look",
                    "type": "setVariable",
                    "data": {"assign": {"x": {"lookup": "broken"}}},
                },
                {"id": "never", "type": "end", "data": {}},
            ],
            "edges": [
                {"id": "1", "source": "s", "target": "look"},
                {"id": "2", "source": "look", "target": "never"},
            ],
        }
    )

    def broken(key: str) -> Any:
        raise RuntimeError("lookup service down")

    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    pm.register(recorder_plugin(calls))
    engine = FlowEngine(
        pm.hook,
        flow,
        RecordingSender(),
        MemoryLookup(),
        new_id=sessiontrack.new_session_id,
        lookups={"broken": broken},
    )
    pm.register(engine)
    assert await engine.handle(
        Inbound(conversation_id="1", message_id="m1", kind="text", text="hi")
    )
    assert [c[0] for c in calls] == ["started", "node", "node", "completed"]
    assert calls[2][1] == {
        "node_id": "look",
        "node_type": "setVariable",
        "error": "RuntimeError: lookup service down",
    }
    assert calls[3][1] == {"status": "completed", "reason": "error"}


def test_the_demo_needs_no_http_client_package() -> None:
    """``pip install sessiontrack[all]`` has no httpx: the demo must run without it."""
    code = (
        "import sys; sys.modules['httpx'] = None; import examples.helpdesk.__main__, "
        "examples.helpdesk.simulator, examples.helpdesk.sender"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


async def test_the_cloud_api_sender_posts_message_bodies() -> None:
    """Against a stand-in for the Graph API endpoint (a real ASGI app, in-process)."""
    received: list[tuple[str, str | None, dict[str, Any]]] = []

    async def messages(request: Request) -> JSONResponse:
        received.append(
            (request.url.path, request.headers.get("authorization"), await request.json())
        )
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": "15551234567", "wa_id": "15551234567"}],
                "messages": [{"id": "wamid.X1"}],
            }
        )

    graph = Starlette(routes=[Route("/v21.0/{number}/messages", messages, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph)) as client:
        sender = CloudApiSender(
            "106540352242922", "TOKEN", client=client, base_url="http://graph.test/v21.0"
        )
        reply = Reply("buttons", "Pick one", (("a", "Alpha"), ("b", "Beta")))
        assert await sender.send("15551234567", reply) == "wamid.X1"
        await sender.aclose()
    [(path, auth, body)] = received
    assert (path, auth) == ("/v21.0/106540352242922/messages", "Bearer TOKEN")
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15551234567",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick one"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "a", "title": "Alpha"}},
                    {"type": "reply", "reply": {"id": "b", "title": "Beta"}},
                ]
            },
        },
    }
