"""``GET /search/messages`` and the ``q`` list parameter on a live uvicorn: the answer's
shape, highlights and cursor, 400s naming the camelCase field, tenants and masking; on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import api, app_options, engine, live_url, web_app
from web_helpers.live import settle

import sessiontrack
from sessiontrack.web import AuthRequest

__all__ = ["api", "app_options", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

TOKENS = {
    "admin": sessiontrack.Principal(id="admin"),
    "a": sessiontrack.Principal(id="a", chatbot_ids=frozenset({"bot-a"}), can_see_pii=False),
}
KEYS = {"sessionId", "messageId", "chatbotId", "direction", "timestamp", "text", "highlights"}


async def check(request: AuthRequest) -> sessiontrack.Principal | None:
    return TOKENS.get(request.token or "")


@pytest.fixture
def authenticate() -> Any:
    return check


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def world(engine: Engine, tracker: sessiontrack.Tracker) -> dict[str, str]:
    engine.register("bot-a", "Alpha")
    engine.register("bot-b", "Beta")
    a = engine.start("bot-a", phone="+5511911112222", name="Ana Lima")
    b = engine.start("bot-b", phone="+5521933334444", name="Bia Rocha")
    for i in range(3):
        engine.message(a, f"Refund request {i} for order A")
    engine.message(b, "Refunded order B, thanks", direction="inbound")
    await settle(tracker)
    return {"a": a, "b": b}


async def test_search_messages_answers_pages_and_highlights(
    api: httpx.AsyncClient, world: dict[str, str]
) -> None:
    h = bearer("admin")
    r = await api.get("/search/messages", params={"q": "refund* ord*", "limit": 2}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"data", "nextCursor"}
    first = body["data"][0]
    assert set(first) == KEYS
    assert first["sessionId"] == world["b"] and first["direction"] == "inbound"
    assert first["text"] == "Refunded order B, thanks"
    assert first["highlights"] == [[0, 8], [9, 14]]
    assert first["timestamp"].endswith("Z") or "+00:00" in first["timestamp"]
    more = await api.get(
        "/search/messages",
        params={"q": "refund* ord*", "limit": 2, "cursor": body["nextCursor"]},
        headers=h,
    )
    rest = more.json()
    assert [m["text"] for m in rest["data"]] == [
        "Refund request 1 for order A",
        "Refund request 0 for order A",
    ]
    assert rest["nextCursor"] is None
    ids = [m["messageId"] for m in body["data"] + rest["data"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    # each hit leads to its session's messages
    detail = await api.get(f"/{first['sessionId']}/messages", headers=h)
    assert first["messageId"] in {m["id"] for m in detail.json()}
    listed = (await api.get("/", params={"q": "refunded"}, headers=h)).json()
    assert [s["id"] for s in listed["data"]] == [world["b"]] and listed["total"] == 1


async def test_bad_parameters_are_400_naming_the_field(
    api: httpx.AsyncClient, world: dict[str, str]
) -> None:
    h = bearer("admin")
    cases = [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "ok", "limit": "0"}, "limit"),
        ({"q": "ok", "limit": "101"}, "limit"),
        ({"q": "ok", "cursor": "not-a-cursor"}, "cursor"),
        ({"q": "ok", "chatbotId": ""}, "chatbotId"),
        ({"q": "ok", "sessionId": "x"}, "sessionId"),
        ({"q": "ok\x00"}, "q"),
    ]
    for params, field in cases:
        r = await api.get("/search/messages", params=params, headers=h)
        assert r.status_code == 400, (params, r.text)
        assert [d["field"] for d in r.json()["detail"]] == [field], (params, r.text)
    r = await api.get("/", params={"q": "y" * 201}, headers=h)
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "q"


async def test_tenants_and_masking(api: httpx.AsyncClient, world: dict[str, str]) -> None:
    h = bearer("a")
    found = (await api.get("/search/messages", params={"q": "refund"}, headers=h)).json()
    assert {m["sessionId"] for m in found["data"]} == {world["a"]}
    other = await api.get(
        "/search/messages", params={"q": "refund", "chatbotId": "bot-b"}, headers=h
    )
    assert other.status_code == 200 and other.json()["data"] == []
    listed = (await api.get("/", params={"q": "refund"}, headers=h)).json()
    assert [s["id"] for s in listed["data"]] == [world["a"]]
    assert listed["data"][0]["customerPhone"] != "+5511911112222"
    # phone digits find nothing for a masked principal, its own chatbot's sessions included
    assert (await api.get("/", params={"search": "1111"}, headers=h)).json()["total"] == 0
    assert (await api.get("/", params={"search": "ana li"}, headers=h)).json()["total"] == 1
    admin = (await api.get("/", params={"search": "1111"}, headers=bearer("admin"))).json()
    assert [s["id"] for s in admin["data"]] == [world["a"]]
    assert (await api.get("/search/messages", params={"q": "refund"})).status_code == 401
