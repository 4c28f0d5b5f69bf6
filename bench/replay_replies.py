"""Replay real message-board replies through the statutory clocks.

Reads ``../shared/data/gov_messages_tipdm2020/messages_with_official_replies_附件4_half.csv``
(留言时间 → 答复时间, times in Asia/Shanghai) and treats every message as

* a ``suggestion`` item (反馈处理意见: 7 working days), and
* a ``complaint`` item (答复: 15 working days),

computing each deadline with the responder's own code
(:meth:`responder.clocks.Clocks.deadlines_for`, config/clocks.yaml and
workdays.yaml). Prints the on-time rate, the median time to reply (hours
and working days) and the breach count for each rule.

Then checks every on-time/late verdict against an independent computation
that does not use the clock code: ``numpy.busday_count`` over the official
holiday list (chinese_calendar's raw ``holidays`` table) plus the official
make-up working days (its raw ``workdays`` table) that fall on weekends. A
reply on day D is on time iff D is on or before the N-th working day after
the day of the message, i.e. iff (working days in (T0, D]) < N, or == N
and D is itself a working day. Prints how many verdicts agree.

    .venv/bin/python bench/replay_replies.py [--csv PATH]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from responder.clocks import SHANGHAI, load_clocks  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared/data/gov_messages_tipdm2020/messages_with_official_replies_附件4_half.csv"
RULES = [("suggestion", "反馈处理意见", 7), ("complaint", "答复", 15)]


def _parse(s: str) -> datetime:
    return datetime.strptime(s.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)


class Independent:
    """Working-day arithmetic with numpy only (no responder code)."""

    def __init__(self) -> None:
        self.holidays = np.array(sorted(chinese_calendar.holidays), dtype="datetime64[D]")
        self.makeup = np.array(
            sorted(d for d in chinese_calendar.workdays if d.weekday() >= 5), dtype="datetime64[D]"
        )
        self._holiday_set = set(chinese_calendar.holidays)
        self._makeup_set = set(chinese_calendar.workdays)

    def is_workday(self, d: date) -> bool:
        if d in self._makeup_set:
            return True
        return d.weekday() < 5 and d not in self._holiday_set

    def workdays_between(self, start: date, end: date) -> int:
        """Working days in (start, end]."""
        if end <= start:
            return 0
        a = np.datetime64(start + timedelta(days=1), "D")
        b = np.datetime64(end + timedelta(days=1), "D")
        n = int(np.busday_count(a, b, holidays=self.holidays))
        n += int(np.count_nonzero((self.makeup >= a) & (self.makeup < b)))
        return n

    def on_time(self, t0: datetime, reply: datetime, n: int) -> bool:
        d0, d = t0.date(), reply.date()
        if d <= d0:
            return True
        k = self.workdays_between(d0, d)
        return k < n or (k == n and self.is_workday(d))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = ap.parse_args()
    if not args.csv.exists():
        print(f"数据文件不存在：{args.csv}", file=sys.stderr)
        return 2
    with open(args.csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    items = []
    skipped = 0
    for r in rows:
        try:
            items.append((_parse(r["留言时间"]), _parse(r["答复时间"])))
        except (ValueError, KeyError):
            skipped += 1
    clocks = load_clocks(ROOT / "config")
    ind = Independent()
    print(f"留言 {len(rows)} 条，可用 {len(items)} 条（时间无法解析 {skipped} 条）")
    negative = sum(1 for t0, rep in items if rep < t0)
    print(f"答复时间早于留言时间：{negative} 条（计为按时）")
    hours = [(rep - t0).total_seconds() / 3600 for t0, rep in items]
    wdays = [ind.workdays_between(t0.date(), rep.date()) for t0, rep in items]
    print(f"答复用时中位数：{statistics.median(hours):.1f} 小时，{statistics.median(wdays)} 个工作日；"
          f"90分位（最近秩）：{sorted(wdays)[max(0, -(-9 * len(wdays) // 10) - 1)]} 个工作日")
    all_agree = True
    for rule, milestone, n in RULES:
        started = time.perf_counter()
        verdicts = []
        for t0, rep in items:
            ((name, due),) = clocks.deadlines_for(rule, t0)
            assert name == milestone
            verdicts.append(rep <= due)
        took = time.perf_counter() - started
        on_time = sum(verdicts)
        breaches = len(verdicts) - on_time
        indep = [ind.on_time(t0, rep, n) for t0, rep in items]
        agree = sum(a == b for a, b in zip(verdicts, indep, strict=True))
        all_agree &= agree == len(items)
        print(
            f"{rule}（{milestone}，{n}个工作日）：按时 {on_time}/{len(items)} = {on_time / len(items):.2%}，"
            f"超时 {breaches} 条；独立计算（numpy.busday_count）一致 {agree}/{len(items)}"
            f"{'' if agree == len(items) else '  ← 不一致！'}（时钟计算 {took * 1000:.0f} ms）"
        )
        if agree != len(items):
            for (t0, rep), a, b in zip(items, verdicts, indep, strict=True):
                if a != b:
                    print(f"  不一致：留言 {t0} 答复 {rep} 时钟={a} 独立={b}")
                    break
    print("结论：" + ("两种计算完全一致" if all_agree else "存在不一致，见上"))
    return 0 if all_agree else 1


if __name__ == "__main__":
    sys.exit(main())
