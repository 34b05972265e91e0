"""The REST API of the sub-app (DESIGN.md §4), served by a real uvicorn under a prefix,
on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pluggy
import pytest
import socketio
from anyio.from_thread import start_blocking_portal
from conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres
from hypothesis import given, settings
from hypothesis import strategies as st
from web_helpers.engine import Engine
from web_helpers.fixtures import api, app_options, authenticate, engine, live_url, web_app
from web_helpers.live import PREFIX, host_app, serve
from web_helpers.sockets import socket_client

import sessiontrack
from sessiontrack.web import create_app

__all__ = ["api", "app_options", "authenticate", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

SESSION_KEYS = {
    "id",
    "conversationId",
    "chatbotId",
    "chatbotName",
    "customerPhone",
    "customerName",
    "status",
    "currentNodeId",
    "currentNodeLabel",
    "startedAt",
    "updatedAt",
    "completedAt",
    "nodeCount",
    "messageCount",
    "inputTokens",
    "outputTokens",
    "cost",
    "llmCalls",
    "toolCalls",
    "errorCount",
    "isActive",
}
DETAIL_KEYS = SESSION_KEYS | {
    "nodeHistory",
    "nodeExecutions",
    "variables",
    "messages",
    "flowData",
    "expiresAt",
    "completionReason",
    "flowVersion",
    "nodeTotals",
    "llmCallHistory",
    "toolCallHistory",
}
MESSAGE_KEYS = {
    "id",
    "sessionId",
    "conversationId",
    "direction",
    "type",
    "text",
    "payload",
    "nodeId",
    "timestamp",
}
PAGE_KEYS = {
    "data",
    "total",
    "totalExact",
    "limit",
    "offset",
    "hasNext",
    "hasPrevious",
    "nextCursor",
}


def aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


@pytest.fixture
async def world(engine: Engine, tracker: sessiontrack.Tracker) -> dict[str, Any]:
    """Two bots; three sessions of bot-a (one completed), one of bot-b."""
    engine.register("bot-a", "Alpha Bot")
    engine.register("bot-b", "Beta Bot")
    done = engine.full_run("bot-a", phone="+5511900000001", name="Ana Souza")
    waiting = engine.full_run("bot-a", finish=False, phone="+5511900000002", name="Bruno Lima")
    running = engine.start("bot-a", phone="+5511900000003", name="Carla Dias")
    other = engine.full_run("bot-b", finish=False, phone="+5511900000004", name="Davi Reis")
    await tracker.flush()
    return {"done": done, "waiting": waiting, "running": running, "other": other}


async def test_list_shape_and_defaults(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    r = await api.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == PAGE_KEYS
    assert body["total"] == 4 and body["limit"] == 20 and body["offset"] == 0
    assert body["hasNext"] is False and body["hasPrevious"] is False
    for item in body["data"]:
        assert set(item) == SESSION_KEYS
        aware(item["startedAt"])
        aware(item["updatedAt"])
    started = [aware(i["startedAt"]) for i in body["data"]]
    assert started == sorted(started, reverse=True)
    done = next(i for i in body["data"] if i["id"] == world["done"])
    assert done["status"] == "completed" and done["isActive"] is False
    aware(done["completedAt"])
    assert done["chatbotName"] == "Alpha Bot" and done["customerName"] == "Ana Souza"
    assert done["messageCount"] == 2 and done["nodeCount"] == 1


FILTER_CASES = [
    ({"filter": "active"}, {"waiting", "running", "other"}),
    ({"filter": "completed"}, {"done"}),
    ({"filter": "all"}, {"done", "waiting", "running", "other"}),
    ({"status": "waiting_input"}, {"waiting", "other"}),
    ({"status": "running,completed"}, {"running", "done"}),
    ({"chatbotId": "bot-b"}, {"other"}),
    ({"conversationId": "+5511900000002"}, {"waiting"}),
    ({"search": "carla"}, {"running"}),
    ({"search": "900000004"}, {"other"}),
    ({"status": "waiting_input", "chatbotId": "bot-a"}, {"waiting"}),
]


async def test_list_filters(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    for query, expected in FILTER_CASES:
        r = await api.get("/", params=query)
        assert r.status_code == 200, r.text
        ids = {i["id"] for i in r.json()["data"]}
        assert ids == {world[name] for name in expected}, query
        assert r.json()["total"] == len(expected)


async def test_sort_order_is_case_insensitive(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    for order in ["ASC", "asc", "Asc", "DESC", "desc"]:
        r = await api.get("/", params={"sortOrder": order, "sortBy": "updatedAt"})
        assert r.status_code == 200
        updated = [aware(i["updatedAt"]) for i in r.json()["data"]]
        assert len(updated) == 4
        assert updated == sorted(updated, reverse=order.upper() == "DESC")


async def test_pagination_offset_and_cursor(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    first = (await api.get("/", params={"limit": 3})).json()
    assert len(first["data"]) == 3 and first["hasNext"] and not first["hasPrevious"]
    second = (await api.get("/", params={"limit": 3, "offset": 3})).json()
    assert len(second["data"]) == 1 and not second["hasNext"] and second["hasPrevious"]
    by_cursor = (await api.get("/", params={"limit": 3, "cursor": first["nextCursor"]})).json()
    assert [i["id"] for i in by_cursor["data"]] == [i["id"] for i in second["data"]]
    everything = {i["id"] for i in first["data"] + second["data"]}
    assert everything == set(world.values())


async def test_date_range_needs_a_timezone(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    inside = {
        "startDate": (now - timedelta(hours=1)).isoformat(),
        "endDate": (now + timedelta(hours=1)).isoformat(),
    }
    assert (await api.get("/", params=inside)).json()["total"] == 4
    later = {"startDate": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")}
    assert (await api.get("/", params=later)).json()["total"] == 0
    offset = {
        "endDate": (now - timedelta(hours=1))
        .astimezone(__import__("datetime").timezone(timedelta(hours=-3)))
        .isoformat()
    }
    assert (await api.get("/", params=offset)).json()["total"] == 0


BAD_PARAMETERS = [
    ("/", {"limit": "0"}, "limit"),
    ("/", {"limit": "101"}, "limit"),
    ("/", {"limit": "ten"}, "limit"),
    ("/", {"offset": "-1"}, "offset"),
    ("/", {"status": "sleeping"}, "status"),
    ("/", {"filter": "some"}, "filter"),
    ("/", {"sortBy": "name"}, "sortBy"),
    ("/", {"sortOrder": "UP"}, "sortOrder"),
    ("/", {"startDate": "2026-01-01T00:00:00"}, "startDate"),
    ("/", {"endDate": "yesterday"}, "endDate"),
    ("/", {"cursor": "bogus"}, "cursor"),
    ("/chatbot/bot-a", {"limit": "500"}, "limit"),
    ("/not-a-uuid", {}, "id"),
    ("/not-a-uuid/messages", {}, "id"),
    ("/01900000-0000-7000-8000-000000000000/messages", {"limit": "0"}, "limit"),
    ("/01900000-0000-7000-8000-000000000000/messages", {"before": "x"}, "before"),
    ("/events", {"sessionId": "nope"}, "sessionId"),
    ("/events", {"lastEventId": "-5"}, "lastEventId"),
]


async def test_bad_parameters_are_400_naming_the_field(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    for path, params, field in BAD_PARAMETERS:
        r = await api.get(path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        body = r.json()
        assert body["error"]
        assert [d["field"] for d in body["detail"]] == [field], (path, params)
    r = await api.get("/events", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "Last-Event-ID"


async def test_bad_id_on_stop_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post("/123/stop")
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "id"


async def test_active_and_by_chatbot(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    active = (await api.get("/active")).json()
    assert isinstance(active, list)
    assert {i["id"] for i in active} == {world["waiting"], world["running"], world["other"]}
    assert all(set(i) == SESSION_KEYS and i["isActive"] for i in active)
    page = (await api.get("/chatbot/bot-a", params={"filter": "active"})).json()
    assert set(page) == PAGE_KEYS
    assert {i["id"] for i in page["data"]} == {world["waiting"], world["running"]}
    empty = (await api.get("/chatbot/no-such-bot")).json()
    assert empty["data"] == [] and empty["total"] == 0


async def test_detail(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    r = await api.get(f"/{world['done']}")
    assert r.status_code == 200
    d = r.json()
    assert set(d) == DETAIL_KEYS
    assert d["nodeHistory"] == ["start"]
    assert d["nodeExecutions"][0]["nodeId"] == "start"
    assert d["nodeExecutions"][0]["durationMs"] == 1.5
    assert d["variables"] == {"step": 0}
    assert [m["text"] for m in d["messages"]] == ["What is your name?", "Ana"]
    assert {n["id"] for n in d["flowData"]["nodes"]} == {"start", "ask", "end"}
    assert d["completionReason"] == "flow_end"
    upper = await api.get(f"/{world['done'].upper()}")
    assert upper.status_code == 200 and upper.json()["id"] == world["done"]


async def test_unknown_session_is_404(api: httpx.AsyncClient) -> None:
    unknown = sessiontrack.new_session_id()
    for method, path in [
        ("GET", f"/{unknown}"),
        ("GET", f"/{unknown}/messages"),
        ("POST", f"/{unknown}/stop"),
    ]:
        r = await api.request(method, path)
        assert r.status_code == 404, (path, r.text)
        assert "not found" in r.json()["error"]


async def test_messages_page_backwards(
    api: httpx.AsyncClient, engine: Engine, tracker: sessiontrack.Tracker
) -> None:
    engine.register("bot-a")
    sid = engine.start("bot-a")
    for i in range(7):
        engine.message(sid, f"m{i}", direction="inbound" if i % 2 else "outbound")
    await tracker.flush()
    everything = (await api.get(f"/{sid}/messages")).json()
    assert [m["text"] for m in everything] == [f"m{i}" for i in range(7)]
    assert all(set(m) == MESSAGE_KEYS for m in everything)
    newest = (await api.get(f"/{sid}/messages", params={"limit": 3})).json()
    assert [m["text"] for m in newest] == ["m4", "m5", "m6"]
    older = (
        await api.get(f"/{sid}/messages", params={"limit": 3, "before": newest[0]["id"]})
    ).json()
    assert [m["text"] for m in older] == ["m1", "m2", "m3"]


async def test_stop(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    sid = world["running"]
    r = await api.post(f"/{sid}/stop")
    assert r.status_code == 200
    assert r.json() == {"sessionId": sid, "status": "stopped", "success": True}
    detail = (await api.get(f"/{sid}")).json()
    assert detail["status"] == "stopped" and detail["isActive"] is False
    again = await api.post(f"/{sid}/stop")
    assert again.status_code == 409
    assert (await api.post(f"/{world['done']}/stop")).status_code == 409


async def test_stats_and_chatbots(api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    stats = (await api.get("/stats")).json()
    assert set(stats) == {"active", "completedToday", "total", "byStatus"}
    assert stats["active"] == 3 and stats["completedToday"] == 1 and stats["total"] == 4
    assert stats["byStatus"]["waiting_input"] == 2
    one_bot = (await api.get("/stats", params={"chatbotId": "bot-b"})).json()
    assert one_bot["total"] == 1 and one_bot["completedToday"] == 0
    bad = await api.get("/stats", params={"chatbot": "bot-b"})
    assert bad.status_code == 400 and bad.json()["detail"][0]["field"] == "chatbot"
    bots = (await api.get("/chatbots")).json()
    assert bots == [{"id": "bot-a", "name": "Alpha Bot"}, {"id": "bot-b", "name": "Beta Bot"}]


async def test_unknown_route_is_json_404(api: httpx.AsyncClient) -> None:
    r = await api.get("/a/b/c")
    assert r.status_code == 404 and r.json() == {"error": "not found", "detail": []}
    r = await api.delete("/stats")
    assert r.status_code == 405


async def test_audit_hook_for_reads(
    api: httpx.AsyncClient, world: dict[str, Any], tracker: sessiontrack.Tracker
) -> None:
    reads: list[tuple[str, str | None, str]] = []

    class Auditor:
        @sessiontrack.hookimpl
        async def sessiontrack_session_read(
            self, session_id: str, principal: str | None, what: str
        ) -> None:
            reads.append((session_id, principal, what))

    tracker.plugin_manager.register(Auditor())
    await api.get(f"/{world['done']}")
    await api.get(f"/{world['done']}/messages")
    await api.get("/")
    assert reads == [(world["done"], "local", "detail"), (world["done"], "local", "messages")]


async def test_tracker_not_entered_is_503_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = sessiontrack.Tracker(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    app = create_app(tracker)
    with caplog.at_level(logging.ERROR, logger="sessiontrack.web"):
        async with serve(host_app(app)) as url, httpx.AsyncClient() as client:
            r = await client.get(f"{url}{PREFIX}/")
            assert (await client.get(f"{url}{PREFIX}/events")).status_code == 503
            with pytest.raises(socketio.exceptions.ConnectionError):
                async with socket_client(url):
                    pass
    assert r.status_code == 503
    assert "lifespan" in r.json()["error"] and "async with tracker" in r.json()["error"]
    assert any("not running" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_serves_the_dashboard_directory(
    tracker: sessiontrack.Tracker, tmp_path: Path
) -> None:
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>x</title>")
    (static / "assets" / "app.js").write_text("console.log(1)")
    (static / "assets" / "app.css").write_text("body{}")
    app = create_app(tracker, static_dir=static)
    async with serve(host_app(app)) as url, httpx.AsyncClient(base_url=url + PREFIX) as c:
        index = await c.get("/ui/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert "<title>x</title>" in index.text
        js = await c.get("/ui/assets/app.js")
        assert "javascript" in js.headers["content-type"]
        css = await c.get("/ui/assets/app.css")
        assert css.headers["content-type"].startswith("text/css")
        assert (await c.get("/ui/missing.js")).status_code == 404
        bare = await c.get("/ui", follow_redirects=False)
        assert bare.status_code == 308
        assert (await c.get("/ui", follow_redirects=True)).url.path == f"{PREFIX}/ui/"


async def test_a_response_that_breaks_its_schema_is_a_500_not_a_400(
    api: httpx.AsyncClient, world: dict[str, Any], tracker: sessiontrack.Tracker
) -> None:
    """A bad row is the server's fault: the client must not be told its request was wrong."""
    s = tracker.store.tables.sessions
    async with tracker.store.engine.begin() as conn:
        await conn.execute(s.update().where(s.c.id == world["done"]).values(status="bogus"))
    r = await api.get(f"/{world['done']}")
    assert r.status_code == 500 and r.json() == {"error": "internal error", "detail": []}
    assert (await api.get("/", params={"limit": "0"})).status_code == 400


# --- input that must never be a 5xx (in-process, both backends) --------------------------


def _cursor(when: str, sid: str = "01900000-0000-7000-8000-000000000000") -> str:
    raw = json.dumps(["started_at", "DESC", when, sid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def fuzz_principal(request: Any) -> sessiontrack.Principal:
    return sessiontrack.Principal(id="fuzzer")


@pytest.fixture
async def inproc(tracker: sessiontrack.Tracker, engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """The sub-app called in-process, with one session stored."""
    engine.register("bot-a", "Alpha Bot")
    engine.full_run("bot-a")
    await tracker.flush()
    app = create_app(tracker, authenticate=fuzz_principal)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


HOSTILE_INPUT = [
    *(("/", f"{name}=a%00b", name) for name in ["search", "chatbotId", "conversationId"]),
    ("/", "cursor=%00", "cursor"),
    ("/stats", "chatbotId=%00", "chatbotId"),
    ("/chatbot/a%00b", "", "chatbotId"),
    ("/chatbot/bot-a", "search=%00", "search"),
    ("/events", "access_token=%00", "access_token"),
    # a lone surrogate as its (invalid) UTF-8 bytes, and other bytes that are not UTF-8
    *(("/", f"{name}=%ED%A0%80", name) for name in ["search", "chatbotId", "conversationId"]),
    ("/", "search=%FF", "search"),
    ("/", "cursor=%ED%B2%80", "cursor"),
    ("/chatbot/%ED%A0%80", "", "chatbotId"),
    ("/chatbot/%C3", "", "chatbotId"),
    ("/", "se%FFarch=x", "se\\xffarch"),
    # datetimes whose conversion to UTC leaves datetime's range
    ("/", "startDate=0001-01-01T00:00:00%2B14:00", "startDate"),
    ("/", "endDate=0001-01-01T00:00:00%2B14:00", "endDate"),
    ("/", "startDate=9999-12-31T23:00:00-14:00", "startDate"),
    ("/", "endDate=9999-12-31T23:59:59.999999-00:01", "endDate"),
    ("/chatbot/bot-a", "startDate=0001-01-01T00:00:00%2B01:00", "startDate"),
    # crafted cursors: naive, out of range once in UTC, not a list, a bad id
    ("/", "cursor=" + _cursor("2026-01-01T00:00:00"), "cursor"),
    ("/", "cursor=" + _cursor("0001-01-01T00:00:00+14:00"), "cursor"),
    ("/", "cursor=" + _cursor("9999-12-31T23:00:00-14:00"), "cursor"),
    ("/", "cursor=" + _cursor("2026-01-01T00:00:00+02:00"), "cursor"),
    ("/", "cursor=" + _cursor("2026-01-01T00:00:00+00:00", "x\x00"), "cursor"),
    ("/", "cursor=" + base64.urlsafe_b64encode(b"42").decode(), "cursor"),
    ("/", "cursor=" + base64.urlsafe_b64encode(b'{"a":1,"b":2,"c":3,"d":4}').decode(), "cursor"),
    ("/", "cursor=" + base64.urlsafe_b64encode(b"\xff\xfe").decode(), "cursor"),
    ("/", "cursor=%C3%A9", "cursor"),
    # odd Unicode digits where a number belongs
    ("/events", "lastEventId=%C2%B2", "lastEventId"),
    ("/events", "lastEventId=%D9%A3", "lastEventId"),
    ("/events", "lastEventId=%EF%BC%91", "lastEventId"),
    ("/", "limit=%C2%B2", "limit"),
    ("/", "offset=%E2%85%A0", "offset"),
    ("/01900000-0000-7000-8000-000000000000/messages", "before=%C2%B3", "before"),
    ("/01900000-0000-7000-8000-000000000000/messages", "limit=%EF%BC%95", "limit"),
]


async def test_hostile_input_is_400_naming_the_field(inproc: httpx.AsyncClient) -> None:
    wrong = []
    for path, query, field in HOSTILE_INPUT:
        r = await inproc.get(f"{path}?{query}" if query else path)
        body = r.json()
        fields = [d["field"] for d in body.get("detail", [])]
        if (r.status_code, body.get("error"), fields) != (400, "invalid parameter", [field]):
            wrong.append((path, query, r.status_code, r.text))
        assert all(d["message"] for d in body["detail"])
    assert wrong == []


@pytest.mark.parametrize(
    "header", ["²".encode("latin-1"), "³".encode("latin-1"), "٣".encode(), b"1" * 19, b"-1", b"1.0"]
)
async def test_odd_last_event_ids_are_400(inproc: httpx.AsyncClient, header: bytes) -> None:
    r = await inproc.get("/events", headers={"Last-Event-ID": header})
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == [
        {"field": "Last-Event-ID", "message": "must be a sequence number this stream sent"}
    ]


async def test_the_edges_of_the_date_range_still_work(inproc: httpx.AsyncClient) -> None:
    """The widest dates that do fit in UTC are valid filters, not errors."""
    for query in [
        {"startDate": "0001-01-01T00:00:00+00:00", "endDate": "9999-12-31T23:59:59+00:00"},
        {"startDate": "0001-01-01T14:00:00+14:00", "endDate": "9999-12-31T09:59:59-14:00"},
    ]:
        r = await inproc.get("/", params=query)
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 1
    r = await inproc.get("/", params={"startDate": "9999-12-31T23:59:59+00:00"})
    assert r.status_code == 200 and r.json()["total"] == 0


# --- fuzzing every text parameter (hypothesis, in-process, both backends) ----------------

TEXT_PARAMETERS = [
    ("/", "search"),
    ("/", "chatbotId"),
    ("/", "conversationId"),
    ("/", "cursor"),
    ("/stats", "chatbotId"),
    ("/chatbot/bot-a", "search"),
    ("/events", "lastEventId"),
    ("/", "startDate"),
    ("/", "limit"),
]


@pytest.fixture
def fuzz_get(backend: str, tmp_path: Path, prefix: str) -> Iterator[Any]:
    """A blocking ``get(url)`` into the sub-app in-process, for hypothesis (which cannot
    drive an async test): the tracker and the client live in a portal's event loop."""
    with start_blocking_portal() as portal:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'fuzz.db'}"
        else:
            portal.call(require_postgres)
            url = POSTGRES_URL
        try:
            tracker = sessiontrack.Tracker(url, prefix=prefix, migrate=True)
            with portal.wrap_async_context_manager(tracker):
                pm = pluggy.PluginManager("sessiontrack")
                pm.add_hookspecs(sessiontrack.hookspecs)
                pm.register(tracker)
                Engine(pm).register("bot-a", "Alpha")
                Engine(pm).full_run("bot-a", name="Zoë \u00e9\U0001f600")
                portal.call(tracker.flush)
                # streams end at once, so a valid /events request is a 200 like the others
                app = create_app(
                    tracker, authenticate=fuzz_principal, sse_max_age=0.01, keepalive=0.01
                )
                client = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://test"
                )
                with portal.wrap_async_context_manager(client):
                    yield lambda url, **kw: portal.call(partial(client.get, url, **kw))
        finally:
            if backend != "sqlite":
                portal.call(drop_prefixed_tables, POSTGRES_URL, prefix)


def _assert_client_error_or_ok(r: httpx.Response, name: str) -> None:
    assert r.status_code in (200, 400), (r.status_code, r.text)
    if r.status_code == 400:
        fields = [d["field"] for d in r.json()["detail"]]
        assert fields == [name], r.text


def _percent(value: str | bytes) -> str:
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote_from_bytes(raw, safe="")


ANY_TEXT = st.text(st.characters(codec=None), max_size=40) | st.binary(max_size=20)


def test_fuzzed_query_parameters_are_never_a_server_error(fuzz_get: Any) -> None:
    @given(where=st.sampled_from(TEXT_PARAMETERS), value=ANY_TEXT)
    @settings(max_examples=120, deadline=None, database=None)
    def run(where: tuple[str, str], value: str | bytes) -> None:
        path, name = where
        _assert_client_error_or_ok(fuzz_get(f"{path}?{name}={_percent(value)}"), name)

    run()


def test_fuzzed_path_parameters_are_never_a_server_error(fuzz_get: Any) -> None:
    @given(
        path=st.sampled_from(["/chatbot/{}", "/{}", "/{}/messages"]),
        value=st.text(st.characters(codec=None), min_size=1, max_size=40),
    )
    @settings(max_examples=60, deadline=None, database=None)
    def run(path: str, value: str) -> None:
        r = fuzz_get(path.format(_percent(value)))
        if "/" in value:  # %2F is decoded before routing: another path, or a redirect
            assert r.status_code < 500, r.text
            return
        assert r.status_code in (200, 400, 404), (r.status_code, r.text)
        if r.status_code == 400:
            assert [d["field"] for d in r.json()["detail"]] in (["chatbotId"], ["id"])

    run()


def test_fuzzed_dates_are_never_a_server_error(fuzz_get: Any) -> None:
    minutes = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timedelta(minutes=m))
    aware = st.builds(lambda when, off: when.replace(tzinfo=timezone(off)), st.datetimes(), minutes)

    @given(name=st.sampled_from(["startDate", "endDate"]), when=aware)
    @settings(max_examples=60, deadline=None, database=None)
    def run(name: str, when: datetime) -> None:
        _assert_client_error_or_ok(fuzz_get("/", params={name: when.isoformat()}), name)

    run()


def test_fuzzed_last_event_id_headers_are_never_a_server_error(fuzz_get: Any) -> None:
    latin1 = st.characters(min_codepoint=0x21, max_codepoint=0xFF)

    @given(value=st.text(latin1, min_size=1, max_size=20) | st.from_regex(r"\A[0-9]{1,19}\Z"))
    @settings(max_examples=40, deadline=None, database=None)
    def run(value: str) -> None:
        r = fuzz_get("/events", headers={"Last-Event-ID": value.encode("latin-1")})
        if value.isascii() and value.isdigit() and len(value) <= 18:
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 400 and r.json()["detail"][0]["field"] == "Last-Event-ID"

    run()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [300, 600])
async def test_a_deep_document_does_not_break_the_detail(
    inproc: httpx.AsyncClient, tracker: sessiontrack.Tracker, depth: int
) -> None:
    """pydantic's serializer stops at 255 levels; stored JSON is served as stored."""
    page = (await inproc.get("/")).json()
    sid = page["data"][0]["id"]
    s = tracker.store.tables.sessions
    async with tracker.store.engine.begin() as conn:
        await conn.execute(s.update().where(s.c.id == sid).values(variables=_nested(depth)))
    r = await inproc.get(f"/{sid}")
    assert r.status_code == 200, r.text
    assert r.json()["variables"] == _nested(depth)


async def test_values_longer_than_any_column_match_nothing(inproc: httpx.AsyncClient) -> None:
    long = "x" * 5000
    for path, params in [
        ("/", {"chatbotId": long}),
        ("/", {"conversationId": long}),
        (f"/chatbot/{long}", {}),
        ("/stats", {"chatbotId": long}),
    ]:
        r = await inproc.get(path, params=params)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["total"] == 0
    r = await inproc.get("/", params={"search": "x" * 201})
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "search"
