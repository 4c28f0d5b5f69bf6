"""The notification dispatcher: outbox → notices → per-recipient deliveries → channels.

Runs as a thread of the responder process (:func:`responder.service.run`).
Every tick:

1. **Plan.** Each outbox row the scheduler or the web UI wrote (deadline
   warnings and breaches, acknowledgements, milestones) becomes one
   :class:`~responder.store.Notice` (unique ``outbox_id`` and ``key``) and
   one :class:`~responder.store.Delivery` per recipient (unique
   (notice, recipient)) in one transaction, routed by the escalation chain of
   its kind (:mod:`responder.notify.router`). New tickets still
   unacknowledged get a notice ``{ticket}:unack:0`` (新工单) and then one
   reminder per ``unacknowledged.interval_minutes`` (``{ticket}:unack:N``, at
   most ``max_reminders``; after downtime only the current one). A notice
   whose escalation steps find nobody gets an
   :class:`~responder.store.UnroutedNotice` row with the steps that found
   nobody, in the same transaction: the board and ``/metrics`` show it.
2. **Deliver.** Due deliveries are grouped by channel. A robot takes at most
   ``rate_per_minute`` messages in any 60 s (counted from the deliveries
   table, so a restart keeps counting): when more are due, the first ones go
   singly and the rest go together as one digest (汇总) message — nothing is
   dropped. Each message is *claimed* (status ``sending``, committed) before
   it is sent and marked ``sent`` after; a failure puts it back to
   ``pending`` with a backoff (``retry.backoff_s``) until the last attempt,
   then ``failed`` with the error kept.

Exactly once: planning is idempotent by the unique keys, and a delivery is
sent only by the process that claimed it. A process killed before the claim
commits leaves it ``pending``; killed after the claim but before the send,
the claim expires after ``claim_lease_s`` and the delivery is sent then.
Only a kill in the instant between the far end's answer and the ``sent``
commit can repeat a message (at least once, never lost); the webhook, SMS
gateway and e-mail carry a stable idempotency key / Message-ID for that.

Quiet hours defer only non-statutory notices — the kinds listed in
``quiet_hours.applies_to`` (acknowledgements, milestones) and any notice of
a ticket without a statutory clock; a deadline warning or breach is never
muted. A deferred notice is sent when the quiet hours end.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from responder.clocks import SHANGHAI, iso_shanghai
from responder.notify.channels import Channel, DeliveryError, Message, make_channel
from responder.notify.config import ROLE_LABEL, NotifyConfig
from responder.notify.departments import DepartmentNames
from responder.notify.router import Routing, names_for, plan_route
from responder.sources import SOURCE_KINDS, render_alert
from responder.store import (
    Deadline,
    Delivery,
    Event,
    Notice,
    Outbox,
    Store,
    Ticket,
    UnroutedNotice,
    utcnow,
)

log = logging.getLogger(__name__)

KIND_LABEL = {
    "opened": "新舆情工单",
    "unacknowledged": "催办：工单尚未确认接收",
    "deadline_warning": "期限预警",
    "deadline_breached": "超时督办",
    "escalated": "人工督办",
    "acknowledged": "工单已确认",
    "milestone": "节点已完成",
    "source_alert": "信息源告警",
    "source_recovered": "信息源已恢复",
    "scheme_match": "监测方案预警",
}
RULE_LABEL = {
    "major_emergency": "重大突发事件",
    "response_48h": "政务舆情回应（48小时）",
    "suggestion": "网民意见建议（7个工作日）",
    "complaint": "咨询投诉（15个工作日）",
}
PLAN_BATCH = 500
DELIVER_BATCH = 1000


def fmt_span(seconds: float) -> str:
    """``5400`` → ``1小时30分``; days when over a day."""
    s = int(abs(seconds)) // 60 * 60
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    parts = ([f"{d}天"] if d else []) + ([f"{h}小时"] if h or d else []) + [f"{m}分"]
    return "".join(parts)


def _fmt(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


class Dispatcher:
    """Plans and delivers notifications; ``now`` is the clock (injectable)."""

    def __init__(
        self,
        store: Store,
        cfg: NotifyConfig,
        *,
        base_url: str,
        now: Callable[[], datetime] = utcnow,
        channels: dict[str, Channel] | None = None,
        departments: DepartmentNames | None = None,
    ):
        self.store = store
        self.cfg = cfg
        # Reads 蜀山区住房和城乡建设局 as a 住房和城乡建设局 for routing (router docstring).
        self.departments = departments or names_for(cfg)
        self.base_url = (cfg.base_url or base_url).rstrip("/")
        self.now = now
        self.run_id = uuid.uuid4().hex[:16]
        self._channels: dict[str, Channel] = dict(channels or {})
        # Called after a message is claimed and before it is sent (crash tests, tracing).
        self.before_send: Callable[[list[int]], None] | None = None

    # ------------------------------------------------------------------ links and text

    def link(self, ticket_id: int | None) -> str:
        return f"{self.base_url}/tickets/{ticket_id}" if ticket_id is not None else self.base_url

    def channel(self, name: str) -> Channel:
        if name not in self._channels:
            self._channels[name] = make_channel(self.cfg.channels[name])
        return self._channels[name]

    def close(self) -> None:
        for ch in self._channels.values():
            closer = getattr(ch, "close", None)
            if closer:
                closer()

    # ------------------------------------------------------------------ planning

    def _quiet_until(self, at: datetime) -> datetime | None:
        q = self.cfg.quiet_hours
        if q is None:
            return None
        local = at.astimezone(SHANGHAI)
        t = local.time()
        if q.start <= q.end:
            inside = q.start <= t < q.end
        else:
            inside = t >= q.start or t < q.end
        if not inside:
            return None
        end = datetime.combine(local.date(), q.end, tzinfo=SHANGHAI)
        if end <= local:
            end += timedelta(days=1)
        return end

    def _add_notice(
        self,
        s: Any,
        *,
        key: str,
        kind: str,
        ticket: Ticket | None,
        payload: dict[str, Any],
        outbox_id: int | None,
        now: datetime,
    ) -> Notice:
        if ticket is not None:
            routing = plan_route(self.cfg, kind, place_code=ticket.place_code, department=ticket.department,
                                 severity=ticket.severity, names=self.departments)
        elif kind in SOURCE_KINDS:  # crawl health: the admins at the top level
            routing = plan_route(self.cfg, kind, place_code=None, department=None, severity="一般",
                                 names=self.departments)
        else:
            routing = Routing()
        targets = routing.targets
        n = Notice(
            key=key,
            outbox_id=outbox_id,
            ticket_id=ticket.id if ticket else None,
            kind=kind,
            payload=payload,
            created_at=now,
            recipients=len(targets),
        )
        s.add(n)
        s.flush()
        q = self.cfg.quiet_hours
        # A dark source threatens every clock: like deadlines, never muted
        # unless quiet_hours.applies_to names the kind.
        mutable = not kind.startswith("deadline_") and (
            (q is not None and kind in q.applies_to)
            or (kind not in SOURCE_KINDS and (ticket is None or ticket.rule in ("none", "")))
        )
        start = (self._quiet_until(now) or now) if mutable else now
        for t in targets:
            r = t.recipient
            s.add(
                Delivery(
                    notice_id=n.id,
                    recipient=r.name,
                    channel=r.channel,
                    address=r.address,
                    status="pending",
                    next_attempt_at=start,
                    created_at=now,
                )
            )
        if routing.unrouted:
            # Nobody would hear of it: kept for the board and /metrics, not only logged.
            reason = "；".join(routing.missing)
            s.add(
                UnroutedNotice(
                    notice_id=n.id,
                    key=key,
                    kind=kind,
                    ticket_id=n.ticket_id,
                    place_code=ticket.place_code if ticket is not None else None,
                    department=ticket.department if ticket is not None else None,
                    reason=reason[:4000],
                    created_at=now,
                )
            )
            log.warning("通知 %s（%s）没有接收人：%s", key, KIND_LABEL.get(kind, kind), reason)
        elif not targets:
            log.info("通知 %s（%s）按配置不发给任何人", key, kind)
        return n

    def plan(self, now: datetime | None = None) -> int:
        """Turn new outbox rows and unacknowledged tickets into deliveries."""
        now = now or self.now()
        n = 0
        try:
            n += self._plan_outbox(now)
            n += self._plan_reminders(now)
        except IntegrityError:
            # Another dispatcher planned the same rows at the same moment.
            log.info("notices planned concurrently by another dispatcher; continuing")
        return n

    def _plan_outbox(self, now: datetime) -> int:
        total = 0
        while True:
            with self.store.transaction() as s:
                rows = s.scalars(
                    select(Outbox)
                    .outerjoin(Notice, Notice.outbox_id == Outbox.id)
                    .where(Notice.id.is_(None))
                    .order_by(Outbox.id)
                    .limit(PLAN_BATCH)
                ).all()
                for o in rows:
                    ticket = s.get(Ticket, o.ticket_id) if o.ticket_id is not None else None
                    self._add_notice(
                        s,
                        key=o.key,
                        kind=o.kind,
                        ticket=ticket,
                        payload=dict(o.payload or {}),
                        outbox_id=o.id,
                        now=now,
                    )
            total += len(rows)
            if len(rows) < PLAN_BATCH:
                return total

    def _plan_reminders(self, now: datetime) -> int:
        rem = self.cfg.unacknowledged
        interval = timedelta(minutes=rem.interval_minutes)
        horizon = now - interval * (rem.max_reminders + 1)
        with self.store.transaction() as s:
            tickets = s.scalars(
                select(Ticket).where(
                    Ticket.status == "new", Ticket.created_at > horizon, Ticket.created_at <= now
                )
            ).all()
            want: dict[str, tuple[Ticket, int]] = {}
            for t in tickets:
                j = min(int((now - t.created_at) / interval), rem.max_reminders)
                want[f"{t.id}:unack:{j}"] = (t, j)
            if not want:
                return 0
            have = set(s.scalars(select(Notice.key).where(Notice.key.in_(list(want)))))
            added = 0
            for key, (t, j) in want.items():
                if key in have:
                    continue
                ev = s.get(Event, t.event_id)
                nxt = s.scalar(
                    select(Deadline)
                    .where(Deadline.ticket_id == t.id, Deadline.met_at.is_(None))
                    .order_by(Deadline.due_at)
                    .limit(1)
                )
                payload = {
                    "ticket_id": t.id,
                    "detail": {
                        "title": ev.title if ev else "",
                        "place": t.place_label,
                        "severity": t.severity,
                        "rule": t.rule,
                        "t0": iso_shanghai(ev.t0) if ev else None,
                        "created_at": iso_shanghai(t.created_at),
                        "reminder": j,
                        "milestone": nxt.milestone if nxt else None,
                        "due_at": iso_shanghai(nxt.due_at) if nxt else None,
                    },
                }
                kind = "opened" if j == 0 else "unacknowledged"
                self._add_notice(s, key=key, kind=kind, ticket=t, payload=payload, outbox_id=None, now=now)
                added += 1
            return added

    # ------------------------------------------------------------------ rendering

    def render_one(
        self, notice: Notice, ticket: Ticket | None, d: Delivery, now: datetime
    ) -> tuple[str, str]:
        detail = dict((notice.payload or {}).get("detail") or {})
        label = KIND_LABEL.get(notice.kind, notice.kind)
        role = next((r.role for r in self.cfg.recipients if r.name == d.recipient), None)
        if notice.kind == "scheme_match":  # responder.schemes: a new post a scheme matched
            head = f"【{label}】{detail.get('scheme')}：{detail.get('title')}"
            lines = [f"### {head}", f"- 监测方案：{detail.get('scheme')}（{detail.get('owner')}）",
                     f"- 来源：{detail.get('source') or ''}，属地：{detail.get('place') or '待定'}，"
                     f"发布时间：{_fmt(detail.get('published_at'))}"]
            if detail.get("severity"):
                lines.append(f"- 级别：{detail['severity']}")
            lines.append(f"- 原文：{detail.get('url') or ''}")
            lines.append(f"- 查看方案全部信息：{self.base_url}/schemes/{detail.get('scheme_id')}")
            lines.append(f"- 通知对象：{d.recipient}")
            return head, "\n".join(lines)
        if notice.kind in SOURCE_KINDS:
            head = f"【{label}】{detail.get('source_name')}{detail.get('state_label')}"
            lines = [f"### {head}", *render_alert(detail)]
            lines.append(f"- 通知对象：{d.recipient}（{ROLE_LABEL.get(role or '', role or '')}）")
            lines.append(f"- 查看：{self.base_url.rstrip('/')}/api/sources")
            return head, "\n".join(lines)
        title = detail.get("title") or "舆情工单"
        head = f"【{label}】{title}"
        lines = [f"### {head}"]
        tid = notice.ticket_id
        sev = detail.get("severity") or (ticket.severity if ticket else "")
        place = detail.get("place") or (ticket.place_label if ticket else "待定")
        lines.append(f"- 工单：#{tid}（{sev}，{place}）")
        rule = detail.get("rule") or (ticket.rule if ticket else "")
        milestone = detail.get("milestone")
        due = detail.get("due_at")
        if notice.kind == "deadline_warning" and detail.get("percent"):
            lines.append(f"- 进度：法定时限已过 {detail['percent']}%")
        if milestone and due:
            lines.append(f"- 时限：{RULE_LABEL.get(rule, rule)}「{milestone}」，截止 {_fmt(due)}（北京时间）")
            if notice.kind != "milestone":
                left = (datetime.fromisoformat(due) - now).total_seconds()
                lines.append(f"- 剩余时间：{fmt_span(left)}" if left > 0 else f"- 已超时：{fmt_span(left)}")
        if notice.kind == "unacknowledged":
            created = detail.get("created_at")
            lines.append(f"- 工单创建于 {_fmt(created)}，至今未确认接收（第{detail.get('reminder')}次提醒）")
        if notice.kind == "escalated":
            lines.append(f"- 督办人：{detail.get('officer') or ''}（{_fmt(detail.get('at'))}），理由：{detail.get('reason') or ''}")
        if notice.kind in ("deadline_breached", "escalated") and detail.get("escalate_to"):
            lines.append(f"- 督办：{'、'.join(detail['escalate_to'])}")
        if notice.kind == "milestone":
            lines.append(f"- 完成时间：{_fmt(detail.get('met_at'))}，登记人：{detail.get('officer') or ''}")
        if notice.kind == "acknowledged":
            lines.append(f"- 确认人：{detail.get('officer') or ''}（{_fmt(detail.get('at'))}）")
        dept = ticket.department if ticket else None
        if dept:
            lines.append(f"- 责任部门：{dept}")
        lines.append(f"- 通知对象：{d.recipient}（{ROLE_LABEL.get(role or '', role or '')}）")
        lines.append(f"- 处理链接：{self.link(tid)}")
        return head, "\n".join(lines)

    def render_digest(
        self, items: list[tuple[Notice, Ticket | None, Delivery]], now: datetime
    ) -> tuple[str, str]:
        head = f"【舆情通知汇总】共 {len(items)} 条（发送频率受限，合并发送）"
        lines = [f"### {head}"]
        for i, (n, _t, _d) in enumerate(items, 1):
            detail = dict((n.payload or {}).get("detail") or {})
            label = KIND_LABEL.get(n.kind, n.kind)
            if n.kind == "scheme_match":
                lines.append(f"{i}. 【{label}】{detail.get('scheme')}：{detail.get('title')}"
                             f"（{detail.get('place') or '待定'}，{_fmt(detail.get('published_at'))}）{detail.get('url') or ''}")
                continue
            if n.kind in SOURCE_KINDS:
                lines.append(f"{i}. 【{label}】{detail.get('source_name')}{detail.get('state_label')}："
                             f"{detail.get('reason') or ''}")
                continue
            s = f"{i}. 【{label}】{detail.get('title') or '舆情工单'} #{n.ticket_id}"
            due = detail.get("due_at")
            if detail.get("milestone") and due:
                left = (datetime.fromisoformat(due) - now).total_seconds()
                when = f"剩余{fmt_span(left)}" if left > 0 else f"已超时{fmt_span(left)}"
                s += f"「{detail['milestone']}」截止 {_fmt(due)}，{when}"
            s += f" {self.link(n.ticket_id)}"
            lines.append(s)
        recips = sorted({d.recipient for _n, _t, d in items})
        lines.append(f"通知对象：{'、'.join(recips)}")
        return head, "\n".join(lines)

    # ------------------------------------------------------------------ delivering

    def _used(self, channel: str, now: datetime) -> int:
        with self.store.reader() as s:
            return int(
                s.scalar(
                    select(func.count(func.distinct(Delivery.message_id))).where(
                        Delivery.channel == channel,
                        Delivery.claimed_at > now - timedelta(seconds=60),
                        Delivery.claimed_at <= now,
                        Delivery.message_id.is_not(None),
                    )
                )
                or 0
            )

    def deliver(self, now: datetime | None = None) -> int:
        """Send what is due; return the number of messages sent."""
        now = now or self.now()
        lease = timedelta(seconds=self.cfg.claim_lease_s)
        with self.store.transaction() as s:
            s.execute(
                update(Delivery)
                .where(Delivery.status == "sending", Delivery.claimed_at < now - lease)
                .values(status="pending", next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
        with self.store.reader() as s:
            due = s.scalars(
                select(Delivery)
                .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
                .order_by(Delivery.id)
                .limit(DELIVER_BATCH)
            ).all()
        by_channel: OrderedDict[str, list[Delivery]] = OrderedDict()
        for d in due:
            if d.channel not in self.cfg.channels:
                self._finish([d.id], None, now, error=f"渠道 {d.channel} 已不在配置中")
                continue
            by_channel.setdefault(d.channel, []).append(d)
        sent = 0
        for ch, items in by_channel.items():
            for batch in self._messages(ch, items, now):
                if self._send(ch, batch, now):
                    sent += 1
        return sent

    def _messages(self, channel: str, items: list[Delivery], now: datetime) -> list[list[Delivery]]:
        """Split due deliveries into messages within the channel's rate limit."""
        rate = self.cfg.channels[channel].rate_per_minute
        if rate is None:
            return [[d] for d in items]
        cap = rate - self._used(channel, now)
        if cap <= 0:
            return []
        if len(items) <= cap:
            return [[d] for d in items]
        groups: OrderedDict[str | None, list[Delivery]] = OrderedDict()
        for d in items:
            groups.setdefault(d.address, []).append(d)
        if len(groups) >= cap:
            return [g for g in list(groups.values())[:cap]]
        singles = items[: cap - len(groups)]
        single_ids = {d.id for d in singles}
        out = [[d] for d in singles]
        for g in groups.values():
            rest = [d for d in g if d.id not in single_ids]
            if rest:
                out.append(rest)
        return out

    def _send(self, channel: str, batch: list[Delivery], now: datetime) -> bool:
        ids = [d.id for d in batch]
        mid = uuid.uuid4().hex
        with self.store.transaction() as s:
            won = s.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), Delivery.status == "pending")
                .values(
                    status="sending",
                    claimed_at=now,
                    claimed_by=self.run_id,
                    message_id=mid,
                    digest=len(ids) > 1,
                    attempts=Delivery.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if won != len(ids):
                s.rollback()
                return False
            rows = s.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()
            items = []
            for d in rows:
                n = s.get(Notice, d.notice_id)
                assert n is not None
                t = s.get(Ticket, n.ticket_id) if n.ticket_id is not None else None
                items.append((n, t, d))
        if len(items) == 1:
            title, text = self.render_one(*items[0], now)
            key = f"{items[0][0].key}:{items[0][2].recipient}"
            data = {
                "ticket_id": items[0][0].ticket_id,
                "kind": items[0][0].kind,
                "link": self.link(items[0][0].ticket_id),
                "recipient": items[0][2].recipient,
                "digest": False,
            }
        else:
            title, text = self.render_digest(items, now)
            key = f"digest:{mid}"
            data = {
                "digest": True,
                "items": [
                    {
                        "key": n.key,
                        "ticket_id": n.ticket_id,
                        "kind": n.kind,
                        "recipient": d.recipient,
                        "link": self.link(n.ticket_id),
                    }
                    for n, _t, d in items
                ],
            }
        msg = Message(title=title, text=text, key=key, address=batch[0].address, data=data)
        if self.before_send is not None:
            self.before_send(ids)
        try:
            self.channel(channel).send(msg)
        except DeliveryError as e:
            self._finish(ids, mid, now, error=str(e))
            return False
        except Exception as e:  # a channel bug must not stop the others
            log.exception("渠道 %s 发送异常", channel)
            self._finish(ids, mid, now, error=f"{type(e).__name__}: {e}")
            return False
        self._finish(ids, mid, now, error=None)
        return True

    def _finish(self, ids: list[int], mid: str | None, now: datetime, *, error: str | None) -> None:
        with self.store.transaction() as s:
            if error is None:
                s.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(ids), Delivery.message_id == mid, Delivery.status == "sending")
                    .values(status="sent", sent_at=now, last_error=None)
                    .execution_options(synchronize_session=False)
                )
                return
            backoff = self.cfg.retry.backoff_s
            for d in s.scalars(select(Delivery).where(Delivery.id.in_(ids))):
                if mid is not None and (d.message_id != mid or d.status != "sending"):
                    continue
                d.last_error = error[:2000]
                if mid is None or d.attempts >= self.cfg.retry.attempts:
                    d.status = "failed"
                    log.error("通知发送失败（已放弃）：%s → %s：%s", d.channel, d.recipient, error)
                else:
                    d.status = "pending"
                    d.next_attempt_at = now + timedelta(
                        seconds=backoff[min(d.attempts - 1, len(backoff) - 1)]
                    )
                    log.warning("通知发送失败（第%d次），%s 后重试：%s", d.attempts, d.next_attempt_at, error)

    # ------------------------------------------------------------------ loop

    def tick(self) -> tuple[int, int]:
        now = self.now()
        planned = self.plan(now)
        sent = self.deliver(now)
        return planned, sent

    def run(self, stop: threading.Event, tick_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("通知分发失败；%.1f 秒后重试", tick_s)
            stop.wait(tick_s)
        self.close()
