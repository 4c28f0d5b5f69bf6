"""Fault-injection matrix: the whole system under kill -9, poison messages and a broker restart.

Runs every stage as its own process (``yuqing stage NAME``, as the supervisor does)
against the demo source on 127.0.0.1 with the shipped configuration, except that
crawling is fast, the demo script is quiet, and every notification channel points
at a local receiver. While posts are published through the demo site:

* each of crawler, classifier, responder and indexer is killed with SIGKILL
  ``--kills`` times (round robin) and started again;
* poison messages are written straight onto ``posts.raw`` (deep nesting, invalid
  UTF-8, wrong types, a 900 KB text) — every one must end in the dead-letter topic
  (or, for a valid oversized post, be stored truncated); one of 3 MB must be
  refused by the producer itself;
* with ``--transport kafka --broker-restart`` the broker is killed with SIGKILL and
  started again on the same port halfway through, and no stage is restarted for it.

Then it waits for the pipeline to go quiet and prints what was published, stored,
duplicated, dead-lettered, which deadlines fired (each must fire exactly once) and
which notices were planned, sent and received (each received at most once).

    .venv/bin/python bench/fault_matrix.py --transport embedded --posts 300 --kills 20
    .venv/bin/python bench/fault_matrix.py --transport kafka --posts 300 --kills 20 --broker-restart
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.contracts import SHANGHAI  # noqa: E402
from stream.tansu import TansuBroker  # noqa: E402
from tests.fixtures.system import System  # noqa: E402
from yuqing.settings import Settings, load_settings  # noqa: E402

KILLED = ("crawler", "classifier", "responder", "indexer")

# (kind, title, text) — citizen complaints in several districts, a government
# work report, and an emergency whose 5 h deadline falls due during the run.
COMPLAINTS = [
    ("forum", "蜀山区{n}小区停水三天无人管", "合肥市蜀山区{n}小区已经停水三天，物业说等通知，老人孩子没法生活，请有关部门尽快处理。"),
    ("forum", "镜湖区锦绣路积水严重{n}", "芜湖市镜湖区锦绣路一下雨就积水，{n}号门口水深过膝，车辆熄火，希望城管部门尽快疏通排水。"),
    ("weibo", "庐阳区{n}工地夜间施工扰民", "合肥市庐阳区{n}工地每晚施工到凌晨两点，噪音太大，投诉多次没有结果。"),
    ("news", "歙县{n}村道路破损严重 村民出行难", "黄山市歙县{n}村通村公路破损严重，坑洼不平，村民反映多次仍未修复。"),
    ("weibo", "包河区{n}小区物业乱收费", "合肥市包河区{n}小区物业擅自上涨物业费，业主质疑收费不透明，要求公开账目。"),
]
WORK_REPORT = ("news", "合肥市召开第{n}次常务会议", "合肥市人民政府召开第{n}次常务会议，研究部署近期重点工作。")
EMERGENCY = (
    "news",
    "镜湖区{n}商场发生火灾 造成12人死亡",
    "芜湖市镜湖区{n}商场今日发生火灾，造成12人死亡、5人受伤，消防部门正在全力救援，事故原因正在调查。",
)


class Receiver:
    """A local HTTP endpoint for every channel: counts what arrives, by idempotency key."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                body["_path"] = self.path
                body["_idem"] = self.headers.get("Idempotency-Key")
                with outer.lock:
                    outer.bodies.append(body)
                out = b'{"errcode": 0, "code": 0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _configure(cfg: Path, receiver: Receiver, prefix: str) -> None:
    def edit(name: str, fn) -> None:
        p = cfg / name
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        fn(data)
        p.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    def settings(d: dict) -> None:
        d["demo_site"]["publish_every_s"] = 3600
        d["transport"]["topic_prefix"] = prefix
        d["transport"].setdefault("kafka", {})["session_timeout_ms"] = 6000

    def sources(d: dict) -> None:
        for s in d.get("sources", []):
            if "every_s" in s:
                s["every_s"] = 2
            if isinstance(s.get("schedule"), dict) and "every_s" in s["schedule"]:
                s["schedule"]["every_s"] = 2

    def notify(d: dict) -> None:
        d["enabled"] = True
        d["base_url"] = "http://127.0.0.1:8000"
        # Every channel becomes a webhook to the receiver: recipients, routing and
        # escalation stay exactly as shipped.
        d["channels"] = {
            name: {"kind": "webhook", "url": f"http://127.0.0.1:{receiver.port}/{name}", "rate_per_minute": 600}
            for name in d["channels"]
        }
        d["quiet_hours"]["applies_to"] = []
        d["retry"] = {"backoff_s": [1, 2, 5, 10]}
        d["claim_lease_s"] = 10

    edit("settings.yaml", settings)
    edit("sources.yaml", sources)
    edit("notify.yaml", notify)
    crawled = yaml.safe_load((cfg / "sources.yaml").read_text(encoding="utf-8"))["sources"]
    if any(s.get("schedule", {}).get("every_s") != 2 for s in crawled):
        raise SystemExit("sources.yaml: could not speed up crawling")


def _poison(sut: System) -> list[tuple[str, bytes]]:
    """Messages that must each end in the dead-letter topic (or, the last, stored truncated)."""
    base = {
        "schema": "raw_post",
        "v": 1,
        "post_id": f"fm-poison-{uuid.uuid4().hex[:8]}",
        "source_id": "poison",
        "source_kind": "news",
        "url": "http://127.0.0.1/poison",
        "title": "超长正文",
        "text": "",
        "published_at": datetime.now(SHANGHAI).isoformat(),
        "fetched_at": datetime.now(SHANGHAI).isoformat(),
    }
    # About 900 KB of valid text: the transport accepts it (limits.max_message_bytes is
    # 1 MiB) and the classifier must cut it to limits.max_text_chars.
    huge = dict(base, text="合肥市蜀山区小区停水。" * 27_000)
    return [
        ("deep nesting", b"[" * 100_000),
        ("invalid UTF-8", b'{"schema": "raw_post", "v": 1, "text": "\xff\xfe\xfa"}'),
        ("wrong types", json.dumps(dict(base, post_id=12345, published_at=[1, 2])).encode()),
        ("not JSON", b"\x00\x01\x02 hello"),
        ("huge string key", json.dumps({"x" * 900_000: 1}).encode()),
        ("too large for the transport", json.dumps({"x" * 3_000_000: 1}).encode()),
        ("oversized valid post", json.dumps(huge, ensure_ascii=False).encode("utf-8")),
    ]


def _send_poison(settings_dir: Path, env: dict[str, str], msgs: list[tuple[str, bytes]]) -> None:
    from stream import topics as T
    from stream.factory import open_transport

    s = _settings(settings_dir, env)
    t = open_transport(s)
    try:
        p = t.producer()
        for _, value in msgs:
            try:
                p.send(T.qualified(T.RAW_POSTS, s.transport.topic_prefix or ""), value)
                p.flush()
            except Exception as e:  # noqa: BLE001 - a refused send is a figure, not a crash
                print(f"  poison send refused by the transport: {type(e).__name__}: {str(e)[:120]}")
        p.close()
    finally:
        t.close()


def _db(sut: System) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{sut.data_dir / 'yuqing.db'}?mode=ro", uri=True, timeout=30)


def _stored_marks(sut: System, tag: str) -> Counter[str]:
    try:
        with _db(sut) as db:
            rows = db.execute("SELECT title, text FROM posts WHERE text LIKE ?", (f"%{tag}-%",)).fetchall()
    except sqlite3.Error:
        return Counter()
    marks: Counter[str] = Counter()
    for _title, text in rows:
        i = text.find(f"{tag}-")
        marks[text[i : i + len(tag) + 6]] += 1
    return marks


def _count_marked(sut: System, tag: str) -> tuple[int, int]:
    marks = _stored_marks(sut, tag)
    return sum(marks.values()), len(marks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transport", choices=["embedded", "kafka"], default="embedded")
    ap.add_argument("--posts", type=int, default=300)
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs per killed stage")
    ap.add_argument("--rate", type=float, default=2.0, help="posts published per second")
    ap.add_argument("--broker-restart", action="store_true")
    ap.add_argument("--settle-s", type=float, default=300, help="longest wait for the pipeline to go quiet")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    rnd = random.Random(7)

    work = Path(tempfile.mkdtemp(prefix="yuqing-faults-"))
    cfg, data = work / "config", work / "var"
    shutil.copytree(ROOT / "config", cfg)
    data.mkdir()
    receiver = Receiver()
    prefix = f"fm{uuid.uuid4().hex[:6]}."
    _configure(cfg, receiver, prefix)

    broker: TansuBroker | None = None
    env = {"YUQING_TRANSPORT": args.transport, "YUQING_CONFIG_DIR": str(cfg)}
    if args.transport == "kafka":
        broker = TansuBroker().start()
        env["YUQING_KAFKA_BOOTSTRAP"] = broker.bootstrap
    sut = System(cfg, data, env)
    tag = f"FM{uuid.uuid4().hex[:4].upper()}"
    published: list[str] = []
    kills = Counter()
    restarts_of_broker = 0
    restart_at = 0
    t_start = time.monotonic()
    try:
        sut.start("demo-site")
        sut.wait_up(sut.demo)
        for name in ("web", "classifier", "responder", "indexer", "crawler"):
            sut.start(name)
        sut.wait_up(sut.web, 90)
        pids_before = {n: p.pid for n, p in sut.procs.items()}

        stop = threading.Event()
        kill_plan = [n for _ in range(args.kills) for n in KILLED]
        duration = args.posts / args.rate
        kill_every = duration / max(len(kill_plan), 1)

        def killer() -> None:
            for name in kill_plan:
                if stop.wait(kill_every * rnd.uniform(0.5, 1.0)):
                    return
                sut.kill9(name)
                kills[name] += 1
                time.sleep(rnd.uniform(0.2, 1.5))
                sut.start(name)

        kt = threading.Thread(target=killer, daemon=True)
        kt.start()
        poison = _poison(sut)
        for i in range(args.posts):
            mark = f"{tag}-{i:05d}"
            if i % 50 == 10:
                kind, title, text = EMERGENCY
                # The first report 4 h 57 min old: its 5 h deadline is due about three
                # minutes from now. Later reports are new: on a list ordered by time
                # (the news list shows 50) a backdated one is buried below the newer
                # posts and no crawl reads it (an earlier run lost one so).
                published_at = (
                    (datetime.now(SHANGHAI) - timedelta(hours=4, minutes=57)).isoformat() if i == 10 else None
                )
            elif i % 25 == 3:
                kind, title, text = WORK_REPORT
                published_at = None
            else:
                kind, title, text = rnd.choice(COMPLAINTS)
                # Published now, as on a real source: a feed ordered by time (the
                # Weibo-like one shows 30 cards) buries a post published late with
                # an old time below what any crawl reads (a first version of this
                # script lost 90 of 300 posts so, none of them after the crawler).
                published_at = None
            n = i // 50 + 1
            body = {"kind": kind, "title": title.format(n=n), "text": text.format(n=n) + f" 编号 {mark} 。"}
            if published_at:
                body["published_at"] = published_at
            r = httpx.post(sut.demo + "/_demo/publish", json=body, timeout=10)
            r.raise_for_status()
            published.append(mark)
            # After a broker restart, so the in-memory broker does not take them with it.
            if i == (2 * args.posts // 3 if args.broker_restart else args.posts // 3):
                print(f"[{time.monotonic() - t_start:5.0f}s] sending {len(poison)} poison messages")
                _send_poison(cfg, {**env, "YUQING_DATA_DIR": str(data)}, poison)
            if broker is not None and args.broker_restart and i == args.posts // 2:
                print(f"[{time.monotonic() - t_start:5.0f}s] broker kill -9 and restart on :{broker.port}")
                assert broker.proc is not None
                broker.proc.kill()
                broker.proc.wait()
                time.sleep(2)
                broker.start()
                restarts_of_broker += 1
                restart_at = len(published)
            time.sleep(1 / args.rate)
        stop.set()
        kt.join()
        print(f"[{time.monotonic() - t_start:5.0f}s] published {len(published)}; kills {dict(kills)}")

        # Quiet: the number of marked posts stored did not change for 30 s.
        last, last_change = -1, time.monotonic()
        deadline = time.monotonic() + args.settle_s
        while time.monotonic() < deadline:
            rows, distinct = _count_marked(sut, tag)
            if rows != last:
                last, last_change = rows, time.monotonic()
            if distinct >= len(published) or time.monotonic() - last_change > 30:
                break
            time.sleep(2)
        # Let the emergency deadlines fall due and their notices go out.
        time.sleep(max(0.0, 200 - (time.monotonic() - t_start)))
        time.sleep(30)
        rows, distinct = _count_marked(sut, tag)
        alive = {n: p.poll() is None for n, p in sut.procs.items()}

        with _db(sut) as db:
            deadlines_fired = db.execute("SELECT id, ticket_id, milestone FROM deadlines WHERE fired_at IS NOT NULL").fetchall()
            outbox = Counter(k for (k,) in db.execute("SELECT key FROM outbox WHERE kind LIKE '%breach%'"))
            outbox_all = db.execute("SELECT kind, count(*) FROM outbox GROUP BY kind").fetchall()
            notices = db.execute("SELECT kind, count(*), sum(recipients = 0) FROM notices GROUP BY kind").fetchall()
            deliveries = db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
            tickets = db.execute("SELECT count(*) FROM tickets").fetchone()[0]
            emergencies = db.execute(
                "SELECT e.id, e.title, e.post_count FROM events e WHERE e.is_emergency"
            ).fetchall()
            poison_stored = db.execute(
                "SELECT count(*), max(length(text)) FROM posts WHERE post_id LIKE 'fm-poison-%'"
            ).fetchone()
        dl = _dead_letters(cfg, {**env, "YUQING_DATA_DIR": str(data)})
        # A post never stored: did the crawler send it (then the pipeline lost it)
        # or did no crawl read it (a coverage gap of the source, not a loss)?
        lost = sorted(set(published) - set(_stored_marks(sut, tag)))
        on_raw = _marks_on_raw(cfg, {**env, "YUQING_DATA_DIR": str(data)}, set(lost)) if lost else set()

        received = Counter(b.get("_idem") or b.get("key") for b in receiver.bodies)
        print()
        print(f"== fault matrix: transport {args.transport}, broker restarts {restarts_of_broker}")
        print(f"posts published          {len(published)}")
        print(f"posts stored (rows)      {rows}")
        print(f"posts stored (distinct)  {distinct}")
        if restarts_of_broker:
            # The restart of an in-memory broker empties posts.raw: a post published
            # before it can no longer be told "never crawled" from "lost in the broker".
            before = [m for m in lost if published.index(m) < restart_at]
            print(f"lost                     {len(lost)}: {len(before)} published before the broker restart "
                  f"(memory storage loses what it held), {len(lost) - len(before)} after it "
                  f"{[m for m in lost if m not in before][:10]}")
        else:
            print(f"lost                     {len(lost)}: {len(on_raw)} of them on posts.raw "
                  f"(lost in the pipeline), {len(lost) - len(on_raw)} never crawled {lost[:10]}")
        print(f"duplicates               {rows - distinct}")
        print(f"stage kills (SIGKILL)    {dict(kills)}")
        print(f"stages alive at end      {alive}")
        print(f"stage pids replaced only by the killer: {sorted(n for n in pids_before if n not in KILLED and sut.procs.get(n) and sut.procs[n].pid != pids_before[n])}")
        print(f"poison sent              {len(poison)}: {[name for name, _ in poison]}")
        print(f"dead letters             {len(dl)}: {Counter(r for r in dl).most_common()}")
        print(f"oversized post stored    {poison_stored[0]} (longest stored text {poison_stored[1]} chars)")
        print(f"tickets                  {tickets}")
        print(f"emergency events         {[(e[0], e[1][:24], e[2]) for e in emergencies]}")
        print(f"deadlines fired          {len(deadlines_fired)}; breach outbox rows per key: "
              f"{Counter(outbox.values())} (1 = fired exactly once)")
        print(f"outbox by kind           {outbox_all}")
        print(f"notices (kind, n, unrouted) {notices}")
        print(f"deliveries by status     {deliveries}")
        print(f"messages received        {len(receiver.bodies)}, distinct keys {len(received)}, "
              f"received twice {sum(1 for v in received.values() if v > 1)}")
        print(f"wall time                {time.monotonic() - t_start:.0f} s")
    finally:
        sut.stop_all()
        receiver.close()
        if broker is not None:
            broker.stop()
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _settings(cfg: Path, env: dict[str, str]) -> Settings:
    """The stages' settings, as the environment ``env`` makes them."""
    import os

    old = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings(cfg)
    finally:
        os.environ.clear()
        os.environ.update(old)


def _marks_on_raw(cfg: Path, env: dict[str, str], marks: set[str]) -> set[str]:
    """Which of ``marks`` a crawler put on posts.raw (read from the start)."""
    from stream import topics as T
    from stream.factory import open_transport
    from stream.stage import dead_letters as read_from_start

    s = _settings(cfg, env)
    t = open_transport(s)
    try:
        recs = read_from_start(t, T.qualified(T.RAW_POSTS, s.transport.topic_prefix or ""), timeout_s=60, idle_s=3)
    finally:
        t.close()
    found = set()
    for r in recs:
        text = (r.value or b"").decode("utf-8", "replace")
        found |= {m for m in marks if m in text}
    return found


def _dead_letters(cfg: Path, env: dict[str, str]) -> list[str]:
    from stream import topics as T
    from stream.factory import open_transport
    from stream.stage import dead_letters

    s = _settings(cfg, env)
    t = open_transport(s)
    try:
        recs = dead_letters(t, T.qualified(T.DEAD_LETTER, s.transport.topic_prefix or ""), timeout_s=20)
    finally:
        t.close()
    out = []
    for r in recs:
        reason = dict(r.headers).get(T.DLQ_REASON, b"").decode("utf-8", "replace")
        out.append(reason.split(":")[0][:40])
    return out


if __name__ == "__main__":
    main()
