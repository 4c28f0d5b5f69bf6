"""The schema at the baseline revision (0001), frozen: what the store's
``create_all`` and hand-written fixes made before Alembic (issue 16).

Migrations never import the live models (:mod:`responder.store`), which move
on; the baseline revision creates exactly these tables, and
:func:`adopt` brings a database made by the pre-Alembic code to the same
schema so that it can be stamped at the baseline.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import inspect, text

# Integer primary keys: BIGINT on PostgreSQL, INTEGER on SQLite (the rowid).
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# responder.store.UTCDateTime stores through this type.
TS = sa.DateTime(timezone=True)

metadata = sa.MetaData()


def _index(name: str, table: str, columns: list[str], **kw: Any) -> None:
    t = metadata.tables[table]
    sa.Index(name, *(t.c[c] for c in columns), **kw)


sa.Table(
    "events",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("t0", TS, nullable=False),
    sa.Column("t0_post_id", sa.String(length=80), nullable=False),
    sa.Column("t0_precision", sa.String(length=10), nullable=False),
    sa.Column("t0_crawl_lag_s", sa.Float(), nullable=True),
    sa.Column("last_published_at", TS, nullable=False),
    sa.Column("place_code", sa.String(length=12), nullable=True),
    sa.Column("place_label", sa.String(length=200), nullable=False),
    sa.Column("place", sa.JSON(), nullable=False),
    sa.Column("severity", sa.String(length=8), nullable=False),
    sa.Column("severity_reason", sa.Text(), nullable=False),
    sa.Column("is_emergency", sa.Boolean(), nullable=False),
    sa.Column("event_type", sa.String(length=40), nullable=True),
    sa.Column("event_subtype", sa.String(length=40), nullable=True),
    sa.Column("title", sa.Text(), nullable=False),
    sa.Column("status", sa.String(length=10), nullable=False),
    sa.Column("post_count", sa.Integer(), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("rev", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    sa.PrimaryKeyConstraint("id"),
)
_index("ix_events_last_published_at", "events", ["last_published_at"], unique=False)
_index("ix_events_place_code", "events", ["place_code"], unique=False)
_index("ix_events_rev", "events", ["rev"], unique=False)
_index("ix_events_status", "events", ["status"], unique=False)
_index("ix_events_t0", "events", ["t0"], unique=False)
sa.Table(
    "saved_searches",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("name", sa.String(length=100), nullable=False),
    sa.Column("params", sa.JSON(), nullable=False),
    sa.Column("created_by", sa.String(length=100), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("jurisdiction", sa.String(length=12), server_default=sa.text("''"), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("name"),
)
sa.Table(
    "search_progress",
    metadata,
    sa.Column("name", sa.String(length=40), nullable=False),
    sa.Column("last_post_id", sa.BigInteger(), nullable=False),
    sa.Column("last_audit_id", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("name"),
)
sa.Table(
    "source_health",
    metadata,
    sa.Column("source_id", sa.String(length=100), nullable=False),
    sa.Column("source_name", sa.String(length=200), nullable=False),
    sa.Column("state", sa.String(length=20), nullable=False),
    sa.Column("checked_at", TS, nullable=False),
    sa.Column("last_success_at", TS, nullable=True),
    sa.Column("newest_item_at", TS, nullable=True),
    sa.Column("lag_s", sa.Float(), nullable=True),
    sa.Column("dark_s", sa.Float(), nullable=True),
    sa.Column("error_rate", sa.Float(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("alert", sa.Boolean(), nullable=False),
    sa.Column("problem_since", TS, nullable=True),
    sa.Column("alerted", sa.JSON(), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("source_id"),
)
sa.Table(
    "users",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("username", sa.String(length=64), nullable=False),
    sa.Column("display_name", sa.String(length=100), nullable=False),
    sa.Column("role", sa.String(length=20), nullable=False),
    sa.Column("jurisdiction", sa.String(length=12), nullable=False),
    sa.Column("department", sa.String(length=100), nullable=True),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("password_hash", sa.String(length=255), nullable=False),
    sa.Column("must_change", sa.Boolean(), nullable=False),
    sa.Column("failed_count", sa.Integer(), nullable=False),
    sa.Column("failed_since", TS, nullable=True),
    sa.Column("locked_until", TS, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("changed_at", TS, nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("username"),
)
sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("prefix", sa.String(length=20), nullable=False),
    sa.Column("secret_hash", sa.String(length=64), nullable=False),
    sa.Column("user_id", PK, nullable=False),
    sa.Column("name", sa.String(length=100), nullable=False),
    sa.Column("created_by", sa.String(length=100), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_used_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("prefix"),
)
_index("ix_api_tokens_user_id", "api_tokens", ["user_id"], unique=False)
sa.Table(
    "posts",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("post_id", sa.String(length=80), nullable=False),
    sa.Column("source_id", sa.String(length=200), nullable=False),
    sa.Column("source_kind", sa.String(length=20), nullable=False),
    sa.Column("source_name", sa.String(length=200), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("title", sa.Text(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("author", sa.String(length=200), nullable=False),
    sa.Column("published_at", TS, nullable=False),
    sa.Column("precision", sa.String(length=10), nullable=False),
    sa.Column("fetched_at", TS, nullable=False),
    sa.Column("parent_id", sa.String(length=80), nullable=True),
    sa.Column("relevant", sa.Boolean(), nullable=False),
    sa.Column("place_code", sa.String(length=12), nullable=True),
    sa.Column("place_label", sa.String(length=200), nullable=False),
    sa.Column("severity", sa.String(length=8), nullable=False),
    sa.Column("is_emergency", sa.Boolean(), nullable=False),
    sa.Column("event_type", sa.String(length=40), nullable=True),
    sa.Column("event_subtype", sa.String(length=40), nullable=True),
    sa.Column("deaths", sa.Integer(), nullable=True),
    sa.Column("injured", sa.Integer(), nullable=True),
    sa.Column("topic", sa.String(length=40), nullable=True),
    sa.Column("department", sa.String(length=100), nullable=True),
    sa.Column("event_id", PK, nullable=True),
    sa.Column("stored_at", TS, nullable=False),
    sa.Column("raw", sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(["event_id"], ["events.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("post_id"),
)
_index("ix_posts_event_id", "posts", ["event_id"], unique=False)
_index("ix_posts_parent_id", "posts", ["parent_id"], unique=False)
_index("ix_posts_place_code", "posts", ["place_code"], unique=False)
_index("ix_posts_published_at", "posts", ["published_at"], unique=False)
sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("user_id", PK, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("remote_addr", sa.String(length=100), nullable=True),
    sa.Column("csrf_token", sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], ),
    sa.PrimaryKeyConstraint("id"),
)
_index("ix_sessions_user_id", "sessions", ["user_id"], unique=False)
sa.Table(
    "tickets",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("event_id", PK, nullable=False),
    sa.Column("status", sa.String(length=14), nullable=False),
    sa.Column("severity", sa.String(length=8), nullable=False),
    sa.Column("severity_reason", sa.Text(), nullable=False),
    sa.Column("place_label", sa.String(length=200), nullable=False),
    sa.Column("place_code", sa.String(length=12), nullable=True),
    sa.Column("department", sa.String(length=100), nullable=True),
    sa.Column("responders", sa.JSON(), nullable=False),
    sa.Column("rule", sa.String(length=40), nullable=False),
    sa.Column("rule_reason", sa.Text(), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("acknowledged_at", TS, nullable=True),
    sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
    sa.Column("acknowledged_from", sa.String(length=100), nullable=True),
    sa.Column("closed_at", TS, nullable=True),
    sa.Column("outcome", sa.String(length=20), nullable=True),
    sa.Column("outcome_note", sa.Text(), nullable=True),
    sa.Column("closed_by", sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(["event_id"], ["events.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("event_id"),
)
_index("ix_tickets_place_code", "tickets", ["place_code"], unique=False)
_index("ix_tickets_status", "tickets", ["status"], unique=False)
sa.Table(
    "audit",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("ticket_id", PK, nullable=True),
    sa.Column("event_id", PK, nullable=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.String(length=100), nullable=False),
    sa.Column("action", sa.String(length=40), nullable=False),
    sa.Column("detail", sa.JSON(), nullable=False),
    sa.Column("remote_addr", sa.String(length=100), nullable=True),
    sa.Column("outcome", sa.String(length=20), server_default=sa.text("'ok'"), nullable=False),
    sa.Column("actor_role", sa.String(length=20), nullable=True),
    sa.Column("actor_jurisdiction", sa.String(length=12), nullable=True),
    sa.Column("place_code", sa.String(length=12), nullable=True),
    sa.ForeignKeyConstraint(["event_id"], ["events.id"], ),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ),
    sa.PrimaryKeyConstraint("id"),
)
_index("ix_audit_event_id", "audit", ["event_id"], unique=False)
_index("ix_audit_ticket_id", "audit", ["ticket_id"], unique=False)
sa.Table(
    "deadlines",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("ticket_id", PK, nullable=False),
    sa.Column("milestone", sa.String(length=40), nullable=False),
    sa.Column("rule", sa.String(length=40), nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("due_at", TS, nullable=False),
    sa.Column("fired_at", TS, nullable=True),
    sa.Column("met_at", TS, nullable=True),
    sa.Column("met_by", sa.String(length=100), nullable=True),
    sa.Column("evidence_url", sa.Text(), nullable=True),
    sa.Column("cancelled_at", TS, nullable=True),
    sa.Column("cancelled_by", sa.String(length=100), nullable=True),
    sa.Column("cancel_outcome", sa.String(length=20), nullable=True),
    sa.Column("cancel_reason", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("ticket_id", "milestone", name="uq_deadline_ticket_milestone"),
)
_index("ix_deadline_due_open", "deadlines", ["due_at"], unique=False, sqlite_where=sa.text("fired_at IS NULL AND met_at IS NULL"), postgresql_where=sa.text("fired_at IS NULL AND met_at IS NULL"))
_index("ix_deadlines_ticket_id", "deadlines", ["ticket_id"], unique=False)
sa.Table(
    "outbox",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("ticket_id", PK, nullable=True),
    sa.Column("kind", sa.String(length=40), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("sent_at", TS, nullable=True),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("key"),
)
_index("ix_outbox_sent_at", "outbox", ["sent_at"], unique=False)
_index("ix_outbox_ticket_id", "outbox", ["ticket_id"], unique=False)
sa.Table(
    "ticket_events",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("event_key", sa.String(length=200), nullable=False),
    sa.Column("ticket_id", PK, nullable=False),
    sa.Column("event_id", PK, nullable=False),
    sa.Column("kind", sa.String(length=40), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.String(length=100), nullable=False),
    sa.Column("detail", sa.JSON(), nullable=False),
    sa.Column("post_id", sa.String(length=80), nullable=True),
    sa.ForeignKeyConstraint(["event_id"], ["events.id"], ),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("event_key"),
)
_index("ix_ticket_events_post_id", "ticket_events", ["post_id"], unique=False)
_index("ix_ticket_events_ticket_id", "ticket_events", ["ticket_id"], unique=False)
sa.Table(
    "deadline_warnings",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("deadline_id", PK, nullable=False),
    sa.Column("percent", sa.Integer(), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Column("fired_at", TS, nullable=True),
    sa.Column("outcome", sa.String(length=12), nullable=True),
    sa.ForeignKeyConstraint(["deadline_id"], ["deadlines.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("deadline_id", "percent", name="uq_warning_deadline_percent"),
)
_index("ix_deadline_warnings_deadline_id", "deadline_warnings", ["deadline_id"], unique=False)
_index("ix_warning_due_open", "deadline_warnings", ["at"], unique=False, sqlite_where=sa.text("fired_at IS NULL"), postgresql_where=sa.text("fired_at IS NULL"))
sa.Table(
    "notices",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("outbox_id", PK, nullable=True),
    sa.Column("ticket_id", PK, nullable=True),
    sa.Column("kind", sa.String(length=40), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("recipients", sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], ),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("key"),
    sa.UniqueConstraint("outbox_id"),
)
_index("ix_notices_ticket_id", "notices", ["ticket_id"], unique=False)
sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("notice_id", PK, nullable=False),
    sa.Column("recipient", sa.String(length=200), nullable=False),
    sa.Column("channel", sa.String(length=100), nullable=False),
    sa.Column("address", sa.String(length=300), nullable=True),
    sa.Column("status", sa.String(length=10), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("claimed_at", TS, nullable=True),
    sa.Column("claimed_by", sa.String(length=40), nullable=True),
    sa.Column("message_id", sa.String(length=60), nullable=True),
    sa.Column("digest", sa.Boolean(), nullable=False),
    sa.Column("sent_at", TS, nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.ForeignKeyConstraint(["notice_id"], ["notices.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("notice_id", "recipient", name="uq_delivery_notice_recipient"),
)
_index("ix_deliveries_notice_id", "deliveries", ["notice_id"], unique=False)
_index("ix_delivery_channel_claimed", "deliveries", ["channel", "claimed_at"], unique=False)
_index("ix_delivery_due", "deliveries", ["status", "next_attempt_at"], unique=False)
sa.Table(
    "unrouted_notices",
    metadata,
    sa.Column("id", PK, autoincrement=True, nullable=False),
    sa.Column("notice_id", PK, nullable=False),
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("kind", sa.String(length=40), nullable=False),
    sa.Column("ticket_id", PK, nullable=True),
    sa.Column("place_code", sa.String(length=12), nullable=True),
    sa.Column("department", sa.String(length=100), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.ForeignKeyConstraint(["notice_id"], ["notices.id"], ),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("notice_id"),
)
_index("ix_unrouted_notices_created_at", "unrouted_notices", ["created_at"], unique=False)
_index("ix_unrouted_notices_ticket_id", "unrouted_notices", ["ticket_id"], unique=False)


# The audit is append-only (issue 14; 网络安全法 第二十一条): the database itself
# refuses to change or delete a row, whatever code asks.
AUDIT_APPEND_ONLY = "audit rows are append-only"
AUDIT_TRIGGERS = {
    "sqlite": [
        f"CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
        f"BEGIN SELECT RAISE(ABORT, '{AUDIT_APPEND_ONLY}'); END",
        f"CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
        f"BEGIN SELECT RAISE(ABORT, '{AUDIT_APPEND_ONLY}'); END",
    ],
    # No CREATE OR REPLACE TRIGGER (PostgreSQL >= 14): a pre-Alembic database
    # gets the ones it lacks (see _audit_triggers). TRUNCATE fires no row
    # trigger, hence the statement trigger.
    "postgresql": [
        "CREATE OR REPLACE FUNCTION yuqing_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{AUDIT_APPEND_ONLY}'; END $$",
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION yuqing_audit_append_only()",
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION yuqing_audit_append_only()",
    ],
}


def create(conn: sa.Connection) -> None:
    """The baseline schema in an empty database (the baseline revision's upgrade)."""
    metadata.create_all(conn, checkfirst=False)
    for ddl in AUDIT_TRIGGERS.get(conn.dialect.name, []):
        conn.execute(text(ddl))


def drop(conn: sa.Connection) -> None:
    metadata.drop_all(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP FUNCTION IF EXISTS yuqing_audit_append_only()"))


# What the pre-Alembic store fixed by hand at every start (responder.store's
# _migrate_indexes until issue 16). Indexes replaced since a database may
# have been created: dropped if present.
OLD_INDEXES = ("ix_deadline_pending", "ix_warning_pending")
# Columns added since a database may have been created: (table, column, DDL type and
# default, or one per dialect).
ADDED_COLUMNS: tuple[tuple[str, str, str | dict[str, str]], ...] = (
    ("events", "rev", "BIGINT NOT NULL DEFAULT 0"),
    ("saved_searches", "jurisdiction", "VARCHAR(12) NOT NULL DEFAULT ''"),
    ("audit", "outcome", "VARCHAR(20) NOT NULL DEFAULT 'ok'"),
    ("audit", "actor_role", "VARCHAR(20)"),
    ("audit", "actor_jurisdiction", "VARCHAR(12)"),
    ("audit", "place_code", "VARCHAR(12)"),
    ("tickets", "outcome", "VARCHAR(20)"),
    ("tickets", "outcome_note", "TEXT"),
    ("tickets", "closed_by", "VARCHAR(100)"),
    ("tickets", "rule_reason", "TEXT NOT NULL DEFAULT ''"),
    ("deadlines", "cancelled_at", {"sqlite": "DATETIME", "postgresql": "TIMESTAMP WITH TIME ZONE"}),
    ("deadlines", "cancelled_by", "VARCHAR(100)"),
    ("deadlines", "cancel_outcome", "VARCHAR(20)"),
    ("deadlines", "cancel_reason", "TEXT"),
)


def _audit_triggers(conn: sa.Connection) -> None:
    """The append-only triggers a database lacks."""
    ddls = AUDIT_TRIGGERS.get(conn.dialect.name, [])
    if conn.dialect.name == "postgresql":
        have = set(conn.execute(text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit'::regclass AND NOT tgisinternal"
        )).scalars())
        if {"audit_append_only", "audit_no_truncate"} <= have:
            return
        ddls = [d for d in ddls if not any(f"TRIGGER {name} " in d for name in have)]
    for ddl in ddls:
        conn.execute(text(ddl))


def adopt(conn: sa.Connection) -> None:
    """Bring a database made by the pre-Alembic store (create_all and the hand
    fixes of whichever release made it, no ``alembic_version``) to the
    baseline schema: the columns added since, the old indexes dropped, the
    missing tables, indexes and audit triggers created. The caller then
    stamps it at the baseline revision."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    for table, column, ddl in ADDED_COLUMNS:
        if table in tables and column not in {c["name"] for c in insp.get_columns(table)}:
            typ = ddl if isinstance(ddl, str) else ddl[conn.dialect.name]
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {typ}"))
    for name in OLD_INDEXES:
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    metadata.create_all(conn, checkfirst=True)  # the tables added since, with their indexes
    insp = inspect(conn)  # fresh: the reflection cache predates the changes above
    for table in metadata.sorted_tables:
        have = {ix["name"] for ix in insp.get_indexes(table.name)}
        for idx in table.indexes:
            if idx.name not in have:
                idx.create(conn)
    _audit_triggers(conn)
