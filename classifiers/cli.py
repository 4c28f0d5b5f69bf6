"""Commands this package adds to the `yuqing` CLI: ``classify`` (batch) and ``train``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Work on at most this many characters of one post (the rest is noted, not read):
# place resolution and keyword matching are linear, but a 100k-character post is
# almost always pasted junk and must not stall the batch.
MAX_CHARS = 20000
MAX_LINE_BYTES = 2_000_000
_CODE = re.compile(r"^\d{6}$")


@dataclass
class Item:
    line: int
    id: str
    title: str
    text: str
    region: str | None
    notes: list[str]
    engagement: Any = None


class InputError(ValueError):
    def __init__(self, reason: str, rid: str | None = None):
        super().__init__(reason)
        self.rid = rid


def _decode(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), "输入行不是 UTF-8，已按 GB18030 解码"
    except UnicodeDecodeError as e:
        raise InputError(f"无法解码（既不是 UTF-8 也不是 GB18030）：{e.reason}") from None


def _field(obj: dict[str, Any], name: str) -> str:
    v = obj.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InputError(f"字段 {name} 应为字符串，实为 {type(v).__name__}")
    return v


def parse_line(raw: bytes, line_no: int, gazetteer: Any = None) -> Item:
    """One input line → an :class:`Item`, or :class:`InputError` saying why not."""
    if len(raw) > MAX_LINE_BYTES:
        raise InputError(f"行过长（{len(raw)} 字节，上限 {MAX_LINE_BYTES}）")
    line, note = _decode(raw)
    notes = [note] if note else []
    line = line.lstrip("\ufeff").strip()
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"不是合法的 JSON：{e.msg}（第 {e.colno} 列）") from None
    if not isinstance(obj, dict):
        raise InputError(f"应为 JSON 对象，实为 {type(obj).__name__}")
    raw_id = obj.get("id")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise InputError("缺少 id")
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise InputError(f"id 应为字符串或整数，实为 {type(raw_id).__name__}")
    rid = str(raw_id)
    try:
        return _item(obj, rid, line_no, notes, gazetteer)
    except InputError as e:
        raise InputError(str(e), rid) from None


def _item(obj: dict[str, Any], rid: str, line_no: int, notes: list[str], gazetteer: Any) -> Item:
    if "text" not in obj:
        raise InputError("缺少 text 字段")
    title = _field(obj, "title")
    text = _field(obj, "text")
    if not text.strip() and not title.strip():
        raise InputError("text 与 title 均为空，无内容可研判")
    for name, value in (("title", title), ("text", text)):
        if len(value) > MAX_CHARS:
            notes.append(f"{name} 共 {len(value)} 字，仅研判前 {MAX_CHARS} 字")
    title, text = title[:MAX_CHARS], text[:MAX_CHARS]
    # NUL and other control characters (except newline/tab) carry nothing
    title = "".join(c for c in title if c.isprintable() or c in "\n\t")
    text = "".join(c for c in text if c.isprintable() or c in "\n\t")
    region = obj.get("region")
    if region is not None and not isinstance(region, str | int):
        raise InputError(f"region 应为行政区划代码或名称，实为 {type(region).__name__}")
    region_code: str | None = None
    if region is not None and str(region).strip():
        r = str(region).strip()
        if _CODE.match(r):
            region_code = r
        elif gazetteer is not None:
            found = gazetteer.lookup(r)
            if len(found) == 1:
                region_code = found[0].code
            else:
                notes.append(f"region“{r}”{'有多个同名区划' if found else '未找到'}，不作来源地")
    engagement = None
    if isinstance(obj.get("engagement"), dict):
        from stream.contracts import Engagement

        try:
            engagement = Engagement(**obj["engagement"])
        except Exception as e:  # noqa: BLE001 - pydantic's message is the reason
            notes.append(f"engagement 无效，已忽略：{str(e).splitlines()[0]}")
    return Item(line_no, rid, title, text, region_code, notes, engagement)


def result_record(item: Item, a: Any) -> dict[str, Any]:
    place = a.place
    return {
        "id": item.id,
        "line": item.line,
        "relevant": a.relevant,
        "relevance_reason": a.relevance_reason,
        "focus": a.focus,
        "topic": a.topic,
        "topic_reason": a.topic_reason,
        "department": a.department,
        "event_type": a.event_type,
        "event_subtype": a.event_subtype,
        "casualties": a.casualties.model_dump(),
        "severity": a.severity,
        "severity_reason": a.severity_reason,
        "place": {"province": place.province, "city": place.city, "county": place.county, "code": place.code},
        "place_reason": place.reason,
        "responders": [r.model_dump() for r in a.responders],
        "handling_type": a.handling_type,
        "scores": a.scores,
        "model_version": a.model_version,
        **({"notes": item.notes} if item.notes else {}),
    }


def _lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for n, raw in enumerate(fh, start=1):
        if raw.strip():
            yield n, raw


def classify_file(assessor: Any, fin: IO[bytes], fout: IO[str], batch_size: int = 32) -> dict[str, Any]:
    """Assess every line of ``fin`` into ``fout``; returns the summary counts."""
    stats: Counter[str] = Counter()
    topics: Counter[str] = Counter()
    errors: list[str] = []
    pending: list[Item] = []

    def write(rec: dict[str, Any]) -> None:
        fout.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def error(line: int, reason: str, rid: str | None = None) -> None:
        stats["errors"] += 1
        rec: dict[str, Any] = {"line": line, "error": reason}
        if rid is not None:
            rec["id"] = rid
        write(rec)
        errors.append(f"第 {line} 行：{reason}")

    def flush() -> None:
        if not pending:
            return
        try:
            results = assessor.assess_texts([(i.title, i.text, i.region, i.engagement) for i in pending])
        except Exception:  # noqa: BLE001 - fall back to one by one so one bad post cannot sink the batch
            results = []
            for i in pending:
                try:
                    results.append(assessor.assess_texts([(i.title, i.text, i.region, i.engagement)])[0])
                except Exception as e:  # noqa: BLE001
                    results.append(e)
        for item, a in zip(pending, results, strict=True):
            if isinstance(a, Exception):
                error(item.line, f"研判失败：{type(a).__name__}: {a}", item.id)
                continue
            stats["ok"] += 1
            stats["relevant"] += int(a.relevant)
            stats["emergency"] += int(a.is_emergency)
            topics[a.topic or "（无）"] += 1
            write(result_record(item, a))
        pending.clear()

    for n, raw in _lines(fin):
        stats["lines"] += 1
        try:
            pending.append(parse_line(raw, n, assessor.gazetteer))
        except InputError as e:
            flush()  # keep the output in input order
            error(n, str(e), e.rid)
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return {"lines": stats["lines"], "ok": stats["ok"], "errors": stats["errors"], "relevant": stats["relevant"],
            "emergency": stats["emergency"], "topics": dict(topics.most_common()), "error_lines": errors}


def cmd_classify(args: argparse.Namespace) -> int:
    from yuqing.cli import settings_from, setup_logging

    setup_logging("classify", args.verbose)
    in_path = Path(args.input)
    if not in_path.is_file():
        print(f"输入文件不存在：{in_path}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    from classifiers.assess import Assessor

    assessor = Assessor(settings, use_model=not args.rules_only)
    batch = args.batch_size or settings.classifier.batch_size
    t0 = time.monotonic()
    out_ctx = open(args.output, "w", encoding="utf-8") if args.output != "-" else None
    try:
        with open(in_path, "rb") as fin:
            summary = classify_file(assessor, fin, out_ctx or sys.stdout, batch)
    finally:
        if out_ctx is not None:
            out_ctx.close()
    secs = time.monotonic() - t0
    rate = summary["ok"] / secs if secs > 0 else 0.0
    report = sys.stderr if args.output == "-" else sys.stdout
    print(f"研判完成（{assessor.model_version}）：共 {summary['lines']} 行，成功 {summary['ok']}，"
          f"错误 {summary['errors']}；政务相关 {summary['relevant']}，突发事件 {summary['emergency']}；"
          f"用时 {secs:.1f} 秒（{rate:.1f} 条/秒）", file=report)
    if summary["topics"]:
        print("主题分布：" + "，".join(f"{k} {v}" for k, v in summary["topics"].items()), file=report)
    for e in summary["error_lines"][:20]:
        print(f"  {e}", file=report)
    if len(summary["error_lines"]) > 20:
        print(f"  …另有 {len(summary['error_lines']) - 20} 行错误，见输出文件", file=report)
    return 0 if summary["ok"] or not summary["lines"] else 1


def cmd_train(args: argparse.Namespace) -> int:
    from classifiers.train import run

    return run(args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to ``sub``."""
    cl = sub.add_parser("classify", help="批量研判 JSONL 文件中的帖子")
    cl.add_argument("--input", "-i", required=True, help="输入 JSONL（每行 id、title、text、url、source、published_at、region）")
    cl.add_argument("--output", "-o", required=True, help="输出 JSONL（- 为标准输出）")
    cl.add_argument("--batch-size", type=int, default=0, help="模型批大小（默认取 classifier.batch_size）")
    cl.add_argument("--rules-only", action="store_true", help="只用规则，不加载主题模型")
    cl.set_defaults(func=cmd_classify)

    from classifiers.train import add_arguments

    tr = sub.add_parser("train", help="训练主题模型（字级 BERT + TF-IDF），输出到 classifiers/model/")
    add_arguments(tr)
    tr.set_defaults(func=cmd_train)
