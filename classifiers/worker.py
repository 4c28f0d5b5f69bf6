"""The classifier stage: ``posts.raw`` → :class:`Assessor` → ``posts.assessed``.

Each RawPost becomes an AssessedPost (``assessed_at`` now, Asia/Shanghai)
keyed by ``post_id``, so a replayed batch overwrites nothing downstream: the
responder is idempotent by post id. The Assessor (gazetteer, rules, an
optional model) is loaded once per process, before the first poll.

A post whose text is over ``limits.max_text_chars``, or too long for its
assessed message to fit ``limits.max_message_bytes``, is cut first (the
crawler already does so; other producers may not) and assessed as cut: the
post notes its original length (``text_length``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel

from classifiers.assess import Assessor
from stream import topics as T
from stream.contracts import ASSESSMENT_RESERVE_BYTES, SHANGHAI, AssessedPost, RawPost, fit_text
from stream.factory import open_transport, topic
from stream.stage import Outgoing, StageOptions, run_stage
from stream.transport import record_bytes
from yuqing.settings import LimitsSettings, Settings

log = logging.getLogger("yuqing.classifier")

STAGE = "classifier"
GROUP = "classifier"


def make_handler(
    assessor: Assessor,
    out_topic: str,
    now: Callable[[], datetime] = lambda: datetime.now(SHANGHAI),
    limits: LimitsSettings | None = None,
) -> Callable[[list[BaseModel]], list[Outgoing]]:
    """The stage handler: assess a batch of RawPosts, one AssessedPost each."""
    limits = limits or LimitsSettings()

    def handle(msgs: list[BaseModel]) -> list[Outgoing]:
        posts = [m for m in msgs if isinstance(m, RawPost)]
        if len(posts) != len(msgs):
            bad = next(type(m).__name__ for m in msgs if not isinstance(m, RawPost))
            raise TypeError(f"classifier expects raw_post messages, got {bad}")
        for i, p in enumerate(posts):
            # Room for the post in its assessed message (keyed by post id).
            room = limits.max_message_bytes - ASSESSMENT_RESERVE_BYTES - record_bytes(b"", p.post_id.encode())
            fitted = fit_text(p, limits.max_text_chars, room)
            if fitted.truncated:
                log.info("内容 %s 正文过长（%d 字），截取前 %d 字评估", p.post_id,
                         fitted.post.text_length or 0, len(fitted.post.text))
                posts[i] = fitted.post
        assessments = assessor.assess_batch(posts)
        at = now()
        return [
            Outgoing(topic=out_topic, value=AssessedPost(post=p, assessment=a, assessed_at=at), key=p.post_id)
            for p, a in zip(posts, assessments, strict=True)
        ]

    return handle


def run(settings: Settings, stop: threading.Event, *, assessor: Assessor | None = None) -> None:
    """Run the classifier stage until ``stop`` is set."""
    assessor = assessor or Assessor(settings)
    log.info("classifier ready: %s", assessor.model_version)
    transport = open_transport(settings)
    try:
        run_stage(
            transport=transport,
            stage=STAGE,
            group=GROUP,
            topics=[topic(settings, T.RAW_POSTS)],
            expect=RawPost,
            handle=make_handler(assessor, topic(settings, T.ASSESSED_POSTS), limits=settings.limits),
            dead_letter_topic=topic(settings, T.DEAD_LETTER),
            stop=stop,
            batch_size=settings.classifier.batch_size,
            options=StageOptions.from_settings(settings),
        )
    finally:
        try:
            transport.close()
        except Exception:  # noqa: BLE001 - closing must not hide the real error
            log.warning("classifier: transport close failed", exc_info=True)
        log.info("classifier stopped")
