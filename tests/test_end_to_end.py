"""One post travels from a source to an acknowledged ticket, on each transport.

Every stage runs as its own process (`yuqing stage NAME`), against the demo
site on 127.0.0.1; the Kafka run uses a real broker (tansu).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from stream.contracts import SHANGHAI
from tests.fixtures.system import ROOT, System, free_port, wait_for

pytestmark = pytest.mark.slow

COUNTY, COUNTY_CODE, CITY, PROVINCE = "歙县", "341021", "黄山市", "安徽省"


def _config_department(config_dir: Path, subtype: str) -> str:
    """The lead department that config/taxonomy.yaml names for an emergency subtype."""
    tax = yaml.safe_load((config_dir / "taxonomy.yaml").read_text(encoding="utf-8"))
    for etype in tax["events"]["types"]:
        for sub in etype["subtypes"]:
            if sub["name"] == subtype:
                return sub["departments"][0]
    raise AssertionError(subtype)


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s)


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def system(request: pytest.FixtureRequest, config_dir: Path, data_dir: Path):
    env: dict[str, str] = {"YUQING_TRANSPORT": request.param}
    if request.param == "kafka":
        env["YUQING_KAFKA_BOOTSTRAP"] = request.getfixturevalue("tansu").bootstrap
    sut = System(config_dir, data_dir, env)
    # Crawl every 2 s; keep the demo script from publishing during the test.
    sut.edit_config("sources.yaml", r"every_s: \d+", "every_s: 2")
    sut.edit_config("settings.yaml", r"publish_every_s: .*", "publish_every_s: 3600")
    sut.edit_config("settings.yaml", r"session_timeout_ms: .*", "session_timeout_ms: 6000")
    # A fresh topic namespace per test on the shared session broker.
    sut.edit_config("settings.yaml", r'topic_prefix: .*', f'topic_prefix: "e2e{uuid.uuid4().hex[:8]}."')
    yield sut
    sut.stop_all()


def _find_ticket(sut: System, needle: str) -> dict | None:
    for t in sut.get("/api/tickets")["tickets"]:
        if needle in (t["event"]["title"] or ""):
            return t
    return None


def _publish(sut: System, **body: object) -> dict:
    r = httpx.post(sut.demo + "/_demo/publish", json=body, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def test_emergency_post_to_acknowledged_ticket_survives_responder_kill9(system: System) -> None:
    sut = system
    sut.start("demo-site")
    sut.wait_up(sut.demo)
    for name in ("web", "classifier", "responder", "crawler"):
        sut.start(name)
    sut.wait_up(sut.web)
    # Nothing but the health check answers without signing in.
    assert httpx.get(sut.web + "/api/tickets", timeout=10).status_code == 401
    sut.sign_in("值班员王敏", "duty")

    # The post's own publication time (minute precision on the page) is set so
    # that its 5 h deadline falls due a couple of minutes from now.
    # The next whole minute at least 75 s away: enough for the ticket, the
    # acknowledgement and the responder's kill -9 and restart before it falls due.
    now = datetime.now(SHANGHAI)
    t0 = (now - timedelta(hours=5) + timedelta(seconds=75 + 59)).replace(second=0, microsecond=0)
    _publish(
        sut,
        kind="news",
        title="黄山市歙县一化工厂发生爆炸事故",
        text=(
            f"{t0.month}月{t0.day}日，安徽省黄山市歙县经济开发区一化工厂车间发生爆炸事故，"
            "造成12人死亡、3人受伤。事故发生后，当地立即启动应急预案，组织力量开展救援，事故原因正在调查中。"
        ),
        published_at=t0.isoformat(),
        author="本网记者",
    )

    ticket = wait_for(lambda: _find_ticket(sut, "歙县"), 120, "the 歙县 ticket", interval_s=1)
    assert ticket["severity"] == "重大", ticket["severity_reason"]
    assert "12" in ticket["severity_reason"]
    assert ticket["place"]["county"] == COUNTY
    assert ticket["place"]["code"] == COUNTY_CODE
    assert ticket["place"]["city"] == CITY and ticket["place"]["province"] == PROVINCE
    assert ticket["department"] == COUNTY + _config_department(sut.config_dir, "爆炸")
    # Clocks start at the post's own publication time, not the crawl time.
    assert _ts(ticket["event"]["t0"]) == t0
    due = {d["milestone"]: _ts(d["due_at"]) for d in ticket["deadlines"]}
    assert due["权威信息发布"] == t0 + timedelta(hours=5)
    assert due["新闻发布会"] == t0 + timedelta(hours=24)
    tid = ticket["id"]

    # A duty officer acknowledges through the web API: who, when, from where.
    r = sut.post(f"/api/tickets/{tid}/ack")
    assert r.status_code == 200, r.text
    detail = sut.get(f"/api/tickets/{tid}")
    assert detail["acknowledged_by"] == "值班员王敏"
    assert abs((_ts(detail["acknowledged_at"]) - datetime.now(SHANGHAI)).total_seconds()) < 60
    acks = [a for a in detail["audit"] if a["actor"] == "值班员王敏"]
    assert acks and acks[0]["remote_addr"] == "127.0.0.1"
    # ...and the 5 h clock keeps running.
    five_h = next(d for d in detail["deadlines"] if d["milestone"] == "权威信息发布")
    assert five_h["met_at"] is None and _ts(five_h["due_at"]) == due["权威信息发布"]

    # A malformed message on the raw topic is dead-lettered; the stage goes on.
    from stream.factory import open_transport, topic
    from stream.stage import dead_letters
    from stream.topics import DEAD_LETTER, DLQ_REASON, RAW_POSTS
    from yuqing.settings import load_settings

    settings = load_settings(sut.config_dir)
    settings.data_dir = str(sut.data_dir)
    settings.transport.kind = sut.env["YUQING_TRANSPORT"]  # type: ignore[assignment]
    settings.transport.kafka.bootstrap_servers = sut.env.get("YUQING_KAFKA_BOOTSTRAP", "")
    transport = open_transport(settings)
    producer = transport.producer()
    producer.send(topic(settings, RAW_POSTS), b'{"schema": "raw_post", "v": 1, "text": 5', key=b"bad")
    producer.flush()

    # Crash window: the responder writes the next post durably, then hangs
    # before committing its offsets; we kill -9 it there.
    marker = sut.data_dir / "responder-holding"
    sut.stop("responder")
    sut.start("responder", {"YUQING_FAULT_HANG_BEFORE_COMMIT": f"responder:{marker}"})
    _publish(
        sut,
        kind="weibo",
        text="#歙县化工厂爆炸# 黄山市歙县经济开发区化工厂爆炸，目前已造成12人死亡，3人受伤，伤者已送医救治。",
        published_at=(t0 + timedelta(minutes=20)).isoformat(),
        author="黄山身边事",
    )
    wait_for(marker.exists, 90, "the responder to hold uncommitted records", interval_s=0.5)
    assert sut.get(f"/api/tickets/{tid}")["event"]["post_count"] == 2
    sut.kill9("responder")
    sut.start("responder")

    _publish(
        sut,
        kind="forum",
        title="歙县开发区化工厂爆炸了，死了12个人",
        text="刚才开发区那边一声巨响，听说化工厂爆炸，造成12人死亡，现场拉了警戒线。",
        published_at=(t0 + timedelta(minutes=35)).isoformat(),
        author="徽州老街",
    )
    detail = wait_for(
        lambda: (d := sut.get(f"/api/tickets/{tid}"))["event"]["post_count"] >= 3 and d,
        120,
        "the third post to join the event",
        interval_s=1,
    )
    # No post lost, none counted twice, no second ticket for the same incident.
    post_ids = [p["post_id"] for p in detail["posts"]]
    assert len(post_ids) == len(set(post_ids)) == detail["event"]["post_count"] == 3
    assert {p["source_kind"] for p in detail["posts"]} == {"news", "weibo", "forum"}
    assert [t["id"] for t in sut.get("/api/tickets")["tickets"] if COUNTY in t["place"]["label"]] == [tid]
    assert _ts(detail["event"]["t0"]) == t0  # the later posts did not move T0

    dlq = dead_letters(transport, topic(settings, DEAD_LETTER), expect=1, timeout_s=30)
    bad = [r for r in dlq if r.key == b"bad"]
    assert len(bad) == 1 and bad[0].value == b'{"schema": "raw_post", "v": 1, "text": 5'
    assert "JSON" in (bad[0].header(DLQ_REASON) or b"").decode()
    producer.close()
    transport.close()

    # The pending 5 h deadline fires after the restart, exactly once.
    def breaches() -> list[dict]:
        audit = sut.get(f"/api/tickets/{tid}")["audit"]
        return [
            a
            for a in audit
            if a["action"] == "deadline_breach" and (a["detail"] or {}).get("milestone") == "权威信息发布"
        ]

    wait_left = (due["权威信息发布"] - datetime.now(SHANGHAI)).total_seconds() + 30
    wait_for(breaches, max(wait_left, 10), "the 5 h deadline to fire", interval_s=1)
    sut.stop("responder")
    sut.start("responder")
    wait_for(lambda: sut.get("/api/healthz"), 20, "web health")
    import time

    time.sleep(4)  # a few scheduler ticks of the restarted responder
    assert len(breaches()) == 1
    fired = next(d for d in sut.get(f"/api/tickets/{tid}")["deadlines"] if d["milestone"] == "权威信息发布")
    assert fired["fired_at"] is not None and fired["met_at"] is None


def _sign_in_on_the_page(web: httpx.Client, config_dir: Path, data_dir: Path, username: str) -> None:
    """An account in the system's store, then the sign-in form: the session cookie stays in ``web``."""
    import re

    from responder.store import Store
    from tests.fixtures.auth import PASSWORD, add_user
    from yuqing.settings import load_settings

    settings = load_settings(config_dir)
    settings.data_dir = str(data_dir)
    store = Store(settings.store_url)
    try:
        add_user(store, username, "duty", "", settings=settings)
    finally:
        store.close()
    form = web.get("/login?next=/").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    r = web.post("/login", data={"username": username, "password": PASSWORD, "next": "/", "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text


def test_make_up_shows_demo_alerts_and_stops_cleanly_on_ctrl_c(config_dir: Path, data_dir: Path) -> None:
    """`yuqing up` on embedded defaults shows a demo 重大 alert within a minute."""
    web_port, demo_port = free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "YUQING_DATA_DIR": str(data_dir),
        "YUQING_WEB_PORT": str(web_port),
        "YUQING_DEMO_PORT": str(demo_port),
        "PYTHONUNBUFFERED": "1",
    }
    log = open(data_dir / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "up"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{web_port}"
        # The board asks who you are first; sign in on the page, as a person would.
        wait_for(lambda: httpx.get(base + "/login", timeout=2).status_code == 200, 60, "the sign-in page")
        assert httpx.get(base + "/", timeout=5).headers["location"] == "/login"
        web = httpx.Client(base_url=base, timeout=5)
        _sign_in_on_the_page(web, config_dir, data_dir, "值班员王敏")

        def major_ticket() -> dict | None:
            for t in web.get("/api/tickets").json()["tickets"]:
                if t["severity"] in ("重大", "特别重大"):
                    return t
            return None

        t = wait_for(major_ticket, 60, "a 重大 demo alert")
        assert any(d["milestone"] == "权威信息发布" for d in t["deadlines"])
        page = web.get("/").text
        assert t["event"]["title"][:8] in page and "值班员王敏" in page and "退出登录" in page
        printed = (data_dir / "up.log").read_text(errors="replace")
        assert f"http://127.0.0.1:{web_port}/" in printed
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        log.close()
    assert rc == 0, (data_dir / "up.log").read_text(errors="replace")[-3000:]
    # Every stage exited: nothing still listens on the web or demo port.
    for port in (web_port, demo_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
