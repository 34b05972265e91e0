"""The proof of redaction at write: known secrets reported through every hook (and a stop
reason), on both backends, and afterwards not one of them anywhere the tracker put data.

Searched as bytes: the SQLite file with its WAL (while the tracker runs, and after it
checkpointed on close); on PostgreSQL every table of the prefix (each row as text), the
files of every relation of the prefix (tables, indexes, TOAST) after a CHECKPOINT, and
the WAL written meanwhile. Searched as text: every REST answer (real uvicorn), the live
events (SSE), what ``sessiontrack_events_committed`` received and every log record.
A canary reported in clear next to the secrets must be found in each of these places,
so a search that looks in the wrong place fails.
"""

from __future__ import annotations

import json
import logging
import random
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest
import sqlalchemy as sa
from privacy_helpers import postgres_dump, postgres_wal, sqlite_files
from sqlalchemy.ext.asyncio import create_async_engine
from web_helpers.fixtures import api, app_options, authenticate, live_url, web_app
from web_helpers.sse_client import sse_stream

import sessiontrack
from sessiontrack import redact

__all__ = ["api", "app_options", "authenticate", "live_url", "web_app"]

pytestmark = pytest.mark.anyio
# Secrets unique to this run (the PostgreSQL WAL is shared), of letters only: digits in
# the tag would make it look like a phone number.
_RUN = "".join(random.SystemRandom().choice(string.ascii_lowercase) for _ in range(10))
_rng = random.Random(_RUN)


def _digits(n: int) -> str:
    return "".join(_rng.choice(string.digits) for _ in range(n))


def _card() -> str:
    body = "4" + _digits(14)
    check = next(c for c in string.digits if redact.luhn_valid(body + c))
    number = body + check
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def _iban() -> str:
    bban = _digits(18)
    check = 98 - int(bban + "131400") % 97  # "DE" is 13 14
    compact = f"DE{check:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


PHONE = f"+49 151 {_digits(4)} {_digits(4)}"
EMAIL = f"jane.roe.{_RUN}@example.org"
CARD = _card()
IBAN = _iban()
NAME = f"Zebulon Quixote{_RUN}"
PASSWORD = f"pw-{_RUN}-Xy"  # no pattern finds it: only redact.variables("password") does
CUSTOM = f"TICKET-{_RUN}"  # the custom callable's secret
CANARY = f"canary-{_RUN}"  # reported in clear: must be found everywhere
SECRETS = {
    "phone": PHONE,
    "phone digits": PHONE.replace(" ", ""),
    "phone national": PHONE.replace(" ", "")[3:],
    "email": EMAIL,
    "card": CARD,
    "card digits": CARD.replace(" ", ""),
    "iban": IBAN,
    "iban compact": IBAN.replace(" ", ""),
    "name": NAME,
    "name folded": NAME.casefold(),
    "password": PASSWORD,
    "custom": CUSTOM,
}
ALL_OF_THEM = f"{CANARY} {PHONE}, {EMAIL}, {CARD}, {IBAN}, {NAME}, {CUSTOM}"  # not PASSWORD


def _custom(text: str) -> str:
    return text.replace(CUSTOM, "[ticket]").replace(NAME, "[name]")


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    return {
        "redact": [
            *redact.ALL,
            redact.variables("password"),
            redact.contact("name"),
            _custom,
        ],
        "commit_delay": 0,
    }


class Committed:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @sessiontrack.hookimpl
    def sessiontrack_events_committed(self, events: Any) -> None:
        self.seen.extend(repr(e) + json.dumps(e.to_wire()) for e in events)


def _report_everything(hook: Any, sid: str, sid2: str) -> None:
    flow = {"nodes": [{"id": "ask", "type": "input", "position": {"x": 0, "y": 0}}], "edges": []}
    hook.sessiontrack_flow_registered(chatbot_id="rbot", name="Redaction bot", flow=flow)
    for s in (sid, sid2):
        hook.sessiontrack_session_started(
            session_id=s,
            chatbot_id="rbot",
            conversation_id=f"conv-{s[:8]}",
            contact={"phone": PHONE, "name": NAME},
            variables={
                "note": ALL_OF_THEM,
                "password": PASSWORD,
                "nested": {"password": {"old": PASSWORD}, "items": [EMAIL, IBAN, CARD]},
            },
            metadata={"source": ALL_OF_THEM},
        )
    hook.sessiontrack_node_executed(session_id=sid, node_id="ask", error=ALL_OF_THEM)
    for direction in ("inbound", "outbound"):
        hook.sessiontrack_message(
            session_id=sid,
            direction=direction,
            text=ALL_OF_THEM,
            payload={"buttons": [ALL_OF_THEM], "contact": {"tel": PHONE, "mail": EMAIL}},
            node_id="ask",
        )
    hook.sessiontrack_status_changed(
        session_id=sid, status="waiting_input", node_id="ask", reason=f"{PHONE} {EMAIL}"
    )
    hook.sessiontrack_variables_changed(
        session_id=sid, variables={"password": PASSWORD, "card": CARD, "text": ALL_OF_THEM}
    )
    hook.sessiontrack_edge_observed(chatbot_id="rbot", source="ask", target="ask")
    hook.sessiontrack_llm_call(session_id=sid, model="m", node_id="ask", error=ALL_OF_THEM)
    hook.sessiontrack_tool_call(
        session_id=sid,
        name="lookup",
        arguments={"query": ALL_OF_THEM, "iban": IBAN},
        result=[ALL_OF_THEM, {"card": CARD}],
        error=ALL_OF_THEM,
    )
    hook.sessiontrack_session_completed(session_id=sid, reason=f"{CARD} {IBAN}")
    hook.sessiontrack_status_changed(session_id=sid2, status="stopped", reason=f"{NAME} {CUSTOM}")


def _found(haystack: bytes | str, where: str) -> None:
    """Assert no secret is in ``haystack`` and the canary is."""
    blob = haystack if isinstance(haystack, bytes) else haystack.encode()
    leaked = [what for what, secret in SECRETS.items() if secret.encode() in blob]
    assert not leaked, f"{where}: found {leaked}"
    assert CANARY.encode() in blob, f"{where}: the canary is missing, the search is blind"


def _clean(haystack: bytes | str, where: str) -> None:
    blob = haystack if isinstance(haystack, bytes) else haystack.encode()
    leaked = [what for what, secret in SECRETS.items() if secret.encode() in blob]
    assert not leaked, f"{where}: found {leaked}"


async def _rest(api: httpx.AsyncClient, *sids: str) -> str:
    paths = ["/", "/active", "/stats", "/chatbots", "/chatbot/rbot", "/?search=Zebulon"]
    for s in sids:
        paths += [f"/{s}", f"/{s}/messages"]
    answers = []
    for path in paths:
        response = await api.get(path)
        assert response.status_code == 200, (path, response.text)
        answers.append(response.text)
    return "\n".join(answers)


@pytest.fixture
async def wal_start(backend: str, database_url: str) -> AsyncIterator[str]:
    """On PostgreSQL, the WAL position at the start, kept from recycling until the test
    has read the WAL since: a temporary replication slot, gone with its connection."""
    if backend != "postgresql":
        yield ""
        return
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            sql = "SELECT lsn::text FROM pg_create_physical_replication_slot(:n, true, true)"
            lsn: str = (await conn.execute(sa.text(sql), {"n": f"redact_{_RUN}"})).scalar_one()
            yield lsn
    finally:
        await engine.dispose()


async def test_no_secret_is_stored_published_or_logged(
    backend: str,
    database_url: str,
    prefix: str,
    tmp_path: Path,
    tracker: sessiontrack.Tracker,
    pm: pluggy.PluginManager,
    api: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    wal_start: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    committed = Committed()
    tracker.plugin_manager.register(committed)
    sid, sid2, sid3 = (sessiontrack.new_session_id() for _ in range(3))
    async with sse_stream(api) as stream:
        _report_everything(pm.hook, sid, sid2)
        pm.hook.sessiontrack_session_started(session_id=sid3, chatbot_id="rbot")
        await tracker.stop(sid3, "ops", reason=f"{CANARY} {EMAIL} {PHONE} {CUSTOM}")
        await tracker.flush()
        live, ended = [], set()
        while ended != {sid, sid2, sid3}:
            live.append(event := await stream.next())
            if event.event == "session:completed":
                ended.add(event.data["sessionId"])
    live_text = json.dumps([(e.event, e.data) for e in live])
    _found(live_text, "live events (SSE)")
    _found("\n".join(committed.seen), "sessiontrack_events_committed")

    rest = await _rest(api, sid, sid2, sid3)
    _found(rest, "REST answers")
    for placeholder in ("[phone]", "[email]", "[card]", "[iban]", "[redacted]", "[ticket]"):
        assert placeholder in rest, placeholder

    if backend == "sqlite":
        _found(sqlite_files(tmp_path), "the SQLite file and its WAL")
        await tracker.aclose()  # checkpoints the WAL into the file
        _found(sqlite_files(tmp_path), "the SQLite file after close")
    else:
        wal = await postgres_wal(database_url, wal_start)  # before the CHECKPOINT of the dump
        rows, files = await postgres_dump(database_url, prefix)
        _found(rows, "PostgreSQL rows")
        _found(files, "PostgreSQL table, index and TOAST files")
        _found(wal, "PostgreSQL WAL")
    assert caplog.records, "nothing was logged: the log check would be blind"
    _clean(caplog.text, "logs")
    _clean(repr([r.args for r in caplog.records]), "log arguments")
