"""Search: message text (words and prefixes) and the customer's name and phone (substrings).

One class a dialect makes every SQLite/PostgreSQL choice (migration ``0007`` builds the
indexes for existing rows, the writer keeps them in step in each batch's transaction):

- **SQLite**: two contentless FTS5 tables. ``<prefix>message_fts`` holds each message's
  text (``unicode61``, diacritics removed), its rowid the message's event ``seq``;
  ``<prefix>contact_fts`` holds each session's ``name_key`` and phone (``trigram``), its
  rowid the ``seq`` of the session's ``session_started`` event. The writer inserts a
  batch's rows with two ``INSERT ... SELECT`` over the batch's range of sequence numbers;
  a purge deletes them (FTS5's ``'delete'`` command, from the same stored values) before
  the events go.
- **PostgreSQL**: indexes only, which PostgreSQL keeps in step by itself: a GIN index on
  ``to_tsvector('simple', data->>'text')`` of the message events, and ``pg_trgm`` GIN
  indexes on ``name_key`` and ``customer_phone``.

Message queries are words, all of which a message must have, case- (and on SQLite
diacritic-) insensitively: ``refund`` finds "Refund!" but not "refunds"; a word ending in
``*`` is a prefix (``refund*`` finds both). Whole words stream from the index newest first,
so a first page costs the same for a rare word and for one in every other message; a
prefix merges the lists of every word it begins before the first row comes out (FTS5
without a prefix index, GIN's partial match), so it costs with the words it covers.

The customer search keeps its meaning (a substring of the case-folded name or of the
phone); a term of three characters or more is looked up in the trigram index and checked
again with ``LIKE``, a shorter one scans.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..events import MESSAGE, SESSION_STARTED
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
        self.name_index = f"ix_{p}sessions_name_trgm"
        self.phone_index = f"ix_{p}sessions_phone_trgm"
        e = tables.events.name
        # the PostgreSQL index's expression, written as every query must write it
        self.tsvector = f"to_tsvector('simple'::regconfig, ({e}.data ->> 'text'::text))"

    # --- schema (migration 0007) ----------------------------------------------------------

    def create_statements(self) -> list[str]:
        """The DDL creating the search indexes (their backfill is :meth:`backfill`)."""
        s, e = self.tables.sessions.name, self.tables.events.name
        if self.dialect == "sqlite":
            return [
                f"CREATE VIRTUAL TABLE {self.message_fts} USING fts5(body, content='', "
                "tokenize='unicode61 remove_diacritics 2')",
                f"CREATE VIRTUAL TABLE {self.contact_fts} USING fts5(name, phone, "
                "content='', tokenize='trigram')",
            ]
        return [
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            # not partial (WHERE kind = 'message'): the planner ignores a partial index's
            # statistics, and without them it guesses a word's frequency (see
            # SearchReads.search_messages); the other events have no text, no entries
            f"CREATE INDEX {self.text_index} ON {e} USING gin "
            f"(to_tsvector('simple'::regconfig, (data ->> 'text'::text)))",
            f"CREATE INDEX {self.name_index} ON {s} USING gin (name_key gin_trgm_ops)",
            f"CREATE INDEX {self.phone_index} ON {s} USING gin (customer_phone gin_trgm_ops)",
            # the indexes' statistics (word frequencies) at once, not at autovacuum's leisure
            f"ANALYZE {e}",
            f"ANALYZE {s}",
        ]

    def drop_statements(self) -> list[str]:
        if self.dialect == "sqlite":
            return [f"DROP TABLE {self.message_fts}", f"DROP TABLE {self.contact_fts}"]
        return [
            f"DROP INDEX {self.text_index}",
            f"DROP INDEX {self.name_index}",
            f"DROP INDEX {self.phone_index}",
        ]

    def schema_objects(self) -> tuple[set[str], dict[str, set[str]]]:
        """What :meth:`create_statements` adds: the tables (with FTS5's shadow tables)
        and the indexes by table (``tests/test_migrations.py`` expects them)."""
        if self.dialect == "sqlite":
            shadows = ("_data", "_idx", "_docsize", "_config")
            names = {f"{t}{x}" for t in (self.message_fts, self.contact_fts) for x in shadows}
            return {self.message_fts, self.contact_fts} | names, {}
        return set(), {
            self.tables.events.name: {self.text_index},
            self.tables.sessions.name: {self.name_index, self.phone_index},
        }

    def backfill(
        self, conn: Connection, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Index every stored message and contact (SQLite; PostgreSQL's indexes are
        built by their ``CREATE INDEX``), ``_BACKFILL`` sequence numbers at a time;
        ``progress`` gets the events done and their number."""
        if self.dialect != "sqlite":
            return
        e = self.tables.events
        last = int(conn.scalar(sa.select(sa.func.max(e.c.seq))) or 0)
        for after in range(0, last, _BACKFILL):
            for sql in self._index_sql(ranged=True):
                conn.exec_driver_sql(sql, (after, min(after + _BACKFILL, last)))
            if progress is not None:
                progress(min(after + _BACKFILL, last), last)
        for table in (self.message_fts, self.contact_fts):
            # one b-tree segment instead of the chunks' dozens: every query reads them all
            conn.exec_driver_sql(f"INSERT INTO {table} ({table}) VALUES ('optimize')")

    # --- the writer and purges ------------------------------------------------------------

    def _index_sql(self, *, ranged: bool) -> list[str]:
        s, e = self.tables.sessions.name, self.tables.events.name
        in_range = "e.seq > ? AND e.seq <= ? AND " if ranged else ""
        return [
            f"INSERT INTO {self.message_fts} (rowid, body) "
            f"SELECT e.seq, json_extract(e.data, '$.text') FROM {e} AS e "
            f"WHERE {in_range}e.kind = '{MESSAGE}' AND json_extract(e.data, '$.text') IS NOT NULL",
            f"INSERT INTO {self.contact_fts} (rowid, name, phone) "
            f"SELECT e.seq, s.name_key, s.customer_phone FROM {e} AS e JOIN {s} AS s "
            f"ON s.id = e.session_id WHERE {in_range}e.kind = '{SESSION_STARTED}' "
            "AND (s.name_key IS NOT NULL OR s.customer_phone IS NOT NULL)",
        ]

    async def index_batch(self, conn: AsyncConnection, after: int, last: int) -> None:
        """Index the events with ``after < seq <= last`` (a batch's, already written, as
        are its sessions), in the batch's transaction. Nothing to do on PostgreSQL."""
        if self.dialect != "sqlite" or last <= after:
            return
        for sql in self._index_sql(ranged=True):
            await conn.exec_driver_sql(sql, (after, last))

    async def index_sessions(self, conn: AsyncConnection, ids: list[str]) -> None:
        """Index every event of these sessions (written in this transaction, as an import
        writes them: under their own sequence numbers, which need not be contiguous).
        Nothing to do on PostgreSQL."""
        if self.dialect != "sqlite" or not ids:
            return
        marks = ", ".join("?" * len(ids))
        message, _ = self._index_sql(ranged=False)
        await conn.exec_driver_sql(f"{message} AND e.session_id IN ({marks})", tuple(ids))
        await conn.exec_driver_sql(self._contact_of_sessions(marks), tuple(ids))

    def _contact_of_sessions(self, marks: str, *, delete: bool = False) -> str:
        """Insert (or delete) the contact entries of the sessions ``marks`` stands for. A
        contact entry is keyed by the smallest sequence number of its session's events:
        the writer's key, its ``session_started`` event, is always the session's first
        event; an imported session (whose log holds no start) is keyed the same way."""
        s, e = self.tables.sessions.name, self.tables.events.name
        verb = "'delete', " if delete else ""
        into = f"{self.contact_fts}, " if delete else ""
        return (
            f"INSERT INTO {self.contact_fts} ({into}rowid, name, phone) "
            f"SELECT {verb}MIN(e.seq), s.name_key, s.customer_phone FROM {e} AS e JOIN {s} AS s "
            f"ON s.id = e.session_id WHERE e.session_id IN ({marks}) "
            "AND (s.name_key IS NOT NULL OR s.customer_phone IS NOT NULL) GROUP BY s.id"
        )

    async def purge(self, conn: AsyncConnection, ids: list[str]) -> None:
        """Remove the index entries of these sessions; call it before their events and
        rows are deleted, in the same transaction (contentless FTS5 deletes by value)."""
        if self.dialect != "sqlite" or not ids:
            return
        e = self.tables.events.name
        marks = ", ".join("?" * len(ids))
        await conn.exec_driver_sql(
            f"INSERT INTO {self.message_fts} ({self.message_fts}, rowid, body) "
            f"SELECT 'delete', e.seq, json_extract(e.data, '$.text') FROM {e} AS e "
            f"WHERE e.session_id IN ({marks}) AND e.kind = '{MESSAGE}' "
            "AND json_extract(e.data, '$.text') IS NOT NULL",
            tuple(ids),
        )
        await conn.exec_driver_sql(self._contact_of_sessions(marks, delete=True), tuple(ids))

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

    def _contact_query(self, term: str, phones: bool) -> str | None:
        """The FTS5 query finding the candidates of a customer search, or ``None`` where
        the trigram index cannot help (PostgreSQL's planner uses its own for the LIKEs; a
        term without a word of three characters). Each word is a phrase of its own: fewer
        and rarer trigrams than the whole term's, and LIKE checks the rest."""
        words = [w for w in term.split() if len(w) >= TRIGRAM]
        if self.dialect != "sqlite" or not words:
            return None
        columns = "{name phone}" if phones else "name"
        return " AND ".join(f'{columns} : "{w.replace(chr(34), chr(34) * 2)}"' for w in words)

    def _candidates(self, query: str) -> Any:
        e = self.tables.events
        return sa.select(e.c.session_id).where(
            e.c.seq.in_(self._fts_rowids(self.contact_fts, query))
        )

    async def contact_candidates(
        self, conn: AsyncConnection, search: str | None, phones: bool
    ) -> list[str] | None:
        """The ids of the sessions the trigram index finds for a customer search (a
        superset: :meth:`contact_match` checks them), or ``None`` without a usable query."""
        query = self._contact_query(search.casefold(), phones) if search else None
        if query is None:
            return None
        return [r[0] for r in await conn.execute(self._candidates(query))]

    def contact_candidates_sync(
        self, conn: sa.Connection, search: str | None, phones: bool
    ) -> list[str] | None:
        """:meth:`contact_candidates` on a synchronous connection (the list reads')."""
        query = self._contact_query(search.casefold(), phones) if search else None
        if query is None:
            return None
        return [r[0] for r in conn.execute(self._candidates(query))]

    def contact_match(
        self, term: str, pattern: str, phones: bool, found: list[str] | None = None
    ) -> Any:
        """A condition on the sessions table: ``term`` (case-folded) is a substring of the
        name key, or (with ``phones``) of the phone; ``pattern`` is its ``LIKE`` form;
        ``found`` the :meth:`contact_candidates` if they were looked up already."""
        s = self.tables.sessions
        by_name = s.c.name_key.like(pattern, escape=ESCAPE)
        by_phone = s.c.customer_phone.like(pattern, escape=ESCAPE)
        exact = sa.or_(by_name, by_phone) if phones else by_name
        query = self._contact_query(term, phones)
        if query is None:
            return exact  # PostgreSQL's planner takes the trigram indexes for the LIKEs
        # the index finds the candidates; LIKE keeps exactly what the scan would have
        if found is not None:
            ids: Any = sa.select(sa.column("value")).select_from(
                sa.func.json_each(sa.literal(json.dumps(found)))
            )
            return sa.and_(s.c.id.in_(ids), exact)
        return sa.and_(s.c.id.in_(self._candidates(query)), exact)


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
