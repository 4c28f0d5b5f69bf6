"""Monitoring schemes (监测方案) and their alerts (issue 17 part 4): the scheme's
search on the embedded backend and the matcher both equal a brute-force
evaluation over a fixture corpus; alerts once per (scheme, post) across a
restart; a burst over the channel's rate goes out as a digest; the web form,
the board's 新增 and places by name in schemes and the timeliness report."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from responder import cases
from responder.archive import SearchParamError, params_from, vocabulary
from responder.indexer import SearchIndexer
from responder.notify import Dispatcher, load_notify
from responder.permissions import Actor, Role
from responder.schemes import SchemeMatcher
from responder.search import open_search
from responder.search import query as qlang
from responder.service import handle_batch
from responder.store import Delivery, Notice, Post, SavedSearch, SchemeMatch, SearchProgress, Store
from tests.fixtures.auth import client_as
from tests.fixtures.databases import assessed, sh
from tests.test_notify import HookReceiver
from web.app import create_app

T0 = sh(2026, 11, 2, 9, 0)
BASE = "http://yuqing.test"

REGIONS = ["合肥", "芜湖", "蜀山"]
SUBJECTS = ["地铁", "公交", "物业"]
EVENTS = ["停运", "拥堵", "涨价"]
NOISE = ["广告", "招聘", "天气"]
PLACES = ["蜀山区", "包河区", "镜湖区", "颍州区", "合肥市", "待定"]
KINDS = ["news", "forum", "weibo"]


def analyst(jurisdiction: str = "34", name: str = "方分析") -> Actor:
    return Actor(username=name, display_name=name, role=Role.ANALYST, jurisdiction=jurisdiction,
                 root_jurisdiction="34")


def corpus(n: int, seed: int, prefix: str = "c") -> list[Any]:
    """Posts made of the scheme words, noise and places, drawn with a fixed seed."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        words = [rnd.choice(g) for g in (REGIONS, SUBJECTS, EVENTS, NOISE) if rnd.random() < 0.6]
        title = "".join(words[:2]) + "情况"
        text = "网友反映" + "，".join(words[2:] or ["近况"]) + "，希望有关部门关注。"
        out.append(assessed(f"{prefix}{i}", title=title, text=text, published_at=T0 + timedelta(minutes=i),
                            place=rnd.choice(PLACES), source_kind=rnd.choice(KINDS),
                            relevant=rnd.random() < 0.7, severity=rnd.choice(["一般", "较大"]),
                            source_id=f"src-{i % 3}"))
    return out


SCHEMES: dict[str, dict[str, Any]] = {
    "三组": {"scheme": {"regions": ["合肥", "蜀山"], "subjects": ["地铁", "公交"], "events": ["停运", "拥堵"]}},
    "排除": {"scheme": {"subjects": ["物业"], "excludes": ["广告", "招聘"]}},
    "属地名": {"scheme": {"events": ["涨价", "停运"]}, "place": "合肥"},
    "来源级别": {"scheme": {"regions": ["芜湖", "合肥"], "excludes": ["天气"]}, "kind": ["weibo", "forum"],
               "severity": ["较大"]},
    "检索式": {"q": "(物业 | 停运) -广告"},
}


def brute_force(posts: list[Post], params: dict[str, Any], jurisdiction: str, root: str = "34") -> set[str]:
    """The scheme written out by hand: groups OR inside, AND across, NOT excludes, over the
    title and text tokens; place prefix, kinds, severity (relevant posts only), owner's scope."""
    g = params.get("scheme")
    if g is not None:
        def any_of(words: list[str], toks: frozenset[str]) -> bool:
            return any(all(w in toks for w in qlang.parse(x).words) for x in words)  # type: ignore[union-attr]

        def ok(toks: frozenset[str]) -> bool:
            return all(any_of(g[k], toks) for k in ("regions", "subjects", "events") if g.get(k)) and not (
                g.get("excludes") and any_of(g["excludes"], toks))
    else:
        tree = qlang.parse(params["q"])

        def ok(toks: frozenset[str]) -> bool:
            return qlang.matches(tree, toks)
    place = {"合肥": "3401"}.get(params.get("place", ""), params.get("place") or "")
    out = set()
    for p in posts:
        code = p.place_code
        if code is None and not root.startswith(jurisdiction):
            continue
        if code is not None and not code.startswith(jurisdiction):
            continue
        if place and not (code or "").startswith(place):
            continue
        if params.get("kind") and p.source_kind not in params["kind"]:
            continue
        if params.get("severity") and not (p.relevant and p.severity in params["severity"]):
            continue
        if ok(qlang.doc_tokens(p.title, p.text)):
            out.add(p.post_id)
    return out


@pytest.fixture
def world(tmp_path: Path, settings: Any) -> Iterator[tuple[Store, Any, Any]]:
    store = Store(f"sqlite:///{tmp_path / 'y.db'}")
    backend = open_search(settings)
    yield store, backend, settings
    backend.close()
    store.close()


def test_scheme_search_and_matcher_equal_brute_force(world: tuple[Store, Any, Any]) -> None:
    store, backend, settings = world
    handle_batch(store, settings, corpus(10, seed=1, prefix="old"), now=T0)  # before the schemes: never "new"
    owners = {"三组": "34", "排除": "3401", "属地名": "34", "来源级别": "34", "检索式": "3401"}
    ids = {name: cases.save_search(store, analyst(owners[name], f"a{owners[name]}"), name, params, now=T0)
           for name, params in SCHEMES.items()}
    matcher = SchemeMatcher(store, None, root_jurisdiction="34", batch=37)
    matcher.step(now=T0)  # the cursor starts at the schemes' watch_from
    handle_batch(store, settings, corpus(160, seed=7), now=T0 + timedelta(hours=3))
    SearchIndexer(store, backend).catch_up()
    done = matcher.catch_up(now=T0 + timedelta(hours=3))
    assert done.posts == 160 and done.notices == 0  # no notify.yaml enabled: matches only
    with store.reader() as s:
        posts = s.scalars(select(Post).where(Post.post_id.like("c%"))).all()
        matched: dict[int, set[str]] = {}
        for sid, pid in s.execute(select(SchemeMatch.scheme_id, Post.post_id).join(Post, Post.id == SchemeMatch.post_id)):
            matched.setdefault(sid, set()).add(pid)
        rows = {r.name: r for r in s.scalars(select(SavedSearch))}
    assert rows["属地名"].params["place"] == "3401"  # the name is kept as its code
    for name, sid in ids.items():
        want = brute_force(posts, SCHEMES[name], owners[name])
        assert 3 <= len(want) < 160, (name, len(want))  # the corpus tells the conditions apart
        actor = analyst(owners[name])
        p = params_from(rows[name].params, vocabulary(settings.config_dir))
        res = backend.search(p.query(actor, limit=500, offset=0, backend=backend))
        searched = {h.post_id for h in res.hits if h.post_id.startswith("c")}
        assert searched == want, name
        assert matched.get(sid, set()) == want, name
    # Excludes really exclude, the owner's scope really limits.
    assert all("广告" not in (p.title + p.text) for p in posts if p.post_id in matched.get(ids["排除"], set()))
    assert all((p.place_code or "").startswith("3401") for p in posts if p.post_id in matched.get(ids["检索式"], set()))


# --------------------------------------------------------------------------- alerts


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    h = HookReceiver()
    t = threading.Thread(target=h.serve_forever, daemon=True)
    t.start()
    yield h
    h.shutdown()
    h.server_close()


def write_notify(config_dir: Path, hook: HookReceiver, rate: int | None = None) -> None:
    rate_line = f", rate_per_minute: {rate}" if rate else ""
    (config_dir / "notify.yaml").write_text(f"""
enabled: true
base_url: {BASE}
channels:
  hook: {{kind: webhook, url: "{hook.url}/hook"{rate_line}}}
  wuhu: {{kind: webhook, url: "{hook.url}/wuhu"}}
recipients:
  - {{name: 合肥舆情组, role: duty, jurisdiction: "3401", channel: hook}}
  - {{name: 芜湖值班室, role: duty, jurisdiction: "3402", channel: wuhu}}
escalation:
  opened: []
""", encoding="utf-8")


def _alerting(store: Store, settings: Any) -> int:
    notify = load_notify(settings.config_dir)
    return cases.save_search(store, analyst("3401"), "合肥交通", {
        "scheme": {"regions": ["合肥", "蜀山"], "subjects": ["地铁", "公交"], "excludes": ["广告"]},
        "alert": True, "notify": "合肥舆情组"}, now=T0, notify=notify)


def _posts(n: int, start: int = 0) -> list[Any]:
    return [assessed(f"a{i}", title=f"合肥地铁{i}号线停运", text=f"蜀山区地铁{i}号线停运，乘客滞留。",
                     published_at=T0 + timedelta(minutes=i), place="蜀山区") for i in range(start, start + n)]


def test_an_alert_once_per_scheme_and_post_across_a_restart(tmp_path: Path, settings: Any, hook: HookReceiver) -> None:
    write_notify(settings.config_dir, hook)
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    store = Store(url)
    sid = _alerting(store, settings)
    mk = lambda st: SchemeMatcher(st, load_notify(settings.config_dir), root_jurisdiction="34")  # noqa: E731
    mk(store).step(now=T0)
    noise = [assessed("n1", title="合肥地铁广告招商", text="地铁广告位招商。", published_at=T0, place="蜀山区"),
             assessed("n2", title="芜湖地铁停运", text="镜湖区地铁停运。", published_at=T0, place="镜湖区")]
    handle_batch(store, settings, _posts(3) + noise, now=T0 + timedelta(hours=1))
    assert mk(store).catch_up(now=T0 + timedelta(hours=1)).notices == 3
    store.close()

    # A new process: the same posts again (the cursor thrown away, as after a restore) and new ones.
    store = Store(url)
    with store.transaction() as s:
        s.delete(s.get(SearchProgress, "schemes"))
    again = mk(store).catch_up(now=T0 + timedelta(hours=2))
    assert again.posts >= 5 and again.notices == 0 and again.matches == 0
    handle_batch(store, settings, _posts(2, start=3), now=T0 + timedelta(hours=2))
    assert mk(store).catch_up(now=T0 + timedelta(hours=2)).notices == 2
    with store.reader() as s:
        keys = s.scalars(select(Notice.key).where(Notice.kind == "scheme_match")).all()
        assert len(keys) == len(set(keys)) == 5
        assert s.scalar(select(func.count()).select_from(SchemeMatch).where(SchemeMatch.scheme_id == sid)) == 5
        assert set(s.scalars(select(Delivery.recipient))) == {"合肥舆情组"}

    d = Dispatcher(store, load_notify(settings.config_dir), base_url=BASE, now=lambda: T0 + timedelta(hours=2))
    assert d.deliver() == 5
    got = hook.got["/hook"]
    assert len(got) == 5 and "/wuhu" not in hook.got
    text = got[0]["body"]["text"] if "text" in got[0]["body"] else str(got[0]["body"])
    assert "监测方案预警" in text and "合肥交通" in text and f"{BASE}/schemes/{sid}" in text
    assert d.deliver() == 0  # sent is sent
    d.close()
    store.close()


def test_a_burst_over_the_rate_goes_as_a_digest(tmp_path: Path, settings: Any, hook: HookReceiver) -> None:
    write_notify(settings.config_dir, hook, rate=2)
    store = Store(f"sqlite:///{tmp_path / 'rate.db'}")
    _alerting(store, settings)
    SchemeMatcher(store, load_notify(settings.config_dir)).step(now=T0)
    handle_batch(store, settings, _posts(6), now=T0 + timedelta(hours=1))
    assert SchemeMatcher(store, load_notify(settings.config_dir)).catch_up(now=T0 + timedelta(hours=1)).notices == 6
    at = T0 + timedelta(hours=1)
    d = Dispatcher(store, load_notify(settings.config_dir), base_url=BASE, now=lambda: at)
    assert d.deliver() == 2  # two messages in the minute: one alone, the other five as one digest
    bodies = [str(x["body"]) for x in hook.got["/hook"]]
    digest = [b for b in bodies if "汇总" in b]
    assert len(digest) == 1 and len(re.findall(r"【监测方案预警】合肥交通", digest[0])) == 5
    with store.reader() as s:
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent")) == 6
    d.close()
    store.close()


# --------------------------------------------------------------------------- web


@pytest.fixture
def app(tmp_path: Path, settings: Any, hook: HookReceiver) -> Iterator[Any]:
    write_notify(settings.config_dir, hook)
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    backend = open_search(settings)
    yield create_app(settings, store=store, search=backend, now=lambda: T0 + timedelta(hours=5))
    backend.close()
    store.close()


def test_the_scheme_form_the_board_and_its_new_matches(app: Any, settings: Any) -> None:
    store = app.state.store
    with client_as(app, "合肥分析", "analyst", "3401", via="session") as c:
        page = c.get("/search")
        assert page.status_code == 200 and 'action="/schemes"' in page.text and "地域词" in page.text
        assert "合肥舆情组" in page.text and "芜湖值班室" not in page.text  # recipients within the jurisdiction
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        form = {"csrf_token": token.group(1), "name": "合肥交通", "regions": "合肥、蜀山", "subjects": "地铁 公交",
                "events": "", "excludes": "广告", "place": "合肥", "kind": ["news"], "alert": "1",
                "notify": "合肥舆情组"}
        del c.headers["X-CSRF-Token"]
        r = c.post("/schemes", data={k: v for k, v in form.items() if k != "csrf_token"}, follow_redirects=False)
        assert r.status_code == 403  # no CSRF token, no scheme
        r = c.post("/schemes", data=form, follow_redirects=False)
        assert r.status_code == 303, r.text[:300]
        sid = int(r.headers["location"].rsplit("/", 1)[1])
        with store.reader() as s:
            row = s.get(SavedSearch, sid)
            assert row.params == {"scheme": {"regions": ["合肥", "蜀山"], "subjects": ["地铁", "公交"], "events": [],
                                             "excludes": ["广告"]}, "place": "3401", "kind": ["news"],
                                  "alert": True, "notify": "合肥舆情组"}
        # Refusals keep the form and say why, in Chinese.
        bad = c.post("/schemes", data={**form, "name": "外地", "place": "镜湖区"})
        assert bad.status_code == 400 and "不在本人属地范围内" in bad.text
        amb = c.post("/schemes", data={**form, "name": "重名", "place": "鼓楼区"})
        assert amb.status_code == 400 and "同名" in amb.text and "320106" in amb.text
        dup = c.post("/schemes", data=form)
        assert dup.status_code == 409 and "已有名为“合肥交通”的监测方案" in dup.text
        none = c.post("/schemes", data={**form, "name": "空", "regions": "", "subjects": "", "excludes": "广告"})
        assert none.status_code == 400 and "至少填一个" in none.text
        foreign = c.post("/schemes", data={**form, "name": "通知外地", "notify": "芜湖值班室"})
        assert foreign.status_code == 400 and "不在本人属地范围内" in foreign.text

        # New matching posts: the board names the scheme with its count until it is opened.
        SchemeMatcher(store, load_notify(settings.config_dir), root_jurisdiction="34").step(now=T0)
        handle_batch(store, settings, _posts(3), now=T0 + timedelta(hours=1))
        SchemeMatcher(store, load_notify(settings.config_dir), root_jurisdiction="34").catch_up(
            now=T0 + timedelta(hours=1))
        board = c.get("/")
        assert f'href="/schemes/{sid}">合肥交通（新增 3 条）' in board.text
        opened = c.get(f"/schemes/{sid}", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"].startswith("/search?q=")
        hits = c.get("/api/search" + opened.headers["location"][len("/search"):])
        assert hits.status_code == 200
        assert "合肥交通（新增" not in c.get("/").text

        # Edit: the form filled, then changed; the API too.
        edit = c.get(f"/search?edit={sid}")
        assert f'action="/schemes/{sid}"' in edit.text and 'value="合肥 蜀山"' in edit.text
        r = c.post(f"/schemes/{sid}", data={**form, "events": "停运", "alert": ""}, follow_redirects=False)
        assert r.status_code == 303
        with store.reader() as s:
            row = s.get(SavedSearch, sid)
            assert row.params["scheme"]["events"] == ["停运"] and "alert" not in row.params
        r = c.put(f"/api/searches/{sid}", json={"params": {"scheme": {"subjects": ["地铁"]}, "place": "蜀山区"}},
                  headers={"X-CSRF-Token": token.group(1)})
        assert r.status_code == 200, r.text
        assert r.json()["params"] == {"scheme": {"regions": [], "subjects": ["地铁"], "events": [], "excludes": []},
                                      "place": "340104"}

    # Someone else in the city sees the scheme and its new matches, may not change it.
    handle_batch(store, settings, _posts(1, start=10), now=T0 + timedelta(hours=2))
    SchemeMatcher(store, None, root_jurisdiction="34").catch_up(now=T0 + timedelta(hours=2))
    with client_as(app, "另一分析", "analyst", "3401") as other:
        assert "合肥交通（新增 4 条）" in other.get("/").text
        r = other.put(f"/api/searches/{sid}", json={"params": {"scheme": {"subjects": ["公交"]}}})
        assert r.status_code == 403 and "只有创建者或系统管理员可以修改" in r.json()["detail"]
    with client_as(app, "芜湖分析", "analyst", "3402") as wuhu:
        assert "合肥交通" not in wuhu.get("/").text
        assert wuhu.get(f"/schemes/{sid}", follow_redirects=False).status_code == 404


def test_places_by_name_in_the_board_and_the_report(app: Any, settings: Any) -> None:
    store = app.state.store
    posts = [assessed("r1", title="合肥地铁停运", text="蜀山区地铁停运，乘客滞留。", published_at=T0, place="蜀山区"),
             assessed("r2", title="芜湖公交停运", text="镜湖区公交停运。", published_at=T0, place="镜湖区")]
    handle_batch(store, settings, posts, now=T0 + timedelta(minutes=30))
    q = {"from": "2026-11-02", "to": "2026-11-02", "by": "region"}
    with client_as(app, "省分析", "analyst", "34") as c:
        by_code = c.get("/api/reports/timeliness", params={**q, "place": "3401"}).json()
        by_name = c.get("/api/reports/timeliness", params={**q, "place": "合肥"}).json()
        assert by_code["rows"] == by_name["rows"], (by_code, by_name)
        assert by_name["place"] == "3401"
        assert {r["group"] for r in by_name["rows"]} == {"安徽省合肥市蜀山区", "合计"}
        whole = c.get("/api/reports/timeliness", params=q).json()
        assert {r["group"] for r in whole["rows"]} > {r["group"] for r in by_name["rows"]}
        amb = c.get("/api/reports/timeliness", params={**q, "place": "鼓楼区"})
        assert amb.status_code == 400 and "同名" in amb.json()["detail"]
        assert {"label": "江苏省南京市鼓楼区", "code": "320106"} in amb.json()["suggestions"]
        unknown = c.get("/api/reports/timeliness", params={**q, "place": "火星"})
        assert unknown.status_code == 400 and "没有名为“火星”的属地" in unknown.json()["detail"]
        board_name = c.get("/fragment/tickets", params={"place": "合肥"})
        board_code = c.get("/fragment/tickets", params={"place": "3401"})
        assert board_name.status_code == 200 and "合肥地铁停运" in board_name.text and "芜湖公交停运" not in board_name.text
        assert board_name.text == board_code.text
    with client_as(app, "市分析", "analyst", "3401") as city:
        out = city.get("/api/reports/timeliness", params={**q, "place": "芜湖"})
        assert out.status_code == 400 and "不在本人属地范围内" in out.json()["detail"]
        assert city.get("/", params={"place": "芜湖"}).status_code == 400


def test_scheme_errors_name_the_group(tmp_path: Path, settings: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    a = analyst("3401")
    with pytest.raises(SearchParamError, match="未知的词组"):
        cases.save_search(store, a, "x", {"scheme": {"places": ["合肥"]}})
    with pytest.raises(SearchParamError, match="开启预警须选择"):
        cases.save_search(store, a, "x", {"scheme": {"regions": ["合肥"]}, "alert": True})
    with pytest.raises(SearchParamError, match="不再另填检索式"):
        cases.save_search(store, a, "x", {"scheme": {"regions": ["合肥"]}, "q": "地铁"})
    assert store.count(SavedSearch) == 0
    store.close()
