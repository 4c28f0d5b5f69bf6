"""Crawl health in the responder: stored per source, admins told once per problem
spell (real webhook receiver, even in quiet hours), shown on the page, /api/sources
and /metrics, and consumed from ``crawl.health`` by the responder process."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import select

from responder.notify import Dispatcher, load_notify
from responder.service import relay_outbox
from responder.sources import record_health, source_views
from responder.store import Delivery, Outbox, SourceHealthRow, Store
from stream.contracts import CrawlHealth, encode
from stream.embedded import EmbeddedTransport
from tests.fixtures.auth import client_as
from tests.fixtures.databases import sh
from tests.test_notify import Clock, receivers, write_notify  # noqa: F401 - receivers is a fixture
from web.app import create_app

T0 = sh(2026, 11, 2, 23, 0)  # inside the test config's quiet hours (22:00–07:30)


def health(state: str, at: datetime, sid: str = "county_portal", **kw) -> CrawlHealth:
    last_ok = kw.pop("last_success_at", T0 - timedelta(hours=2))
    return CrawlHealth(
        source_id=sid,
        source_name=kw.pop("source_name", "县政府门户"),
        state=state,
        checked_at=at,
        last_success_at=last_ok,
        newest_item_at=kw.pop("newest_item_at", T0 - timedelta(hours=3)),
        lag_s=(at - (T0 - timedelta(hours=3))).total_seconds(),
        dark_s=(at - last_ok).total_seconds() if last_ok else None,
        error_rate=kw.pop("error_rate", 0.5 if state != "ok" else 0.0),
        reason=kw.pop("reason", f"状态{state}"),
        alert=kw.pop("alert", state in ("dark", "blocked", "cookie_expired")),
    )


def outbox_keys(store: Store) -> list[tuple[str, str]]:
    with store.reader() as s:
        return [(o.kind, o.key.rsplit(":", 1)[1]) for o in s.scalars(select(Outbox).order_by(Outbox.id))]


def test_one_notice_per_alerting_state_per_spell_and_one_on_recovery(store_url) -> None:
    store = Store(store_url)
    m = timedelta(minutes=1)
    assert record_health(store, [health("ok", T0)]) == 0
    assert record_health(store, [health("failing", T0 + m)]) == 0  # failing alone is not an alert
    dark = health("dark", T0 + 2 * m)
    assert record_health(store, [dark]) == 1
    assert record_health(store, [dark, health("dark", T0 + 3 * m)]) == 0  # redelivery and repeat: nothing new
    assert record_health(store, [health("blocked", T0 + 4 * m)]) == 1  # a new state in the same spell
    assert record_health(store, [health("dark", T0 + 5 * m)]) == 0  # dark was already reported this spell
    assert record_health(store, [health("ok", T0 + 6 * m)]) == 1  # recovered
    assert record_health(store, [health("dark", T0 + 7 * m)]) == 1  # a new spell alerts again
    assert record_health(store, [health("ok", T0 + 3 * m)]) == 0  # older than what we have: ignored
    assert outbox_keys(store) == [
        ("source_alert", "dark"), ("source_alert", "blocked"), ("source_recovered", "ok"), ("source_alert", "dark"),
    ]
    with store.reader() as s:
        row = s.get(SourceHealthRow, "county_portal")
        assert row.state == "dark" and row.problem_since == T0 + 7 * m and row.alerted == ["dark"]
        # No ticket behind them: they never go to tickets.events.
        assert all(o.ticket_id is None and o.sent_at is not None for o in s.scalars(select(Outbox)))
    store.close()


def test_source_alerts_are_not_relayed_as_ticket_events(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    record_health(store, [health("dark", T0)])
    with EmbeddedTransport(tmp_path / "log.db") as tr:
        producer = tr.producer()
        assert relay_outbox(store, producer, "yuqing.tickets.events") == 0
        producer.close()
    store.close()


def test_admins_get_the_alert_in_quiet_hours_and_the_recovery(tmp_path, settings, config_dir, receivers) -> None:  # noqa: F811
    smtp, hook = receivers
    write_notify(config_dir, smtp, hook, extra="""
""")
    text = (config_dir / "notify.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "recipients:\n",
        "recipients:\n  - {name: 系统管理员, role: admin, jurisdiction: \"\", channel: wecom}\n",
    ).replace("escalation:\n", "escalation:\n  source_alert: [{role: admin}, {role: duty}]\n"
              "  source_recovered: [{role: admin}]\n")
    (config_dir / "notify.yaml").write_text(text, encoding="utf-8")
    cfg = load_notify(config_dir)
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    clock = Clock(T0 + timedelta(minutes=1))
    d = Dispatcher(store, cfg, base_url="http://ignored", now=clock)

    record_health(store, [health("dark", T0, reason="已 62 分钟没有成功抓取")])
    assert d.tick() == (1, 2)  # one notice, admin + duty desk; 23:01 is quiet hours, still sent now
    wecom = hook.got["/wecom"]
    assert len(wecom) == 1
    body = wecom[0]["body"]["markdown"]["content"]
    assert "信息源告警" in body and "县政府门户失联" in body and "已 62 分钟没有成功抓取" in body
    assert "最近一次成功抓取：2026-11-02 21:00" in body  # Asia/Shanghai
    assert len(hook.got["/hook"]) == 1  # the duty desk's webhook

    record_health(store, [health("dark", T0 + timedelta(minutes=5))])
    clock.at = T0 + timedelta(minutes=6)
    assert d.tick() == (0, 0)  # same spell, same state: nobody told twice
    record_health(store, [health("ok", T0 + timedelta(minutes=30), last_success_at=T0 + timedelta(minutes=30))])
    clock.at = T0 + timedelta(minutes=31)
    assert d.tick() == (1, 1)
    assert "信息源已恢复" in hook.got["/wecom"][1]["body"]["markdown"]["content"]
    with store.reader() as s:
        assert {x.status for x in s.scalars(select(Delivery))} == {"sent"}
    store.close()


def test_page_api_and_metrics_show_the_dark_source(tmp_path, settings) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    record_health(store, [health("ok", T0, sid="weibo_kw", source_name="微博关键词", last_success_at=T0),
                          health("dark", T0, sid="a_portal", source_name="县政府门户")])
    app = create_app(settings, store=store, now=lambda: T0 + timedelta(minutes=1))
    with client_as(app, "管理员", "admin") as c:
        page = c.get("/").text
        assert "信息源告警：县政府门户失联" in page and "微博关键词" not in page
        assert "信息源告警" in c.get("/fragment/tickets").text  # the 5 s refresh keeps it
        api = c.get("/api/sources").json()
        assert api["alerts"] == 1
        assert [v["source_id"] for v in api["sources"]] == ["a_portal", "weibo_kw"]  # problems first
        assert api["sources"][0]["last_success_at"].startswith("2026-11-02T21:00")
        metrics = c.get("/metrics").text
    assert 'yuqing_source_up{source="a_portal",state="dark"} 0' in metrics
    assert 'yuqing_source_up{source="weibo_kw",state="ok"} 1' in metrics
    assert 'yuqing_source_dark_seconds{source="a_portal",state="dark"} 7200.0' in metrics
    assert 'yuqing_tickets{status="new"} 0' in metrics
    record_health(store, [health("ok", T0 + timedelta(minutes=2), sid="a_portal", last_success_at=T0)])
    with client_as(create_app(settings, store=store), "管理员", "admin") as c:
        assert "信息源告警" not in c.get("/").text
    store.close()


def test_responder_process_consumes_crawl_health(tmp_path, settings, monkeypatch) -> None:
    from responder import service
    from stream.factory import open_transport, topic
    from stream.topics import CRAWL_HEALTH

    stop = threading.Event()
    t = threading.Thread(target=service.run, args=(settings, stop), daemon=True)
    t.start()
    try:
        tr = open_transport(settings)
        p = tr.producer()
        p.send(topic(settings, CRAWL_HEALTH), encode(health("blocked", T0)), key=b"county_portal")
        p.send(topic(settings, CRAWL_HEALTH), b"{not json", key=b"bad")  # dead-lettered, not fatal
        p.send(topic(settings, CRAWL_HEALTH), encode(health("blocked", T0, sid="other")), key=b"other")
        p.flush()
        p.close()
        tr.close()
        store = Store(settings.store_url)
        deadline = time.monotonic() + 30
        views: list = []
        while time.monotonic() < deadline:
            views = source_views(store)
            if len(views) == 2:
                break
            time.sleep(0.2)
        assert {v["source_id"]: v["state"] for v in views} == {"county_portal": "blocked", "other": "blocked"}
        assert [k for k, _ in outbox_keys(store)] == ["source_alert", "source_alert"]
        store.close()
    finally:
        stop.set()
        t.join(timeout=30)
    assert not t.is_alive()
