"""The authorisation matrix (issue 14): every route the app registers, for every
actor, on objects inside and outside the actor's jurisdiction.

One app (SQLite store, embedded search index, root jurisdiction 34, its clock
at :data:`AS_OF`) over one archive with a ticket, its event, a relevant post
(甲), an archive-only post (乙), a saved search (丙) and a department (丁) at
each of: the province 安徽省 (34), the city 合肥市 (3401), the county 蜀山区
under it (340104), the sibling city 芜湖市 (3402, its 镜湖区), 江苏省 (32,
outside the deployment) and 待定 (no place). Every one of those carries a
marker string of its own (``标记3402甲`` …) in its title, name or department.
Each place within the deployment (34, 3401, 340104, 3402) also has a user
(``u3402-place`` …) whose department is the place's 丁 marker: the object of
the admin's user routes.

Actors: anonymous, and each role (admin, office, duty, analyst) at 34 (the
root), 3401, 340104 and 3402, each by an API token.

For every route (:func:`web.auth.iter_routes`, so a new route is covered the
day it is added: a route missing from :data:`ROUTES` fails the test), with
its path id filled by an object at each place and an unknown id, the status
is what the permission table and the fixture's places say — written out
here, never asked of the code under test:

* anonymous → 401 for the API, a redirect to ``/login`` for pages;
* the role lacks the route's permission (:data:`ROLE_PERMISSIONS`) → 403;
* the object lies outside the actor's jurisdiction → 404 with the body an
  unknown id gets (never 403), for reads and actions alike;
* otherwise 2xx.

Every 2xx answer (JSON, HTML, CSV) holds no marker of an object outside the
actor's scope, and its figures — tickets, search totals and facets, CSV rows,
saved searches and their totals, the brief, the timeliness report, notices
that reached nobody — are those of the in-scope objects alone, counted from
the fixture. Reads run first; then the actions: the refused ones on the
archive (which must come out unchanged), the allowed ones each on an object
of its own made for it at the same place (verified in the store afterwards).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from starlette.routing import BaseRoute, Mount

from responder import accounts, cases, clock_rules
from responder.indexer import SearchIndexer
from responder.permissions import CLI_ACTOR, ROLE_PERMISSIONS, Actor, Permission, Role
from responder.search.embedded import EmbeddedSearch
from responder.service import clocks_for, handle_batch
from responder.store import (
    Audit,
    Deadline,
    Event,
    Notice,
    Post,
    SavedSearch,
    Store,
    Ticket,
    UnroutedNotice,
    UserRow,
)
from stream.contracts import AssessedPost
from tests.fixtures.auth import PASSWORD, add_user, bearer
from tests.fixtures.databases import assessed, sh
from web.app import create_app
from web.auth import iter_routes

ROOT = Path(__file__).resolve().parents[1]
ROOT_JURISDICTION = "34"
T0 = sh(2026, 11, 2, 9, 0)
DAY = date(2026, 11, 2)  # a Monday: its week is 11-02 … 11-08
AS_OF = sh(2026, 11, 9, 12, 0)  # the app's clock: every 48 h deadline of the archive is due by then
UNKNOWN_ID = 10**6
OTHER_PASSWORD = "Matrix-other-2026"


# --------------------------------------------------------------------------- the archive


@dataclass(frozen=True)
class Place:
    label: str  # in the markers
    place: dict[str, str]  # as the classifier gives it
    story: tuple[str, str]
    deadline: str  # what becomes of the ticket's 回应 deadline: on_time | late | open


PLACES: dict[str, Place] = {
    "province": Place("34", {"province": "安徽省", "code": "340000", "level": "province"},
                      ("全省高速公路收费站排长队", "多名网友反映节假日全省多个高速收费站拥堵严重，收费通道开放不足。"),
                      "open"),
    "city": Place("3401", {"province": "安徽省", "city": "合肥市", "code": "340100", "level": "city"},
                  ("公交线路调整引不满", "多条公交线路突然取消，沿线居民出行不便，要求恢复原线路。"), "on_time"),
    "county": Place("340104", {"province": "安徽省", "city": "合肥市", "county": "蜀山区", "code": "340104",
                               "level": "county"},
                    ("小区物业费上涨", "翡翠湖畔小区物业费由每平方米1.2元上涨至2.3元，业主质疑程序。"), "late"),
    "sibling": Place("3402", {"province": "安徽省", "city": "芜湖市", "county": "镜湖区", "code": "340202",
                              "level": "county"},
                     ("菜市场噪音扰民", "某菜市场凌晨卸货噪音大，附近居民长期无法入睡，多次投诉无果。"), "open"),
    "outside": Place("32", {"province": "江苏省", "city": "南京市", "county": "玄武区", "code": "320102",
                            "level": "county"},
                     ("地铁施工占道", "地铁施工围挡占用人行道，学生上学只能走机动车道，存在安全隐患。"), "on_time"),
    "none": Place("待定", {}, ("网传自来水发黄", "网友发帖称家中自来水连续三天发黄有异味，未说明所在地区，评论众多。"),
                  "open"),
}
KEYS = tuple(PLACES)
UNKNOWN = "unknown"  # an id nothing has
# The places with a user of their own (the admin pages' objects): a user's
# jurisdiction lies within the deployment (34), never at 32 or 待定.
USER_AT = {"province": "34", "city": "3401", "county": "340104", "sibling": "3402"}
UNKNOWN_USER = "nobody-here"


def user_name(key: str) -> str:
    return f"u{PLACES[key].label}-place"

# Who sees which places, written out (SPEC §1: the own jurisdiction and below;
# 待定 only at the root; 32 lies outside this deployment altogether).
SEEN: dict[str, frozenset[str]] = {
    "34": frozenset({"province", "city", "county", "sibling", "none"}),
    "3401": frozenset({"city", "county"}),
    "340104": frozenset({"county"}),
    "3402": frozenset({"sibling"}),
}
# Where each actor's saved search sits (the place key of its jurisdiction).
HOME = {"34": "province", "3401": "city", "340104": "county", "3402": "sibling"}
# Who saved each place's saved search: the analyst there; 32 someone elsewhere; 待定 the CLI (jurisdiction "").
OWNER = {"province": "analyst-34", "city": "analyst-3401", "county": "analyst-340104", "sibling": "analyst-3402",
         "outside": "analyst-32", "none": "cli"}
OWNER_JURISDICTION = {"province": "34", "city": "3401", "county": "340104", "sibling": "3402", "outside": "32"}


def marker(key: str, what: str) -> str:
    """甲 the relevant post (and its event and ticket), 乙 the archive-only post, 丙 the saved search, 丁 the department."""
    return f"标记{PLACES[key].label}{what}"


def department(key: str) -> str:
    return f"部门{marker(key, '丁')}"


def scheme_name(key: str) -> str:
    return f"方案{marker(key, '丙')}"


def markers(key: str) -> list[str]:
    # The post ids too: they are in URLs and hits.
    return [marker(key, w) for w in "甲乙丙丁"] + [f"{key}-1", f"{key}-2"]


def _post(pid: str, place: dict[str, str], title: str, text: str, dept: str, at: datetime, *,
          relevant: bool = True, kind: str = "news") -> AssessedPost:
    base = assessed(pid, title=title, text=text, published_at=at, relevant=relevant, source_kind=kind,
                    source_id=f"src-{kind}")
    d = base.model_dump(by_alias=True, mode="json")
    d["assessment"]["place"] = place
    d["assessment"]["responders"] = [{"role": "primary", "name": dept, "rule": "属地管理"}]
    d["assessment"]["department"] = dept
    return AssessedPost.model_validate(d)


def _user(name: str, role: Role, jurisdiction: str) -> Actor:
    return Actor(username=name, display_name=name, role=role, jurisdiction=jurisdiction,
                 root_jurisdiction=ROOT_JURISDICTION)


# --------------------------------------------------------------------------- actors


@dataclass(frozen=True)
class Who:
    name: str
    role: Role | None = None
    jurisdiction: str = ""

    @property
    def anonymous(self) -> bool:
        return self.role is None

    @property
    def seen(self) -> frozenset[str]:
        return frozenset() if self.anonymous else SEEN[self.jurisdiction]

    def __str__(self) -> str:
        return self.name


ANONYMOUS = Who("anonymous")
ACTORS = [ANONYMOUS] + [Who(f"{r.value}-{j}", r, j) for r in Role for j in SEEN]


# --------------------------------------------------------------------------- the app


@dataclass
class Matrix:
    app: FastAPI
    store: Store
    settings: Any
    clients: dict[str, TestClient]
    tickets: dict[str, int]
    events: dict[str, int]
    searches: dict[str, int]
    users: dict[str, str]  # place key → username
    place_labels: dict[str, str | None]
    deadlines: dict[str, list[tuple[datetime, datetime | None]]]  # key → (due_at, met_at) of its ticket
    passwords: dict[str, str] = field(default_factory=dict)
    fresh_seq: int = 0

    def client(self, who: Who) -> TestClient:
        return self.clients[who.name]


def _fill(store: Store, settings: Any) -> dict[str, dict[str, Any]]:
    msgs = []
    for i, (key, pl) in enumerate(PLACES.items()):
        title, text = pl.story
        at = T0 + timedelta(minutes=10 * i)
        msgs.append(_post(f"{key}-1", pl.place, f"{marker(key, '甲')}{title}", text, department(key), at))
        msgs.append(_post(f"{key}-2", pl.place, f"{marker(key, '乙')}{title}（转载）", f"转载：{text}",
                          department(key), at + timedelta(minutes=1), relevant=False, kind="weibo"))
    handle_batch(store, settings, msgs, now=T0 + timedelta(hours=1))
    with store.transaction() as s:
        posts = {p.post_id: p for p in s.scalars(select(Post))}
        tickets = {t.event_id: t for t in s.scalars(select(Ticket))}
        out: dict[str, dict[str, Any]] = {}
        for key in KEYS:
            eid = posts[f"{key}-1"].event_id
            assert eid is not None and eid in tickets, key
            t = tickets[eid]
            out[key] = {"event": eid, "ticket": t.id, "label": t.place_label}
            # A notice of each ticket that reached nobody, within the last 24 h of the clock.
            n = Notice(key=f"unrouted-{t.id}", ticket_id=t.id, kind="opened", created_at=AS_OF - timedelta(hours=2))
            s.add(n)
            s.flush()
            s.add(UnroutedNotice(notice_id=n.id, key=n.key, kind="opened", ticket_id=t.id, place_code=t.place_code,
                                 reason="没有配置接收人", created_at=AS_OF - timedelta(hours=2)))
        # Each place opened exactly one ticket: no story joined another's event.
        assert len({v["event"] for v in out.values()}) == len(KEYS) == len(tickets), out
    clocks = clocks_for(settings)
    for key, pl in PLACES.items():
        with store.reader() as s:
            due = s.scalar(select(Deadline.due_at).where(Deadline.ticket_id == out[key]["ticket"],
                                                         Deadline.milestone == "回应"))
        assert due is not None, key
        if pl.deadline != "open":
            at = due - timedelta(hours=1) if pl.deadline == "on_time" else due + timedelta(hours=3)
            cases.record_milestone(store, CLI_ACTOR, out[key]["ticket"], "回应", clocks=clocks, now=at,
                                   evidence_url="https://gov.test/notice")
    return out


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    from yuqing.settings import load_settings

    tmp = tmp_path_factory.mktemp("authz")
    shutil.copytree(ROOT / "config", tmp / "config")
    (tmp / "var").mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("YUQING_DATA_DIR", str(tmp / "var"))
    # Still Argon2id, at a cost that lets ~100 sign-ins and password changes run in a second or two.
    mp.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    settings = load_settings(tmp / "config")
    settings.auth.root_jurisdiction = ROOT_JURISDICTION
    store = Store(f"sqlite:///{tmp / 'store.db'}")
    backend = EmbeddedSearch(tmp / "search.db")
    try:
        made = _fill(store, settings)
        assert SearchIndexer(store, backend).catch_up() == 2 * len(KEYS)
        searches = {}
        for key in KEYS:
            owner = CLI_ACTOR if key == "none" else _user(OWNER[key], Role.ANALYST, OWNER_JURISDICTION[key])
            searches[key] = cases.save_search(store, owner, scheme_name(key), {}, now=T0)
        with store.reader() as s:
            deadlines = {
                key: [(d.due_at, d.met_at) for d in s.scalars(
                    select(Deadline).where(Deadline.ticket_id == made[key]["ticket"]).order_by(Deadline.id))]
                for key in KEYS
            }
        app = create_app(settings, store=store, now=lambda: AS_OF, search=backend)
        clients = {ANONYMOUS.name: TestClient(app)}
        for who in ACTORS[1:]:
            clients[who.name] = TestClient(app, headers=bearer(store, who.name, who.role, who.jurisdiction,
                                                               settings=settings))
        add_user(store, "visitor", Role.DUTY, "3401", settings=settings)  # the one anonymous signs in as
        for key, j in USER_AT.items():
            add_user(store, user_name(key), Role.DUTY, j, settings=settings, department=department(key))
        m = Matrix(app, store, settings, clients,
                   {k: v["ticket"] for k, v in made.items()}, {k: v["event"] for k, v in made.items()},
                   searches, {k: user_name(k) for k in USER_AT}, {k: v["label"] for k, v in made.items()},
                   deadlines,
                   passwords={w.name: PASSWORD for w in ACTORS[1:]} | {"visitor": PASSWORD})
        # The archive is what the docstring says.
        for key, pl in PLACES.items():
            states = [_state(due, met) for due, met in deadlines[key]]
            assert states == [pl.deadline], (key, states)
        yield m
    finally:
        backend.close()
        store.close()
        mp.undo()


def _state(due: datetime, met: datetime | None) -> str:
    if met is not None:
        return "on_time" if met <= due else "late"
    return "open" if due <= AS_OF else "pending"


# --------------------------------------------------------------------------- expected figures


def _n(who: Who) -> int:
    return len(who.seen)


def _present(text: str, who: Who, what: str) -> list[str]:
    return [f"missing {marker(k, what)}" for k in sorted(who.seen) if marker(k, what) not in text]


def _eq(name: str, got: Any, want: Any) -> list[str]:
    return [] if got == want else [f"{name}: got {got!r}, want {want!r}"]


def _timeliness(m: Matrix, who: Who, *, due_in: tuple[datetime, datetime] | None = None) -> Counter[str]:
    c: Counter[str] = Counter()
    for key in who.seen:
        for due, met in m.deadlines[key]:
            if due_in is None or due_in[0] <= due < due_in[1]:
                c[_state(due, met)] += 1
    return c


def check_board(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    return _present(r.text, who, "甲") + _eq("unrouted strip", f"最近24小时有 {_n(who)} 条通知" in r.text, True)


def check_api_tickets(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j = r.json()
    shown = {k for k in KEYS for x in j["tickets"] if marker(k, "甲") in x["event"]["title"]}
    return _eq("count", j["count"], _n(who)) + _eq("tickets", shown, set(who.seen)) + _eq(
        "ids", {x["id"] for x in j["tickets"]}, {m.tickets[k] for k in who.seen})


def check_one_ticket_page(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    return _eq("title shown", marker(t.key, "甲") in r.text, True)


def check_api_ticket(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j = r.json()
    return _eq("id", j["id"], m.tickets[t.key]) + _eq("posts", [p["post_id"] for p in j["posts"]], [f"{t.key}-1"])


def check_search_page(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    n = _n(who)
    return (_present(r.text, who, "甲") + _present(r.text, who, "乙") + _present(r.text, who, "丙")
            + _eq("total", f"共 {2 * n} 条" in r.text, True)
            + _eq("facet 新闻网站", f"新闻网站（{n}）" in r.text, True) + _eq("facet 微博", f"微博（{n}）" in r.text, True))


def check_api_search(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j, n = r.json(), _n(who)
    want = {f"{k}-{i}" for k in who.seen for i in (1, 2)}
    return (_eq("total", j["total"], 2 * n) + _eq("hits", {h["post_id"] for h in j["hits"]}, want)
            + _eq("kind facet", j["facets"].get("source_kind"), {"news": n, "weibo": n})
            + _eq("severity facet", sum(j["facets"].get("severity", {}).values()), n)
            + _eq("topic facet", sum(j["facets"].get("topic", {}).values()) <= 2 * n, True))


def _xlsx_rows(r: Response, sheet: str | None = None) -> list[list[str]]:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(r.content))
    ws = wb[sheet] if sheet else wb.active
    return [["" if c is None else str(c) for c in row] for row in ws.iter_rows(values_only=True)]


def _xlsx_leaks(who: Who, r: Response) -> list[str]:
    """leaks() for a workbook: its cells, every sheet (the zip hides them from r.text)."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(r.content))
    text = "\n".join(str(c) for ws in wb for row in ws.iter_rows(values_only=True) for c in row if c is not None)
    return [f"leaks {mk}" for k in KEYS if k not in who.seen for mk in markers(k) if mk in text]


def check_export(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    problems: list[str] = []
    if "spreadsheetml" in r.headers.get("content-type", ""):  # format=xlsx: the same rows
        rows = _xlsx_rows(r)[1:]
        problems = _xlsx_leaks(who, r)
    else:
        rows = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))[1:]
    titles = {k for k in KEYS for row in rows if marker(k, "甲") in row[1] or marker(k, "乙") in row[1]}
    return (problems + _eq("rows", len(rows), 2 * _n(who))
            + _eq("X-Total-Count", r.headers.get("x-total-count"), str(2 * _n(who)))
            + _eq("places", titles, set(who.seen)))


def check_searches(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    items = r.json()["searches"]
    return (_eq("saved searches", {x["name"] for x in items}, {scheme_name(k) for k in who.seen})
            + _eq("their totals", {x["total"] for x in items}, {2 * _n(who)}))


def check_brief(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j, n = r.json(), _n(who)
    ov, tl = j["overview"], j["timeliness"]
    week = (sh(2026, 11, 2, 0, 0), sh(2026, 11, 9, 0, 0))
    want = _timeliness(m, who, due_in=week)
    breached = {department(k) for k in who.seen
                if any(_state(d, met) in ("late", "open") and week[0] <= d < week[1] for d, met in m.deadlines[k])}
    return (_eq("posts", ov["posts"], 2 * n) + _eq("relevant", ov["relevant_posts"], n)
            + _eq("by kind", {c["name"]: c["count"] for c in ov["posts_by_kind"]}, {"news": n, "weibo": n})
            + _eq("new events", ov["new_events"], n) + _eq("tickets opened", ov["tickets_opened"], n)
            + _eq("pending place", ov["pending_place_posts"], int("none" in who.seen))
            + _eq("key events", j["key_events_total"], n)
            + _eq("key event titles", {k for k in KEYS for e in j["key_events"] if marker(k, "甲") in e["title"]},
                  set(who.seen))
            + _eq("due", tl["due"], sum(want.values())) + _eq("on time", tl["on_time"], want["on_time"])
            + _eq("late", tl["late"], want["late"]) + _eq("open past due", tl["open_past_deadline"], want["open"])
            + _eq("breach departments", {c["name"] for c in tl["breach_departments"]}, breached)
            + _eq("places", sum(c["count"] for c in j["distribution"]["places"]), n))


def check_brief_page(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    return _present(r.text, who, "甲")


def check_brief_file(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    """The brief as Excel: the page's figures, the actor's jurisdiction only."""
    n = _n(who)
    ov = {row[0]: row[1] for row in _xlsx_rows(r, "概况") if len(row) > 1 and row[0]}
    titles = {k for k in KEYS for row in _xlsx_rows(r, "重点事件") for c in row if marker(k, "甲") in c}
    return (_xlsx_leaks(who, r) + _eq("posts", ov.get("采集帖文（条）"), str(2 * n))
            + _eq("relevant", ov.get("政务舆情帖文（条）"), str(n)) + _eq("new events", ov.get("新发事件（起）"), str(n))
            + _eq("tickets opened", ov.get("新建工单（件）"), str(n)) + _eq("key event titles", titles, set(who.seen)))


def check_trends(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j, n = r.json(), _n(who)
    v = j["volume"]
    return (_eq("posts", sum(v["posts_total"]), 2 * n) + _eq("events", sum(v["events"]), n)
            + _eq("by kind", {s["name"]: sum(s["data"]) for s in v["posts_by_kind"]}, {"news": n, "weibo": n} if n else {})
            + _eq("tickets", sum(j["tickets_by_severity"].values()), n)
            + _eq("departments", {d["department"] for d in j["departments"]}, {department(k) for k in who.seen}))


def check_trends_page(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    return _present(r.text, who, "丁") + _eq("charts", 'data-charts="' in r.text, True)


def check_report(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j = r.json()
    rows = j["rows"]
    want = _timeliness(m, who)
    total = [x for x in rows if x["group"] == "合计"]
    groups = {x["group"] for x in rows if x["group"] != "合计"}
    want_groups = ({department(k) for k in who.seen} if j["by"] == "department"
                   else {m.place_labels[k] or "待定" for k in who.seen})
    return (_eq("groups", groups, want_groups)
            + _eq("total", sum(x["total"] for x in total), sum(want.values()))
            + _eq("on time", sum(x["on_time"] for x in total), want["on_time"])
            + _eq("breaches", sum(x["breaches"] for x in total), want["late"] + want["open"])
            + _eq("open past deadline", sum(x["open_past_deadline"] for x in total), want["open"]))


def check_unrouted(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j = r.json()
    return (_eq("tickets", {i["ticket_id"] for i in j["items"]}, {m.tickets[k] for k in who.seen})
            + _eq("last 24 h", j["last_24h"], _n(who)))


def check_metrics(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    counts = {mm.group(1): int(float(mm.group(2)))
              for mm in re.finditer(r'^yuqing_tickets\{status="(\w+)"\} (\S+)$', r.text, re.M)}
    unrouted = re.search(r"^yuqing_notices_unrouted_24h (\S+)$", r.text, re.M)
    return _eq("tickets by status", counts, {"new": _n(who), "acknowledged": 0, "closed": 0}) + _eq(
        "notices unrouted", unrouted and int(float(unrouted.group(1))), _n(who))


def check_admin_users(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    want = {k for k in USER_AT if k in who.seen}
    return (_eq("users", {k for k in USER_AT if user_name(k) in r.text}, want)
            + _eq("their departments", {k for k in USER_AT if department(k) in r.text}, want))


def check_admin_user(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    return _eq("user shown", user_name(t.key or "") in r.text and department(t.key or "") in r.text, True)


def check_admin_audit(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    # The creation of each place's user is audited with its department (丁); every one in scope is listed.
    want = {k for k in USER_AT if k in who.seen}
    return _eq("user creations", {k for k in USER_AT if department(k) in r.text}, want)


def check_me(m: Matrix, who: Who, t: Target, r: Response) -> list[str]:
    j = r.json()
    return _eq("me", (j["username"], j["role"], j["jurisdiction"]), (who.name, who.role, who.jurisdiction))


# --------------------------------------------------------------------------- the routes


SIGNED_IN = "signed in"
PUBLIC = "public"


@dataclass
class Target:
    """What one cell acts on: the place key of its object (or UNKNOWN), the ids
    in its path and body, and, for merges, the place of the event merged into."""

    key: str | None = None
    ids: dict[str, Any] = field(default_factory=dict)  # ints; a username for users
    into: str | None = None
    post_ids: list[str] = field(default_factory=list)
    fresh: bool = False

    @property
    def keys(self) -> list[str]:
        return [k for k in (self.key, self.into) if k is not None]

    def __str__(self) -> str:
        return "" if self.key is None else self.key + (f">{self.into}" if self.into else "") + (
            "(fresh)" if self.fresh else "")


Body = Callable[[Matrix, Who, Target], dict[str, Any]]


@dataclass(frozen=True)
class Spec:
    access: Permission | str  # a Permission, SIGNED_IN or PUBLIC
    page: bool = False  # anonymous is sent to /login instead of 401
    obj: str | None = None  # the path's object: ticket | event | search | user
    action: bool = False  # changes state: run after the reads
    params: tuple[dict[str, Any], ...] = ({},)  # query strings, one cell each
    body: Body | None = None
    ok: int = 200
    check: Callable[[Matrix, Who, Target, Response], list[str]] | None = None
    owner_or_admin: bool = False  # in scope but neither its owner nor an admin: 403
    public: Callable[[Who], int] | None = None  # the status of a public route
    merge_into: tuple[tuple[str, str], ...] = ()  # extra (source, target) place pairs


def _json(f: Callable[[Matrix, Who, Target], Any]) -> Body:
    return lambda m, who, t: {"json": f(m, who, t)}


def _password_change(m: Matrix, who: Who, t: Target, *, form: bool) -> dict[str, Any]:
    name = who.name if not who.anonymous else "visitor"
    old = m.passwords[name]
    new = OTHER_PASSWORD if old == PASSWORD else PASSWORD
    if form:
        return {"data": {"old": old, "new": new, "confirm": new, "next": "/"}}
    return {"json": {"old": old, "new": new}}


def _login_body(m: Matrix, who: Who, t: Target) -> dict[str, Any]:
    name = "visitor" if who.anonymous else who.name
    return {"json": {"username": name, "password": m.passwords[name]}}


def _user_change(who: Who) -> dict[str, str]:
    return {"display_name": f"改名{who}", "role": "analyst"}


def _new_user(prefix: str, who: Who) -> dict[str, str]:
    return {"username": f"{prefix}-{who}", "role": "duty", "jurisdiction": who.jurisdiction,
            "display_name": f"新用户{who}"}


def _split_body(m: Matrix, who: Who, t: Target) -> dict[str, Any]:
    return {"json": {"post_ids": t.post_ids or ["x"], "reason": "不是同一件事"}}


# A department configured everywhere (responders.yaml; its generic name is accepted at any place).
ASSIGNED = "市场监督管理局"
# The ticket page's forms (web/routes/tickets.py): 303 back to the ticket when they go through.
MERGE_PAIRS = (("county", "city"), ("city", "sibling"), ("sibling", "city"), ("county", "none"))


def _ticket_of(m: Matrix, event_id: int) -> int:
    """The ticket number of an event (the ticket page's merge form names the target by it)."""
    with m.store.reader() as s:
        return int(s.scalar(select(Ticket.id).where(Ticket.event_id == event_id)) or UNKNOWN_ID)


def _form(f: Callable[[Matrix, Who, Target], dict[str, str]]) -> Body:
    return lambda m, who, t: {"data": f(m, who, t)}


BRIEF_PARAMS = ({"period": "week", "date": DAY.isoformat()}, {"period": "day", "date": DAY.isoformat()})
REPORT_PARAMS = tuple({"from": DAY.isoformat(), "to": DAY.isoformat(), "by": by, "as_of": AS_OF.isoformat()}
                      for by in ("department", "region"))
P = Permission
# Every route the app may register, keyed by (method, path); MOUNT for mounted apps.
ROUTES: dict[tuple[str, str], Spec] = {
    # sign-in (public: the status does not depend on who asks, save GET /login for the signed-in)
    ("GET", "/login"): Spec(PUBLIC, public=lambda who: 200 if who.anonymous else 303),
    ("POST", "/login"): Spec(PUBLIC, action=True, public=lambda who: 303),
    ("POST", "/logout"): Spec(PUBLIC, action=True, public=lambda who: 303),
    ("POST", "/api/login"): Spec(PUBLIC, action=True, body=_login_body, public=lambda who: 200),
    ("POST", "/api/logout"): Spec(PUBLIC, action=True, public=lambda who: 200),
    ("GET", "/api/healthz"): Spec(PUBLIC, public=lambda who: 200),
    ("MOUNT", "/static"): Spec(PUBLIC, public=lambda who: 200),
    ("GET", "/password"): Spec(SIGNED_IN, page=True),
    ("POST", "/password"): Spec(SIGNED_IN, action=True, ok=303,
                                body=lambda m, who, t: _password_change(m, who, t, form=True)),
    ("POST", "/api/password"): Spec(SIGNED_IN, action=True,
                                    body=lambda m, who, t: _password_change(m, who, t, form=False)),
    ("GET", "/api/me"): Spec(SIGNED_IN, check=check_me),
    ("GET", "/api/openapi.json"): Spec(SIGNED_IN),
    # board
    ("GET", "/"): Spec(P.BOARD_VIEW, page=True, check=check_board),
    ("GET", "/fragment/tickets"): Spec(P.BOARD_VIEW, check=check_board),
    # tickets and events
    ("GET", "/tickets/{tid}"): Spec(P.TICKET_READ, page=True, obj="ticket", check=check_one_ticket_page),
    ("GET", "/events/{eid}"): Spec(P.TICKET_READ, page=True, obj="event", check=check_one_ticket_page),
    ("GET", "/api/tickets"): Spec(P.TICKET_READ, check=check_api_tickets),
    ("GET", "/api/tickets/{tid}"): Spec(P.TICKET_READ, obj="ticket", check=check_api_ticket),
    ("POST", "/api/tickets/{tid}/ack"): Spec(P.TICKET_ACK, obj="ticket", action=True),
    ("POST", "/api/tickets/{tid}/assign"): Spec(P.TICKET_ASSIGN, obj="ticket", action=True,
                                                body=_json(lambda m, who, t: {"department": ASSIGNED})),
    ("POST", "/api/tickets/{tid}/close"): Spec(
        P.TICKET_CLOSE, obj="ticket", action=True,
        body=_json(lambda m, who, t: {"outcome": "responded", "note": f"{who} 办结"})),
    # The fresh ticket of an allowed reopen is closed first (make_fresh); the archive's are open.
    ("POST", "/api/tickets/{tid}/reopen"): Spec(P.TICKET_REOPEN, obj="ticket", action=True,
                                                body=_json(lambda m, who, t: {"reason": f"{who} 重新打开"})),
    ("POST", "/api/tickets/{tid}/clock-rule"): Spec(
        P.TICKET_ASSIGN, obj="ticket", action=True,
        body=_json(lambda m, who, t: {"rule": "complaint", "reason": f"{who} 更正时限规则"})),
    ("POST", "/api/tickets/{tid}/milestones"): Spec(
        P.TICKET_MILESTONE, obj="ticket", action=True,
        body=_json(lambda m, who, t: {"milestone": "回应", "evidence_url": "https://gov.test/notice"})),
    ("POST", "/api/tickets/{tid}/extend"): Spec(
        P.TICKET_ASSIGN, obj="ticket", action=True,
        body=_json(lambda m, who, t: {"milestone": "反馈处理意见", "reason": f"{who} 延期"})),
    ("POST", "/api/tickets/{tid}/escalate"): Spec(P.TICKET_ESCALATE, obj="ticket", action=True,
                                                  body=_json(lambda m, who, t: {"reason": f"{who} 督办"})),
    # Across jurisdictions the merge carries the user's confirmation (refused without it:
    # tests/test_ticket_screen.py); an event in sight merged into one out of it (and back) is just as unknown.
    ("POST", "/api/events/{eid}/merge"): Spec(
        P.EVENT_MERGE, obj="event", action=True,
        body=_json(lambda m, who, t: {"into": t.ids["into"], "confirm_places": True}), merge_into=MERGE_PAIRS),
    ("POST", "/api/events/{eid}/split"): Spec(P.EVENT_SPLIT, obj="event", action=True, body=_split_body),
    ("GET", "/api/events/{eid}/merge-targets"): Spec(P.EVENT_MERGE, obj="event", params=({"q": "标记"},)),
    # the ticket page's forms
    ("POST", "/tickets/{tid}/ack"): Spec(P.TICKET_ACK, obj="ticket", action=True, ok=303),
    ("POST", "/tickets/{tid}/assign"): Spec(P.TICKET_ASSIGN, obj="ticket", action=True, ok=303,
                                            body=_form(lambda m, who, t: {"department": ASSIGNED})),
    ("POST", "/tickets/{tid}/milestone"): Spec(
        P.TICKET_MILESTONE, obj="ticket", action=True, ok=303,
        body=_form(lambda m, who, t: {"milestone": "回应", "evidence_url": "https://gov.test/notice"})),
    ("POST", "/tickets/{tid}/candidate"): Spec(
        P.TICKET_MILESTONE, obj="ticket", action=True, ok=303,
        body=_form(lambda m, who, t: {"post_id": (t.post_ids or ["x"])[0], "milestone": "回应"})),
    ("POST", "/tickets/{tid}/extend"): Spec(
        P.TICKET_ASSIGN, obj="ticket", action=True, ok=303,
        body=_form(lambda m, who, t: {"milestone": "反馈处理意见", "reason": f"{who} 延期"})),
    ("POST", "/tickets/{tid}/escalate"): Spec(P.TICKET_ESCALATE, obj="ticket", action=True, ok=303,
                                              body=_form(lambda m, who, t: {"reason": f"{who} 督办"})),
    ("POST", "/tickets/{tid}/clock-rule"): Spec(
        P.TICKET_ASSIGN, obj="ticket", action=True, ok=303,
        body=_form(lambda m, who, t: {"rule": "complaint", "reason": f"{who} 更正时限规则"})),
    ("POST", "/tickets/{tid}/close"): Spec(
        P.TICKET_CLOSE, obj="ticket", action=True, ok=303,
        body=_form(lambda m, who, t: {"outcome": "responded", "note": f"{who} 办结"})),
    ("POST", "/tickets/{tid}/reopen"): Spec(P.TICKET_REOPEN, obj="ticket", action=True, ok=303,
                                            body=_form(lambda m, who, t: {"reason": f"{who} 重新打开"})),
    ("POST", "/tickets/{tid}/merge"): Spec(
        P.EVENT_MERGE, obj="ticket", action=True, ok=303, merge_into=MERGE_PAIRS,
        body=_form(lambda m, who, t: {"into": str(_ticket_of(m, t.ids["into"])), "confirm_places": "1"})),
    ("POST", "/tickets/{tid}/split"): Spec(
        P.EVENT_SPLIT, obj="ticket", action=True, ok=303,
        body=_form(lambda m, who, t: {"post_ids": (t.post_ids or ["x"])[0], "reason": "不是同一件事"})),
    # search
    ("GET", "/search"): Spec(P.SEARCH, page=True, params=({"size": 100},), check=check_search_page),
    ("GET", "/api/search"): Spec(P.SEARCH, params=({"size": 100},), check=check_api_search),
    ("GET", "/api/search/export"): Spec(P.SEARCH_EXPORT, params=({}, {"format": "xlsx"}), check=check_export),
    ("GET", "/api/searches"): Spec(P.SEARCH, check=check_searches),
    ("POST", "/api/searches"): Spec(P.SAVED_SEARCH_WRITE, action=True, ok=201,
                                    body=_json(lambda m, who, t: {"name": f"新方案-{who}", "params": {"q": "物业"}})),
    ("DELETE", "/api/searches/{sid}"): Spec(P.SEARCH, obj="search", action=True, owner_or_admin=True),
    ("PUT", "/api/searches/{sid}"): Spec(P.SEARCH, obj="search", action=True, owner_or_admin=True,
                                         body=_json(lambda m, who, t: {"params": {"q": f"物业 改{who}"}})),
    # monitoring schemes: the search page's form, and a scheme's matches (marked seen, then its search)
    ("GET", "/schemes/{sid}"): Spec(P.SEARCH, page=True, obj="search", ok=303),
    ("POST", "/schemes"): Spec(P.SAVED_SEARCH_WRITE, action=True, ok=303, body=_form(
        lambda m, who, t: {"name": f"表单方案-{who}", "subjects": "物业", "events": "上涨 涨价"})),
    ("POST", "/schemes/{sid}"): Spec(P.SEARCH, obj="search", action=True, ok=303, owner_or_admin=True, body=_form(
        lambda m, who, t: {"name": f"改名方案-{who}-{t.key}", "subjects": "物业"})),
    ("POST", "/schemes/{sid}/delete"): Spec(P.SEARCH, obj="search", action=True, ok=303, owner_or_admin=True),
    # briefs and reports
    ("GET", "/briefs"): Spec(P.BRIEF_READ, page=True, params=BRIEF_PARAMS, check=check_brief_page),
    ("GET", "/api/briefs"): Spec(P.BRIEF_READ, params=BRIEF_PARAMS[:1], check=check_brief),
    ("GET", "/briefs/download"): Spec(P.BRIEF_READ, page=True, params=({**BRIEF_PARAMS[0], "format": "xlsx"},),
                                      check=check_brief_file),
    ("GET", "/trends"): Spec(P.REPORT_READ, page=True, params=BRIEF_PARAMS[:1], check=check_trends_page),
    ("GET", "/api/trends"): Spec(P.REPORT_READ, params=BRIEF_PARAMS[:1], check=check_trends),
    ("GET", "/api/reports/timeliness"): Spec(P.REPORT_READ, params=REPORT_PARAMS, check=check_report),
    # operations
    ("GET", "/api/sources"): Spec(P.SOURCES_READ),
    ("GET", "/metrics"): Spec(P.METRICS_READ, check=check_metrics),
    ("GET", "/api/notices/unrouted"): Spec(P.SOURCES_READ, check=check_unrouted),
    # admin: users within the own jurisdiction, the audit (web/routes/admin.py)
    ("GET", "/admin/users"): Spec(P.USERS_MANAGE, page=True, check=check_admin_users),
    ("GET", "/api/admin/users"): Spec(P.USERS_MANAGE, check=check_admin_users),
    ("GET", "/admin/users/{username}"): Spec(P.USERS_MANAGE, page=True, obj="user", check=check_admin_user),
    ("GET", "/api/admin/users/{username}"): Spec(P.USERS_MANAGE, obj="user", check=check_admin_user),
    ("POST", "/admin/users"): Spec(P.USERS_MANAGE, action=True,
                                   body=lambda m, who, t: {"data": _new_user("form", who)}),
    ("POST", "/api/admin/users"): Spec(P.USERS_MANAGE, action=True, ok=201,
                                       body=_json(lambda m, who, t: _new_user("api", who))),
    ("POST", "/admin/users/{username}"): Spec(P.USERS_MANAGE, obj="user", action=True, ok=303,
                                              body=lambda m, who, t: {"data": _user_change(who)}),
    ("POST", "/api/admin/users/{username}"): Spec(P.USERS_MANAGE, obj="user", action=True,
                                                  body=_json(lambda m, who, t: _user_change(who))),
    ("POST", "/admin/users/{username}/disable"): Spec(P.USERS_MANAGE, obj="user", action=True, ok=303),
    ("POST", "/api/admin/users/{username}/disable"): Spec(P.USERS_MANAGE, obj="user", action=True),
    ("POST", "/admin/users/{username}/enable"): Spec(P.USERS_MANAGE, obj="user", action=True, ok=303),
    ("POST", "/api/admin/users/{username}/enable"): Spec(P.USERS_MANAGE, obj="user", action=True),
    # The answer shows the new password (once): a page, not a redirect.
    ("POST", "/admin/users/{username}/reset-password"): Spec(P.USERS_MANAGE, obj="user", action=True),
    ("POST", "/api/admin/users/{username}/reset-password"): Spec(P.USERS_MANAGE, obj="user", action=True),
    ("GET", "/admin/audit"): Spec(P.AUDIT_READ, page=True, params=({"size": 500},), check=check_admin_audit),
    ("GET", "/api/admin/audit"): Spec(P.AUDIT_READ, params=({"size": 500},), check=check_admin_audit),
}
del P
PATH_OBJECT = {"tid": "ticket", "eid": "event", "sid": "search", "username": "user"}


def registered(app: FastAPI) -> dict[tuple[str, str], BaseRoute]:
    out: dict[tuple[str, str], BaseRoute] = {}
    for r in iter_routes(app.routes):
        if isinstance(r, Mount):
            out[("MOUNT", r.path)] = r
            continue
        for method in sorted(getattr(r, "methods", None) or {"?"}):
            if method != "HEAD":
                out[(method, getattr(r, "path", repr(r)))] = r
    return out


# --------------------------------------------------------------------------- expectations


def expected(key: tuple[str, str], spec: Spec, who: Who, t: Target) -> int:
    """The status of one cell, from the permission table and the fixture's places."""
    if spec.access == PUBLIC:
        assert spec.public is not None, key
        return spec.public(who)
    if who.anonymous:
        return 303 if spec.page and key[0] == "GET" else 401
    if spec.access != SIGNED_IN and spec.access not in ROLE_PERMISSIONS[who.role]:  # type: ignore[index]
        return 403
    if any(k not in who.seen for k in t.keys):  # UNKNOWN is nowhere
        return 404
    if spec.owner_or_admin and who.role != Role.ADMIN and OWNER[t.key or ""] != who.name:
        return 403
    return spec.ok


def targets(spec: Spec) -> list[Target]:
    if spec.obj is None:
        return [Target()]
    out = [Target(k) for k in (*(USER_AT if spec.obj == "user" else KEYS), UNKNOWN)]
    out += [Target(src, into=dst) for src, dst in spec.merge_into]
    return out


def fill_ids(m: Matrix, spec: Spec, who: Who, t: Target) -> None:
    """Ids of the archive's objects (refused cells, which must change nothing)."""
    table: dict[str, dict[str, Any]] = {"ticket": m.tickets, "event": m.events, "search": m.searches,
                                        "user": m.users}
    if spec.obj is not None and t.key is not None:
        unknown = UNKNOWN_USER if spec.obj == "user" else UNKNOWN_ID
        t.ids[spec.obj] = unknown if t.key == UNKNOWN else table[spec.obj][t.key]
        t.post_ids = [f"{t.key}-1"]
    if spec.merge_into:
        # Into the named place, else into an event the actor sees (so the source decides).
        home = HOME.get(who.jurisdiction, "province")
        into = t.into or (home if home != t.key else "city")
        t.ids["into"] = m.events[into]


# --------------------------------------------------------------------------- running cells


@dataclass
class Cell:
    key: tuple[str, str]
    spec: Spec
    who: Who
    target: Target
    params: dict[str, Any]
    want: int
    got: int = 0
    response: Response | None = None

    def __str__(self) -> str:
        q = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.key[0]} {self.key[1]}{'?' + q if q else ''} {self.target} as {self.who}"


def _path(key: tuple[str, str], t: Target) -> str:
    if key[0] == "MOUNT":
        return key[1] + "/app.css"
    path = key[1]
    for name in re.findall(r"\{(\w+)\}", path):
        obj = PATH_OBJECT.get(name)
        if obj is None or obj not in t.ids:
            raise AssertionError(f"{key}: no object for path parameter {{{name}}} — add it to PATH_OBJECT")
        path = path.replace(f"{{{name}}}", str(t.ids[obj]))
    return path


def send(m: Matrix, cell: Cell) -> Response:
    key, who = cell.key, cell.who
    body = cell.spec.body(m, who, cell.target) if cell.spec.body else {}
    c = m.client(who)
    path = _path(key, cell.target)
    if key == ("POST", "/api/login"):
        # Not on the actor's own client: the session cookie would stay with it.
        c = TestClient(m.app, headers=dict(c.headers))
    if key == ("POST", "/login"):
        # The sign-in form as a browser sends it: its page first (the form's CSRF cookie), from a fresh client.
        c = TestClient(m.app)
        form = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text[:300]
        name = "visitor" if who.anonymous else who.name
        body = {"data": {"username": name, "password": m.passwords[name], "next": "/",
                         "csrf_token": token.group(1)}}
    method = "GET" if key[0] == "MOUNT" else key[0]
    return c.request(method, path, params=cell.params or None, follow_redirects=False, **body)


def leaks(who: Who, r: Response) -> list[str]:
    """Markers of objects outside ``who``'s scope in a 2xx answer."""
    text = r.text
    if "json" in r.headers.get("content-type", ""):
        text = json.dumps(r.json(), ensure_ascii=False)
    hidden = [k for k in KEYS if k not in who.seen]
    return [f"leaks {mk}" for k in hidden for mk in markers(k) if mk in text]


def judge(m: Matrix, cell: Cell, r: Response) -> list[str]:
    cell.got, cell.response = r.status_code, r
    problems: list[str] = []
    if r.status_code != cell.want:
        problems.append(f"status {r.status_code}, want {cell.want}: {r.text[:160]!r}")
    elif cell.want == 303 and cell.who.anonymous and cell.spec.access != PUBLIC:
        if not r.headers.get("location", "").startswith("/login"):
            problems.append(f"redirect to {r.headers.get('location')!r}, want /login")
    if 200 <= r.status_code < 300:
        problems += leaks(cell.who, r)
        if cell.spec.check and not cell.spec.action and r.status_code == cell.want:
            try:
                problems += cell.spec.check(m, cell.who, cell.target, r)
            except (KeyError, TypeError, ValueError, IndexError) as e:  # an answer not shaped as expected
                problems.append(f"check failed: {type(e).__name__}: {e}")
    return problems


def not_found_alike(cells: list[Cell]) -> list[str]:
    """An object out of scope answers exactly what an unknown id does (the ids taken out)."""
    seen: dict[tuple[Any, ...], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        if c.got == 404 and c.response is not None:
            body = c.response.text
            for i in c.target.ids.values():  # as a word of its own: "工单 5 不存在"
                body = re.sub(rf"(?<=\s){re.escape(str(i))}(?=\s)", "#", body)
            seen[(c.key, c.who.name, tuple(sorted(c.params.items())))][body].append(str(c.target))
    return [f"{k[0][0]} {k[0][1]} as {k[1]}: 404 bodies differ: "
            + "; ".join(f"{targets} → {body[-200:]!r}" for body, targets in v.items())
            for k, v in seen.items() if len(v) > 1]


# Cells known to fail, with why (each is reported; one that passes again fails the test).
KNOWN: dict[str, str] = {}


def report(failures: dict[str, list[str]], total: int) -> None:
    known = {c: p for c, p in failures.items() if any(c.startswith(k) for k in KNOWN)}
    fixed = [k for k in KNOWN if not any(c.startswith(k) for c in failures)]
    real = {c: p for c, p in failures.items() if c not in known}
    lines = [f"{c}: {'; '.join(p)}" for c, p in sorted(real.items())]
    lines += [f"{k}: known gap passes now — take it out of KNOWN" for k in fixed]
    assert not lines, f"{len(lines)} of {total} cells wrong:\n" + "\n".join(lines[:80])
    if known:
        pytest.xfail("; ".join(f"{c} ({KNOWN[next(k for k in KNOWN if c.startswith(k))]})" for c in known))


def _cells(m: Matrix, *, action: bool) -> list[Cell]:
    app_routes = registered(m.app)
    out = []
    for key in app_routes:
        spec = ROUTES.get(key)
        if spec is None or spec.action != action:
            continue
        for who in ACTORS:
            for t in targets(spec):
                fill_ids(m, spec, who, t)
                for params in spec.params:
                    out.append(Cell(key, spec, who, t, dict(params), expected(key, spec, who, t)))
    return out


# --------------------------------------------------------------------------- tests


def test_every_route_is_in_the_matrix(matrix: Matrix) -> None:
    """A new route fails here until ROUTES says who may use it and on what."""
    got = set(registered(matrix.app))
    missing = sorted(got - set(ROUTES))
    stale = sorted(set(ROUTES) - got)
    assert not missing, f"routes missing from tests/test_authz_matrix.py ROUTES (add a Spec): {missing}"
    assert not stale, f"ROUTES names routes the app no longer has: {stale}"
    for key in got:
        for name in re.findall(r"\{(\w+)\}", key[1]):
            assert name in PATH_OBJECT, f"{key}: path parameter {{{name}}} has no object in PATH_OBJECT"


def test_reads(matrix: Matrix) -> None:
    """Every read × every actor × every object: status, no marker from outside, figures of the scope alone."""
    m = matrix
    cells = _cells(m, action=False)
    failures: dict[str, list[str]] = {}
    for cell in cells:
        problems = judge(m, cell, send(m, cell))
        if problems:
            failures[str(cell)] = problems
    for p in not_found_alike(cells):
        failures[p] = ["(bodies)"]
    # Sanity: the matrix holds each kind of answer.
    kinds = Counter(c.want for c in cells)
    assert {200, 303, 401, 403, 404} <= set(kinds), kinds
    report(failures, len(cells))


# --- actions


def _fresh_posts(m: Matrix, key: str, n_posts: int = 1) -> list[AssessedPost]:
    """A story of its own (characters no other post has, so it joins nothing) at ``key``'s place."""
    m.fresh_seq += 1
    base = 0x5000 + 64 * m.fresh_seq
    title = "".join(chr(base + i) for i in range(10))
    text = "".join(chr(base + 10 + i) for i in range(40))
    pl = PLACES[key]
    at = AS_OF - timedelta(hours=3)
    out = []
    for i in range(n_posts):
        # A second report of the same story (so it joins the first and can be split off).
        body = text if i == 0 else text[:-2] + "转述"
        out.append(_post(f"fresh-{m.fresh_seq}-{i}", pl.place, title, body, department(key),
                         at + timedelta(minutes=i)))
    return out


def make_fresh(m: Matrix, cells: list[Cell]) -> None:
    """An object of its own for every action the actor may take, at the same place."""
    msgs: list[AssessedPost] = []
    wanted: list[tuple[Cell, str, list[str]]] = []  # cell, role of the posts, their ids
    for c in cells:
        if not (200 <= c.want < 400) or c.spec.obj is None:  # 303: a form that went through
            continue
        c.target.fresh = True
        if c.spec.obj == "user":
            m.fresh_seq += 1
            name = f"fresh-user-{m.fresh_seq}"
            add_user(m.store, name, Role.DUTY, USER_AT[c.target.key or ""], settings=m.settings)
            if c.key[1].endswith("/enable"):  # something to enable
                accounts.set_active(m.store, CLI_ACTOR, name, False)
            c.target.ids["user"] = name
            continue
        if c.spec.obj == "search":
            owner = CLI_ACTOR if c.target.key == "none" else _user(
                OWNER[c.target.key or ""], Role.ANALYST, OWNER_JURISDICTION[c.target.key or ""])
            c.target.ids["search"] = cases.save_search(m.store, owner, f"待删除-{m.fresh_seq}-{c.who}", {}, now=T0)
            m.fresh_seq += 1
            continue
        posts = _fresh_posts(m, c.target.key or "", 2 if c.key[1].endswith("/split") else 1)
        msgs += posts
        wanted.append((c, "self", [p.post.post_id for p in posts]))
        if c.spec.merge_into or c.key[1].endswith("/merge"):
            into = _fresh_posts(m, c.target.into or c.target.key or "")
            msgs += into
            wanted.append((c, "into", [p.post.post_id for p in into]))
    if not msgs:
        return
    handle_batch(m.store, m.settings, msgs, now=AS_OF - timedelta(hours=2))
    with m.store.reader() as s:
        ev_of = {p.post_id: p.event_id for p in s.scalars(select(Post).where(Post.post_id.like("fresh-%")))}
        ticket_of = {t.event_id: t.id for t in s.scalars(select(Ticket))}
    used: set[int] = set()
    for c, role, pids in wanted:
        eids = {ev_of[p] for p in pids}
        assert len(eids) == 1 and None not in eids, (str(c), pids, eids)
        eid = eids.pop()
        assert eid not in used and eid not in m.events.values(), f"{c}: fresh story joined another event"
        used.add(eid)
        if role == "into":
            c.target.ids["into"] = eid
            continue
        c.target.ids["event" if c.spec.obj == "event" else "ticket"] = eid if c.spec.obj == "event" else ticket_of[eid]
        c.target.post_ids = pids[1:] if len(pids) > 1 else pids
        if c.key[1].endswith("/reopen"):  # something to reopen
            cases.close(m.store, CLI_ACTOR, ticket_of[eid], "false_alarm", now=AS_OF - timedelta(hours=1))
        if c.key[1].endswith("/extend"):  # a clock that may be extended: a suggestion's 7 working days
            clock_rules.change_rule(m.store, CLI_ACTOR, ticket_of[eid], "suggestion", "网民建议",
                                    clocks=clocks_for(m.settings), now=AS_OF - timedelta(hours=1))


def snapshot(m: Matrix) -> dict[str, Any]:
    """The archive's objects as the refused actions must leave them."""
    with m.store.reader() as s:
        tids, eids = list(m.tickets.values()), list(m.events.values())
        return {
            "tickets": [(t.id, t.status, t.department, t.acknowledged_at, t.closed_at) for t in
                        s.scalars(select(Ticket).where(Ticket.id.in_(tids)).order_by(Ticket.id))],
            "events": [(e.id, e.status, e.post_count) for e in
                       s.scalars(select(Event).where(Event.id.in_(eids)).order_by(Event.id))],
            "posts": sorted((p.post_id, p.event_id) for p in s.scalars(select(Post).where(~Post.post_id.like("fresh-%")))),
            "deadlines": [(d.ticket_id, d.milestone, d.met_at, d.met_by) for d in
                          s.scalars(select(Deadline).where(Deadline.ticket_id.in_(tids)).order_by(Deadline.id))],
            "searches": sorted(s.scalars(select(SavedSearch.id).where(SavedSearch.id.in_(list(m.searches.values()))))),
            "users": [(u.username, u.display_name, u.role, u.jurisdiction, u.department, u.active, u.must_change,
                       u.password_hash) for u in s.scalars(select(UserRow).where(
                           UserRow.username.in_(list(m.users.values()))).order_by(UserRow.username))],
        }


def verify_action(m: Matrix, cell: Cell) -> list[str]:
    """What an allowed action did, read back from the store (and who the record says did it)."""
    path, who, ids = cell.key[1], cell.who, cell.target.ids
    if "/admin/users" in path:
        return verify_admin(m, cell)
    with m.store.reader() as s:
        tid = ids.get("ticket")
        t = s.get(Ticket, tid) if tid else None
        acted = (s.scalars(select(Audit.actor).where(Audit.ticket_id == tid)).all() if tid else [])
        if path.startswith("/tickets/") and t is not None:  # a form of the ticket page acts on its event
            ids.setdefault("event", t.event_id)
        if path.endswith(("/extend", "/escalate")):
            action = "deadline_extended" if path.endswith("/extend") else "escalated"
            done = s.scalars(select(Audit.actor).where(Audit.ticket_id == tid, Audit.action == action,
                                                       Audit.outcome == "ok")).all()
            return _eq(action, done, [who.name])
        if path.endswith("/clock-rule"):
            return _eq("rule", t.rule if t else None, "complaint") + _eq("audited", who.name in acted, True)
        if path.endswith(("/milestone", "/candidate")):
            met = s.scalar(select(Deadline.met_by).where(Deadline.ticket_id == tid, Deadline.milestone == "回应"))
            return _eq("met by", met, who.name)
        if path.endswith("/ack"):
            return _eq("acknowledged by", t.acknowledged_by if t else None, who.name) + _eq(
                "audited", who.name in acted, True)
        if path.endswith("/assign"):
            return _eq("department", t.department if t else None, ASSIGNED) + _eq("audited", who.name in acted, True)
        if path.endswith("/close"):
            return _eq("status", t.status if t else None, "closed") + _eq("audited", who.name in acted, True)
        if path.endswith("/reopen"):
            return _eq("status", t.status if t else None, "acknowledged") + _eq("audited", who.name in acted, True)
        if path.endswith("/milestones"):
            met = s.scalar(select(Deadline.met_by).where(Deadline.ticket_id == tid, Deadline.milestone == "回应"))
            return _eq("met by", met, who.name)
        if path.endswith("/merge"):
            src = s.get(Event, ids["event"])
            moved = s.scalars(select(Post.event_id).where(Post.post_id.like("fresh-%"),
                                                          Post.event_id == ids["into"])).all()
            return _eq("source", src.status if src else None, "merged") + _eq("posts moved", len(moved), 2)
        if path.endswith("/split"):
            ev = s.scalar(select(Post.event_id).where(Post.post_id == cell.target.post_ids[0]))
            return _eq("split off", ev != ids["event"] and ev is not None, True)
        if path == "/api/searches" and cell.key[0] == "POST":
            row = s.scalar(select(SavedSearch).where(SavedSearch.name == f"新方案-{who}"))
            return _eq("saved by", (row.created_by, row.jurisdiction) if row else None, (who.name, who.jurisdiction))
        if path == "/schemes":
            row = s.scalar(select(SavedSearch).where(SavedSearch.name == f"表单方案-{who}"))
            return _eq("saved by", (row.created_by, row.jurisdiction, row.params.get("scheme", {}).get("events"))
                       if row else None, (who.name, who.jurisdiction, ["上涨", "涨价"]))
        if cell.key == ("PUT", "/api/searches/{sid}"):
            row = s.get(SavedSearch, ids["search"])
            return _eq("changed", row.params.get("q") if row else None, f"物业 改{who}")
        if cell.key == ("POST", "/schemes/{sid}"):
            row = s.get(SavedSearch, ids["search"])
            return _eq("changed", (row.name, row.params.get("scheme", {}).get("subjects")) if row else None,
                       (f"改名方案-{who}-{cell.target.key}", ["物业"]))
        if cell.key[0] == "DELETE" or path.endswith("/delete"):
            return _eq("deleted", s.get(SavedSearch, ids["search"]), None)
    return []


def verify_admin(m: Matrix, cell: Cell) -> list[str]:
    """A user created or changed by an admin route, and its audit row under the admin."""
    path, who = cell.key[1], cell.who
    name = cell.target.ids.get("user") or f"{'form' if path == '/admin/users' else 'api'}-{who}"
    action = {"disable": "user_disabled", "enable": "user_enabled", "reset-password": "password_reset"}.get(
        path.rsplit("/", 1)[-1], "user_updated" if "user" in cell.target.ids else "user_created")
    with m.store.reader() as s:
        u = s.scalar(select(UserRow).where(UserRow.username == name))
        rows = s.scalars(select(Audit).where(Audit.actor == who.name, Audit.action == action,
                                             Audit.outcome == "ok")).all()
        audited = any(r.detail.get("username") == name and r.actor_jurisdiction == who.jurisdiction for r in rows)
    if u is None:
        return [f"user {name} missing"]
    if action == "user_created":
        got: Any = (u.jurisdiction, u.role, u.display_name, u.must_change)
        want: Any = (who.jurisdiction, "duty", f"新用户{who}", True)
    elif action == "user_updated":
        got, want = (u.display_name, u.role), (f"改名{who}", "analyst")
    elif action == "password_reset":
        got, want = u.must_change, True
    else:
        got, want = u.active, action == "user_enabled"
    return _eq(action, got, want) + _eq("audited under the admin", audited, True)


def test_actions(matrix: Matrix) -> None:
    """Every action × every actor × every object: refused ones (401/403/404) on the
    archive change nothing; allowed ones act, each on an object of its own."""
    m = matrix
    cells = _cells(m, action=True)
    make_fresh(m, cells)
    before = snapshot(m)
    failures: dict[str, list[str]] = {}
    # Refusals first (on the archive), then what is allowed.
    for cell in sorted(cells, key=lambda c: c.want < 400):
        r = send(m, cell)
        problems = judge(m, cell, r)
        if r.status_code == cell.want < 400:
            problems += verify_action(m, cell)
            if cell.key in (("POST", "/api/password"), ("POST", "/password")):
                name = "visitor" if cell.who.anonymous else cell.who.name
                m.passwords[name] = OTHER_PASSWORD if m.passwords[name] == PASSWORD else PASSWORD
        if problems:
            failures[str(cell)] = problems
    for p in not_found_alike(cells):
        failures[p] = ["(bodies)"]
    after = snapshot(m)
    for name in before:
        if before[name] != after[name]:
            failures[f"archive {name} changed by a refused action"] = [f"{before[name]} → {after[name]}"]
    kinds = Counter(c.want for c in cells)
    assert {200, 401, 403, 404} <= set(kinds), kinds
    report(failures, len(cells))


def test_matrix_size(matrix: Matrix) -> None:
    """The matrix covers every route for every actor (and prints its size)."""
    reads, acts = _cells(matrix, action=False), _cells(matrix, action=True)
    routes = {c.key for c in reads + acts}
    assert routes == set(registered(matrix.app)) & set(ROUTES)
    per_route = Counter(c.key for c in reads + acts)
    assert all(n >= len(ACTORS) for n in per_route.values()), per_route
    print(f"authz matrix: {len(routes)} routes x {len(ACTORS)} actors; {len(reads)} read cells, {len(acts)} action cells")
