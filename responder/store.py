"""The responder's store: posts, events, tickets, deadlines, audit, outbox.

One SQLAlchemy 2 schema that runs unchanged on SQLite (one machine, tests,
the demo) and PostgreSQL (production). :class:`Store` opens the database,
brings its schema to the newest Alembic revision (:mod:`responder.migrate`;
a change of these models goes with a revision in responder/migrations/versions)
and hands out sessions:

* ``store.transaction()`` — a write transaction. On SQLite it starts with
  ``BEGIN IMMEDIATE`` so two writers (the stage handler and the scheduler
  thread, or two processes) queue on ``busy_timeout`` instead of failing
  with "database is locked" when a read snapshot turns out to be stale.
  Everything a caller writes inside one ``with`` block commits together or
  not at all.
* ``store.reader()`` — a read-only session (deferred transaction).

Times: every datetime column is :class:`UTCDateTime`. It refuses naive
datetimes, stores UTC, and always returns an aware UTC datetime, also on
SQLite (which has no time-zone type). Convert to Asia/Shanghai for display.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from responder.migrations import baseline

log = logging.getLogger(__name__)

# Integer primary keys: BIGINT on PostgreSQL, INTEGER on SQLite (only
# "INTEGER PRIMARY KEY" is an auto-incrementing rowid there).
PK = BigInteger().with_variant(Integer(), "sqlite")

TICKET_STATUSES = ("new", "acknowledged", "closed")
SEVERITY_RANK = {"一般": 1, "较大": 2, "重大": 3, "特别重大": 4}
# PostgreSQL advisory lock ids (arbitrary constants, unique to yuqing); the
# schema's is responder.migrate.SCHEMA_LOCK (7_130_001).
EVENTS_LOCK = 7_130_002


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC, returned aware (UTC) on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: a stored time must carry its zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite keeps text; store UTC without offset so that text order is time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Post(Base):
    """Every assessed post, relevant or not (irrelevant ones are the archive)."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    post_id: Mapped[str] = mapped_column(String(80), unique=True)
    source_id: Mapped[str] = mapped_column(String(200))
    source_kind: Mapped[str] = mapped_column(String(20))
    source_name: Mapped[str] = mapped_column(String(200), default="")
    url: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(200), default="")
    published_at: Mapped[datetime] = mapped_column(index=True)
    precision: Mapped[str] = mapped_column(String(10), default="minute")
    fetched_at: Mapped[datetime]
    parent_id: Mapped[str | None] = mapped_column(String(80), index=True, default=None)
    relevant: Mapped[bool] = mapped_column(Boolean, default=False)
    place_code: Mapped[str | None] = mapped_column(String(12), index=True, default=None)
    place_label: Mapped[str] = mapped_column(String(200), default="待定")
    severity: Mapped[str] = mapped_column(String(8), default="一般")
    is_emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    event_type: Mapped[str | None] = mapped_column(String(40), default=None)
    event_subtype: Mapped[str | None] = mapped_column(String(40), default=None)
    deaths: Mapped[int | None] = mapped_column(Integer, default=None)
    injured: Mapped[int | None] = mapped_column(Integer, default=None)
    topic: Mapped[str | None] = mapped_column(String(40), default=None)
    department: Mapped[str | None] = mapped_column(String(100), default=None)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True, default=None)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The whole AssessedPost as received (by_alias JSON): the search index and
    # any later re-assessment are rebuilt from it.
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Event(Base):
    """One incident: the posts about it, its T0 and its place and severity."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    t0: Mapped[datetime] = mapped_column(index=True)  # earliest member publication
    t0_post_id: Mapped[str] = mapped_column(String(80))
    t0_precision: Mapped[str] = mapped_column(String(10), default="minute")
    # Crawl lag of the T0 post (fetched_at - published_at), seconds.
    t0_crawl_lag_s: Mapped[float | None] = mapped_column(Float, default=None)
    last_published_at: Mapped[datetime] = mapped_column(index=True)
    place_code: Mapped[str | None] = mapped_column(String(12), index=True, default=None)
    place_label: Mapped[str] = mapped_column(String(200), default="待定")
    place: Mapped[dict[str, Any]] = mapped_column(default=dict)  # province/city/county/code/level
    severity: Mapped[str] = mapped_column(String(8), default="一般")
    severity_reason: Mapped[str] = mapped_column(Text, default="")
    is_emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    event_type: Mapped[str | None] = mapped_column(String(40), default=None)
    event_subtype: Mapped[str | None] = mapped_column(String(40), default=None)
    title: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)  # open / closed
    post_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Revision stamp: every transaction that changes what grouping reads sets
    # it to max(rev) + 1 under the events lock (stamp_events), so a responder
    # keeping open events in memory knows which ones to reload.
    rev: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"), index=True)


class Ticket(Base):
    """The work item for one event (exactly one per event)."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), unique=True)
    status: Mapped[str] = mapped_column(String(14), default="new", index=True)
    severity: Mapped[str] = mapped_column(String(8), default="一般")
    severity_reason: Mapped[str] = mapped_column(Text, default="")
    place_label: Mapped[str] = mapped_column(String(200), default="待定")
    place_code: Mapped[str | None] = mapped_column(String(12), index=True, default=None)
    department: Mapped[str | None] = mapped_column(String(100), default=None)
    responders: Mapped[list[Any]] = mapped_column(default=list)
    rule: Mapped[str] = mapped_column(String(40))
    # Why that clock rule (responder.clocks.Clocks.choose, or the duty officer's
    # reason when changed by hand: responder.clock_rules.change_rule).
    rule_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100), default=None)
    acknowledged_from: Mapped[str | None] = mapped_column(String(100), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # How it was closed (responder.cases.CLOSE_OUTCOMES: responded, no_response_needed,
    # false_alarm, merged, other), the note that goes with it, and who closed it;
    # all None while open (a reopen clears them; the audit keeps every close).
    # Tickets archived at once by grouping (政务动态) leave them None.
    outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    outcome_note: Mapped[str | None] = mapped_column(Text, default=None)
    closed_by: Mapped[str | None] = mapped_column(String(100), default=None)


class Deadline(Base):
    """A statutory milestone of a ticket and when it is due."""

    __tablename__ = "deadlines"
    __table_args__ = (
        UniqueConstraint("ticket_id", "milestone", name="uq_deadline_ticket_milestone"),
        # Partial index of the open rows by due time: the scheduler's "what is due"
        # and "when is the next one" are range scans over open rows only, and
        # the planner cannot pick it for look-ups by id (which a plain
        # (fired_at, met_at, due_at) index made scan every open row on SQLite).
        Index(
            "ix_deadline_due_open",
            "due_at",
            sqlite_where=text("fired_at IS NULL AND met_at IS NULL"),
            postgresql_where=text("fired_at IS NULL AND met_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    milestone: Mapped[str] = mapped_column(String(40))  # 权威信息发布, 新闻发布会, 回应, ...
    rule: Mapped[str] = mapped_column(String(40))
    starts_at: Mapped[datetime]  # the T0 the due time was computed from
    due_at: Mapped[datetime]
    fired_at: Mapped[datetime | None] = mapped_column(default=None)  # breach notified
    met_at: Mapped[datetime | None] = mapped_column(default=None)
    met_by: Mapped[str | None] = mapped_column(String(100), default=None)
    evidence_url: Mapped[str | None] = mapped_column(Text, default=None)
    # Cancelled (撤销): the ticket was closed as needing no response or as a false
    # alarm (or merged away) while the milestone was open. A cancelled deadline is
    # no breach, never fires, and the reports count it apart with who and why.
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(100), default=None)
    cancel_outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    cancel_reason: Mapped[str | None] = mapped_column(Text, default=None)


class DeadlineWarning(Base):
    """A warning point before a deadline (e.g. at 50 % and 80 % of its interval)."""

    __tablename__ = "deadline_warnings"
    __table_args__ = (
        UniqueConstraint("deadline_id", "percent", name="uq_warning_deadline_percent"),
        Index(
            "ix_warning_due_open",
            "at",
            sqlite_where=text("fired_at IS NULL"),
            postgresql_where=text("fired_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    deadline_id: Mapped[int] = mapped_column(ForeignKey("deadlines.id"), index=True)
    percent: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    fired_at: Mapped[datetime | None] = mapped_column(default=None)
    # "sent"; "moot" when the milestone was met first; "cancelled" with its deadline; or "superseded"
    # when a later warning or the breach was due at the same tick (after downtime only the most
    # urgent one is sent).
    outcome: Mapped[str | None] = mapped_column(String(12), default=None)


class Audit(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True, default=None)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True, default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100), default="system")
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(100), default=None)
    # ok / failed / denied (responder.accounts.audit); rows from before the column: ok.
    outcome: Mapped[str] = mapped_column(String(20), default="ok", server_default=text("'ok'"))
    # The signed-in user's role and jurisdiction when it acted (None: system, CLI, unknown user),
    # and the jurisdiction the row is about (a user changed, a ticket's place): an
    # admin's audit view is scoped by them (responder.accounts.list_audit).
    actor_role: Mapped[str | None] = mapped_column(String(20), default=None)
    actor_jurisdiction: Mapped[str | None] = mapped_column(String(12), default=None)
    place_code: Mapped[str | None] = mapped_column(String(12), default=None)


class UserRow(Base):
    """An account (:mod:`responder.accounts`). The password is kept only as an
    Argon2id hash; ``jurisdiction`` is a division-code prefix ("" = everything)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(20))
    jurisdiction: Mapped[str] = mapped_column(String(12), default="")
    department: Mapped[str | None] = mapped_column(String(100), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change: Mapped[bool] = mapped_column(Boolean, default=True)
    # Failed sign-ins in the current window (from failed_since), and the lock they led to.
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_since: Mapped[datetime | None] = mapped_column(default=None)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionRow(Base):
    """A server-side sign-in session. ``id`` is the SHA-256 of the cookie's token
    (the token itself is never stored); revoking sets ``revoked_at``."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # the absolute limit; the idle limit runs from last_seen_at
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    remote_addr: Mapped[str | None] = mapped_column(String(100), default=None)
    csrf_token: Mapped[str] = mapped_column(String(64))


class ApiTokenRow(Base):
    """An API token: a visible ``prefix`` (``yq_ab12cd34``) to find and name it,
    and the SHA-256 of the whole token."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(20), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Outbox(Base):
    """Notifications written in the same transaction as the fact they report.

    A relay publishes unsent rows to ``tickets.events`` and sets ``sent_at``;
    the unique ``key`` makes writing the same notification twice impossible.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True, default=None)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


class Notice(Base):
    """Something to notify people about: an outbox row, or a reminder that a
    new ticket is still unacknowledged. The notification dispatcher
    (:mod:`responder.notify`) plans each one once (unique ``key`` and
    ``outbox_id``) into per-recipient :class:`Delivery` rows."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), unique=True, default=None)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True, default=None)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    recipients: Mapped[int] = mapped_column(Integer, default=0)


class Delivery(Base):
    """One notice to one recipient over one channel, and what became of it.

    ``status``: pending → sending (claimed, committed before the send) →
    sent, or back to pending with ``next_attempt_at`` after a failure, or
    failed after the last attempt. Several deliveries sent as one digest
    share ``message_id``. Unique (notice, recipient): never planned twice.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notice_id", "recipient", name="uq_delivery_notice_recipient"),
        Index("ix_delivery_due", "status", "next_attempt_at"),
        Index("ix_delivery_channel_claimed", "channel", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(300), default=None)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(40), default=None)
    message_id: Mapped[str | None] = mapped_column(String(60), default=None)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UnroutedNotice(Base):
    """A notice that escalation steps apply to but no recipient of
    ``config/notify.yaml`` covers (its jurisdiction, department or role), with
    the steps that found nobody. Written with the notice by the dispatcher;
    the web process shows them on the board and in ``/metrics``."""

    __tablename__ = "unrouted_notices"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), unique=True)
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True, default=None)
    place_code: Mapped[str | None] = mapped_column(String(12), default=None)
    department: Mapped[str | None] = mapped_column(String(100), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class TicketEventRow(Base):
    """Every TicketEvent the responder emitted, keyed by its idempotency key."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(String(200), unique=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    kind: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100), default="system")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The post whose handling produced it (a redelivered post re-emits these).
    post_id: Mapped[str | None] = mapped_column(String(80), index=True, default=None)


class SavedSearch(Base):
    """An analyst's saved search (监测方案): a name and the archive-search
    parameters (:mod:`responder.archive`), e.g. ``{"q": "物业", "place": "3401"}``."""

    __tablename__ = "saved_searches"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The creator's jurisdiction (a division-code prefix, "" = root): users whose
    # scope covers it read it too (responder.archive.saved_search_clause).
    jurisdiction: Mapped[str] = mapped_column(String(12), default="", server_default=text("''"))
    # Scheme alerts (responder.schemes) watch the posts stored after this one
    # (``posts.id``): the archive before a scheme was saved is never "new".
    watch_from: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class SchemeMatch(Base):
    """A post a monitoring scheme matched (:mod:`responder.schemes`): written
    once per (scheme, post), in the transaction that writes its notice and
    moves the matcher's cursor, so a restart never alerts twice."""

    __tablename__ = "scheme_matches"
    __table_args__ = (UniqueConstraint("scheme_id", "post_id", name="uq_scheme_match_post"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("saved_searches.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("notices.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SchemeSeen(Base):
    """How far a user has looked at a scheme's matches (the board's 新增)."""

    __tablename__ = "scheme_seen"

    scheme_id: Mapped[int] = mapped_column(ForeignKey("saved_searches.id"), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_match_id: Mapped[int] = mapped_column(BigInteger, default=0)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class SearchProgress(Base):
    """How far the search indexer (:mod:`responder.indexer`) has come: the last
    post, and the last merge/split audit row, whose documents the search
    backend has."""

    __tablename__ = "search_progress"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_post_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_audit_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SourceHealthRow(Base):
    """The latest crawl health of each source (from ``crawl.health``), and the
    current problem spell: ``problem_since`` is when the source last left
    ``ok``; ``alerted`` lists the states already reported to admins in this
    spell, so each one is notified once."""

    __tablename__ = "source_health"

    source_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    source_name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(20))
    checked_at: Mapped[datetime]
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    newest_item_at: Mapped[datetime | None] = mapped_column(default=None)
    lag_s: Mapped[float | None] = mapped_column(Float, default=None)
    dark_s: Mapped[float | None] = mapped_column(Float, default=None)
    error_rate: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    problem_since: Mapped[datetime | None] = mapped_column(default=None)
    alerted: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RawJSON(str):
    """JSON text already serialised (e.g. by pydantic's ``model_dump_json``):
    stored as it is in a JSON column instead of being encoded again."""


def _json_dumps(obj: Any) -> str:
    if isinstance(obj, RawJSON):
        return str(obj)
    return json.dumps(obj, ensure_ascii=False, default=str)


def normalise_url(url: str | URL) -> URL:
    """``postgresql://`` means psycopg 3 here (psycopg2 is not installed)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


class Store:
    """An open responder database. ``Store(url)`` brings its schema to the newest
    revision (:mod:`responder.migrate`); ``upgrade=False`` opens it as it is."""

    def __init__(
        self, url: str | URL, *, echo: bool = False, busy_timeout_ms: int = 30000, upgrade: bool = True
    ):
        self.url = normalise_url(url)
        self.dialect = self.url.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps, "future": True}
        if self.dialect == "sqlite":
            db = self.url.database
            if db and db != ":memory:" and not db.startswith("file:"):
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine, busy_timeout_ms)
        if upgrade:
            from responder.migrate import ensure

            # One query when the schema is current; else the migrations, under a lock.
            ensure(self.engine)
        self._write = sessionmaker(
            bind=self.engine.execution_options(yuqing_write=True), expire_on_commit=False
        )
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False)

    def lock_events(self, session: Session) -> None:
        """Serialise event grouping between responder processes (PostgreSQL),
        and every change of what grouping reads (close, merge, split).

        Held until the transaction ends. SQLite needs nothing: its write
        transactions (BEGIN IMMEDIATE) are already one at a time.
        """
        if self.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": EVENTS_LOCK})

    def stamp_events(self, session: Session, *events: Event) -> int:
        """Take the events lock and mark ``events`` changed: ``rev = max(rev) + 1``.

        Every transaction that opens, joins, closes, merges or splits events
        calls this, so responders that keep open events in memory
        (:mod:`responder.open_events`) reload exactly those.
        """
        self.lock_events(session)
        rev = next_rev(session)
        for ev in events:
            ev.rev = rev
        return rev

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: commit at the end of the block, roll back on error."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    # Small queries several modules share -------------------------------------------------

    def count(self, model: type[Base]) -> int:
        with self.reader() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)


def next_rev(session: Session) -> int:
    """The next events revision (the caller holds the events lock)."""
    return int(session.scalar(select(func.coalesce(func.max(Event.rev), 0))) or 0) + 1


# The audit is append-only (issue 14): the baseline migration's triggers refuse
# UPDATE, DELETE (and TRUNCATE) with this message.
AUDIT_APPEND_ONLY = baseline.AUDIT_APPEND_ONLY


def _wal(cur: Any, busy_timeout_ms: int) -> None:
    """Switch a fresh database to WAL. SQLite answers "database is locked" at once,
    without waiting busy_timeout, when other connections opening the same new
    file at the same moment hold a lock (stages starting together): retry."""
    import sqlite3
    import time

    give_up = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.01
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() not in ("wal", "memory"):
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > give_up:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (below) emit BEGIN itself, so we can choose IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys = ON")
            _wal(cur, busy_timeout_ms)
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("yuqing_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def emit_fact(
    session: Session,
    *,
    ticket: Ticket,
    kind: str,
    key: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
    actor: str = "system",
    post_id: str | None = None,
    outbox: bool = False,
    audit_action: str | None = None,
    audit_detail: dict[str, Any] | None = None,
    remote_addr: str | None = None,
    audit_columns: Mapping[str, Any] | None = None,
) -> TicketEventRow | None:
    """Record one fact about a ticket, once: a ``ticket_events`` row (unique
    ``key``), optionally an outbox row with the same key (for writers outside
    the stage loop: the scheduler, the web UI) and an audit row.

    ``audit_columns``: for a person's action, the role and jurisdiction it
    acted in (``responder.accounts.actor_columns``); the audit row then also
    records the ticket's place. Without them (the system) neither is written.

    Returns the new row, or None when a fact with this key already exists
    (then nothing is written).
    """
    exists = session.scalar(select(TicketEventRow.id).where(TicketEventRow.event_key == key))
    if exists is not None:
        return None
    detail = dict(detail or {})
    row = TicketEventRow(
        event_key=key,
        ticket_id=ticket.id,
        event_id=ticket.event_id,
        kind=kind,
        at=at,
        actor=actor,
        detail=detail,
        post_id=post_id,
    )
    session.add(row)
    if outbox:
        session.add(
            Outbox(key=key, ticket_id=ticket.id, kind=kind, payload=ticket_event_payload(row), created_at=at)
        )
    session.add(
        Audit(
            ticket_id=ticket.id,
            event_id=ticket.event_id,
            at=at,
            actor=actor,
            action=audit_action or kind,
            detail=audit_detail if audit_detail is not None else detail,
            remote_addr=remote_addr,
            **({"place_code": ticket.place_code, **audit_columns} if audit_columns is not None else {}),
        )
    )
    session.flush()
    return row


_SHANGHAI = ZoneInfo("Asia/Shanghai")


def ticket_event_payload(row: TicketEventRow | Mapping[str, Any]) -> dict[str, Any]:
    """The ``TicketEvent`` contract dict (by alias) for a stored fact (a row, or its column values)."""
    r = row if isinstance(row, Mapping) else {k: getattr(row, k) for k in _FACT_FIELDS}
    return {
        "schema": "ticket_event",
        "v": 1,
        "event_key": r["event_key"],
        "ticket_id": r["ticket_id"],
        "event_id": r["event_id"],
        "kind": r["kind"],
        "at": r["at"].astimezone(_SHANGHAI).isoformat(),
        "actor": r["actor"],
        "detail": r["detail"],
    }


_FACT_FIELDS = ("event_key", "ticket_id", "event_id", "kind", "at", "actor", "detail")
