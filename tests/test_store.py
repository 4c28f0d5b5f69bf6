"""The store on SQLite and PostgreSQL: aware times, uniqueness, one transaction per write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from responder import migrate
from responder.store import (
    Deadline,
    Event,
    Outbox,
    Post,
    Store,
    Ticket,
    normalise_url,
)
from tests.fixtures.databases import SH, sh


def _post(post_id: str, published: datetime, **kw) -> Post:
    return Post(
        post_id=post_id,
        source_id="demo-news",
        source_kind="news",
        title=kw.pop("title", "标题"),
        text=kw.pop("text", "正文"),
        published_at=published,
        fetched_at=kw.pop("fetched_at", published + timedelta(minutes=5)),
        raw=kw.pop("raw", {}),
        **kw,
    )


def _ticket(s, t0: datetime) -> Ticket:
    ev = Event(t0=t0, t0_post_id="p", last_published_at=t0, title="事件")
    s.add(ev)
    s.flush()
    t = Ticket(event_id=ev.id, rule="response_48h")
    s.add(t)
    s.flush()
    return t


def test_aware_datetimes_round_trip(store_url: str) -> None:
    minus5 = timezone(timedelta(hours=-5))
    a = sh(2026, 10, 1, 8, 0, 0)  # = 00:00 UTC
    b = datetime(2026, 9, 30, 20, 30, tzinfo=minus5)  # = 01:30 UTC, later than a
    c = datetime(2026, 10, 1, 0, 45, 0, 123456, tzinfo=UTC)
    with Store(store_url) as store:
        with store.transaction() as s:
            s.add_all([_post("a", a), _post("b", b), _post("c", c)])
        with store.reader() as s:
            rows = {p.post_id: p for p in s.scalars(select(Post))}
            for pid, want in (("a", a), ("b", b), ("c", c)):
                got = rows[pid].published_at
                assert got.tzinfo is not None and got.utcoffset() == timedelta(0), got
                assert got == want  # the same instant
            assert rows["c"].published_at.microsecond == 123456
            # Comparisons in SQL are in true time order whatever offset was given.
            order = s.scalars(select(Post.post_id).order_by(Post.published_at)).all()
            assert order == ["a", "c", "b"]
            before = s.scalars(
                select(Post.post_id).where(Post.published_at < datetime(2026, 10, 1, 9, 0, tzinfo=SH))
            ).all()
            assert sorted(before) == ["a", "c"]
            assert rows["a"].published_at.astimezone(SH).hour == 8


def test_naive_datetime_is_refused(store_url: str) -> None:
    with Store(store_url) as store:
        with pytest.raises(StatementError, match="naive datetime"):
            with store.transaction() as s:
                s.add(_post("n", datetime(2026, 10, 1, 8, 0)))
        assert store.count(Post) == 0


def test_post_id_unique_and_batch_rolls_back_whole(store_url: str) -> None:
    t = sh(2026, 10, 1, 8)
    with Store(store_url) as store:
        with store.transaction() as s:
            s.add(_post("dup", t))
        with pytest.raises(IntegrityError):
            with store.transaction() as s:
                s.add(_post("fresh", t))
                s.flush()
                s.add(_post("dup", t))
                s.flush()
        # "fresh" was in the failed transaction: nothing of it was kept.
        with store.reader() as s:
            assert s.scalars(select(Post.post_id)).all() == ["dup"]


def test_outbox_key_and_deadline_milestone_unique(store_url: str) -> None:
    t0 = sh(2026, 10, 1, 8)
    with Store(store_url) as store:
        with store.transaction() as s:
            tk = _ticket(s, t0)
            s.add(
                Outbox(
                    key=f"{tk.id}:回应:breach",
                    ticket_id=tk.id,
                    kind="deadline_breached",
                    payload={"a": "中文"},
                )
            )
            s.add(
                Deadline(
                    ticket_id=tk.id,
                    milestone="回应",
                    rule="response_48h",
                    starts_at=t0,
                    due_at=t0 + timedelta(hours=48),
                )
            )
            tid = tk.id
        with pytest.raises(IntegrityError):
            with store.transaction() as s:
                s.add(Outbox(key=f"{tid}:回应:breach", ticket_id=tid, kind="deadline_breached"))
        with pytest.raises(IntegrityError):
            with store.transaction() as s:
                s.add(Deadline(ticket_id=tid, milestone="回应", rule="response_48h", starts_at=t0, due_at=t0))
        with pytest.raises(IntegrityError):  # one ticket per event
            with store.transaction() as s:
                s.add(Ticket(event_id=s.get(Ticket, tid).event_id, rule="response_48h"))
        assert store.count(Outbox) == 1 and store.count(Deadline) == 1 and store.count(Ticket) == 1
        with store.reader() as s:
            assert s.scalars(select(Outbox.payload)).one() == {"a": "中文"}


def test_reopen_keeps_data(store_url: str) -> None:
    with Store(store_url) as store:
        with store.transaction() as s:
            s.add(_post("keep", sh(2026, 1, 1, 0), raw={"标题": "保留"}))
    with Store(store_url) as again:  # at the newest revision: only the version is read
        with again.reader() as s:
            p = s.scalars(select(Post)).one()
            assert p.raw == {"标题": "保留"} and p.place_label == "待定" and p.relevant is False


def test_foreign_keys_enforced(store_url: str) -> None:
    with Store(store_url) as store:
        with pytest.raises(IntegrityError):
            with store.transaction() as s:
                s.add(Ticket(event_id=999999, rule="response_48h"))


def test_url_normalisation() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:////tmp/x.db").drivername == "sqlite"


def test_sqlite_pragmas(tmp_path) -> None:
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as store, store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_many_processes_opening_a_fresh_database(store_url) -> None:
    """Responder and web starting together both create the schema without tripping over each other."""
    import threading

    errors: list[BaseException] = []
    opened: list[Store] = []
    barrier = threading.Barrier(4)

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
        t.join(30)
    assert not errors, errors
    assert len(opened) == 4 and opened[0].count(Post) == 0
    # The schema was made once: one version row, the newest revision.
    with opened[0].engine.connect() as c:
        assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [migrate.head()]
    for st in opened:
        st.close()
