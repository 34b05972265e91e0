"""Erasure on request (issue 14, must-show 3): ``tracker.erase``, ``sessiontrack erase``,
``POST /erase``, the audit table, on both backends.

The proof: customers A and B report known secrets through every hook (contact, variables,
metadata, node errors, messages with payloads and channel ids, status reasons, LLM and
tool calls, a completion reason that lands in the analytics rollups). After A's erasure,
none of A's secrets is in the raw database (the SQLite file, WAL and shared memory as
bytes; every PostgreSQL row as text and every relation file of the prefix: tables, TOAST
and indexes), in the REST answers, in the events a subscriber reads from the log, or in
the logs; B's secrets (the canary: they must be found, or the search is blind) are all
there, B is still findable by search, and the analytics equal those of a database that
only ever saw B. The PostgreSQL WAL is not searched: it keeps A until recycled
(docs/privacy.md says so).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import random
import string
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from conftest import POSTGRES_URL, require_postgres
from privacy_helpers import postgres_dump, sqlite_files
from sqlalchemy.ext.asyncio import create_async_engine
from web_helpers.fixtures import api, app_options, live_url, web_app

import sessiontrack
from sessiontrack import cli
from sessiontrack.errors import ErasureNotAllowed, InvalidParameter

__all__ = ["api", "app_options", "live_url", "web_app"]
pytestmark = pytest.mark.anyio

_RUN = "".join(random.SystemRandom().choice(string.ascii_lowercase) for _ in range(10))
_rng = random.Random(_RUN)
ERASER = sessiontrack.Principal(id="dpo", can_erase=True)
VIEWER = sessiontrack.Principal(id="viewer")
TENANT = sessiontrack.Principal(id="tenant", chatbot_ids=frozenset({"otherbot"}), can_erase=True)
TOKENS = {"eraser": ERASER, "viewer": VIEWER, "tenant": TENANT}
BOT = "ebot"
FLOW = {
    "nodes": [
        {"id": "ask", "type": "input", "position": {"x": 0, "y": 0}, "data": {"label": "Ask"}},
        {"id": "done", "type": "output", "position": {"x": 0, "y": 90}, "data": {"label": "Done"}},
    ],
    "edges": [{"id": "e1", "source": "ask", "target": "done"}],
}
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


@dataclass(frozen=True)
class Customer:
    phone: str
    name: str
    word: str  # in every text field; letters only, unique to this run

    @property
    def secrets(self) -> dict[str, str]:
        return {
            "phone": self.phone,
            "name": self.name,
            "name folded": self.name.casefold(),
            "word": self.word,
        }


def customer(tag: str) -> Customer:
    digits = "".join(_rng.choice(string.digits) for _ in range(8))
    return Customer(f"+4915{digits}", f"Quirinus {tag}{_RUN}", f"zx{tag}{_RUN}qv")


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new SQLite file, or a PostgreSQL database of the test's own: VACUUM keeps the
    dead rows any open transaction of the same database may still see, and other
    processes' transactions in the shared one (other test runs) must not decide whether
    an erasure could scrub."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
        return
    await require_postgres()
    name = f"st_erase_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    return {"commit_delay": 0, "audit_reads": True, "sweep_interval": None, "idle_timeout": None}


@pytest.fixture
def authenticate() -> Any:
    async def check(request: Any) -> sessiontrack.Principal | None:
        return TOKENS.get(request.token or "")

    return check


def _s(offset: float, start: datetime) -> datetime:
    return start + timedelta(seconds=offset)


def report(hook: Any, c: Customer, start: datetime) -> list[str]:
    """Two sessions of ``c`` (one completed, one waiting for the customer), every hook
    carrying ``c``'s secrets; returns their ids."""
    hook.sessiontrack_flow_registered(chatbot_id=BOT, name="Erasure bot", flow=FLOW)
    done, waiting = sessiontrack.new_session_id(), sessiontrack.new_session_id()
    secret = f"{c.word} {c.phone} {c.name}"
    for n, sid in enumerate((done, waiting)):
        t0 = start + timedelta(minutes=20 * n)
        hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=BOT,
            conversation_id=c.phone,  # a channel keyed by phone number
            contact={"phone": c.phone, "name": c.name},
            variables={"note": secret, "city": c.word},
            metadata={"source": secret},
            at=t0,
        )
        hook.sessiontrack_node_executed(session_id=sid, node_id="ask", at=_s(1, t0), error=secret)
        hook.sessiontrack_message(
            session_id=sid,
            direction="outbound",
            text=f"Hello {c.name}, your code {c.word}",
            payload={"buttons": [secret]},
            node_id="ask",
            message_id=f"wamid.{c.word}.{n}",
            at=_s(2, t0),
        )
        hook.sessiontrack_status_changed(
            session_id=sid, status="waiting_input", node_id="ask", reason=secret, at=_s(3, t0)
        )
        hook.sessiontrack_message(
            session_id=sid,
            direction="inbound",
            text=f"my number is {c.phone} and my word {c.word}",
            node_id="ask",
            message_id=f"wamid.{c.word}.in{n}",
            at=_s(8, t0),
        )
    hook.sessiontrack_variables_changed(
        session_id=done, variables={"answer": secret}, at=_s(9, start)
    )
    hook.sessiontrack_llm_call(
        session_id=done,
        node_id="ask",
        model="m",
        input_tokens=30,
        output_tokens=7,
        cost=0.25,  # exact in binary: A's share subtracts without a rounding residue
        error=secret,
        at=_s(10, start),
    )
    hook.sessiontrack_tool_call(
        session_id=done,
        node_id="ask",
        name="lookup",
        arguments={"q": secret},
        result=[secret],
        duration_ms=12.5,
        at=_s(11, start),
    )
    hook.sessiontrack_node_executed(session_id=done, node_id="done", at=_s(12, start))
    hook.sessiontrack_session_completed(session_id=done, reason=f"bye {c.word}", at=_s(14, start))
    return [done, waiting]


def _absent(blob: bytes | str, c: Customer, where: str) -> None:
    data = blob if isinstance(blob, bytes) else blob.encode()
    found = [what for what, secret in c.secrets.items() if secret.encode() in data]
    assert not found, f"{where}: {found} of the erased customer found"


def _present(blob: bytes | str, c: Customer, where: str, stored: bool = False) -> None:
    """Every secret of ``c`` is in ``blob`` (the case-folded name only where ``stored``:
    the search key, never served)."""
    data = blob if isinstance(blob, bytes) else blob.encode()
    wanted = {k: v for k, v in c.secrets.items() if stored or k != "name folded"}
    missing = [what for what, secret in wanted.items() if secret.encode() not in data]
    assert not missing, f"{where}: {missing} of the kept customer missing: the search is blind"


async def _raw(backend: str, tmp_path: Path, database_url: str, prefix: str) -> dict[str, bytes]:
    if backend == "sqlite":
        return {"the SQLite file, WAL and shared memory": sqlite_files(tmp_path)}
    rows, files = await postgres_dump(database_url, prefix)
    return {"PostgreSQL rows": rows, "PostgreSQL table, index and TOAST files": files}


async def _rest(api: httpx.AsyncClient, a: Customer, b: Customer, sids: list[str]) -> str:
    auth = {"Authorization": "Bearer eraser"}
    paths = [
        "/",
        "/active",
        "/stats",
        f"/chatbot/{BOT}",
        f"/?search={a.name.split()[1]}",
        f"/?search={b.name.split()[1]}",
        f"/?q={a.word}",
        f"/?q={b.word}",
        f"/search/messages?q={a.word}",
        f"/search/messages?q={b.word}",
        f"/analytics/summary?chatbotId={BOT}",
        f"/analytics/nodes?chatbotId={BOT}",
        f"/analytics/paths?chatbotId={BOT}",
        "/audit",
        f"/export?format=jsonl&chatbotId={BOT}",
    ]
    paths += [f"/{s}{tail}" for s in sids for tail in ("", "/messages")]
    out = []
    for path in paths:
        r = await api.get(path, headers=auth)
        assert r.status_code in (200, 404), (path, r.text)
        out.append(r.text)
    return "\n".join(out)


async def _log_events(tracker: sessiontrack.Tracker) -> str:
    """Every event a subscriber resuming from the start of the log receives."""
    last = await tracker.store.last_seq()
    seen = []
    async with tracker.subscribe(after=0) as sub:
        with anyio.fail_after(10):
            async for event in sub:
                seen.append(repr(event))
                if event.seq >= last:
                    break
    return "\n".join(seen)


@pytest.fixture
async def oracle(backend: str, tmp_path: Path, prefix: str) -> AsyncIterator[sessiontrack.Tracker]:
    """A database that only ever sees B (its tables are dropped with the test's prefix)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'oracle.db'}" if backend == "sqlite" else POSTGRES_URL
    options: dict[str, Any] = {"prefix": prefix + "o_", "migrate": True, "commit_delay": 0}
    async with sessiontrack.Tracker(url, **options) as tracker:
        yield tracker


async def _analytics(tracker: sessiontrack.Tracker) -> list[Any]:
    a = tracker.analytics
    return [await a.summary(BOT), await a.nodes(BOT), await a.paths(BOT)]


async def test_an_erased_customer_is_nowhere_and_the_other_intact(
    backend: str,
    database_url: str,
    prefix: str,
    tmp_path: Path,
    tracker: sessiontrack.Tracker,
    api: httpx.AsyncClient,
    oracle: sessiontrack.Tracker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = customer("a"), customer("b")
    hook = tracker.plugin_manager.hook
    a_ids = report(hook, a, BASE)
    b_ids = report(hook, b, BASE + timedelta(minutes=5))
    await tracker.flush()
    before = await _raw(backend, tmp_path, database_url, prefix)
    for where, blob in before.items():
        _present(blob, a, where, stored=True)  # the search would see A if A were there

    result = await tracker.erase(phone=a.phone, principal="dpo@example.org")

    assert dataclasses.asdict(result) == {
        "sessions": 2,
        "events": 15,
        "messages": 4,
        # nodes ask (and done) and variables note, city (and answer) of each session
        "tags": 5 + 3,
        "analytics_traces": 2,
        "audit_id": result.audit_id,
        "scrubbed": True,
    }
    for where, blob in (await _raw(backend, tmp_path, database_url, prefix)).items():
        _absent(blob, a, where)
        _present(blob, b, where, stored=True)
    rest = await _rest(api, a, b, [*a_ids, *b_ids])
    _absent(rest, a, "REST answers")
    _present(rest, b, "REST answers")
    for sid in a_ids:
        assert (
            await api.get(f"/{sid}", headers={"Authorization": "Bearer eraser"})
        ).status_code == 404
    live = await _log_events(tracker)
    _absent(live, a, "events read from the log")
    _present(live, b, "events read from the log")

    # B is findable and whole
    found = await tracker.sessions.list(search=b.name.split()[1])
    assert sorted(s.id for s in found.data) == sorted(b_ids)
    hits = await tracker.sessions.search_messages(b.word)
    assert {h.session_id for h in hits.data} == set(b_ids)
    assert not (await tracker.sessions.search_messages(a.word)).data
    assert not (await tracker.sessions.list(search=a.phone)).data
    stats = await tracker.sessions.stats()
    assert (stats.total, stats.active) == (2, 1)

    # the analytics are those of a database that only ever saw B
    report(oracle.plugin_manager.hook, b, BASE + timedelta(minutes=5))
    await oracle.flush()
    assert await _analytics(tracker) == await _analytics(oracle)

    # the library's records at every level, the others' from INFO up (aiosqlite's DEBUG
    # records show every statement's parameters: a driver's debugging aid, off by
    # default), but the test's own HTTP client's (it asks for A's word, to find nothing)
    records = [
        r
        for r in caplog.records
        if r.name.startswith("sessiontrack") or (r.levelno >= logging.INFO and r.name != "httpx")
    ]
    assert any(r.name.startswith("sessiontrack.store") for r in records), "blind: no records"
    _absent("\n".join(r.getMessage() for r in records), a, "logs")
    _absent(repr([r.args for r in records]), a, "log arguments")


def _figures(result: Any) -> dict[str, Any]:
    out = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else dict(result)
    out.pop("audit_id")
    return out


async def test_the_api_the_cli_and_post_erase_count_alike(
    backend: str,
    database_url: str,
    prefix: str,
    tracker: sessiontrack.Tracker,
    api: httpx.AsyncClient,
) -> None:
    people = [customer(f"c{n}") for n in range(3)]
    for n, c in enumerate(people):
        report(tracker.plugin_manager.hook, c, BASE + timedelta(minutes=n))
    await tracker.flush()

    by_api = await tracker.erase(phone=people[0].phone, principal="dpo", scrub=False)
    argv = ["erase", "--database-url", database_url, "--prefix", prefix, "--quiet"]
    argv += ["--phone", people[1].phone, "--principal", "dpo", "--no-scrub"]
    code = await anyio.to_thread.run_sync(cli.main, argv)
    assert code == 0
    cli_record = (await tracker.audit(phone=people[1].phone))[0]
    r = await api.post(
        "/erase", json={"phone": people[2].phone}, headers={"Authorization": "Bearer eraser"}
    )
    assert r.status_code == 200, r.text
    by_rest = r.json()

    expected = {
        "sessions": 2,
        "events": 15,
        "messages": 4,
        "tags": 8,
        "analytics_traces": 2,
        "scrubbed": False,
    }
    assert _figures(by_api) == expected
    assert cli_record.counts == {k: v for k, v in expected.items() if k != "scrubbed"}
    assert (cli_record.principal, cli_record.key_kind) == ("dpo", "phone")
    assert by_rest.pop("scrubbed") is True  # POST /erase scrubs
    assert {
        "sessions": by_rest["sessions"],
        "events": by_rest["events"],
        "messages": by_rest["messages"],
        "tags": by_rest["tags"],
        "analyticsTraces": by_rest["analyticsTraces"],
    } == {
        "sessions": 2,
        "events": 15,
        "messages": 4,
        "tags": 8,
        "analyticsTraces": 2,
    }
    assert (await tracker.sessions.list()).total == 0
    rest_record = (await tracker.audit(phone=people[2].phone))[0]
    assert (rest_record.id, rest_record.principal) == (by_rest["auditId"], "dpo")


async def test_who_may_erase_and_bad_bodies(
    tracker: sessiontrack.Tracker, api: httpx.AsyncClient
) -> None:
    c = customer("p")
    sids = report(tracker.plugin_manager.hook, c, BASE)
    await tracker.flush()
    eraser, viewer = {"Authorization": "Bearer eraser"}, {"Authorization": "Bearer viewer"}

    r = await api.post("/erase", json={"phone": c.phone}, headers=viewer)
    assert r.status_code == 403, r.text
    assert c.phone not in r.text
    assert (await api.get("/audit", headers=viewer)).status_code == 403
    bad = [
        ({}, "body"),
        ({"phone": c.phone, "sessionId": sids[0]}, "body"),
        ({"phone": 4915}, "phone"),
        ({"phone": ""}, "phone"),
        ({"phone": None}, "phone"),
        ({"sessionId": "not-a-uuid"}, "sessionId"),
        ({"conversationId": "x" * 201}, "conversationId"),
        ({"phone": c.phone, "who": "me"}, "who"),
        ([c.phone], "body"),
    ]
    for body, field in bad:
        r = await api.post("/erase", json=body, headers=eraser)
        assert r.status_code == 400, (body, r.text)
        assert field in [d["field"] for d in r.json()["detail"]], (body, r.json())
        assert c.phone not in r.text, "an error must not repeat the phone number"
    r = await api.post("/erase", content=b"phone=1", headers=eraser)
    assert r.status_code == 415
    r = await api.get("/audit?limit=0", headers=eraser)
    assert r.status_code == 400 and r.json()["detail"][0]["field"] == "limit"

    # a principal limited to other chatbots erases nothing of this one
    r = await api.post(
        "/erase", json={"phone": c.phone}, headers={"Authorization": "Bearer tenant"}
    )
    assert r.status_code == 200 and r.json()["sessions"] == 0
    assert (await tracker.sessions.list()).total == 2
    with pytest.raises(ErasureNotAllowed):
        await tracker.erase(phone=c.phone, principal=VIEWER)
    with pytest.raises(InvalidParameter) as exc:
        await tracker.erase(phone=c.phone, session_id=sids[0])
    assert exc.value.field == "phone" and c.phone not in str(exc.value)
    with pytest.raises(InvalidParameter):
        await tracker.erase()
    # by session id: that session only
    assert (await tracker.erase(session_id=sids[1].upper(), scrub=False)).sessions == 1
    assert [s.id for s in (await tracker.sessions.list()).data] == [sids[0]]


async def test_the_audit_keeps_a_keyed_hash_never_the_key(
    backend: str,
    database_url: str,
    prefix: str,
    tmp_path: Path,
    tracker: sessiontrack.Tracker,
    api: httpx.AsyncClient,
) -> None:
    c = customer("h")
    sids = report(tracker.plugin_manager.hook, c, BASE)
    await tracker.flush()
    auth = {"Authorization": "Bearer eraser"}
    for tail in ("", "/messages", "/fixture"):
        assert (await api.get(f"/{sids[0]}{tail}", headers=auth)).status_code == 200
    assert (await api.get(f"/export?format=csv&chatbotId={BOT}", headers=auth)).status_code == 200

    result = await tracker.erase(conversation_id=c.phone, principal=ERASER, scrub=False)
    assert result.sessions == 2

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            key = await conn.scalar(sa.text(f"SELECT key FROM {prefix}audit_key WHERE id = 1"))
            rows = (await conn.execute(sa.text(f"SELECT * FROM {prefix}audit ORDER BY id"))).all()
    finally:
        await engine.dispose()
    assert key is not None and len(bytes(key)) == 32
    erasures = [r for r in rows if r.action == "erase"]
    assert len(erasures) == 1
    expected = hmac.new(bytes(key), f"conversation_id\x00{c.phone}".encode(), hashlib.sha256)
    assert erasures[0].key_hash == expected.hexdigest()
    assert erasures[0].key_hash != hashlib.sha256(c.phone.encode()).hexdigest()
    assert erasures[0].principal == "dpo"
    _absent(repr(rows), c, "the audit table")
    reads = sorted((r.what, str(r.session_id)) for r in rows if r.action == "read")
    assert reads == sorted(
        [("detail", sids[0]), ("messages", sids[0]), ("fixture", sids[0])]
        + [("export", s) for s in sids]
    )

    # found again by the key, by the API and by GET /audit
    found = await tracker.audit(conversation_id=c.phone)
    assert [r.id for r in found] == [result.audit_id]
    assert await tracker.audit(phone=c.phone) == []  # another kind of key: another hash
    assert {r.session_id for r in await tracker.audit(session_id=sids[0])} == {sids[0]}
    listed = (await api.get("/audit?action=erase", headers=auth)).json()
    assert [(r["id"], r["keyKind"], r["counts"]["sessions"]) for r in listed] == [
        (result.audit_id, "conversation_id", 2)
    ]
    page = (await api.get("/audit?limit=2", headers=auth)).json()
    older = (await api.get(f"/audit?limit=100&before={page[-1]['id']}", headers=auth)).json()
    assert len(page) + len(older) == len(rows)


async def test_an_audit_key_of_the_host(database_url: str, prefix: str) -> None:
    secret = b"k" * 32
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "audit_key": secret}
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        result = await tracker.erase(phone="+100", principal="ops", scrub=False)
        (record,) = await tracker.audit(phone="+100")
    assert record.id == result.audit_id and result.sessions == 0
    assert record.key_hash == hmac.new(secret, b"phone\x00+100", hashlib.sha256).hexdigest()
    with pytest.raises(ValueError, match="16 bytes"):
        sessiontrack.Tracker(database_url, audit_key=b"short")


def test_the_sync_tracker_erases(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sync.db'}"
    c = customer("s")
    with sessiontrack.SyncTracker(url, commit_delay=0) as tracker:
        report(tracker.hook, c, BASE)
        tracker.flush()
        result = tracker.erase(phone=c.phone, principal="ops")
        assert (result.sessions, result.events, result.scrubbed) == (2, 15, True)
        assert [r.id for r in tracker.audit(phone=c.phone)] == [result.audit_id]
    _absent(sqlite_files(tmp_path, "sync.db"), c, "the SQLite file")
