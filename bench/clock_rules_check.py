"""The 政务动态 judgment and the clock-rule choice, measured (issue 15 part 3).

    .venv/bin/python bench/clock_rules_check.py [--data ../shared/data] [--examples 5]

Reads ``../shared/data`` only (never copied into the project). The whole
Assessor runs with the rules alone (``needs_response``, the handling type and
emergencies do not depend on the topic model), then the clock rule is chosen
as the responder does (:meth:`responder.clocks.Clocks.decide`).

1. **Real complaints must not be archived.** Every citizen message of the
   TipDM 问政 data here — 附件2 dev (1,771, text only), 附件4 half (1,392, with
   the official replies) and 附件3 (4,326): 7,489 — is a message to a
   government, asking for something. Counted: how many the 政务动态 judgment
   calls work reports needing no response (``needs_response`` false; as
   gov_board posts they still get a clock, so this is the judgment alone, as
   if the same text came from a news site), and the same among the messages
   about the announcement kinds of issue 15 (公交线路, 常务会议, 政务服务中心 /
   周末不打烊 / 延时服务, 开通 / 新增 / 推出 / 上线 …), which are complaints
   and questions about those matters. These 7,489 were read while the words of
   ``taxonomy.yaml`` were chosen; the 2,801 messages of 测试数据 were not, and
   are counted apart.
2. **Announcements must be archived.** The government work announcements of
   the demo (yuqing/demo_site/stories.py, written for this project: 常务会议,
   新增公交线路, 政务服务中心“周末不打烊”, 经济运行, 道路完工, 推进会 …) and the
   complaints, replies and questions beside them: which are archived. Then, for
   scale, the THUCNews 时政 titles (500, headlines alone) and how many of them
   the judgment archives, with examples (no ground truth: a reader checks them).
3. **Which clock each 问政 message gets.** The 7,489 messages as gov_board
   posts: suggestion / complaint / major_emergency / response_48h / none; and
   against the 附件4 official replies as weak labels — a reply that thanks for or
   answers a 建议 (您的建议, 关于…的建议) vs. one about a 反映/投诉/咨询 — how many of
   each got ``suggestion`` and how many ``complaint``.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.assess import Assessor  # noqa: E402
from responder.clocks import load_clocks  # noqa: E402
from yuqing.settings import load_settings  # noqa: E402

MESSAGES = (
    ("附件2 dev", "gov_messages_tipdm2020/messages_labeled_附件2_dev.csv"),
    ("附件4 half", "gov_messages_tipdm2020/messages_with_official_replies_附件4_half.csv"),
    ("附件3", "gov_messages_tipdm2020/hot_messages_with_votes_附件3.csv"),
)
# Not looked at while the words in taxonomy.yaml were chosen: the check on fresh messages.
FRESH = ("测试数据", "gov_messages_tipdm2020/messages_unlabeled_posttest_测试数据.csv")
# Messages about the matters issue 15's announcements are about.
ANNOUNCEMENT_TOPICS = re.compile(r"公交线路|公交路线|常务会议|政务服务中心|不打烊|延时服务|新增|开通|推出|上线|启用|投用|通车")
SUGGESTION_REPLY = re.compile(r"您(提出)?的(意见)?建议|感谢您的建议|关于.{0,30}的建议|采纳")
COMPLAINT_REPLY = re.compile(r"您(所)?反映|您(所)?咨询|投诉|举报")


def read_messages(data: Path, sets: tuple[tuple[str, str], ...] = MESSAGES) -> list[tuple[str, str, str, str]]:
    """(set, title, text, reply) of every citizen message."""
    out = []
    for name, rel in sets:
        with open(data / rel, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                out.append((name, row.get("留言主题", "") or "", row.get("留言详情", "") or "",
                            row.get("答复意见", "") or ""))
    return out


def demo_posts() -> list[tuple[str, str, str, str, bool]]:
    """(key, kind, title, text, announcement?) of the demo's stories that are not emergencies."""
    from yuqing.demo_site.stories import FORUM, NEWS, WEIBO

    # The demo's government work announcements (issue 15 names the first three kinds).
    announcements = {"hefei-meeting", "tianchang-bus", "bozhou-service", "province-economy", "shexian-roads",
                     "tongling-water", "wuhu-fund", "fuyang-wages", "bengbu-canteen", "huaining-fire-prevention",
                     "fuyang-wages-weibo"}
    fill = {"{md}": "11月22日", "{period}": "上午", "{clock}": "10时40分", "{year}": "2026", "{mdcode}": "11·22"}
    out = []
    for st in (*NEWS, *FORUM, *WEIBO):
        text = st.text
        for k, v in fill.items():
            text = text.replace(k, v)
        out.append((st.key, st.kind, st.title, text, st.key in announcements))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--examples", type=int, default=5)
    args = ap.parse_args(argv)
    data = Path(args.data)
    settings = load_settings()
    t_start = time.monotonic()
    assessor = Assessor(settings, use_model=False)
    clocks = load_clocks(settings.config_dir)

    # ---- 1 and 3: the citizen messages
    msgs = read_messages(data)
    results = []
    batch = 256
    for i in range(0, len(msgs), batch):
        chunk = msgs[i:i + batch]
        results += assessor.assess_texts([(t, x, None, None) for _, t, x, _ in chunk])
    by_set: Counter[str] = Counter()
    archived_by_set: Counter[str] = Counter()
    topic_total = topic_archived = 0
    archived_examples: list[str] = []
    rules: Counter[str] = Counter()
    weak: dict[str, Counter[str]] = {"建议": Counter(), "反映/投诉/咨询": Counter()}
    for (name, title, text, reply), a in zip(msgs, results, strict=True):
        by_set[name] += 1
        no_resp = a.relevant and not a.needs_response
        archived_by_set[name] += int(no_resp)
        if ANNOUNCEMENT_TOPICS.search(f"{title}\n{text}"):
            topic_total += 1
            topic_archived += int(no_resp)
        if no_resp and len(archived_examples) < args.examples:
            archived_examples.append(f"[{name}] {title or text[:40]} — {a.handling_reason}")
        rule, _ = clocks.decide(a, "gov_board")
        rules[rule or ("none (不相关)" if not a.relevant else "none")] += 1
        if reply:
            if SUGGESTION_REPLY.search(reply) and not COMPLAINT_REPLY.search(reply):
                weak["建议"][rule or "none"] += 1
            elif COMPLAINT_REPLY.search(reply) and not SUGGESTION_REPLY.search(reply):
                weak["反映/投诉/咨询"][rule or "none"] += 1
    total = len(msgs)
    archived = sum(archived_by_set.values())
    print(f"1. 问政留言（真实诉求）被判为政务动态（无需回应）：{archived} / {total:,}")
    for name, _ in MESSAGES:
        print(f"   {name}: {archived_by_set[name]} / {by_set[name]:,}")
    print(f"   其中涉及公交线路、常务会议、政务服务中心、新增/开通/推出等的留言：{topic_archived} / {topic_total:,}")
    for e in archived_examples:
        print(f"   例：{e}")
    fresh = read_messages(data, (FRESH,))
    fa = assessor.assess_texts([(t, x, None, None) for _, t, x, _ in fresh])
    fresh_arch = [(t or x[:40], a.handling_reason) for (_, t, x, _), a in zip(fresh, fa, strict=True)
                  if a.relevant and not a.needs_response]
    print(f"   未参与选词的{FRESH[0]}（{len(fresh):,} 条）被判为政务动态：{len(fresh_arch)}")
    for t, why in fresh_arch[: args.examples]:
        print(f"   例：{t} — {why}")

    # ---- 2: announcements
    posts = demo_posts()
    demo = assessor.assess_texts([(t, x, None, None) for _, _, t, x, _ in posts])
    ann = [(p, a) for p, a in zip(posts, demo, strict=True) if p[4]]
    other = [(p, a) for p, a in zip(posts, demo, strict=True) if not p[4] and a.relevant]
    caught = [p for p, a in ann if clocks.decide(a, p[1])[0] is None]
    wrongly = [p for p, a in other if clocks.decide(a, p[1])[0] is None]
    print(f"2. 演示站政务动态（工作通报）归档：{len(caught)} / {len(ann)}；"
          f"演示站其他政务帖（投诉、回应、辟谣、提问）误归档：{len(wrongly)} / {len(other)}")
    for p, a in ann:
        rule, why = clocks.decide(a, p[1])
        print(f"   {'归档' if rule is None else rule:>12}  {p[2]}" + ("" if rule is None else f"（{why[:60]}）"))
    for p in wrongly:
        print(f"   误归档：{p[2] or p[3][:40]}")
    thuc = []
    with open(data / "news_headline_classification/thucnews_titles_5k.csv", encoding="utf-8", newline="") as fh:
        thuc = [r["title"] for r in csv.DictReader(fh) if r["label_zh"] == "时政"]
    ta = assessor.assess_texts([(t, "", None, None) for t in thuc])
    t_rel = [t for t, a in zip(thuc, ta, strict=True) if a.relevant]
    t_arch = [t for t, a in zip(thuc, ta, strict=True) if a.relevant and not a.needs_response]
    print(f"   THUCNews 时政标题：政务相关 {len(t_rel)} / {len(thuc)}，其中判为政务动态归档 {len(t_arch)}")
    for t in t_arch[: args.examples]:
        print(f"   归档例：{t}")
    kept = [t for t in t_rel if t not in set(t_arch)]
    for t in kept[: args.examples]:
        print(f"   立单例：{t}")

    # ---- 3: clocks of the messages as gov_board posts
    print(f"3. 问政留言按留言板来源选择的时限规则（{total:,} 条）："
          + "，".join(f"{k} {v}" for k, v in rules.most_common()))
    for label, c in weak.items():
        n = sum(c.values())
        print(f"   附件4 答复称{label}的留言 {n} 条：" + "，".join(f"{k} {v}" for k, v in c.most_common()))
    print(f"用时 {time.monotonic() - t_start:.1f} 秒")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
