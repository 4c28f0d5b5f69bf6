"""Schema migrations of the store (Alembic), run by every stage that opens it.

The revisions live in :mod:`responder.migrations` (``env.py`` and
``versions/``, shipped in the wheel); Alembic is configured here, in code,
with no ``alembic.ini``. :class:`responder.store.Store` calls :func:`ensure`
when it opens a database:

* at the newest revision (the usual case): one query reads the version, and
  that is all;
* otherwise :func:`upgrade` runs under a lock, so that stages starting at
  the same moment migrate once and the others wait and then find the
  schema current. SQLite: one write transaction (``BEGIN IMMEDIATE``),
  retried while the database is locked. PostgreSQL: ``pg_advisory_lock``
  on its own connection, and the migrations in one transaction.

A database made before Alembic (``create_all`` and hand-written fixes, no
``alembic_version``) is recognised by its tables: it gets the columns,
indexes and triggers it lacks (:func:`responder.migrations.baseline.adopt`),
is stamped at the baseline revision and then upgraded like any other.

``yuqing db upgrade`` and ``yuqing db current`` (:mod:`responder.cli`) do
the same by hand.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError

from responder.migrations import baseline

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"
VERSION_TABLE = "alembic_version"
# PostgreSQL advisory lock id of schema changes (arbitrary, unique to yuqing;
# the same as the pre-Alembic store took around create_all).
SCHEMA_LOCK = 7_130_001
# How long a stage waits for another one's migration (SQLite), in seconds.
LOCK_WAIT_S = 600.0


class SchemaError(RuntimeError):
    """The database cannot be brought to this release's schema (the message is for the operator)."""


@dataclass(frozen=True)
class Upgraded:
    before: str | None  # the revision found (None: empty, or made before Alembic)
    after: str
    adopted: bool  # made before Alembic: stamped at the baseline first

    @property
    def changed(self) -> bool:
        return self.adopted or self.before != self.after


def config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision this release knows."""
    rev = _script().get_current_head()
    assert rev is not None
    return rev


def read_version(engine: Engine) -> str | None:
    """The database's revision in one query; None without a version table
    (an empty database, or one made before Alembic)."""
    def once() -> str | None:
        with engine.connect() as conn:
            try:
                return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
            except DBAPIError as e:
                if _locked(e):
                    raise
                return None

    return _retry_locked(engine, once)


def describe(engine: Engine) -> tuple[str, str | None]:
    """For ``yuqing db current``: ("current" | "behind" | "newer" | "legacy" | "empty", revision)."""
    rev = read_version(engine)
    if rev is not None:
        if rev == head():
            return "current", rev
        return ("behind" if _known(rev) else "newer"), rev
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    return ("legacy" if tables & set(baseline.metadata.tables) else "empty"), None


def ensure(engine: Engine) -> Upgraded | None:
    """Bring the database to :func:`head` unless it is there already (one query)."""
    if read_version(engine) == head():
        return None
    return upgrade(engine)


def upgrade(engine: Engine) -> Upgraded:
    """Upgrade to :func:`head` under the schema lock (a no-op when another
    process did it meanwhile)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK})
            conn.commit()
            try:
                with conn.begin():
                    return _upgrade(conn)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK})
                conn.commit()

    def once() -> Upgraded:
        # yuqing_write: BEGIN IMMEDIATE (responder.store), the one writer, held
        # from the version check to the commit of the last migration.
        with engine.execution_options(yuqing_write=True).begin() as conn:
            return _upgrade(conn)

    return _retry_locked(engine, once)


def _upgrade(conn: Connection) -> Upgraded:
    target = head()
    tables = set(inspect(conn).get_table_names())
    before = MigrationContext.configure(conn).get_current_revision() if VERSION_TABLE in tables else None
    if before is not None and not _known(before):
        raise SchemaError(
            f"数据库的结构版本 {before} 比本程序认识的最新版本 {target} 更新：请使用与数据库相符的新版程序"
        )
    adopted = before is None and bool(tables & set(baseline.metadata.tables))
    if adopted:
        log.warning("数据库建于引入版本管理之前：补齐表、索引与触发器后标记为基线版本 %s", BASELINE)
        baseline.adopt(conn)
        command.stamp(config(conn), BASELINE)
    if before != target:
        command.upgrade(config(conn), "head")
        log.info("数据库结构已升级：%s → %s", before or ("基线" if adopted else "空库"), target)
    return Upgraded(before=before, after=target, adopted=adopted)


def _known(rev: str) -> bool:
    try:
        return _script().get_revision(rev) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        return False


def _locked(e: BaseException) -> bool:
    return isinstance(e, OperationalError) and "database is locked" in str(e.orig)


def _retry_locked(engine: Engine, fn: Callable[[], T]) -> T:
    """Run ``fn`` again while SQLite says "database is locked" (another stage
    holds the write lock longer than busy_timeout, e.g. migrating a large
    database), up to LOCK_WAIT_S."""
    if engine.dialect.name != "sqlite":
        return fn()
    give_up = time.monotonic() + LOCK_WAIT_S
    pause = 0.05
    while True:
        try:
            return fn()
        except OperationalError as e:
            if not _locked(e) or time.monotonic() > give_up:
                raise
            log.warning("数据库被占用（另一阶段正在写入或升级结构），%.1f 秒后重试", pause)
            time.sleep(pause * (1 + random.random()))
            pause = min(pause * 2, 2.0)
