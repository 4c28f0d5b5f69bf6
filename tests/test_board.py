"""The board an office leaves open all night (issue 15 part 5).

Over TestClient and an SQLite store the real responder filled: four tickets
(蜀山区 一般, 包河区 重大, 镜湖区 较大 in 芜湖, one with no place), each
filter and order on the page and on its fragment, the scope kept under
filters (a 合肥 user asking for 芜湖 gets 400 "不在本人属地范围内", the same
whether anything is there or not), ticket links, the data attributes board.js
sounds (new 重大 tickets, breaches), Chinese validation errors and an
oversized field that is not echoed. The browser test at the end checks the
phone layout (no horizontal overflow at 390 px), the times shown in
Asia/Shanghai with the browser in New York, and the alarm for a ticket that
appears while the board is open (once: not again after a reload).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from responder.board import BoardFilter, board_tickets
from responder.permissions import CLI_ACTOR, Role
from responder.service import handle_batch
from responder.store import Deadline, Event, Store, Ticket
from tests.fixtures.auth import PASSWORD, add_user, client_as
from tests.fixtures.databases import assessed, sh
from web.app import create_app

T0 = sh(2026, 11, 2, 9, 0)
FIRE = "包河区居民楼火灾致12人死亡"
FEE = "蜀山区翡翠湖畔小区物业费上涨"
WUHU = "镜湖区公交停运乘客滞留"
WATER = "某地自来水发黄"


class Clock:
    def __init__(self, at: Any) -> None:
        self.at = at

    def __call__(self) -> Any:
        return self.at


def _posts() -> list[Any]:
    return [
        assessed("fee", title=FEE, text="蜀山区翡翠湖畔小区物业费由每平方米1.2元上涨至2.3元。", published_at=T0,
                 place="蜀山区"),
        assessed("fire", title=FIRE, text="合肥市包河区一居民楼火灾已造成12人死亡。", published_at=T0 + timedelta(hours=1),
                 severity="重大", is_emergency=True, event_type="事故灾难", event_subtype="火灾", place="包河区",
                 department="应急管理局", deaths=12, severity_reason="死亡12人，达到重大事故标准"),
        assessed("wuhu", title=WUHU, text="芜湖市镜湖区多条公交线路突然停运，大量乘客滞留站台。",
                 published_at=T0 + timedelta(hours=2), place="镜湖区", severity="较大", department="交通运输局"),
        assessed("water", title=WATER, text="家里自来水发黄好几天了，没人管。", source_kind="weibo",
                 published_at=T0 + timedelta(hours=3), place="待定", department=None),
    ]


@pytest.fixture
def board(tmp_path: Path, settings: Any) -> Iterator[tuple[Store, Any, Clock, dict[str, int]]]:
    store = Store(f"sqlite:///{tmp_path / 'board.db'}")
    handle_batch(store, settings, _posts(), now=T0 + timedelta(hours=3, minutes=5))
    with store.reader() as s:
        ids = {title: tid for tid, title in s.execute(select(Ticket.id, Event.title).join(Event))}
    assert set(ids) == {FIRE, FEE, WUHU, WATER}, ids
    clock = Clock(T0 + timedelta(hours=4))
    app = create_app(settings, store=store, now=clock)
    yield store, app, clock, ids
    store.close()


def rows(html: str) -> list[int]:
    """The ticket ids of the board's rows, in order."""
    return [int(x) for x in re.findall(r'<tr data-ticket="(\d+)"', html)]


def test_default_board_and_each_filter(board) -> None:
    store, app, clock, ids = board
    c = client_as(app)  # duty officer at the root: every place, 待定 included
    fire, fee, wuhu, water = ids[FIRE], ids[FEE], ids[WUHU], ids[WATER]

    # Default: open tickets, most severe first, then newest.
    assert rows(c.get("/").text) == [fire, wuhu, water, fee]
    assert rows(c.get("/fragment/tickets").text) == [fire, wuhu, water, fee]

    # Severity: one, or several.
    assert rows(c.get("/", params={"severity": "重大"}).text) == [fire]
    assert rows(c.get("/", params=[("severity", "较大"), ("severity", "重大")]).text) == [fire, wuhu]
    assert rows(c.get("/", params={"severity": ""}).text) == [fire, wuhu, water, fee]

    # Place: a code, a name, a county, 待定.
    assert rows(c.get("/", params={"place": "3401"}).text) == [fire, fee]
    assert rows(c.get("/", params={"place": "合肥"}).text) == [fire, fee]
    assert rows(c.get("/", params={"place": "340111"}).text) == [fire]
    assert rows(c.get("/", params={"place": "芜湖市"}).text) == [wuhu]
    assert rows(c.get("/", params={"place": "待定"}).text) == [water]

    # Department, exactly.
    assert rows(c.get("/", params={"department": "应急管理局"}).text) == [fire]
    assert rows(c.get("/", params={"department": "没有这个部门"}).text) == []

    # State: acknowledge one, close another (其他, with a note).
    assert c.post(f"/api/tickets/{water}/ack").status_code == 200
    r = c.post(f"/api/tickets/{fee}/close", json={"outcome": "other", "note": "已由街道处理"})
    assert r.status_code == 200, r.text
    assert rows(c.get("/").text) == [fire, wuhu, water]  # default: open ones only
    assert rows(c.get("/", params={"state": "acknowledged"}).text) == [water]
    assert rows(c.get("/", params={"state": "已确认"}).text) == [water]
    assert rows(c.get("/", params={"state": "new"}).text) == [fire, wuhu]
    assert rows(c.get("/", params={"state": "closed"}).text) == [fee]
    assert rows(c.get("/", params={"state": "已办结"}).text) == [fee]
    assert rows(c.get("/", params=[("state", "new"), ("state", "closed")]).text) == [fire, wuhu, fee]
    assert rows(c.get("/", params={"state": "all"}).text) == [fire, wuhu, water, fee]

    # Overdue only: at T0+7h the fire's first (5-hour) deadline is past, nothing else.
    assert rows(c.get("/", params={"overdue": "1"}).text) == []
    clock.at = T0 + timedelta(hours=7)
    assert rows(c.get("/", params={"overdue": "1"}).text) == [fire]
    assert rows(c.get("/fragment/tickets", params={"overdue": "1"}).text) == [fire]
    assert rows(c.get("/", params={"overdue": "1", "severity": "一般"}).text) == []

    # Filters combine, and the fragment (the 5-second refresh) takes the same ones.
    q = {"place": "34", "severity": "重大", "state": "all"}
    assert rows(c.get("/", params=q).text) == rows(c.get("/fragment/tickets", params=q).text) == [fire]


def test_sorts(board) -> None:
    store, app, clock, ids = board
    c = client_as(app)
    fire, fee, wuhu, water = ids[FIRE], ids[FEE], ids[WUHU], ids[WATER]
    assert rows(c.get("/", params={"sort": "severity"}).text) == [fire, wuhu, water, fee]
    assert rows(c.get("/", params={"sort": "newest"}).text) == [water, wuhu, fire, fee]
    # Deadline soonest: by each ticket's soonest open deadline, from the store.
    with store.reader() as s:
        due = {tid: min(d.due_at for d in s.scalars(select(Deadline).where(Deadline.ticket_id == tid)))
               for tid in ids.values()}
    by_due = sorted(due, key=lambda t: due[t])
    assert by_due[0] == fire  # 5 hours from its T0
    assert rows(c.get("/", params={"sort": "deadline"}).text) == by_due
    # A met deadline no longer counts: after the 5-hour milestone, the fire's soonest open one is later.
    with store.reader() as s:
        first = s.scalars(select(Deadline).where(Deadline.ticket_id == fire).order_by(Deadline.due_at)).first()
        ms = first.milestone
    r = c.post(f"/api/tickets/{fire}/milestones", json={"milestone": ms, "evidence_url": "https://gov.test/1"})
    assert r.status_code == 200, r.text
    with store.reader() as s:
        due[fire] = min(d.due_at for d in s.scalars(
            select(Deadline).where(Deadline.ticket_id == fire, Deadline.met_at.is_(None))))
    assert rows(c.get("/", params={"sort": "deadline"}).text) == sorted(due, key=lambda t: due[t])


def test_scope_kept_under_filters(board) -> None:
    store, app, clock, ids = board
    hf = client_as(app, "合肥值班员", Role.DUTY, "3401")
    fire, fee = ids[FIRE], ids[FEE]
    assert rows(hf.get("/").text) == [fire, fee]
    assert rows(hf.get("/", params={"severity": "较大"}).text) == []  # 芜湖's 较大 stays out of sight
    assert rows(hf.get("/", params={"state": "all"}).text) == [fire, fee]
    assert rows(hf.get("/", params={"department": "交通运输局"}).text) == []
    # Another city: 400, the same answer whether it has tickets (芜湖 3402) or not (蚌埠 3403).
    answers = []
    for place in ("3402", "3403"):
        for path in ("/", "/fragment/tickets"):
            r = hf.get(path, params={"place": place})
            assert r.status_code == 400, (place, path, r.status_code)
            assert "不在本人属地范围内" in r.text and WUHU not in r.text
            answers.append(re.sub(r"\d{4}|安徽省\S+?市", "", r.text.split('role="alert">')[1].split("<")[0]))
    assert answers[0] == answers[2] and answers[1] == answers[3]
    r = hf.get("/", params={"place": "芜湖"})
    assert r.status_code == 400 and "不在本人属地范围内" in r.text
    r = hf.get("/", params={"place": "待定"})
    assert r.status_code == 400 and "不在本人属地范围内" in r.text
    # Inside: a county of 合肥.
    assert rows(hf.get("/", params={"place": "包河区"}).text) == [fire]
    # The selects offer only what is inside: 合肥's counties and departments, not 芜湖's.
    page = hf.get("/").text
    assert 'value="340111"' in page and 'value="340104"' in page
    assert 'value="3402"' not in page and 'value="340202"' not in page and "交通运输局" not in page
    assert "应急管理局" in page and 'value="待定"' not in page


def test_ticket_links_and_alarm_attributes(board) -> None:
    store, app, clock, ids = board
    c = client_as(app)
    fire, fee, wuhu, water = ids[FIRE], ids[FEE], ids[WUHU], ids[WATER]
    html = c.get("/").text
    for tid in ids.values():
        assert f'<a class="tid" href="/tickets/{tid}">#{tid}</a>' in html
    # A 重大 ticket carries data-alarm (board.js sounds it once); the others do not.
    assert re.search(rf'<tr data-ticket="{fire}" data-severity="重大" data-alarm="{fire}" data-title="{FIRE}">', html)
    for tid in (fee, wuhu, water):
        assert re.search(rf'<tr data-ticket="{tid}" data-severity="[^"]+">', html)
    assert "data-breach" not in html
    # Past the 5-hour deadline: its countdown carries data-breach="<ticket>:<milestone>".
    clock.at = T0 + timedelta(hours=7)
    frag = c.get("/fragment/tickets").text
    breaches = re.findall(r'data-breach="([^"]+)"', frag)
    assert len(breaches) == 1 and breaches[0].startswith(f"{fire}:")
    # Closed: neither (nothing new to sound on a closed ticket).
    assert c.post(f"/api/tickets/{fire}/close", json={"outcome": "other", "note": "测试"}).status_code == 200
    closed = c.get("/fragment/tickets", params={"state": "closed"}).text
    assert rows(closed) == [fire] and "data-alarm" not in closed and "data-breach" not in closed
    # board.js reads them, keeps the page's filters on refresh, asks for notifications on a click only.
    js = c.get("/static/board.js").text
    assert "'/fragment/tickets' + location.search" in js
    assert "tr[data-alarm]" in js and "[data-breach]" in js and "sessionStorage" in js
    assert "AudioContext" in js and "requestPermission" in js
    assert js.index("requestPermission") > js.index("async function enableAlarm")
    assert 'id="notify-btn"' in c.get("/").text and 'id="mute-btn"' in c.get("/").text


def test_domain_filter_refuses_outside_place(board) -> None:
    store, app, clock, ids = board
    from responder.board import BoardFilterError
    from responder.permissions import Actor

    hf = Actor(username="x", display_name="x", role=Role.DUTY, jurisdiction="3401", root_jurisdiction="34")
    with store.reader() as s:
        with pytest.raises(BoardFilterError, match="不在本人属地范围内"):
            board_tickets(s, hf, BoardFilter(place="3402", place_label="安徽省芜湖市"), clock())
        got = [t["id"] for t in board_tickets(s, hf, BoardFilter(severities=("重大",)), clock())]
        assert got == [ids[FIRE]]
        assert len(board_tickets(s, CLI_ACTOR, BoardFilter(states=("new", "acknowledged", "closed")), clock())) == 4
    with pytest.raises(BoardFilterError, match="级别"):
        BoardFilter(severities=("超级",))
    with pytest.raises(BoardFilterError, match="排序"):
        BoardFilter(sort="random")


@pytest.mark.parametrize(("params", "words"), [
    ({"severity": "超级重大"}, "级别“超级重大”不存在"),
    ({"state": "pending"}, "状态“pending”不存在"),
    ({"sort": "random"}, "排序“random”不存在"),
    ({"overdue": "maybe"}, "仅看超时"),
    ({"place": "9999"}, "属地代码 9999 不存在"),
    ({"place": "火星"}, "没有名为“火星”的属地"),
    ({"place": ["3401", "3402"]}, "只能选一个"),
])
def test_bad_filter_values_400_in_chinese(board, params, words) -> None:
    _, app, _, _ = board
    c = client_as(app)
    for path in ("/", "/fragment/tickets"):
        r = c.get(path, params=params)
        assert r.status_code == 400, (path, params, r.status_code)
        assert words in r.text and "筛选条件有误" in r.text


def test_oversized_field_not_echoed(board) -> None:
    _, app, _, ids = board
    c = client_as(app)
    # 60 KB in the query string (httpx refuses a URL part over 64 KB, as servers do).
    for big in ("q" * 60_000, "洪" * 7_000):
        for path in ("/", "/fragment/tickets"):
            for name in ("place", "department", "severity", "state", "sort"):
                r = c.get(path, params={name: big})
                assert r.status_code == 422 and "过长" in r.text, (path, name, r.status_code)
                assert big[:20] not in r.text and len(r.content) < 20_000
    # A JSON body field: 422 in Chinese, the value not sent back.
    r = c.post(f"/api/tickets/{ids[FIRE]}/reopen", json={"reason": "驳" * 100_000})
    assert r.status_code == 422 and "驳驳驳" not in r.text
    assert r.json()["detail"] == "请求有误：理由过长（最多 2000 字）"
    # A body over web.max_body_bytes: 413 before it is read, in Chinese.
    r = c.post(f"/api/tickets/{ids[FIRE]}/reopen", json={"reason": "驳" * 400_000})
    assert r.status_code == 413 and "请求体过大" in r.json()["detail"] and "驳驳" not in r.text


def test_validation_errors_in_chinese(board) -> None:
    _, app, _, ids = board
    c = client_as(app)
    r = c.post(f"/api/tickets/{ids[FIRE]}/milestones", json={})
    assert r.status_code == 422
    body = r.json()
    assert body["detail"] == "请求有误：节点为必填项"
    assert body["errors"] == [{"field": "milestone", "message": "节点为必填项"}]
    r = c.get("/api/tickets/abc")
    assert r.status_code == 422 and r.json()["detail"] == "请求有误：工单编号须为整数"
    r = c.post(f"/api/tickets/{ids[FIRE]}/reopen", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "不是有效的 JSON" in r.json()["detail"]
    r = c.post("/api/events/1/merge", json={"into": 0})
    assert r.status_code == 422 and r.json()["detail"] == "请求有误：并入事件须不小于 1"
    # A page: the error page, in Chinese, not JSON.
    r = c.get("/tickets/abc")
    assert r.status_code == 422 and "text/html" in r.headers["content-type"] and "工单编号须为整数" in r.text
    # Starlette's own 404 / 405 in Chinese.
    r = c.get("/api/no-such-thing")
    assert r.status_code in (403, 404) and re.search(r"[\u4e00-\u9fff]", r.json()["detail"])
    r = c.delete("/api/tickets")
    assert r.status_code in (403, 405) and re.search(r"[\u4e00-\u9fff]", r.json()["detail"])
    english = re.compile(r'"detail":"[A-Za-z ]+"')
    for resp in (c.get("/api/no-such-thing"), c.delete("/api/tickets"), c.get("/api/tickets/abc")):
        assert not english.search(resp.text), resp.text


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture
def served(board) -> Iterator[tuple[str, Store, Clock, dict[str, int]]]:
    store, app, clock, ids = board
    add_user(store, "合肥值班员", Role.DUTY, "3401", settings=app.state.settings)
    from tests.test_browser import _free_port

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning",
                                        lifespan="off"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", store, clock, ids
    srv.should_exit = True
    t.join(10)


SHOTS = Path("/tmp/shots-board")


def test_browser_phone_layout_beijing_time_and_alarm(served, settings) -> None:
    from tests.test_browser import Console, _tools

    chromium, chromedriver = _tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, store, clock, ids = served
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--lang=zh-CN", "--no-first-run", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=chromedriver, env={"TZ": "America/New_York"}), options=opts)
    d.set_page_load_timeout(20)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        # The browser is in New York whatever the machine's zone.
        d.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
        console = Console(d)
        wait = WebDriverWait(d, 15)
        d.get(base + "/login")
        d.find_element(By.ID, "username").send_keys("合肥值班员")
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "tickets-root")))
        assert d.execute_script("return new Date(Date.UTC(2026,10,2,1,0)).getHours()") == 20  # 01:00Z = 20:00 in NY
        d.save_screenshot(str(SHOTS / "board-1400.png"))

        # Times on the board are Beijing time: the server's (T0+4h = 13:00) and the JS's.
        fire = ids[FIRE]
        row = d.find_element(By.CSS_SELECTOR, f'tr[data-ticket="{fire}"]')
        assert "首发 2026-11-02 10:00" in row.text
        with store.reader() as s:
            first = s.scalars(select(Deadline).where(Deadline.ticket_id == fire).order_by(Deadline.due_at)).first()
        due_sh = first.due_at.astimezone(T0.tzinfo)
        assert f"截止 {due_sh:%Y-%m-%d %H:%M}" in row.text
        left = first.due_at - clock()  # 2 hours: the server's now, not the browser's
        h = int(left.total_seconds() // 3600)
        wait.until(lambda _: f"剩余 {h}小时" in d.find_element(By.CSS_SELECTOR, f'tr[data-ticket="{fire}"]').text)
        # After a refresh (5 s) "更新于" is the server's time in Beijing: 13:00:xx.
        wait.until(lambda _: d.find_element(By.ID, "updated").text.startswith("更新于 13:00:"))

        # A new 重大 ticket appears while the board is open: the alarm names it once.
        handle_batch(store, settings, [assessed(
            "flood", title="包河区暴雨致地下车库被淹", text="合肥市包河区暴雨，地下车库被淹，3人死亡。",
            published_at=T0 + timedelta(hours=3, minutes=30), severity="重大", is_emergency=True,
            event_type="自然灾害", event_subtype="洪涝", place="包河区", department="应急管理局", deaths=3)],
            now=T0 + timedelta(hours=3, minutes=40))
        with store.reader() as s:
            flood = s.scalar(select(Ticket.id).join(Event).where(Event.title == "包河区暴雨致地下车库被淹"))
        wait.until(lambda _: f"新的重大舆情工单 #{flood}" in d.find_element(By.ID, "alarm-state").text)
        assert f"#{fire}" not in d.find_element(By.ID, "alarm-state").text  # there when the board opened
        seen = d.execute_script("return JSON.parse(sessionStorage.getItem('yuqing.board.seen'))")
        assert f"major:{flood}" in seen and f"major:{fire}" in seen
        d.refresh()  # a reload does not sound it again
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-ticket="{flood}"]')))
        time.sleep(6)  # one refresh
        assert "新提示" not in d.find_element(By.ID, "alarm-state").text

        # A phone: 390 px wide, the page body does not scroll sideways, the table is cards.
        d.set_window_size(390, 844)
        time.sleep(0.5)
        inner = d.execute_script("return window.innerWidth")
        assert inner <= 400
        width = d.execute_script("return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        assert width <= inner, (width, inner)
        assert d.find_element(By.CSS_SELECTOR, "#tickets-root thead").is_displayed() is False
        d.save_screenshot(str(SHOTS / "board-390.png"))
        d.execute_script("window.scrollTo(0, 700)")
        d.save_screenshot(str(SHOTS / "board-390-cards.png"))
        # Filtered, on the phone too.
        d.get(base + "/?severity=重大&sort=newest")
        wait.until(ec.presence_of_element_located((By.ID, "tickets-root")))
        got = [int(r.get_attribute("data-ticket")) for r in d.find_elements(By.CSS_SELECTOR, "tr[data-ticket]")]
        assert got == [flood, fire]
        width = d.execute_script("return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        assert width <= d.execute_script("return window.innerWidth")
        d.save_screenshot(str(SHOTS / "board-390-filtered.png"))
        d.set_window_size(1400, 1000)
        d.save_screenshot(str(SHOTS / "board-1400-filtered.png"))
        assert console.csp_violations() == []
        assert console.js_errors() == []
    finally:
        d.quit()
