"""Size limits by design: text is cut where it enters (crawler, classifier) so
no stage produces a message the transport refuses; the settings say how much."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scrapy.exceptions import DropItem
from scrapy.utils.test import get_crawler

from classifiers import worker
from classifiers.assess import Assessor
from crawlers.pipelines import STATE_FILE, RawPostPipeline, SeenState
from crawlers.sources import load_sources
from crawlers.spiders.base import CrawlContext
from crawlers.spiders.news import NewsSpider
from stream.contracts import (
    ASSESSMENT_RESERVE_BYTES,
    SHANGHAI,
    AssessedPost,
    RawPost,
    decode,
    encode,
    fit_text,
    make_post_id,
)
from stream.transport import record_bytes
from yuqing.configfile import ConfigError
from yuqing.settings import LimitsSettings, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 7, 1, 9, 30, tzinfo=SHANGHAI)


def raw(n: int, text: str, title: str = "") -> RawPost:
    return RawPost(
        post_id=make_post_id("limits", f"p{n}"),
        source_id="limits",
        source_kind="forum",
        title=title,
        text=text,
        published_at=T0 + timedelta(minutes=n),
        fetched_at=T0 + timedelta(minutes=n, seconds=5),
    )


# ------------------------------------------------------------------ settings


def test_limits_are_validated_with_file_line_and_field(config_dir: Path, data_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_DATA_DIR", str(data_dir))
    s = load_settings(config_dir)
    assert s.limits == LimitsSettings()  # the shipped file says what the defaults are
    assert (s.limits.max_message_bytes, s.limits.max_text_chars, s.limits.max_attempts) == (1_048_576, 50_000, 3)

    path = config_dir / "settings.yaml"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    line_no = next(i for i, ln in enumerate(lines, 1) if ln.strip().startswith("max_text_chars:"))
    path.write_text(text.replace("max_text_chars: 50000", "max_text_chars: 400000"), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_settings(config_dir)
    assert f"settings.yaml:{line_no}: limits.max_text_chars:" in str(e.value)
    assert "max_message_bytes" in str(e.value)

    path.write_text(text.replace("max_message_bytes: 1048576", "max_message_bytes: 4194304"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"limits\.max_message_bytes: .*less than or equal to 1048576"):
        load_settings(config_dir)
    path.write_text(text.replace("max_attempts: 3", "max_attempts: 0"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"limits\.max_attempts"):
        load_settings(config_dir)


# ------------------------------------------------------------------ contract


def test_fit_text_cuts_characters_and_bytes_and_notes_the_length() -> None:
    p = raw(1, "停水" * 3000 + "\x01" * 100)  # control characters take 6 bytes in JSON
    same = fit_text(p, 10_000)
    assert not same.truncated and same.post is p

    cut = fit_text(p, 1000)
    assert cut.truncated and cut.post.text == p.text[:1000] and cut.post.text_length == len(p.text) == 6100

    for budget in (5_000, 4_321, 2_000):
        b = fit_text(p, 100_000, budget)
        assert b.truncated and len(encode(b.post)) <= budget
        assert p.text.startswith(b.post.text) and b.post.text_length == 6100
        # The longest prefix that fits: one more character would not.
        longer = b.post.model_copy(update={"text": p.text[: len(b.post.text) + 1]})
        assert len(encode(longer)) > budget

    # Cutting a cut post keeps the original length.
    again = fit_text(cut.post, 500)
    assert again.post.text_length == 6100 and len(again.post.text) == 500


def test_text_length_is_written_only_when_set() -> None:
    whole = raw(2, "短文")
    data = json.loads(encode(whole))
    assert "text_length" not in data  # a reader of the previous release still takes it
    cut = fit_text(raw(3, "长" * 2000), 1000).post
    assert json.loads(encode(cut))["text_length"] == 2000
    back = decode(encode(cut), RawPost)
    assert isinstance(back, RawPost) and back.text_length == 2000 and back.text == "长" * 1000
    assessed = AssessedPost.model_validate_json(
        json.dumps({"schema": "assessed_post", "v": 1, "post": data, "assessed_at": T0.isoformat(),
                    "assessment": {"relevant": False}})
    )
    assert "text_length" not in json.loads(encode(assessed))["post"]
    bad = {**data, "text_length": -1}
    with pytest.raises(ValueError, match="text_length"):
        decode(json.dumps(bad).encode(), RawPost)


# ------------------------------------------------------------------ crawler


class Sent:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = ()) -> None:
        self.sent.append((topic, value, key))

    def flush(self, timeout_s: float = 30.0) -> None:
        pass

    def close(self) -> None:
        pass


def test_crawler_cuts_long_text_and_keeps_the_whole_of_it(settings: Settings, tmp_path: Path) -> None:
    source = next(s for s in load_sources(settings) if s.kind == "news")
    producer = Sent()
    limits = LimitsSettings(max_message_bytes=65_536, max_text_chars=10_000)
    ctx = CrawlContext(producer=producer, topic="t.posts.raw", state_path=tmp_path / STATE_FILE, limits=limits)
    crawler = get_crawler(NewsSpider, {"TWISTED_REACTOR_ENABLED": False})
    crawler.spider = NewsSpider.from_crawler(crawler, source=source, ctx=ctx)
    pipe = RawPostPipeline.from_crawler(crawler)
    pipe.open_spider()
    now = datetime.now(SHANGHAI).replace(microsecond=0)

    def item(n: int, text: str, title: str = "标题") -> Any:
        return crawler.spider.make_item(native_id=f"http://x/{n}.htm", url=f"http://x/{n}.htm", title=title,
                                        text=text, author="记者", published=(now - timedelta(hours=1), "minute"),
                                        fetched_at=now)

    long_text = "".join(f"第{i}段：小区停水三天，物业不管。" for i in range(3000))
    wide = "𠀀" * 9_000 + "\x02" * 100  # 4-byte characters and 6-byte escapes: the byte budget binds
    pipe.process_item(item(1, long_text))
    pipe.process_item(item(2, "短文"))
    pipe.process_item(item(3, wide))
    with pytest.raises(DropItem, match="内容过大"):
        pipe.process_item(item(4, "短文", title="标" * 40_000))  # no cut of the text makes it fit
    pipe.close_spider()

    posts = {p.post_id: p for p in (decode(v, RawPost) for _, v, _ in producer.sent) if isinstance(p, RawPost)}
    assert len(posts) == 3
    by_url = {p.url: p for p in posts.values()}
    first, short, third = by_url["http://x/1.htm"], by_url["http://x/2.htm"], by_url["http://x/3.htm"]
    assert first.text == long_text[:10_000] and first.text_length == len(long_text)
    assert short.text == "短文" and short.text_length is None
    assert third.text_length == 9_100 and wide.startswith(third.text) and len(third.text) < 9_000
    for _, v, k in producer.sent:
        assert record_bytes(v, k) <= limits.max_message_bytes - ASSESSMENT_RESERVE_BYTES
    stats = crawler.stats.get_stats()
    assert stats["yuqing/truncated"] == 2 and stats["yuqing/rejected"] == 1

    state = SeenState(tmp_path / STATE_FILE)
    try:
        assert state.full_text(first.post_id) == long_text
        assert state.full_text(third.post_id) == wide
        assert state.full_text(short.post_id) is None
    finally:
        state.close()


# ------------------------------------------------------------------ classifier


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    return Assessor(Settings(data_dir=str(tmp_path_factory.mktemp("var")), config_dir=ROOT / "config"))


def test_classifier_cuts_what_an_other_producer_sent_too_long(assessor: Assessor) -> None:
    limits = LimitsSettings(max_message_bytes=100_000, max_text_chars=20_000)
    handle = worker.make_handler(assessor, "t.posts.assessed", limits=limits)
    body = "安徽省合肥市蜀山区某小区停水三天，物业不管，居民反映强烈。"
    long_post = raw(1, body * 2000)  # 58,000 characters
    wide_post = raw(2, body + "𠀀" * 19_000)  # under the characters, over the bytes
    out = handle([long_post, raw(3, body), wide_post])
    assert [o.key for o in out] == [long_post.post_id, raw(3, body).post_id, wide_post.post_id]
    a1, a3, a2 = (o.value for o in out)
    assert isinstance(a1, AssessedPost) and isinstance(a2, AssessedPost) and isinstance(a3, AssessedPost)
    assert a1.post.text == long_post.text[:20_000] and a1.post.text_length == len(long_post.text)
    assert a3.post.text_length is None and a3.post.text == body
    assert a2.post.text_length == len(wide_post.text) and wide_post.text.startswith(a2.post.text)
    for o in out:
        assert record_bytes(encode(o.value), (o.key or "").encode()) <= limits.max_message_bytes
    # Assessed as cut: the place is found in what was kept.
    assert a1.assessment.place.city == "合肥市"


def test_a_raw_post_of_about_1_mib_goes_through_the_classifier_cut(transport_settings: Settings,
                                                                   assessor: Assessor) -> None:
    """The fault-injection case: a valid raw post just under the transport's limit used to
    become an assessed message over it, retried for ever, with the posts behind it waiting."""
    import threading

    from stream import topics as T
    from stream.factory import open_transport, topic
    from tests.fixtures.broker import drain

    s = transport_settings.model_copy(update={"config_dir": ROOT / "config"})
    body = "小区停水三天了，物业不管。"
    big = raw(1, "")
    room = s.limits.max_message_bytes - record_bytes(encode(big), big.post_id.encode())
    big = raw(1, (body * (room // len(body.encode()) + 1))[: room // 3 - 10])
    value = encode(big)
    assert s.limits.max_message_bytes - 100 < record_bytes(value, big.post_id.encode()) <= s.limits.max_message_bytes
    after = raw(2, "合肥市蜀山区某小区停水")

    t = open_transport(s)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(s, stop), kwargs={"assessor": assessor}, daemon=True)
    try:
        t.ensure_topics([topic(s, T.RAW_POSTS), topic(s, T.ASSESSED_POSTS), topic(s, T.DEAD_LETTER)])
        reader = t.consumer("reader", [topic(s, T.ASSESSED_POSTS)])
        p = t.producer()
        p.send(topic(s, T.RAW_POSTS), value, key=b"same")  # one partition: the second waits for the first
        p.send(topic(s, T.RAW_POSTS), encode(after), key=b"same")
        p.flush()
        thread.start()
        got = drain(reader, 2, timeout_s=60)
        reader.close()
    finally:
        stop.set()
        thread.join(timeout=30)
        t.close()
    out = [decode(r.value, AssessedPost) for r in got]
    # Assessed posts are keyed by post id, so the two may sit on different
    # partitions: their order on the way out is not part of the contract.
    assert sorted(a.post.post_id for a in out if isinstance(a, AssessedPost)) == sorted([big.post_id, after.post_id])
    first = next(a for a in out if isinstance(a, AssessedPost) and a.post.post_id == big.post_id)
    assert first.post.text_length == len(big.text) and len(first.post.text) == s.limits.max_text_chars
    assert all(record_bytes(r.value, r.key) <= s.limits.max_message_bytes for r in got)
