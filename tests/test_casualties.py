"""Casualty and loss figures from Chinese text."""

from __future__ import annotations

import pytest

from classifiers.casualties import cn_to_number, extract_casualties


@pytest.mark.parametrize(
    ("s", "n"),
    [("一", 1), ("两", 2), ("十", 10), ("十五", 15), ("三十二", 32), ("一百零五", 105), ("一千二百", 1200),
     ("三百零二", 302), ("五千万", 50_000_000), ("一亿", 100_000_000), ("十一万", 110_000)],
)
def test_chinese_numerals(s: str, n: int) -> None:
    assert cn_to_number(s) == n


def test_not_a_numeral() -> None:
    assert cn_to_number("十分") is None
    assert cn_to_number("") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # digits
        ("事故造成12人死亡", {"deaths": 12}),
        ("12名矿工遇难", {"deaths": 12}),
        ("已致3人身亡、7人受伤", {"deaths": 3, "injured": 7}),
        ("死亡12人，受伤5人", {"deaths": 12, "injured": 5}),
        ("１２人死亡", {"deaths": 12}),  # full-width digits
        # Chinese numerals
        ("三十二人遇难", {"deaths": 32}),
        ("十余人受伤", {"injured": 10}),
        ("两人失踪", {"missing": 2}),
        ("一百零五人被困", {"trapped": 105}),
        ("一名男子不幸身亡", {"deaths": 1}),
        # qualifiers
        ("至少10人死亡", {"deaths": 10}),
        ("10余人重伤", {"injured": 10}),
        ("上百人受伤", {"injured": 100}),
        ("数十人受伤", {"injured": 20}),
        ("近30人死亡", {"deaths": 29}),
        ("超过50人被困", {"trapped": 50}),
        ("3至5人失联", {"missing": 3}),
        ("多人受伤", {"injured": 2}),
        # short forms
        ("事故造成3死2伤", {"deaths": 3, "injured": 2}),
        ("造成2死", {"deaths": 2}),
        # colloquial
        ("县里通报说死了12个，还有5个受伤的", {"deaths": 12, "injured": 5}),
        ("塌方致3个村民被掩埋", {"trapped": 3}),
        ("现在官方说遇难的有三十二人", {"deaths": 32}),
    ],
)
def test_figures(text: str, expected: dict[str, int]) -> None:
    got = extract_casualties(text).casualties.model_dump(exclude_none=True)
    assert got == expected


def test_running_total_takes_the_latest_largest() -> None:
    r = extract_casualties("事故初步造成8人死亡。截至发稿，死亡人数升至15人，另有一人失踪。遇难人数已达15")
    assert r.casualties.deaths == 15
    assert r.casualties.missing == 1
    assert [e.value for e in r.evidence if e.field == "deaths"] == [8, 15, 15]
    best = r.best("deaths")  # the largest; among equal figures the latest
    assert best is not None and best.text == "遇难人数已达15"


def test_serious_injured_wins_over_total() -> None:
    r = extract_casualties("事故造成3人受伤，其中2人重伤")
    assert r.casualties.injured == 2
    assert (r.serious_injured, r.total_injured, r.injured_basis) == (2, 3, "serious")
    assert "重伤2人" in r.describe()


def test_total_injured_used_and_said_when_no_serious_figure() -> None:
    r = extract_casualties("事故造成60人受伤")
    assert r.casualties.injured == 60 and r.injured_basis == "total"
    assert "未提重伤人数，按受伤总数计" in r.describe()


@pytest.mark.parametrize(
    ("text", "yuan"),
    [
        ("直接经济损失约1.2亿元", 120_000_000),
        ("造成直接经济损失5000万元", 50_000_000),
        ("经济损失达五千万元", 50_000_000),
        ("造成3000余万元的直接经济损失", 30_000_000),
        ("财产损失初步估算为800万元", 8_000_000),
    ],
)
def test_loss(text: str, yuan: float) -> None:
    assert extract_casualties(text).casualties.loss_yuan == pytest.approx(yuan)


@pytest.mark.parametrize(
    "text",
    [
        "12月3日，该县召开会议",
        "全省交通事故死亡率为3.5%，同比下降",
        "全年交通事故死亡人数下降",
        "12个小区停水，涉及3000户",
        "项目总投资5000万元",  # an amount, but not a loss
        "死亡3",  # no unit, no count word
        "三人受伤两人死亡",  # must not read 3 deaths
        "暴雨过后，多个水渠都被掩埋，村民出行困难",  # things buried, nobody trapped
        "十几个摊位被掩埋在泥里",
    ],
)
def test_no_false_positives(text: str) -> None:
    c = extract_casualties(text).casualties
    if text == "三人受伤两人死亡":
        assert (c.deaths, c.injured) == (2, 3)
    else:
        assert c.model_dump(exclude_none=True) == {}


def test_no_casualties_stated() -> None:
    r = extract_casualties("火灾未造成人员伤亡")
    assert (r.casualties.deaths, r.casualties.injured) == (0, 0)
    assert r.none_stated and r.describe() == "正文称无人员伤亡"


def test_evidence_spans_point_into_the_text() -> None:
    text = "昨日下午，某厂房发生坍塌，造成12人死亡、5人受伤，直接经济损失约1.2亿元。"
    r = extract_casualties(text)
    assert {e.field for e in r.evidence} == {"deaths", "injured_total", "loss_yuan"}
    for e in r.evidence:
        assert text[e.start : e.end] == e.text
    assert "“12人死亡”" in r.describe() and "1.2亿元" in r.describe()


def test_qualifier_notes_explain_the_reading() -> None:
    assert "按下限计10" in extract_casualties("至少10人死亡").describe()
    assert "按不足30计29" in extract_casualties("近30人死亡").describe()


def test_a_verb_after_a_count_does_not_take_the_next_count() -> None:
    # "7人死亡23人受伤": 死亡 already has its 7; the 23 belongs to 受伤
    c = extract_casualties("合阳发生交通事故 7人死亡23人受伤").casualties
    assert (c.deaths, c.injured) == (7, 23)
    c = extract_casualties("地震造成6人死亡42人失踪").casualties
    assert (c.deaths, c.missing) == (6, 42)
    # but the verb-first form still works
    assert extract_casualties("事故造成死亡3人、重伤2人").casualties.deaths == 3


def test_a_count_is_not_carried_over_a_numeral() -> None:
    c = extract_casualties("新加坡137人食物中毒两人死亡").casualties
    assert c.deaths == 2


@pytest.mark.parametrize("text", ["死亡者是40岁的司机", "遇难者为32岁男子", "死亡时间为3时许"])
def test_ages_and_times_are_not_counts(text: str) -> None:
    assert extract_casualties(text).casualties.deaths is None


# -- the quick checks that let most texts skip the patterns change no result ---------------------


def _casualty_texts(seed: int, n: int) -> list[str]:
    import random

    rng = random.Random(seed)
    nums = ["3", "１２", "12.5", "三十二", "两", "十几", "数十", "上百", "3至5", "几", "多", "一百零五", "1万"]
    pre = ["", "", "至少", "近", "超过", "约", "共"]
    unit = ["人", "名", "位", "个", "名矿工", ""]
    verbs = ["死亡", "遇难", "不幸身亡", "受伤", "重伤", "受轻伤", "伤势严重", "失踪", "失联", "被困", "被埋", "死了"]
    bits = ["造成", "事故", "，", "。", "目前", "人数升至", "已致", "3死2伤", "致1死", "12月", "死亡率3%",
            "直接经济损失约1.2亿元", "损失5000万元", "3000万元的直接经济损失", "无人员伤亡", "未造成人员伤亡",
            "40多岁", "小区停车费", "村民", "伤心", "死者", "Ｆ", "\n"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(pre) + rng.choice(nums) + rng.choice(unit) + rng.choice(["", "村民", "游客"])
                             + rng.choice(verbs))
            elif r < 0.6:
                parts.append(rng.choice(verbs) + rng.choice(["", "人数", "人数已达", "者为"]) + rng.choice(nums)
                             + rng.choice(unit + ["岁", "日"]))
            else:
                parts.append(rng.choice(bits))
        out.append("".join(parts))
    return out


def _plain_result(text: str, monkeypatch: pytest.MonkeyPatch):
    """extract_casualties with every quick check and lookahead taken out."""
    import re

    from classifiers import casualties as c

    with monkeypatch.context() as mp:
        always = re.compile("")
        mp.setattr(c, "_CUES", {k: always for k in c._CUES})
        mp.setattr(c, "_FW_ANY", always)
        mp.setattr(c, "_COMPOUND_CUE", "")
        mp.setattr(c, "_LOSS_CUE", "")
        strip = lambda p: re.compile(p.pattern.replace(c._NUM_START, "", 1))  # noqa: E731
        mp.setattr(c, "_PATTERNS", {k: [strip(p) for p in ps] for k, ps in c._PATTERNS.items()})
        mp.setattr(c, "_COMPOUND", strip(c._COMPOUND))
        mp.setattr(c, "_LOSS", [re.compile(re.sub(r"^\(\?=\[[^\]]*\]\)", "", p.pattern)) for p in c._LOSS])
        assert all(not p.pattern.startswith("(?=") for p in c._LOSS)
        return c.extract_casualties(text)


@pytest.mark.parametrize("seed", range(4))
def test_quick_checks_change_no_result(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _casualty_texts(seed, 150)
    found = 0
    for text in texts:
        fast, plain = extract_casualties(text), _plain_result(text, monkeypatch)
        assert fast == plain, text
        found += bool(fast.evidence)
    assert found > 50  # the generated texts do state figures


@pytest.mark.parametrize(
    ("text", "deaths", "injured"),
    [
        # a verb with its figure before it does not also take the one after it
        ("车祸造成2名乘客死亡10多人受伤", 2, 10),
        ("大巴翻覆，3名游客丧生20人受伤", 3, 20),
        # "20余万": at least 20 ten-thousands, not 万 alone
        ("地震已造成20余万人受伤", None, 200_000),
        # background in other years is not this event's toll
        ("1990年以来，该路段已有30多人在车祸中丧生。今天上午这里又发生一起车祸，造成2人死亡。", 2, None),
        ("去年同一路段发生车祸致5人死亡。", None, None),
        # ... but a running total of this season, and a dated lede, are
        ("今年入汛以来，全省共有12人在洪灾中死亡。", 12, None),
        ("2024年12月31日晚，某县一民房起火，造成3人死亡。", 3, None),
    ],
)
def test_figure_belongs_to_its_verb_and_to_this_event(text: str, deaths: int | None, injured: int | None) -> None:
    c = extract_casualties(text).casualties
    assert (c.deaths, c.injured) == (deaths, injured)
