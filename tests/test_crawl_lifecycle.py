"""Every source kind through a crawler's life: killed mid-crawl, resumed, crawled again after edits.

One fixture site (tests/fixtures/sites.py) and the real crawler stage
(``python -m crawlers.runner run``, all sources in one process), three times:

A. every source crawls with one of its pages held by the site (in flight), and the
   process is killed with SIGKILL once all of them are waiting;
B. the process is started again: each source resumes from its frontier in
   ``crawl_state.db`` and finishes (plus: robots.txt on and off, a source behind a
   real forward proxy);
C. after one edit per kind on the site, every source crawls again;
D. the site answers every page with a captcha page: every source's health is "blocked".

Posts are read back from the real embedded transport; which source fetched what is
told by the User-Agent each source is configured with.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from crawlers.frontier import pending_count
from crawlers.health import health_of
from crawlers.pipelines import STATE_FILE
from crawlers.sources import load_sources
from stream.contracts import CrawlHealth, RawPost, make_post_id
from tests.fixtures.sites import ForwardProxy, SiteState
from tests.test_crawl_sources import posts_of
from yuqing.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]

POL = "download_delay_s: 0, concurrency: 1, autothrottle: false, retry_backoff_s: 0.05, timeout_s: 10"
KIND_SOURCES = """
  - {id: portal, name: 皖江网, kind: news, start_urls: ["%(u)s/portal/"], schedule: {every_s: 3600},
     selectors: {list_links: "ul.list a::attr(href)"}, politeness: {user_agent: ua-portal, %(p)s}}
  - {id: feed, name: 皖江网RSS, kind: news, start_urls: ["%(u)s/rss.xml"], schedule: {every_s: 3600},
     politeness: {user_agent: ua-feed, %(p)s}}
  - {id: bbs, name: 论坛, kind: forum, start_urls: ["%(u)s/bbs/forum.php?mod=forumdisplay&fid=1"],
     schedule: {every_s: 3600}, politeness: {user_agent: ua-bbs, %(p)s}}
  - {id: tieba, name: 合肥吧, kind: forum, start_urls: ["%(u)s/tieba/f?kw=合肥"], schedule: {every_s: 3600},
     politeness: {user_agent: ua-tieba, %(p)s}}
  - {id: wb, name: 微博搜索, kind: weibo,
     start_urls: ["%(u)s/api/container/getIndex?containerid=100103type%%3D1%%26q%%3D合肥"],
     schedule: {every_s: 3600}, fetch_comments: true, politeness: {user_agent: ua-wb, %(p)s}}
  - {id: board, name: 领导留言板, kind: gov_board, start_urls: ["%(u)s/board/list"], schedule: {every_s: 3600},
     politeness: {user_agent: ua-board, %(p)s}}
  - {id: cmts, name: 新闻跟帖, kind: comments, start_urls: ["%(u)s/news/"], schedule: {every_s: 3600},
     parent_source: feed, politeness: {user_agent: ua-cmts, %(p)s}}
"""
EXTRA_SOURCES = """
  - {id: robo, name: 遵守robots, kind: news, start_urls: ["%(u)s/open/list"], schedule: {every_s: 3600},
     selectors: {list_links: "li a::attr(href)"}, politeness: {user_agent: ua-robo, %(p)s}}
  - {id: robo-off, name: 不看robots, kind: news, start_urls: ["%(u)s/open/list"], schedule: {every_s: 3600},
     selectors: {list_links: "li a::attr(href)"}, politeness: {user_agent: ua-robo-off, robots_txt: false, %(p)s}}
  - {id: viaproxy, name: 代理留言板, kind: gov_board, start_urls: ["%(u)s/board/list"], schedule: {every_s: 3600},
     politeness: {user_agent: ua-viaproxy, proxy: "%(proxy)s", %(p)s}}
"""

# Source kind → (source id, the page held in flight at the kill, posts a full crawl yields).
KINDS: dict[str, tuple[str, str, int]] = {
    "news": ("portal", "/portal/a/2.html", 4),
    "rss": ("feed", "/portal/a/2.html", 2),
    "forum": ("bbs", "/bbs/forum.php?mod=viewthread&tid=101&page=2", 23),
    "tieba": ("tieba", "/tieba/p/9001", 2),
    "weibo": ("wb", "/comments/hotflow", 4),
    "gov_board": ("board", "/board/msg/3001", 1),
    "comments": ("cmts", "/comment/api", 1),
}


@dataclass
class Life:
    settings: Settings
    url: str
    state: SiteState
    proxy: ForwardProxy
    pending_after_kill: dict[str, int] = field(default_factory=dict)
    pending_after_resume: dict[str, int] = field(default_factory=dict)
    hits_a: list[tuple[str, str, bool]] = field(default_factory=list)
    hits_b: list[tuple[str, str, bool]] = field(default_factory=list)
    posts_a: list[RawPost] = field(default_factory=list)
    posts_b: list[RawPost] = field(default_factory=list)
    posts_c: list[RawPost] = field(default_factory=list)
    runs: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    health: dict[str, CrawlHealth] = field(default_factory=dict)
    original: dict[str, str] = field(default_factory=dict)


def _write_sources(settings: Settings, url: str, proxy: str, extra: bool) -> None:
    body = KIND_SOURCES + (EXTRA_SOURCES if extra else "")
    (Path(settings.config_dir) / "sources.yaml").write_text(
        "sources:" + body % {"u": url, "p": POL, "proxy": proxy}, encoding="utf-8")


def _runs(settings: Settings) -> dict[str, list[tuple[int, int, str]]]:
    path = settings.data_path(STATE_FILE)
    if not Path(path).exists():
        return {}
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT source_id, emitted, errors, finish_reason FROM runs ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    out: dict[str, list[tuple[int, int, str]]] = {}
    for sid, emitted, errors, reason in rows:
        out.setdefault(sid, []).append((emitted, errors, reason))
    return out


def _loop(settings: Settings, done: Callable[[], bool], *, kill: bool, timeout_s: float = 60) -> None:
    """Run the crawler stage until ``done()``; then SIGKILL (``kill``) or SIGTERM it."""
    env = {**os.environ, "YUQING_DATA_DIR": str(settings.data_dir)}
    env.pop("YUQING_TRANSPORT", None)
    log = Path(settings.data_dir) / "loop.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "crawlers.runner", "run", "--config-dir",
                                 str(settings.config_dir)], env=env, stdout=out, stderr=out, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not done():
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"crawler stage: condition not reached\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.05)
            if kill:
                # What finished before the held pages arrived gets to its end (posts flushed);
                # the held pages stay in flight.
                time.sleep(0.3)
        finally:
            if proc.poll() is None:
                if kill:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    if not kill:
        assert proc.returncode == 0, log.read_text(errors="replace")[-3000:]


def _all_ran(settings: Settings, ids: list[str], n: int) -> Callable[[], bool]:
    def check() -> bool:
        runs = _runs(settings)
        return all(len(runs.get(sid, [])) >= n for sid in ids)
    return check


def _edit(st: SiteState) -> None:
    """One edit per kind, as sites edit posts."""
    st.articles[0].text += "\n记者从消防部门了解到，起火点位于一楼储藏室。"  # portal + feed
    st.threads[0].replies[4].text = "第5楼：（已编辑）刚才又去看了，积水更深了。"  # Discuz reply
    st.tieba[0].replies[0].text = "已经打了12345热线，说明天来修。"  # 贴吧 reply
    st.weibo[0]["likes"] = 99  # new counts only
    st.messages[0].text += "\n补充：路口的两盏也不亮。"  # 留言 edited
    st.comments[1][0]["content"] = "希望早日查明原因，公布结果。"  # 跟帖 edited


# The posts each edit changes: (source id, predicate on the new version).
EDITED: dict[str, Callable[[RawPost], bool]] = {
    "portal": lambda p: p.text.endswith("起火点位于一楼储藏室。"),
    "feed": lambda p: p.text.endswith("起火点位于一楼储藏室。"),
    "bbs": lambda p: p.text == "第5楼：（已编辑）刚才又去看了，积水更深了。",
    "tieba": lambda p: p.text == "已经打了12345热线，说明天来修。",
    "wb": lambda p: p.engagement.likes == 99,
    "board": lambda p: p.text.endswith("补充：路口的两盏也不亮。"),
    "cmts": lambda p: p.text == "希望早日查明原因，公布结果。",
}


@pytest.fixture(scope="module")
def life(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Life]:
    from tests.fixtures.sites import FixtureServer

    tmp = tmp_path_factory.mktemp("life")
    cfg = tmp / "config"
    shutil.copytree(ROOT / "config", cfg)
    data = tmp / "var"
    data.mkdir()
    with FixtureServer() as site, ForwardProxy() as proxy, pytest.MonkeyPatch.context() as mp:
        mp.setenv("YUQING_DATA_DIR", str(data))
        mp.delenv("YUQING_TRANSPORT", raising=False)
        (cfg / "sources.yaml").write_text("sources: []\n", encoding="utf-8")
        settings = load_settings(cfg)
        lf = Life(settings, site.url, site.state, proxy)
        st = site.state
        lf.original = {"a1": st.articles[0].text, "msg": st.messages[0].text}
        ids = [sid for sid, _, _ in KINDS.values()]
        state_db = settings.data_path(STATE_FILE)

        # A: every source has one page in flight when the process is killed.
        _write_sources(settings, site.url, proxy.url, extra=False)
        st.hold = {hold for _, hold, _ in KINDS.values()}

        def all_held() -> bool:
            return all(any(ua == f"ua-{sid}" and path.startswith(hold) for ua, path, _ in st.hit_log)
                       for sid, hold, _ in KINDS.values())

        _loop(settings, all_held, kill=True)
        time.sleep(0.2)  # nothing more comes: the process is gone
        st.hold = set()
        lf.hits_a = list(st.hit_log)
        lf.pending_after_kill = {sid: pending_count(state_db, sid) for sid in ids}
        lf.posts_a = posts_of(settings)

        # B: resumed, to the end (robots.txt and proxy sources too).
        _write_sources(settings, site.url, proxy.url, extra=True)
        mark = len(st.hit_log)
        _loop(settings, _all_ran(settings, [*ids, "robo", "robo-off", "viaproxy"], 1), kill=False)
        lf.hits_b = st.hit_log[mark:]
        lf.posts_b = posts_of(settings)  # A's and B's
        lf.pending_after_resume = {sid: pending_count(state_db, sid) for sid in ids}

        # C: one edit per kind, then every source again.
        _edit(st)
        _loop(settings, _all_ran(settings, ids, 2), kill=False)
        lf.posts_c = posts_of(settings)  # A's, B's and C's
        lf.runs = _runs(settings)

        # D: a captcha wall everywhere.
        st.captcha_all = True
        _loop(settings, _all_ran(settings, ids, 3), kill=False)
        st.captcha_all = False
        lf.health = {s.id: health_of(state_db, s) for s in load_sources(settings) if s.id in ids}
        yield lf


def _of(posts: list[RawPost], sid: str) -> list[RawPost]:
    return [p for p in posts if p.source_id == sid]


def _paths(hits: list[tuple[str, str, bool]], sid: str) -> list[str]:
    return [path for ua, path, _ in hits if ua == f"ua-{sid}" and path != "/robots.txt"]


# ------------------------------------------------------------------ extracted correctly


def _check_news(lf: Life, posts: list[RawPost]) -> None:
    by_url = {p.url: p for p in posts}
    a1 = by_url[f"{lf.url}/portal/a/1.html"]
    art = lf.state.articles[0]
    assert a1.title == art.title and a1.text == lf.original["a1"] and a1.author == "王晓明"
    assert a1.published_precision == "hour"  # "3小时前" on the GBK page
    assert abs(a1.published_at - art.published) <= timedelta(hours=1)
    assert by_url[f"{lf.url}/portal/b/7.html"].text.endswith("请过往车辆提前绕行。")  # after two 500s
    assert "请市民注意防范" in by_url[f"{lf.url}/portal/t/8.html"].text  # truncated page


def _check_rss(lf: Life, posts: list[RawPost]) -> None:
    for p, art in zip(sorted(posts, key=lambda p: p.url), lf.state.articles, strict=True):
        assert p.url == f"{lf.url}/portal/a/{art.id}.html" and p.title == art.title
        assert p.published_at == art.published and p.published_precision == "second"  # the feed's date


def _check_forum(lf: Life, posts: list[RawPost]) -> None:
    t = lf.state.threads[0]
    head = next(p for p in posts if p.parent_id is None)
    assert (head.title, head.author, head.text, head.published_at) == (t.title, t.author, t.text, t.at)
    replies = sorted((p for p in posts if p.parent_id == head.post_id), key=lambda p: p.published_at)
    assert [(r.author, r.published_at) for r in replies] == [(r.author, r.at) for r in t.replies]


def _check_tieba(lf: Life, posts: list[RawPost]) -> None:
    t = lf.state.tieba[0]
    head = next(p for p in posts if p.parent_id is None)
    assert head.post_id == make_post_id("tieba", f"tieba:{t.tid}")
    assert (head.title, head.author, head.text, head.published_at) == (t.title, t.author, t.text, t.at)
    (reply,) = [p for p in posts if p.parent_id == head.post_id]
    assert (reply.author, reply.text) == ("吧友乙", "已经打了12345热线。")


def _check_weibo(lf: Life, posts: list[RawPost]) -> None:
    by_id = {p.post_id: p for p in posts}
    orig = by_id[make_post_id("wb", "5001")]
    assert orig.text == lf.state.weibo[0]["long"]  # long text completed after the resume
    assert by_id[make_post_id("wb", "5002")].parent_id == orig.post_id
    assert sorted(p.text for p in posts if p.post_id not in (orig.post_id, make_post_id("wb", "5002"))) == [
        "评论1：注意安全[心]", "评论2：注意安全[心]"]


def _check_board(lf: Life, posts: list[RawPost]) -> None:
    (m,) = posts
    msg = lf.state.messages[0]
    assert (m.title, m.author, m.text, m.published_at) == (msg.title, "市民王先生", lf.original["msg"], msg.at)


def _check_comments(lf: Life, posts: list[RawPost]) -> None:
    (c,) = posts
    assert (c.text, c.author, c.engagement.likes) == ("希望早日查明原因。", "网友A", 5)
    assert c.parent_id == make_post_id("feed", f"{lf.url}/news/1.html")


CHECKS = {"news": _check_news, "rss": _check_rss, "forum": _check_forum, "tieba": _check_tieba,
          "weibo": _check_weibo, "gov_board": _check_board, "comments": _check_comments}


@pytest.mark.parametrize("kind", list(KINDS))
def test_items_extracted_correctly(life: Life, kind: str) -> None:
    sid, _, n = KINDS[kind]
    posts = _of(life.posts_b, sid)
    assert len({p.post_id for p in posts}) == n
    CHECKS[kind](life, posts)


# ------------------------------------------------------------------ killed mid-crawl, resumed


@pytest.mark.parametrize("kind", list(KINDS))
def test_killed_crawl_resumes_with_its_in_flight_page(life: Life, kind: str) -> None:
    sid, hold, n = KINDS[kind]
    # The frontier outlived SIGKILL (the page in flight is one of its rows) and is gone
    # once the resumed crawl finished.
    assert life.pending_after_kill[sid] >= 1
    assert life.pending_after_resume[sid] == 0
    assert life.runs[sid][0][2] == "finished"
    before, after = _paths(life.hits_a, sid), _paths(life.hits_b, sid)
    # The page in flight at the kill is fetched again ...
    assert any(p.startswith(hold) for p in after), after
    # ... the pages finished before it are not (the start page is always read afresh).
    done_before = {p for p in before[1:] if not p.startswith(hold)}
    assert not done_before & set(after), sorted(done_before & set(after))
    # Every post exactly once over the killed and the resumed crawl.
    posts = _of(life.posts_b, sid)
    counts = Counter(p.post_id for p in posts)
    assert len(counts) == n and set(counts.values()) == {1}, counts


def test_killed_crawl_had_done_part_of_the_work(life: Life) -> None:
    # Mid-way for real: some sources had emitted posts before the kill, and those
    # posts were not sent again by the resumed crawl (counted above).
    emitted = Counter(p.source_id for p in life.posts_a)
    assert emitted["portal"] == 1 and emitted["feed"] == 1  # a/1 done, a/2 in flight
    assert emitted["bbs"] == 10  # thread page 1 of 3
    assert emitted["wb"] == 1  # the repost; the original waits for its long text


# ------------------------------------------------------------------ second crawl


@pytest.mark.parametrize("kind", list(KINDS))
def test_second_crawl_no_duplicates_and_edit_is_an_update(life: Life, kind: str) -> None:
    sid, _, _ = KINDS[kind]
    old = {p.post_id: p for p in _of(life.posts_b, sid)}
    # The messages crawl C added (the topic is read partition by partition: compare as multisets).
    key = lambda p: (p.post_id, p.content_hash, p.engagement.model_dump_json())  # noqa: E731
    added = Counter(key(p) for p in _of(life.posts_c, sid)) - Counter(key(p) for p in _of(life.posts_b, sid))
    new = [p for p in _of(life.posts_c, sid) if key(p) in added]
    assert len(_of(life.posts_c, sid)) == len(_of(life.posts_b, sid)) + 1  # nothing sent twice unchanged
    (upd,) = new  # exactly the edited post came back ...
    assert upd.post_id in old and EDITED[sid](upd) and not EDITED[sid](old[upd.post_id])  # ... as an update
    assert life.runs[sid][1][0] == 1 and life.runs[sid][1][2] == "finished"


@pytest.mark.parametrize("kind", list(KINDS))
def test_captcha_page_turns_health_blocked(life: Life, kind: str) -> None:
    h = life.health[KINDS[kind][0]]
    assert h.state == "blocked" and h.alert and "验证码" in h.reason, h


# ------------------------------------------------------------------ politeness


def test_robots_txt_is_obeyed_by_default_and_can_be_turned_off(life: Life) -> None:
    obeyed, ignored = _paths(life.hits_b, "robo"), _paths(life.hits_b, "robo-off")
    assert "/open/a/1.html" in obeyed and not any(p.startswith("/private/") for p in obeyed)
    assert any(ua == "ua-robo" and path == "/robots.txt" for ua, path, _ in life.hits_b)
    assert "/private/a/2.html" in ignored
    assert not any(ua == "ua-robo-off" and path == "/robots.txt" for ua, path, _ in life.hits_b)
    assert [p.url for p in _of(life.posts_b, "robo")] == [f"{life.url}/open/a/1.html"]
    assert sorted(p.url for p in _of(life.posts_b, "robo-off")) == [
        f"{life.url}/open/a/1.html", f"{life.url}/private/a/2.html"]
    # A page robots.txt forbids is a choice, not an error of the crawl.
    emitted, errors, reason = life.runs["robo"][0]
    assert (emitted, errors, reason) == (1, 0, "finished")


def test_optional_proxy_carries_that_sources_requests_only(life: Life) -> None:
    via = [(path, proxied) for ua, path, proxied in life.hits_b if ua == "ua-viaproxy"]
    assert {"/robots.txt", "/board/list", "/board/msg/3001"} <= {p for p, _ in via}
    assert all(proxied for _, proxied in via)  # reached the site through the proxy
    assert {f"GET {life.url}/board/list", f"GET {life.url}/board/msg/3001"} <= set(life.proxy.requests)
    assert len(_of(life.posts_b, "viaproxy")) == 1
    assert not any(proxied for ua, _, proxied in life.hits_b if ua != "ua-viaproxy")
