"""The library's tables, built by one function that makes every SQLite/PostgreSQL choice.

This is the schema at the newest migration; ``migrations/versions`` holds how each
revision got there. Keep the two in step (``tests/test_migrations.py`` compares them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles

DEFAULT_PREFIX = "sessiontrack_"
KEY = ("chatbot_id", "metric", "grain", "bucket", "version", "dim")
"""The leading primary key columns of ``an_counts`` and ``an_bins``."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text (which sorts correctly)
    and gets its ``tzinfo`` back on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: sessiontrack stores aware timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def id_type() -> sa.types.TypeEngine[str]:
    """Session ids: native ``uuid`` on PostgreSQL, their 36-character text on SQLite."""
    return sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")


class duration_seconds(sa.sql.functions.FunctionElement[float]):
    """``completed_at - started_at`` in seconds, as each backend computes it: the same
    expression in migration 0006's index and in the list filter, so the planner matches
    them (SQLite's date functions work in whole milliseconds)."""

    type = sa.Numeric(asdecimal=False)  # what PostgreSQL's EXTRACT returns
    inherit_cache = True


@compiles(duration_seconds, "postgresql")
def _duration_pg(element: duration_seconds, compiler: Any, **kw: Any) -> str:
    done, started = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM ({done} - {started}))"


@compiles(duration_seconds)
def _duration_sqlite(element: duration_seconds, compiler: Any, **kw: Any) -> str:
    done, started = (compiler.process(c, **kw) for c in element.clauses)
    return f"round((julianday({done}) - julianday({started})) * 86400.0, 3)"


def filter_indexes(p: str, sessions: sa.Table) -> list[sa.Index]:
    """The indexes of the advanced list filters and of the updatedAt sorts (migration
    0006_filters): see docs/http-api.md for which query each serves."""
    c = sessions.c
    erred = sa.text("error_count > 0")
    return [
        sa.Index(f"ix_{p}sessions_status_updated", c.status, c.updated_at, c.id),
        sa.Index(f"ix_{p}sessions_chatbot_updated", c.chatbot_id, c.updated_at, c.id),
        sa.Index(
            f"ix_{p}sessions_chatbot_status_updated", c.chatbot_id, c.status, c.updated_at, c.id
        ),
        sa.Index(f"ix_{p}sessions_reason", c.completion_reason, c.started_at, c.id),
        sa.Index(f"ix_{p}sessions_messages", c.message_count, c.started_at),
        sa.Index(
            f"ix_{p}sessions_duration",
            # not partial: PostgreSQL keeps the statistics of a partial index's expression
            # but does not use them; the duration of an active session is NULL anyway
            duration_seconds(c.completed_at, c.started_at),
        ),
        sa.Index(
            f"ix_{p}sessions_active_started",
            c.started_at,
            sqlite_where=sa.text("completed_at IS NULL"),
            postgresql_where=sa.text("completed_at IS NULL"),
        ),
        sa.Index(
            f"ix_{p}sessions_errors",
            c.started_at,
            c.id,
            sqlite_where=erred,
            postgresql_where=erred,
        ),
        sa.Index(
            f"ix_{p}sessions_variables",
            c.variables,
            postgresql_using="gin",
            postgresql_ops={"variables": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    ]


def contact_indexes(p: str, sessions: sa.Table) -> list[sa.Index]:
    """The sessions by customer name key and by phone (migration 0012_contacts): a
    customer search finds the matching values in ``contacts``, then their sessions here."""
    c = sessions.c
    return [
        sa.Index(f"ix_{p}sessions_name_key", c.name_key),
        sa.Index(f"ix_{p}sessions_phone", c.customer_phone),
    ]


def contacts_table(md: sa.MetaData, p: str) -> sa.Table:
    """Every distinct customer name key and phone the sessions hold, once each
    (migration 0012_contacts): what the customer search's trigram index covers. On 1M
    sessions with 864 distinct names, a name's trigrams were each in tens of thousands of
    session entries; here each is in a few distinct names. See store/_search.py."""
    return sa.Table(
        f"{p}contacts",
        md,
        # SQLite: INTEGER PRIMARY KEY, the FTS5 rowid, which VACUUM keeps
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("field", sa.String(5), nullable=False),  # "name" (the name key) | "phone"
        sa.Column("value", sa.String(500), nullable=False),
        sa.Index(f"ux_{p}contacts", "field", "value", unique=True),
    )


def total_columns() -> list[sa.Column[Any]]:
    """The session's totals of LLM and tool calls (migration 0004 adds them)."""
    return [
        sa.Column("input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost", sa.Float(), nullable=False, server_default="0"),
        sa.Column("llm_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("tool_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error_count", sa.Integer(), nullable=False, server_default="0"),
    ]


@dataclass(frozen=True)
class Tables:
    metadata: sa.MetaData
    chatbots: sa.Table
    flows: sa.Table
    sessions: sa.Table
    events: sa.Table
    counts: sa.Table
    state: sa.Table
    an_counts: sa.Table
    an_bins: sa.Table
    an_paths: sa.Table
    an_traces: sa.Table
    tags: sa.Table
    """Migration 0008_filter_plans: a row per (session, executed node or scalar variable)."""
    cursors: sa.Table
    """Migration 0009_notify: the named cursors of the log consumers (consumer.py)."""
    webhooks: sa.Table
    """Migration 0009_notify: the webhook subscriptions (sessiontrack.notify)."""
    deliveries: sa.Table
    """Migration 0009_notify: the webhooks' delivery log (one row per attempt)."""
    audit: sa.Table
    """Migration 0010_audit: a row per erasure (and per audited read, when asked for)."""
    audit_key: sa.Table
    """Migration 0010_audit: the database's HMAC key for the audit's key hashes."""
    alert_rules: sa.Table
    """Migration 0011_alerts: the alert rules (sessiontrack.notify, code's and the API's)."""
    alerts: sa.Table
    """Migration 0011_alerts: the alerts fired, one per rule and key."""
    alert_deliveries: sa.Table
    """Migration 0011_alerts: the alerts' outbox, a row per alert and target."""
    contacts: sa.Table
    """Migration 0012_contacts: each distinct customer name key and phone, once."""
    prefix: str

    @property
    def version_table(self) -> str:
        return f"{self.prefix}alembic_version"


@functools.lru_cache(maxsize=32)
def make_tables(prefix: str = DEFAULT_PREFIX) -> Tables:
    """The library's tables with ``prefix`` on every table and index name. Built once per
    prefix (the store and several migrations ask for them; building them costs about as
    much as creating them in a new SQLite file) and never changed afterwards."""
    if not prefix.replace("_", "").isalnum():
        raise ValueError(f"table prefix must be letters, digits and underscores, got {prefix!r}")
    md = sa.MetaData()
    p = prefix
    chatbots = sa.Table(
        f"{p}chatbots",
        md,
        sa.Column("chatbot_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("current_version", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    flows = sa.Table(
        f"{p}flows",
        md,
        sa.Column("chatbot_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("flow", json_type(), nullable=False),
        sa.Column("registered_at", UTCDateTime(), nullable=False),
    )
    active = sa.text("completed_at IS NULL")
    done = sa.text("completed_at IS NOT NULL")
    sessions = sa.Table(
        f"{p}sessions",
        md,
        sa.Column("id", id_type(), primary_key=True),
        sa.Column("chatbot_id", sa.String(200), nullable=False),
        sa.Column("flow_version", sa.String(64)),
        sa.Column("conversation_id", sa.String(200)),
        sa.Column("customer_phone", sa.String(64)),
        sa.Column("customer_name", sa.String(500)),
        sa.Column("name_key", sa.String(500)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("current_node_id", sa.String(200)),
        sa.Column("current_node_label", sa.String(500)),
        sa.Column("variables", json_type(), nullable=False),
        sa.Column("metadata", json_type(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime()),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("idle_timeout_s", sa.Integer()),
        sa.Column("completion_reason", sa.String(200)),
        sa.Column("node_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("message_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0"),
        *total_columns(),
        sa.Index(f"ix_{p}sessions_status_started", "status", "started_at", "id"),
        sa.Index(f"ix_{p}sessions_chatbot_status", "chatbot_id", "status", "started_at"),
        sa.Index(f"ix_{p}sessions_chatbot_started", "chatbot_id", "started_at", "id"),
        sa.Index(f"ix_{p}sessions_started", "started_at", "id"),
        sa.Index(f"ix_{p}sessions_updated", "updated_at", "id"),
        sa.Index(f"ix_{p}sessions_conversation", "conversation_id"),
        sa.Index(
            f"ix_{p}sessions_completed", "completed_at", sqlite_where=done, postgresql_where=done
        ),
        sa.Index(
            f"ix_{p}sessions_expiry", "expires_at", sqlite_where=active, postgresql_where=active
        ),
    )
    filter_indexes(p, sessions)  # they attach themselves to the table
    contact_indexes(p, sessions)
    has_mid = sa.text("message_id IS NOT NULL")
    ran = sa.text("kind = 'node_executed'")
    events = sa.Table(
        f"{p}events",
        md,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("session_id", id_type(), nullable=False),
        sa.Column("chatbot_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("flow_version", sa.String(64)),
        sa.Column("node_id", sa.String(200)),
        sa.Column("message_id", sa.String(200)),
        sa.Column("data", json_type(), nullable=False),
        sa.Index(f"ix_{p}events_session_seq", "session_id", "seq"),
        sa.Index(
            f"ux_{p}events_message",
            "message_id",
            "session_id",
            unique=True,
            sqlite_where=has_mid,
            postgresql_where=has_mid,
        ),
        # migration 0006_filters: the sessions that executed a node (nodeId)
        sa.Index(
            f"ix_{p}events_node", "node_id", "session_id", sqlite_where=ran, postgresql_where=ran
        ),
    )
    counts = sa.Table(
        f"{p}counts",
        md,
        sa.Column("chatbot_id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    state = sa.Table(
        f"{p}state",
        md,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    an = analytics_tables(md, p)
    tags = tags_table(md, p)
    notify = notify_tables(md, p)
    audit = audit_tables(md, p)
    alerts = alert_tables(md, p)
    contacts = contacts_table(md, p)
    return Tables(
        md,
        chatbots,
        flows,
        sessions,
        events,
        counts,
        state,
        *an,
        tags,
        *notify,
        *audit,
        *alerts,
        contacts,
        prefix,
    )


def _serial() -> sa.Column[Any]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def alert_tables(md: sa.MetaData, p: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    """The alert rules, the alerts they fired, and the alerts' outbox (migration
    0011_alerts; store/_alerts.py, notify/_alerting.py). ``alerts`` is unique per rule and
    ``key`` (the session, the session's status spell, the node's crossing), so an event
    evaluated twice (at least once) fires once."""
    rules = sa.Table(
        f"{p}alert_rules",
        md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),  # session_ended | stuck | node_rate
        sa.Column("chatbot_ids", json_type(), nullable=False),  # [] = every chatbot
        sa.Column("params", json_type(), nullable=False),
        sa.Column("targets", json_type(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),  # code | api
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    alerts = sa.Table(
        f"{p}alerts",
        md,
        _serial(),
        sa.Column("rule_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("chatbot_id", sa.String(200), nullable=False),
        sa.Column("session_id", id_type()),
        sa.Column("node_id", sa.String(200)),
        sa.Column("title", sa.String(1000), nullable=False),
        sa.Column("link", sa.String(2000), nullable=False),
        sa.Column("details", json_type(), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime()),
        sa.Index(f"ux_{p}alerts_rule_key", "rule_id", "key", unique=True),
        sa.Index(f"ix_{p}alerts_fired", "fired_at", "id"),
        sa.Index(f"ix_{p}alerts_chatbot", "chatbot_id", "id"),
    )
    pending = sa.text("state = 'pending'")
    outbox = sa.Table(
        f"{p}alert_deliveries",
        md,
        _serial(),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),  # in the rule's targets
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("target", json_type(), nullable=False),  # as it was when the alert fired
        sa.Column("state", sa.String(16), nullable=False),  # pending | delivered | failed
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_at", UTCDateTime(), nullable=False),
        sa.Column("error", sa.String(1000)),
        sa.Column("delivered_at", UTCDateTime()),
        sa.Index(f"ux_{p}alert_deliveries_target", "alert_id", "position", unique=True),
        sa.Index(
            f"ix_{p}alert_deliveries_due",
            "next_at",
            sqlite_where=pending,
            postgresql_where=pending,
        ),
    )
    return rules, alerts, outbox


def audit_tables(md: sa.MetaData, p: str) -> tuple[sa.Table, sa.Table]:
    """The audit (migration 0010_audit): ``action`` is ``erase`` (``key_kind``,
    ``key_hash``: the HMAC-SHA256 of the erased key, never the key; ``counts``) or
    ``read`` (``session_id``, ``what``); ``audit_key`` holds the random key of those
    HMACs that the migration made (store/_erase.py, docs/privacy.md)."""
    audit = sa.Table(
        f"{p}audit",
        md,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("principal", sa.String(200)),
        sa.Column("key_kind", sa.String(32)),
        sa.Column("key_hash", sa.String(64)),
        sa.Column("session_id", id_type()),
        sa.Column("what", sa.String(32)),
        sa.Column("counts", json_type()),
        sa.Index(f"ix_{p}audit_action_id", "action", "id"),
        sa.Index(f"ix_{p}audit_key_hash", "key_hash"),
    )
    key = sa.Table(
        f"{p}audit_key",
        md,
        sa.Column("id", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    return audit, key


def notify_tables(md: sa.MetaData, p: str) -> tuple[sa.Table, sa.Table, sa.Table]:
    """The log consumers' cursors, the webhook subscriptions and their delivery log
    (migration 0009_notify creates them)."""
    cursors = sa.Table(
        f"{p}cursors",
        md,
        # "webhook:<id>", "otel", "alerts": the last sequence number the consumer handled
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    webhooks = sa.Table(
        f"{p}webhooks",
        md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("description", sa.String(500), nullable=False, server_default=""),
        sa.Column("events", json_type(), nullable=False),  # wire names; [] = every kind
        sa.Column("chatbot_ids", json_type(), nullable=False),  # [] = every chatbot
        sa.Column("batch", sa.Integer(), nullable=False, server_default="100"),
        sa.Column("state", sa.String(20), nullable=False),  # active | paused
        sa.Column("paused_reason", sa.String(1000)),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    deliveries = sa.Table(
        f"{p}webhook_deliveries",
        md,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("webhook_id", sa.String(36), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.String(1000)),
        sa.Index(f"ix_{p}webhook_deliveries_hook", "webhook_id", "id"),
        sa.Index(f"ix_{p}webhook_deliveries_at", "at"),
    )
    return cursors, webhooks, deliveries


def tags_table(md: sa.MetaData, p: str) -> sa.Table:
    """The sessions' tags (migration 0008_filter_plans): ``n<node id>`` for each node a
    session executed, ``v<name>=<value>`` for each top-level scalar variable (store/_tags.py
    encodes them), with the session's ``started_at`` and ``chatbot_id`` so that a list
    filtered by one tag is read in ``started_at`` order from the tag's index."""
    return sa.Table(
        f"{p}tags",
        md,
        sa.Column("session_id", id_type(), primary_key=True),
        sa.Column("tag", sa.String(), primary_key=True),
        sa.Column("chatbot_id", sa.String(200), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Index(f"ix_{p}tags_started", "tag", "started_at", "session_id"),
        sa.Index(f"ix_{p}tags_chatbot", "tag", "chatbot_id", "started_at", "session_id"),
        sqlite_with_rowid=False,
    )


def analytics_tables(md: sa.MetaData, p: str) -> tuple[sa.Table, sa.Table, sa.Table, sa.Table]:
    """The analytics rollups (migration 0005 creates them): additive counts and sketch
    bins per (chatbot, metric, grain, bucket, version, dim), the path dictionary, and
    each session's analytics state. See ``sessiontrack/analytics/_rollup.py``."""

    def key() -> list[sa.Column[Any]]:
        # the primary key (KEY) is each table's PrimaryKeyConstraint
        return [
            sa.Column("chatbot_id", sa.String(200), nullable=False),
            sa.Column("metric", sa.String(32), nullable=False),
            # 0: the UTC quarter-hour of the session's start, 1: its UTC day (epoch seconds)
            sa.Column("grain", sa.SmallInteger(), nullable=False, autoincrement=False),
            sa.Column("bucket", sa.BigInteger(), nullable=False, autoincrement=False),
            sa.Column("version", sa.String(64), nullable=False),
            sa.Column("dim", sa.Text(), nullable=False),
        ]

    counts = sa.Table(
        f"{p}an_counts",
        md,
        *key(),
        sa.Column("value", sa.Float(), nullable=False),
        # PostgreSQL: the value in the key's index too, so the reads' sums are index-only
        # scans (no heap block per row); SQLite: looked up and updated by key only, one
        # b-tree holding the rows in key order, not two
        sa.PrimaryKeyConstraint(*KEY, postgresql_include=["value"]),
        sqlite_with_rowid=False,
    )
    bins = sa.Table(
        f"{p}an_bins",
        md,
        *key(),
        sa.Column("bin", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, "bin", postgresql_include=["n"]),
        sqlite_with_rowid=False,
    )
    paths = sa.Table(
        f"{p}an_paths",
        md,
        sa.Column("chatbot_id", sa.String(200), primary_key=True),
        sa.Column("path_key", sa.String(32), primary_key=True),
        sa.Column("nodes", json_type(), nullable=False),
        sqlite_with_rowid=False,
    )
    traces = sa.Table(
        f"{p}an_traces",
        md,
        sa.Column("session_id", id_type(), primary_key=True),
        sa.Column("chatbot_id", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("path_key", sa.String(32), nullable=False),
        sa.Column("state", json_type(), nullable=False),
        sa.Index(f"ix_{p}an_traces_path", "chatbot_id", "path_key", "started_at"),
        sa.Index(f"ix_{p}an_traces_started", "chatbot_id", "started_at"),
    )
    return counts, bins, paths, traces
