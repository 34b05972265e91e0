"""Search: message text (words and prefixes) and the customer's name and phone (substrings).

One class a dialect makes every SQLite/PostgreSQL choice (migrations ``0007`` and
``0012`` build the indexes for existing rows, the writer keeps them in step in each
batch's transaction):

- **Messages.** SQLite: the contentless FTS5 table ``<prefix>message_fts`` holds each
  message's text (``unicode61``, diacritics removed), its rowid the message's event
  ``seq``; the writer inserts a batch's with one ``INSERT ... SELECT`` over the batch's
  range of sequence numbers, and a purge deletes them (FTS5's ``'delete'`` command, from
  the same stored values) before the events go. PostgreSQL: a GIN index on
  ``to_tsvector('simple', data->>'text')``, which it keeps in step by itself.
- **Contacts.** ``<prefix>contacts`` holds each distinct name key and phone once, with a
  trigram index: on SQLite the contentless FTS5 table ``<prefix>contact_fts`` keyed by
  the contact's id (two triggers keep it in step), on PostgreSQL a ``pg_trgm`` GIN
  index. The writer adds a batch's new sessions' values (``ON CONFLICT DO NOTHING``); a
  purge deletes the values no session holds any more. Sessions are found by their
  values through B-tree indexes on ``name_key`` and ``customer_phone``.

Message queries are words, all of which a message must have, case- (and on SQLite
diacritic-) insensitively: ``refund`` finds "Refund!" but not "refunds"; a word ending in
``*`` is a prefix (``refund*`` finds both). Whole words stream from the index newest first,
so a first page costs the same for a rare word and for one in every other message; a
prefix merges the lists of every word it begins before the first row comes out (FTS5
without a prefix index, GIN's partial match), so it costs with the words it covers.

The customer search keeps its meaning (a substring of the case-folded name or of the
phone). Its matching values are found among the distinct ones (a term of three
characters or more through the trigram index, checked again with ``LIKE``; a shorter one
scans ``contacts``), then their sessions by value: on 1M sessions a full name's trigrams
were each in tens of thousands of per-session entries, and are in a handful of distinct
names.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..events import MESSAGE
from ._part import StorePart

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ._tables import Tables

MAX_TERMS = 100
"""Words a message query may have (as many as 200 characters can hold: the HTTP limit)."""
TRIGRAM = 3
ESCAPE = "\\"
"""The shortest customer search term the trigram indexes can answer."""
_WORD = re.compile(r"[^\W_]+")
_QUERY_WORD = re.compile(r"([^\W_]+)(\*?)")
_BACKFILL = 500_000
_WALK_ROWS = 20_000
"""PostgreSQL: from this many expected matches on, a message search walks the log newest
first (finding a page within a few thousand events); below, the GIN index finds them all."""


def terms(text: str) -> list[str]:
    """The words of a message query, case-folded, in order, without repeats; a word
    written with a trailing ``*`` (a prefix) keeps it."""
    out: list[str] = []
    for word, star in _QUERY_WORD.findall(text.casefold()):
        if word + star not in out:
            out.append(word + star)
    return out


def _fts5_term(word: str) -> str:
    return f'"{word[:-1]}"*' if word.endswith("*") else f'"{word}"'


def _tsquery_term(word: str) -> str:
    return f"'{word[:-1]}':*" if word.endswith("*") else f"'{word}'"


def _fold(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def highlights(text: str | None, words: list[str]) -> list[list[int]]:
    """``[start, end]`` (Unicode code points, end exclusive) of each word of ``text`` that
    is one of ``words`` (or begins with one ending in ``*``), compared case- and
    diacritic-insensitively."""
    if not text:
        return []
    exact = {_fold(w) for w in words if not w.endswith("*")}
    prefixes = [_fold(w[:-1]) for w in words if w.endswith("*")]
    out = []
    for m in _WORD.finditer(text):
        word = _fold(m.group())
        if word in exact or any(word.startswith(p) for p in prefixes):
            out.append([m.start(), m.end()])
    return out


@dataclass(frozen=True, slots=True)
class MessageHit:
    """A message that matched, as the store read it."""

    seq: int
    session_id: str
    chatbot_id: str
    at: datetime
    data: dict[str, Any]


class SearchSQL:
    """The search statements of one dialect."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        self.tables = tables
        self.dialect = dialect
        p = tables.prefix
        self.message_fts = f"{p}message_fts"
        self.contact_fts = f"{p}contact_fts"
        self.text_index = f"ix_{p}events_text"
        self.contact_index = f"ix_{p}contacts_trgm"
        self.contact_triggers = (f"{p}contacts_indexed", f"{p}contacts_unindexed")
        e = tables.events.name
        # the PostgreSQL index's expression, written as every query must write it
        self.tsvector = f"to_tsvector('simple'::regconfig, ({e}.data ->> 'text'::text))"

    # --- schema (migrations 0007 and 0012) ----------------------------------------------

    def create_statements(self) -> list[str]:
        """The DDL creating the message index (migration 0007; its backfill is
        :meth:`backfill`). The customer search's index is :meth:`contact_statements`."""
        e = self.tables.events.name
        if self.dialect == "sqlite":
            return [
                f"CREATE VIRTUAL TABLE {self.message_fts} USING fts5(body, content='', "
                "tokenize='unicode61 remove_diacritics 2')",
            ]
        return [
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            # not partial (WHERE kind = 'message'): the planner ignores a partial index's
            # statistics, and without them it guesses a word's frequency (see
            # SearchReads.search_messages); the other events have no text, no entries
            f"CREATE INDEX {self.text_index} ON {e} USING gin "
            f"(to_tsvector('simple'::regconfig, (data ->> 'text'::text)))",
            # the index's statistics (word frequencies) at once, not at autovacuum's leisure
            f"ANALYZE {e}",
        ]

    def drop_statements(self) -> list[str]:
        if self.dialect == "sqlite":
            return [f"DROP TABLE {self.message_fts}"]
        return [f"DROP INDEX {self.text_index}"]

    def contact_statements(self) -> list[str]:
        """The trigram index over ``contacts`` (:meth:`build_contacts`): on
        SQLite a contentless FTS5 table keyed by the contact's id, kept in step by two
        triggers; on PostgreSQL a ``pg_trgm`` GIN index."""
        c, fts = self.tables.contacts.name, self.contact_fts
        if self.dialect == "sqlite":

            def values(row: str) -> str:
                return (
                    f"CASE WHEN {row}.field = 'name' THEN {row}.value END, "
                    f"CASE WHEN {row}.field = 'phone' THEN {row}.value END"
                )

            return [
                f"CREATE VIRTUAL TABLE {fts} USING fts5(name, phone, content='', "
                "tokenize='trigram')",
                f"CREATE TRIGGER {self.contact_triggers[0]} AFTER INSERT ON {c} BEGIN "
                f"INSERT INTO {fts} (rowid, name, phone) VALUES (new.id, {values('new')}); END",
                f"CREATE TRIGGER {self.contact_triggers[1]} AFTER DELETE ON {c} BEGIN "
                f"INSERT INTO {fts} ({fts}, rowid, name, phone) "
                f"VALUES ('delete', old.id, {values('old')}); END",
            ]
        return [
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            # GIN queues new entries in a pending list that every search reads through
            # until a VACUUM merges them (the default limit, 4 MB, made a search 8 ms
            # slower): a short list, merged by the inserts themselves when full
            f"CREATE INDEX {self.contact_index} ON {c} USING gin (value gin_trgm_ops) "
            "WITH (gin_pending_list_limit = 256)",
        ]

    def contact_drop_statements(self) -> list[str]:
        if self.dialect == "sqlite":
            return [
                *(f"DROP TRIGGER {name}" for name in self.contact_triggers),
                f"DROP TABLE {self.contact_fts}",
            ]
        return [f"DROP INDEX {self.contact_index}"]

    def schema_objects(self) -> tuple[set[str], dict[str, set[str]]]:
        """What :meth:`create_statements` and :meth:`contact_statements` add: the tables
        (with FTS5's shadow tables) and the indexes by table (``tests/test_migrations.py``
        expects them)."""
        if self.dialect == "sqlite":
            shadows = ("_data", "_idx", "_docsize", "_config")
            names = {f"{t}{x}" for t in (self.message_fts, self.contact_fts) for x in shadows}
            return {self.message_fts, self.contact_fts} | names, {}
        return set(), {
            self.tables.events.name: {self.text_index},
            self.tables.contacts.name: {self.contact_index},
        }

    def backfill(
        self, conn: Connection, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Index every stored message (SQLite; PostgreSQL's index is built by its
        ``CREATE INDEX``), ``_BACKFILL`` sequence numbers at a time; ``progress`` gets
        the events done and their number."""
        if self.dialect != "sqlite":
            return
        e = self.tables.events
        last = int(conn.scalar(sa.select(sa.func.max(e.c.seq))) or 0)
        for after in range(0, last, _BACKFILL):
            conn.exec_driver_sql(
                self._message_sql(ranged=True), (after, min(after + _BACKFILL, last))
            )
            if progress is not None:
                progress(min(after + _BACKFILL, last), last)
        # one b-tree segment instead of the chunks' dozens: every query reads them all
        self._optimize(conn, self.message_fts)

    def build_contacts(self, conn: Connection) -> None:
        """Fill ``contacts`` from the stored sessions and create its trigram index
        (migration 0012, after the table): on SQLite the triggers index each row as it
        goes in; PostgreSQL builds its index after the rows (faster, and with no pending
        list left behind)."""
        if self.dialect == "sqlite":
            for sql in self.contact_statements():
                conn.exec_driver_sql(sql)
            conn.exec_driver_sql(self._contacts_sql())
            self._optimize(conn, self.contact_fts)
            return
        conn.exec_driver_sql(self._contacts_sql())
        for sql in self.contact_statements():
            conn.exec_driver_sql(sql)

    @staticmethod
    def _optimize(conn: Connection, table: str) -> None:
        conn.exec_driver_sql(f"INSERT INTO {table} ({table}) VALUES ('optimize')")

    # --- the writer and purges ------------------------------------------------------------

    def _message_sql(self, *, ranged: bool) -> str:
        e = self.tables.events.name
        in_range = "e.seq > ? AND e.seq <= ? AND " if ranged else ""
        return (
            f"INSERT INTO {self.message_fts} (rowid, body) "
            f"SELECT e.seq, json_extract(e.data, '$.text') FROM {e} AS e "
            f"WHERE {in_range}e.kind = '{MESSAGE}' AND json_extract(e.data, '$.text') IS NOT NULL"
        )

    def _contacts_sql(self) -> str:
        """Every name key and phone of the stored sessions, into ``contacts``."""
        s, c = self.tables.sessions.name, self.tables.contacts.name
        return (
            f"INSERT INTO {c} (field, value) "
            f"SELECT 'name', name_key FROM {s} WHERE name_key IS NOT NULL "
            f"UNION SELECT 'phone', customer_phone FROM {s} WHERE customer_phone IS NOT NULL"
        )

    async def index_batch(
        self, conn: AsyncConnection, contacts: Contacts, after: int, last: int
    ) -> None:
        """Index what a batch wrote, in its transaction: its messages (the events with
        ``after < seq <= last``; SQLite, PostgreSQL's index follows by itself) and the
        name keys and phones of the sessions it started."""
        if self.dialect == "sqlite" and last > after:
            await conn.exec_driver_sql(self._message_sql(ranged=True), (after, last))
        rows = [{"field": "name", "value": v} for v in sorted(contacts.names)]
        rows += [{"field": "phone", "value": v} for v in sorted(contacts.phones)]
        if rows:
            await conn.execute(self._add_contacts, rows)

    def _insert_contacts(self) -> Any:
        insert: Any = sqlite_insert if self.dialect == "sqlite" else postgresql_insert
        return insert(self.tables.contacts)

    @functools.cached_property
    def _add_contacts(self) -> Any:
        return self._insert_contacts().on_conflict_do_nothing(index_elements=["field", "value"])

    async def index_contacts(self, conn: AsyncConnection, ids: list[str]) -> None:
        """Add these (written) sessions' name keys and phones to ``contacts``."""
        s = self.tables.sessions
        for chunk in _chunks(ids):
            picked = [
                sa.select(sa.literal(field), column).where(s.c.id.in_(chunk), column.is_not(None))
                for field, column in (("name", s.c.name_key), ("phone", s.c.customer_phone))
            ]
            stmt = self._insert_contacts().from_select(["field", "value"], sa.union(*picked))
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["field", "value"]))

    async def index_sessions(self, conn: AsyncConnection, ids: list[str]) -> None:
        """Index every event of these sessions (written in this transaction, as an import
        writes them: under their own sequence numbers, which need not be contiguous), and
        their contacts."""
        if self.dialect == "sqlite" and ids:
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                sql = f"{self._message_sql(ranged=False)} AND e.session_id IN ({marks})"
                await conn.exec_driver_sql(sql, tuple(chunk))
        await self.index_contacts(conn, ids)

    async def purge(self, conn: AsyncConnection, ids: list[str]) -> Contacts:
        """Remove these sessions' message index entries (SQLite: contentless FTS5 deletes
        by value), and return their contacts for :meth:`prune_contacts`; call it before
        their events and rows are deleted, in the same transaction."""
        s = self.tables.sessions
        found = Contacts(set(), set())
        for chunk in _chunks(ids):
            if self.dialect == "sqlite":
                marks = ", ".join("?" * len(chunk))
                e = self.tables.events.name
                await conn.exec_driver_sql(
                    f"INSERT INTO {self.message_fts} ({self.message_fts}, rowid, body) "
                    f"SELECT 'delete', e.seq, json_extract(e.data, '$.text') FROM {e} AS e "
                    f"WHERE e.session_id IN ({marks}) AND e.kind = '{MESSAGE}' "
                    "AND json_extract(e.data, '$.text') IS NOT NULL",
                    tuple(chunk),
                )
            rows = await conn.execute(
                sa.select(s.c.name_key, s.c.customer_phone).where(s.c.id.in_(chunk)).distinct()
            )
            for name, phone in rows:
                if name is not None:
                    found.names.add(name)
                if phone is not None:
                    found.phones.add(phone)
        return found

    async def prune_contacts(self, conn: AsyncConnection, found: Contacts) -> None:
        """Delete the contacts no session holds any more, of those :meth:`purge` returned
        (after the sessions' rows are deleted, in the same transaction)."""
        s, c = self.tables.sessions, self.tables.contacts
        for field, column, values in (
            ("name", s.c.name_key, found.names),
            ("phone", s.c.customer_phone, found.phones),
        ):
            for chunk in _chunks(sorted(values)):
                held = sa.select(sa.literal(1)).where(column == c.c.value).exists()
                await conn.execute(
                    c.delete().where(c.c.field == field, c.c.value.in_(chunk), ~held)
                )

    # --- conditions -----------------------------------------------------------------------

    def _fts_rowids(self, table: str, query: str) -> Any:
        fts = sa.table(table, sa.column("rowid"))
        return sa.select(fts.c.rowid).where(sa.literal_column(table).op("MATCH")(query))

    def message_match(self, words: list[str]) -> Any:
        """A condition on the events table: a message whose text has every word."""
        e = self.tables.events
        if self.dialect == "sqlite":
            query = " ".join(map(_fts5_term, words))
            return e.c.seq.in_(self._fts_rowids(self.message_fts, query))
        tsquery = " & ".join(map(_tsquery_term, words))
        return sa.and_(
            e.c.kind == MESSAGE,
            sa.literal_column(self.tsvector).op("@@")(
                sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), tsquery)
            ),
        )

    async def newest_first(self, conn: AsyncConnection, words: list[str]) -> Any:
        """PostgreSQL: the ORDER BY of a message search, chosen by how many messages the
        planner expects to match (its estimate from the text index's word statistics).

        Left to itself with ``ORDER BY seq DESC LIMIT n``, the planner walks the log's
        primary key backwards, testing each event, even for a word it expects in a
        handful of messages: a word no message has then reads all 10 million events
        (25 s). Many matches: that walk finds a page within a few thousand events. Few:
        ``seq + 0`` takes the primary key's order away, so the GIN index finds every
        match and the few are sorted.
        """
        e = self.tables.events
        probe = sa.select(e.c.seq).where(self.message_match(words))
        compiled = probe.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plan: Any = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}")).scalar()
        if isinstance(plan, str):
            plan = json.loads(plan)
        expected = float(plan[0]["Plan"]["Plan Rows"])
        if expected < _WALK_ROWS:
            return (e.c.seq + 0).desc()
        return e.c.seq.desc()

    def sessions_with_message(self, words: list[str]) -> Any:
        """A condition on the sessions table: the session has a message with every word."""
        s, e = self.tables.sessions, self.tables.events
        if not words:
            return sa.false()
        return s.c.id.in_(sa.select(e.c.session_id).where(self.message_match(words)))

    def _contact_query(self, term: str) -> str | None:
        """The FTS5 query narrowing a customer search to the contacts with the term's
        words (SQLite), or ``None`` where the trigram index cannot help (PostgreSQL's
        planner uses its own for the LIKE; a term without a word of three characters).
        Each word is a phrase of its own, and LIKE checks the rest."""
        words = [w for w in term.split() if len(w) >= TRIGRAM]
        if self.dialect != "sqlite" or not words:
            return None
        return " AND ".join(f'"{w.replace(chr(34), chr(34) * 2)}"' for w in words)

    def matching_contacts(self, term: str, phones: bool) -> Any:
        """The contacts (field, value) of which ``term`` (case-folded) is a substring:
        names, and phones too with ``phones``. The index finds the candidates among the
        distinct values, and ``LIKE`` keeps exactly what a scan of the sessions would."""
        c = self.tables.contacts
        q = sa.select(c.c.field, c.c.value).where(c.c.value.like(like_pattern(term), escape=ESCAPE))
        if not phones:  # (every contact is a name or a phone)
            q = q.where(c.c.field == "name")
        query = self._contact_query(term)
        if query is not None:
            q = q.where(c.c.id.in_(self._fts_rowids(self.contact_fts, query)))
        return q

    def contacts_sync(
        self, conn: sa.Connection, search: str | None, phones: bool
    ) -> Contacts | None:
        """The name keys (and with ``phones``, the phones) a customer search matches, or
        ``None`` without a search."""
        if not search:
            return None
        found = Contacts(set(), set())
        for field, value in conn.execute(self.matching_contacts(search.casefold(), phones)):
            (found.names if field == "name" else found.phones).add(value)
        return found

    def contact_match(
        self, term: str, phones: bool, found: Contacts | None = None, *, indexed: bool = True
    ) -> Any:
        """A condition on the sessions table: ``term`` (case-folded) is a substring of the
        name key, or (with ``phones``) of the phone. ``found`` is :meth:`contacts_sync`'s
        answer if it was looked up already: the sessions are then read by the matching
        values' indexes (``indexed=False``: the test is written so that no index serves
        it, ``name_key || ''``, for a page that walks the sort order's index instead);
        otherwise the values are a subquery."""
        s = self.tables.sessions
        if found is None:
            matching = self.matching_contacts(term, phones).subquery()

            def values(field: str) -> Any:
                return sa.select(matching.c.value).where(matching.c.field == field)

            by_name = s.c.name_key.in_(values("name"))
            return sa.or_(by_name, s.c.customer_phone.in_(values("phone"))) if phones else by_name
        columns = [(s.c.name_key, found.names), (s.c.customer_phone, found.phones)]
        conds = [
            self._in_values(column if indexed else column.concat(""), sorted(values))
            for column, values in columns
            if values
        ]
        return sa.or_(*conds) if conds else sa.false()

    def _in_values(self, column: Any, values: list[str]) -> Any:
        """``column`` is one of ``values``: one JSON parameter on SQLite, one array on
        PostgreSQL (a statement of constant shape, whatever their number)."""
        if self.dialect == "sqlite":
            listed: Any = sa.select(sa.column("value")).select_from(
                sa.func.json_each(sa.literal(json.dumps(values)))
            )
            return column.in_(listed)
        return column == sa.any_(sa.literal(values, type_=sa.ARRAY(column.type)))

    def indexed(self, search: str | None) -> bool:
        """Whether the trigram index answers this customer search (a word of three
        characters or more): its matches are then found without reading every row."""
        return any(len(w) >= TRIGRAM for w in (search or "").casefold().split())


def like_pattern(term: str) -> str:
    """``LIKE`` pattern of a substring (``\\`` escaping ``%``, ``_`` and itself)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    """``values`` in lists of at most ``size`` (SQLite's bound-parameter limit)."""
    return [values[i : i + size] for i in range(0, len(values), size)]


@dataclass(frozen=True, slots=True)
class Contacts:
    """Name keys and phones (as ``contacts`` holds them)."""

    names: set[str]
    phones: set[str]


class SearchReads(StorePart):
    """``search_messages``: the store's read for ``tracker.sessions.search_messages``."""

    @property
    def search_sql(self) -> SearchSQL:
        sql: SearchSQL | None = getattr(self, "_search_sql", None)
        if sql is None:
            sql = SearchSQL(self.tables, self.engine.dialect.name)
            self._search_sql = sql
        return sql

    async def search_messages(
        self,
        words: list[str],
        *,
        chatbot_ids: frozenset[str] | None,
        limit: int,
        before: int | None,
    ) -> list[MessageHit]:
        """Messages with every word, newest first (by ``seq``), at most ``limit``, only
        older than the message ``before`` if given, of these chatbots if given."""
        e = self.tables.events
        sql = self.search_sql
        if sql.dialect == "sqlite":
            # the FTS table drives, in rowid order, so the first page reads a page of rows
            fts = sa.table(sql.message_fts, sa.column("rowid"))
            match = sa.literal_column(sql.message_fts).op("MATCH")(" ".join(map(_fts5_term, words)))
            q = (
                sa.select(e.c.seq, e.c.session_id, e.c.chatbot_id, e.c.at, e.c.data)
                .select_from(fts.join(e, e.c.seq == fts.c.rowid))
                .where(match)
                .order_by(fts.c.rowid.desc())
            )
            if before is not None:
                q = q.where(fts.c.rowid < before)
        else:
            q = sa.select(e.c.seq, e.c.session_id, e.c.chatbot_id, e.c.at, e.c.data).where(
                sql.message_match(words)
            )
            if before is not None:
                q = q.where(e.c.seq < before)
        if chatbot_ids is not None:
            q = q.where(e.c.chatbot_id.in_(sorted(chatbot_ids)))
        async with self.engine.connect() as conn:
            if sql.dialect != "sqlite":
                q = q.order_by(await sql.newest_first(conn, words))
            rows = await conn.execute(q.limit(limit))
            return [MessageHit(r.seq, str(r.session_id), r.chatbot_id, r.at, r.data) for r in rows]
