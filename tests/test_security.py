"""DESIGN.md §6: the authenticator contract on REST, SSE and socket connect, tenants
limited to some chatbots, phone masking, loopback-only without an authenticator, audit
reads; on a live uvicorn, SQLite and PostgreSQL."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
import socketio
from hypothesis import given, settings
from hypothesis import strategies as st
from web_helpers.engine import Engine
from web_helpers.fixtures import api, app_options, engine, live_url, web_app
from web_helpers.live import PREFIX, host_app, serve, settle, wait_until
from web_helpers.raw_http import chunked, raw_request
from web_helpers.sockets import socket_client
from web_helpers.sse_client import sse_stream

import sessiontrack
from sessiontrack.web import AuthRequest, create_app, gateway_of
from sessiontrack.web.auth import FORWARDING_HEADERS, is_local_host, is_local_origin

__all__ = ["api", "app_options", "engine", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

ADMIN = sessiontrack.Principal(id="admin")
TENANT_A = sessiontrack.Principal(id="a-user", chatbot_ids=frozenset({"bot-a"}), can_see_pii=False)
TENANT_B = sessiontrack.Principal(id="b-user", chatbot_ids=frozenset({"bot-b"}))
TOKENS = {"admin-token": ADMIN, "a-token": TENANT_A}
SEEN: list[AuthRequest] = []


async def check(request: AuthRequest) -> sessiontrack.Principal | None:
    """Bearer tokens, or the host's own session cookie (what a host would plug in)."""
    SEEN.append(request)
    if request.token is not None:
        return TOKENS.get(request.token)
    if request.connection.cookies.get("host_session") == "b-cookie":
        return TENANT_B
    return None


@pytest.fixture
def authenticate() -> Any:
    return check


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def world(engine: Engine, tracker: sessiontrack.Tracker) -> dict[str, str]:
    engine.register("bot-a", "Alpha")
    engine.register("bot-b", "Beta")
    a = engine.full_run("bot-a", finish=False, phone="+5511911112222", name="Ana")
    b = engine.full_run("bot-b", finish=False, phone="+5521933334444", name="Bia")
    await settle(tracker)
    return {"a": a, "b": b}


async def test_no_or_bad_credentials_are_401_everywhere(
    api: httpx.AsyncClient, world: dict[str, str]
) -> None:
    sid = world["a"]
    routes = [
        ("GET", "/"),
        ("GET", "/active"),
        ("GET", "/stats"),
        ("GET", "/chatbots"),
        ("GET", "/chatbot/bot-a"),
        ("GET", f"/{sid}"),
        ("GET", f"/{sid}/messages"),
        ("POST", f"/{sid}/stop"),
        ("GET", "/events"),
    ]
    for headers in ({}, bearer("wrong"), {"Authorization": "Basic YTpi"}):
        for method, path in routes:
            r = await api.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"]
    assert (await api.get("/events", params={"access_token": "wrong"})).status_code == 401


async def test_authenticator_sees_token_connection_and_transport(
    api: httpx.AsyncClient, live_url: str, world: dict[str, str]
) -> None:
    SEEN.clear()
    await api.get("/", headers=bearer("admin-token"))
    async with sse_stream(api, params={"access_token": "admin-token"}):
        pass
    async with socket_client(live_url, auth={"token": "admin-token"}):
        pass
    kinds = [(r.transport, r.token) for r in SEEN]
    assert kinds == [("http", "admin-token"), ("sse", "admin-token"), ("socket", "admin-token")]
    assert SEEN[-1].auth == {"token": "admin-token"}
    assert all(r.connection.client is not None for r in SEEN)


async def test_tenant_sees_only_its_chatbots(api: httpx.AsyncClient, world: dict[str, str]) -> None:
    h = bearer("a-token")
    page = (await api.get("/", headers=h)).json()
    assert [s["id"] for s in page["data"]] == [world["a"]] and page["total"] == 1
    assert [s["id"] for s in (await api.get("/active", headers=h)).json()] == [world["a"]]
    assert (await api.get("/chatbot/bot-b", headers=h)).json()["total"] == 0
    assert (await api.get("/", params={"chatbotId": "bot-b"}, headers=h)).json()["total"] == 0
    assert (await api.get("/stats", headers=h)).json()["total"] == 1
    assert (await api.get("/chatbots", headers=h)).json() == [{"id": "bot-a", "name": "Alpha"}]
    other = world["b"]
    for method, path in [
        ("GET", f"/{other}"),
        ("GET", f"/{other}/messages"),
        ("POST", f"/{other}/stop"),
    ]:
        r = await api.request(method, path, headers=h)
        assert r.status_code == 404, (path, r.text)
    unknown = await api.get(f"/{sessiontrack.new_session_id()}", headers=h)
    assert unknown.json()["error"].replace(unknown.url.path.rsplit("/", 1)[1], "X") == (
        await api.get(f"/{other}", headers=h)
    ).json()["error"].replace(other, "X")
    assert (await api.get("/events", params={"sessionId": other}, headers=h)).status_code == 404
    admin = await api.get(f"/{other}", headers=bearer("admin-token"))
    assert admin.status_code == 200 and admin.json()["status"] == "waiting_input"


async def test_host_session_cookie(api: httpx.AsyncClient, world: dict[str, str]) -> None:
    api.cookies.set("host_session", "b-cookie")
    try:
        page = (await api.get("/")).json()
        assert [s["id"] for s in page["data"]] == [world["b"]]
        async with sse_stream(api):
            pass
    finally:
        api.cookies.clear()


async def test_phone_masking_without_pii_permission(
    api: httpx.AsyncClient, world: dict[str, str]
) -> None:
    mine = (await api.get(f"/{world['a']}", headers=bearer("a-token"))).json()
    assert mine["customerPhone"] == "+*********2222"
    listed = (await api.get("/", headers=bearer("a-token"))).json()["data"][0]
    assert listed["customerPhone"] == "+*********2222"
    full = (await api.get(f"/{world['a']}", headers=bearer("admin-token"))).json()
    assert full["customerPhone"] == "+5511911112222"


async def test_sockets_refuse_bad_credentials(live_url: str) -> None:
    for kwargs in ({}, {"auth": {"token": "wrong"}}, {"headers": bearer("wrong")}):
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with socket_client(live_url, **kwargs):
                pass
    async with socket_client(live_url, headers=bearer("admin-token")) as probe:
        assert await probe.call("sessions:subscribe") == {"success": True}


async def test_sockets_refuse_other_sites_even_with_the_hosts_cookie(live_url: str) -> None:
    """Cross-site WebSocket hijacking: a page elsewhere rides the browser's cookie."""
    cookie = {"Cookie": "host_session=b-cookie"}
    with pytest.raises(socketio.exceptions.ConnectionError):
        async with socket_client(live_url, headers={**cookie, "Origin": "http://evil.example"}):
            pass
    async with socket_client(live_url, headers={**cookie, "Origin": live_url}) as same_site:
        assert await same_site.call("sessions:subscribe") == {"success": True}


async def test_tenant_broadcasts_joins_and_masking(
    live_url: str, api: httpx.AsyncClient, engine: Engine, world: dict[str, str]
) -> None:
    async with (
        socket_client(live_url, auth={"token": "a-token"}) as tenant,
        socket_client(live_url, auth={"token": "admin-token"}) as admin,
        sse_stream(api, params={"access_token": "a-token"}) as tenant_sse,
    ):
        await tenant.call("sessions:subscribe")
        await admin.call("sessions:subscribe")
        refused = await tenant.call("session:join", {"sessionId": world["b"]})
        assert refused == {"sessionId": world["b"], "success": False, "error": "session not found"}
        b2 = engine.start("bot-b", phone="+5521955556666")
        a2 = engine.start("bot-a", phone="+5511977778888")
        engine.complete(b2)
        engine.complete(a2)
        await admin.wait_for(4)
        got = await tenant.wait_for(2)
        sse = await tenant_sse.take(2)
        await anyio.sleep(0.3)
    assert {d["sessionId"] for _, d in tenant.events()} == {a2}
    assert [(n, d) for n, d in got] == [(e.event, e.data) for e in sse]
    assert got[0][1]["customerPhone"] == "+*********8888"
    phones = {
        d["sessionId"]: d.get("customerPhone") for n, d in admin.events() if n == "session:started"
    }
    assert phones == {b2: "+5521955556666", a2: "+5511977778888"}


async def test_audit_records_the_principal(
    api: httpx.AsyncClient, world: dict[str, str], tracker: sessiontrack.Tracker
) -> None:
    reads: list[tuple[str, str | None, str]] = []

    class Auditor:
        @sessiontrack.hookimpl
        def sessiontrack_session_read(
            self, session_id: str, principal: str | None, what: str
        ) -> None:
            reads.append((session_id, principal, what))

    tracker.plugin_manager.register(Auditor())
    await api.get(f"/{world['a']}", headers=bearer("a-token"))
    await api.get(f"/{world['a']}/messages", headers=bearer("admin-token"))
    await api.get(f"/{world['b']}", headers=bearer("a-token"))  # 404: nothing read
    assert reads == [(world["a"], "a-user", "detail"), (world["a"], "admin", "messages")]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_without_authenticator_only_loopback(
    tracker: sessiontrack.Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sessiontrack.web"):
        app = create_app(tracker)
    assert any(
        "only loopback" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )
    # Behind a local reverse proxy uvicorn takes the client from X-Forwarded-For.
    async with serve(host_app(app), proxy_headers=True, forwarded_allow_ips="127.0.0.1") as url:
        async with httpx.AsyncClient(base_url=url + PREFIX) as c:
            assert (await c.get("/")).status_code == 200
            remote = {"X-Forwarded-For": "203.0.113.7"}
            for path in ("/", "/stats", "/events"):
                r = await c.get(path, headers=remote)
                assert r.status_code == 403 and "loopback" in r.json()["error"], path
            # Anything that passed a proxy is not local, whatever it claims.
            assert (await c.get("/", headers={"X-Forwarded-For": "::1"})).status_code == 403
            # DNS rebinding: a foreign name for 127.0.0.1 is refused.
            rebound = await c.get("/", headers={"Host": "evil.example"})
            assert rebound.status_code == 403
            # A page on another site posting a form here is refused; our own origin is not.
            foreign = {"Origin": "http://evil.example"}
            stop = await c.post(f"/{sessiontrack.new_session_id()}/stop", headers=foreign)
            assert stop.status_code == 403
            own = await c.get("/", headers={"Origin": url})
            assert own.status_code == 200
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with socket_client(url, headers={"X-Forwarded-For": "203.0.113.7"}):
                pass
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with socket_client(url, headers={"Origin": "http://evil.example"}):
                pass
        async with socket_client(url) as probe:
            assert await probe.call("sessions:subscribe") == {"success": True}


# --- issue 10: a socket's principal is fixed at its connect ----------------------------

FORGED_HANDSHAKE = {
    "asgi.scope": {"type": "http", "headers": [], "client": ["127.0.0.1", 1], "path": "/"}
}


async def test_a_client_cannot_send_connect_to_change_its_principal(
    live_url: str, web_app: Any, world: dict[str, str]
) -> None:
    """A raw EVENT packet named ``connect``, with another token and a forged ASGI scope,
    would run ``on_connect`` again (python-socketio maps event names to ``on_<name>``)."""
    gateway = gateway_of(web_app)
    async with socket_client(live_url, auth={"token": "a-token"}) as tenant:
        # AsyncClient puts whatever it is given on the wire: ["connect", {scope}, {auth}].
        answer = await tenant.call("connect", (FORGED_HANDSHAKE, {"token": "admin-token"}))
        assert answer == {"success": False, "error": "'connect' is a reserved event name"}
        refused = await tenant.call("session:join", {"sessionId": world["b"]})
        assert refused == {"sessionId": world["b"], "success": False, "error": "session not found"}
        assert gateway.online_users() == ["a-user"]
        own = await tenant.call("session:join", {"sessionId": world["a"]})
        assert own == {"sessionId": world["a"], "success": True}


@pytest.mark.parametrize(
    "event", ["disconnect", "connect_error", "__disconnect_final", "__init__", "emit", "close"]
)
async def test_reserved_and_unknown_event_names_are_refused(
    live_url: str, web_app: Any, world: dict[str, str], event: str
) -> None:
    """``disconnect`` sent by a client would drop its bookkeeping while it stays in its
    rooms; no other name may reach a method of the namespace either."""
    gateway = gateway_of(web_app)
    async with socket_client(live_url, auth={"token": "a-token"}) as tenant:
        assert await tenant.call("session:join", {"sessionId": world["a"]}) == {
            "sessionId": world["a"],
            "success": True,
        }
        answer = await tenant.call(event, "client disconnect")
        assert answer["success"] is False and repr(event) in answer["error"]
        assert gateway.online_users() == ["a-user"]
        assert gateway.session_subscriber_count(world["a"]) == 1
        assert await tenant.call("sessions:subscribe") == {"success": True}
    await wait_until(lambda: gateway.online_users() == [])


class RawSocket:
    """Engine.IO v4 over a WebSocket, frames as text: what a hand-written attacker sends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: str) -> None:
        await self.ws.send_str(frame)

    async def receive(self) -> str:
        with anyio.fail_after(10):
            while True:
                frame = await self.ws.receive_str()
                if frame == "2":  # Engine.IO ping
                    await self.ws.send_str("3")
                    continue
                return frame


@asynccontextmanager
async def raw_socket(url: str) -> AsyncIterator[RawSocket]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        raw = RawSocket(ws)
        assert (await raw.receive()).startswith("0{")  # Engine.IO open
        yield raw


async def test_a_raw_connect_frame_over_a_websocket_is_refused(
    live_url: str, web_app: Any, world: dict[str, str]
) -> None:
    """The same forgery written as Engine.IO/Socket.IO frames by hand."""
    gateway = gateway_of(web_app)
    ws_url = live_url.replace("http", "ws") + f"{PREFIX}/socket.io/?EIO=4&transport=websocket"
    async with raw_socket(ws_url) as ws:
        await ws.send('40/sessions,{"token":"a-token"}')
        assert (await ws.receive()).startswith("40/sessions,")
        forged = json.dumps(["connect", FORGED_HANDSHAKE, {"token": "admin-token"}])
        await ws.send(f"42/sessions,1{forged}")
        assert json.loads((await ws.receive()).removeprefix("43/sessions,1")) == [
            {"success": False, "error": "'connect' is a reserved event name"}
        ]
        join = json.dumps(["session:join", {"sessionId": world["b"]}])
        await ws.send(f"42/sessions,2{join}")
        answers = [await ws.receive(), await ws.receive()]
        ack = next(a for a in answers if a.startswith("43/sessions,2"))
        assert json.loads(ack.removeprefix("43/sessions,2"))[0]["success"] is False
        assert gateway.online_users() == ["a-user"]
        for odd in ([["session:join"], {"sessionId": world["b"]}], [7], [None]):
            await ws.send(f"42/sessions,3{json.dumps(odd)}")
            ack = json.loads((await ws.receive()).removeprefix("43/sessions,3"))
            assert ack[0]["success"] is False, odd
        assert gateway.online_users() == ["a-user"]


# --- issue 10: what counts as local -----------------------------------------------------

LOCAL_NAMES = ["localhost", "LocalHost", "app.localhost", "a-1.b.localhost", "127.0.0.1"]
LOCAL_NAMES += ["127.255.0.9", "[::1]", "[0:0:0:0:0:0:0:1]"]


def local_forms() -> st.SearchStrategy[str]:
    port = st.integers(1, 65535).map(lambda p: f":{p}")
    return st.builds(
        lambda name, p: name + p, st.sampled_from(LOCAL_NAMES), st.one_of(st.just(""), port)
    )


def reference_is_local(value: str) -> bool:
    """An independent statement of the exact local forms, for the property below."""
    name, port = value, None
    if re.fullmatch(r"(\[[^\]]*\]|[^:]*):[0-9]{1,5}", value, re.ASCII):
        name, port = value.rsplit(":", 1)
    if port is not None and not 1 <= int(port) <= 65535:
        return False
    name = name.lower()
    if name.startswith("[") and name.endswith("]"):
        try:
            return (
                name.isascii()
                and "%" not in name
                and ipaddress.IPv6Address(name[1:-1]) == (ipaddress.IPv6Address("::1"))
            )
        except ValueError:
            return False
    if re.fullmatch(r"127(\.(0|[1-9][0-9]{0,2})){3}", name, re.ASCII):
        return all(int(part) < 256 for part in name.split("."))
    label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    return re.fullmatch(rf"({label}\.)*localhost", name, re.ASCII) is not None


NEAR_MISSES = st.text(alphabet="localhst127.0:[]f9%@/ -LX", max_size=24)


@given(st.one_of(st.text(), NEAR_MISSES, local_forms()))
@settings(max_examples=1000)
def test_the_host_parser_never_crashes_and_is_local_only_for_the_exact_forms(
    value: str,
) -> None:
    assert is_local_host(value) == reference_is_local(value)
    assert isinstance(is_local_origin(value), bool)


@given(local_forms())
def test_every_local_form_is_local(value: str) -> None:
    assert is_local_host(value)
    assert is_local_origin(f"http://{value}") and is_local_origin(f"HTTPS://{value}")


@given(
    local_forms(),
    st.sampled_from(["@evil.com", "/x", " ", "\t", "\n", ":", ".", "%lo", "#", "?", "\\", "\x00"]),
    st.booleans(),
)
def test_anything_around_a_local_form_is_not_local(value: str, junk: str, before: bool) -> None:
    forged = junk + value if before else value + junk
    assert not is_local_host(forged)
    assert not is_local_origin(f"http://{forged}")


@pytest.mark.parametrize(
    "host",
    [
        "localhost:80@evil.com",
        "evil.com@localhost",
        "localhost:0",
        "localhost:65536",
        "localhost:99999",
        "localhost:",
        "localhost:80:80",
        "localhost:+80",
        "localhost:٨٠",  # Arabic-Indic digits
        "localhost.",
        "localhost.evil.com",
        "evil-localhost",
        "127.1",
        "127.0.0.01",
        "127.0.0.1.nip.io",
        "[::1%lo]",
        "[::ffff:127.0.0.1]",
        "::1",
        "[::1",
        "localhost/",
        "local host",
        "",
    ],
)
def test_hosts_that_are_not_local(host: str) -> None:
    assert not is_local_host(host)


@pytest.mark.parametrize("origin", ["null", "file://", "ws://localhost", "http://localhost/x"])
def test_origins_that_are_not_local(origin: str) -> None:
    assert not is_local_origin(origin)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_loopback_refuses_forged_hosts_and_every_forwarding_header(
    tracker: sessiontrack.Tracker,
) -> None:
    """On a real uvicorn: the Host header is the client's own text, sent as is."""
    app = create_app(tracker)
    headers = sorted(FORWARDING_HEADERS | {"x-forwarded-host", "x-forwarded-proto"})
    headers += ["x-forwarded-port", "X-Forwarded-Server", "X-Forwarded-Prefix"]
    async with serve(host_app(app)) as url, httpx.AsyncClient(base_url=url + PREFIX) as c:
        assert (await c.get("/")).status_code == 200
        for name in headers:
            r = await c.get("/", headers={name: "203.0.113.7"})
            assert r.status_code == 403, name
        for host in ["localhost:80@evil.com", "localhost:8000/x", "localhost:0", "[::1%lo]"]:
            r = await c.get("/", headers={"Host": host})
            assert r.status_code == 403, host
        assert (await c.get("/", headers={"Host": "LOCALHOST:8000"})).status_code == 200
        origin = await c.get("/", headers={"Origin": "http://localhost:80@evil.com"})
        assert origin.status_code == 403


# --- issue 10: request bodies are limited before they are read -------------------------


def stop_head(url: str, session_id: str, *lines: str) -> str:
    return "\n".join(
        [
            f"POST {PREFIX}/{session_id}/stop HTTP/1.1",
            f"Host: {url.removeprefix('http://')}",
            "Authorization: Bearer admin-token",
            *lines,
            "",
        ]
    )


async def still_running(api: httpx.AsyncClient, session_id: str) -> bool:
    detail = (await api.get(f"/{session_id}", headers=bearer("admin-token"))).json()
    return bool(detail["status"] == "waiting_input")


async def test_a_declared_body_over_the_limit_is_refused_unread(
    live_url: str, api: httpx.AsyncClient, world: dict[str, str]
) -> None:
    sid = world["a"]
    # 200 MB announced, not one byte sent: only an answer given without reading can come.
    answer = await raw_request(live_url, stop_head(live_url, sid, "Content-Length: 200000000"))
    assert answer.status == 413 and answer.closed
    assert json.loads(answer.body)["error"] == "the request body is larger than 65536 bytes"
    for bad in ("Content-Length: 1e3", "Content-Length: -1", "Content-Length: ٣"):
        assert (await raw_request(live_url, stop_head(live_url, sid, bad))).status == 400
    assert await still_running(api, sid)


async def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    live_url: str, api: httpx.AsyncClient, world: dict[str, str]
) -> None:
    sid = world["a"]
    head = stop_head(live_url, sid, "Transfer-Encoding: chunked")
    # One byte over the limit in chunks and no final chunk: the server must stop reading
    # and answer. (Not more: bytes the server never reads would turn its close into a
    # reset that can swallow the answer.)
    answer = await raw_request(live_url, head, [chunked(b"x" * 8192)] * 8 + [chunked(b"x")])
    assert answer.status == 413 and answer.closed
    assert await still_running(api, sid)
    # Within the limit, chunked or not, the stop goes through (the body is ignored).
    small = await raw_request(live_url, head, [chunked(b"{}"), b"0\r\n\r\n"])
    assert small.status == 200 and json.loads(small.body)["success"] is True
    assert not await still_running(api, sid)


async def test_socket_polling_posts_are_limited_too(live_url: str) -> None:
    head = "\n".join(
        [
            f"POST {PREFIX}/socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1",
            f"Host: {live_url.removeprefix('http://')}",
            "Transfer-Encoding: chunked",
            "",
        ]
    )
    answer = await raw_request(live_url, head, [chunked(b"4" * 8192)] * 8 + [chunked(b"4")])
    assert answer.status == 413


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_max_body_is_an_option_of_create_app(tracker: sessiontrack.Tracker) -> None:
    app = create_app(tracker, authenticate=check, max_body=2048)
    async with serve(host_app(app)) as url:
        sid = sessiontrack.new_session_id()
        head = stop_head(url, sid, "Content-Length: 2049")
        assert (await raw_request(url, head)).status == 413
        head = stop_head(url, sid, "Content-Length: 2048")
        assert (await raw_request(url, head, [b"x" * 2048])).status == 404  # read, then routed
    for bad in (-1, 10, 1.5, True, "64k"):
        with pytest.raises(ValueError, match="max_body"):
            create_app(tracker, max_body=bad)  # type: ignore[arg-type]


# --- issue 10: one set of credentials per request ---------------------------------------


async def test_a_request_presents_one_token_or_is_401(
    api: httpx.AsyncClient, live_url: str, world: dict[str, str]
) -> None:
    """Two tokens are refused rather than one chosen: which one counts would depend on who
    reads the request (a proxy, this app, the authenticator)."""
    twice = [("Authorization", "Bearer a-token"), ("Authorization", "Bearer admin-token")]
    for path in ("/", "/events", f"/{world['b']}"):
        r = await api.get(path, headers=twice)
        assert r.status_code == 401, path
        assert r.json()["error"] == "Authorization: must be sent at most once"
    r = await api.get("/events?access_token=a-token&access_token=admin-token")
    assert (r.status_code, r.json()["error"]) == (401, "access_token: must be given at most once")
    r = await api.get("/events", params={"access_token": "a-token"}, headers=bearer("admin-token"))
    assert r.status_code == 401 and r.json()["error"].startswith("access_token: differs")
    same = {"access_token": "a-token"}
    async with sse_stream(api, params=same, headers=bearer("a-token")):
        pass


async def connect_error(url: str, **kwargs: Any) -> Any:
    """The ``connect_error`` payload a refused connect gets."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append, namespace=kwargs.pop("namespace", "/sessions"))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            url,
            socketio_path=f"{PREFIX}/socket.io",
            transports=["websocket"],
            wait_timeout=10,
            **kwargs,
        )
    await client.disconnect()
    return errors[0] if errors else None


@pytest.mark.parametrize(
    ("auth", "headers", "field", "status"),
    [
        (["a-token"], {}, "auth", 400),
        ("a-token", {}, "auth", 400),
        ({"token": 7}, bearer("admin-token"), "auth.token", 400),
        ({"token": ["admin-token"]}, {}, "auth.token", 400),
        ({"token": "a-token"}, bearer("admin-token"), "auth.token", 401),
    ],
)
async def test_a_socket_auth_payload_of_another_shape_is_refused(
    live_url: str, auth: Any, headers: dict[str, str], field: str, status: int
) -> None:
    error = await connect_error(live_url, auth=auth, headers=headers, namespaces=["/sessions"])
    assert error["data"] == {"status": status}, error
    assert error["message"].startswith(f"{field}:"), error


async def test_only_the_sessions_namespace_accepts_sockets(live_url: str) -> None:
    """The default namespace "/" would keep a socket connected without authentication."""
    assert await connect_error(live_url, namespaces=["/"], namespace="/") is not None
    refused = await connect_error(live_url, auth={"token": "wrong"}, namespaces=["/sessions"])
    assert refused == {"message": "missing or invalid credentials", "data": {"status": 401}}
    async with socket_client(live_url, auth={"token": "a-token"}, headers=bearer("a-token")):
        pass
