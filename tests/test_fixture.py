"""``GET /{id}/fixture`` and ``sessiontrack fixture``: a recorded helpdesk session as a
replayable fixture, on SQLite and PostgreSQL; tenants, phone masking, the audit hook, 400s
and 404s on the route; the command line as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import example_helpers  # noqa: F401  (puts the repository's root on sys.path)
import httpx
import pytest
from example_helpers.harness import Harness, running_helpdesk

import sessiontrack
from sessiontrack.web import AuthRequest, create_app

pytestmark = pytest.mark.anyio

ANN = "15551234567"
ADMIN = sessiontrack.Principal(id="admin")
MASKED = sessiontrack.Principal(id="clerk", can_see_pii=False)
OTHER = sessiontrack.Principal(id="other-tenant", chatbot_ids=frozenset({"another-bot"}))
TOKENS = {"admin": ADMIN, "masked": MASKED, "other": OTHER}


async def authenticate(request: AuthRequest) -> sessiontrack.Principal | None:
    return TOKENS.get(request.token or "")


class Audit:
    def __init__(self) -> None:
        self.reads: list[tuple[str, str | None, str]] = []

    @sessiontrack.hookimpl
    def sessiontrack_session_read(self, session_id: str, principal: str | None, what: str) -> None:
        self.reads.append((session_id, principal, what))


@pytest.fixture
async def hd(database_url: str, prefix: str) -> AsyncIterator[Harness]:
    async with running_helpdesk(database_url, prefix) as harness:
        yield harness


@pytest.fixture
async def api(hd: Harness) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(hd.helpdesk.tracker, authenticate=authenticate)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


async def order_session(hd: Harness) -> str:
    ann = hd.customer(ANN, "Ann Lee")
    await ann.say("hi")
    await ann.tap("order")
    await ann.say("my number is +15551234567")  # not an order number: asked again
    await ann.say("a1001")
    await ann.tap("no")
    await hd.helpdesk.tracker.flush()
    [summary] = await hd.sessions(conversationId=ANN)
    sid: str = summary["id"]
    return sid


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_fixture_holds_flow_inbound_timing_expected_path_and_calls(
    hd: Harness, api: httpx.AsyncClient
) -> None:
    sid = await order_session(hd)
    detail = await hd.session(sid)
    r = await api.get(f"/{sid}/fixture", headers=as_("admin"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    f = r.json()
    assert (f["format"], f["formatVersion"]) == ("sessiontrack-fixture", 1)
    assert f["session"]["id"] == sid
    assert f["session"]["conversationId"] == ANN
    assert f["session"]["contact"] == {"phone": "+15551234567", "name": "Ann Lee"}
    assert f["session"]["startedAt"].startswith(detail["startedAt"][:19])
    assert f["chatbot"] == {"id": "helpdesk", "name": "Acme Help Desk"}
    assert f["flow"]["version"] == detail["flowVersion"]
    assert f["flow"]["nodes"] == detail["flowData"]["nodes"]
    assert f["flow"]["edges"] == detail["flowData"]["edges"]

    inbound = f["inbound"]
    assert [m["text"] for m in inbound] == [
        m["text"] for m in detail["messages"] if m["direction"] == "inbound"
    ]
    assert [m["turn"] for m in inbound] == [1, 2, 3, 4, 5]
    offsets = [m["offsetMs"] for m in inbound]
    assert offsets == sorted(offsets) and offsets[0] >= 0
    assert inbound[1]["payload"] == {"id": "order", "title": "Order status"}
    assert all(m["messageId"] for m in inbound)  # the channel's ids, for deduplication

    expected = f["expected"]
    assert [n["nodeId"] for n in expected["path"]] == detail["nodeHistory"]
    assert [m["text"] for m in expected["outbound"]] == [
        m["text"] for m in detail["messages"] if m["direction"] == "outbound"
    ]
    assert [m["turn"] for m in expected["outbound"]][:2] == [1, 1]  # welcome and the menu
    assert expected["end"] == {"status": "completed", "reason": "flow_end"}
    [call] = f["recorded"]["toolCalls"]
    assert (call["name"], call["nodeId"], call["turn"]) == ("orders", "lookup_order", 4)
    assert call["arguments"] == {"key": "a1001"}
    assert call["result"]["number"] == "A-1001"
    assert f["recorded"]["llmCalls"] == []


async def test_tenants_masking_audit_and_bad_ids(hd: Harness, api: httpx.AsyncClient) -> None:
    sid = await order_session(hd)
    audit = Audit()
    hd.helpdesk.tracker.plugin_manager.register(audit)

    assert (await api.get(f"/{sid}/fixture")).status_code == 401
    hidden = await api.get(f"/{sid}/fixture", headers=as_("other"))
    nobody = sessiontrack.new_session_id()
    unknown = await api.get(f"/{nobody}/fixture", headers=as_("other"))
    assert hidden.status_code == unknown.status_code == 404  # the same answer: no leak
    assert hidden.text.replace(sid, "ID") == unknown.text.replace(nobody, "ID")

    bad = await api.get("/not-a-uuid/fixture", headers=as_("admin"))
    assert bad.status_code == 400
    assert bad.json()["detail"][0]["field"] == "id"

    masked = await api.get(f"/{sid}/fixture", headers=as_("masked"))
    assert masked.status_code == 200
    assert "15551234567" not in masked.text  # nowhere: contact, conversation id, texts
    f = masked.json()
    assert f["session"]["contact"]["phone"] == "+*******4567"
    assert f["session"]["conversationId"] == "*******4567"
    assert "my number is +*******4567" in [m["text"] for m in f["inbound"]]
    full = (await api.get(f"/{sid}/fixture", headers=as_("admin"))).json()
    assert full["session"]["contact"]["phone"] == "+15551234567"
    assert audit.reads == [(sid, "clerk", "fixture"), (sid, "admin", "fixture")]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessiontrack.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_command_writes_what_the_route_serves(
    hd: Harness, api: httpx.AsyncClient, database_url: str, prefix: str, tmp_path: Path
) -> None:
    sid = await order_session(hd)
    served: dict[str, Any] = (await api.get(f"/{sid}/fixture", headers=as_("admin"))).json()
    common = ("--database-url", database_url, "--prefix", prefix)
    out = tmp_path / "order.json"
    done = run_cli("fixture", sid, *common, "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"fixture of session {sid} written to {out}\n"
    assert json.loads(out.read_text(encoding="utf-8")) == served
    to_stdout = run_cli("fixture", sid, *common)
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert json.loads(to_stdout.stdout) == served

    missing = sessiontrack.new_session_id()
    gone = run_cli("fixture", missing, *common)
    assert gone.returncode == 2
    assert gone.stderr == f"sessiontrack: error: no session {missing!r} in this database\n"
    bad = run_cli("fixture", "nope", *common)
    assert bad.returncode == 2 and bad.stderr.startswith("sessiontrack: error: SESSION_ID: ")
    unwritable = run_cli("fixture", sid, *common, "--output", str(tmp_path / "no" / "f.json"))
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr
