"""Event subtype: attacks vs accidental explosions, road accidents told without 事故 (issue 18 part 4).

Every sentence here is written for this test; none is taken from the CEC corpus.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from classifiers.taxonomy import Taxonomy
from yuqing.configfile import ConfigError

CONFIG = Path(__file__).resolve().parents[1] / "config" / "taxonomy.yaml"


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return Taxonomy.load(CONFIG)


@pytest.mark.parametrize(("title", "text"), [
    # a series of blasts
    ("某国首都发生系列爆炸", "当地时间周五晚，该市三个街区先后传出爆炸声，造成至少15人死亡。"),
    ("港口城市发生连环爆炸 至少30人遇难", ""),
    # the report names who set it off
    ("警方公布车站爆炸事件元凶身份", "警方表示，已查明上月车站爆炸事件的元凶，另有两人在逃。爆炸造成8人死亡。"),
    ("集市爆炸致12死", "当地时间上午，一名男子在集市引爆身上的装置，造成12人死亡，20余人受伤。"),
    ("检查站外发生爆炸", "一辆满载炸药的汽车在检查站外爆炸，造成6名警察死亡。警方正在追捕嫌犯。"),
    # where no accident makes things explode
    ("清真寺礼拜时发生爆炸 数十人伤亡", ""),
    ("早高峰地铁车厢内发生爆炸", "今天早上8时许，一列地铁在进站时车厢内发生爆炸，已造成9人死亡。"),
])
def test_bombings_are_attacks(tax: Taxonomy, title: str, text: str) -> None:
    ev = tax.event(title, text)
    assert ev.subtype == "恐怖袭击", ev.reason
    assert ev.event_type == "社会安全事件"


@pytest.mark.parametrize(("title", "text"), [
    # a series of blasts with an accident's cause in the same sentence
    ("化工园区发生连环爆炸", "凌晨2时许，园区内一家化工企业的储罐区发生连环爆炸，已造成5人死亡。"),
    # the report calls it an accident
    ("小区发生连续爆炸 3人受伤", "今天中午，小区一楼商铺接连发生两次爆炸，造成3人受伤。事故原因正在调查。"),
    # a restaurant's gas, a market's gas cylinder: no cue at all
    ("饭店发生爆炸", "今天中午，某饭店后厨液化气罐发生爆炸，造成3人受伤，已送医救治。"),
    ("菜市场发生燃气爆炸 2人死亡", ""),
    # a cue that is denied
    ("厂房爆炸 警方排除人为引爆", "今天上午，某厂房发生爆炸，造成1人死亡。警方初步排除人为引爆可能。"),
])
def test_accidental_explosions_stay_explosions(tax: Taxonomy, title: str, text: str) -> None:
    ev = tax.event(title, text)
    assert ev.subtype == "爆炸", ev.reason
    assert ev.event_type == "事故灾难"


@pytest.mark.parametrize(("title", "text"), [
    ("槽罐车压扁小轿车 车内两人身亡", ""),
    ("一辆槽罐车转弯时倾倒", "今天上午，一辆槽罐车在路口转弯时倾倒，将旁边的小轿车压扁，车内2人当场死亡。"),
    ("高速公路客车翻覆 20人受伤", ""),
    ("摩托车撞上大货车 一死一伤", ""),
    ("轿车撞护栏后四轮朝天", "昨晚11时许，一辆轿车在环城路撞护栏后四轮朝天，司机受轻伤。"),
    ("面包车坠崖", "今天下午，一辆面包车在山路上坠崖，车上4人全部遇难。"),
    ("轿车冲入人群致2人受伤", "今天下午，一辆轿车因刹车失灵冲入人群，造成2人受伤。"),
])
def test_road_accidents_without_the_word(tax: Taxonomy, title: str, text: str) -> None:
    ev = tax.event(title, text)
    assert ev.subtype == "交通事故", ev.reason


@pytest.mark.parametrize(("title", "text"), [
    ("男子驾车冲入人群 5人死亡", "今天下午，一名男子驾驶轿车故意冲入人群，造成5人死亡。警方已将其控制。"),
    ("广场发生驾车冲撞人群事件", "当地警方称，这是一起蓄意实施的暴恐案件，已造成4人死亡。"),
])
def test_a_car_driven_into_a_crowd_on_purpose_is_an_attack(tax: Taxonomy, title: str, text: str) -> None:
    ev = tax.event(title, text)
    assert ev.subtype == "恐怖袭击", ev.reason
    assert "计为恐怖袭击" in ev.reason  # the reason says which word moved it and why


@pytest.mark.parametrize(("title", "text"), [
    # no vehicle near the word
    ("车间工人被机器压伤", "今天上午，某厂车间内一名工人被机器压伤，送医救治。"),
    ("比赛中两名球员受伤", "下半场，两名球员争顶时撞在一起，其中一人受伤离场。"),
    # loads wearing a road, a car review, a noise complaint
    ("村道破损严重", "这条村道因年久失修和重车碾压，路面已多处破损，请尽快维修。"),
    ("新车撞脸豪华品牌", "这款新车外观设计撞脸某豪华品牌，引发网友热议。"),
    ("渣土车夜间扰民", "一辆接一辆的渣土车横冲直撞，噪音很大，影响居民休息。"),
    # the risk of a crash, not one that happened
    ("窨井盖缺失", "井盖被盗后，足以使过往车辆发生倾覆，请有关部门尽快处理。"),
])
def test_no_road_accident(tax: Taxonomy, title: str, text: str) -> None:
    assert tax.event(title, text).subtype != "交通事故"


def test_a_crash_named_with_its_cause_stays_a_crash(tax: Taxonomy) -> None:
    # 连环 next to 相撞 is a pile-up; the explosion it causes is the crash's.
    ev = tax.event("高速上多车连环相撞后爆炸起火", "今天凌晨，高速公路上发生多车连环相撞，一辆油罐车随后爆炸起火，造成3人死亡。")
    assert ev.subtype == "交通事故", ev.reason


def _copy(tmp_path: Path) -> Path:
    f = tmp_path / "taxonomy.yaml"
    shutil.copy(CONFIG, f)
    return f


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_recast_to_an_unknown_subtype_is_a_config_error(tmp_path: Path) -> None:
    f = _copy(tmp_path)
    _edit(f, "    - subtypes: [爆炸]\n      to: 恐怖袭击", "    - subtypes: [爆炸]\n      to: 恐怖事件")
    with pytest.raises(ConfigError) as ei:
        Taxonomy.load(f)
    assert "恐怖事件" in str(ei.value) and "is not a subtype" in str(ei.value)


def test_recast_without_cues_is_a_config_error(tmp_path: Path) -> None:
    f = _copy(tmp_path)
    text = f.read_text(encoding="utf-8")
    start = text.index("      near_cues: [故意")
    end = text.index("\n", start)
    f.write_text(text[:start] + "      near_cues: []" + text[end:], encoding="utf-8")
    _edit(f, "      cues: [暴恐, 恐怖袭击, 恐怖分子, 袭击者, 报复社会, 蓄意]", "      cues: []")
    with pytest.raises(ConfigError) as ei:
        Taxonomy.load(f)
    assert "needs cues or near_cues" in str(ei.value)


def test_context_word_that_is_also_a_keyword_is_a_config_error(tmp_path: Path) -> None:
    f = _copy(tmp_path)
    _edit(f, "            - keywords: [撞, 压扁,", "            - keywords: [撞, 追尾, 压扁,")
    with pytest.raises(ConfigError) as ei:
        Taxonomy.load(f)
    assert "'追尾' is both a keyword and a context keyword" in str(ei.value)


def test_unknown_field_in_a_recast_is_reported(tmp_path: Path) -> None:
    f = _copy(tmp_path)
    _edit(f, "      unless_anywhere: [事故]", "      unless_anywhere: [事故]\n      unles: [x]")
    with pytest.raises(ConfigError) as ei:
        Taxonomy.load(f)
    assert "unles" in str(ei.value) and ":" in str(ei.value).split("unles")[0]
