"""The search indexer: stored posts into the full-text index, as their own stage.

Chinese word segmentation is the costliest step per post. Done inside
the responder's batch it halved the rate at which tickets open and clocks
start, and a search backend that was down lost the batch's documents until
someone rebuilt the index. So the responder only stores; this stage
(``yuqing stage indexer``) follows the store and indexes:

* **New posts**, in ``posts.id`` order after the last one indexed. Posts are
  written only by responders, one transaction at a time under the events
  lock, so ids become visible in order and none is passed over.
* **Monitoring schemes** (:mod:`responder.schemes`): every new post is
  matched against each scheme in Python, alerts written with a cursor of
  their own (even while the search backend is down).
* **Posts that changed event**: a duty officer's merge or split (audit rows
  ``event_merged`` / ``event_split``) re-indexes the posts of the events they
  concern, so search shows each post under its event.

Progress (the last post and audit row done) is kept in the store
(``search_progress``) and saved only after the backend has the documents:
at least once, and indexing is an upsert by ``post_id``. A backend that is
down is retried with back-off; nothing is lost meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from responder.store import Audit, Post, SearchProgress, Store, utcnow

log = logging.getLogger("yuqing.indexer")

PROGRESS = "posts"
# What a search document needs (not the stored message, ``raw``, which is most of a row).
_DOC_COLUMNS = (
    Post.id,
    Post.post_id,
    Post.title,
    Post.text,
    Post.source_id,
    Post.source_kind,
    Post.url,
    Post.published_at,
    Post.place_code,
    Post.place_label,
    Post.topic,
    Post.severity,
    Post.relevant,
    Post.event_id,
)
MEMBERSHIP_ACTIONS = ("event_merged", "event_split")
_BACKOFF_MAX_S = 30.0


def post_docs(posts: Sequence[Any]) -> list[Any]:
    """Search documents of stored posts (anything with the ``posts`` columns)."""
    from responder.search.base import PostDoc

    return [
        PostDoc(
            post_id=p.post_id,
            title=p.title,
            text=p.text,
            source_id=p.source_id,
            source_kind=p.source_kind,
            url=p.url,
            published_at=p.published_at,
            place_code=p.place_code,
            place_label=p.place_label,
            topic=p.topic,
            severity=p.severity if p.relevant else None,
            event_id=p.event_id,
        )
        for p in posts
    ]


@dataclass
class Step:
    posts: int = 0  # new posts indexed
    reindexed: int = 0  # posts indexed again after a merge or split

    def __bool__(self) -> bool:
        return bool(self.posts or self.reindexed)


class SearchIndexer:
    """Indexes what the store holds and the search backend does not yet."""

    def __init__(self, store: Store, search: Any, *, batch: int = 500) -> None:
        self.store = store
        self.search = search
        self.batch = batch

    def progress(self) -> tuple[int, int]:
        """(last post id, last audit id) indexed."""
        with self.store.reader() as s:
            p = s.get(SearchProgress, PROGRESS)
            return (p.last_post_id, p.last_audit_id) if p is not None else (0, 0)

    def step(self) -> Step:
        """Index the next batch of new posts and of merges/splits; what was done."""
        last_post, last_audit = self.progress()
        with self.store.reader() as s:
            posts = s.execute(
                select(*_DOC_COLUMNS).where(Post.id > last_post).order_by(Post.id).limit(self.batch)
            ).all()
            changes = s.execute(
                select(Audit.id, Audit.action, Audit.detail)
                .where(Audit.id > last_audit, Audit.action.in_(MEMBERSHIP_ACTIONS))
                .order_by(Audit.id)
                .limit(100)
            ).all()
            events = sorted({e for _, action, detail in changes for e in _events_of(action, detail)})
            moved: list[Any] = []
            for i in range(0, len(events), 500):
                moved += s.execute(select(*_DOC_COLUMNS).where(Post.event_id.in_(events[i : i + 500]))).all()
        done = Step()
        if posts:
            self.search.index(post_docs(posts))
            done.posts = len(posts)
            last_post = posts[-1].id
        if changes:
            if moved:
                self.search.index(post_docs(moved))
            done.reindexed = len(moved)
            last_audit = changes[-1].id
        if done or changes:
            self._save(last_post, last_audit)
        return done

    def catch_up(self) -> int:
        """Index until nothing is left; the number of new posts indexed."""
        n = 0
        while step := self.step():
            n += step.posts
        return n

    def _save(self, last_post: int, last_audit: int) -> None:
        with self.store.transaction() as s:
            p = s.get(SearchProgress, PROGRESS)
            if p is None:
                s.add(SearchProgress(name=PROGRESS, last_post_id=last_post, last_audit_id=last_audit, updated_at=utcnow()))
            else:
                # Never backwards (two indexers, or a restore of an older backup of the index).
                p.last_post_id = max(p.last_post_id, last_post)
                p.last_audit_id = max(p.last_audit_id, last_audit)
                p.updated_at = utcnow()

    def reset(self) -> None:
        """Start again from the first post (after the index was emptied or replaced)."""
        with self.store.transaction() as s:
            p = s.get(SearchProgress, PROGRESS)
            if p is not None:
                s.delete(p)


def _events_of(action: str, detail: dict[str, Any] | None) -> list[int]:
    """The event whose posts a merge or split moved in: a merge's target, a split's new event."""
    d = detail or {}
    key = "into_event" if action == "event_merged" else "new_event"
    return [d[key]] if isinstance(d.get(key), int) else []


def _matcher(settings: Any, store: Store) -> Any | None:
    """The monitoring-scheme matcher (:mod:`responder.schemes`), with ``config/notify.yaml`` when it exists."""
    from responder.notify.config import load_notify
    from responder.schemes import SchemeMatcher

    try:
        notify = load_notify(settings.config_dir)
    except Exception:
        log.exception("无法读取 notify.yaml：监测方案的新增信息只记入看板，不发通知")
        notify = None
    return SchemeMatcher(store, notify, root_jurisdiction=settings.auth.root_jurisdiction)


def _match(matcher: Any) -> bool:
    """One batch of scheme matching; whether it found posts to look at."""
    if matcher is None:
        return False
    try:
        return bool(matcher.step().posts)
    except Exception:
        log.exception("监测方案匹配失败，稍后重试（进度未前移，不会漏报或重报）")
        return False


def run(settings: Any, stop: threading.Event, *, poll_s: float = 0.5) -> None:
    """The indexer stage: follow the store until ``stop`` is set."""
    from responder.search import open_search

    store = Store(settings.store_url)
    search = None
    delay = 0.5
    matcher = _matcher(settings, store)
    try:
        while not stop.is_set():
            # Scheme alerts need no search backend: matched in Python even while it is down.
            matched = _match(matcher)
            try:
                if search is None:
                    search = open_search(settings)
                    log.info("indexer started: store %s, search %s", store, type(search).__name__)
                step = SearchIndexer(store, search).step()
                delay = 0.5
                if not step and not matched:
                    stop.wait(poll_s)
            except Exception:
                log.exception("全文索引暂不可用，%.0f 秒后重试（帖子都在库中，恢复后补齐）", delay)
                if stop.wait(delay):
                    break
                delay = min(delay * 2, _BACKOFF_MAX_S)
    finally:
        for closer in (getattr(search, "close", None), store.close):
            if closer is not None:
                try:
                    closer()
                except Exception:
                    log.warning("indexer: close failed", exc_info=True)
        log.info("indexer stopped")
