"""The advanced list filters (nodeId, completionReason, message and duration ranges,
hasError, variable): alone and combined, through the query service and HTTP (parsing,
400s naming the field, tenants, masking), on SQLite and PostgreSQL; hypothesis over the
HTTP parameters against the plain-Python oracle of test_queries; the plans on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pluggy
import pytest
import sqlalchemy as sa
from anyio.from_thread import start_blocking_portal
from conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_queries import NOW, T0, Known, advanced_oracle, build, oracle

import sessiontrack
from sessiontrack import InvalidParameter, Principal
from sessiontrack.query import SessionQueries
from sessiontrack.web import create_app

pytestmark = pytest.mark.anyio
ADMIN = Principal(id="admin")
TENANT = Principal(id="tenant", chatbot_ids=frozenset({"sales"}))
MASKED = Principal(id="masked", can_see_pii=False)
TOKENS = {"admin": ADMIN, "tenant": TENANT, "masked": MASKED}


def _who(request: Any) -> Principal | None:
    return TOKENS.get(request.token or "")


def _ids(page: Any) -> set[str]:
    return {s.id for s in page.data}


async def _three(pm: pluggy.PluginManager, tracker: sessiontrack.Tracker) -> list[str]:
    """Three sessions that the filters tell apart, one of them still running."""
    a, b, c = (sessiontrack.new_session_id() for _ in range(3))
    hook = pm.hook
    hook.sessiontrack_session_started(
        session_id=a, chatbot_id="helpdesk", variables={"lang": "en", "tier": 1}, at=T0
    )
    hook.sessiontrack_node_executed(session_id=a, node_id="ask", at=T0 + timedelta(seconds=5))
    for i in range(3):
        hook.sessiontrack_message(
            session_id=a, direction="inbound", text="hi", at=T0 + timedelta(seconds=6 + i)
        )
    hook.sessiontrack_session_completed(
        session_id=a, reason="flow_end", at=T0 + timedelta(seconds=60)
    )
    hook.sessiontrack_session_started(
        session_id=b, chatbot_id="sales", variables={"lang": "es", "tier": "1"}, at=T0
    )
    hook.sessiontrack_node_executed(
        session_id=b, node_id="pay", error="card declined", at=T0 + timedelta(seconds=1)
    )
    hook.sessiontrack_message(session_id=b, direction="outbound", text="x", at=T0)
    hook.sessiontrack_session_completed(
        session_id=b, status="expired", reason="timeout", at=T0 + timedelta(seconds=3600)
    )
    hook.sessiontrack_session_started(
        session_id=c, chatbot_id="sales", variables={"lang": "en", "vip": True}, at=T0
    )
    hook.sessiontrack_node_executed(session_id=c, node_id="ask", at=T0 + timedelta(seconds=2))
    await tracker.flush()
    return [a, b, c]


async def test_each_filter_alone_and_combined(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    a, b, c = await _three(pm, tracker)
    now = T0 + timedelta(seconds=600)  # c has been running for 10 minutes
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"node_id": "ask"}, {a, c}),
        ({"node_id": "pay"}, {b}),
        ({"node_id": "nowhere"}, set()),
        ({"completion_reason": "timeout"}, {b}),
        ({"min_messages": 1}, {a, b}),
        ({"min_messages": 2, "max_messages": 3}, {a}),
        ({"max_messages": 0}, {c}),
        ({"min_duration": 60}, {a, b, c}),
        ({"min_duration": 60.001}, {b, c}),
        ({"max_duration": 60}, {a}),
        ({"min_duration": 500, "max_duration": 700}, {c}),
        ({"min_duration": 700, "max_duration": 500}, set()),
        ({"min_messages": 3, "max_messages": 2}, set()),
        ({"has_error": True}, {b}),
        ({"has_error": False}, {a, c}),
        ({"variable": "lang:en"}, {a, c}),
        ({"variable": "tier:1"}, {a, b}),  # the number 1 and the text "1"
        ({"variable": 'tier:"1"'}, {b}),  # the text only
        ({"variable": "vip:true"}, {c}),
        ({"variable": ["lang:en", "tier:1"]}, {a}),
        ({"variable": "missing:1"}, set()),
        ({"node_id": "ask", "has_error": False, "variable": "lang:en", "max_messages": 5}, {a, c}),
        ({"node_id": "ask", "completion_reason": "flow_end", "min_duration": 1}, {a}),
        ({"chatbot_id": "sales", "node_id": "ask"}, {c}),
        ({"status": "completed", "variable": "tier:1"}, {a}),
    ]
    for kwargs, expected in cases:
        for sort_by in ("startedAt", "updatedAt"):
            page = await tracker.sessions.list(**kwargs, now=now, sort_by=sort_by)
            assert _ids(page) == expected, kwargs
            assert page.total == len(expected), kwargs


async def test_a_broad_advanced_filter_counts_up_to_the_limit(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    known = build(pm, 60, seed=8)
    await tracker.flush()
    queries = SessionQueries(tracker.store, count_limit=5)
    for q in ({"has_error": False}, {"max_messages": 100}, {"node_id": "n"}, {"min_duration": 0}):
        expected = oracle(known, {**q, "now": NOW})
        assert len(expected) > 5, q
        page = await queries.list(**q, now=NOW, limit=3)
        assert page.total == 5 and not page.total_exact, q
        got = [s.id for s in page.data]
        while page.has_next:  # the pages are all there
            page = await queries.list(**q, now=NOW, limit=3, cursor=page.next_cursor)
            got += [s.id for s in page.data]
        assert got == expected, q
        # a narrow one is counted exactly; without advanced filters every total is exact
        narrow = {**q, "conversation_id": known[0].conversation_id}
        exact = await queries.list(**narrow, now=NOW)
        assert exact.total == len(oracle(known, {**narrow, "now": NOW})) <= 5
        assert exact.total_exact
    everything = await queries.list()
    assert everything.total == len(known) and everything.total_exact


async def test_bad_advanced_arguments_name_the_field(tracker: sessiontrack.Tracker) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"min_messages": -1}, "minMessages"),
        ({"max_messages": 1.5}, "maxMessages"),
        ({"min_duration": -1}, "minDuration"),
        ({"max_duration": "10"}, "maxDuration"),
        ({"has_error": "yes"}, "hasError"),
        ({"node_id": ""}, "nodeId"),
        ({"completion_reason": "a\x00b"}, "completionReason"),
        ({"variable": "no-colon"}, "variable"),
        ({"variable": ":value"}, "variable"),
        ({"variable": 'a"b:1'}, "variable"),
        ({"variable": "lang:\x00"}, "variable"),
        ({"variable": [f"v{i}:1" for i in range(11)]}, "variable"),
    ]
    for kwargs, field in bad:
        with pytest.raises(InvalidParameter) as err:
            await tracker.sessions.list(**kwargs)
        assert err.value.field == field, kwargs


async def test_http_parses_repeats_refuses_and_keeps_tenants_apart(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    a, b, c = await _three(pm, tracker)
    app = create_app(tracker, authenticate=_who)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:

        async def listed(query: str, who: str = "admin", path: str = "/") -> set[str]:
            r = await client.get(f"{path}?{query}", headers={"Authorization": f"Bearer {who}"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["total"] == len(body["data"]) and body["totalExact"] is True
            return {s["id"] for s in body["data"]}

        assert await listed("variable=lang%3Aen&variable=tier%3A1") == {a}
        assert await listed("nodeId=ask&hasError=false&maxMessages=5") == {a, c}
        assert await listed("completionReason=timeout&minDuration=3600&maxDuration=3600") == {b}
        assert await listed("hasError=true") == {b}
        assert await listed("minMessages=1&sortBy=updatedAt") == {a, b}
        # a tenant never sees another chatbot's sessions, whatever the filter
        assert await listed("nodeId=ask", "tenant") == {c}
        assert await listed("hasError=true", "tenant") == {b}
        assert await listed("nodeId=ask", "tenant", "/chatbot/helpdesk") == set()
        assert await listed("nodeId=ask", "admin", "/chatbot/helpdesk") == {a}
        for query, field in [
            ("minMessages=-1", "minMessages"),
            ("maxMessages=x", "maxMessages"),
            ("minDuration=-0.5", "minDuration"),
            ("maxDuration=1e11", "maxDuration"),
            ("hasError=maybe", "hasError"),
            ("nodeId=", "nodeId"),
            ("completionReason=", "completionReason"),
            ("variable=lang", "variable"),
            ("variable=a%00:1", "variable"),
            ("variable=lang%3Aen&variable=%3A1", "variable"),
        ]:
            r = await client.get(f"/?{query}", headers={"Authorization": "Bearer admin"})
            assert r.status_code == 400, (query, r.text)
            assert [d["field"] for d in r.json()["detail"]] == [field], query


# --- hypothesis: any combination of the new parameters over HTTP agrees with the oracle ---


@pytest.fixture
def fuzz(backend: str, tmp_path: Path, prefix: str) -> Iterator[tuple[Any, list[Known]]]:
    """A blocking ``get(query)`` into the sub-app in-process, and the sessions it holds."""
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
                known = build(pm, 120, seed=3)
                portal.call(tracker.flush)
                app = create_app(tracker, authenticate=lambda _: ADMIN)
                client = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://test"
                )
                with portal.wrap_async_context_manager(client):
                    yield (lambda q: portal.call(partial(client.get, "/?" + q))), known
        finally:
            if backend != "sqlite":
                portal.call(drop_prefixed_tables, POSTGRES_URL, prefix)


_VARIABLES = ["lang:en", "lang:1", 'lang:"1"', "lang:true", "lang:", "tier:1", "tier:1.0"]
_VARIABLES += ["tier:1.5", 'tier:"1"', "tier:true", "tier:null", "tier:false", "tier:0", "step:2"]
_VARIABLE = st.sampled_from([*_VARIABLES, "none:x"]) | st.builds(
    lambda n, v: f"{n}:{v}",
    st.sampled_from(["lang", "tier"]),
    # no NUL: the API refuses it with a 400 naming the field (tests/test_security.py)
    st.text(st.characters(blacklist_characters="\x00"), max_size=4),
)
ADVANCED = {
    "nodeId": st.sampled_from(["n", "ask", "pay", "end", "never"]),
    "completionReason": st.sampled_from(["flow_end", "timeout", "agent: done", "other"]),
    "minMessages": st.integers(0, 8),
    "maxMessages": st.integers(0, 8),
    # far below the active sessions' durations (over a day), around the ended ones'
    "minDuration": st.integers(0, 2500) | st.floats(0, 2500, allow_nan=False),
    "maxDuration": st.integers(0, 2500) | st.floats(0, 2500, allow_nan=False),
    "hasError": st.booleans(),
    "variable": st.lists(_VARIABLE, max_size=3),
    "status": st.sampled_from(["completed", "running", "expired"]),
    "chatbotId": st.sampled_from(["helpdesk", "sales"]),
    "sortBy": st.sampled_from(["startedAt", "updatedAt"]),
}
SNAKE = {
    "nodeId": "node_id",
    "completionReason": "completion_reason",
    "minMessages": "min_messages",
    "maxMessages": "max_messages",
    "minDuration": "min_duration",
    "maxDuration": "max_duration",
    "hasError": "has_error",
    "chatbotId": "chatbot_id",
    "sortBy": "sort_by",
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.fixed_dictionaries({}, optional=ADVANCED))
def test_any_advanced_combination_over_http_matches_the_oracle(
    fuzz: tuple[Any, list[Known]], query: dict[str, Any]
) -> None:
    get, known = fuzz
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        if name == "variable":
            pairs += [("variable", v) for v in value]
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    r = get(urlencode(pairs) + "&limit=100")
    assert r.status_code == 200, r.text  # a maximum below its minimum matches nothing
    q = {SNAKE.get(k, k): v for k, v in query.items()}
    # active sessions' durations run to the server's clock: far past NOW, and past every
    # duration drawn here, so for the oracle NOW does as well
    q["now"] = NOW
    expected = oracle(known, q)
    assert r.json()["total"] == len(expected)
    assert [s["id"] for s in r.json()["data"]] == expected[:100]
    assert all(advanced_oracle(k, q) for k in known if k.id in set(expected))


# --- the plans: the updatedAt sorts and the filters' indexes (SQLite) ---------------------


async def _plan(tracker: sessiontrack.Tracker, **kwargs: Any) -> str:
    """SQLite's query plan of a list page (the page query, not the count)."""
    store: Any = tracker.store
    captured: list[str] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "LIMIT" in statement:
            captured.append(statement)
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            captured.append("\n".join(str(row[-1]) for row in plan))

    # list reads on a SQLite file run on the store's reader engine (store/_readers.py);
    # a list the counters count, on its quick connection's sqlite3 cursor directly
    sync_engine = store.readers.engine if store.readers else store.engine.sync_engine
    quick: list[str] = []
    raw: Any = None
    if store.readers:
        with store.readers.quick.connect() as conn:  # one connection (StaticPool)
            raw = conn.connection.dbapi_connection
        raw.set_trace_callback(lambda sql: quick.append(sql) if "LIMIT" in sql else None)
    sa.event.listen(sync_engine, "before_cursor_execute", grab)
    try:
        await tracker.sessions.list(**kwargs)
    finally:
        sa.event.remove(sync_engine, "before_cursor_execute", grab)
        if raw is not None:
            raw.set_trace_callback(None)
    if quick:  # (the trace has the statement with its values in place)
        plan = raw.execute(f"EXPLAIN QUERY PLAN {quick[-1]}").fetchall()
        return quick[-1] + "\n" + "\n".join(str(row[-1]) for row in plan)
    return captured[-1]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_reads_updated_at_sorts_and_filters_from_indexes(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, prefix: str
) -> None:
    await _three(pm, tracker)
    p = prefix
    for kwargs, index in [
        ({"status": "completed", "sort_by": "updatedAt"}, f"ix_{p}sessions_status_updated"),
        ({"chatbot_id": "sales", "sort_by": "updatedAt"}, f"ix_{p}sessions_chatbot_updated"),
        (
            {"chatbot_id": "sales", "status": "completed", "sort_by": "updatedAt"},
            f"ix_{p}sessions_chatbot_status_updated",
        ),
        ({"node_id": "ask", "sort_by": "updatedAt"}, f"ix_{p}events_node"),
        ({"node_id": "ask"}, f"ix_{p}tags_started"),  # 0008: the tag's index, in order
    ]:
        plan = await _plan(tracker, **kwargs)
        assert index in plan, (kwargs, plan)
        if "sort_by" in kwargs and "node_id" not in kwargs:  # a rare node's ids are sorted
            assert "TEMP B-TREE" not in plan, (kwargs, plan)
