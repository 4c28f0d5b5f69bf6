"""Weak topic labels from the department named in an official reply, and the
near-duplicate key that keeps weak/pseudo-labelled copies of evaluated messages
out of training. Replies here are written for the test."""

from __future__ import annotations

import pytest

from classifiers.weak_labels import (
    OTHER,
    department_counts,
    department_topic,
    drop_near_duplicates,
    near_duplicate_key,
)


@pytest.mark.parametrize(("reply", "topic"), [
    ("网友：您好！您反映的小区违建问题已转A2区住房和城乡建设局调查处理。", "城乡建设"),
    ("经A市城管局执法大队现场核查，该商户占道经营已责令整改。", "城乡建设"),
    ("您好！您的留言已收悉。经B3县教育局核实，该校补课收费问题属实，已退还。", "教育文体"),
    ("您反映的拖欠工资问题，A7县人力资源和社会保障局劳动保障监察大队已立案。", "劳动和社会保障"),
    ("经D市生态环境局现场监测，该厂废气排放超标，已依法处罚。", "环境保护"),
    ("A市交通运输局已协调公路管理部门尽快修复该路段。", "交通运输"),
    ("经K4县市场监督管理局调查，该商家虚假宣传，已立案查处。", "商贸旅游"),
    ("L市卫生健康委员会已责成该医院核查收费情况。", "卫生计生"),
    ("经F市卫健委核实，计划生育奖励扶助资金已发放。", "卫生计生"),
])
def test_department_names_map_to_topics(reply: str, topic: str) -> None:
    assert department_topic(reply) == topic


@pytest.mark.parametrize("reply", [
    "网友：您好！留言已收悉。",  # no unit at all
    "您反映的问题已转A市公安局交警支队处理。",  # 交警 is 政法 (交通管理), outside the seven
    "您好，低保申请请向A3区民政局提交材料。",  # 民政, outside the seven
    "经A市教育局与A市公安局联合调查，校门口治安问题已处理。",  # one each: no majority
    "该问题已转A市文化旅游广电局处理。",  # 文化 vs 旅游: ambiguous, counts for nothing
])
def test_unclear_or_other_departments_give_no_label(reply: str) -> None:
    assert department_topic(reply) is None


def test_longer_names_are_not_counted_twice() -> None:
    counts = department_counts("A2区住房和城乡建设局回复：已督促开发商整改。")
    assert counts == {"城乡建设": 1}
    counts = department_counts("县教育局、县教育局、县公安局")
    assert counts == {"教育文体": 2, OTHER: 1}
    assert department_topic("县教育局、县教育局、县公安局", min_share=0.6) == "教育文体"
    assert department_topic("县教育局、县教育局、县公安局", min_share=0.7) is None


def test_near_duplicate_key_ignores_spacing_and_punctuation() -> None:
    a = "尊敬的领导：  您好！我们小区（星沙）物业乱收费。"
    b = "尊敬的领导您好，我们小区星沙物业乱收费"
    assert near_duplicate_key(a) == near_duplicate_key(b)
    assert near_duplicate_key("一" * 80) == "一" * 50
    assert near_duplicate_key("学校乱收费") != near_duplicate_key("医院乱收费")


def test_drop_near_duplicates_removes_copies_of_evaluated_texts() -> None:
    candidates = ["小区物业乱收费，请住建局处理！", "学校补课收费", "小区 物业 乱收费 请住建局处理", "工厂排污"]
    keep, dropped = drop_near_duplicates(candidates, against=["小区物业乱收费。请住建局处理"])
    assert [candidates[i] for i in keep] == ["学校补课收费", "工厂排污"]
    assert dropped == 2
    # repeats among the candidates themselves are kept once and not counted as dropped
    keep, dropped = drop_near_duplicates(["甲乙丙", "甲，乙，丙", "丁"], against=[])
    assert keep == [0, 2] and dropped == 0
