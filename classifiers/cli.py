"""Commands this package adds to the `yuqing` CLI: ``classify`` (batch) and ``train``.

``classify`` reads the input in chunks of a few model batches; with
``--workers N`` (default: one per CPU) N processes each load the Assessor
once and assess whole chunks, and the results are written in input order, so
the output is the same as with ``--workers 1``. A bad line gets an error
record and never stops the run; a worker that dies is replaced and its chunk
retried once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Work on at most this many characters of one post (the rest is noted, not read):
# place resolution and keyword matching are linear, but a 100k-character post is
# almost always pasted junk and must not stall the batch.
MAX_CHARS = 20000
MAX_LINE_BYTES = 2_000_000
_CODE = re.compile(r"^\d{6}$")
SOURCE_KINDS = ("news", "forum", "weibo", "comments", "gov_board", "official")  # stream.contracts.SourceKind


@dataclass
class Item:
    line: int
    id: str
    title: str
    text: str
    region: str | None
    notes: list[str]
    engagement: Any = None
    # The stream contract's source kind (news, forum, weibo, comments, gov_board,
    # official); it chooses the clock rule (config/clocks.yaml). None: not given.
    source_kind: str | None = None


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


def _printable(s: str) -> str:
    """``s`` without its non-printable characters but for newline and tab."""
    if s.isprintable() or s.replace("\n", "").replace("\t", "").isprintable():
        return s  # the usual case, checked in C
    return "".join(c for c in s if c.isprintable() or c in "\n\t")


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
    title, text = _printable(title), _printable(text)
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
    source_kind = obj.get("source_kind")
    if source_kind is not None and not (isinstance(source_kind, str) and source_kind.strip() == ""):
        if not isinstance(source_kind, str) or source_kind.strip() not in SOURCE_KINDS:
            shown = source_kind[:40] if isinstance(source_kind, str) else type(source_kind).__name__
            raise InputError(f"source_kind「{shown}」无效，应为 {'、'.join(SOURCE_KINDS)} 之一")
        source_kind = source_kind.strip()
    else:
        source_kind = None
    engagement = None
    if isinstance(obj.get("engagement"), dict):
        from stream.contracts import Engagement

        try:
            engagement = Engagement(**obj["engagement"])
        except Exception as e:  # noqa: BLE001 - pydantic's message is the reason
            notes.append(f"engagement 无效，已忽略：{str(e).splitlines()[0]}")
    return Item(line_no, rid, title, text, region_code, notes, engagement, source_kind)


def attach_clocks(assessor: Any) -> Any:
    """Load the clock rules of the assessor's config once (a bad clocks.yaml stops the run
    with file, line and field, like any other config file)."""
    if getattr(assessor, "clocks", None) is None:
        from responder.clocks import load_clocks

        assessor.clocks = load_clocks(assessor.settings.config_dir)
    return assessor.clocks


def result_record(item: Item, a: Any, clocks: Any = None) -> dict[str, Any]:
    place = a.place
    rule, why = clocks.decide(a, item.source_kind) if clocks is not None else (None, "")
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
        "handling_reason": a.handling_reason,
        "needs_response": a.needs_response,
        "source_kind": item.source_kind,
        "clock_rule": rule,
        "clock_reason": why,
        "scores": a.scores,
        "model_version": a.model_version,
        **({"notes": item.notes} if item.notes else {}),
    }


def _lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for n, raw in enumerate(fh, start=1):
        if raw.strip():
            yield n, raw


def chunk_lines(batch_size: int) -> int:
    """Non-blank input lines per chunk: a few model batches (enough work to be worth a process hop)."""
    return max(1, batch_size) * 4


def _chunks(fh: IO[bytes], size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for n, raw in _lines(fh):
        chunk.append((n, raw))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class ChunkResult:
    """The output of one chunk of input lines: JSON lines in input order, and counts."""

    out: list[str] = field(default_factory=list)
    lines: int = 0
    ok: int = 0
    relevant: int = 0
    emergency: int = 0
    topics: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    model_version: str = ""
    fatal: str | None = None  # the worker could not load the rules: nothing was assessed


def assess_lines(assessor: Any, lines: Sequence[tuple[int, bytes]], batch_size: int = 32) -> ChunkResult:
    """Parse and assess ``(line number, raw line)`` pairs; a bad line gets an error record, never stops the rest."""
    res = ChunkResult(model_version=assessor.model_version)
    clocks = attach_clocks(assessor)
    pending: list[Item] = []

    def write(rec: dict[str, Any]) -> None:
        res.out.append(json.dumps(rec, ensure_ascii=False))

    def error(line: int, reason: str, rid: str | None = None) -> None:
        res.errors.append(f"第 {line} 行：{reason}")
        rec: dict[str, Any] = {"line": line, "error": reason}
        if rid is not None:
            rec["id"] = rid
        write(rec)

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
            res.ok += 1
            res.relevant += int(a.relevant)
            res.emergency += int(a.is_emergency)
            res.topics[a.topic or "（无）"] += 1
            write(result_record(item, a, clocks))
        pending.clear()

    for n, raw in lines:
        res.lines += 1
        try:
            pending.append(parse_line(raw, n, assessor.gazetteer))
        except InputError as e:
            flush()  # keep the output in input order
            error(n, str(e), e.rid)
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return res


class _Summary:
    def __init__(self, fout: IO[str]):
        self.fout = fout
        self.total = ChunkResult()

    def add(self, res: ChunkResult) -> None:
        t = self.total
        if res.out:
            self.fout.write("\n".join(res.out) + "\n")
        t.lines += res.lines
        t.ok += res.ok
        t.relevant += res.relevant
        t.emergency += res.emergency
        t.topics.update(res.topics)
        t.errors += res.errors
        t.model_version = t.model_version or res.model_version

    def result(self) -> dict[str, Any]:
        t = self.total
        return {"lines": t.lines, "ok": t.ok, "errors": len(t.errors), "relevant": t.relevant,
                "emergency": t.emergency, "topics": dict(t.topics.most_common()), "error_lines": t.errors,
                "model_version": t.model_version}


def classify_file(assessor: Any, fin: IO[bytes], fout: IO[str], batch_size: int = 32) -> dict[str, Any]:
    """Assess every line of ``fin`` into ``fout`` in this process; returns the summary counts."""
    summary = _Summary(fout)
    for chunk in _chunks(fin, chunk_lines(batch_size)):
        summary.add(assess_lines(assessor, chunk, batch_size))
    return summary.result()


# ---------------------------------------------------------------------------
# Several processes: each loads the Assessor once and assesses whole chunks;
# the parent reads the input, hands out chunks and writes results in input order.

MAX_WORKERS = 8
_worker_assessor: Any = None
_worker_error: str | None = None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """One process per usable CPU, at most :data:`MAX_WORKERS`."""
    return min(usable_cpus(), MAX_WORKERS)


def _watch_parent(parent: int) -> None:
    """End this worker when its parent is gone (killed outright, it cannot shut the pool down)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(settings: Any, use_model: bool, threads: int) -> None:
    """Load the Assessor once in a worker process (an error is kept and reported per chunk)."""
    global _worker_assessor, _worker_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops handing out chunks
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    try:
        from classifiers.assess import Assessor

        _worker_assessor = Assessor(settings, use_model=use_model)
        attach_clocks(_worker_assessor)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which stops
        from yuqing.configfile import ConfigError

        _worker_error = f"配置错误，无法启动：\n{e}" if isinstance(e, ConfigError) else f"加载研判规则失败：{type(e).__name__}: {e}"


def _work(lines: list[tuple[int, bytes]], batch_size: int) -> ChunkResult:
    if _worker_assessor is None:
        return ChunkResult(fatal=_worker_error or "研判进程未能加载规则")
    return assess_lines(_worker_assessor, lines, batch_size)


class FatalError(RuntimeError):
    """Workers cannot load the rules, or keep dying: nothing more can be assessed."""


class WorkerPool:
    """Processes that each hold an Assessor; :meth:`map` keeps the input order."""

    max_restarts = 3

    def __init__(self, settings: Any, workers: int, *, use_model: bool = True):
        self.settings = settings
        self.workers = workers
        self.use_model = use_model
        self.restarts = 0
        self._ex: ProcessPoolExecutor | None = None
        self._start()

    def _start(self) -> None:
        threads = max(1, usable_cpus() // self.workers)
        self._ex = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(self.settings, self.use_model, threads),
        )

    def _restart(self, broken: ProcessPoolExecutor | None) -> None:
        if broken is not self._ex:
            return  # already replaced
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise FatalError(f"研判进程已异常退出 {self.restarts} 次，停止运行")
        if self._ex is not None:
            self._ex.shutdown(wait=False, cancel_futures=True)
        self._start()

    def _submit(self, chunk: list[tuple[int, bytes]], batch_size: int) -> tuple[Any, Future[ChunkResult]]:
        ex = self._ex
        assert ex is not None
        try:
            return ex, ex.submit(_work, chunk, batch_size)
        except BrokenProcessPool:
            self._restart(ex)
            assert self._ex is not None
            return self._ex, self._ex.submit(_work, chunk, batch_size)

    def map(self, chunks: Iterable[list[tuple[int, bytes]]], batch_size: int) -> Iterator[ChunkResult]:
        """Results of ``chunks`` in order, at most two chunks per worker in flight.

        A worker that dies (killed, out of memory) breaks the pool: the pool is
        restarted (at most :attr:`max_restarts` times, then :class:`FatalError`)
        and each affected chunk retried once; a chunk that fails again gets an
        error record per line, and the run goes on.
        """
        inflight: deque[tuple[list[tuple[int, bytes]], Any, Future[ChunkResult]]] = deque()

        def settle() -> ChunkResult:
            chunk, ex, fut = inflight.popleft()
            try:
                return fut.result()
            except BrokenProcessPool:
                self._restart(ex)
                ex, fut = self._submit(chunk, batch_size)
                try:
                    return fut.result()
                except BrokenProcessPool as e:
                    self._restart(ex)
                    return _failed(chunk, e)
                except Exception as e:  # noqa: BLE001 - the run goes on
                    return _failed(chunk, e)
            except Exception as e:  # noqa: BLE001 - e.g. a result that could not be pickled
                return _failed(chunk, e)

        for chunk in chunks:
            inflight.append((chunk, *self._submit(chunk, batch_size)))
            if len(inflight) >= 2 * self.workers:
                yield settle()
        while inflight:
            yield settle()

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _failed(chunk: Sequence[tuple[int, bytes]], e: BaseException) -> ChunkResult:
    res = ChunkResult()
    for n, _raw in chunk:
        res.lines += 1
        reason = f"研判进程失败：{type(e).__name__}: {e}"
        res.errors.append(f"第 {n} 行：{reason}")
        res.out.append(json.dumps({"line": n, "error": reason}, ensure_ascii=False))
    return res


def classify_parallel(
    settings: Any, fin: IO[bytes], fout: IO[str], batch_size: int = 32, workers: int = 2, *, use_model: bool = True
) -> dict[str, Any]:
    """:func:`classify_file` in ``workers`` processes; the output is the same, line for line."""
    summary = _Summary(fout)
    old_term = None
    if threading.current_thread() is threading.main_thread():
        # `kill` as well as Ctrl-C: leave through the pool's shutdown, not around it
        old_term = signal.signal(signal.SIGTERM, _terminated)
    try:
        with WorkerPool(settings, workers, use_model=use_model) as pool:
            for res in pool.map(_chunks(fin, chunk_lines(batch_size)), batch_size):
                if res.fatal:
                    raise FatalError(res.fatal)
                summary.add(res)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return summary.result()


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_classify(args: argparse.Namespace) -> int:
    from yuqing.cli import settings_from, setup_logging

    setup_logging("classify", args.verbose)
    in_path = Path(args.input)
    if not in_path.is_file():
        print(f"输入文件不存在：{in_path}", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print(f"--workers 应为正整数，实为 {args.workers}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    batch = args.batch_size or settings.classifier.batch_size
    workers = args.workers or default_workers()
    if workers > 1:
        # one chunk of input is not worth starting processes for
        with open(in_path, "rb") as fh:
            if sum(1 for _ in itertools.islice(_lines(fh), chunk_lines(batch) + 1)) <= chunk_lines(batch):
                workers = 1
    t0 = time.monotonic()
    assessor = None
    if workers == 1:
        from classifiers.assess import Assessor

        assessor = Assessor(settings, use_model=not args.rules_only)
        attach_clocks(assessor)
    out_ctx = open(args.output, "w", encoding="utf-8") if args.output != "-" else None
    try:
        with open(in_path, "rb") as fin:
            if assessor is not None:
                summary = classify_file(assessor, fin, out_ctx or sys.stdout, batch)
                summary["model_version"] = assessor.model_version
            else:
                summary = classify_parallel(settings, fin, out_ctx or sys.stdout, batch, workers,
                                            use_model=not args.rules_only)
    except FatalError as e:
        print(str(e), file=sys.stderr)
        return 2
    finally:
        if out_ctx is not None:
            out_ctx.close()
    secs = time.monotonic() - t0
    rate = summary["ok"] / secs if secs > 0 else 0.0
    report = sys.stderr if args.output == "-" else sys.stdout
    print(f"研判完成（{summary['model_version']}）：共 {summary['lines']} 行，成功 {summary['ok']}，"
          f"错误 {summary['errors']}；政务相关 {summary['relevant']}，突发事件 {summary['emergency']}；"
          f"{workers} 个进程，用时 {secs:.1f} 秒（含加载规则与模型，{rate:.1f} 条/秒）", file=report)
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
    cl.add_argument("--input", "-i", required=True, help="输入 JSONL（每行 id、title、text、url、source、published_at、region，"
                         "可选 source_kind：news、forum、weibo、comments、gov_board、official，决定时限规则）")
    cl.add_argument("--output", "-o", required=True, help="输出 JSONL（- 为标准输出）")
    cl.add_argument("--batch-size", type=int, default=0, help="模型批大小（默认取 classifier.batch_size）")
    cl.add_argument("--rules-only", action="store_true", help="只用规则，不加载主题模型")
    cl.add_argument("--workers", type=int, default=None,
                    help=f"研判进程数（默认为可用 CPU 核数，至多 {MAX_WORKERS}；1 为单进程；"
                         "输入不足一块（4 个批）时只用单进程；输出与进程数无关）")
    cl.set_defaults(func=cmd_classify)

    from classifiers.train import add_arguments

    tr = sub.add_parser("train", help="训练主题模型（字级 BERT + TF-IDF），输出到 classifiers/model/")
    add_arguments(tr)
    tr.set_defaults(func=cmd_train)
