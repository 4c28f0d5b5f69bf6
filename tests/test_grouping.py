"""Grouping at scale decides exactly what the rules say.

The responder groups from an in-memory view of the open events and an
inverted index (responder.open_events, responder.similarity). These tests
hold it to a brute-force reading of the rules in responder/events.py's
docstring, written here from scratch: every open event scanned in id order,
every member compared pair by pair.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from responder.events import BURST, DISTINCT_TOLL, PLAIN_TEXT
from responder.open_events import MAX_MEMBERS_COMPARED
from responder.service import handle_batch
from responder.similarity import (
    BatchSimilarity,
    MemberIndex,
    place_names,
    post_vector,
    similarity,
    vectors_similarity,
)
from responder.store import SEVERITY_RANK, Audit, Event, Post, Store, TicketEventRow
from tests.fixtures.auth import client_as
from tests.fixtures.databases import PLACES, assessed, sh
from web.app import create_app

T0 = sh(2026, 11, 2, 8, 0)


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()

# --------------------------------------------------------------------------- the measure


def _incident_bigrams() -> set[str]:
    """The bigrams of the taxonomy's emergency keywords and occurred words, read here from the YAML."""
    import yaml

    ev = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "taxonomy.yaml").read_text("utf-8"))["events"]
    words = [w for t in ev["types"] for st in t["subtypes"] for w in st["keywords"]]
    words += ev["occurred_words"] + ev["causal_words"]
    out = set()
    for w in words:
        w = re.sub(r"[\W_]+", "", str(w).lower())
        out.update(w[i : i + 2] for i in range(len(w) - 1))
    return out


INCIDENT = _incident_bigrams()


def _counter_cosine(a: str, b: str) -> float:
    """The measure written plainly: Counter of bigrams (incident bigrams left out), cosine of the dicts."""

    def vec(s: str) -> Counter[str]:
        s = re.sub(r"[\W_]+", "", s.lower())
        if len(s) == 1:
            return Counter([s])
        return Counter(g for i in range(len(s) - 1) if (g := s[i : i + 2]) not in INCIDENT)

    x, y = vec(a), vec(b)
    if not x or not y:
        return 0.0
    if len(x) > len(y):
        x, y = y, x
    dot = sum(v * y.get(k, 0) for k, v in x.items())
    return dot / (math.sqrt(sum(v * v for v in x.values())) * math.sqrt(sum(v * v for v in y.values())))


def _without_place(s: str, names: list[str]) -> str:
    for n in sorted(names, key=len, reverse=True):
        s = s.replace(n, " ")
    return s


NAMES = {None: [], "340104": ["安徽省", "安徽", "合肥市", "合肥", "蜀山区", "蜀山"], "340100": ["安徽省", "安徽", "合肥市", "合肥"]}


def _counter_similarity(ta: str, xa: str, pa: str | None, tb: str, xb: str, pb: str | None) -> float:
    return _counter_cosine(_without_place(f"{ta} {xa}", NAMES[pa]), _without_place(f"{tb} {xb}", NAMES[pb]))


ALPHABET = "物业费上涨业主小区停车难火灾死亡合肥蜀山区安徽的了，。！？ ＡＢａb1２_\u3000𠀀é"


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def test_place_names_are_the_chain_of_the_place() -> None:
    assert set(place_names("340104")) == set(NAMES["340104"])
    assert set(place_names("340202")) >= {"安徽省", "芜湖市", "芜湖", "镜湖区", "镜湖"}
    assert {"包河区", "滨湖新区"} <= set(place_names("340111"))  # with the aliases of regions.yaml
    assert place_names(None) == place_names("999999") == ()


def test_similarity_is_bit_for_bit_the_counter_cosine() -> None:
    rng = random.Random(3)
    cases = [("", "", None, "", "", None), ("", "a", None, "", "a", None), ("，。", "！", None, "物", "物", None),
             ("火灾", "x", None, "火灾", "x", None), ("蜀山区", "", "340104", "蜀山区", "", "340104")]
    places = [None, "340104", "340100"]
    cases += [(_text(rng, rng.randint(0, 8)), _text(rng, rng.randint(0, 60)), rng.choice(places),
               _text(rng, rng.randint(0, 8)), _text(rng, rng.randint(0, 60)), rng.choice(places)) for _ in range(400)]
    for ta, xa, pa, tb, xb, pb in cases:
        assert similarity(ta, xa, tb, xb, pa, pb) == _counter_similarity(ta, xa, pa, tb, xb, pb), (ta, xa, tb, xb)


def test_a_shared_place_is_no_similarity() -> None:
    """Two short posts from one district that share nothing but its name."""
    a, b = "芜湖市镜湖区锦绣路积水严重", "芜湖市镜湖区一商场发生火灾"
    assert similarity(a, "", b, "") > 0.35  # the names alone, as the measure once saw them
    assert similarity(a, "", b, "", "340202", "340202") == 0.0
    # Words that only say what kind of incident it is (起火, 死亡 …) are no evidence of which one.
    assert _counter_cosine("一居民楼起火", "一仓库起火") == 0.0 == similarity("一居民楼起火", "", "一仓库起火", "")
    assert "起火" in INCIDENT and "居民" not in INCIDENT


@pytest.mark.parametrize("summed_by", ["numpy", "scipy"])
def test_member_index_gives_the_pairwise_best_per_owner(monkeypatch, summed_by) -> None:
    import responder.similarity as sim_mod

    monkeypatch.setattr(sim_mod, "_SCIPY_FROM", 10**9 if summed_by == "numpy" else 0)
    rng = random.Random(5)
    words = ["物业", "涨价", "业主", "停车", "火灾", "死亡", "小区", "合肥", "噪音", "学校", "交通", "拥堵"]
    texts = {i: ("".join(rng.choices(words, k=rng.randint(0, 4))),
                 "".join(rng.choices(words, k=rng.randint(1, 30)))) for i in range(400)}
    vec = {i: post_vector(*texts[i], rng.choice([None, "340104"])) for i in texts}
    owner = {i: rng.randrange(60) for i in texts}
    ix = MemberIndex()
    live: set[int] = set()
    for start in range(0, 400, 37):  # batches of members, removals between (compaction included)
        batch = list(range(start, min(start + 37, 400)))
        ix.add_many([(i, owner[i], vec[i]) for i in batch])
        live.update(batch)
        for i in rng.sample(sorted(live), k=len(live) // 3):
            ix.remove(i)
            live.discard(i)
        for q in rng.sample(range(400), 8):
            for floor in (0.1, 0.2, 0.5):
                want: dict[int, float] = {}
                for i in live:
                    s = vectors_similarity(vec[q], vec[i])
                    if s >= floor and s > want.get(owner[i], -1.0):
                        want[owner[i]] = s
                assert ix.best_per_owner(vec[q], floor) == want
    sims = BatchSimilarity([vec[i] for i in range(50)])
    for i in range(50):
        assert sims.row(i).tolist() == [vectors_similarity(vec[i], vec[j]) for j in range(50)]


# --------------------------------------------------------------------------- the oracle


@dataclass
class _Member:
    published_at: datetime
    seq: int
    title: str
    text: str
    place: str | None
    deaths: int | None


@dataclass
class _Ev:
    id: int
    status: str
    t0: datetime
    last: datetime
    place: str | None
    emergency: bool
    kind: str | None
    subtype: str | None
    rank: tuple[int, bool]
    title: str
    members: list[_Member] = field(default_factory=list)


def _prefix(code: str | None) -> str | None:
    if not code:
        return None
    while len(code) > 2 and code.endswith("00"):
        code = code[:-2]
    return code


def _compatible(a: str | None, b: str | None) -> bool:
    pa, pb = _prefix(a), _prefix(b)
    return pa is None or pb is None or pa.startswith(pb) or pb.startswith(pa)


def _county(code: str | None) -> bool:
    return bool(code) and len(code) == 6 and not code.endswith("00")


def _title(title: str, text: str) -> str:
    t = title.strip()
    if t:
        return t[:200]
    t = re.sub(r"\s+", " ", text).strip()
    return t[:40] + ("…" if len(t) > 40 else "")


class Oracle:
    """Brute force: every open event in id order, every compared member pair by pair."""

    def __init__(self, window_hours: float, threshold: float) -> None:
        self.window = timedelta(hours=window_hours)
        self.threshold = threshold
        self.events: list[_Ev] = []
        self.event_of: dict[str, int | None] = {}
        self.parent_of: dict[str, str | None] = {}
        self.seq = 0
        self.kinds_kept_apart = 0  # a fire and a flood, or a fire and an explosion, in one county, in each other's window
        self.beyond_burst = 0  # text at the threshold, not plain enough to join an emergency beyond its burst

    def batch(self, msgs) -> None:
        for ap in sorted(msgs, key=lambda m: m.post.published_at):
            p, a = ap.post, ap.assessment
            if p.post_id in self.event_of:
                continue
            self.parent_of[p.post_id] = p.parent_id
            self.event_of[p.post_id] = self._add(ap) if a.relevant else None

    def _thread(self, pid: str, parent: str | None) -> int | None:
        found = []
        for other, op in self.parent_of.items():
            eid = self.event_of.get(other)
            if other == pid or eid is None or self.events[eid - 1].status != "open":
                continue
            if op == pid or (parent and (other == parent or op == parent)):
                found.append(eid)
        return min(found) if found else None

    def _score(self, ev: _Ev, ap) -> float | None:
        """The rules of responder/events.py's docstring, read plainly."""
        p, a = ap.post, ap.assessment
        P, code, deaths = p.published_at, a.place.code, a.casualties.deaths
        if not _compatible(ev.place, code):
            return None
        kind = a.event_type if a.is_emergency else None
        ev_kind = ev.kind if ev.emergency else None
        subtype = a.event_subtype if a.is_emergency else None
        if kind and ev_kind and (kind != ev_kind or (subtype and ev.subtype and subtype != ev.subtype)):
            self.kinds_kept_apart += _county(code) and code == ev.place
            return None
        same = _county(code) and code == ev.place
        members = sorted(ev.members, key=lambda m: (-m.published_at.timestamp(), m.seq))[:MAX_MEMBERS_COMPARED]
        sim = max((similarity(p.title, p.text, m.title, m.text, code, m.place) for m in members), default=0.0)
        tolls = {m.deaths for m in members if m.deaths}
        toll = (deaths or 0) >= DISTINCT_TOLL and deaths in tolls
        in_burst = ev.t0 - BURST <= P <= ev.last + BURST
        mixed = bool(kind) != bool(ev_kind)  # one an emergency, the other not: plain text only
        needed = self.threshold if (in_burst or not ev_kind) and not mixed else PLAIN_TEXT * self.threshold
        if same and kind and ev_kind:
            burst = in_burst and not (deaths is not None and tolls and deaths < max(tolls))
            if toll or sim >= needed or burst:
                return 1.5
        if same and toll:
            return 1.4
        self.beyond_burst += self.threshold <= sim < needed
        return sim if sim >= needed else None

    def _add(self, ap) -> int:
        p, a = ap.post, ap.assessment
        P, code = p.published_at, a.place.code
        rank = (SEVERITY_RANK.get(a.severity, 0), a.is_emergency)
        self.seq += 1
        eid = self._thread(p.post_id, p.parent_id)
        if eid is None:
            best: tuple[float, int] | None = None
            for ev in self.events:
                if ev.status != "open" or not (ev.t0 <= P + self.window and ev.last >= P - self.window):
                    continue
                score = self._score(ev, ap)
                if score is not None and (best is None or score > best[0]):
                    best = (score, ev.id)
            eid = best[1] if best else None
        if eid is None:
            archived = not a.needs_response and not a.is_emergency and p.source_kind != "gov_board"
            ev = _Ev(len(self.events) + 1, "closed" if archived else "open", P, P, code, a.is_emergency,
                     a.event_type, a.event_subtype, rank, _title(p.title, p.text))
            self.events.append(ev)
        else:
            ev = self.events[eid - 1]
            if rank > ev.rank:  # the lead post: it outranks the event (before the event takes its severity)
                ev.title = _title(p.title, p.text)
            ev.rank = (max(ev.rank[0], rank[0]), ev.rank[1] or rank[1])
            ev.last = max(ev.last, P)
            if code and code != ev.place:
                op, np_ = _prefix(ev.place), _prefix(code)
                if op is None or np_.startswith(op):
                    ev.place = code
            ev.t0 = min(ev.t0, P)
            if a.is_emergency and not ev.emergency:
                ev.emergency, ev.kind, ev.subtype = True, ev.kind or a.event_type, ev.subtype or a.event_subtype
        ev.members.append(_Member(P, self.seq, p.title, p.text, code, a.casualties.deaths))
        return ev.id


# --------------------------------------------------------------------------- workloads

STORIES = [
    ("物业费上涨近一倍 业主质疑", "物业公司通知物业费由每平方米1.2元上涨至2.3元。业主称涨价未经业主大会表决。希望有关部门介入调查。"),
    ("小区停车难 车位被占", "小区车位不足，夜间停车困难。外来车辆长期占用车位。业主多次反映无人处理。"),
    ("居民楼火灾 造成人员死亡", "一居民楼发生火灾，消防赶到现场扑救。火灾已造成人员死亡。起火原因正在调查。"),
    ("学校门口交通拥堵", "每天早晚高峰学校门口车辆乱停乱放。交通拥堵严重，家长希望交警加强疏导。"),
    ("广场舞噪音扰民", "广场舞音响声音过大影响居民休息。居民多次投诉，希望有关部门管一管。"),
    ("自来水浑浊发黄", "连续三天自来水浑浊发黄有异味。居民不敢饮用，只能买桶装水。供水公司称管网检修。"),
    ("工地夜间施工扰民", "工地凌晨两点还在打桩施工。噪音让附近居民无法入睡。施工方没有夜间施工许可。"),
    ("公交线路调整不便", "公交线路调整后老人出行不便。站点距离小区太远。请求恢复原来的线路。"),
    ("拖欠农民工工资", "建筑公司拖欠四十多名农民工工资近半年。工人多次讨要无果。请劳动监察部门帮忙。"),
    ("学校食堂饭菜质量差", "学校食堂饭菜分量少价格高。学生反映有变质食物。家长要求教育局调查。"),
    ("暴雨后道路积水严重", "连日暴雨后道路积水严重。多辆汽车被淹。居民出行困难，希望疏通排水管道。"),
]
BURST_TEXTS = {
    False: ["楼下好大的烟，消防车来了好几辆", "听说有人没跑出来，太吓人了", "黑烟老远都能看到", "路都封了，别往那边走"],
    True: ["水都淹到膝盖了，车子熄火在路中间", "地下车库全进水了", "雨太大了，小区门口成了河", "路都封了，别往那边走"],
}
SHARED = ["有关部门", "希望尽快解决", "居民反映", "业主表示", "近日"]
PLACE_NAMES = ["蜀山区", "包河区", "合肥市", "镜湖区", "待定"]


def workload(seed: int, n: int):
    """Batches of assessed posts: retellings of a few stories in a few places,
    threads, emergencies with death tolls, late posts, redeliveries, work
    reports that are archived, and one story told by over 50 posts at the
    same minute (the compared-members limit and its tie order)."""
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        k = rng.randrange(len(STORIES))
        title, body = STORIES[k]
        sents = [s for s in body.split("。") if s]
        kept = [s for s in sents if rng.random() < 0.7] or sents[:1]
        text = "。".join(kept) + "。" + "".join(rng.sample(SHARED, rng.randint(0, 3)))
        if rng.random() < 0.5:  # chatter: pulls similarity down towards the threshold
            text += "".join(rng.choices("的了是在有和就不人都一个上也很到说要去你会着没有看好自己这那里吗呢吧", k=rng.randint(5, 80)))
        place = rng.choice(PLACE_NAMES)
        pub = T0 + timedelta(minutes=rng.randint(0, 60 * 24 * 12))
        fire, flood = k == 2, k == len(STORIES) - 1
        kind = rng.choice(["news", "forum", "weibo", "gov_board", "official"])
        parent = posts[rng.randrange(len(posts))].post.post_id if posts and rng.random() < 0.08 else None
        posts.append(
            assessed(
                f"p{i}",
                title=(title if rng.random() < 0.6 else title[: rng.randint(2, 6)]) if kind != "weibo" else "",
                text=text,
                published_at=pub,
                fetched_at=pub + timedelta(minutes=rng.choice([5, 30, 60 * 30])),
                source_kind=kind,
                source_id=f"src-{kind}",
                parent_id=parent,
                place=place,
                is_emergency=(fire or flood) and rng.random() < 0.8,
                event_type="事故灾难" if fire else "自然灾害" if flood else None,
                event_subtype=rng.choice(["火灾", "爆炸", None]) if fire else rng.choice(["洪涝", None]) if flood else None,
                severity=rng.choice(["一般", "较大", "重大"]) if fire or flood else "一般",
                deaths=rng.choice([None, 2, 3, 4]) if fire or flood else None,
                relevant=rng.random() < 0.92,
                needs_response=not (kind == "news" and rng.random() < 0.2),
            )
        )
    for j in range(60):  # a crowded event: its members tie on time
        posts.append(
            assessed(f"crowd{j}", title="蜀山区物业费上涨近一倍", text=STORIES[0][1] + f"第{j % 7}栋。",
                     published_at=T0 + timedelta(hours=30), place="蜀山区")
        )
    for j in range(24):  # a burst of colloquial emergency reports in one district, a fire and a flood
        flood = rng.random() < 0.4
        pub = T0 + timedelta(hours=60 + rng.uniform(0, 10 if j < 20 else 30))
        posts.append(
            assessed(f"burst{j}", title="", text=rng.choice(BURST_TEXTS[flood]), published_at=pub, place="包河区",
                     fetched_at=pub + timedelta(minutes=rng.choice([5, 90])), source_kind="weibo",
                     is_emergency=True, event_type="自然灾害" if flood else "事故灾难",
                     event_subtype=("洪涝" if flood else "火灾") if rng.random() < 0.7 else None,
                     severity=rng.choice(["一般", "较大"]), deaths=rng.choice([None, None, 0, 1, 3]))
        )
    # Arrival order: by fetch time, a little shuffled; batches of 1-25; some posts twice.
    posts.sort(key=lambda m: (m.post.fetched_at, rng.random()))
    batches, i = [], 0
    while i < len(posts):
        size = rng.randint(1, 25)
        batch = posts[i : i + size]
        if i and rng.random() < 0.2:
            batch = batch + [posts[rng.randrange(i)]]  # a redelivery
        batches.append(batch)
        i += size
    return batches


def _partition(store: Store) -> dict[str, int | None]:
    with store.reader() as s:
        return dict(s.execute(select(Post.post_id, Post.event_id)).all())


def _oracle(settings, batches) -> Oracle:
    o = Oracle(settings.responder.event_window_hours, settings.responder.similarity_threshold)
    for b in batches:
        o.batch(b)
    return o


@pytest.mark.parametrize("seed", [1, 2])
def test_grouping_equals_the_brute_force_reading_of_the_rules(store_url, settings, seed) -> None:
    batches = workload(seed, 260)
    store = Store(store_url)
    try:
        for i, b in enumerate(batches):
            handle_batch(store, settings, b, now=T0 + timedelta(days=6, seconds=i))
        got = _partition(store)
        oracle = _oracle(settings, batches)
        assert got == oracle.event_of
        with store.reader() as s:
            rows = {e.id: e for e in s.scalars(select(Event))}
        for ev in oracle.events:
            row = rows[ev.id]
            assert (row.status, row.t0, row.last_published_at, row.place_code, row.is_emergency, row.event_type,
                    row.title) == (ev.status, ev.t0, ev.last, ev.place, ev.emergency, ev.kind, ev.title)
        # The workload reaches the cases that matter: the compared-members
        # limit, many events, and joins by text close to the threshold.
        sizes = Counter(v for v in got.values() if v is not None)
        assert max(sizes.values()) > MAX_MEMBERS_COMPARED and len(sizes) > 20
        with store.reader() as s:
            scores = [
                d["score"]
                for (d,) in s.execute(select(TicketEventRow.detail).where(TicketEventRow.kind == "post_added"))
                if d["score"] < 1.4
            ]
        assert sum(1 for x in scores if x < 0.4) >= 5
        with store.reader() as s:
            reasons = [d["reason"] for (d,) in s.execute(
                select(TicketEventRow.detail).where(TicketEventRow.kind == "post_added"))]
            renamed = s.scalars(select(Audit).where(Audit.action == "title_changed")).all()
        assert any("相隔不足" in r for r in reasons) and any("死亡人数一致" in r for r in reasons)
        assert renamed and oracle.kinds_kept_apart > 0 and oracle.beyond_burst > 0
    finally:
        store.close()


def test_a_cold_start_every_batch_decides_the_same(tmp_path, settings) -> None:
    """A responder restarted before every batch (nothing in memory) groups as one that never stopped."""
    batches = workload(3, 150)
    url = f"sqlite:///{tmp_path / 'cold.db'}"
    for i, b in enumerate(batches):
        with Store(url) as store:
            handle_batch(store, settings, b, now=T0 + timedelta(days=6, seconds=i))
    with Store(url) as store:
        assert _partition(store) == _oracle(settings, batches).event_of


def test_a_failed_batch_leaves_nothing_behind_in_memory(tmp_path, settings) -> None:
    """The database refuses one post mid-batch: the batch rolls back, and what the
    responder had decided for it in memory must not steer the next batches."""
    batches = workload(4, 150)
    store = Store(f"sqlite:///{tmp_path / 'fail.db'}")
    earlier = {m.post.post_id for b in batches[:4] for m in b}
    poisoned = next(m.post.post_id for m in reversed(batches[4]) if m.post.post_id not in earlier)
    with store.engine.begin() as c:
        c.execute(text(
            "CREATE TRIGGER refuse BEFORE INSERT ON posts WHEN NEW.post_id = :pid "
            "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END".replace(":pid", f"'{poisoned}'")
        ))
    try:
        for i, b in enumerate(batches):
            if i == 4:
                with pytest.raises(Exception, match="refused by test trigger"):
                    handle_batch(store, settings, b, now=T0 + timedelta(days=6, seconds=i))
                with store.engine.begin() as c:
                    c.execute(text("DROP TRIGGER refuse"))
            handle_batch(store, settings, b, now=T0 + timedelta(days=6, seconds=i))  # redelivered
        assert _partition(store) == _oracle(settings, batches).event_of
    finally:
        store.close()


def _similar(i: int, place: str = "蜀山区", **kw):
    return assessed(f"s{i}", title="蜀山区翡翠湖小区物业费上涨一倍", text=STORIES[0][1],
                    published_at=T0 + timedelta(hours=i), place=place, **kw)


def test_other_writers_close_merge_and_split_are_seen_by_a_running_responder(store_url, settings) -> None:
    """The web UI (another process, another store handle) changes events between
    batches; the responder, its open events in memory, must group by the new truth."""
    responder = Store(store_url)
    web = Store(store_url)
    client = client_as(create_app(settings, store=web), "王五")
    try:
        handle_batch(responder, settings, [_similar(0)])
        with web.reader() as s:
            first = s.scalars(select(Event)).one()
        tid = client.get("/api/tickets").json()["tickets"][0]["id"]
        assert client.post(f"/api/tickets/{tid}/close", json={"outcome": "responded"}).status_code == 200
        handle_batch(responder, settings, [_similar(1)])  # the closed event takes no post
        part = _partition(responder)
        assert part["s0"] == first.id and part["s1"] != first.id
        second = part["s1"]

        other = assessed("o0", title="包河区学校门口交通拥堵", text=STORIES[3][1], published_at=T0, place="包河区")
        handle_batch(responder, settings, [other])
        third = _partition(responder)["o0"]
        r = client.post(f"/api/events/{second}/merge", json={"into": third, "confirm_places": True})
        assert r.status_code == 200, r.text
        handle_batch(responder, settings, [_similar(2, place="待定")])  # like s1, whose event is now `third`
        assert _partition(responder)["s2"] == third

        r = client.post(f"/api/events/{third}/split",
                        json={"post_ids": ["s1", "s2"], "reason": "另一件事"})
        assert r.status_code == 200, r.text
        fourth = r.json()["new_ticket"]["event"]["id"]
        handle_batch(responder, settings, [_similar(3, place="待定")])  # joins the split-off posts
        assert _partition(responder)["s3"] == fourth
    finally:
        client.close()
        web.close()
        responder.close()


def test_place_names_used_here_exist() -> None:
    assert set(PLACE_NAMES) <= set(PLACES)


def test_equal_scores_go_to_the_oldest_event(store, settings) -> None:
    """Two open events told in the same words in two sibling districts; a post
    with no place matches both equally: it joins the older one."""
    title, body = STORIES[5]
    handle_batch(store, settings, [
        assessed("a", title=title, text=body, published_at=T0, place="包河区"),
        assessed("b", title=title, text=body, published_at=T0 + timedelta(minutes=5), place="蜀山区"),
    ])
    handle_batch(store, settings, [assessed("c", title=title, text=body, published_at=T0 + timedelta(hours=1),
                                            place="待定")])
    got = _partition(store)
    assert got["a"] != got["b"] and got["c"] == min(got["a"], got["b"])


@pytest.mark.parametrize("replies", [MAX_MEMBERS_COMPARED - 1, MAX_MEMBERS_COMPARED])
def test_an_event_is_compared_by_its_most_recent_members_only(store, settings, replies) -> None:
    """The first post of a thread is the only one that reads like a new post. With
    50 later replies it is no longer among the members compared."""
    first = assessed("first", title="自来水浑浊发黄", text=STORIES[5][1], published_at=T0)
    thread = [
        assessed(f"r{i}", title="", text=f"跟帖{i}：楼主说得对，顶一下！", parent_id="first",
                 published_at=T0 + timedelta(minutes=10), source_kind="forum")
        for i in range(replies)
    ]
    handle_batch(store, settings, [first, *thread])
    handle_batch(store, settings, [assessed("again", title="自来水浑浊发黄", text=STORIES[5][1],
                                            published_at=T0 + timedelta(hours=2))])
    got = _partition(store)
    assert len({got[p] for p in ["first", *(f"r{i}" for i in range(replies))]}) == 1
    assert (got["again"] == got["first"]) is (replies < MAX_MEMBERS_COMPARED)


def test_an_event_opened_by_a_batch_that_failed_is_forgotten(tmp_path, settings) -> None:
    """A fire opens an event in a batch the database then refuses; when the batch
    comes again, the fire opens its event anew (the same-emergency rule must not
    find the one that was never written)."""
    store = Store(f"sqlite:///{tmp_path / 'fail.db'}")
    fire = dict(is_emergency=True, event_type="事故灾难", event_subtype="火灾", severity="重大", place="蜀山区")
    batch = [
        assessed("f1", title="蜀山区居民楼火灾", text="一居民楼起火。", published_at=T0, **fire),
        assessed("bad", title="促销", text="全场五折", published_at=T0 + timedelta(minutes=1), relevant=False),
    ]
    with store.engine.begin() as c:
        c.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON posts WHEN NEW.post_id = 'bad' "
                       "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"))
    try:
        with pytest.raises(Exception, match="refused by test trigger"):
            handle_batch(store, settings, batch)
        with store.engine.begin() as c:
            c.execute(text("DROP TRIGGER refuse"))
        handle_batch(store, settings, batch)
        handle_batch(store, settings, [assessed("f2", title="蜀山区一居民楼发生大火", text="火势已扑灭。",
                                                published_at=T0 + timedelta(hours=1), **fire)])
        got = _partition(store)
        assert got["f1"] is not None and got["f2"] == got["f1"] and store.count(Event) == 1
    finally:
        store.close()
