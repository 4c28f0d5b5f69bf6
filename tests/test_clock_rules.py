"""Clock rules as SPEC §5 says (issue 15 part 3).

* Which clock: posts written for these tests — message-board suggestions,
  complaints and questions, forum and Weibo posts, news complaints, 重大 and
  较大 emergencies — go through the Assessor (the rules alone) and the
  responder, and each ticket gets the rule SPEC §5 names, with its reason.
* 政务动态: government work announcements (常务会议, 新增公交线路, 政务服务中心
  “周末不打烊”) are archived with no clock; complaints and questions about the
  same matters (a 公交线路 that detours, a new line that never opens) are not.
* A duty officer changes the rule with a reason: audited, deadlines recomputed
  from T0, refused on a closed ticket, for an unknown rule or without a reason,
  and invisible (404) outside the officer's jurisdiction; also through the API.
* A bad ``when`` in clocks.yaml stops ``yuqing check-config`` naming file, line
  and field.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from classifiers.assess import Assessor
from responder import cases
from responder.clock_rules import change_rule
from responder.clocks import load_clocks
from responder.permissions import Actor, Role
from responder.service import handle_batch
from responder.store import Audit, Deadline, Event, Store, Ticket
from stream.contracts import AssessedPost, RawPost
from tests.fixtures.databases import sh
from yuqing.configfile import ConfigError
from yuqing.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
T0 = sh(2026, 11, 2, 9, 0)  # a Monday

# --------------------------------------------------------------------------- posts

SUGGESTION_BOARD = (
    "gov_board", "建议在蜀山区翡翠湖片区增设公交站点",
    "尊敬的领导：翡翠湖片区几个新小区入住率越来越高，但离最近的公交站要走二十分钟。"
    "建议在翡翠路与玉兰大道交口增设一个公交站点，方便居民出行。",
)
COMPLAINT_BOARD = (
    "gov_board", "蜀山区某小区物业私自上调停车费",
    "小区物业未经业主大会同意，把地面停车费从每月150元涨到300元，业主多次找物业协商无果，"
    "投诉到街道也没有回音，请有关部门依法查处。",
)
QUESTION_BOARD = (
    "gov_board", "咨询合肥市新生儿医保办理流程",
    "请问在合肥市给新生儿办理城乡居民医保需要哪些材料？可以在网上办理吗？",
)
SUGGESTION_FORUM = (
    "forum", "建议合肥地铁4号线早高峰加密班次",
    "每天早上七点半到八点半，4号线几个换乘站根本挤不上去，经常要等两三趟车。建议早高峰加开区间车。",
)
COMPLAINT_NEWS = (
    "news", "合肥蜀山区一小区停水三天 居民生活受影响",
    "记者从居民处了解到，蜀山区翡翠湖小区自本周一起连续停水三天，物业称是市政管道问题，"
    "供水公司电话一直占线，不少居民只能到超市买桶装水。",
)
COMPLAINT_WEIBO = (
    "weibo", "",
    "合肥蜀山区这边的路灯坏了快一个月了，晚上黑漆漆一片，前几天还有人骑电动车摔了，到底有没有人管？",
)
MAJOR_NEWS = (
    "news", "蜀山区一化工厂发生爆炸 已造成12人死亡",
    "今天上午，合肥市蜀山区一化工厂发生爆炸，截至目前已造成12人死亡、8人受伤，事故原因正在调查。",
)
LARGER_NEWS = (
    "news", "包河区一居民楼发生火灾 造成3人死亡",
    "今天凌晨，合肥市包河区一居民楼发生火灾，消防救援人员迅速赶到扑救，火灾造成3人死亡。",
)

ANNOUNCEMENTS = {
    "meeting": (
        "news", "蜀山区政府召开常务会议 研究部署冬季供暖保障等工作",
        "12月1日，蜀山区政府召开常务会议，研究部署冬季供暖保障、安全生产等工作。"
        "会议指出，岁末年初是安全生产事故易发多发期，要坚决遏制重特大事故发生。"
        "会议要求，要畅通供暖投诉渠道，确保群众温暖过冬。",
    ),
    "bus": (
        "news", "合肥新增5条公交线路 下月起运行",
        "为方便市民出行，合肥市将于下月1日起新开通5条公交线路，覆盖高新区、经开区多个新建小区，票价统一为2元。",
    ),
    "weekend": (
        "news", "包河区政务服务中心推出“周末不打烊”服务",
        "包河区政务服务中心自本周起在周六上午开放社保、公积金、户籍等窗口，方便上班族办事。",
    ),
}
# The same matters, as complaints and questions: never archived.
NOT_ANNOUNCEMENTS = {
    "detour": (
        "news", "合肥新开通的公交线路绕路严重 居民吐槽",
        "合肥上月新开通的几条公交线路在小区之间来回绕行，单程要一个多小时，不少居民吐槽不如打车。",
    ),
    "never": (
        "news", "新增公交线路为何迟迟不开通",
        "去年公示新增的两条公交线路，说好年底开通，到现在站牌都没有立起来。",
    ),
    "cut": (
        "forum", "公交线路调整后我们小区没车了",
        "公交线路调整以后，我们小区门口的两路车都取消了，老人去医院要走半小时。",
    ),
    "board": (
        "gov_board", "新增的公交线路什么时候开通",
        "去年公示的新增公交线路至今没有消息，想了解一下开通时间。",
    ),
    "meeting-problem": (
        "news", "蜀山区召开专题会议",
        "蜀山区召开专题会议，研究翡翠湖小区连续停水问题。",
    ),
}


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    # the rules alone (needs_response, the handling type and emergencies do not use the topic model)
    return Assessor(Settings(data_dir=str(tmp_path_factory.mktemp("var")), config_dir=ROOT / "config"),
                    use_model=False)


@pytest.fixture(scope="module")
def clocks():
    return load_clocks(ROOT / "config")


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'clocks.db'}")
    yield s
    s.close()


def _post(assessor: Assessor, pid: str, post: tuple[str, str, str], *, at=T0) -> AssessedPost:
    kind, title, text = post
    raw = RawPost.model_validate({
        "schema": "raw_post", "post_id": pid, "source_id": f"test-{kind}", "source_kind": kind,
        "source_name": f"测试{kind}", "url": f"https://example.test/{pid}", "title": title, "text": text,
        "published_at": at.isoformat(), "fetched_at": (at + timedelta(minutes=5)).isoformat(),
        "source_region": "340104",
    })
    return AssessedPost.model_validate({"schema": "assessed_post", "post": raw.model_dump(by_alias=True),
                                        "assessment": assessor.assess(raw).model_dump(),
                                        "assessed_at": raw.fetched_at.isoformat()})


def _ticket(store: Store, pid: str) -> Ticket:
    with store.reader() as s:
        ev = s.scalars(select(Event).where(Event.t0_post_id == pid)).one()
        return s.scalars(select(Ticket).where(Ticket.event_id == ev.id)).one()


def _deadlines(store: Store, tid: int) -> dict[str, object]:
    with store.reader() as s:
        return {d.milestone: d.due_at for d in s.scalars(select(Deadline).where(Deadline.ticket_id == tid))}


def _duty(name: str = "值班员甲", jurisdiction: str = "34") -> Actor:
    return Actor(username=name, display_name=name, role=Role.DUTY, jurisdiction=jurisdiction, remote_addr="10.0.0.9")


# --------------------------------------------------------------------------- which clock


@pytest.mark.parametrize(
    ("post", "rule", "milestones", "reason_has"),
    [
        (SUGGESTION_BOARD, "suggestion", {"反馈处理意见": sh(2026, 11, 11, 23, 59, 59)},
         ["来源为政府留言板/问政平台", "处置类型为建设性意见建议", "7个工作日", "可延长至15个工作日"]),
        (COMPLAINT_BOARD, "complaint", {"答复": sh(2026, 11, 23, 23, 59, 59)},
         ["来源为政府留言板/问政平台", "非建设性意见建议", "咨询投诉", "15个工作日"]),
        (QUESTION_BOARD, "complaint", {"答复": sh(2026, 11, 23, 23, 59, 59)},
         ["处置类型为模糊认识", "咨询投诉"]),
        # a suggestion on a forum is not one sent to the government: 48 hours
        (SUGGESTION_FORUM, "response_48h", {"回应": T0 + timedelta(hours=48)},
         ["来源为论坛，非政府留言板/问政平台", "48小时内回应"]),
        (COMPLAINT_NEWS, "response_48h", {"回应": T0 + timedelta(hours=48)}, ["来源为新闻网站"]),
        (COMPLAINT_WEIBO, "response_48h", {"回应": T0 + timedelta(hours=48)}, ["来源为微博"]),
        (MAJOR_NEWS, "major_emergency",
         {"权威信息发布": T0 + timedelta(hours=5), "新闻发布会": T0 + timedelta(hours=24)},
         ["突发事件", "等级重大", "5小时内权威信息发布"]),
        # 较大 is no 重大: 48 hours, and the reason says why
        (LARGER_NEWS, "response_48h", {"回应": T0 + timedelta(hours=48)}, ["等级较大，非特别重大/重大"]),
    ],
)
def test_each_post_gets_the_clock_spec_5_names(assessor, store, settings, post, rule, milestones,
                                                reason_has) -> None:
    handle_batch(store, settings, [_post(assessor, "p1", post)], now=T0 + timedelta(minutes=10))
    t = _ticket(store, "p1")
    assert t.rule == rule, t.rule_reason
    for words in reason_has:
        assert words in t.rule_reason, t.rule_reason
    assert _deadlines(store, t.id) == milestones


def test_the_ticket_api_shows_the_rule_and_its_reason(assessor, store, settings) -> None:
    from tests.fixtures.auth import client_as
    from web.app import create_app

    handle_batch(store, settings, [_post(assessor, "s", SUGGESTION_BOARD)], now=T0 + timedelta(minutes=10))
    tid = _ticket(store, "s").id
    with client_as(create_app(settings, store=store, now=lambda: T0 + timedelta(hours=1))) as c:
        body = c.get(f"/api/tickets/{tid}").json()
        page = c.get(f"/tickets/{tid}").text
    assert body["clock_rule"] == "suggestion" and body["rule_label"].startswith("网民意见建议")
    assert body["clock_reason"].startswith("来源为政府留言板/问政平台；处置类型为建设性意见建议")
    assert "来源为政府留言板/问政平台；处置类型为建设性意见建议" in page


# --------------------------------------------------------------------------- 政务动态


@pytest.mark.parametrize("key", sorted(ANNOUNCEMENTS))
def test_work_announcements_are_archived_without_a_clock(assessor, clocks, store, settings, key) -> None:
    ap = _post(assessor, key, ANNOUNCEMENTS[key])
    a = ap.assessment
    assert a.relevant and not a.needs_response and a.handling_reason.startswith("政务动态"), a.handling_reason
    assert clocks.decide(a, ap.post.source_kind) == (None, a.handling_reason)
    handle_batch(store, settings, [ap], now=T0 + timedelta(minutes=10))
    t = _ticket(store, key)
    assert (t.status, t.rule) == ("closed", "none") and t.rule_reason.startswith("政务动态")
    assert _deadlines(store, t.id) == {}


@pytest.mark.parametrize("key", sorted(NOT_ANNOUNCEMENTS))
def test_complaints_about_the_same_matters_are_not_archived(assessor, store, settings, key) -> None:
    ap = _post(assessor, key, NOT_ANNOUNCEMENTS[key])
    assert ap.assessment.relevant and ap.assessment.needs_response, ap.assessment.handling_reason
    handle_batch(store, settings, [ap], now=T0 + timedelta(minutes=10))
    t = _ticket(store, key)
    assert t.status == "new" and t.rule in ("response_48h", "complaint", "suggestion")
    assert _deadlines(store, t.id)


# --------------------------------------------------------------------------- a duty officer changes it


def _open_news_complaint(assessor, store, settings) -> int:
    handle_batch(store, settings, [_post(assessor, "n", COMPLAINT_NEWS)], now=T0 + timedelta(minutes=10))
    t = _ticket(store, "n")
    assert t.rule == "response_48h"
    return t.id


def test_officer_changes_the_rule_with_a_reason_and_deadlines_follow_t0(assessor, clocks, store, settings) -> None:
    tid = _open_news_complaint(assessor, store, settings)
    at = T0 + timedelta(hours=50)  # the 48-hour 回应 is already past due
    why = "该帖转载自市民在问政平台的投诉，应按咨询投诉答复"
    out = change_rule(store, _duty(), tid, "complaint", why, clocks=clocks, now=at)
    assert not out.already
    assert out.ticket["clock_rule"] == "complaint"
    assert out.ticket["clock_reason"] == (f"值班员甲 于 2026-11-04 11:00 由「需回应的政务舆情」改为「咨询投诉」，理由：{why}")
    # recomputed from T0 (Mon 2 Nov 09:00), not from the change
    assert _deadlines(store, tid) == {"答复": sh(2026, 11, 23, 23, 59, 59)}
    with store.reader() as s:
        row = s.scalars(select(Audit).where(Audit.action == "clock_rule_changed")).one()
    assert (row.actor, row.outcome, row.ticket_id, row.place_code) == ("值班员甲", "ok", tid, "340104")
    d = row.detail
    assert (d["from"], d["to"], d["reason"], d["t0"]) == ("response_48h", "complaint", why, "2026-11-02T09:00:00+08:00")
    assert d["deadlines_removed"] == [{"milestone": "回应", "starts_at": "2026-11-02T09:00:00+08:00",
                                       "due_at": "2026-11-04T09:00:00+08:00", "overdue": True,
                                       "rule": "response_48h", "breach_notified": False}]
    assert d["deadlines_added"] == [{"milestone": "答复", "starts_at": "2026-11-02T09:00:00+08:00",
                                     "due_at": "2026-11-23T23:59:59+08:00", "overdue": False}]
    # the same rule again changes nothing
    again = change_rule(store, _duty(), tid, "complaint", "重复提交", clocks=clocks, now=at)
    assert again.already and again.ticket["clock_reason"] == out.ticket["clock_reason"]
    # and to a suggestion: 7 working days from the same T0
    change_rule(store, _duty(), tid, "suggestion", "实为意见建议", clocks=clocks, now=at)
    assert _deadlines(store, tid) == {"反馈处理意见": sh(2026, 11, 11, 23, 59, 59)}


def test_a_met_milestone_stays_met_when_the_rule_changes(assessor, clocks, store, settings) -> None:
    tid = _open_news_complaint(assessor, store, settings)
    cases.record_milestone(store, _duty(), tid, "回应", clocks=clocks, evidence_url="https://gov.test/reply",
                           now=T0 + timedelta(hours=3))
    change_rule(store, _duty(), tid, "major_emergency", "事件升级为重大", clocks=clocks, now=T0 + timedelta(hours=4))
    with store.reader() as s:
        rows = {d.milestone: d for d in s.scalars(select(Deadline).where(Deadline.ticket_id == tid))}
    assert rows["回应"].met_at is not None and rows["回应"].evidence_url == "https://gov.test/reply"
    assert rows["权威信息发布"].due_at == T0 + timedelta(hours=5)
    assert rows["新闻发布会"].due_at == T0 + timedelta(hours=24)


@pytest.mark.parametrize(
    ("rule", "reason", "error", "message"),
    [
        ("whatever", "理由", cases.Invalid, "时限规则「whatever」无效"),
        ("complaint", "  ", cases.Invalid, "须填写理由"),
    ],
)
def test_a_bad_request_is_refused_and_audited(assessor, clocks, store, settings, rule, reason, error,
                                              message) -> None:
    tid = _open_news_complaint(assessor, store, settings)
    with pytest.raises(error) as ei:
        change_rule(store, _duty(), tid, rule, reason, clocks=clocks, now=T0 + timedelta(hours=1))
    assert message in ei.value.message
    assert _deadlines(store, tid) == {"回应": T0 + timedelta(hours=48)}
    with store.reader() as s:
        row = s.scalars(select(Audit).where(Audit.action == "clock_rule_changed")).one()
    assert row.outcome == "failed" and message in row.detail["reason"]


def test_closed_and_out_of_scope_tickets_refuse(assessor, clocks, store, settings) -> None:
    tid = _open_news_complaint(assessor, store, settings)
    with pytest.raises(cases.NotFound):  # 芜湖's officer does not see a 合肥 ticket
        change_rule(store, _duty("芜湖值班员", "3402"), tid, "complaint", "越权", clocks=clocks, now=T0)
    cases.close(store, _duty(), tid, "responded", note="已答复", now=T0 + timedelta(hours=2))
    with pytest.raises(cases.Conflict) as ei:
        change_rule(store, _duty(), tid, "complaint", "办结后更改", clocks=clocks, now=T0 + timedelta(hours=3))
    assert "已办结" in ei.value.message
    assert _ticket(store, "n").rule == "response_48h"
    with store.reader() as s:
        outcomes = sorted(r.outcome for r in s.scalars(select(Audit).where(Audit.action == "clock_rule_changed")))
    assert outcomes == ["denied", "failed"]


def test_the_api_changes_the_rule(assessor, store, settings) -> None:
    from tests.fixtures.auth import client_as
    from web.app import create_app

    tid = _open_news_complaint(assessor, store, settings)
    with client_as(create_app(settings, store=store, now=lambda: T0 + timedelta(hours=1))) as c:
        r = c.post(f"/api/tickets/{tid}/clock-rule", json={"rule": "complaint", "reason": "问政平台转来的投诉"})
        assert r.status_code == 200, r.text
        assert r.json()["ticket"]["clock_rule"] == "complaint"
        bad = c.post(f"/api/tickets/{tid}/clock-rule", json={"rule": "7days", "reason": "x"})
        assert bad.status_code == 422 and "时限规则「7days」无效" in bad.text
    assert _deadlines(store, tid) == {"答复": sh(2026, 11, 23, 23, 59, 59)}


# --------------------------------------------------------------------------- check-config


def _check_config(config_dir: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "check-config"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={"YUQING_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
    )


def _line(f: Path, needle: str) -> int:
    return next(i for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "needle", "field", "words"),
    [
        ("      source_kind_in: [gov_board]\n      handling_type_in: [建设性意见建议]",
         "      source_kind_in: [message_board]\n      handling_type_in: [建设性意见建议]",
         "[message_board]", "rules.suggestion.when.source_kind_in.0", "Input should be"),
        ("      handling_type_in: [建设性意见建议]", "      handling_type_in: [意见建议]", "[意见建议]",
         "rules.suggestion.when.handling_type_in.0", "Input should be"),
        ("      source_kind_in: [gov_board]\n    milestones:\n      - name: 答复",
         "      source_kind_in: [gov_board]\n      handling: 咨询\n    milestones:\n      - name: 答复",
         "handling: 咨询", "rules.complaint.when.handling", "unknown field"),
    ],
)
def test_a_bad_when_fails_check_config_naming_file_line_and_field(config_dir, data_dir, old, new, needle, field,
                                                                  words) -> None:
    f = config_dir / "clocks.yaml"
    text = f.read_text(encoding="utf-8")
    assert old in text
    f.write_text(text.replace(old, new, 1), encoding="utf-8")
    r = _check_config(config_dir, data_dir)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{f}:{_line(f, needle)}: {field}: " in r.stderr and words in r.stderr, r.stderr


def test_a_rule_that_can_never_be_chosen_is_an_error(config_dir) -> None:
    """response_48h (every relevant item) above suggestion: the 7-day clock would never apply."""
    f = config_dir / "clocks.yaml"
    text = f.read_text(encoding="utf-8")
    head, rules = text.split("rules:\n", 1)
    blocks = rules.split("\n\n")
    last = blocks.pop()  # response_48h, with its comment
    assert "response_48h:" in last
    f.write_text(head + "rules:\n" + "\n\n".join([blocks[0], last.rstrip("\n"), *blocks[1:]]) + "\n",
                 encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_clocks(config_dir)
    msg = str(ei.value)
    lines = f.read_text(encoding="utf-8").splitlines()
    when = next(i for i in range(_line(f, "  suggestion:"), len(lines)) if lines[i].strip() == "when:") + 1
    assert f"{f}:{when}: rules.suggestion.when: never chosen" in msg, msg
    assert "caught first by rules.response_48h" in msg and "rules.complaint.when" in msg


@pytest.mark.parametrize(
    ("when", "words"),
    [("    when: {}\n", "when has no condition"), ("    when:\n      relevant: false\n", "relevant: false never applies")],
)
def test_an_empty_or_never_true_when_is_an_error(config_dir, when, words) -> None:
    f = config_dir / "clocks.yaml"
    text = f.read_text(encoding="utf-8")
    old = "    when:\n      relevant: true\n    milestones:\n      - name: 回应"
    assert old in text
    f.write_text(text.replace(old, when + "    milestones:\n      - name: 回应"), encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_clocks(config_dir)
    lines = f.read_text(encoding="utf-8").splitlines()
    line = max(i for i, x in enumerate(lines, 1) if x.startswith("    when:"))  # response_48h is the last rule
    assert f"{f}:{line}: rules.response_48h.when: " in str(ei.value)
    assert words in str(ei.value)
