"""The query service: filters, sorting, paging, cursors, detail, messages, stats, tenants."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pluggy
import pytest

import sessiontrack
from sessiontrack import InvalidParameter, Principal

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
NAMES = ["Ann Lee", "Ánne Óneill", "Bob Stone", "Chen Wei", "Dana O'Hara", "Émile Zola", None]
BOTS = ["helpdesk", "sales", "billing"]
TERMINAL = ["completed", "expired", "stopped"]


NODES = ["n", "ask", "pay", "end"]
REASONS = [None, "flow_end", "timeout", "agent: done"]
LANGS = ["en", "es", "1", "true", ""]
TIERS: list[Any] = [0, 1, 1.5, "1", True, False, None]
NOW = T0 + timedelta(days=11)  # after every start: active sessions' durations run to it


@dataclass
class Known:
    id: str
    chatbot_id: str
    conversation_id: str
    name: str | None
    phone: str
    status: str
    started_at: datetime
    updated_at: datetime
    # what the advanced filters look at
    nodes: frozenset[str] = frozenset()
    messages: int = 0
    completed_at: datetime | None = None
    reason: str | None = None
    error: bool = False
    variables: dict[str, Any] = dataclasses.field(default_factory=dict)

    def duration(self, now: datetime) -> float:
        return ((self.completed_at or now) - self.started_at).total_seconds()


def build(pm: pluggy.PluginManager, n: int, seed: int) -> list[Known]:
    """Sessions with random attributes and explicit timestamps; returns what the oracle knows."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sid = sessiontrack.new_session_id()
        bot = rng.choice(BOTS)
        name = rng.choice(NAMES)
        phone = f"+1555{rng.randrange(10**6):06d}"
        conv = f"conv-{rng.randrange(n // 3 + 1)}"
        started = T0 + timedelta(minutes=rng.randrange(60 * 24 * 10))
        if i % 17 == 0 and out:  # equal start times exercise the id tie-breaker
            started = out[-1].started_at
        variables: dict[str, Any] = {}
        if rng.random() < 0.8:
            variables["lang"] = rng.choice(LANGS)
        if rng.random() < 0.6:
            variables["tier"] = rng.choice(TIERS)
        pm.hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=bot,
            conversation_id=conv,
            contact={"phone": phone, "name": name},
            variables=variables,
            at=started,
        )
        k = Known(sid, bot, conv, name, phone, "running", started, started)
        k.variables = dict(variables)
        nodes = set()
        for _ in range(rng.randrange(4)):
            k.updated_at += timedelta(seconds=rng.randrange(1, 600))
            node = rng.choice(NODES)
            nodes.add(node)
            failed = rng.random() < 0.1
            k.error = k.error or failed
            pm.hook.sessiontrack_node_executed(
                session_id=sid, node_id=node, at=k.updated_at, error="boom" if failed else None
            )
            for _ in range(rng.randrange(3)):
                k.messages += 1
                direction = rng.choice(["inbound", "outbound"])
                pm.hook.sessiontrack_message(
                    session_id=sid, direction=direction, text="hi", at=k.updated_at
                )
        k.nodes = frozenset(nodes)
        if rng.random() < 0.2:
            patch = {"lang": rng.choice(LANGS), "step": rng.randrange(3)}
            k.variables.update(patch)
            pm.hook.sessiontrack_variables_changed(session_id=sid, variables=patch, at=k.updated_at)
        if rng.random() < 0.05:
            k.error = True
            pm.hook.sessiontrack_llm_call(
                session_id=sid, model="m", error="rate limited", at=k.updated_at
            )
        roll = rng.random()
        if roll < 0.5:
            k.status = rng.choice(TERMINAL)
            k.reason = rng.choice(REASONS)
            k.updated_at += timedelta(seconds=rng.randrange(1, 600))
            k.completed_at = k.updated_at
            pm.hook.sessiontrack_session_completed(
                session_id=sid, status=k.status, reason=k.reason, at=k.updated_at
            )
        elif roll < 0.75:
            k.status = rng.choice(["waiting_input", "waiting_flow"])
            k.updated_at += timedelta(seconds=rng.randrange(1, 600))
            pm.hook.sessiontrack_status_changed(session_id=sid, status=k.status, at=k.updated_at)
        out.append(k)
    return out


def _same_json(stored: Any, wanted: Any) -> bool:
    """JSON equality with JSON types: true is not 1, the string "1" is not the number 1."""
    if isinstance(stored, bool) or isinstance(wanted, bool) or stored is None or wanted is None:
        return stored is wanted
    if isinstance(stored, str) or isinstance(wanted, str):
        return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted
    return bool(stored == wanted)


def _variable_matches(variables: dict[str, Any], test: str) -> bool:
    """``name:value`` as docs/http-api.md defines it, written out plainly."""
    name, _, raw = test.partition(":")
    if name not in variables:
        return False
    try:
        parsed = json.loads(raw)
    except ValueError:
        wanted: list[Any] = [raw]
    else:
        if isinstance(parsed, str):
            wanted = [parsed]
        elif parsed is None or isinstance(parsed, bool | int | float):
            wanted = [parsed, raw]
        else:
            wanted = [raw]
    return any(_same_json(variables[name], w) for w in wanted)


def advanced_oracle(k: Known, q: dict[str, Any]) -> bool:
    """Whether ``k`` passes the advanced filters of ``q`` (durations run to ``NOW``)."""
    if q.get("node_id") is not None and q["node_id"] not in k.nodes:
        return False
    if q.get("completion_reason") is not None and k.reason != q["completion_reason"]:
        return False
    if q.get("min_messages") is not None and k.messages < q["min_messages"]:
        return False
    if q.get("max_messages") is not None and k.messages > q["max_messages"]:
        return False
    now = q.get("now", NOW)
    if q.get("min_duration") is not None and k.duration(now) < q["min_duration"]:
        return False
    if q.get("max_duration") is not None and k.duration(now) > q["max_duration"]:
        return False
    if q.get("has_error") is not None and k.error != q["has_error"]:
        return False
    tests = q.get("variable") or []
    return all(_variable_matches(k.variables, t) for t in tests)


def oracle(known: list[Known], q: dict[str, Any]) -> list[str]:
    groups = {
        "all": None,
        "active": {"running", "waiting_input", "waiting_flow"},
        "completed": set(TERMINAL),
    }
    rows = []
    for k in known:
        if q.get("status") and k.status != q["status"]:
            continue
        if (
            q.get("filter")
            and groups[q["filter"]] is not None
            and k.status not in groups[q["filter"]]
        ):
            continue
        if q.get("chatbot_id") and k.chatbot_id != q["chatbot_id"]:
            continue
        if q.get("conversation_id") and k.conversation_id != q["conversation_id"]:
            continue
        if q.get("search"):
            term = q["search"].casefold()
            if term not in (k.name or "").casefold() and term not in k.phone:
                continue
        if q.get("start_date") and k.started_at < q["start_date"]:
            continue
        if q.get("end_date") and k.started_at > q["end_date"]:
            continue
        if not advanced_oracle(k, q):
            continue
        rows.append(k)
    key = "started_at" if q.get("sort_by", "startedAt") == "startedAt" else "updated_at"
    rows.sort(key=lambda k: (getattr(k, key), k.id), reverse=q.get("sort_order", "DESC") == "DESC")
    return [k.id for k in rows]


def random_query(rng: random.Random, known: list[Known]) -> dict[str, Any]:
    q: dict[str, Any] = {}
    if rng.random() < 0.3:
        q["status"] = rng.choice(["running", "waiting_input", "waiting_flow", *TERMINAL])
    if rng.random() < 0.4:
        q["filter"] = rng.choice(["all", "active", "completed"])
    if rng.random() < 0.4:
        q["chatbot_id"] = rng.choice(BOTS)
    if rng.random() < 0.1:
        q["conversation_id"] = rng.choice(known).conversation_id
    if rng.random() < 0.3:
        q["search"] = rng.choice(["ann", "ÁNNE", "o'h", "555", "zola", "chen w", "%", "_"])
    if rng.random() < 0.3:
        a, b = sorted(rng.sample(range(60 * 24 * 10), 2))
        q["start_date"] = T0 + timedelta(minutes=a)
        if rng.random() < 0.7:
            q["end_date"] = T0 + timedelta(minutes=b)
    q.update(random_advanced(rng))
    q["sort_by"] = rng.choice(["startedAt", "updatedAt"])
    q["sort_order"] = rng.choice(["ASC", "DESC", "asc", "desc"])
    q["sort_order"] = q["sort_order"].upper()
    return q


def random_advanced(rng: random.Random) -> dict[str, Any]:
    """Some of the advanced filters, with values the data set has (and some it has not)."""
    q: dict[str, Any] = {}
    if rng.random() < 0.25:
        q["node_id"] = rng.choice([*NODES, "never"])
    if rng.random() < 0.2:
        q["completion_reason"] = rng.choice([r for r in REASONS if r] + ["other"])
    if rng.random() < 0.2:
        q["min_messages"] = rng.randrange(5)
    if rng.random() < 0.2:
        q["max_messages"] = rng.randrange(q.get("min_messages", 0), 7)
    if rng.random() < 0.2:
        q["min_duration"] = rng.choice([0, 1, 300, 600.5, 1200, 86400])
    if rng.random() < 0.2:
        q["max_duration"] = q.get("min_duration", 0) + rng.choice([0, 300, 1500, 10**6])
    if rng.random() < 0.2:
        q["has_error"] = rng.random() < 0.5
    if rng.random() < 0.3:
        q["variable"] = rng.sample(
            [
                "lang:en",
                "lang:1",
                'lang:"1"',
                "lang:true",
                "lang:",
                "tier:1",
                "tier:1.5",
                'tier:"1"',
                "tier:true",
                "tier:null",
                "tier:false",
                "tier:0",
                "step:2",
                "none:x",
            ],
            rng.randrange(1, 3),
        )
    if q.get("min_duration") is not None or q.get("max_duration") is not None:
        q["now"] = NOW
    return q


async def test_random_filter_combinations_match_a_plain_python_oracle(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    known = build(pm, 200, seed=11)
    await tracker.flush()
    rng = random.Random(5)
    for _ in range(120):
        q = random_query(rng, known)
        expected = oracle(known, q)
        limit = rng.choice([1, 7, 20, 100])
        got: list[str] = []
        page = await tracker.sessions.list(**q, limit=limit)
        assert page.total == len(expected), q
        while True:
            got += [s.id for s in page.data]
            if not page.has_next:
                break
            assert page.next_cursor
            page = await tracker.sessions.list(**q, limit=limit, cursor=page.next_cursor)
            assert page.has_previous
        assert got == expected, q
        if len(expected) > limit:  # offset paging agrees with the cursor
            by_offset = await tracker.sessions.list(**q, limit=limit, offset=limit)
            assert [s.id for s in by_offset.data] == expected[limit : 2 * limit]
            assert by_offset.has_previous and by_offset.offset == limit


async def test_list_items_carry_counts_and_state(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(
        session_id=sid,
        chatbot_id="bot",
        conversation_id="c1",
        contact={"phone": "+1", "name": "Ann"},
    )
    for i in range(3):
        pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}", label=f"Node {i}")
        pm.hook.sessiontrack_message(session_id=sid, direction="outbound", text=str(i))
    await tracker.flush()
    (item,) = (await tracker.sessions.list()).data
    assert (item.node_count, item.message_count, item.current_node_id, item.current_node_label) == (
        3,
        3,
        "n2",
        "Node 2",
    )
    assert item.is_active and item.completed_at is None
    assert [s.id for s in await tracker.sessions.active()] == [sid]
    assert (await tracker.sessions.completed()).total == 0
    assert (await tracker.sessions.by_chatbot("bot")).total == 1


async def test_detail_and_messages_paging_backwards(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(
        session_id=sid, chatbot_id="bot", variables={"a": 1}, metadata={"channel": "whatsapp"}
    )
    for i in range(25):
        pm.hook.sessiontrack_message(
            session_id=sid,
            direction="inbound" if i % 2 else "outbound",
            text=f"m{i}",
            node_id="ask",
            message_id=f"wamid.{i}",
        )
    pm.hook.sessiontrack_node_executed(
        session_id=sid, node_id="ask", node_type="question", duration_ms=12.5, error="boom"
    )
    pm.hook.sessiontrack_session_completed(session_id=sid, reason="flow_end")
    await tracker.flush()
    detail = await tracker.sessions.get(sid, message_limit=10)
    assert [m.text for m in detail.messages] == [f"m{i}" for i in range(15, 25)]
    assert detail.metadata == {"channel": "whatsapp"} and detail.variables == {"a": 1}
    (ex,) = detail.node_executions
    assert (ex.node_id, ex.type, ex.duration_ms, ex.error) == ("ask", "question", 12.5, "boom")
    assert detail.completion_reason == "flow_end"
    everything = await tracker.sessions.messages(sid)
    assert [m.text for m in everything] == [f"m{i}" for i in range(25)]
    assert everything[3].channel_message_id == "wamid.3"
    older = await tracker.sessions.messages(sid, limit=5, before=everything[10].id)
    assert [m.text for m in older] == [f"m{i}" for i in range(5, 10)]


async def test_stats(pm: pluggy.PluginManager, tracker: sessiontrack.Tracker) -> None:
    now = datetime.now(UTC)
    ids = [sessiontrack.new_session_id() for _ in range(5)]
    for sid in ids:
        pm.hook.sessiontrack_session_started(
            session_id=sid, chatbot_id="bot", at=now - timedelta(days=3)
        )
    pm.hook.sessiontrack_session_completed(session_id=ids[0], at=now)
    pm.hook.sessiontrack_session_completed(session_id=ids[1], at=now - timedelta(days=2))
    pm.hook.sessiontrack_session_completed(session_id=ids[2], status="expired", at=now)
    pm.hook.sessiontrack_status_changed(session_id=ids[3], status="waiting_input")
    await tracker.flush()
    stats = await tracker.sessions.stats(now=now)
    assert (stats.active, stats.completed_today, stats.total) == (2, 1, 5)
    assert stats.by_status == {
        "running": 1,
        "waiting_input": 1,
        "waiting_flow": 0,
        "completed": 2,
        "expired": 1,
        "stopped": 0,
    }


async def test_principal_sees_only_its_chatbots(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    mine, theirs = sessiontrack.new_session_id(), sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=mine, chatbot_id="sales")
    pm.hook.sessiontrack_session_started(session_id=theirs, chatbot_id="billing")
    pm.hook.sessiontrack_message(session_id=theirs, direction="inbound", text="secret")
    await tracker.flush()
    p = Principal(id="u1", chatbot_ids=frozenset({"sales"}))
    page = await tracker.sessions.list(principal=p)
    assert [s.id for s in page.data] == [mine] and page.total == 1
    assert (await tracker.sessions.list(principal=p, chatbot_id="billing")).total == 0
    assert [s.id for s in await tracker.sessions.active(principal=p)] == [mine]
    assert (await tracker.sessions.stats(principal=p)).total == 1
    with pytest.raises(sessiontrack.SessionNotFound):
        await tracker.sessions.get(theirs, principal=p)
    with pytest.raises(sessiontrack.SessionNotFound):
        await tracker.sessions.messages(theirs, principal=p)
    with pytest.raises(sessiontrack.SessionNotFound):
        await tracker.stop(theirs, p)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"filter": "some"}, "filter"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort_by": "name"}, "sortBy"),
        ({"sort_order": "UP"}, "sortOrder"),
        ({"start_date": datetime(2026, 1, 1)}, "startDate"),
        ({"cursor": "garbage!"}, "cursor"),
    ],
)
async def test_bad_list_arguments_name_the_field(
    tracker: sessiontrack.Tracker, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParameter) as info:
        await tracker.sessions.list(**kwargs)
    assert info.value.field == field


async def test_cursor_from_another_sort_is_refused(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    build(pm, 5, seed=1)
    await tracker.flush()
    page = await tracker.sessions.list(limit=2)
    with pytest.raises(InvalidParameter, match="sortBy"):
        await tracker.sessions.list(limit=2, sort_by="updatedAt", cursor=page.next_cursor)
    with pytest.raises(InvalidParameter) as info:
        await tracker.sessions.get("nope")
    assert info.value.field == "id"


async def test_search_does_not_match_phones_a_principal_may_not_see(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(
        session_id=sid, chatbot_id="bot", contact={"phone": "+15550001234", "name": "Ann"}
    )
    await tracker.flush()
    no_pii = Principal(id="viewer", can_see_pii=False)
    assert (await tracker.sessions.list(search="0001234")).total == 1
    assert (await tracker.sessions.list(search="0001234", principal=no_pii)).total == 0
    assert (await tracker.sessions.list(search="ann", principal=no_pii)).total == 1


async def test_the_query_service_refuses_what_the_database_cannot_compare(
    tracker: sessiontrack.Tracker,
) -> None:
    """The checks of the HTTP layer guard Python callers of ``tracker.sessions`` too: NUL
    and lone surrogates (PostgreSQL and every driver refuse them), dates that leave
    datetime's range once in UTC, and arguments of the wrong type."""
    q = tracker.sessions
    far_east, far_west = timezone(timedelta(hours=5)), timezone(-timedelta(hours=2))
    cases: list[tuple[Any, str]] = [
        (lambda: q.list(search="a\x00"), "search"),
        (lambda: q.list(chatbot_id="\ud800"), "chatbotId"),
        (lambda: q.list(conversation_id="\x00"), "conversationId"),
        (lambda: q.list(cursor="\udcff"), "cursor"),
        (lambda: q.list(search=5), "search"),
        (lambda: q.list(sort_by=["startedAt"]), "sortBy"),
        (lambda: q.stats(chatbot_id="\x00"), "chatbotId"),
        (lambda: q.active(chatbot_id="b\x00"), "chatbotId"),
        (lambda: q.by_chatbot("\udfff"), "chatbotId"),
        (lambda: q.list(start_date=datetime(1, 1, 1, tzinfo=far_east)), "startDate"),
        (lambda: q.list(end_date=datetime(9999, 12, 31, 23, tzinfo=far_west)), "endDate"),
        (lambda: q.list(end_date=datetime(2026, 1, 1)), "endDate"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidParameter) as raised:
            await call()
        assert raised.value.field == field
