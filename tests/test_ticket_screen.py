"""The ticket screen holds the whole case (issue 15 part 1): ``/tickets/{id}`` over a real
SQLite store whose tickets the responder made, signed in by session like a browser, every
action through the page's own form (its csrf_token field) and back to the same ticket.

* the page shows the event, severity and its reason, place, responders with their rules,
  every post (source, link, Shanghai time, excerpt), each clock with its due instant for
  the countdown, milestones with their evidence as links, the milestone candidates and the
  audit trail; hostile crawled text is escaped and a ``javascript:`` URL is no link;
* acknowledge, assign (a department configured for the place; 火星市宇宙局 refused),
  record a milestone (evidence required), escalate (a notice in the outbox), close with
  an outcome of the list, reopen, split by checkbox — each answers 303 to this ticket;
* a working-day clock of the suggestion rule extends once (7 → 15 working days), no other;
* a 合肥 officer cannot merge a 阜阳 event (404, as unknown); a province officer can, after
  a confirmation that names both places;
* confirming a candidate records its link as evidence and its publication time as the
  time met, on time by that time in ``report timeliness``; ``met_at`` may be neither in
  the future nor before T0.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from responder import cases, clock_rules, report
from responder.permissions import Actor, Role
from responder.service import clocks_for, handle_batch
from responder.store import Audit, Deadline, Event, Outbox, Post, Store, Ticket
from tests.fixtures.auth import CSRF_HEADER, client_as
from tests.fixtures.databases import assessed, sh
from web.app import create_app

T0 = sh(2026, 11, 2, 9, 0)
NOW = T0 + timedelta(hours=3)
RELEASE = "https://gov.test/baohe/fire-notice.html"
HOSTILE_TITLE = '<script>alert("x")</script>火灾现场<img src=x onerror=alert(1)>'


def _with_url(ap, url: str):
    return ap.model_copy(update={"post": ap.post.model_copy(update={"url": url})})


@pytest.fixture
def case(tmp_path, settings):
    """A 重大 fire in 包河区 (with an official release and a hostile repost), a fee complaint in
    蜀山区, a subway story in 合肥市 and a wage complaint in 阜阳 颍州区."""
    store = Store(f"sqlite:///{tmp_path / 'screen.db'}")
    fire = dict(severity="重大", is_emergency=True, event_type="事故灾难", event_subtype="火灾", place="包河区",
                department="应急管理局", severity_reason="死亡12人，达到重大事故标准")
    posts = [
        assessed("fire", title="包河区居民楼火灾致12人死亡", text="合肥市包河区一居民楼火灾已造成12人死亡，多人受伤送医。",
                 published_at=T0, source_name="合肥新闻网", **fire),
        _with_url(assessed("fire-js", title=HOSTILE_TITLE, text="包河区居民楼火灾致12人死亡，现场视频<b>流传</b>。",
                           published_at=T0 + timedelta(minutes=20), source_kind="forum", source_name="某论坛",
                           **fire), "javascript:alert(1)"),
        _with_url(assessed("fire-gov", title="关于包河区居民楼火灾致12人死亡的情况通报",
                           text="合肥市包河区居民楼火灾已造成12人死亡，伤者正在救治，原因正在调查。",
                           published_at=T0 + timedelta(hours=2), source_kind="official", source_name="包河区人民政府",
                           **fire), RELEASE),
        assessed("fee", title="蜀山区翡翠湖畔小区物业费上涨", text="物业费由每平方米1.2元上涨至2.3元，业主质疑程序。",
                 published_at=T0 + timedelta(minutes=5), place="蜀山区"),
        assessed("fee-2", title="翡翠湖畔小区业主质疑物业费上涨程序", text="蜀山区翡翠湖畔小区物业费上涨至2.3元，业主称未开业主大会。",
                 published_at=T0 + timedelta(minutes=30), place="蜀山区"),
        assessed("subway", title="合肥地铁4号线早高峰故障停运", text="合肥地铁4号线早高峰突发故障，多站停运，乘客滞留。",
                 published_at=T0 + timedelta(minutes=10), place="合肥市", department="交通运输局"),
        assessed("wage", title="阜阳颍州区工地农民工讨薪", text="阜阳市颍州区某工地数十名农民工被拖欠工资半年，讨薪无果。",
                 published_at=T0 + timedelta(minutes=15), place="颍州区", department="人力资源和社会保障局"),
    ]
    handle_batch(store, settings, posts, now=T0 + timedelta(hours=2, minutes=5))
    with store.reader() as s:
        ids = {p.post_id: s.scalar(select(Ticket.id).where(Ticket.event_id == p.event_id))
               for p in s.scalars(select(Post))}
    assert len({ids["fire"], ids["fire-js"], ids["fire-gov"]}) == 1, ids
    assert ids["fee"] == ids["fee-2"] and len(set(ids.values())) == 4, ids
    app = create_app(settings, store=store, now=lambda: NOW)
    yield store, app, ids
    store.close()


def _session(app, name: str = "值班员甲", role: Role = Role.DUTY, jurisdiction: str = "") -> TestClient:
    c = client_as(app, name, role, jurisdiction, via="session")
    del c.headers[CSRF_HEADER]  # forms carry the token in their own field, as a browser sends them
    return c


def _form(c: TestClient, tid: int, action: str, data: dict | list | None = None, *, page: str | None = None):
    """Post the ticket page's form ``action`` with the csrf_token the page holds."""
    html = page if page is not None else c.get(f"/tickets/{tid}").text
    assert f'action="/tickets/{tid}/{action}"' in html, f"no {action} form on the page"
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    body = list(data.items()) if isinstance(data, dict) else list(data or [])
    return c.post(f"/tickets/{tid}/{action}", content=urlencode([("csrf_token", token), *body]),
                  headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)


def _back(r, tid: int, done: str) -> None:
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"/tickets/{tid}?done={done}"), r.headers["location"]


def _actor(name: str, jurisdiction: str = "") -> Actor:
    return Actor(username=name, display_name=name, role=Role.DUTY, jurisdiction=jurisdiction, remote_addr="10.0.0.9")


def test_the_page_holds_the_whole_case(case) -> None:
    store, app, ids = case
    tid = ids["fire"]
    c = _session(app)
    html = c.get(f"/tickets/{tid}").text
    for text in ("包河区居民楼火灾致12人死亡", "死亡12人，达到重大事故标准", "安徽省合肥市包河区", "牵头回应",
                 "属地管理：事发地政府主管部门", "合肥新闻网", "包河区人民政府", "某论坛",
                 "权威信息发布", "新闻发布会", "2026-11-02 14:00", "2026-11-02 09:00", "处理记录", "新建工单"):
        assert text in html, text
    # Every post, with its link and excerpt; times in Asia/Shanghai.
    assert html.count('class="post"') == 3
    assert f'href="{RELEASE}"' in html and "伤者正在救治" in html
    # Countdowns from the due instant with its offset (ticket.js), no inline script.
    assert 'class="countdown" data-due="2026-11-02T14:00:00+08:00"' in html
    assert '<script src="/static/ticket.js"></script>' in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "style=" not in html and "onclick" not in html
    # The candidate: the official release, with a one-click confirm per open milestone.
    cand = re.search(r'<tr class="candidate" data-post="fire-gov">.*?</tr>', html, re.S).group(0)
    assert "包河区人民政府" in cand and "2026-11-02 11:00" in cand and "确认「权威信息发布」已完成" in cand
    assert "（按时）" in cand
    # The actions this duty officer may take, as forms on the page.
    for action in ("ack", "assign", "milestone", "escalate", "close", "merge", "split", "candidate"):
        assert f'action="/tickets/{tid}/{action}"' in html, action
    assert f'action="/tickets/{tid}/reopen"' not in html  # open: nothing to reopen
    assert "包河区应急管理局" in re.search(r'<select name="department".*?</select>', html, re.S).group(0)
    # The close form says which clocks are still open and what closing does to them.
    note = re.search(r'<p class="muted close-open-milestones">(.*?)</p>', html, re.S).group(1)
    assert "尚未完成：权威信息发布、新闻发布会" in note and "撤销" in note and "照常计时" in note
    # The board's layout is gone from the ticket page.
    assert "tickets-root" not in html
    # js is served
    js = c.get("/static/ticket.js").text
    assert "setInterval(tick, 1000)" in js and "merge-targets" in js and "Date.parse(el.dataset.due)" in js


def test_hostile_crawled_text_is_escaped_and_a_javascript_url_is_no_link(case) -> None:
    _, app, ids = case
    html = _session(app).get(f"/tickets/{ids['fire']}").text
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>流传</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;火灾现场" in html
    assert "&lt;b&gt;流传&lt;/b&gt;" in html
    assert 'href="javascript:' not in html
    row = re.search(r'<tr class="post" data-post="fire-js">.*?</tr>', html, re.S).group(0)
    assert "<a " not in row and "非网页链接：javascript:alert(1)" in row


def test_each_action_through_its_form_comes_back_to_the_ticket(case) -> None:
    store, app, ids = case
    tid = ids["fire"]
    c = _session(app, "值班员甲")
    _back(_form(c, tid, "ack"), tid, "ack")
    page = c.get(f"/tickets/{tid}?done=ack").text
    assert "已确认接收" in page and "值班员甲" in page and f'action="/tickets/{tid}/ack"' not in page
    _back(_form(c, tid, "assign", {"department": "包河区应急管理局"}), tid, "assign")
    _back(_form(c, tid, "milestone", {"milestone": "权威信息发布", "evidence_url": "https://gov.test/fabu/1.html"}),
          tid, "milestone")
    _back(_form(c, tid, "escalate", {"reason": "伤亡人数上升，请办公厅督促"}), tid, "escalate")
    page = c.get(f"/tickets/{tid}").text
    assert 'href="https://gov.test/fabu/1.html"' in page and "按时完成" in page
    assert '<td class="department">包河区应急管理局</td>' in page
    assert "人工督办" in page and "伤亡人数上升，请办公厅督促" in page
    # No evidence, no milestone: the page again with the Chinese reason, nothing recorded.
    r = _form(c, tid, "milestone", {"milestone": "新闻发布会", "evidence_url": "javascript:alert(1)"})
    assert r.status_code == 422 and "只接受以 http:// 或 https:// 开头" in r.text and 'id="ticket"' in r.text
    _back(_form(c, tid, "close", {"outcome": "responded", "note": "已发布通报"}), tid, "close")
    page = c.get(f"/tickets/{tid}").text
    assert "已办结" in page and "已回应办结" in page
    # Closed: no acknowledge, assign, milestone or close form; reopen instead.
    for action in ("assign", "milestone", "close", "escalate", "merge", "split"):
        assert f'action="/tickets/{tid}/{action}"' not in page, action
    _back(_form(c, tid, "reopen", {"reason": "网民继续反映"}, page=page), tid, "reopen")
    with store.reader() as s:
        t = s.get(Ticket, tid)
        assert (t.status, t.department, t.acknowledged_by) == ("acknowledged", "包河区应急管理局", "值班员甲")
        acts = [(a.action, a.actor) for a in s.scalars(select(Audit).where(
            Audit.ticket_id == tid, Audit.outcome == "ok", Audit.actor != "system").order_by(Audit.id))]
        assert acts == [("acknowledged", "值班员甲"), ("assigned", "值班员甲"), ("milestone", "值班员甲"),
                        ("escalated", "值班员甲"), ("closed", "值班员甲"), ("reopened", "值班员甲")]
        notice = s.scalar(select(Outbox).where(Outbox.ticket_id == tid, Outbox.kind == "escalated"))
        detail = notice.payload["detail"]
        assert detail["escalate_to"] == ["本级政府办公厅", "宣传部门"]
        assert detail["reason"] == "伤亡人数上升，请办公厅督促"
    # Split by checkbox: the fee complaint's second post becomes a ticket of its own.
    fee = ids["fee"]
    r = _form(c, fee, "split", [("post_ids", "fee-2"), ("reason", "不是同一件事")])
    _back(r, fee, "split")
    new = int(re.search(r"new=(\d+)", r.headers["location"]).group(1))
    assert f'href="/tickets/{new}"' in c.get(r.headers["location"]).text
    with store.reader() as s:
        assert s.scalar(select(Post.event_id).where(Post.post_id == "fee-2")) == s.get(Ticket, new).event_id


def test_a_department_must_be_one_configured_for_the_place(case) -> None:
    store, app, ids = case
    tid = ids["fee"]
    c = _session(app)
    r = _form(c, tid, "assign", {"department": "火星市宇宙局"})
    assert r.status_code == 422 and "火星市宇宙局" in r.text and "已配置的部门" in r.text
    api = client_as(app, "值班员乙")
    r = api.post(f"/api/tickets/{tid}/assign", json={"department": "火星市宇宙局"})
    assert r.status_code == 422 and "已配置的部门" in r.json()["detail"]
    with pytest.raises(cases.Invalid):
        cases.assign(store, _actor("命令行"), tid, "火星市宇宙局", now=NOW)
    with store.reader() as s:
        assert s.get(Ticket, tid).department == "住房和城乡建设局"
        failed = s.scalars(select(Audit).where(Audit.action == "assigned", Audit.outcome == "failed")).all()
        assert len(failed) == 3
    assert api.post(f"/api/tickets/{tid}/assign", json={"department": "蜀山区城市管理局"}).status_code == 200


def test_a_suggestion_clock_extends_once_and_no_other(case) -> None:
    store, app, ids = case
    tid = ids["fee"]
    clocks = clocks_for(app.state.settings)
    clock_rules.change_rule(store, _actor("值班员甲"), tid, "suggestion", "网民建议，经留言板提交",
                            clocks=clocks, now=NOW)
    c = _session(app)
    page = c.get(f"/tickets/{tid}").text
    with store.reader() as s:
        d = s.scalar(select(Deadline).where(Deadline.ticket_id == tid, Deadline.milestone == "反馈处理意见"))
        seven = d.due_at
    assert seven == clocks.due(clocks.milestone("suggestion", "反馈处理意见"), d.starts_at)
    fifteen = clocks.extended_deadline("suggestion", "反馈处理意见", d.starts_at)
    assert fifteen > seven and f'action="/tickets/{tid}/extend"' in page
    r = _form(c, tid, "extend", {"milestone": "反馈处理意见", "reason": ""}, page=page)
    assert r.status_code == 422 and "延长时限须填写理由" in r.text
    _back(_form(c, tid, "extend", {"milestone": "反馈处理意见", "reason": "涉及多部门会商"}), tid, "extend")
    with store.reader() as s:
        d = s.scalar(select(Deadline).where(Deadline.ticket_id == tid, Deadline.milestone == "反馈处理意见"))
        assert d.due_at == fifteen
        row = s.scalar(select(Audit).where(Audit.action == "deadline_extended", Audit.outcome == "ok"))
        assert (row.actor, row.detail["reason"], row.detail["working_days"]) == ("值班员甲", "涉及多部门会商", 15)
    page = c.get(f"/tickets/{tid}").text
    assert f'action="/tickets/{tid}/extend"' not in page  # once only
    api = client_as(app, "值班员乙")
    again = api.post(f"/api/tickets/{tid}/extend", json={"milestone": "反馈处理意见", "reason": "再延"})
    assert again.status_code == 409 and "只能延长一次" in again.json()["detail"]
    # A 5-hour emergency clock has no extension.
    other = api.post(f"/api/tickets/{ids['fire']}/extend", json={"milestone": "权威信息发布", "reason": "来不及"})
    assert other.status_code == 422 and "不允许延长" in other.json()["detail"]
    fire = ids["fire"]
    assert f'action="/tickets/{fire}/extend"' not in c.get(f"/tickets/{fire}").text


def test_a_merge_across_jurisdictions_needs_both_in_scope_and_a_confirmation(case) -> None:
    store, app, ids = case
    wage, subway = ids["wage"], ids["subway"]
    with store.reader() as s:
        wage_e, subway_e = (s.get(Ticket, t).event_id for t in (wage, subway))
    # A 合肥 (3401) officer: the 阜阳 event is unknown to him, by page, API and picker alike.
    hefei = client_as(app, "合肥值班员", Role.DUTY, "3401")
    assert hefei.get(f"/tickets/{wage}").status_code == 404
    r = hefei.post(f"/api/events/{wage_e}/merge", json={"into": subway_e, "confirm_places": True})
    assert r.status_code == 404
    assert hefei.post(f"/api/events/{subway_e}/merge", json={"into": wage_e, "confirm_places": True}).status_code == 404
    assert hefei.get(f"/api/events/{wage_e}/merge-targets", params={"q": "地铁"}).status_code == 404
    assert [e["title"] for e in hefei.get(f"/api/events/{subway_e}/merge-targets",
                                          params={"q": "讨薪"}).json()["events"]] == []
    # A province officer: the picker finds the 合肥 event and says the merge crosses places.
    prov = _session(app, "省值班员", Role.DUTY, "34")
    found = client_as(app, "省值班员二", Role.DUTY, "34").get(f"/api/events/{wage_e}/merge-targets",
                                                             params={"q": "地铁 4号线"}).json()["events"]
    assert [(e["ticket_id"], e["cross"]) for e in found] == [(subway, True)]
    assert "阜阳" in found[0]["confirm"] and "合肥" in found[0]["confirm"]
    page = prov.get(f"/tickets/{wage}", params={"merge_q": "地铁"}).text
    assert f'name="into" value="{subway}"' in page and "跨属地" in page
    # Without the confirmation: refused, the page asks naming both places; nothing merged.
    r = _form(prov, wage, "merge", {"into": str(subway), "confirm_places": "0"}, page=page)
    assert r.status_code == 422 and "阜阳市" in r.text and "合肥市" in r.text and "确认跨属地合并" in r.text
    with store.reader() as s:
        assert s.get(Event, wage_e).status == "open"
    _back(_form(prov, wage, "merge", {"into": str(subway), "confirm_places": "1"}, page=r.text), wage, "merge")
    with store.reader() as s:
        assert s.get(Event, wage_e).status == "merged" and s.get(Ticket, wage).outcome == "merged"
        row = s.scalar(select(Audit).where(Audit.action == "event_merged", Audit.outcome == "ok"))
        assert row.actor == "省值班员" and row.detail["places"]["cross"] and row.detail["places"]["confirmed"]
    page = prov.get(f"/tickets/{wage}").text
    assert f'href="/tickets/{subway}"' in page and "已合并" in page


def test_confirming_a_candidate_uses_its_link_and_publication_time(case, settings) -> None:
    store, app, ids = case
    tid = ids["fire"]
    c = _session(app, "值班员丙")
    r = _form(c, tid, "candidate", {"post_id": "fire-gov", "milestone": "权威信息发布"})
    _back(r, tid, "candidate")
    with store.reader() as s:
        d = s.scalar(select(Deadline).where(Deadline.ticket_id == tid, Deadline.milestone == "权威信息发布"))
        assert (d.met_at, d.evidence_url, d.met_by) == (T0 + timedelta(hours=2), RELEASE, "值班员丙")
        row = s.scalar(select(Audit).where(Audit.action == "milestone", Audit.outcome == "ok"))
        assert row.detail["met_at"] == "2026-11-02T11:00:00+08:00" and row.detail["on_time"] is True
        assert row.detail["recorded_at"] == "2026-11-02T12:00:00+08:00" and row.detail["post_id"] == "fire-gov"
    page = c.get(f"/tickets/{tid}").text
    assert "按时完成" in page and f'href="{RELEASE}"' in page
    # The report counts it on time, by the publication time.
    rep = report.timeliness(store, T0.date(), T0.date(), as_of=NOW + timedelta(days=1), actor=_actor("审计", ""))
    rows = [r for r in rep.rows if r.milestone == "权威信息发布"]
    assert rows and {(r.met, r.on_time, r.breaches) for r in rows} == {(1, 1, 0)}  # its department and the total
    # A post of another event is no evidence for this ticket.
    r = _form(c, tid, "candidate", {"post_id": "wage", "milestone": "新闻发布会"})
    assert r.status_code == 422 and "不属于工单" in r.text


def test_met_at_is_neither_in_the_future_nor_before_t0(case) -> None:
    store, app, ids = case
    tid = ids["fire"]
    clocks = clocks_for(app.state.settings)
    for when, words in ((NOW + timedelta(minutes=1), "晚于当前时间"), (T0 - timedelta(minutes=1), "早于事件首发时间")):
        with pytest.raises(cases.Invalid) as e:
            cases.record_milestone(store, _actor("值班员"), tid, "权威信息发布", clocks=clocks,
                                   evidence_url=RELEASE, met_at=when, now=NOW)
        assert words in e.value.message
    # Late by met_at: due 14:00, met at 14:30 (recorded later still).
    later = T0 + timedelta(hours=6)
    out = cases.record_milestone(store, _actor("值班员"), tid, "权威信息发布", clocks=clocks, evidence_url=RELEASE,
                                 met_at=T0 + timedelta(hours=5, minutes=30), now=later)
    d = next(x for x in out.ticket["deadlines"] if x["milestone"] == "权威信息发布")
    assert d["on_time"] is False and d["met_at"] == "2026-11-02T14:30:00+08:00"
    api = client_as(app)
    r = api.post(f"/api/tickets/{tid}/milestones",
                 json={"milestone": "新闻发布会", "evidence_url": RELEASE, "met_at": "2026-11-02T10:00:00+08:00"})
    assert r.status_code == 200
    d = next(x for x in r.json()["ticket"]["deadlines"] if x["milestone"] == "新闻发布会")
    assert d["met_at"] == "2026-11-02T10:00:00+08:00" and d["on_time"] is True


def test_the_clock_rule_changes_on_the_page_with_a_reason(case) -> None:
    store, app, ids = case
    tid = ids["fee"]
    c = _session(app)
    page = c.get(f"/tickets/{tid}").text
    assert '<option value="response_48h" selected>' in page and '<option value="complaint">' in page
    r = _form(c, tid, "clock-rule", {"rule": "complaint", "reason": ""}, page=page)
    assert r.status_code == 422 and "更改时限规则须填写理由" in r.text
    _back(_form(c, tid, "clock-rule", {"rule": "complaint", "reason": "网民经留言板投诉"}), tid, "rule")
    page = c.get(f"/tickets/{tid}?done=rule").text
    assert "已更改时限规则" in page and "答复" in page and "网民经留言板投诉" in page
    with store.reader() as s:
        assert s.get(Ticket, tid).rule == "complaint"


def test_a_hand_escalation_goes_where_a_breach_would(settings) -> None:
    from responder.notify.config import load_notify
    from responder.notify.router import plan_route

    cfg = load_notify(settings.config_dir)
    assert cfg is not None
    assert cfg.escalation.deadline_breached and not cfg.escalation.escalated
    for code, sev in (("340104", "重大"), ("3401", "特别重大"), (None, "一般")):
        hand = plan_route(cfg, "escalated", place_code=code, department="蜀山区住房和城乡建设局", severity=sev)
        breach = plan_route(cfg, "deadline_breached", place_code=code, department="蜀山区住房和城乡建设局",
                            severity=sev)
        assert [t.recipient.name for t in hand.targets] == [t.recipient.name for t in breach.targets]
        assert hand.targets and not hand.missing
