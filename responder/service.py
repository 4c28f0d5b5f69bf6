"""The responder stage: ``posts.assessed`` → store, events, tickets → ``tickets.events``.

:func:`handle_batch` is the stage handler. For one batch, in ONE database
transaction, it stores every post (irrelevant ones too: that is the
archive), groups relevant posts into events, opens a ticket with its
deadlines for each new event, and records the resulting facts
(``ticket_events``); it returns them as :class:`TicketEvent` messages. It
is idempotent by ``post_id``: a redelivered post changes nothing and opens
nothing, and re-emits the facts it caused the first time (same
``event_key``), so a crash between the commit and the produce loses none.

Reads and writes are per batch, not per post, and grouping works from an
in-memory view of the open events (:mod:`responder.events`,
:mod:`responder.open_events`). Full-text indexing is not done here: the
indexer stage follows the store (:mod:`responder.indexer`).

:func:`run` is the process: the stage loop, the deadline scheduler thread
and the outbox relay (which publishes what the scheduler and the web UI
wrote to the outbox) and the notification dispatcher (``responder.notify``,
when ``config/notify.yaml`` enables it) until ``stop`` is set.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from responder.clocks import Clocks, load_clocks
from responder.events import Batch, EventGrouper, NewPost
from responder.scheduler import Scheduler
from responder.store import Outbox, Post, RawJSON, Store, TicketEventRow, ticket_event_payload, utcnow
from stream import topics as T
from stream.contracts import AssessedPost, TicketEvent, encode
from yuqing.settings import Settings

log = logging.getLogger("yuqing.responder")

STAGE = "responder"
GROUP = "responder"

try:  # stream.stage is the shared stage loop; fall back to equivalent records.
    from stream.stage import Outgoing, TransientError
except ImportError:  # pragma: no cover - only while stream.stage is being written
    from dataclasses import dataclass

    @dataclass
    class Outgoing:  # type: ignore[no-redef]
        topic: str
        value: BaseModel
        key: str | None = None

    class TransientError(Exception):  # type: ignore[no-redef]
        pass


_clocks_cache: dict[str, Clocks] = {}


def clocks_for(settings: Settings) -> Clocks:
    """The clocks of ``settings.config_dir`` (loaded once per directory)."""
    key = str(settings.config_dir.resolve())
    if key not in _clocks_cache:
        _clocks_cache[key] = load_clocks(settings.config_dir)
    return _clocks_cache[key]


def _topic(settings: Settings, name: str) -> str:
    try:
        from stream.factory import topic
    except ImportError:  # pragma: no cover
        return T.qualified(name, settings.transport.topic_prefix)
    return topic(settings, name)


def handle_batch(
    store: Store,
    settings: Settings,
    messages: Sequence[BaseModel],
    *,
    clocks: Clocks | None = None,
    now: datetime | None = None,
) -> list[Outgoing]:
    """Store a batch of assessed posts and return the ticket events it caused."""
    clocks = clocks or clocks_for(settings)
    grouper = grouper_for(store, settings, clocks)
    for m in messages:
        if not isinstance(m, AssessedPost):
            raise TypeError(f"responder expects assessed_post messages, got {type(m).__name__}")
    batch: list[AssessedPost] = sorted(
        (fit_for_store(m) for m in messages),  # type: ignore[arg-type]
        key=lambda m: m.post.published_at,
    )
    at = now or utcnow()
    for attempt in (1, 2):
        try:
            payloads = _store_batch(store, grouper, batch, at)
            break
        except IntegrityError:
            # Another responder stored one of these posts at the same moment:
            # a second pass finds it and treats it as a redelivery.
            if attempt == 2:
                raise
            log.warning("concurrent insert of the same post; retrying the batch once")
        except OperationalError as e:
            raise TransientError(f"数据库暂不可用: {e.__class__.__name__}: {e}") from e

    topic = _topic(settings, T.TICKET_EVENTS)
    return [Outgoing(topic, TicketEvent.model_validate(p), str(p["ticket_id"])) for p in payloads]


# The store's columns are narrower than the contract's strings, and PostgreSQL
# refuses NUL in text: a valid message is stored cut to fit, never refused.
_POST_COLUMNS = {"source_id": 200, "source_name": 200, "author": 200, "parent_id": 80,
                 "url": None, "title": None, "text": None}
_ASSESSMENT_COLUMNS = {"topic": 40, "department": 100, "event_type": 40, "event_subtype": 40,
                       "severity_reason": None, "relevance_reason": None, "topic_reason": None,
                       "handling_reason": None, "focus": None, "handling_type": None}
_PLACE_COLUMNS = {"code": 12, "province": 60, "city": 60, "county": 60}
_INT_MAX = 2**31 - 1


def _fit_fields(model: BaseModel, widths: dict[str, int | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, width in widths.items():
        v = getattr(model, name)
        if not isinstance(v, str):
            continue
        fitted = v.replace("\x00", "") if "\x00" in v else v
        if width is not None and len(fitted) > width:
            fitted = fitted[:width]
        if fitted is not v:
            out[name] = fitted
    return out


def fit_for_store(ap: AssessedPost) -> AssessedPost:
    """``ap`` with NUL removed and strings cut to their columns, casualty counts
    within the integer column; the same object when nothing needs it (the usual case)."""
    post_fix = _fit_fields(ap.post, _POST_COLUMNS)
    a = ap.assessment
    a_fix: dict[str, object] = dict(_fit_fields(a, _ASSESSMENT_COLUMNS))
    place_fix = _fit_fields(a.place, _PLACE_COLUMNS)
    if place_fix:
        a_fix["place"] = a.place.model_copy(update=place_fix)
    c = a.casualties
    cas_fix = {
        k: max(-_INT_MAX, min(_INT_MAX, v))
        for k in ("deaths", "injured", "missing", "trapped")
        if isinstance(v := getattr(c, k), int) and abs(v) > _INT_MAX
    }
    if cas_fix:
        a_fix["casualties"] = c.model_copy(update=cas_fix)
    if not (post_fix or a_fix):
        return ap
    return ap.model_copy(update={
        "post": ap.post.model_copy(update=post_fix) if post_fix else ap.post,
        "assessment": a.model_copy(update=a_fix) if a_fix else a,
    })


# One grouper per store (and grouping settings) in this process: it keeps the
# open events in memory between batches (responder.open_events).
_groupers: weakref.WeakKeyDictionary[Store, dict[tuple[float, float], EventGrouper]] = weakref.WeakKeyDictionary()
_groupers_lock = threading.Lock()


def grouper_for(store: Store, settings: Settings, clocks: Clocks) -> EventGrouper:
    key = (settings.responder.event_window_hours, settings.responder.similarity_threshold)
    with _groupers_lock:
        per = _groupers.setdefault(store, {})
        g = per.get(key)
        if g is None or g.clocks is not clocks:
            g = per[key] = EventGrouper(clocks, window_hours=key[0], similarity_threshold=key[1])
        return g


def _store_batch(
    store: Store, grouper: EventGrouper, batch: list[AssessedPost], at: datetime
) -> list[dict[str, Any]]:
    """One transaction: the batch's posts, their events, tickets and facts.

    Reads are per batch, not per post: which posts are stored already (a
    redelivery), their facts, the thread links, the touched events and
    tickets. Posts, facts and audit rows are written with one multi-row
    INSERT each at the end; events, tickets and deadlines go through the ORM
    in a few flushes for the whole batch (:meth:`EventGrouper.apply`).
    """
    with grouper.lock:
        try:
            with store.transaction() as s:
                store.lock_events(s)
                b, payloads = _group_and_write(s, grouper, batch, at)
        except BaseException:
            grouper.rolled_back()  # the cache may hold what was not committed
            raise
        grouper.committed(b)
    return payloads


def _group_and_write(
    s: Session, grouper: EventGrouper, batch: list[AssessedPost], at: datetime
) -> tuple[Batch, list[dict[str, Any]]]:
    ids = list(dict.fromkeys(ap.post.post_id for ap in batch))
    stored: set[str] = set()
    for i in range(0, len(ids), 500):
        stored.update(s.scalars(select(Post.post_id).where(Post.post_id.in_(ids[i : i + 500]))))
    plan: list[tuple[AssessedPost, NewPost | None]] = []  # None: stored already (a redelivery)
    fresh: list[NewPost] = []
    for ap in batch:
        pid = ap.post.post_id
        if pid in stored:
            plan.append((ap, None))
            continue
        stored.add(pid)  # a second copy in the same batch is a redelivery too
        post = _new_post(ap, at)
        plan.append((ap, post))
        fresh.append(post)

    b = grouper.begin(s, fresh)
    grouper.decide(s, b, [(post, ap) for ap, post in plan if post is not None and post.relevant])
    grouper.apply(s, b, at)
    s.flush()  # events, tickets, deadlines: the posts and facts refer to them
    rows: dict[str, int] = {}
    if fresh:
        tbl = Post.__table__
        res = s.execute(
            tbl.insert().returning(tbl.c.post_id, tbl.c.id),  # type: ignore[attr-defined]
            [p.row() for p in fresh],
        )
        rows = {pid: rid for pid, rid in res}
    grouper.written(b, rows)
    written = b.facts.write(s)

    # Payloads in batch order: a redelivered post re-emits the facts it caused.
    new_facts: dict[str, list[dict[str, Any]]] = {}
    for f in written:
        new_facts.setdefault(f["post_id"], []).append(f)
    again = [ap.post.post_id for ap, post in plan if post is None]
    old_facts: dict[str, list[TicketEventRow]] = {}
    for i in range(0, len(again), 500):
        for row in s.scalars(
            select(TicketEventRow)
            .where(TicketEventRow.post_id.in_(again[i : i + 500]))
            .order_by(TicketEventRow.id)
        ):
            old_facts.setdefault(row.post_id or "", []).append(row)
    payloads: list[dict[str, Any]] = []
    seen_keys: set[str] = set()
    for ap, post in plan:
        pid = ap.post.post_id
        facts: Sequence[Any] = new_facts.get(pid, []) if post is not None else old_facts.get(pid, [])
        for f in facts:
            key = f["event_key"] if isinstance(f, dict) else f.event_key
            if key not in seen_keys:
                seen_keys.add(key)
                payloads.append(ticket_event_payload(f))
    return b, payloads


def _new_post(ap: AssessedPost, at: datetime) -> NewPost:
    p, a = ap.post, ap.assessment
    return NewPost(
        post_id=p.post_id,
        source_id=p.source_id,
        source_kind=p.source_kind,
        source_name=p.source_name,
        url=p.url,
        title=p.title,
        text=p.text,
        author=p.author,
        published_at=p.published_at,
        precision=p.published_precision,
        fetched_at=p.fetched_at,
        parent_id=p.parent_id,
        relevant=a.relevant,
        place_code=a.place.code,
        place_label=a.place.label,
        severity=a.severity,
        is_emergency=a.is_emergency,
        event_type=a.event_type,
        event_subtype=a.event_subtype,
        deaths=a.casualties.deaths,
        injured=a.casualties.injured,
        topic=a.topic,
        department=a.department,
        stored_at=at,
        # The message as received, serialised once by pydantic (not dumped to
        # a dict and encoded again).
        raw=RawJSON(ap.model_dump_json(by_alias=True)),
    )


# --------------------------------------------------------------------------- outbox relay


def relay_outbox(store: Store, producer: Any, topic: str, limit: int = 200) -> int:
    """Publish unsent outbox rows to ``topic``, then mark them sent.

    At least once: a crash between the flush and the mark resends them,
    and consumers drop the repeat by ``event_key`` (the outbox key).
    """
    with store.reader() as s:
        rows = s.scalars(
            select(Outbox).where(Outbox.sent_at.is_(None)).order_by(Outbox.id).limit(limit)
        ).all()
    if not rows:
        return 0
    for r in rows:
        msg = TicketEvent.model_validate(r.payload)
        key = str(r.ticket_id).encode() if r.ticket_id is not None else None
        producer.send(topic, encode(msg), key=key)
    producer.flush()
    with store.transaction() as s:
        s.execute(
            update(Outbox)
            .where(Outbox.id.in_([r.id for r in rows]), Outbox.sent_at.is_(None))
            .values(sent_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return len(rows)


def _relay_loop(store: Store, transport: Any, topic: str, stop: threading.Event, every_s: float) -> None:
    producer = transport.producer()
    try:
        while not stop.is_set():
            try:
                while relay_outbox(store, producer, topic) and not stop.is_set():
                    pass
            except Exception:
                log.exception("outbox relay failed; retrying")
            stop.wait(every_s)
    finally:
        try:
            producer.close()
        except Exception:
            log.warning("outbox producer close failed", exc_info=True)


# --------------------------------------------------------------------------- process


def _dispatcher_or_none(settings: Settings, store: Store) -> Any | None:
    """The notification dispatcher of ``config/notify.yaml`` (None when absent or disabled)."""
    from responder.notify import Dispatcher, load_notify

    cfg = load_notify(settings.config_dir)
    if cfg is None or not cfg.enabled:
        log.info("通知分发未启用（%s 不存在或 enabled: false）", settings.config_path("notify.yaml"))
        return None
    return Dispatcher(store, cfg, base_url=settings.web.public_url)


def _health_stage(settings: Settings, store: Store, transport: Any, stop: threading.Event) -> None:
    """Consume ``crawl.health``: keep each source's latest state, notify admins (:mod:`responder.sources`)."""
    from responder.sources import record_health
    from stream.contracts import CrawlHealth
    from stream.stage import StageOptions, run_stage

    def handle(msgs: list[Any]) -> list[Outgoing]:
        record_health(store, msgs)
        return []

    try:
        run_stage(
            transport=transport,
            stage=f"{STAGE}-health",
            group=f"{GROUP}-health",
            topics=[_topic(settings, T.CRAWL_HEALTH)],
            expect=CrawlHealth,
            handle=handle,
            dead_letter_topic=_topic(settings, T.DEAD_LETTER),
            stop=stop,
            batch_size=50,
            options=StageOptions.from_settings(settings),
        )
    except Exception:  # noqa: BLE001 - the posts stage keeps running; the supervisor sees the log
        log.exception("crawl-health stage stopped")


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the responder until ``stop`` is set: stage loop + scheduler + outbox relay + notifications."""
    from stream.factory import open_transport
    from stream.stage import StageOptions, run_stage

    store = Store(settings.store_url)
    transport = None
    threads: list[threading.Thread] = []
    try:
        clocks = clocks_for(settings)
        transport = open_transport(settings)
        events_topic = _topic(settings, T.TICKET_EVENTS)
        transport.ensure_topics([events_topic])
        scheduler = Scheduler(store)
        tick_s = settings.responder.scheduler_tick_s
        threads = [
            threading.Thread(
                target=scheduler.run, args=(stop, tick_s), name="responder-scheduler", daemon=True
            ),
            threading.Thread(
                target=_relay_loop,
                args=(store, transport, events_topic, stop, tick_s),
                name="responder-outbox",
                daemon=True,
            ),
        ]
        dispatcher = _dispatcher_or_none(settings, store)
        if dispatcher is not None:
            threads.append(
                threading.Thread(
                    target=dispatcher.run, args=(stop, tick_s), name="responder-notify", daemon=True
                )
            )
        threads.append(
            threading.Thread(
                target=_health_stage, args=(settings, store, transport, stop), name="responder-health", daemon=True
            )
        )
        for t in threads:
            t.start()
        log.info("responder started: store %s", store)
        run_stage(
            transport=transport,
            stage=STAGE,
            group=GROUP,
            topics=[_topic(settings, T.ASSESSED_POSTS)],
            expect=AssessedPost,
            handle=lambda msgs: handle_batch(store, settings, msgs, clocks=clocks),
            dead_letter_topic=_topic(settings, T.DEAD_LETTER),
            stop=stop,
            options=StageOptions.from_settings(settings),
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        for closer in (getattr(transport, "close", None), store.close):
            if closer is None:
                continue
            try:
                closer()
            except Exception:
                log.warning("responder: close failed", exc_info=True)
        log.info("responder stopped")
