"""The console in a real browser: Debian's Chromium driven by selenium through chromedriver.

The app is served by uvicorn on 127.0.0.1 over an SQLite store whose tickets
the real responder made (two in 合肥市 3401, one in 芜湖市 3402). In one
browser session:

* a wrong password shows the Chinese error on the sign-in page;
* a duty officer at 3401 signs in on /login, sees only 合肥 tickets, clicks
  确认接收, accepts the confirm() board.js asks, and the page shows the ticket
  acknowledged — the store's audit names the officer's account;
* after signing out, an analyst at 3401 finds no acknowledge (or milestone)
  button on the board or on a ticket's page;
* the browser console holds no Content-Security-Policy violation (the CSP has
  a nonce and forbids inline script and style, so one means a template or the
  JS is broken), and an inline script injected at the end is reported, which
  shows the check can fail.

Screenshots of each page go to ``$YUQING_BROWSER_SHOTS`` (default
/tmp/browser-shots). Without chromium, chromedriver or selenium the test is
skipped with the reason, or fails when ``YUQING_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from responder.permissions import CLI_ACTOR, Role
from responder.service import handle_batch
from responder.store import Audit, Event, Store, Ticket
from tests.fixtures.auth import PASSWORD, add_user
from tests.fixtures.databases import assessed, sh
from web.app import create_app

T0 = sh(2026, 11, 2, 9, 0)
DUTY = "合肥值班员"
ANALYST = "合肥分析员"
# (post id, title, text, place as tests.fixtures.databases.PLACES names it, severity)
STORIES = [
    ("hf-fee", "蜀山区翡翠湖畔小区物业费上涨", "蜀山区翡翠湖畔小区物业费由每平方米1.2元上涨至2.3元，业主质疑程序。",
     "蜀山区", "一般"),
    ("hf-fire", "包河区居民楼火灾致12人死亡", "合肥市包河区一居民楼火灾已造成12人死亡，多人受伤送医。",
     "包河区", "重大"),
    ("wh-noise", "镜湖区菜市场凌晨卸货噪音扰民", "镜湖区某菜市场凌晨卸货噪音大，附近居民长期无法入睡，多次投诉无果。",
     "镜湖区", "一般"),
]
WUHU_TITLE = STORIES[2][1]
SHOTS = Path(os.environ.get("YUQING_BROWSER_SHOTS", "/tmp/browser-shots"))


def _tools() -> tuple[str, str]:
    """The chromium and chromedriver binaries, or skip (fail under YUQING_REQUIRE_BROWSER=1)."""
    missing = []
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None:
        missing.append("chromium")
    if driver is None:
        missing.append("chromedriver (chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        why = f"浏览器测试需要 {', '.join(missing)}：跳过（apt-get install chromium chromium-driver）"
        if os.environ.get("YUQING_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why} (YUQING_REQUIRE_BROWSER=1)")
        pytest.skip(why)
    assert browser is not None and driver is not None
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path, settings: Any) -> Iterator[tuple[str, Store, dict[str, int]]]:
    """The app over uvicorn on a free port, its store, and ticket ids by event title."""
    store = Store(f"sqlite:///{tmp_path / 'browser.db'}")
    posts = [
        assessed(pid, title=title, text=text, published_at=T0 + timedelta(minutes=20 * i), place=place,
                 severity=sev, is_emergency=sev == "重大", event_type="事故灾难" if sev == "重大" else None,
                 event_subtype="火灾" if sev == "重大" else None, deaths=12 if sev == "重大" else None,
                 department="应急管理局" if sev == "重大" else "住房和城乡建设局")
        for i, (pid, title, text, place, sev) in enumerate(STORIES)
    ]
    handle_batch(store, settings, posts, now=T0 + timedelta(hours=1))
    with store.reader() as s:
        ids = {title: tid for tid, title in s.execute(select(Ticket.id, Event.title).join(Event))}
    assert set(ids) == {title for _, title, *_ in STORIES}, ids
    add_user(store, DUTY, Role.DUTY, "3401", settings=settings)
    add_user(store, ANALYST, Role.ANALYST, "3401", settings=settings)
    frozen: Callable[[], datetime] = lambda: T0 + timedelta(hours=2)  # noqa: E731
    app = create_app(settings, store=store, now=frozen)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning",
                                        lifespan="off"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", store, ids
    srv.should_exit = True
    t.join(10)
    store.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, chromedriver = _tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--lang=zh-CN", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver Debian ships, never one selenium-manager would download.
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(20)
    try:
        yield drv
    finally:
        drv.quit()


class Console:
    """Every browser console entry so far (get_log drains the buffer on each call)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.entries: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        self.entries += self.driver.get_log("browser")
        return self.entries

    def csp_violations(self) -> list[str]:
        return [e["message"] for e in self.read() if "Content Security Policy" in e["message"]]

    def js_errors(self) -> list[str]:
        return [e["message"] for e in self.read() if e["level"] == "SEVERE" and "Uncaught" in e["message"]]


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_duty_officer_acknowledges_analyst_cannot(browser: Any, served: tuple[str, Store, dict[str, int]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, store, ids = served
    d = browser
    wait = WebDriverWait(d, 10)
    console = Console(d)

    def sign_in(username: str, password: str) -> None:
        d.find_element(By.ID, "username").clear()
        d.find_element(By.ID, "username").send_keys(username)
        d.find_element(By.ID, "password").send_keys(password)
        d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()

    def ack_buttons() -> list[Any]:
        return d.find_elements(By.CSS_SELECTOR, "button[data-ack]")

    # The board sends an anonymous browser to the sign-in page.
    d.get(base + "/")
    wait.until(ec.presence_of_element_located((By.ID, "username")))
    assert "/login" in d.current_url
    assert d.title.startswith("登录")
    _shot(d, "1-login")

    # A wrong password: the Chinese error on the page, the name kept, still signed out.
    sign_in(ANALYST, PASSWORD + "x")
    err = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "form.login .error")))
    assert err.text == "用户名或密码错误"
    assert d.find_element(By.ID, "username").get_attribute("value") == ANALYST
    assert d.find_elements(By.CSS_SELECTOR, ".whoami") == []
    _shot(d, "2-login-wrong-password")

    # The duty officer at 3401: the board holds 合肥's tickets, not 芜湖's.
    sign_in(DUTY, PASSWORD)
    wait.until(ec.presence_of_element_located((By.ID, "tickets-root")))
    body = d.find_element(By.TAG_NAME, "body").text
    assert DUTY in d.find_element(By.CSS_SELECTOR, ".whoami .user").get_attribute("title")
    assert "值班员" in d.find_element(By.CSS_SELECTOR, ".whoami").text
    for _, title, *_ in STORIES[:2]:
        assert title in body
    assert WUHU_TITLE not in body
    rows = {int(r.get_attribute("data-ticket")) for r in d.find_elements(By.CSS_SELECTOR, "tr[data-ticket]")}
    assert rows == {ids[STORIES[0][1]], ids[STORIES[1][1]]}
    assert len(ack_buttons()) == 2
    _shot(d, "3-duty-board")

    # Acknowledge the fire ticket: board.js asks first; accepting posts as the signed-in user.
    fire = ids[STORIES[1][1]]
    d.find_element(By.CSS_SELECTOR, f'button[data-ack="{fire}"]').click()
    alert = wait.until(ec.alert_is_present())
    assert f"#{fire}" in alert.text and "确认接收" in alert.text
    alert.accept()
    row = f'tr[data-ticket="{fire}"]'
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, row), "已确认"))
    assert DUTY in d.find_element(By.CSS_SELECTOR, row).text
    assert d.find_elements(By.CSS_SELECTOR, f'{row} button[data-ack]') == []
    assert len(ack_buttons()) == 1  # the other ticket still waits
    _shot(d, "4-duty-board-acknowledged")
    with store.reader() as s:
        t = s.get(Ticket, fire)
        assert (t.acknowledged_by, t.status) == (DUTY, "acknowledged")
        acks = s.scalars(select(Audit).where(Audit.action == "acknowledged")).all()
        assert [(a.ticket_id, a.actor, a.remote_addr) for a in acks] == [(fire, DUTY, "127.0.0.1")]

    # A 芜湖 ticket is not there for a 合肥 officer, even by its address: the page an unknown id gets.
    wuhu = ids[WUHU_TITLE]
    d.get(f"{base}/tickets/{wuhu}")
    assert d.find_element(By.CSS_SELECTOR, "main .error").text == f"工单 {wuhu} 不存在"
    assert WUHU_TITLE not in d.find_element(By.TAG_NAME, "body").text
    assert ack_buttons() == []
    _shot(d, "5-duty-other-city-ticket")

    d.get(f"{base}/tickets/{fire}")
    wait.until(ec.presence_of_element_located((By.ID, "ticket")))
    assert STORIES[1][1] in d.find_element(By.TAG_NAME, "body").text
    assert "已确认" in d.find_element(By.CSS_SELECTOR, "#ticket .ack-state").text
    _shot(d, "6-duty-ticket")

    # Sign out (the header's form), then the analyst: reads, but no button to act.
    d.find_element(By.CSS_SELECTOR, ".whoami form button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.ID, "username")))
    assert "/login" in d.current_url
    d.get(base + "/")
    wait.until(ec.presence_of_element_located((By.ID, "username")))  # the session is gone
    sign_in(ANALYST, PASSWORD)
    wait.until(ec.presence_of_element_located((By.ID, "tickets-root")))
    assert "分析员" in d.find_element(By.CSS_SELECTOR, ".whoami").text
    body = d.find_element(By.TAG_NAME, "body").text
    assert STORIES[0][1] in body and STORIES[1][1] in body and WUHU_TITLE not in body
    assert ack_buttons() == []
    assert d.find_elements(By.CSS_SELECTOR, "button[data-milestone]") == []
    assert "未确认" in d.find_element(By.CSS_SELECTOR, f'tr[data-ticket="{ids[STORIES[0][1]]}"]').text
    _shot(d, "7-analyst-board")
    for tid in (fire, ids[STORIES[0][1]]):
        d.get(f"{base}/tickets/{tid}")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'#ticket[data-ticket="{tid}"]')))
        assert ack_buttons() == []
        assert d.find_elements(By.CSS_SELECTOR, "button[data-milestone]") == []
        # The analyst reads the whole case but finds no form to act with.
        assert d.find_elements(By.CSS_SELECTOR, "#ticket form[method=post]") == []
    _shot(d, "8-analyst-ticket")

    # The console: no CSP violation and no script error on any page seen.
    assert console.csp_violations() == []
    assert console.js_errors() == []
    # The check can fail: an inline script is refused under the CSP and reported.
    d.execute_script("var s = document.createElement('script'); s.textContent = '1'; document.body.appendChild(s);")
    WebDriverWait(d, 5).until(lambda _: console.csp_violations())
    assert any("inline script" in m for m in console.csp_violations())


def test_duty_officer_works_a_major_case_to_the_end(browser: Any, served: tuple[str, Store, dict[str, int]]) -> None:
    """Issue 15: sign in as a duty officer, open a 重大 ticket, acknowledge, record 权威信息发布
    with its evidence, close as 已回应办结 — all on the ticket's own page, which stays that
    ticket after each action; the timeliness report then shows the release on time."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from responder.report import timeliness

    base, store, ids = served
    d = browser
    wait = WebDriverWait(d, 10)
    console = Console(d)
    fire = ids[STORIES[1][1]]
    evidence = "https://www.hefei.gov.cn/xxgk/fire-notice.html"

    d.get(f"{base}/tickets/{fire}")
    wait.until(ec.presence_of_element_located((By.ID, "username")))
    d.find_element(By.ID, "username").send_keys(DUTY)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    # Back on the ticket it asked for: the whole case on one page.
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'#ticket[data-ticket="{fire}"]')))
    body = d.find_element(By.TAG_NAME, "body").text
    for text in (STORIES[1][1], "重大", "安徽省合肥市包河区", "回应主体", "权威信息发布", "新闻发布会", "处理记录"):
        assert text in body, text
    # The countdown runs in the page (ticket.js), from the due instant.
    cd = d.find_element(By.CSS_SELECTOR, 'tr[data-deadline="权威信息发布"] .countdown')
    wait.until(lambda _: cd.text.startswith("剩余 ") and "小时" in cd.text)
    _shot(d, "11-case-opened")

    def on_ticket(done: str) -> None:
        wait.until(lambda drv: f"/tickets/{fire}?done={done}" in drv.current_url)
        assert d.find_element(By.CSS_SELECTOR, "#ticket").get_attribute("data-ticket") == str(fire)
        assert d.find_elements(By.ID, "tickets-root") == []  # the ticket, not the board

    d.find_element(By.CSS_SELECTOR, "button.ack-button").click()
    on_ticket("ack")
    assert "已确认接收" in d.find_element(By.CSS_SELECTOR, ".notice").text
    assert DUTY in d.find_element(By.CSS_SELECTOR, "#ticket .ack-state").text
    _shot(d, "12-case-acknowledged")

    row = 'tr[data-deadline="权威信息发布"]'
    d.find_element(By.CSS_SELECTOR, f"{row} input[name=evidence_url]").send_keys(evidence)
    d.find_element(By.CSS_SELECTOR, f"{row} button[type=submit]").click()
    on_ticket("milestone")
    cell = d.find_element(By.CSS_SELECTOR, row)
    assert "按时完成" in cell.text
    assert cell.find_element(By.CSS_SELECTOR, f'a[href="{evidence}"]').text == evidence
    _shot(d, "13-case-milestone")

    Select(d.find_element(By.CSS_SELECTOR, "form[action$='/close'] select[name=outcome]")).select_by_visible_text(
        "已回应办结")
    d.find_element(By.CSS_SELECTOR, "form[action$='/close'] input[name=note]").send_keys("已发布权威信息")
    d.find_element(By.CSS_SELECTOR, "form[action$='/close'] button[type=submit]").click()
    on_ticket("close")
    assert "已办结（已回应办结：已发布权威信息）" in d.find_element(By.CSS_SELECTOR, "#ticket .status").text
    assert d.find_elements(By.CSS_SELECTOR, "form[action$='/milestone']") == []
    trail = d.find_element(By.CSS_SELECTOR, "section.trail").text
    for action in ("确认接收", "登记回应节点", "办结"):
        assert action in trail, action
    _shot(d, "14-case-closed")

    with store.reader() as s:
        t = s.get(Ticket, fire)
        assert (t.status, t.outcome, t.acknowledged_by, t.closed_by) == ("closed", "responded", DUTY, DUTY)
    rep = timeliness(store, T0.date(), T0.date(), as_of=T0 + timedelta(hours=3), actor=CLI_ACTOR)
    rows = [r for r in rep.rows if r.milestone == "权威信息发布"]
    assert rows and {(r.met, r.on_time, r.breaches) for r in rows} == {(1, 1, 0)}
    assert "100.0%" in rep.to_text()
    # The whole page, and on a 390 px phone screen (screenshots to look at).
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, min(int(height) + 150, 4000))
    _shot(d, "15-case-closed-full")
    d.set_window_size(390, 2400)
    _shot(d, "16-case-phone")
    assert d.execute_script("return document.documentElement.scrollWidth") <= 400  # no sideways page
    d.set_window_size(1400, 1000)
    assert console.csp_violations() == [] and console.js_errors() == []


def test_charts_render_on_briefs_and_trends(browser: Any, served: tuple[str, Store, dict[str, int]]) -> None:
    """Issue 17: the brief's and the trends page's charts are drawn (ECharts, a canvas each, from
    /static), with the page's own figures, under the CSP; the download links are there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, _store, _ids = served
    d = browser
    wait = WebDriverWait(d, 15)
    console = Console(d)
    day = T0.date().isoformat()
    d.get(f"{base}/trends?period=day&date={day}")
    wait.until(ec.presence_of_element_located((By.ID, "username")))
    d.find_element(By.ID, "username").send_keys(ANALYST)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()

    def drawn(ids: list[str]) -> dict[str, Any]:
        wait.until(lambda drv: drv.execute_script(
            "var r = document.getElementById('charts'); return r && r.dataset.ready;") == str(len(ids)))
        out = {}
        for cid in ids:
            el = d.find_element(By.ID, cid)
            canvas = el.find_elements(By.TAG_NAME, "canvas")
            assert canvas and canvas[0].size["width"] > 200 and canvas[0].size["height"] > 150, cid
            out[cid] = d.execute_script(
                "var o = echarts.getInstanceByDom(document.getElementById(arguments[0])).getOption();"
                "return o.series.map(function (s) { return {name: s.name, data: s.data}; });", cid)
        return out

    # /trends of the day (合肥: the two 合肥 posts and tickets; 芜湖's not).
    trend_ids = ["chart-volume", "chart-severity", "chart-deadlines", "chart-topics", "chart-places", "chart-rates"]
    got = drawn(trend_ids)
    volume = {s["name"]: s["data"] for s in got["chart-volume"]}
    assert len(volume["帖文合计"]) == 24 and sum(volume["帖文合计"]) == 2 and volume["帖文合计"][9] == 2
    assert sum(volume["新发事件"]) == 2
    assert dict(zip(["特别重大", "重大", "较大", "一般"], got["chart-severity"][0]["data"], strict=True)) == {
        "特别重大": 0, "重大": 1, "较大": 0, "一般": 1}
    assert sum(got["chart-places"][0]["data"]) == 2
    body = d.find_element(By.TAG_NAME, "body").text
    assert "舆情趋势" in body and "突增" in body and "各部门按时率" in body and WUHU_TITLE not in body
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, min(int(height) + 150, 4000))
    _shot(d, "21-trends")
    d.set_window_size(390, 2600)  # a phone: one chart a row, no sideways page
    d.get(f"{base}/trends?period=day&date={day}")
    drawn(trend_ids)
    assert d.execute_script("return document.documentElement.scrollWidth") <= 400
    _shot(d, "21-trends-phone")
    d.set_window_size(1400, 1000)

    # /briefs of the same day: the same charts but the departments' rates, and the downloads.
    d.get(f"{base}/briefs?period=day&date={day}")
    got = drawn(trend_ids[:-1])
    assert sum({s["name"]: s["data"] for s in got["chart-volume"]}["帖文合计"]) == 2
    links = {a.get_attribute("data-format"): a.get_attribute("href")
             for a in d.find_elements(By.CSS_SELECTOR, "nav.downloads a.download")}
    assert set(links) == {"docx", "pdf", "xlsx"} and all(f"/briefs/download?period=day&date={day}" in h
                                                         for h in links.values())
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, min(int(height) + 150, 4000))
    _shot(d, "22-brief-charts")
    d.set_window_size(1400, 1000)
    assert console.csp_violations() == [] and console.js_errors() == []
