"""Statutory clocks: hours from T0, working days with 调休, unknown years, config errors."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from responder.clocks import (
    SHANGHAI,
    WorkCalendar,
    deadlines_for,
    load_clocks,
    rule_for,
)
from responder.service import handle_batch
from responder.store import Deadline, Event, Store, Ticket
from stream.contracts import Assessment
from tests.fixtures.databases import assessed, sh
from yuqing.configfile import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clocks():
    return load_clocks(ROOT / "config")


def test_major_emergency_5h_24h_from_t0(clocks) -> None:
    t0 = sh(2026, 10, 1, 9, 0)
    got = dict(clocks.deadlines_for("major_emergency", t0))
    assert got == {"权威信息发布": sh(2026, 10, 1, 14, 0), "新闻发布会": sh(2026, 10, 2, 9, 0)}
    # Given in UTC, answered in Asia/Shanghai, same instants.
    got_utc = dict(deadlines_for("major_emergency", t0.astimezone(UTC), clocks))
    assert got_utc == got
    assert all(str(d.tzinfo) == "Asia/Shanghai" for d in got_utc.values())


def test_response_48h_runs_through_holidays_and_nights(clocks) -> None:
    t0 = sh(2026, 9, 30, 23, 30)
    assert clocks.deadlines_for("response_48h", t0) == [("回应", sh(2026, 10, 2, 23, 30))]


def test_deadlines_start_from_publication_not_crawl_time(tmp_path, settings) -> None:
    """The post was published at 09:00 but crawled at 11:30: clocks run from 09:00."""
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    msg = assessed(
        "fire-1",
        title="蜀山区居民楼火灾致12人死亡",
        text="合肥市蜀山区一居民楼发生火灾，已造成12人死亡。",
        published_at=sh(2026, 10, 1, 9, 0),
        fetched_at=sh(2026, 10, 1, 11, 30),
        severity="重大",
        is_emergency=True,
        event_type="事故灾难",
        event_subtype="火灾",
    )
    handle_batch(store, settings, [msg])
    with store.reader() as s:
        ticket = s.scalars(select(Ticket)).one()
        event = s.get(Event, ticket.event_id)
        due = {d.milestone: d.due_at for d in s.scalars(select(Deadline))}
    assert ticket.rule == "major_emergency"
    assert event.t0 == sh(2026, 10, 1, 9, 0)
    assert event.t0_crawl_lag_s == 2.5 * 3600
    assert due == {"权威信息发布": sh(2026, 10, 1, 14, 0), "新闻发布会": sh(2026, 10, 2, 9, 0)}
    store.close()


def test_working_days_across_national_day_2026(clocks) -> None:
    # 2026: 10-01..10-07 off, Saturday 10-10 is a make-up working day (调休).
    t0 = sh(2026, 9, 30, 10, 0)
    # 7 working days: 10-08, 10-09, 10-10(Sat, 调休), 10-12, 10-13, 10-14, 10-15.
    # (Mon-Fri counting would give 10-09; ignoring the make-up day, 10-16.)
    assert clocks.deadlines_for("suggestion", t0) == [
        ("反馈处理意见", datetime(2026, 10, 15, 23, 59, 59, tzinfo=SHANGHAI))
    ]
    assert clocks.deadlines_for("complaint", t0) == [
        ("答复", datetime(2026, 10, 27, 23, 59, 59, tzinfo=SHANGHAI))
    ]
    assert clocks.extended_deadline("suggestion", "反馈处理意见", t0) == datetime(
        2026, 10, 27, 23, 59, 59, tzinfo=SHANGHAI
    )
    # Sunday 2026-09-20 is a make-up working day before 中秋 (09-25..09-27 off).
    t1 = sh(2026, 9, 18, 17, 0)
    assert clocks.deadlines_for("suggestion", t1)[0][1].date().isoformat() == "2026-09-29"
    assert clocks.calendar.is_workday(datetime(2026, 10, 10).date())
    assert not clocks.calendar.is_workday(datetime(2026, 10, 5).date())


def test_unknown_year_counts_mon_to_fri_and_warns(clocks, caplog) -> None:
    cal = WorkCalendar()
    with caplog.at_level(logging.WARNING, logger="responder.clocks"):
        due = cal.add_working_days(datetime(2027, 3, 1).date(), 7)  # Monday
    assert due.isoformat() == "2027-03-10"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1
        and "2027" in warnings[0].getMessage()
        and "workdays.yaml" in warnings[0].getMessage()
    )
    # Through the rules too: no crash, an answer in Asia/Shanghai.
    got = clocks.deadlines_for("complaint", sh(2031, 12, 24, 9))
    assert got[0][1].tzinfo is not None and got[0][1] > sh(2031, 12, 24, 9)


def test_workdays_file_extends_calendar(config_dir: Path, caplog) -> None:
    (config_dir / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays: [2027-03-02]\n    workdays: [2027-03-06]\n", encoding="utf-8"
    )
    c = load_clocks(config_dir)
    with caplog.at_level(logging.WARNING, logger="responder.clocks"):
        due = c.deadlines_for("suggestion", sh(2027, 3, 1, 9))[0][1]
    # 03-02 off, Saturday 03-06 on: 03-03, 04, 05, 06, 08, 09, 10.
    assert due.date().isoformat() == "2027-03-10"
    assert not [r for r in caplog.records if "2027" in r.getMessage()]  # the office gave the year


def test_rule_for(clocks, monkeypatch) -> None:
    def a(**kw) -> Assessment:
        return Assessment.model_validate({"relevant": True, **kw})

    assert rule_for(a(is_emergency=True, severity="重大"), clocks) == "major_emergency"
    assert rule_for(a(is_emergency=True, severity="特别重大"), clocks) == "major_emergency"
    assert rule_for(a(is_emergency=True, severity="较大"), clocks) == "response_48h"
    assert rule_for(a(is_emergency=False, severity="重大"), clocks) == "response_48h"
    assert rule_for(Assessment(relevant=False), clocks) is None
    # Without an explicit Clocks: the rules of $YUQING_CONFIG_DIR.
    monkeypatch.setenv("YUQING_CONFIG_DIR", str(ROOT / "config"))
    assert rule_for(a(is_emergency=True, severity="重大")) == "major_emergency"
    assert deadlines_for("response_48h", sh(2026, 10, 1, 9)) == [("回应", sh(2026, 10, 3, 9))]


def test_naive_t0_refused(clocks) -> None:
    with pytest.raises(ValueError, match="time zone"):
        clocks.deadlines_for("response_48h", datetime(2026, 10, 1, 9))


def test_config_error_names_file_line_and_field(config_dir: Path) -> None:
    p = config_dir / "clocks.yaml"
    lines = p.read_text(encoding="utf-8").splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip() == "hours: 5")
    lines[i] = lines[i].replace("hours: 5", "hours: -5")
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_clocks(config_dir)
    assert f"clocks.yaml:{i + 1}: rules.major_emergency.milestones.0.hours" in str(e.value)


def test_config_error_both_durations_and_bad_workdays(config_dir: Path) -> None:
    (config_dir / "clocks.yaml").write_text(
        "rules:\n  x:\n    milestones:\n      - name: 回应\n        hours: 4\n        working_days: 2\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as e:
        load_clocks(config_dir)
    assert "clocks.yaml:4: rules.x.milestones.0" in str(e.value) and "exactly one" in str(e.value)

    (config_dir / "clocks.yaml").write_text(
        "rules:\n  x:\n    milestones:\n      - {name: 回应, hours: 4}\n", encoding="utf-8"
    )
    (config_dir / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays: [2027-02-30]\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as e:
        load_clocks(config_dir)
    assert "workdays.yaml:3: invalid value" in str(e.value)  # PyYAML cannot even build 02-30

    (config_dir / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays:\n      - 2027-10-01\n      - 国庆\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as e:
        load_clocks(config_dir)
    assert "workdays.yaml:5: years.2027.holidays.1" in str(e.value)

    (config_dir / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays: [2028-01-01]\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"workdays\.yaml:1: years: .*listed under year 2027"):
        load_clocks(config_dir)


def test_warning_points_validated(config_dir: Path) -> None:
    p = config_dir / "clocks.yaml"
    p.write_text(
        p.read_text(encoding="utf-8").replace("warnings: [0.5, 0.8]", "warnings: [0.5, 80]"), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"clocks\.yaml:\d+: warnings"):
        load_clocks(config_dir)


def test_hours_clock_exact_across_midnight(clocks) -> None:
    t0 = sh(2026, 12, 31, 22, 17)
    ((name, due),) = clocks.deadlines_for("major_emergency", t0)[:1]
    assert name == "权威信息发布" and due - t0 == timedelta(hours=5) and due.year == 2027


def test_startup_check_hook_reads_settings_config_dir(settings, config_dir: Path) -> None:
    from responder.clocks import load_clock_rules

    assert set(load_clock_rules(settings).config.rules) >= {
        "major_emergency",
        "response_48h",
        "suggestion",
        "complaint",
    }
    (config_dir / "clocks.yaml").write_text("rules: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"clocks\.yaml:1: rules"):
        load_clock_rules(settings)


# --------------------------------------------------------------------------- calendar robustness


def _eod(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 23, 59, 59, tzinfo=SHANGHAI)


def test_hours_clocks_across_month_end(clocks) -> None:
    t0 = sh(2026, 1, 31, 21, 30)
    assert clocks.deadlines_for("major_emergency", t0) == [
        ("权威信息发布", sh(2026, 2, 1, 2, 30)),
        ("新闻发布会", sh(2026, 2, 1, 21, 30)),
    ]
    assert clocks.deadlines_for("response_48h", sh(2028, 2, 28, 12)) == [
        ("回应", sh(2028, 3, 1, 12))
    ]  # leap year


def test_working_days_t0_at_midnight_and_end_of_day_count_from_next_day(clocks) -> None:
    # Monday 2026-03-02: the day of T0 never counts, whatever the hour.
    for t0 in (sh(2026, 3, 2, 0, 0), sh(2026, 3, 2, 23, 59)):
        assert clocks.deadlines_for("suggestion", t0) == [("反馈处理意见", _eod(2026, 3, 11))]
    # One second before midnight on Sunday 03-01 vs. midnight Monday 03-02: one working day apart.
    assert clocks.deadlines_for("suggestion", sh(2026, 3, 1, 23, 59))[0][1] == _eod(2026, 3, 10)


def test_working_days_across_year_end_with_make_up_sunday(clocks) -> None:
    # 2026-01-01..03 off, Sunday 2026-01-04 is a make-up working day (调休).
    t0 = sh(2025, 12, 30, 8, 0)
    # 12-31, 01-04(Sun), 01-05, 06, 07, 08, 09.
    assert clocks.deadlines_for("suggestion", t0) == [("反馈处理意见", _eod(2026, 1, 9))]


def test_working_days_across_spring_festival_2026(clocks) -> None:
    # 2026 春节: 02-15..02-23 off; Saturdays 02-14 and 02-28 are make-up working days.
    t0 = sh(2026, 2, 13, 10, 0)
    # 02-14(Sat), 02-24, 25, 26, 27, 02-28(Sat), 03-02.
    assert clocks.deadlines_for("suggestion", t0) == [("反馈处理意见", _eod(2026, 3, 2))]
    assert clocks.calendar.is_workday(datetime(2026, 2, 14).date())
    assert not clocks.calendar.is_workday(datetime(2026, 2, 23).date())
    # The hour clocks ignore the holiday entirely.
    assert clocks.deadlines_for("response_48h", t0) == [("回应", sh(2026, 2, 15, 10, 0))]


def test_working_days_across_national_day_2025(clocks) -> None:
    # 2025: 10-01..10-08 off; Sunday 09-28 and Saturday 10-11 are make-up working days.
    t0 = sh(2025, 9, 26, 16, 0)
    # 09-28(Sun), 29, 30, 10-09, 10-10, 10-11(Sat), 10-13.
    assert clocks.deadlines_for("suggestion", t0) == [("反馈处理意见", _eod(2025, 10, 13))]


def test_year_beyond_builtin_calendar_warns_then_workdays_file_fills_it(config_dir: Path, caplog) -> None:
    t0 = sh(2026, 12, 25, 9)  # Friday; 2027 is unknown to chinese_calendar
    with caplog.at_level(logging.WARNING, logger="responder.clocks"):
        due = load_clocks(config_dir).deadlines_for("complaint", t0)[0][1]
    # 12-28..31 (4), then Mon-Fri in 2027: 01-01 (5), 01-04..08 (10), 01-11..15 (15).
    assert due == _eod(2027, 1, 15)
    assert any("2027" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    caplog.clear()
    (config_dir / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays: [2027-01-01]\n", encoding="utf-8"
    )
    with caplog.at_level(logging.WARNING, logger="responder.clocks"):
        due = load_clocks(config_dir).deadlines_for("complaint", t0)[0][1]
    assert due == _eod(2027, 1, 18)  # 元旦 off: one working day later
    assert not [r for r in caplog.records if "2027" in r.getMessage()]


def test_t0_moving_back_moves_open_deadlines_back(tmp_path, settings) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    first = sh(2026, 11, 2, 12, 0)
    handle_batch(
        store,
        settings,
        [assessed("late", title="小区停水三天无人管", text="蜀山区某小区停水三天", published_at=first)],
        now=first + timedelta(minutes=5),
    )
    with store.reader() as s:
        assert s.scalars(select(Deadline.due_at)).all() == [first + timedelta(hours=48)]
    earlier = first - timedelta(hours=7)
    # A reply in the same thread, published earlier, found later.
    handle_batch(
        store,
        settings,
        [assessed("early", title="停水了", text="小区停水", published_at=earlier, parent_id="late")],
        now=first + timedelta(hours=1),
    )
    with store.reader() as s:
        d = s.scalars(select(Deadline)).one()
        ev = s.scalars(select(Event)).one()
    assert ev.t0 == earlier and d.starts_at == earlier and d.due_at == earlier + timedelta(hours=48)
    store.close()


def test_acknowledging_a_working_day_ticket_leaves_its_clock(tmp_path, settings) -> None:
    from responder.scheduler import Scheduler
    from tests.fixtures.auth import client_as
    from web.app import create_app

    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    t0 = sh(2026, 2, 13, 10, 0)
    handle_batch(
        store, settings, [assessed("w", title="物业乱收费", text="物业乱收费", published_at=t0)], now=t0
    )
    with store.transaction() as s:
        t = s.scalars(select(Ticket)).one()
        from responder.scheduler import plan_deadlines

        plan_deadlines(s, load_clocks(ROOT / "config"), t, "suggestion", t0)
        tid = t.id
    client = client_as(create_app(settings, store=store, now=lambda: t0 + timedelta(hours=1)), "王五")
    assert client.post(f"/api/tickets/{tid}/ack").status_code == 200
    fired = Scheduler(store, now=lambda: _eod(2026, 3, 2) + timedelta(seconds=1)).tick()
    assert sorted((f.milestone, f.kind) for f in fired) == [("反馈处理意见", "breach"), ("回应", "breach")]
    store.close()
