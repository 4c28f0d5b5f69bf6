"""Timeliness figures (SPEC §6) against a hand-computed example: function, API and CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from responder.permissions import CLI_ACTOR
from responder.report import timeliness
from responder.store import Deadline, Event, Store, Ticket
from tests.fixtures.auth import client_as
from tests.fixtures.databases import sh
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
AS_OF = sh(2026, 11, 6, 12, 0)
H = timedelta(hours=1)

# (department, place, T0, hours to the milestone or None when not met); window 48 h.
CASES = [
    ("住房和城乡建设局", "蜀山区", sh(2026, 11, 1, 9), 10),  # on time
    ("住房和城乡建设局", "蜀山区", sh(2026, 11, 2, 9), 46),  # on time, last 10 % (> 43.2 h): near miss
    ("住房和城乡建设局", "蜀山区", sh(2026, 11, 3, 9), 50),  # late: breach
    ("住房和城乡建设局", "蜀山区", sh(2026, 11, 4, 9), None),  # due 11-06 09:00 < as_of: breach, open
    ("住房和城乡建设局", "蜀山区", sh(2026, 11, 5, 9), None),  # due 11-07: pending
    ("住房和城乡建设局", "蜀山区", sh(2026, 10, 31, 23, 59), 1),  # before the period
    ("住房和城乡建设局", "蜀山区", sh(2026, 11, 6, 0, 0), 1),  # after the period
    ("应急管理局", "包河区", sh(2026, 11, 1, 10), 1),
    ("应急管理局", "包河区", sh(2026, 11, 2, 10), 2),
    ("应急管理局", "包河区", sh(2026, 11, 3, 10), 3),
    ("应急管理局", "包河区", sh(2026, 11, 4, 10), 4),
]


def _fill(store: Store) -> None:
    with store.transaction() as s:
        for i, (dept, place, t0, hours) in enumerate(CASES):
            ev = Event(t0=t0, t0_post_id=f"p{i}", last_published_at=t0, place_label=place, title=f"事项{i}")
            s.add(ev)
            s.flush()
            t = Ticket(event_id=ev.id, department=dept, place_label=place, rule="response_48h", created_at=t0)
            s.add(t)
            s.flush()
            s.add(
                Deadline(
                    ticket_id=t.id,
                    milestone="回应",
                    rule="response_48h",
                    starts_at=t0,
                    due_at=t0 + 48 * H,
                    met_at=None if hours is None else t0 + hours * H,
                )
            )


EXPECTED = {
    # group: total, met, on_time, breaches, open_past_deadline, pending, near_misses, rate, median h, p90 h
    "住房和城乡建设局": (5, 3, 2, 2, 1, 1, 1, 0.5, 46.0, 50.0),
    "应急管理局": (4, 4, 4, 0, 0, 0, 0, 1.0, 2.5, 4.0),
    "合计": (9, 7, 6, 2, 1, 1, 1, 0.75, 4.0, 50.0),
}
FIELDS = [
    "total",
    "met",
    "on_time",
    "breaches",
    "open_past_deadline",
    "pending",
    "near_misses",
    "on_time_rate",
    "median_hours",
    "p90_hours",
]


@pytest.fixture
def filled(store_url: str) -> Store:
    store = Store(store_url)
    _fill(store)
    yield store
    store.close()


def test_matches_hand_computed_example(filled: Store) -> None:
    rep = timeliness(filled, date(2026, 11, 1), date(2026, 11, 5), by="department", as_of=AS_OF, actor=CLI_ACTOR)
    got = {r.group: tuple(getattr(r, f) for f in FIELDS) for r in rep.rows}
    assert got == EXPECTED
    assert all(r.milestone == "回应" for r in rep.rows)
    by_region = timeliness(filled, date(2026, 11, 1), date(2026, 11, 5), by="region", as_of=AS_OF, actor=CLI_ACTOR)
    got = {r.group: tuple(getattr(r, f) for f in FIELDS) for r in by_region.rows}
    assert got == {
        "蜀山区": EXPECTED["住房和城乡建设局"],
        "包河区": EXPECTED["应急管理局"],
        "合计": EXPECTED["合计"],
    }
    # Reproducible: the same archive and as_of give the same figures.
    again = timeliness(filled, date(2026, 11, 1), date(2026, 11, 5), by="department", as_of=AS_OF, actor=CLI_ACTOR)
    assert again.to_dict() == rep.to_dict()
    # Later, the pending one is overdue too.
    later = timeliness(filled, date(2026, 11, 1), date(2026, 11, 5), as_of=AS_OF + timedelta(days=2), actor=CLI_ACTOR)
    zjj = next(r for r in later.rows if r.group == "住房和城乡建设局")
    assert (zjj.breaches, zjj.open_past_deadline, zjj.pending, zjj.on_time_rate) == (3, 2, 0, 0.4)


def test_api(filled: Store, settings) -> None:
    client = client_as(create_app(settings, store=filled, now=lambda: AS_OF), "宣传办", "office")
    r = client.get(
        "/api/reports/timeliness", params={"from": "2026-11-01", "to": "2026-11-05", "by": "region"}
    )
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["as_of"] == "2026-11-06T12:00:00+08:00"
    rows = {x["group"]: tuple(x[f] for f in FIELDS) for x in j["rows"]}
    assert rows["包河区"] == EXPECTED["应急管理局"] and rows["合计"] == EXPECTED["合计"]
    assert (
        client.get("/api/reports/timeliness", params={"from": "2026-11-05", "to": "2026-11-01"}).status_code
        == 422
    )
    assert client.get("/api/reports/timeliness", params={"from": "x", "to": "2026-11-01"}).status_code == 422
    assert (
        client.get(
            "/api/reports/timeliness", params={"from": "2026-11-01", "to": "2026-11-05", "by": "x"}
        ).status_code
        == 422
    )


def test_cli_csv_and_xlsx(tmp_path: Path, settings, config_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    _fill(store)
    store.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YUQING_STORE_URL": url, "YUQING_DATA_DIR": str(tmp_path)}
    out_csv, out_xlsx = tmp_path / "t.csv", tmp_path / "t.xlsx"
    base = [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "report", "timeliness"]
    p = subprocess.run(
        base + ["--from", "2026-11-01", "--to", "2026-11-05", "--csv", str(out_csv), "--xlsx", str(out_xlsx)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    with open(out_csv, encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["分组", "节点", "总数"]
    # Every deadline of the example is due by now (2026 is long past the as_of default = now).
    body = {r[0]: r for r in rows[1:]}
    # Counts (撤销 0: nothing cancelled), the rate in %, durations in 小时:分.
    assert rows[0][8:] == ["撤销", "临界完成", "按时率", "用时中位数(小时:分)", "用时90分位(小时:分)"]
    assert body["应急管理局"][2:] == ["4", "4", "4", "0", "0", "0", "0", "0", "100.0%", "2:30", "4:00"]
    assert body["住房和城乡建设局"][2:5] == ["5", "3", "2"]
    assert body["住房和城乡建设局"][10:] == ["40.0%", "46:00", "50:00"]  # 2 of 5 decided on time as of now

    from openpyxl import load_workbook

    ws = load_workbook(out_xlsx).active
    values = list(ws.iter_rows(values_only=True))
    assert values[1][0] == "分组" and any(v[0] == "合计" and v[2] == 9 and v[10] == "66.7%" for v in values[2:])
    p = subprocess.run(
        base + ["--from", "2026-11-01", "--to", "2026-11-05", "--by", "region"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and "包河区\t回应\t4\t4\t4" in p.stdout, p.stdout + p.stderr
    assert "\t100.0%\t2:30\t4:00" in p.stdout and "撤销时限 0 件。" in p.stdout


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        timeliness(Store("sqlite://"), date(2026, 11, 5), date(2026, 11, 1), actor=CLI_ACTOR)
    with pytest.raises(ValueError):
        timeliness(Store("sqlite://"), date(2026, 11, 1), date(2026, 11, 5), by="weather", actor=CLI_ACTOR)
