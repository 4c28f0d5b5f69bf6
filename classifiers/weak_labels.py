"""Weak topic labels from the department that answered a message.

Official replies on the 问政 platform usually name the unit that handled the
message (…区住房和城乡建设局, …县教育局, …人力资源和社会保障局, …卫生健康委员会).
:func:`department_topic` maps those names to one of the seven top-level topics
(``classifiers.train.TOPICS``), or to ``None`` when the reply names no unit, only
units whose work lies outside the seven (公安, 民政, 农业, 国土 …), or units of
several topics with no clear majority.

The mapping follows the official category tree (附件1): 物业/公积金/城管/规划/
公交 are 城乡建设; 食品安全/计划生育/医院 are 卫生计生; 市场监管/工商/物价/旅游
are 商贸旅游; 交警 (交通管理) is 政法, so outside the seven; 文化旅游 units
are ambiguous (文化 → 教育文体, 旅游 → 商贸旅游) and count for nothing.

:func:`near_duplicate_key` is the normalisation used to keep weak- or pseudo-
labelled texts that duplicate an evaluation message out of training.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

OTHER = "其他"  # a unit whose work is outside the seven topics

# (pattern, topic); a match counts once per occurrence. Longer, more specific
# names come first in each group, and matched text is blanked so that the
# shorter names inside it (…城乡建设局 inside 住房和城乡建设局) do not count twice.
DEPARTMENT_RULES: list[tuple[str, str]] = [
    # ambiguous or multi-topic units: consume the text, count for nothing
    (r"文化旅游|文旅|文化和旅游|文广新|文体广电旅游|发展和改革|发改|行政审批|政务服务|信访|12345", ""),
    # 劳动和社会保障
    (r"人力资源和社会保障|人力资源社会保障|人社局|人社部门|劳动保障监察|劳动监察|社会保险|社保局|社保中心|社保处"
     r"|医疗保障局|医保局|医保中心|医疗保险(?:服务|管理)?中心|就业服务|劳动人事争议仲裁|劳动仲裁|养老保险", "劳动和社会保障"),
    # 城乡建设
    (r"住房和城乡建设|住房城乡建设|住建局|住建委|住建部门|城乡建设局|规划建设局|住规建局|规建局|城乡规划|规划局"
     r"|规划分局|城市管理|城管|市政管理|市政局|市政设施|住房保障|房产局|房管局|房屋交易|房屋征收|征收办|拆迁办"
     r"|公积金|建设局|物业管理|物业公司|燃气公司|自来水公司|供水公司|渣土|环卫|园林", "城乡建设"),
    # 环境保护
    (r"生态环境|环境保护局|环保局|环保分局|环境监察|环境监测|环保部门", "环境保护"),
    # 交通运输
    (r"交通运输局|交通局|交通运输部门|运输管理|运管|道路运输|公路局|公路管理|交通行政执法|邮政管理|出租车|客运", "交通运输"),
    # 教育文体
    (r"教育和体育局|教育体育局|教体局|教育局|教育部门|招生考试|文体局|体育局|文化局|体育中心|教育阳光", "教育文体"),
    # 商贸旅游
    (r"市场监督管理|市场监管|工商局|工商分局|工商部门|商务局|旅游局|质量技术监督|质监局|物价局|价格监督|消费者委员会", "商贸旅游"),
    # 卫生计生
    (r"卫生健康|卫健委|卫健局|卫生和计划生育|卫计局|卫计委|卫生计生|计划生育|计生|卫生局|疾病预防控制|疾控|食品药品"
     r"|食药监|人民医院|中医院|卫生院|卫生服务中心", "卫生计生"),
    # outside the seven
    (r"公安|派出所|交警|车管所|民政|农业|农村|林业|水利|水务|畜牧|国土|自然资源|不动产|财政|税务|司法|法院|检察"
     r"|纪委|监委|扶贫|统计局|气象|地震|银行|金融|电力|供电|通信|电信|移动公司|联通|宗教|统战|老干", OTHER),
]
_RULES = [(re.compile(p), t) for p, t in DEPARTMENT_RULES]


def department_counts(reply: str) -> Counter[str]:
    """How often the reply names a unit of each topic (``OTHER``: outside the seven)."""
    counts: Counter[str] = Counter()
    text = reply or ""
    for rx, topic in _RULES:
        n = 0

        def blank(m: re.Match[str]) -> str:
            nonlocal n
            n += 1
            return "＃" * len(m.group(0))

        text = rx.sub(blank, text)
        if n and topic:
            counts[topic] += n
    return counts


def department_topic(reply: str, min_share: float = 0.6) -> str | None:
    """The topic of the unit(s) a reply names, or ``None``.

    The winning topic needs at least ``min_share`` of all unit mentions
    (units outside the seven included), so a reply that sends the message to
    公安 and mentions 教育局 once yields no label.
    """
    counts = department_counts(reply)
    total = sum(counts.values())
    if not total:
        return None
    topic, n = counts.most_common(1)[0]
    if topic == OTHER or n / total < min_share:
        return None
    if sum(1 for v in counts.values() if v == n) > 1:  # a tie
        return None
    return topic


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def near_duplicate_key(text: str, n: int = 50) -> str:
    """The first ``n`` characters of a text with whitespace and punctuation removed."""
    return _NON_WORD.sub("", text or "")[:n]


def drop_near_duplicates(texts: Iterable[str], against: Iterable[str], n: int = 50) -> tuple[list[int], int]:
    """Indices of ``texts`` whose key is not among the keys of ``against`` (nor
    an earlier text's), and how many were dropped because they matched ``against``."""
    banned = {near_duplicate_key(t, n) for t in against}
    seen: set[str] = set()
    keep: list[int] = []
    dropped = 0
    for i, t in enumerate(texts):
        k = near_duplicate_key(t, n)
        if k in banned:
            dropped += 1
            continue
        if k in seen:
            continue
        seen.add(k)
        keep.append(i)
    return keep, dropped
