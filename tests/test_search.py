"""Search (DESIGN.md §10): message text by words and prefixes, the ``q`` list filter, the
customer name and phone search through the trigram indexes, purges, the migration."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy
import pytest
import sqlalchemy as sa

import sessiontrack
from sessiontrack import InvalidParameter, Principal
from sessiontrack.store import _migrate
from sessiontrack.store._search import Contacts, SearchSQL, highlights, terms

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
VOCAB = ["refund", "refunds", "Refunded", "order", "ordering", "olá", "ajuda", "café", "help", "x1"]
NAMES = ["Ann Lee", "Ánne Óneill", "Joanna Smith", "Bob Stone", "Chen Wei", "Dana O'Hara", None]


def start(
    pm: pluggy.PluginManager,
    *,
    bot: str = "helpdesk",
    name: str | None = None,
    phone: str | None = None,
    at: datetime = T0,
) -> str:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(
        session_id=sid, chatbot_id=bot, contact={"phone": phone, "name": name}, at=at
    )
    return sid


def say(pm: pluggy.PluginManager, sid: str, text: str | None, inbound: bool = True) -> None:
    pm.hook.sessiontrack_message(
        session_id=sid, direction="inbound" if inbound else "outbound", text=text
    )


def test_terms_and_highlights() -> None:
    assert terms("Refund, REFUND  order_12!") == ["refund", "order", "12"]
    assert terms("ref* REF* ref *") == ["ref*", "ref"]
    assert terms("?! --") == []
    text = "Olá! I want a REFUND; refunds are slow (café)"
    assert highlights(text, ["refund"]) == [[14, 20]]
    assert highlights(text, ["refund*"]) == [[14, 20], [22, 29]]
    assert highlights(text, ["ola", "cafe"]) == [[0, 3], [40, 44]]
    assert highlights(None, ["x"]) == []


async def test_message_search_by_words_and_prefixes(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    a, b = start(pm, name="Ann"), start(pm, bot="sales")
    say(pm, a, "I want a refund please")
    say(pm, a, "Refunds take 3 days", inbound=False)
    say(pm, b, "where is my order #1234?")
    say(pm, b, "Olá, preciso de ajuda com o café")
    say(pm, b, None)  # a message without text (a payload) is never found
    await tracker.flush()
    q = tracker.sessions

    assert [m.text for m in (await q.search_messages("refund")).data] == [
        "I want a refund please"
    ]  # a whole word
    page = await q.search_messages("refund*")
    assert [m.text for m in page.data] == ["Refunds take 3 days", "I want a refund please"]
    assert page.next_cursor is None
    first = page.data[0]
    assert (first.session_id, first.chatbot_id, first.direction) == (a, "helpdesk", "outbound")
    assert first.highlights == [[0, 7]]
    assert page.data[1].highlights == [[9, 15]]
    assert [m.text for m in (await q.search_messages("REF*")).data] == [
        "Refunds take 3 days",
        "I want a refund please",
    ]
    assert [m.text for m in (await q.search_messages("refund please")).data] == [
        "I want a refund please"
    ]
    assert (await q.search_messages("efund*")).data == []  # words start where words start
    assert (await q.search_messages("ref")).data == []
    assert [m.session_id for m in (await q.search_messages("1234")).data] == [b]
    found = (await q.search_messages("ajuda café")).data
    assert [m.session_id for m in found] == [b]
    assert found[0].highlights == [[16, 21], [28, 32]]
    assert (await q.search_messages("refund*", chatbot_id="sales")).data == []
    # the messages' ids are those of the session's messages
    ids = {m.id for m in await q.messages(a)}
    assert {m.message_id for m in page.data} == ids


async def test_message_search_pages_by_cursor_and_refuses_bad_input(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    sid = start(pm)
    for i in range(25):
        say(pm, sid, f"order number {i}")
    say(pm, sid, "something else")
    await tracker.flush()
    q = tracker.sessions
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await q.search_messages("order", limit=10, cursor=cursor)
        seen += [m.message_id for m in page.data]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == 25 and seen == sorted(seen, reverse=True)
    for bad in ("", "   "):
        with pytest.raises(InvalidParameter) as info:
            await q.search_messages(bad)
        assert info.value.field == "q"
    assert (await q.search_messages("?! --")).data == []  # no word: nothing found
    assert (await q.list(q="?!")).total == 0
    with pytest.raises(InvalidParameter) as info:
        await q.search_messages(" ".join(f"w{i}" for i in range(101)))
    assert info.value.field == "q"
    for bad_cursor in ("nope", "WyJtIiwwXQ", "WyJ4IiwxXQ"):  # garbage, ["m",0], ["x",1]
        with pytest.raises(InvalidParameter) as info:
            await q.search_messages("order", cursor=bad_cursor)
        assert info.value.field == "cursor"
    with pytest.raises(InvalidParameter) as info:
        await q.search_messages("order", limit=0)
    assert info.value.field == "limit"


async def test_tenants_find_only_their_chatbots(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    a, b = start(pm, bot="bot-a", phone="+15550001"), start(pm, bot="bot-b", phone="+15550002")
    say(pm, a, "refund for a")
    say(pm, b, "refund for b")
    await tracker.flush()
    q = tracker.sessions
    tenant = Principal(id="t", chatbot_ids=frozenset({"bot-a"}), can_see_pii=False)
    assert [m.session_id for m in (await q.search_messages("refund", principal=tenant)).data] == [a]
    other = await q.search_messages("refund", chatbot_id="bot-b", principal=tenant)
    assert other.data == []
    listed = await q.list(q="refund", principal=tenant)
    assert [s.id for s in listed.data] == [a] and listed.total == 1
    # a masked principal cannot find sessions by phone digits, not even its own chatbot's
    assert (await q.list(search="5550001", principal=tenant)).total == 0
    assert (await q.list(search="5550001")).total == 1


def _oracle_words(texts: list[str], words: list[str]) -> bool:
    """One text has every word (a word ending in * begins one of its words), in Python."""

    def has(text: str, word: str) -> bool:
        tokens = [_plain(t) for t in terms(text)]
        if word.endswith("*"):
            return any(t.startswith(_plain(word[:-1])) for t in tokens)
        return _plain(word) in tokens

    return any(all(has(text, w) for w in words) for text in texts)


def _plain(word: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


async def test_q_list_filter_matches_an_oracle(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    rng = random.Random(13)
    known: dict[str, tuple[str, str, list[str]]] = {}
    for i in range(60):
        bot = rng.choice(["helpdesk", "sales"])
        sid = start(pm, bot=bot, at=T0 + timedelta(minutes=i))
        texts = [" ".join(rng.sample(VOCAB, 2)) for _ in range(rng.randrange(4))]
        for text in texts:
            say(pm, sid, text)
        status = "running"
        if rng.random() < 0.5:
            pm.hook.sessiontrack_session_completed(session_id=sid)
            status = "completed"
        known[sid] = (bot, status, texts)
    await tracker.flush()
    # PostgreSQL's 'simple' configuration keeps diacritics: compare words without them
    queries = ["refund", "ref*", "order", "order*", "help x1", "ajuda", "zzz", "refunded order*"]
    for query in queries:
        words = terms(query)
        for kwargs in ({}, {"status": "completed"}, {"chatbot_id": "sales"}):
            expected = [
                sid
                for sid, (bot, status, texts) in known.items()
                if _oracle_words(texts, words)
                and kwargs.get("status", status) == status
                and kwargs.get("chatbot_id", bot) == bot
            ]
            expected.sort(key=lambda s: (known_start(known, s), s), reverse=True)
            page = await tracker.sessions.list(q=query, limit=100, **kwargs)
            assert [s.id for s in page.data] == expected, (query, kwargs)
            assert page.total == len(expected)


def known_start(known: dict[str, Any], sid: str) -> int:
    return list(known).index(sid)  # started a minute apart, in this order


async def test_customer_search_matches_the_substring_scan(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    rng = random.Random(5)
    contacts: dict[str, tuple[str | None, str | None]] = {}
    for i in range(80):
        name = rng.choice(NAMES)
        phone = None if i % 9 == 0 else f"+{rng.choice(['1555', '4477'])}{rng.randrange(10**4):04d}"
        contacts[start(pm, name=name, phone=phone, at=T0 + timedelta(seconds=i))] = (name, phone)
    await tracker.flush()
    masked = Principal(id="m", can_see_pii=False)
    for term in ["ann", "ANN", "ánne", "nna", "o'h", "an", "5", "+1555", "4477", "lee", "e w"]:
        for principal in (None, masked):
            key = term.casefold()
            expected = {
                sid
                for sid, (name, phone) in contacts.items()
                if (name and key in name.casefold())
                or (principal is None and phone and key in phone)
            }
            page = await tracker.sessions.list(search=term, limit=100, principal=principal)
            assert {s.id for s in page.data} == expected, (term, principal)
            assert page.total == len(expected)


@pytest.mark.parametrize("plan", ["by-values", "walking"])
async def test_customer_search_pages_in_order_by_either_plan(
    tracker: sessiontrack.Tracker,
    pm: pluggy.PluginManager,
    monkeypatch: pytest.MonkeyPatch,
    plan: str,
) -> None:
    """A search matching many distinct names and phones is counted first and, past a
    number of sessions, its page walks the sort order's index (``_reads._WALK_FROM``);
    forced here on a small data set, it gives the same pages, totals and order as the
    plan by the values' indexes, with other filters, either sort and by cursor."""
    from sessiontrack.store import _reads

    if plan == "walking":
        monkeypatch.setattr(_reads, "_FEW_CONTACTS", 0)
        monkeypatch.setattr(_reads, "_WALK_FROM", 1)
    rng = random.Random(11)
    sessions: dict[str, tuple[str | None, str | None, str]] = {}
    updated: dict[str, datetime] = {}
    for i in range(60):
        name = f"{rng.choice(NAMES) or 'Zed'} {i % 7}"
        phone = f"+1555{rng.randrange(10**4):04d}" if i % 4 else None
        sid = start(pm, name=name, phone=phone, at=T0 + timedelta(seconds=i))
        status = "completed" if i % 3 == 0 else "running"
        if status == "completed":
            pm.hook.sessiontrack_session_completed(
                session_id=sid, at=T0 + timedelta(hours=1, seconds=-i)
            )
        sessions[sid] = (name, phone, status)
        updated[sid] = T0 + (timedelta(hours=1, seconds=-i) if i % 3 == 0 else timedelta(seconds=i))
    await tracker.flush()
    order = list(sessions)  # started a second apart, in this order
    for term in ["ann", "e", "+1555", "o 3"]:
        for kwargs in ({}, {"status": "completed"}, {"sort_by": "updatedAt", "sort_order": "asc"}):
            key = term.casefold()
            expected = [
                sid
                for sid, (name, phone, status) in sessions.items()
                if ((name and key in name.casefold()) or (phone and key in phone))
                and kwargs.get("status", status) == status
            ]
            if kwargs.get("sort_by") == "updatedAt":
                expected.sort(key=lambda sid: (updated[sid], sid))
            else:
                expected.sort(key=order.index, reverse=True)
            seen: list[str] = []
            cursor = None
            while True:
                page = await tracker.sessions.list(search=term, limit=7, cursor=cursor, **kwargs)
                assert page.total == len(expected), (term, kwargs)
                seen += [s.id for s in page.data]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == expected, (term, kwargs, plan)


async def test_the_indexes_answer_the_searches(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    """The plans use the search indexes (PostgreSQL told to avoid scans where it can: on
    a handful of rows it would rightly scan): the trigram index finds the matching names
    and phones among the distinct ones, the sessions' B-tree indexes their sessions."""
    store = tracker.store
    sql = SearchSQL(store.tables, store.dialect)
    s, e = store.tables.sessions, store.tables.events
    p = store.tables.prefix
    for i in range(300):  # distinct contacts enough for PostgreSQL to prefer an index
        start(pm, name=f"Ann Lee {i}" if i % 30 == 0 else f"Bo Kim {i}", phone=f"+1555{i:05d}")
    await tracker.flush()
    if store.dialect != "sqlite":  # statistics, and GIN's pending entries merged
        async with store.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql(f"VACUUM ANALYZE {store.tables.contacts.name}")
    found = Contacts({"ann lee 0"}, {"+155500001"})
    queries = [
        (sa.select(sa.literal(1)).select_from(sql.matching_contacts("ann", True).subquery()), []),
        (sa.select(sa.literal(1)).select_from(sql.matching_contacts("ann", False).subquery()), []),
        (sa.select(e.c.seq).where(sql.message_match(["refund"])), []),
        (
            sa.select(s.c.id).where(sql.contact_match("ann", True, found)),
            [f"ix_{p}sessions_name_key", f"ix_{p}sessions_phone"],
        ),
        (
            sa.select(s.c.id).where(sql.contact_match("ann", False, found)),
            [f"ix_{p}sessions_name_key"],
        ),
    ]
    async with store.engine.connect() as conn:
        for query, indexes in queries:
            compiled = query.compile(store.engine, compile_kwargs={"literal_binds": True})
            if store.dialect == "sqlite":
                rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
                plan = " ".join(str(r[-1]) for r in rows)
            else:
                await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                rows = await conn.exec_driver_sql(f"EXPLAIN {compiled}")
                plan = " ".join(str(r[0]) for r in rows)
            if indexes:
                assert all(i in plan for i in indexes), plan
            elif store.dialect == "sqlite":
                assert "VIRTUAL TABLE INDEX" in plan, plan
            else:
                assert "_trgm" in plan or "_events_text" in plan, plan


async def test_purge_removes_the_index_entries(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    old, kept = start(pm, name="Ann Old", phone="+1999"), start(pm, name="Ann Kept")
    say(pm, old, "refund me")
    say(pm, kept, "refund too")
    pm.hook.sessiontrack_session_completed(session_id=old, at=T0 + timedelta(minutes=1))
    await tracker.flush()
    assert await tracker.store.purge(T0 + timedelta(days=1)) == 1
    q = tracker.sessions
    assert [m.session_id for m in (await q.search_messages("refund")).data] == [kept]
    assert [s.id for s in (await q.list(search="ann")).data] == [kept]
    assert (await q.list(search="1999")).total == 0
    if tracker.store.dialect == "sqlite":
        sql = tracker.store.search_sql
        async with tracker.store.engine.connect() as conn:
            for table in (sql.message_fts, sql.contact_fts):
                await conn.exec_driver_sql(
                    f"INSERT INTO {table}({table}) VALUES('integrity-check')"
                )
                n = await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")
                assert n.scalar() == 1
    # new sessions are indexed as before
    again = start(pm, name="Ann New")
    say(pm, again, "refund again")
    await tracker.flush()
    assert len((await q.search_messages("refund")).data) == 2
    assert (await q.list(search="ann")).total == 2


async def test_upgrade_to_0007_indexes_what_is_stored(database_url: str, prefix: str) -> None:
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "sweep_interval": None}
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        pm = tracker.plugin_manager
        sid = start(pm, name="Zoë Kim", phone="+4915123")
        say(pm, sid, "my refund")
        await tracker.flush()
        async with tracker.store.engine.begin() as conn:
            await conn.run_sync(_migrate.upgrade, prefix, "0006")  # a no-op: at head
            await conn.run_sync(lambda c: _downgrade(c, prefix))
            assert await conn.run_sync(_migrate.current, prefix) == "0006"
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        async with tracker.store.engine.connect() as conn:
            assert await conn.run_sync(_migrate.current, prefix) == _migrate.HEAD
        q = tracker.sessions
        assert [m.session_id for m in (await q.search_messages("refund")).data] == [sid]
        assert [s.id for s in (await q.list(search="zoë k")).data] == [sid]
        assert [s.id for s in (await q.list(search="15123")).data] == [sid]
        assert [s.id for s in (await q.list(q="refunds my")).data] == []
        assert [s.id for s in (await q.list(q="my ref*")).data] == [sid]


def _downgrade(conn: sa.Connection, prefix: str) -> None:
    from alembic import command

    command.downgrade(_migrate._config(conn, prefix), "0006")
