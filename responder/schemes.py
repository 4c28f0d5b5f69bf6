"""Monitoring schemes (监测方案) and their alerts (issue 17 part 4).

A scheme is a saved search (:class:`responder.store.SavedSearch`) whose
``params`` hold, besides the archive-search filters::

    {"scheme": {"regions": ["合肥", "蜀山"], "subjects": ["地铁", "公交"],
                "events": ["停运", "拥堵"], "excludes": ["广告"]},
     "place": "3401", "kind": ["weibo"], "severity": ["重大"],
     "alert": true, "notify": "合肥市政府值班室"}

地域词 / 主体词 / 事件词 are OR inside a group and AND across groups, 排除词
NOT (:func:`responder.search.query.scheme_query`), over the title and the
text; an empty group sets no condition. ``place`` (a name or code, kept as
its division-code prefix) lies within the owner's jurisdiction. The
scheme's search is that query with its filters through the archive search
(:func:`responder.archive.params_from`), so ``/search`` shows its matches.

Alerts. :class:`SchemeMatcher` follows the store like the search indexer
(it runs in the indexer stage, :func:`responder.indexer.run`): for each new
post, every scheme's tree is evaluated in Python over the post's index
tokens (:func:`responder.search.query.matches`) with its filters and the
owner's jurisdiction — no search-backend round trip. A match is a
:class:`~responder.store.SchemeMatch` row, unique (scheme, post), written
in the same transaction as its notice and the matcher's cursor
(``search_progress`` row ``schemes``): a restart, a second matcher or a
redelivered batch never notifies twice. A scheme watches only posts stored
after it was saved (``watch_from``).

Who hears it: a scheme with ``alert`` names one of ``config/notify.yaml``'s
``recipients`` in ``notify`` (its robot, mailbox or phone; one within the
owner's jurisdiction). The notice (kind ``scheme_match``) gets one delivery
to that recipient, and the notification dispatcher in the responder sends
it with the channel's rate limit: a burst beyond ``rate_per_minute`` goes
out as one digest (汇总). With notifications disabled, matches are still
recorded and shown on the board (:func:`unseen_for`), and no notice is
written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from responder.archive import (
    SCHEME_GROUPS,
    SearchParamError,
    Vocabulary,
    params_from,
    parse_when,
    saved_search_clause,
    scheme_text,
)
from responder.clocks import iso_shanghai
from responder.permissions import Actor, scope_clause, within
from responder.search import query as qlang
from responder.store import (
    Delivery,
    Notice,
    Post,
    SavedSearch,
    SchemeMatch,
    SchemeSeen,
    SearchProgress,
    Store,
    utcnow,
)

if TYPE_CHECKING:
    from responder.notify.config import NotifyConfig

log = logging.getLogger("yuqing.schemes")

GROUP_LABEL = {"regions": "地域词", "subjects": "主体词", "events": "事件词", "excludes": "排除词"}
MAX_WORDS = 100  # per group
MAX_WORD_CHARS = 50
PROGRESS = "schemes"
NOTICE_KIND = "scheme_match"
_SPLIT = re.compile(r"[\s,，、;；|｜]+")


class SchemeError(SearchParamError):
    """A scheme that cannot be saved; ``message`` says why (Chinese)."""


def split_words(value: str | Iterable[str] | None) -> list[str]:
    """Words of a group as typed: spaces, commas, 、 or new lines between them; once each, in order."""
    if value is None:
        return []
    parts = [value] if isinstance(value, str) else list(value)
    out: dict[str, None] = {}
    for p in parts:
        for w in _SPLIT.split(str(p)):
            w = w.strip().replace('"', "")
            if w:
                out.setdefault(w, None)
    return list(out)


def is_scheme(params: dict[str, Any]) -> bool:
    return isinstance(params.get("scheme"), dict)


def normalise(params: dict[str, Any], actor: Actor, *, vocab: Vocabulary | None = None,
              notify: NotifyConfig | None = None) -> dict[str, Any]:
    """The parameters to store for ``actor``'s saved search or scheme; :class:`SearchParamError`
    (or :class:`SchemeError`) naming what is wrong."""
    try:
        p = params_from(params, vocab)
    except ValueError as e:
        raise SearchParamError(f"检索条件有误：{e}") from None
    out: dict[str, Any] = {}
    if is_scheme(params):
        groups = params["scheme"]
        unknown = set(groups) - set(SCHEME_GROUPS)
        if unknown:
            raise SchemeError(f"监测方案有误：未知的词组 {'、'.join(sorted(unknown))}（可用：regions 地域词、subjects 主体词、"
                              "events 事件词、excludes 排除词）")
        clean = {k: split_words(groups.get(k)) for k in SCHEME_GROUPS}
        for k, words in clean.items():
            if len(words) > MAX_WORDS:
                raise SchemeError(f"监测方案有误：{GROUP_LABEL[k]}最多 {MAX_WORDS} 个")
            long = [w for w in words if len(w) > MAX_WORD_CHARS]
            if long:
                raise SchemeError(f"监测方案有误：{GROUP_LABEL[k]}“{long[0][:20]}…”过长（每个词最多 {MAX_WORD_CHARS} 字）")
        if (params.get("q") or "").strip():
            raise SchemeError("监测方案有误：方案用地域词、主体词、事件词和排除词，不再另填检索式 q")
        text = qlang.scheme_query(*(clean[k] for k in SCHEME_GROUPS))
        try:
            tree = qlang.parse(text)
        except qlang.QuerySyntaxError as e:
            raise SchemeError(f"监测方案有误：{e}") from None
        if not qlang.has_positive(tree):
            raise SchemeError("监测方案有误：地域词、主体词、事件词至少填一个（只有排除词的方案会匹配所有信息）")
        out["scheme"] = clean
        p.q = text
    p.query(actor)  # kinds, severities, topics, dates, the place name: SearchParamError
    saved = p.saved()
    if "scheme" in out:
        saved.pop("q", None)
    if p.place.strip():
        prefix, label = p.place_of(actor)
        assert prefix is not None
        if not actor.is_cli and not within(prefix, actor.jurisdiction):
            raise SearchParamError(f"检索条件有误：{label or prefix} 不在本人属地范围内")
        saved["place"] = prefix
    out.update(saved)
    alert = params.get("alert")
    if alert not in (None, True, False):
        raise SchemeError("监测方案有误：alert 只能是 true 或 false")
    recipient = str(params.get("notify") or "").strip()
    if alert:
        if not recipient:
            raise SchemeError("开启预警须选择接收通知的对象（config/notify.yaml 的 recipients 之一）")
        if not qlang.has_positive(qlang.parse(p.q)):
            raise SchemeError("开启预警的方案须有检索词（地域词、主体词、事件词或检索式）")
    if recipient:
        choices = recipients_for(notify, actor)
        if recipient not in choices:
            shown = "、".join(choices) or "无（请管理员在 config/notify.yaml 中配置 recipients）"
            raise SchemeError(f"通知对象“{recipient}”不存在或不在本人属地范围内（可选：{shown}）")
        out["notify"] = recipient
    if alert:
        out["alert"] = True
    return out


def recipients_for(notify: NotifyConfig | None, actor: Actor) -> list[str]:
    """The recipients of ``notify.yaml`` a scheme of ``actor`` may alert: those within its jurisdiction."""
    if notify is None:
        return []
    return [r.name for r in notify.recipients if actor.is_cli or within(r.jurisdiction, actor.jurisdiction)]


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Watch:
    """One scheme, compiled for matching posts in Python."""

    id: int
    name: str
    owner: str
    jurisdiction: str
    unplaced: bool  # the owner sees 待定 (at the root)
    tree: qlang.Node | None
    place: str | None
    kinds: frozenset[str]
    severities: frozenset[str]
    topics: frozenset[str]
    since: datetime | None
    until: datetime | None
    alert: bool
    notify: str | None
    watch_from: int
    # Every word outside a NOT: a match of a tree that requires a word holds one of them,
    # so a post with none of them is passed over without walking the tree.
    cue: frozenset[str] = frozenset()

    def admits(self, post: Any, tokens: frozenset[str]) -> bool:
        """Whether ``post`` (the ``posts`` columns) matches, as the archive search would find it."""
        if self.cue and self.cue.isdisjoint(tokens):
            return False
        code = post.place_code
        if code:
            if not code.startswith(self.jurisdiction):
                return False
        elif not self.unplaced:
            return False
        if self.place is not None and not (code or "").startswith(self.place):
            return False
        if self.kinds and post.source_kind not in self.kinds:
            return False
        # The index carries a severity only for relevant posts (responder.indexer.post_docs).
        if self.severities and (not post.relevant or post.severity not in self.severities):
            return False
        if self.topics and post.topic not in self.topics:
            return False
        if self.since is not None and post.published_at < self.since:
            return False
        if self.until is not None and post.published_at >= self.until:
            return False
        return qlang.matches(self.tree, tokens)


def monitored(params: dict[str, Any]) -> bool:
    """A saved search worth watching: one with a word to look for (a bare filter would match every post)."""
    try:
        return qlang.has_positive(qlang.parse(scheme_text(params)))
    except qlang.QuerySyntaxError:
        return False


def compile_watch(row: SavedSearch, root_jurisdiction: str = "") -> Watch | None:
    """The :class:`Watch` of a saved search, or None for one not monitored (or no longer valid)."""
    d = row.params or {}
    if not monitored(d):
        return None

    def many(k: str) -> frozenset[str]:
        v = d.get(k) or []
        return frozenset(str(x) for x in ([v] if isinstance(v, str) else v))

    place = str(d.get("place") or "").strip() or None
    if place is not None and not place.isdigit():
        log.warning("监测方案 %s 的属地 %r 不是代码，跳过", row.name, place)
        return None
    try:
        since = parse_when(str(d.get("from") or ""), "from")
        until = parse_when(str(d.get("to") or ""), "to", end=True)
    except ValueError:
        return None
    j = row.jurisdiction or ""
    tree = qlang.parse(scheme_text(d))
    return Watch(
        id=row.id, name=row.name, owner=row.created_by, jurisdiction=j,
        unplaced=j == "" or within(root_jurisdiction, j),
        tree=tree, place=place, kinds=many("kind"), severities=many("severity"),
        topics=many("topic"), since=since, until=until, alert=bool(d.get("alert")),
        notify=(str(d.get("notify")) if d.get("notify") else None), watch_from=int(row.watch_from or 0),
        cue=frozenset(qlang.positive_words(tree)) if qlang.has_positive(tree) else frozenset(),
    )


_POST_COLUMNS = (Post.id, Post.post_id, Post.title, Post.text, Post.source_id, Post.source_kind, Post.source_name,
                 Post.url, Post.published_at, Post.place_code, Post.place_label, Post.topic, Post.severity,
                 Post.relevant)


@dataclass
class MatchStep:
    posts: int = 0
    matches: int = 0
    notices: int = 0


class SchemeMatcher:
    """Matches new posts against every monitored scheme; see the module docstring."""

    def __init__(self, store: Store, notify: NotifyConfig | None = None, *, root_jurisdiction: str = "",
                 batch: int = 500) -> None:
        self.store = store
        self.notify = notify if notify is not None and notify.enabled else None
        self.root = root_jurisdiction
        self.batch = batch
        self._cache: dict[int, tuple[Any, Watch | None]] = {}

    def watches(self, s: Session) -> list[Watch]:
        """Every monitored scheme (compiled once per version of its parameters)."""
        out = []
        rows = s.execute(select(SavedSearch)).scalars().all()
        live = set()
        for r in rows:
            live.add(r.id)
            key = (r.name, r.jurisdiction, r.watch_from, repr(sorted((r.params or {}).items())))
            hit = self._cache.get(r.id)
            if hit is None or hit[0] != key:
                hit = (key, compile_watch(r, self.root))
                self._cache[r.id] = hit
            if hit[1] is not None:
                out.append(hit[1])
        for gone in set(self._cache) - live:
            del self._cache[gone]
        return out

    def cursor(self, s: Session) -> int | None:
        p = s.get(SearchProgress, PROGRESS)
        return p.last_post_id if p is not None else None

    def step(self, now: datetime | None = None) -> MatchStep:
        """Match the next batch of posts; cursor, matches and notices commit together.

        Posts are read and matched outside the write transaction (on SQLite a write
        holds up the responder); the write then checks that the cursor has not moved."""
        at = now or utcnow()
        done = MatchStep()
        with self.store.reader() as s:
            watches = self.watches(s)
            last = self.cursor(s)
            if last is None:
                # First run: from the oldest scheme's start, or (no scheme yet) from now on.
                newest = int(s.scalar(select(func.coalesce(func.max(Post.id), 0))) or 0)
                start = min([w.watch_from for w in watches], default=newest)
            else:
                start = last
            posts = s.execute(select(*_POST_COLUMNS).where(Post.id > start).order_by(Post.id)
                              .limit(self.batch)).all()
        found: list[tuple[Watch, Any]] = []
        for post in posts:
            mine = [w for w in watches if post.id > w.watch_from]
            if not mine:
                continue
            tokens = qlang.doc_tokens(post.title or "", post.text or "")
            found += [(w, post) for w in mine if w.admits(post, tokens)]
        if last is not None and not posts:
            return done
        with self.store.transaction() as s:
            prog = s.get(SearchProgress, PROGRESS)
            if (prog.last_post_id if prog is not None else None) != last:
                return done  # another matcher moved on meanwhile: match again from its cursor
            if prog is None:
                prog = SearchProgress(name=PROGRESS, last_post_id=start, last_audit_id=0, updated_at=at)
                s.add(prog)
            if found:
                have = {(a, b) for a, b in s.execute(select(SchemeMatch.scheme_id, SchemeMatch.post_id).where(
                    SchemeMatch.post_id.in_([p.id for _w, p in found])))}
                for w, post in found:
                    if (w.id, post.id) in have:
                        continue
                    notice = self._notice(s, w, post, at) if w.alert else None
                    s.add(SchemeMatch(scheme_id=w.id, post_id=post.id, created_at=at,
                                      notice_id=notice.id if notice is not None else None))
                    done.matches += 1
                    done.notices += notice is not None
            if posts:
                prog.last_post_id = max(prog.last_post_id, posts[-1].id)
            prog.updated_at = at
        done.posts = len(posts)
        return done

    def catch_up(self, now: datetime | None = None) -> MatchStep:
        total = MatchStep()
        while True:
            st = self.step(now)
            total.posts += st.posts
            total.matches += st.matches
            total.notices += st.notices
            if st.posts < self.batch:
                return total

    def _notice(self, s: Session, w: Watch, post: Any, at: datetime) -> Notice | None:
        cfg = self.notify
        if cfg is None or w.notify is None:
            return None
        r = next((x for x in cfg.recipients if x.name == w.notify), None)
        if r is None:
            log.warning("监测方案“%s”的通知对象 %s 已不在 notify.yaml 中，只记入看板", w.name, w.notify)
            return None
        detail = {
            "scheme_id": w.id, "scheme": w.name, "owner": w.owner, "title": post.title or "（无标题）",
            "post_id": post.post_id, "url": post.url, "source": post.source_name or post.source_id,
            "source_kind": post.source_kind, "place": post.place_label or "待定",
            "published_at": iso_shanghai(post.published_at),
            "severity": post.severity if post.relevant else None,
        }
        n = Notice(key=f"scheme:{w.id}:{post.id}", outbox_id=None, ticket_id=None, kind=NOTICE_KIND,
                   payload={"detail": detail}, created_at=at, recipients=1)
        s.add(n)
        s.flush()
        s.add(Delivery(notice_id=n.id, recipient=r.name, channel=r.channel, address=r.address,
                       status="pending", next_attempt_at=at, created_at=at))
        return n


# --------------------------------------------------------------------------- the board


def unseen_for(store: Store, actor: Actor) -> list[dict[str, Any]]:
    """The schemes ``actor`` may read that have matches it has not looked at, within its
    jurisdiction: ``{"id", "name", "new", "latest"}``, most new first."""
    with store.reader() as s:
        seen = saved_search_clause(actor)
        schemes = select(SavedSearch.id, SavedSearch.name)
        if seen is not None:
            schemes = schemes.where(seen)
        rows = {r.id: r.name for r in s.execute(schemes)}
        if not rows:
            return []
        last_seen = (select(SchemeSeen.last_match_id).where(SchemeSeen.scheme_id == SchemeMatch.scheme_id,
                                                           SchemeSeen.username == actor.username)
                     .scalar_subquery())
        q = (select(SchemeMatch.scheme_id, func.count(), func.max(Post.published_at))
             .join(Post, Post.id == SchemeMatch.post_id)
             .where(SchemeMatch.scheme_id.in_(list(rows)), SchemeMatch.id > func.coalesce(last_seen, 0))
             .group_by(SchemeMatch.scheme_id))
        scope = scope_clause(actor, Post.place_code)
        if scope is not None:
            q = q.where(scope)
        out = [{"id": sid, "name": rows[sid], "new": int(n), "latest": iso_shanghai(latest) if latest else None}
               for sid, n, latest in s.execute(q)]
    out.sort(key=lambda x: (-x["new"], x["name"]))
    return out


def mark_seen(store: Store, actor: Actor, scheme_id: int, now: datetime | None = None) -> None:
    """``actor`` has looked at every match of the scheme so far."""
    at = now or utcnow()
    with store.transaction() as s:
        top = int(s.scalar(select(func.coalesce(func.max(SchemeMatch.id), 0))
                           .where(SchemeMatch.scheme_id == scheme_id)) or 0)
        row = s.get(SchemeSeen, (scheme_id, actor.username))
        if row is None:
            s.add(SchemeSeen(scheme_id=scheme_id, username=actor.username, last_match_id=top, seen_at=at))
        else:
            row.last_match_id = max(row.last_match_id, top)
            row.seen_at = at


def forget(s: Session, scheme_id: int) -> None:
    """A scheme's matches and read marks (before the scheme itself is deleted)."""
    for model in (SchemeMatch, SchemeSeen):
        for r in s.scalars(select(model).where(model.scheme_id == scheme_id)):
            s.delete(r)
    s.flush()


def scheme_fields(params: dict[str, Any]) -> dict[str, str]:
    """A scheme's groups as the form's text fields (words joined by spaces)."""
    groups = params.get("scheme") if isinstance(params.get("scheme"), dict) else {}
    return {k: " ".join(split_words((groups or {}).get(k))) for k in SCHEME_GROUPS}


__all__: Sequence[str] = (
    "GROUP_LABEL", "NOTICE_KIND", "SchemeError", "SchemeMatcher", "Watch", "compile_watch", "forget", "is_scheme",
    "mark_seen", "normalise", "recipients_for", "scheme_fields", "split_words", "unseen_for",
)
