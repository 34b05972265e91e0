"""``GET /export`` on a live uvicorn, SQLite and PostgreSQL: both formats stream every
matching session, tenants see only their chatbots, phones are masked and cannot be probed,
bad parameters are a 400 naming them before anything streams, reads are audited."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest
from web_helpers.engine import Engine
from web_helpers.fixtures import api, app_options, engine, live_url, web_app
from web_helpers.live import settle

import sessiontrack
from sessiontrack._export import CSV_COLUMNS
from sessiontrack.web import AuthRequest

__all__ = ["api", "app_options", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

ADMIN = sessiontrack.Principal(id="admin")
TENANT_A = sessiontrack.Principal(id="a-user", chatbot_ids=frozenset({"bot-a"}), can_see_pii=False)
TOKENS = {"admin-token": ADMIN, "a-token": TENANT_A}


async def check(request: AuthRequest) -> sessiontrack.Principal | None:
    return TOKENS.get(request.token or "")


@pytest.fixture
def authenticate() -> Any:
    return check


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def world(engine: Engine, tracker: sessiontrack.Tracker) -> dict[str, list[str]]:
    engine.register("bot-a", "Alpha")
    engine.register("bot-b", "Beta")
    a = [
        engine.full_run("bot-a", finish=i % 2 == 0, phone=f"+55119000{i:05d}", name=f"Ana {i}")
        for i in range(7)
    ]
    b = [engine.full_run("bot-b", phone=f"+55219000{i:05d}", name=f"Bia {i}") for i in range(3)]
    await settle(tracker)
    return {"a": a, "b": b}


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_csv_streams_every_matching_session_as_the_list_shows_it(
    api: httpx.AsyncClient, world: dict[str, list[str]]
) -> None:
    admin = bearer("admin-token")
    r = await api.get("/export", params={"format": "csv"}, headers=admin)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith('attachment; filename="sessions-')
    assert r.headers["content-disposition"].endswith('.csv"')
    got = rows(r.text)
    assert list(got[0]) == CSV_COLUMNS
    listed = (await api.get("/", params={"limit": 100}, headers=admin)).json()["data"]
    assert [g["id"] for g in got] == [s["id"] for s in listed]
    for g, s in zip(got, listed, strict=True):
        for key in ("status", "customerName", "customerPhone", "chatbotName", "startedAt"):
            assert g[key] == (s[key] or ""), key
        assert int(g["messageCount"]) == s["messageCount"]
        assert float(g["durationSeconds"]) >= 0
    advanced = {"minMessages": "1", "hasError": "false", "nodeId": "ask"}
    listed2 = await api.get("/", params={**advanced, "limit": 100}, headers=admin)
    exported = await api.get("/export", params={**advanced, "format": "csv"}, headers=admin)
    assert [g["id"] for g in rows(exported.text)] == [s["id"] for s in listed2.json()["data"]]
    q = {"format": "csv", "filter": "active", "chatbotId": "bot-a", "sortOrder": "asc"}
    active = rows((await api.get("/export", params=q, headers=admin)).text)
    assert sorted(g["id"] for g in active) == sorted(world["a"][1::2])
    assert [g["startedAt"] for g in active] == sorted(g["startedAt"] for g in active)


async def test_jsonl_gives_each_session_detail_a_line(
    api: httpx.AsyncClient, world: dict[str, list[str]]
) -> None:
    admin = bearer("admin-token")
    r = await api.get("/export", params={"chatbotId": "bot-b"}, headers=admin)  # jsonl: default
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(world["b"])
    for line in lines:
        detail = (await api.get(f"/{line['id']}", headers=admin)).json()
        extra = {"seq", "channelMessageId"}
        assert {k: v for k, v in line.items() if k != "nodeExecutions" and k != "messages"} == {
            k: v for k, v in detail.items() if k != "nodeExecutions" and k != "messages"
        }
        assert [{k: v for k, v in n.items() if k not in extra} for n in line["nodeExecutions"]] == (
            detail["nodeExecutions"]
        )
        assert [{k: v for k, v in m.items() if k not in extra} for m in line["messages"]] == (
            detail["messages"]
        )


async def test_a_tenant_exports_only_its_chatbots_with_phones_masked(
    api: httpx.AsyncClient, world: dict[str, list[str]]
) -> None:
    tenant = bearer("a-token")
    got = rows((await api.get("/export", params={"format": "csv"}, headers=tenant)).text)
    assert sorted(g["id"] for g in got) == sorted(world["a"])
    assert all(g["customerPhone"].startswith("+*") for g in got)
    assert all(g["customerPhone"].endswith(g["customerPhone"][-4:]) for g in got)
    theirs = await api.get(
        "/export", params={"format": "csv", "chatbotId": "bot-b"}, headers=tenant
    )
    assert theirs.status_code == 200 and rows(theirs.text) == []  # as the list: nothing
    probe = await api.get("/export", params={"format": "csv", "search": "9000"}, headers=tenant)
    assert rows(probe.text) == []  # the digits of a phone find nothing
    by_name = await api.get("/export", params={"format": "csv", "search": "ana 3"}, headers=tenant)
    assert [g["customerName"] for g in rows(by_name.text)] == ["Ana 3"]
    lines = (await api.get("/export", headers=tenant)).text.splitlines()
    assert lines and all(json.loads(line)["customerPhone"].startswith("+*") for line in lines)
    assert (await api.get("/export")).status_code == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("format=xml", "format"),
        ("limit=5", "limit"),
        ("cursor=abc", "cursor"),
        ("offset=1", "offset"),
        ("status=sleeping", "status"),
        ("sortBy=name", "sortBy"),
        ("startDate=2026-01-01T00:00:00", "startDate"),
        ("path=a", "path"),
        ("formt=csv", "formt"),
    ],
)
async def test_bad_parameters_are_400_naming_the_field(
    api: httpx.AsyncClient, query: str, field: str
) -> None:
    r = await api.get(f"/export?{query}", headers=bearer("admin-token"))
    assert r.status_code == 400, r.text
    assert field in [d["field"] for d in r.json()["detail"]]


async def test_every_exported_session_is_an_audited_read(
    api: httpx.AsyncClient, world: dict[str, list[str]], tracker: sessiontrack.Tracker
) -> None:
    reads: list[tuple[str, str | None, str]] = []

    class Auditor:
        @sessiontrack.hookimpl
        async def sessiontrack_session_read(
            self, session_id: str, principal: str | None, what: str
        ) -> None:
            reads.append((session_id, principal, what))

    tracker.plugin_manager.register(Auditor())
    r = await api.get("/export", params={"format": "csv"}, headers=bearer("a-token"))
    assert r.status_code == 200
    assert sorted(reads) == sorted((sid, "a-user", "export") for sid in world["a"])
