"""Grouping evaluation: pairs of posts, the same incident or not, and what the responder decided.

    .venv/bin/python bench/grouping_eval.py build --out /tmp/grouping-eval.jsonl.gz
    .venv/bin/python bench/grouping_eval.py run /tmp/grouping-eval.jsonl.gz [--code DIR] [--show 5]

``build`` makes labelled posts, assesses them with the real Assessor (rules and
the committed topic model, as the classifier stage does) and writes them with
their labels; ``run`` feeds each set to ``responder.service.handle_batch`` on a
fresh SQLite store and scores the events it made against the labels:
**pairwise precision** (of the pairs of posts put in one event, the share that
are one incident) and **recall** (of the pairs that are one incident, the share
put in one event). A post the responder left out of every event (irrelevant)
is in no pair. ``--code DIR`` runs the responder of another source tree on the
same assessed posts, e.g. the commit before a change::

    git worktree add /tmp/old-grouping <commit>
    .venv/bin/python bench/grouping_eval.py run /tmp/grouping-eval.jsonl.gz --code /tmp/old-grouping

The sets, and why their labels hold:

* ``demo`` — the demo site's stories (``yuqing/demo_site/stories.py``, written
  for this project), one post each (replies left out; reposts keep their
  ``parent_id``), ten minutes apart in a seeded order. Incidents: the
  stories' ``group`` for the emergencies; for the rest, :data:`DEMO_INCIDENTS`,
  read by hand (the same complaint retold on forum and Weibo, a county's
  answer to it). Pairs whose identity is unclear are left out
  (:data:`DEMO_UNCLEAR`).
* ``cec`` — the CEC emergency reports (``../shared/data/emergency_events_cec``):
  every report as news, as a Weibo summary (its first sentences, no title)
  and as a forum retelling (sentences dropped, title cut), an incident of
  each category a day. A report is one incident (the corpus annotates
  one emergency per report); a few incidents were reported several times and
  are one incident across reports (:data:`CEC_SAME_INCIDENT`: the reports'
  own dates, places and casualty figures agree).
* ``messages`` — citizen messages to the A市 board
  (``gov_messages_tipdm2020/hot_messages_with_votes_附件3.csv``): the estates
  that drew many messages, each message labelled by hand with the problem
  it is about (:data:`MESSAGE_PROBLEMS`: one problem of one estate is one
  incident; the same estate's other problems are other incidents).
* ``replies`` — messages with their official replies
  (``messages_with_official_replies_附件4_half.csv``): a message and its reply
  are one incident (the same thread); the reply is given *without* its
  ``parent_id``, so only its content can join it to the message.

Every set runs twice: with the places the classifier resolved, and with every
post moved into one county (``one_district``), where a shared place can no
longer tell incidents apart and only what happened can. Nothing of the
shared data is written anywhere but the ``--out`` file.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

# The demo's non-emergency stories that tell one incident (a story not named here is its own).
DEMO_INCIDENTS = {
    "feixi-water": "feixi-water",  # the forum complaint, its Weibo echo, and the county's answer
    "feixi-water-weibo": "feixi-water",
    "feixi-water-reply": "feixi-water",
    "wuhu-noise": "wuhu-noise",
    "wuhu-noise-weibo": "wuhu-noise",
    "fuyang-wages": "fuyang-campaign",  # the district's back-pay campaign, news and Weibo
    "fuyang-wages-weibo": "fuyang-campaign",
    "dangtu-pollution": "dangtu-pollution",  # the chemical plant's discharge: report, complaint, Weibo
    "dangtu-river": "dangtu-pollution",
    "dangtu-river-weibo": "dangtu-pollution",
    "bengbu-canteen-complaint": "bengbu-canteen-price",  # one parent's complaint, forum and Weibo
    "bengbu-canteen-weibo": "bengbu-canteen-price",
    "tianchang-bus": "tianchang-bus",
    "tianchang-bus-weibo": "tianchang-bus",
    "huaining-rumor": "huaining-rumor",
    "huaining-rumor-weibo": "huaining-rumor",
}
# Two workers' wage complaints in 颍州区 (a dozen workers on a site; twenty on a
# resettlement project): perhaps the same; neither join nor split is scored.
DEMO_UNCLEAR = {frozenset({"fuyang-unpaid", "fuyang-long"})}

# Reports in cec_documents.jsonl (0-based line numbers) that tell one incident:
# the reports' own dates, places and casualty figures agree.
CEC_SAME_INCIDENT = [
    [61, 62, 63],  # the 2006-05-27 Java earthquake: casualties, and where it was felt
    [70, 71],  # the 2008-08-30 Panzhihua / Huili earthquake at its epicentre
    [107, 115, 117, 118, 121],  # the 2014-03-01 Kunming railway station attack, the case and the reactions
    [133, 134],  # the 2014-01-02 Lanzhou high-rise fire
    [142, 157],  # the 2014-03-29 Siping plumbing-shop fire
    [149, 158],  # the 2009-05-21 Shantou workshop fire
]
# Reports of one earthquake's effects in other places (felt in 西安, 银川, 昆明 …): one
# incident nationally, separate matters for each place's government. Pairs of
# posts from two of these reports are not scored (a report's own posts are).
CEC_UNCLEAR = [
    [64, 65, 68, 69, 72, 73, 74, 75, 77, 79, 80, 89, 91, 93, 95],  # the 2008-05-12 Wenchuan earthquake
    [70, 85],  # the Panzhihua earthquake, and 昆明 feeling it
]

# 附件3 messages (留言编号) by the problem they report, read by hand: several
# estates that drew many messages, each with its main problem and others.
MESSAGE_PROBLEMS: dict[str, list[str]] = {
    "yijingyuan-parking-bundle": [  # buyers forced to buy a parking space with the flat
        "188801", "190337", "191001", "192739", "195511", "195995", "196264", "200085",
        "204960", "205277", "205982", "213584", "218709", "230554", "251601",
    ],
    "lifa-mixing-plant": [  # a concrete mixing plant built next to the estate: noise, dust
        "188809", "189950", "190108", "190523", "190802", "199379", "203393", "208285",
        "213464", "214282", "225217", "233158", "243692", "255008", "257091",
    ],
    "lifa-road-phase12": ["191943"],
    "lifa-road-phase23": ["254710"],
    "lifa-water-cut": ["193091"],
    "lifa-refuse-station": ["219174"],
    "meili-shop-fumes": [  # ground-floor restaurants: fumes and noise at night
        "189381", "195095", "236798", "242792", "245136", "246362", "246598", "268914",
        "272122", "284147", "287386",
    ],
    "meili-cracks": ["198084", "205168", "233338", "236303"],
    "meili-school-places": ["253314", "263498"],
    "meili-parking-sale": ["232892"],
    "meili-price-cut": ["240330"],
    "meili-metro": ["283150"],
    "jinlu-resale": ["204975", "267328"],
    "jinlu-window-grilles": ["250840", "288725"],
    "jinlu-funerals": ["232953"],
    "jinlu-mahjong": ["244665"],
    "jinlu-private-kitchen": ["280597"],
    "jinlu-night-stalls": ["284171", "286539"],
    "jinlu-violations": ["228870"],
    "jinlu-purchase-quota": ["259594"],
    "noah-hospital": ["194022", "210107", "226871", "252413", "258186", "214546", "252300"],
    "shenye-kindergarten": ["212757"],
    "lanting-restaurant": ["190377", "196912", "198153", "223555", "284828"],
    "lanting-awning": ["201930"],
    "lanting-tunnel": ["216785"],
    "lanting-parking": ["284065"],
    "xingshapai-building1": ["197945", "222954", "227223", "230183", "231407"],
    "xingsha-mahjong": ["206197"],
    "qingqing-shop-conversion": [  # a flat turned into a restaurant, its flue in the fire passage
        "206379", "212842", "236867", "245660", "250928", "261103", "267713", "270086",
        "284066", "284344", "288492",
    ],
    "qingqing-aircon": ["188260"],
    "qingqing-water-pressure": ["206264"],
    "laodifang-fake-leasing": ["201290", "213101", "214164"],
    "laodifang-no-licence": ["203012", "205156", "216733", "231418", "244744", "278948"],
}
REPLY_THREADS = 150
ONE_DISTRICT = {"province": "安徽省", "city": "芜湖市", "county": "镜湖区", "code": "340202", "level": "county"}


# --------------------------------------------------------------------------- build


def _raw(pid: str, kind: str, title: str, text: str, at: datetime, region: str | None, parent: str | None = None):
    from stream.contracts import RawPost, content_hash

    return RawPost(
        post_id=pid,
        source_id=f"eval-{kind}",
        source_kind=kind,  # type: ignore[arg-type]
        source_name=f"eval-{kind}",
        url=f"http://eval.invalid/{pid}",
        title=title,
        text=text,
        published_at=at,
        fetched_at=at + timedelta(minutes=3),
        source_region=region,
        parent_id=parent,
        content_hash=content_hash(title, text),
    )


def demo_set(start: datetime) -> list[tuple[Any, str]]:
    from yuqing.demo_site.model import _fill
    from yuqing.demo_site.stories import ALL_STORIES

    stories = list(ALL_STORIES)
    random.Random(11).shuffle(stories)
    # A repost comes after what it reposts.
    order = {s.key: i for i, s in enumerate(stories)}
    stories.sort(key=lambda s: (order[s.retweet_of] + 0.5) if s.retweet_of else order[s.key])
    out = []
    for i, st in enumerate(stories):
        at = start + timedelta(minutes=10 * i)
        parent = f"demo-{st.retweet_of}" if st.retweet_of else None
        incident = st.group or DEMO_INCIDENTS.get(st.key, st.key)
        out.append((_raw(f"demo-{st.key}", st.kind, _fill(st.title, at), _fill(st.text, at), at, "340000", parent),
                    incident))
    return out


_SENT = re.compile(r"(?<=[。！？!?；;])")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text.replace("\r", "")) if s.strip()]


def cec_unclear() -> set[frozenset[str]]:
    """The label pairs of :data:`CEC_UNCLEAR` (labels as :func:`cec_set` gives them)."""
    label = {i: f"cec-{i}" for group in CEC_UNCLEAR for i in group}
    for group in CEC_SAME_INCIDENT:
        for i in group:
            label[i] = f"cec-{group[0]}"
    return {frozenset({label[a], label[b]}) for g in CEC_UNCLEAR for a in g for b in g if label[a] != label[b]}


def cec_set(data: Path, start: datetime) -> list[tuple[Any, str]]:
    docs = [json.loads(line) for line in (data / "emergency_events_cec" / "cec_documents.jsonl").open(encoding="utf-8")]
    incident = {i: f"cec-{i}" for i in range(len(docs))}
    for group in CEC_SAME_INCIDENT:
        for i in group:
            incident[i] = f"cec-{group[0]}"
    by_cat: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_cat[d["category_zh"]].append(i)
    rng = random.Random(13)
    out = []
    for c, cat in enumerate(sorted(by_cat)):
        # Reports of one incident come one after another, an hour apart; an incident of each kind a day.
        slots: dict[str, datetime] = {}
        seq = 0
        for i in by_cat[cat]:
            key = incident[i]
            if key not in slots:
                slots[key] = start + timedelta(hours=24 * seq, minutes=37 * c)
                seq += 1
            else:
                slots[key] += timedelta(hours=1)
            at = slots[key]
            d = docs[i]
            title, text = (d.get("title") or "").strip(), d["text"].strip()
            sents = _sentences(text)
            lead = ""
            for s in sents:
                if len(lead) + len(s) > 140 and lead:
                    break
                lead += s
            kept = [s for s in sents if rng.random() > 0.4] or sents[:2]
            short = title[: max(6, len(title) - rng.randint(0, 6))]
            forum_title = rng.choice(["转：", "大家看看：", "刚看到的消息，", ""]) + short
            posts = [
                ("news", title, text, 0),
                ("weibo", "", lead, rng.randint(10, 50)),
                ("forum", forum_title, "".join(kept), rng.randint(40, 120)),
            ]
            for kind, t, x, minutes in posts:
                out.append((_raw(f"cec-{i}-{kind}", kind, t, x, at + timedelta(minutes=minutes), None), key))
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def messages_set(data: Path, start: datetime) -> list[tuple[Any, str]]:
    rows = {r["留言编号"]: r for r in _csv(data / "gov_messages_tipdm2020" / "hot_messages_with_votes_附件3.csv")}
    items = [(mid, problem) for problem, ids in MESSAGE_PROBLEMS.items() for mid in ids]
    missing = [mid for mid, _ in items if mid not in rows]
    if missing:
        sys.exit(f"messages not in 附件3: {missing}")
    rng = random.Random(17)
    rng.shuffle(items)
    out = []
    for n, (mid, problem) in enumerate(items):
        r = rows[mid]
        at = start + timedelta(minutes=25 * n)  # about two days for all of them
        out.append((_raw(f"msg-{mid}", "gov_board", r["留言主题"].strip(), r["留言详情"].strip(), at, "430100"), problem))
    return out


def replies_set(data: Path, start: datetime) -> list[tuple[Any, str]]:
    rows = [r for r in _csv(data / "gov_messages_tipdm2020" / "messages_with_official_replies_附件4_half.csv")
            if r["留言详情"].strip() and r["答复意见"].strip()]
    rng = random.Random(19)
    picked = rng.sample(rows, REPLY_THREADS)
    out = []
    for n, r in enumerate(picked):
        at = start + timedelta(minutes=20 * n)
        key = f"thread-{r['留言编号']}"
        out.append((_raw(f"msg-{r['留言编号']}", "gov_board", r["留言主题"].strip(), r["留言详情"].strip(), at, "430100"), key))
        reply_at = at + timedelta(hours=rng.uniform(2, 30))
        out.append((_raw(f"reply-{r['留言编号']}", "official", "", r["答复意见"].strip(), reply_at, "430100"), key))
    return out


def cmd_build(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from classifiers.assess import Assessor
    from stream.contracts import SHANGHAI, AssessedPost
    from yuqing.settings import load_settings

    t0 = time.perf_counter()
    start = datetime(2026, 7, 6, 8, 0, tzinfo=SHANGHAI)
    sets = {
        "demo": demo_set(start),
        "cec": cec_set(args.data, start),
        "messages": messages_set(args.data, start),
        "replies": replies_set(args.data, start),
    }
    assessor = Assessor(load_settings(ROOT / "config"))
    with gzip.open(args.out, "wt", encoding="utf-8") as fh:
        for name, items in sets.items():
            raws = [r for r, _ in items]
            assessed = []
            for i in range(0, len(raws), 64):
                assessed += assessor.assess_batch(raws[i : i + 64])
            for (raw, label), a in zip(items, assessed, strict=True):
                ap = AssessedPost(post=raw, assessment=a, assessed_at=raw.fetched_at)
                fh.write(json.dumps({"set": name, "label": label, "ap": json.loads(ap.model_dump_json(by_alias=True))},
                                    ensure_ascii=False) + "\n")
            print(f"{name}: {len(items)} posts, {len(set(lb for _, lb in items))} incidents")
    print(f"{args.out} ({time.perf_counter() - t0:.0f} s)")


# --------------------------------------------------------------------------- run


def pairwise(labels: dict[str, str], events: dict[str, int | None], unclear: set[frozenset[str]] = frozenset()) -> dict[str, Any]:
    """Pairwise precision and recall of ``events`` (post -> event, None: in none) against ``labels``."""
    ids = sorted(labels)
    tp = fp = fn = 0
    for a, b in combinations(ids, 2):
        if frozenset({labels[a], labels[b]}) in unclear:
            continue
        same = labels[a] == labels[b]
        joined = events.get(a) is not None and events.get(a) == events.get(b)
        tp += same and joined
        fp += joined and not same
        fn += same and not joined
    return {
        "posts": len(ids),
        "incidents": len(set(labels.values())),
        "events": len({e for e in events.values() if e is not None}),
        "true_pairs": tp + fn,
        "joined_pairs": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
    }


def cmd_run(args: argparse.Namespace) -> None:
    code = Path(args.code).resolve() if args.code else ROOT
    sys.path.insert(0, str(code))
    from sqlalchemy import select

    import responder.service as service
    from responder.store import Event, Post, Store, TicketEventRow
    from stream.contracts import AssessedPost, Place
    from yuqing.settings import load_settings

    print(f"responder code: {Path(service.__file__).resolve().parents[1]}")
    rows: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    with gzip.open(args.file, "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            rows[d["set"]].append((d["label"], d["ap"]))
    results = {}
    unclear = {"demo": DEMO_UNCLEAR, "cec": cec_unclear()}
    print(f"{'set':<24}{'posts':>6}{'incid.':>7}{'events':>7}{'true pairs':>11}{'joined':>8}{'precision':>10}{'recall':>8}")
    for name, items in rows.items():
        for variant in ("as_classified", "one_district"):
            msgs = []
            labels = {}
            for label, ap_json in items:
                ap = AssessedPost.model_validate(ap_json)
                if variant == "one_district":
                    ap = ap.model_copy(update={"assessment": ap.assessment.model_copy(update={"place": Place(**ONE_DISTRICT)})})
                msgs.append(ap)
                labels[ap.post.post_id] = label
            msgs.sort(key=lambda m: (m.post.fetched_at, m.post.post_id))
            with tempfile.TemporaryDirectory() as tmp:
                settings = load_settings(code / "config")
                settings.data_dir = tmp
                store = Store(f"sqlite:///{Path(tmp) / 'eval.db'}")
                try:
                    for i in range(0, len(msgs), args.batch):
                        batch = msgs[i : i + args.batch]
                        service.handle_batch(store, settings, batch, now=max(m.post.fetched_at for m in batch) + timedelta(seconds=1))
                    with store.reader() as s:
                        events = dict(s.execute(select(Post.post_id, Post.event_id)).all())
                        titles = dict(s.execute(select(Event.id, Event.title)).all())
                        opener = dict(s.execute(select(Event.id, Event.t0_post_id)).all())
                        joins = [
                            (r.post_id, r.detail.get("reason", "")) for r in s.scalars(select(TicketEventRow))
                            if r.kind == "post_added"
                        ]
                finally:
                    store.close()
            r = pairwise(labels, events, unclear.get(name, set()))
            results[f"{name}/{variant}"] = r
            print(f"{name + '/' + variant:<24}{r['posts']:>6}{r['incidents']:>7}{r['events']:>7}{r['true_pairs']:>11}"
                  f"{r['joined_pairs']:>8}{r['precision']:>10.3f}{r['recall']:>8.3f}")
            if args.show:
                _show(labels, events, titles, {m.post.post_id: m for m in msgs}, args.show)
                _by_rule(labels, events, opener, joins)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def _show(labels: dict[str, str], events: dict[str, int | None], titles: dict[int, str], msgs: dict[str, Any], n: int) -> None:
    """The largest events that mix incidents, and the incidents split the most."""
    by_event: dict[int, list[str]] = defaultdict(list)
    for pid, eid in events.items():
        if eid is not None:
            by_event[eid].append(pid)
    mixed = sorted(((len({labels[p] for p in ps}), eid) for eid, ps in by_event.items()), reverse=True)
    for k, eid in mixed[:n]:
        if k < 2:
            break
        print(f"    event {eid} 「{titles.get(eid, '')[:30]}」 mixes {k} incidents: "
              + "; ".join(f"{labels[p]}:{(msgs[p].post.title or msgs[p].post.text)[:18]}" for p in by_event[eid][:6]))
    by_label: dict[str, set[int | None]] = defaultdict(set)
    for pid, lb in labels.items():
        by_label[lb].add(events.get(pid))
    split = sorted(((len(es), lb) for lb, es in by_label.items()), reverse=True)
    for k, lb in split[:n]:
        if k < 2:
            break
        print(f"    incident {lb} split into {k} events")


def _by_rule(labels: dict[str, str], events: dict[str, int | None], opener: dict[int, str],
             joins: list[tuple[str, str]]) -> None:
    """Joins per rule (the reason's first words), and how many put a post with
    another incident than the post that opened its event (T0's post)."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pid, reason in joins:
        rule = re.split(r"[，、（0-9]", reason, maxsplit=1)[0]
        rule += "+死亡人数" if "死亡人数一致" in reason else "+文本" if "文本相似度" in reason else ""
        first = opener.get(events.get(pid) or -1)
        tally[rule][0] += 1
        tally[rule][1] += first is not None and labels.get(first) != labels[pid]
    print("    joins by rule (all / with another incident than the event's first post): "
          + "; ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(tally.items())))


def cmd_pairs(args: argparse.Namespace) -> None:
    """The text measure alone: of the pairs of relevant posts a responder would
    compare (compatible places, published within the window), precision and
    recall of "similarity ≥ threshold" (with every post in one district: all pairs)."""
    code = Path(args.code).resolve() if args.code else ROOT
    sys.path.insert(0, str(code))
    import responder.similarity as sim
    from yuqing.settings import load_settings

    threshold = args.threshold or load_settings(code / "config").responder.similarity_threshold
    window = load_settings(code / "config").responder.event_window_hours * 3600
    print(f"measure: {Path(sim.__file__).resolve()}  threshold {threshold}")
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with gzip.open(args.file, "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d["ap"]["assessment"]["relevant"]:
                rows[d["set"]].append(d)
    unclear = {"demo": DEMO_UNCLEAR, "cec": cec_unclear()}

    def vector(d: dict[str, Any], place: str | None) -> Any:
        p = d["ap"]["post"]
        if hasattr(sim, "post_vector"):
            return sim.post_vector(p["title"], p["text"], place)
        return sim.post_vectors(p["title"], p["text"])  # the measure before place names were taken out

    def prefix(c: str | None) -> str | None:
        while c and len(c) > 2 and c.endswith("00"):
            c = c[:-2]
        return c or None

    for name, docs in rows.items():
        for variant in ("as_classified", "one_district"):
            places = [d["ap"]["assessment"]["place"]["code"] if variant == "as_classified" else ONE_DISTRICT["code"]
                      for d in docs]
            vecs = [vector(d, c) for d, c in zip(docs, places, strict=True)]
            times = [datetime.fromisoformat(d["ap"]["post"]["published_at"]).timestamp() for d in docs]
            tp = fp = fn = 0
            for i, j in combinations(range(len(docs)), 2):
                a, b = prefix(places[i]), prefix(places[j])
                if a and b and not (a.startswith(b) or b.startswith(a)) or abs(times[i] - times[j]) > window:
                    continue
                la, lb = docs[i]["label"], docs[j]["label"]
                if frozenset({la, lb}) in unclear.get(name, set()):
                    continue
                joined = sim.vectors_similarity(vecs[i], vecs[j]) >= threshold
                tp += joined and la == lb
                fp += joined and la != lb
                fn += not joined and la == lb
            print(f"{name + '/' + variant:<24} pairs same {tp + fn:>5}  precision {tp / max(1, tp + fp):.3f}"
                  f"  recall {tp / max(1, tp + fn):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="make and assess the labelled posts")
    b.add_argument("--data", type=Path, default=DATA)
    b.add_argument("--out", required=True)
    r = sub.add_parser("run", help="group them and score the events")
    r.add_argument("file")
    r.add_argument("--code", default="", help="source tree whose responder to run (default: this one)")
    r.add_argument("--batch", type=int, default=20)
    r.add_argument("--show", type=int, default=0, help="print this many mixed events and split incidents per set")
    r.add_argument("--json", default="", help="write the figures here")
    q = sub.add_parser("pairs", help="the text measure alone, pair by pair")
    q.add_argument("file")
    q.add_argument("--code", default="", help="source tree whose measure to use (default: this one)")
    q.add_argument("--threshold", type=float, default=0.0, help="default: settings.responder.similarity_threshold")
    args = ap.parse_args()
    if args.cmd == "pairs":
        cmd_pairs(args)
        return
    if args.cmd == "build":
        if not (args.data / "gov_messages_tipdm2020").is_dir():
            sys.exit(f"no shared data at {args.data}")
        cmd_build(args)
    else:
        cmd_run(args)


if __name__ == "__main__":
    main()
