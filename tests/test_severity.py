"""Statutory severity thresholds, the reason, the spread raise, config validation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from classifiers.casualties import extract_casualties
from classifiers.severity import SeverityRules
from stream.contracts import Engagement
from yuqing.configfile import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SEVERITY = ROOT / "config" / "severity.yaml"
BASIS = "《生产安全事故报告和调查处理条例》第三条"


@pytest.fixture(scope="module")
def rules() -> SeverityRules:
    return SeverityRules.load(SEVERITY)


def level(rules: SeverityRules, text: str, event_type: str | None = "事故灾难") -> str:
    return rules.assess(extract_casualties(text), event_type=event_type).level


@pytest.mark.parametrize(
    ("deaths", "expected"),
    [(0, "一般"), (2, "一般"), (3, "较大"), (9, "较大"), (10, "重大"), (29, "重大"), (30, "特别重大"), (31, "特别重大")],
)
def test_death_boundaries(rules: SeverityRules, deaths: int, expected: str) -> None:
    assert level(rules, f"事故造成{deaths}人死亡") == expected


@pytest.mark.parametrize(
    ("injured", "expected"),
    [(9, "一般"), (10, "较大"), (49, "较大"), (50, "重大"), (99, "重大"), (100, "特别重大")],
)
def test_serious_injury_boundaries(rules: SeverityRules, injured: int, expected: str) -> None:
    assert level(rules, f"事故造成{injured}人重伤") == expected


@pytest.mark.parametrize(
    ("loss", "expected"),
    [("999万元", "一般"), ("1000万元", "较大"), ("4999万元", "较大"), ("5000万元", "重大"), ("9999万元", "重大"),
     ("1亿元", "特别重大"), ("1.2亿元", "特别重大")],
)
def test_loss_boundaries(rules: SeverityRules, loss: str, expected: str) -> None:
    assert level(rules, f"造成直接经济损失{loss}") == expected


def test_highest_criterion_wins(rules: SeverityRules) -> None:
    # 2 deaths alone is 一般, 60 seriously injured is 重大
    assert level(rules, "事故造成2人死亡、60人重伤") == "重大"


def test_reason_names_the_numbers_and_the_rule(rules: SeverityRules) -> None:
    r = rules.assess(extract_casualties("厂房坍塌，造成12人死亡"), event_type="事故灾难")
    assert r.level == "重大"
    assert r.reason == f"正文称“12人死亡”，死亡10–29人，依{BASIS}为重大"


def test_reason_for_top_level_and_loss(rules: SeverityRules) -> None:
    r = rules.assess(extract_casualties("直接经济损失约1.2亿元"), event_type="事故灾难")
    assert "1亿元以上" in r.reason and "“直接经济损失约1.2亿元”" in r.reason and r.reason.endswith("为特别重大")
    r = rules.assess(extract_casualties("损失5000万元"), event_type="事故灾难")
    assert "5000万元以上1亿元以下" in r.reason


def test_reason_below_every_threshold(rules: SeverityRules) -> None:
    r = rules.assess(extract_casualties("造成2人死亡"), event_type="事故灾难")
    assert r.level == "一般"
    assert "“2人死亡”" in r.reason and "未达较大标准" in r.reason


def test_total_injured_is_said(rules: SeverityRules) -> None:
    r = rules.assess(extract_casualties("造成49人受伤"), event_type="事故灾难")
    assert r.level == "较大" and "受伤10–49人" in r.reason and "按受伤总数计" in r.reason


def test_other_emergencies_apply_by_analogy(rules: SeverityRules) -> None:
    r = rules.assess(extract_casualties("地震造成12人遇难"), event_type="自然灾害")
    assert r.level == "重大" and f"参照{BASIS}" in r.reason


def test_no_figures(rules: SeverityRules) -> None:
    r = rules.assess(extract_casualties("某地发生火灾"), event_type="事故灾难")
    assert r.level == "一般" and "未提及伤亡人数" in r.reason
    r = rules.assess(extract_casualties("小区停水"), event_type=None, is_emergency=False)
    assert r.level == "一般" and r.reason.startswith("非突发事件")


def _copy(tmp_path: Path) -> Path:
    p = tmp_path / "severity.yaml"
    shutil.copy(SEVERITY, p)
    return p


def test_spread_raise_is_off_by_default(rules: SeverityRules) -> None:
    r = rules.assess(extract_casualties("造成2人死亡"), event_type="事故灾难", engagement=Engagement(reposts=10**6))
    assert r.level == "一般" and not r.raised_by_spread


def test_spread_raise_when_enabled(tmp_path: Path) -> None:
    p = _copy(tmp_path)
    p.write_text(p.read_text(encoding="utf-8").replace("  enabled: false", "  enabled: true"), encoding="utf-8")
    rules = SeverityRules.load(p)
    cas = extract_casualties("造成2人死亡")
    quiet = rules.assess(cas, event_type="事故灾难", engagement=Engagement(reposts=9999, comments=10))
    assert quiet.level == "一般"
    loud = rules.assess(cas, event_type="事故灾难", engagement=Engagement(reposts=10000))
    assert loud.level == "较大" and loud.by_figures == "一般" and loud.raised_by_spread
    assert "转发10000次" in loud.reason and "提高一级为较大" in loud.reason
    # never above max_level (重大): a 重大 item stays 重大
    big = rules.assess(extract_casualties("造成12人死亡"), event_type="事故灾难", engagement=Engagement(comments=99999))
    assert big.level == "重大" and not big.raised_by_spread and "维持重大" in big.reason
    # only emergencies by default
    calm = rules.assess(extract_casualties("小区停水"), is_emergency=False, engagement=Engagement(reposts=10**6))
    assert calm.level == "一般"


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_thresholds_out_of_order_name_file_and_line(tmp_path: Path) -> None:
    p = _copy(tmp_path)
    p.write_text(p.read_text(encoding="utf-8").replace("deaths_min: 10", "deaths_min: 40"), encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        SeverityRules.load(p)
    msg = str(ei.value)
    assert f"{p}:{_line_of(p, 'levels:')}: levels:" in msg and "deaths_min of 重大" in msg


def test_bad_value_names_file_and_line(tmp_path: Path) -> None:
    p = _copy(tmp_path)
    p.write_text(p.read_text(encoding="utf-8").replace("  max_level: 重大", "  max_level: 很大"), encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        SeverityRules.load(p)
    assert f"{p}:{_line_of(p, 'max_level: 很大')}: spread.max_level:" in str(ei.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("两人死亡", "一般"), ("三人死亡", "较大"), ("九人死亡", "较大"), ("十人死亡", "重大"), ("二十九人死亡", "重大"),
     ("三十人死亡", "特别重大"), ("死亡三十二人", "特别重大")],
)
def test_death_boundaries_in_chinese_numerals(rules: SeverityRules, text: str, expected: str) -> None:
    assert level(rules, f"事故造成{text}") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("九人重伤", "一般"), ("十人重伤", "较大"), ("四十九人重伤", "较大"), ("五十人重伤", "重大"),
     ("九十九人重伤", "重大"), ("一百人重伤", "特别重大"), ("重伤一百零五人", "特别重大")],
)
def test_serious_injury_boundaries_in_chinese_numerals(rules: SeverityRules, text: str, expected: str) -> None:
    assert level(rules, f"事故造成{text}") == expected


@pytest.mark.parametrize(
    ("loss", "expected"),
    [("九百九十九万元", "一般"), ("一千万元", "较大"), ("四千九百九十九万元", "较大"), ("五千万元", "重大"),
     ("九千九百万元", "重大"), ("一亿元", "特别重大"), ("两亿元", "特别重大")],
)
def test_loss_boundaries_in_chinese_numerals(rules: SeverityRules, loss: str, expected: str) -> None:
    assert level(rules, f"造成直接经济损失{loss}") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("事故已造成2人死亡。截至今晨，死亡人数上升至3人", "较大"),
     ("初步统计8人遇难。随后遇难人数增至12人", "重大"),
     ("已有二十八人死亡，目前死亡人数已达三十人", "特别重大"),
     ("造成9人重伤，重伤人数后升至10人", "较大")],
)
def test_running_totals_raise_the_level(rules: SeverityRules, text: str, expected: str) -> None:
    assert level(rules, text) == expected
