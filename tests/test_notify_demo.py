"""Every deadline warning and breach of the demo reaches someone, with the shipped notify.yaml.

The demo site runs on 127.0.0.1 as if started three hours ago (every scripted
story published); the three demo sources are crawled for real (one crawl
each, child processes), the posts assessed by the shipped rules and model and
stored by the responder. Then the clock jumps from one due time to the next
until every deadline of every ticket has fired, the scheduler and the
dispatcher ticking at each. ``config/notify.yaml`` is the shipped one with
notifications enabled and only its channel endpoints moved to receivers on
127.0.0.1 (HTTP for the robots and the SMS gateway, SMTP for e-mail).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from responder.notify import Dispatcher, load_notify
from responder.scheduler import Scheduler
from responder.service import handle_batch
from responder.store import Deadline, Delivery, Notice, Store, Ticket, UnroutedNotice
from stream.contracts import SHANGHAI, AssessedPost
from tests.fixtures.auth import client_as
from tests.test_notify import Clock, HookReceiver, SMTPReceiver
from web.app import create_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BASE = "http://yuqing.test"
SOURCES = ("demo-news", "demo-forum", "demo-weibo")
STATUTORY = ("deadline_warning", "deadline_breached")


@dataclass
class Demo:
    settings: object
    config_dir: Path
    store_url: str
    posts: list[AssessedPost]
    smtp: SMTPReceiver
    hook: HookReceiver


def _shipped_notify_to(config_dir: Path, smtp: SMTPReceiver, hook: HookReceiver) -> None:
    """The shipped notify.yaml, enabled, each channel's endpoint on 127.0.0.1 (its own path)."""
    data = yaml.safe_load((ROOT / "config" / "notify.yaml").read_text(encoding="utf-8"))
    data["enabled"] = True
    for name, ch in data["channels"].items():
        if ch["kind"] == "email":
            ch["host"], ch["port"] = "127.0.0.1", smtp.server_address[1]
        else:
            ch["url"] = f"{hook.url}/{name}"
            if ch.get("secret"):
                ch["secret"] = "test-secret"
    (config_dir / "notify.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    from classifiers.assess import Assessor
    from crawlers.runner import crawl_once_report
    from tests.test_crawlers import latest, make_settings, read_posts
    from yuqing.demo_site import DemoServer

    tmp = tmp_path_factory.mktemp("notify-demo")
    smtp, hook = SMTPReceiver(), HookReceiver()
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (smtp, hook)]
    for t in threads:
        t.start()
    started = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(hours=3)
    with DemoServer(publish_every_s=20, seed=7, start=started) as site:
        settings = make_settings(tmp, site)
        config_dir = Path(settings.config_dir)
        # One crawl must see every story: enough list pages.
        src = config_dir / "sources.yaml"
        src.write_text(re.sub(r"max_pages: \d+", "max_pages: 10", src.read_text(encoding="utf-8")),
                       encoding="utf-8")
        for sid in SOURCES:
            report = crawl_once_report(settings, sid)
            assert report.emitted > 0, (sid, report)
    raw = list(latest(read_posts(settings)).values())
    at = datetime.now(SHANGHAI)
    assessed = [AssessedPost(post=p, assessment=a, assessed_at=at)
                for p, a in zip(raw, Assessor(settings).assess_batch(raw), strict=True)]
    _shipped_notify_to(config_dir, smtp, hook)
    yield Demo(settings, config_dir, f"sqlite:///{tmp / 'notify.db'}", assessed, smtp, hook)
    for s in (smtp, hook):
        s.shutdown()
        s.server_close()


def _run_clocks(store: Store, sch: Scheduler, d: Dispatcher, clock: Clock, horizon: datetime) -> int:
    """Jump from one due time to the next, ticking both; return the number of steps."""
    steps = 0
    d.tick()
    while (nxt := sch.next_due_at(clock.at)) is not None and nxt <= horizon:
        clock.at = nxt
        sch.tick()
        d.tick()
        steps += 1
    clock.at = horizon
    d.tick()
    return steps


def _received(demo: Demo) -> dict[str, list[str]]:
    """What each channel's far end got: the whole message as text."""
    out: dict[str, list[str]] = {}
    for path, got in demo.hook.got.items():
        out[path.strip("/")] = [json.dumps(g["body"], ensure_ascii=False) for g in got]
    out["mail"] = [m.get_payload(decode=True).decode("utf-8") for _rcpts, m in demo.smtp.mails]
    return out


def test_every_demo_warning_and_breach_reaches_a_recipient(demo: Demo) -> None:
    store = Store(demo.store_url)
    start = max(m.post.fetched_at for m in demo.posts) + timedelta(minutes=1)
    handle_batch(store, demo.settings, demo.posts, now=start)
    with store.reader() as s:
        tickets = {t.id: t for t in s.scalars(select(Ticket))}
        clocked = set(s.scalars(select(Deadline.ticket_id).distinct()))
        horizon = max(s.scalars(select(Deadline.due_at))) + timedelta(minutes=1)
    assert len(clocked) >= 15, "the demo should open many tickets under a statutory clock"

    cfg = load_notify(demo.config_dir)
    assert cfg is not None and cfg.enabled
    clock = Clock(start)
    sch = Scheduler(store, now=clock)
    d = Dispatcher(store, cfg, base_url=BASE, now=clock)
    _run_clocks(store, sch, d, clock, horizon)

    with store.reader() as s:
        notices = [n for n in s.scalars(select(Notice)) if n.kind in STATUTORY]
        deliveries = list(s.scalars(select(Delivery)))
        unrouted = list(s.scalars(select(UnroutedNotice)))
        open_deadlines = s.scalar(select(Deadline.id).where(Deadline.fired_at.is_(None)).limit(1))
    kinds = Counter(n.kind for n in notices)
    print(f"\ndemo: {len(tickets)} tickets, {len(clocked)} with clocks; notices {dict(kinds)}; "
          f"deliveries {len(deliveries)}; unrouted {len(unrouted)}")
    assert open_deadlines is None  # every deadline fired: the whole demo ran
    # Every ticket under a clock was warned and breached (nobody records milestones here).
    assert {n.ticket_id for n in notices if n.kind == "deadline_warning"} == clocked
    assert {n.ticket_id for n in notices if n.kind == "deadline_breached"} == clocked

    by_notice: dict[int, list[Delivery]] = {}
    for row in deliveries:
        by_notice.setdefault(row.notice_id, []).append(row)
    received = _received(demo)
    for n in notices:
        rows = by_notice.get(n.id, [])
        assert rows, f"{n.key}: no recipient ({tickets[n.ticket_id].department}, {tickets[n.ticket_id].place_code})"
        assert n.recipients == len(rows)
        for row in rows:
            assert row.status == "sent", (n.key, row.recipient, row.last_error)
            # The recipient's channel got a message linking this ticket.
            linked = {int(x) for text in received.get(row.channel, [])
                      for x in re.findall(r"/tickets/(\d+)", text)}
            assert n.ticket_id in linked, (n.key, row.recipient, row.channel)
    assert unrouted == []
    # Nothing was sent that the far ends did not get, and nothing twice.
    sent_messages = Counter(r.channel for r in {(r.channel, r.message_id): r for r in deliveries}.values())
    assert {ch: len(received.get(ch, [])) for ch in sent_messages} == dict(sent_messages)

    # The department kind within a jurisdiction, in practice: a county's 住建局 to 合肥's
    # (肥西县 is under 3401), a 六安 emergency to the provincial 应急管理厅.
    def recipients_of(department_prefix: str, kind: str) -> set[str]:
        return {row.recipient for n in notices if n.kind == kind
                for row in by_notice[n.id] if (tickets[n.ticket_id].department or "").startswith(department_prefix)}

    assert "合肥市住房和城乡建设局" in recipients_of("肥西县住房和城乡建设局", "deadline_warning")
    assert "安徽省应急管理厅" in recipients_of("霍山县应急管理局", "deadline_warning")
    store.close()

    # The board and /metrics say so: no unrouted notice.
    client = client_as(create_app(demo.settings, store=Store(demo.store_url), now=lambda: clock.at), "管理员", "admin")
    assert "通知无人接收" not in client.get("/").text
    assert "yuqing_notices_unrouted_24h 0" in client.get("/metrics").text


def test_without_fallbacks_the_gaps_show_on_the_board_and_in_metrics(demo: Demo, tmp_path: Path) -> None:
    """The same demo with only 合肥's recipients: warnings elsewhere reach nobody,
    and that is visible (board, /api/notices/unrouted, /metrics), not only logged."""
    cfg_dir = tmp_path / "config"
    shutil.copytree(demo.config_dir, cfg_dir)
    p = cfg_dir / "notify.yaml"
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    data["recipients"] = [r for r in data["recipients"] if r["name"].startswith("合肥") or r["role"] != "department"]
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg = load_notify(cfg_dir)
    assert cfg is not None

    url = f"sqlite:///{tmp_path / 'gaps.db'}"
    store = Store(url)
    start = max(m.post.fetched_at for m in demo.posts) + timedelta(minutes=1)
    handle_batch(store, demo.settings, demo.posts, now=start)
    clock = Clock(start)
    sch, d = Scheduler(store, now=clock), Dispatcher(store, cfg, base_url=BASE, now=clock)
    # Up to the first warnings and a little beyond.
    _run_clocks(store, sch, d, clock, start + timedelta(hours=30))
    with store.reader() as s:
        rows = list(s.scalars(select(UnroutedNotice)))
        warned = list(s.scalars(select(Notice).where(Notice.kind == "deadline_warning")))
    assert rows and {r.kind for r in rows} == {"deadline_warning"}
    assert all(n.recipients == 0 for n in warned if n.id in {r.notice_id for r in rows})
    # 合肥's own 住建 warnings still reach 合肥市住房和城乡建设局: only the others are gaps.
    assert not any((r.department or "").endswith("住房和城乡建设局") and (r.place_code or "").startswith("3401")
                   for r in rows)
    assert all("没有责任部门" in r.reason and r.department in r.reason for r in rows)

    client = client_as(create_app(demo.settings, store=Store(url), now=lambda: clock.at), "管理员", "admin")
    recent = [r for r in rows if r.created_at > clock.at - timedelta(hours=24)]
    board = client.get("/").text
    assert f"最近24小时有 {len(recent)} 条通知没有任何接收人" in board
    api = client.get("/api/notices/unrouted").json()
    assert api["last_24h"] == len(recent) and api["total_by_kind"] == {"deadline_warning": len(rows)}
    metrics = client.get("/metrics").text
    assert f'yuqing_notices_unrouted_total{{kind="deadline_warning"}} {len(rows)}' in metrics
    assert f"yuqing_notices_unrouted_24h {len(recent)}" in metrics
    store.close()
