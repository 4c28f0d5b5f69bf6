"""Notifications: real SMTP and HTTP receivers on 127.0.0.1, real SQLite, an injectable clock."""

from __future__ import annotations

import email
import json
import os
import re
import signal
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from responder.notify import Dispatcher, load_notify
from responder.notify.channels import idempotency_key
from responder.scheduler import Scheduler
from responder.service import handle_batch
from responder.store import Delivery, Notice, Store, Ticket
from tests.fixtures.auth import client_as
from tests.fixtures.common import Clock
from tests.fixtures.databases import assessed, sh
from web.app import create_app
from yuqing.configfile import ConfigError

ROOT = Path(__file__).resolve().parents[1]
T0 = sh(2026, 11, 2, 9, 0)
BASE = "http://yuqing.test"


# --------------------------------------------------------------------------- receivers


class _SMTPHandler(socketserver.StreamRequestHandler):
    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 localhost test SMTP")
        rcpts: list[str] = []
        while True:
            line = self.rfile.readline().decode("utf-8", "replace").strip()
            if not line:
                return
            cmd = line.split(" ", 1)[0].upper()
            if cmd == "EHLO":
                self._say("250-localhost")
                self._say("250 8BITMIME")
            elif cmd == "HELO":
                self._say("250 localhost")
            elif cmd == "MAIL":
                rcpts = []
                self._say("250 OK")
            elif cmd == "RCPT":
                rcpts.append(line.split(":", 1)[1].strip(" <>"))
                self._say("250 OK")
            elif cmd == "DATA":
                self._say("354 go ahead")
                data = b""
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b".\n", b""):
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                self.server.mails.append((rcpts, email.message_from_bytes(data)))  # type: ignore[attr-defined]
                self._say("250 queued")
            elif cmd == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("250 OK")


class SMTPReceiver(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SMTPHandler)
        self.mails: list[tuple[list[str], email.message.Message]] = []


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        srv: HookReceiver = self.server  # type: ignore[assignment]
        path = self.path.split("?")[0]
        srv.got.setdefault(path, []).append({"body": body, "headers": dict(self.headers), "query": self.path})
        status = srv.status.get(path, 200)
        out = json.dumps({"errcode": 0, "errmsg": "ok", "code": 0} if status == 200 else {"error": "boom"})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *args: Any) -> None:
        pass


class HookReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.got: dict[str, list[dict[str, Any]]] = {}
        self.status: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def receivers() -> Iterator[tuple[SMTPReceiver, HookReceiver]]:
    smtp, hook = SMTPReceiver(), HookReceiver()
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (smtp, hook)]
    for t in threads:
        t.start()
    yield smtp, hook
    for s in (smtp, hook):
        s.shutdown()
        s.server_close()


def write_notify(config_dir: Path, smtp: SMTPReceiver, hook: HookReceiver, extra: str = "") -> Path:
    u = hook.url
    text = f"""
enabled: true
base_url: {BASE}
channels:
  mail: {{kind: email, host: 127.0.0.1, port: {smtp.server_address[1]}, sender: yuqing@test.gov.cn}}
  ding: {{kind: dingtalk, url: "{u}/ding?access_token=x"}}
  wecom: {{kind: wecom, url: "{u}/wecom"}}
  feishu: {{kind: feishu, url: "{u}/feishu"}}
  hook: {{kind: webhook, url: "{u}/hook"}}
  sms: {{kind: sms, url: "{u}/sms"}}
  failing: {{kind: webhook, url: "{u}/fail"}}
recipients:
  - {{name: 值班室, role: duty, jurisdiction: "", channel: hook}}
  - {{name: 合肥市住建局, role: department, jurisdiction: "3401", departments: [住房和城乡建设局], channel: mail, address: zjj@hf.test}}
  - {{name: 合肥市应急局, role: department, jurisdiction: "3401", departments: [应急管理局], channel: ding}}
  - {{name: 合肥市政府办公室, role: office, jurisdiction: "3401", channel: ding}}
  - {{name: 合肥市委宣传部, role: propaganda, jurisdiction: "3401", channel: wecom}}
  - {{name: 安徽省政府办公厅, role: office, jurisdiction: "34", channel: feishu}}
  - {{name: 合肥市市长, role: leader, jurisdiction: "3401", channel: sms, address: "13800000001"}}
escalation:
  opened: [{{role: duty}}]
  unacknowledged: [{{role: duty}}]
  deadline_warning: [{{role: department}}]
  deadline_breached:
    - {{role: department}}
    - {{role: office}}
    - {{role: propaganda}}
    - {{role: office, up: 1}}
    - {{role: propaganda, up: 1}}
    - {{role: leader, severity_in: [特别重大]}}
  milestone: [{{role: office}}]
unacknowledged: {{interval_minutes: 15, max_reminders: 2}}
quiet_hours: {{start: "22:00", end: "07:30"}}
retry: {{backoff_s: [10, 60]}}
claim_lease_s: 60
{extra}
"""
    (config_dir / "notify.yaml").write_text(text, encoding="utf-8")
    return config_dir



def _ticket(store: Store, settings, post_id: str, *, at: datetime, severity: str = "一般", **kw: Any) -> int:
    handle_batch(
        store,
        settings,
        [
            assessed(
                post_id,
                title=kw.pop("title", f"事项{post_id}"),
                text=kw.pop("text", f"{post_id}的内容"),
                published_at=at,
                severity=severity,
                **kw,
            )
        ],
        now=at + timedelta(minutes=1),
    )
    with store.reader() as s:
        return s.scalars(select(Ticket.id).order_by(Ticket.id.desc())).first()


def _subject(m: email.message.Message) -> str:
    return str(make_header(decode_header(m["Subject"])))


def _deliveries(store: Store) -> list[Delivery]:
    with store.reader() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


# --------------------------------------------------------------------------- tests


def test_each_channel_gets_exactly_the_expected_messages(store_url, settings, config_dir, receivers) -> None:
    smtp, hook = receivers
    cfg = load_notify(write_notify(config_dir, smtp, hook))
    store = Store(store_url)
    tid = _ticket(
        store,
        settings,
        "fire",
        at=T0,
        severity="重大",
        is_emergency=True,
        event_type="事故灾难",
        event_subtype="火灾",
        department="住房和城乡建设局",
        place="合肥市",
        title="蜀山区居民楼火灾",
        text="火灾已致12人死亡",
    )
    clock = Clock(T0 + timedelta(minutes=2))
    d = Dispatcher(store, cfg, base_url="http://ignored", now=clock)
    sch = Scheduler(store, now=clock)

    assert d.tick() == (1, 1)  # new ticket → the duty desk
    clock.at = T0 + timedelta(minutes=20)
    assert d.tick() == (1, 1)  # still unacknowledged after 15 min → reminder
    clock.at = T0 + timedelta(minutes=25)
    assert d.tick() == (0, 0)
    hooks = [g["body"] for g in hook.got["/hook"]]
    assert [h["title"] for h in hooks] == [
        "【新舆情工单】蜀山区居民楼火灾",
        "【催办：工单尚未确认接收】蜀山区居民楼火灾",
    ]
    assert hooks[0]["link"] == f"{BASE}/tickets/{tid}" and f"{BASE}/tickets/{tid}" in hooks[0]["text"]
    assert "第1次提醒" in hooks[1]["text"]
    assert hooks[0]["key"] == f"{tid}:unack:0:值班室"
    assert hook.got["/hook"][0]["headers"]["Idempotency-Key"] == idempotency_key(f"{tid}:unack:0:值班室")

    client = client_as(create_app(settings, store=store, now=clock), "张三")
    assert client.post(f"/api/tickets/{tid}/ack").status_code == 200
    clock.at = T0 + timedelta(minutes=50)
    assert d.tick() == (1, 0)  # the acknowledgement: nobody is configured for it; no more reminders

    clock.at = T0 + timedelta(hours=2, minutes=30)
    assert [f.kind for f in sch.tick()] == ["warn50"]
    d.tick()
    assert len(smtp.mails) == 1
    rcpts, m = smtp.mails[0]
    assert rcpts == ["zjj@hf.test"] and _subject(m) == "【期限预警】蜀山区居民楼火灾"
    body = m.get_payload(decode=True).decode("utf-8")
    assert "已过 50%" in body and "权威信息发布" in body and "截止 2026-11-02 14:00" in body
    assert "剩余时间：2小时30分" in body and f"{BASE}/tickets/{tid}" in body

    clock.at = T0 + timedelta(hours=5, minutes=10)
    sch.tick()  # 权威信息发布 breached (80 % superseded)
    d.tick()
    # Breach of a 重大 item: department (mail), 市政府办公室 (DingTalk), 市委宣传部 (WeCom),
    # one level up 省政府办公厅 (Feishu); no leader (not 特别重大).
    assert len(smtp.mails) == 2 and _subject(smtp.mails[1][1]) == "【超时督办】蜀山区居民楼火灾"
    (ding,) = [g["body"] for g in hook.got["/ding"]]
    assert ding["msgtype"] == "markdown" and ding["markdown"]["title"] == "【超时督办】蜀山区居民楼火灾"
    assert "已超时：10分" in ding["markdown"]["text"] and "合肥市政府办公室" in ding["markdown"]["text"]
    assert ding["at"] == {"atMobiles": [], "isAtAll": False}
    (wecom,) = [g["body"] for g in hook.got["/wecom"]]
    assert wecom["msgtype"] == "markdown" and "合肥市委宣传部" in wecom["markdown"]["content"]
    (feishu,) = [g["body"] for g in hook.got["/feishu"]]
    assert feishu["msg_type"] == "text" and "安徽省政府办公厅" in feishu["content"]["text"]
    assert "**" not in feishu["content"]["text"] and f"{BASE}/tickets/{tid}" in feishu["content"]["text"]
    assert "/sms" not in hook.got
    assert d.tick() == (0, 0)
    with store.reader() as s:
        assert s.scalar(select(Notice.recipients).where(Notice.key == f"{tid}:权威信息发布:breach")) == 4
    assert all(x.status == "sent" and x.attempts == 1 for x in _deliveries(store))
    store.close()


def test_special_major_breach_reaches_the_leader_by_sms(tmp_path, settings, config_dir, receivers) -> None:
    smtp, hook = receivers
    cfg = load_notify(write_notify(config_dir, smtp, hook))
    store = Store(f"sqlite:///{tmp_path / 'l.db'}")
    _ticket(
        store,
        settings,
        "big",
        at=T0,
        severity="特别重大",
        is_emergency=True,
        event_type="事故灾难",
        event_subtype="爆炸",
        department="应急管理局",
        title="化工厂爆炸",
        text="化工厂爆炸致35人死亡",
    )
    clock = Clock(T0 + timedelta(hours=6))
    Scheduler(store, now=clock).tick()
    Dispatcher(store, cfg, base_url=BASE, now=clock).tick()
    (sms,) = [g["body"] for g in hook.got["/sms"]]
    assert sms["phone"] == "13800000001" and "【超时督办】化工厂爆炸" in sms["content"]
    # The 应急局 (department) and the office share the DingTalk robot: two messages there.
    assert len(hook.got["/ding"]) == 2
    store.close()


def test_burst_beyond_robot_limit_becomes_digest_nothing_lost(
    store_url, settings, config_dir, receivers
) -> None:
    smtp, hook = receivers
    cfg = load_notify(write_notify(config_dir, smtp, hook))
    cfg.escalation.deadline_breached = cfg.escalation.deadline_breached[:1]  # department only
    cfg.escalation.opened = []
    store = Store(store_url)
    for i in range(55):
        _ticket(
            store,
            settings,
            f"e{i}",
            at=T0 + timedelta(days=7 * i),
            department="应急管理局",
            title=f"第{i}号事项",
            text=f"编号{i}的不同内容{i * 7919}",
        )
    # 50 of them breach at the same moment; the robot takes 20 messages a minute.
    with store.transaction() as s:
        from responder.store import Deadline

        for dl in s.scalars(select(Deadline).order_by(Deadline.id)):
            dl.due_at = T0 + timedelta(hours=1) if dl.ticket_id <= 50 else T0 + timedelta(hours=1, seconds=30)
    clock = Clock(T0 + timedelta(hours=1))
    sch, d = Scheduler(store, now=clock), Dispatcher(store, cfg, base_url=BASE, now=clock)
    assert len(sch.tick()) == 50
    assert d.tick() == (50, 20)
    msgs = [g["body"]["markdown"] for g in hook.got["/ding"]]
    assert len(msgs) == 20
    assert all(m["title"].startswith("【超时督办】") for m in msgs[:19])
    assert msgs[19]["title"].startswith("【舆情通知汇总】共 31 条")
    clock.at += timedelta(seconds=30)
    assert len(sch.tick()) == 5
    assert d.tick() == (5, 0)  # the limit is used up for this minute: wait, do not drop
    clock.at += timedelta(seconds=31)
    assert d.tick() == (0, 5)
    texts = "\n".join(m["text"] for m in (g["body"]["markdown"] for g in hook.got["/ding"]))
    linked = {int(x) for x in re.findall(rf"{re.escape(BASE)}/tickets/(\d+)", texts)}
    assert linked == set(range(1, 56))  # every ticket reached the robot: nothing dropped
    rows = _deliveries(store)
    assert len(rows) == 55 and all(r.status == "sent" for r in rows)
    assert sum(r.digest for r in rows) == 31 and len({r.message_id for r in rows if r.digest}) == 1
    store.close()


def test_channel_500_is_retried_with_backoff_then_failure_recorded(
    tmp_path, settings, config_dir, receivers
) -> None:
    smtp, hook = receivers
    hook.status["/fail"] = 500
    cfg = load_notify(write_notify(config_dir, smtp, hook))
    for r in cfg.recipients:
        if r.role == "duty":
            r.channel = "failing"
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    _ticket(store, settings, "x", at=T0)
    clock = Clock(T0 + timedelta(minutes=2))
    d = Dispatcher(store, cfg, base_url=BASE, now=clock)
    assert d.tick() == (1, 0)
    (row,) = _deliveries(store)
    assert row.status == "pending" and row.attempts == 1 and "HTTP 500" in (row.last_error or "")
    assert row.next_attempt_at == clock.at + timedelta(seconds=10)
    clock.at += timedelta(seconds=9)
    d.deliver()
    assert len(hook.got["/fail"]) == 1  # backoff respected
    clock.at += timedelta(seconds=1)
    d.deliver()
    assert len(hook.got["/fail"]) == 2
    clock.at += timedelta(seconds=60)
    d.deliver()
    (row,) = _deliveries(store)
    assert len(hook.got["/fail"]) == 3 and row.status == "failed" and row.attempts == 3
    assert "HTTP 500" in (row.last_error or "")
    clock.at += timedelta(hours=1)
    d.deliver()
    assert len(hook.got["/fail"]) == 3  # given up: no further tries
    # The channel recovers for new notices: the failure of one never blocks the others.
    hook.status["/fail"] = 200
    _ticket(store, settings, "y", at=T0 + timedelta(days=10))
    clock.at = T0 + timedelta(days=10, minutes=2)
    assert d.tick() == (1, 1)
    store.close()


def test_quiet_hours_defer_only_non_statutory(tmp_path, settings, config_dir, receivers) -> None:
    smtp, hook = receivers
    cfg = load_notify(write_notify(config_dir, smtp, hook))
    store = Store(f"sqlite:///{tmp_path / 'q.db'}")
    night = sh(2026, 11, 2, 20, 0)
    tid = _ticket(store, settings, "q", at=night, department="应急管理局")
    clock = Clock(sh(2026, 11, 2, 23, 0))
    client = client_as(create_app(settings, store=store, now=clock), "值班员")
    client.post(f"/api/tickets/{tid}/ack")
    client.post(f"/api/tickets/{tid}/milestones",
                json={"milestone": "回应", "evidence_url": "https://gov.test/reply"})
    sch, d = Scheduler(store, now=clock), Dispatcher(store, cfg, base_url=BASE, now=clock)
    sch.tick()
    d.tick()
    assert "/ding" not in hook.got  # 23:00: the milestone notice to the office waits
    (row,) = [r for r in _deliveries(store) if r.recipient == "合肥市政府办公室"]
    assert row.next_attempt_at == sh(2026, 11, 3, 7, 30)
    clock.at = sh(2026, 11, 3, 7, 30)
    d.tick()
    assert (
        len(hook.got["/ding"]) == 1 and "【节点已完成】" in hook.got["/ding"][0]["body"]["markdown"]["title"]
    )
    # A breach at 23:00 is statutory: sent at once.
    tid2 = _ticket(
        store, settings, "q2", at=sh(2026, 11, 20, 23, 0), department="应急管理局", text="另一件事"
    )
    clock.at = sh(2026, 11, 22, 23, 0)
    sch.tick()
    d.tick()
    assert any(f"/tickets/{tid2}" in g["body"]["markdown"]["text"] for g in hook.got["/ding"][1:])
    store.close()


def test_config_errors_name_file_line_and_field(config_dir, receivers) -> None:
    smtp, hook = receivers
    write_notify(config_dir, smtp, hook)
    p = config_dir / "notify.yaml"
    p.write_text(
        p.read_text(encoding="utf-8").replace("backoff_s: [10, 60]", "backoff_s: []"), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"notify\.yaml:\d+: retry\.backoff_s"):
        load_notify(config_dir)
    write_notify(config_dir, smtp, hook, extra="")
    p.write_text(
        p.read_text(encoding="utf-8").replace(
            'quiet_hours: {start: "22:00", end: "07:30"}',
            'quiet_hours: {start: "22:00", end: "07:30", applies_to: [deadline_breached]}',
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"notify\.yaml:\d+: quiet_hours\.applies_to.*statutory"):
        load_notify(config_dir)
    assert load_notify(ROOT / "config") is not None  # the shipped example is valid (disabled)
    shipped = (ROOT / "config" / "notify.yaml").read_text(encoding="utf-8")
    p.write_text(shipped.replace("enabled: false", "enabled: true"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"notify\.yaml:\d+: channels\.hefei_dingtalk\.url: .*CHANGE-ME") as e:
        load_notify(config_dir)
    assert "channels.sms.secret" in str(e.value) and "channels.mail" not in str(e.value)


KILLER = r"""
import os, signal, sys
from datetime import datetime
from sqlalchemy import event
from responder.store import Store
from responder.notify import Dispatcher, load_notify
from responder.notify.channels import idempotency_key
from tests.fixtures.common import Clock

url, cfg_dir, at, where = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3]), sys.argv[4]
store = Store(url)
d = Dispatcher(store, load_notify(cfg_dir), base_url="http://x", now=lambda: at)
if where == "claim":  # inside the claim transaction, before it commits
    @event.listens_for(store.engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE DELIVERIES SET STATUS"):
            os.kill(os.getpid(), signal.SIGKILL)
else:  # claimed and committed, not yet sent
    d.before_send = lambda ids: os.kill(os.getpid(), signal.SIGKILL)
d.tick()
print("finished without being killed")
"""


@pytest.mark.parametrize("where", ["claim", "send"])
def test_kill_9_between_due_and_sent_sends_exactly_once(
    tmp_path, settings, config_dir, receivers, where
) -> None:
    smtp, hook = receivers
    write_notify(config_dir, smtp, hook)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    store = Store(url)
    tid = _ticket(store, settings, "k", at=T0)
    at = T0 + timedelta(minutes=2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", KILLER, url, str(config_dir), at.isoformat(), where],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    assert "/hook" not in hook.got
    (row,) = _deliveries(store)
    assert row.status == ("pending" if where == "claim" else "sending")
    cfg = load_notify(config_dir)
    # Restart (a new process would do the same): after the claim lease at the latest, sent once.
    later = Clock(at + timedelta(seconds=61))
    d = Dispatcher(Store(url), cfg, base_url=BASE, now=later)
    d.tick()
    d.tick()
    Dispatcher(Store(url), cfg, base_url=BASE, now=later).tick()
    assert len(hook.got["/hook"]) == 1 and hook.got["/hook"][0]["body"]["ticket_id"] == tid
    (row,) = _deliveries(store)
    assert row.status == "sent"
    store.close()


def test_route_by_jurisdiction_prefix_and_department(config_dir, receivers) -> None:
    from responder.notify import route

    smtp, hook = receivers
    cfg = load_notify(write_notify(config_dir, smtp, hook))

    def names(
        kind: str, code: str | None, dept: str | None = "住房和城乡建设局", sev: str = "一般"
    ) -> list[str]:
        return [t.recipient.name for t in route(cfg, kind, place_code=code, department=dept, severity=sev)]

    assert names("deadline_warning", "340104") == ["合肥市住建局"]
    assert names("deadline_warning", "340104", "应急管理局") == ["合肥市应急局"]
    assert names("deadline_warning", "340202") == []  # 芜湖: nobody configured there
    assert names("deadline_warning", None) == []  # 待定: the department is unknown
    assert names("opened", None) == ["值班室"]  # the top-level duty desk takes the 待定 queue
    # A county without its own office falls back to the city's; one level up of a city is the province.
    assert names("deadline_breached", "340100", sev="特别重大") == [
        "合肥市住建局",
        "合肥市政府办公室",
        "合肥市委宣传部",
        "安徽省政府办公厅",
        "合肥市市长",
    ]
    cfg.recipients.append(
        cfg.recipients[3].model_copy(update={"name": "蜀山区政府办公室", "jurisdiction": "340104"})
    )
    assert names("deadline_breached", "340104")[:3] == ["合肥市住建局", "蜀山区政府办公室", "合肥市委宣传部"]
    assert "合肥市政府办公室" in names("deadline_breached", "340104")  # one level up


def test_responder_process_starts_the_dispatcher_only_when_enabled(
    tmp_path, settings, config_dir, receivers
) -> None:
    from responder.service import _dispatcher_or_none

    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    assert _dispatcher_or_none(settings, store) is None  # the shipped example: enabled: false
    smtp, hook = receivers
    write_notify(config_dir, smtp, hook)
    d = _dispatcher_or_none(settings, store)
    assert isinstance(d, Dispatcher) and d.link(7) == f"{BASE}/tickets/7"
    (config_dir / "notify.yaml").unlink()
    assert _dispatcher_or_none(settings, store) is None
    store.close()


def test_links_follow_the_port_the_web_listens_on(tmp_path, config_dir, data_dir, receivers, monkeypatch) -> None:
    """Without an explicit base_url, notice links use web.host and the port of
    YUQING_WEB_PORT; an explicit web.base_url (or YUQING_WEB_BASE_URL) wins."""
    from responder.service import _dispatcher_or_none
    from yuqing.settings import load_settings

    smtp, hook = receivers
    write_notify(config_dir, smtp, hook)
    path = config_dir / "notify.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(f"base_url: {BASE}", 'base_url: ""'), encoding="utf-8")
    monkeypatch.setenv("YUQING_DATA_DIR", str(data_dir))
    monkeypatch.setenv("YUQING_WEB_PORT", "8765")
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    d = _dispatcher_or_none(load_settings(config_dir), store)
    assert d is not None and d.link(7) == "http://127.0.0.1:8765/tickets/7"

    monkeypatch.setenv("YUQING_WEB_HOST", "0.0.0.0")  # listening everywhere: a link to this machine
    assert _dispatcher_or_none(load_settings(config_dir), store).link(7) == "http://127.0.0.1:8765/tickets/7"

    s = config_dir / "settings.yaml"
    s.write_text(s.read_text(encoding="utf-8").replace('base_url: ""', "base_url: https://yq.example.gov.cn/"),
                 encoding="utf-8")
    assert _dispatcher_or_none(load_settings(config_dir), store).link(7) == "https://yq.example.gov.cn/tickets/7"
    monkeypatch.setenv("YUQING_WEB_BASE_URL", "https://duty.example.gov.cn")
    assert _dispatcher_or_none(load_settings(config_dir), store).link(7) == "https://duty.example.gov.cn/tickets/7"
    store.close()
