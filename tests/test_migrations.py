"""Schema migrations (issue 16): the baseline revision equals the models, a
database made before Alembic is carried forward with nothing lost, opening
a current store reads only the version, and `yuqing db current / upgrade`.

On SQLite and PostgreSQL (``store_url``). The pre-Alembic databases are the
files tests/fixtures/make_legacy_store.py made with the store of two
releases before Alembic; on PostgreSQL the same schema is made by the
pre-Alembic create path (create_all and the hand fixes, which is what the
baseline's ``create`` runs), less the columns the release lacked, and the
fixture's rows are loaded into it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import DBAPIError

from responder import migrate
from responder.migrations import baseline
from responder.store import (
    AUDIT_APPEND_ONLY,
    Audit,
    Base,
    Deadline,
    Event,
    Post,
    SavedSearch,
    Store,
    Ticket,
    UserRow,
    normalise_url,
)
from tests.fixtures.make_legacy_store import T0, fixture_path

ROOT = Path(__file__).resolve().parents[1]
H = timedelta(hours=1)
# "older": the 8e2ee89 file with more taken away (a release before events.rev,
# audit.outcome and saved_searches.jurisdiction, with the old pending index and
# without the tables added later), made in the test.
RELEASES = ("0834d71", "8e2ee89", "older")


def _diff(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def _fixture_rows(rev: str) -> dict[str, list[dict[str, Any]]]:
    con = sqlite3.connect(fixture_path(rev))
    con.row_factory = sqlite3.Row
    try:
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {n: [dict(r) for r in con.execute(f"SELECT * FROM {n} ORDER BY 1")] for n in names}
    finally:
        con.close()


def _counts(rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {t: len(r) for t, r in rows.items()}


def _older(conn: sa.Connection) -> None:
    """Take a pre-Alembic schema back to an older release's."""
    conn.execute(text("DROP INDEX ix_events_rev"))
    for table, column in (("events", "rev"), ("audit", "outcome"), ("saved_searches", "jurisdiction")):
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    for table in ("unrouted_notices", "source_health", "search_progress"):
        conn.execute(text(f"DROP TABLE {table}"))
    conn.execute(text("DROP INDEX ix_deadline_due_open"))
    conn.execute(text("CREATE INDEX ix_deadline_pending ON deadlines (fired_at, met_at, due_at)"))


def _load_rows(conn: sa.Connection, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Insert the fixture's rows (SQLite text and integers) into a PostgreSQL schema."""
    meta = sa.MetaData()
    meta.reflect(conn)
    for table in meta.sorted_tables:
        batch = []
        for r in rows.get(table.name, []):
            row = {}
            for col in table.c:
                v = r.get(col.name)
                if v is not None and isinstance(col.type, sa.DateTime):
                    v = datetime.fromisoformat(v).replace(tzinfo=UTC)
                elif v is not None and isinstance(col.type, sa.Boolean):
                    v = bool(v)
                elif v is not None and isinstance(col.type, sa.JSON):
                    v = json.loads(v)
                if col.name in r:
                    row[col.name] = v
            batch.append(row)
        if batch:
            conn.execute(table.insert(), batch)
            if "id" in table.c:
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                  f"(SELECT max(id) FROM {table.name}))"))


def _old_database(release: str, url: str) -> dict[str, list[dict[str, Any]]]:
    """Make the pre-Alembic database of ``release`` at ``url``; its rows as the fixture holds them."""
    rev = "8e2ee89" if release == "older" else release
    rows = _fixture_rows(rev)
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        assert u.database
        shutil.copyfile(fixture_path(rev), u.database)
        engine = sa.create_engine(u)
        if release == "older":
            with engine.begin() as conn:
                _older(conn)
        with engine.connect() as conn:
            have = set(inspect(conn).get_table_names())
    else:
        engine = sa.create_engine(u)
        with engine.begin() as conn:
            baseline.create(conn)  # = create_all and the hand fixes of the last pre-Alembic release
            for table, column, _ in baseline.ADDED_COLUMNS:
                if column not in rows[table][0]:
                    conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
            if release == "older":
                _older(conn)
            _load_rows(conn, rows)
            have = set(inspect(conn).get_table_names())
    engine.dispose()
    assert "alembic_version" not in have
    return {t: r for t, r in rows.items() if t in have}


def _table_counts(store: Store, tables: list[str]) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


def _append_only(store: Store) -> None:
    for sql in ("UPDATE audit SET actor = 'forged'", "DELETE FROM audit"):
        with pytest.raises(DBAPIError, match=AUDIT_APPEND_ONLY), store.transaction() as s:
            s.execute(text(sql))


# --------------------------------------------------------------------------- the baseline

def test_upgrade_head_on_an_empty_database_equals_the_models(store_url: str) -> None:
    with Store(store_url, upgrade=False) as store:
        assert migrate.describe(store.engine) == ("empty", None)
        done = migrate.upgrade(store.engine)
        assert done == migrate.Upgraded(before=None, after=migrate.head(), adopted=False)
        assert migrate.read_version(store.engine) == migrate.head()
        assert _diff(store.engine) == []
        with store.engine.connect() as conn:
            # The partial indexes of the open deadlines and warnings, as the models declare them.
            idx = {i["name"]: i for i in inspect(conn).get_indexes("deadlines")}
            assert idx["ix_deadline_due_open"]["column_names"] == ["due_at"]
        with store.transaction() as s:
            s.add(Audit(action="created", at=T0))
        _append_only(store)
        # Again: nothing to do, and the version is still the one row.
        assert migrate.ensure(store.engine) is None
        assert migrate.upgrade(store.engine).changed is False
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                migrate.head()]


def test_opening_a_current_store_reads_only_the_version(store_url: str) -> None:
    Store(store_url).close()
    with Store(store_url, upgrade=False) as store:
        with store.engine.connect():
            pass  # the connection's own set-up is not the store's business here
        seen: list[str] = []
        event.listen(store.engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_a: seen.append(statement))
        assert migrate.ensure(store.engine) is None
        assert [s for s in seen if s.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK")] == [
            "SELECT version_num FROM alembic_version"]


def test_a_database_newer_than_the_release_is_refused(store_url: str) -> None:
    Store(store_url).close()
    with Store(store_url, upgrade=False) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    with pytest.raises(migrate.SchemaError, match="f00dfeed.*新版程序"):
        Store(store_url)


# --------------------------------------------------------------------------- carried forward

@pytest.mark.parametrize("release", RELEASES)
def test_a_pre_alembic_database_is_carried_forward(store_url: str, release: str) -> None:
    rows = _old_database(release, store_url)
    with Store(store_url, upgrade=False) as raw:
        assert migrate.describe(raw.engine) == ("legacy", None)
    with Store(store_url) as store:
        assert migrate.read_version(store.engine) == migrate.head()
        assert _diff(store.engine) == []
        # Nothing lost: every row of every table.
        assert _table_counts(store, list(rows)) == _counts(rows)
        assert _counts(rows)["audit"] == 4 and _counts(rows)["tickets"] == 2
        with store.reader() as s:
            t1, t2 = s.scalars(select(Ticket).order_by(Ticket.id)).all()
            assert (t1.status, t1.acknowledged_by, t1.acknowledged_at) == ("acknowledged", "zhang", T0 + 2 * H)
            assert t1.responders == [{"role": "primary", "name": "蜀山区住房和城乡建设局"}]
            current = release == "0834d71"
            # Columns added since a release: there with their defaults.
            assert t1.rule_reason == ("较大事件：48 小时内回应" if current else "")
            assert (t2.status, t2.closed_at) == ("closed", T0 + 5 * H)
            assert (t2.outcome, t2.closed_by) == (("responded", "zhang") if current else (None, None))
            ev = s.get(Event, t1.event_id)
            assert ev is not None and ev.title == "某小区电梯故障致人被困" and ev.place["county"] == "蜀山区"
            assert ev.rev == (0 if release == "older" else 3)
            d = s.scalars(select(Deadline).order_by(Deadline.id)).all()
            assert [x.milestone for x in d] == ["权威信息发布", "回应", "回应"]
            assert (d[0].met_by, d[0].met_at, d[1].due_at) == ("zhang", T0 + 4 * H, T0 + 48 * H)
            assert d[2].cancel_outcome == ("no_response_needed" if current else None)
            audit = s.scalars(select(Audit).order_by(Audit.id)).all()
            assert [a.action for a in audit] == ["acknowledge", "milestone_met", "login", "close"]
            assert audit[2].outcome == ("ok" if release == "older" else "failed")
            assert audit[0].detail == {"from": "web"} and audit[0].remote_addr == "10.0.0.7"
            users = {u.username: u for u in s.scalars(select(UserRow))}
            assert users["zhang"].failed_count == 2 and users["zhang"].jurisdiction == "340104"
            assert users["admin"].password_hash.startswith("$argon2id$")
            assert s.scalars(select(Post.raw).where(Post.post_id == "p2")).one() == {
                "post": {"post_id": "p2", "title": "帖子p2"}}
            assert s.scalars(select(SavedSearch.jurisdiction)).one() == ("" if release == "older" else "340104")
        with store.engine.connect() as conn:
            names = {i["name"] for i in inspect(conn).get_indexes("deadlines")}
            assert "ix_deadline_due_open" in names and "ix_deadline_pending" not in names
        _append_only(store)
        # The store works on as usual: new rows take the next ids.
        with store.transaction() as s:
            s.add(Audit(action="upgraded", actor="test", at=T0 + 9 * H))
        assert store.count(Audit) == 5
    with Store(store_url) as again:  # and the next start finds it current
        assert migrate.ensure(again.engine) is None


def test_stages_starting_together_on_a_pre_alembic_database(store_url: str) -> None:
    """Four stores opening one old database at once: it is adopted and upgraded once."""
    rows = _old_database("8e2ee89", store_url)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    opened: list[Store] = []

    def open_one() -> None:
        try:
            barrier.wait()
            opened.append(Store(store_url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(opened) == 4
    try:
        assert _table_counts(opened[0], list(rows)) == _counts(rows)
        with opened[0].engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                migrate.head()]
        assert _diff(opened[0].engine) == []
    finally:
        for st in opened:
            st.close()


# --------------------------------------------------------------------------- the commands

def _db(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YUQING_STORE_URL": url}
    return subprocess.run([sys.executable, "-m", "yuqing.cli", "db", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_db_current_and_upgrade_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _old_database("0834d71", url)
    r = _db(url, "current")
    assert r.returncode == 1 and "无版本记录" in r.stdout, r.stdout + r.stderr
    r = _db(url, "upgrade")
    assert r.returncode == 0, r.stderr
    assert f"已补齐并标记为基线版本 {migrate.BASELINE}" in r.stdout
    r = _db(url, "current")
    assert r.returncode == 0 and f"结构版本：{migrate.head()}（已是最新）" in r.stdout, r.stdout + r.stderr
    r = _db(url, "upgrade")
    assert r.returncode == 0 and f"数据库结构已是最新版本：{migrate.head()}" in r.stdout
    with Store(url) as store:
        assert store.count(Ticket) == 2
    missing = tmp_path / "none.db"
    r = _db(f"sqlite:///{missing}", "current")
    assert r.returncode == 1 and "数据库文件不存在" in r.stderr and not missing.exists()
