"""The classifier stage for real on the embedded transport: raw in, assessed out."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from classifiers import worker
from classifiers.assess import Assessor
from stream import topics as T
from stream.contracts import SHANGHAI, AssessedPost, RawPost, decode, encode, make_post_id
from stream.embedded import EmbeddedTransport
from stream.factory import topic
from stream.stage import dead_letters
from tests.fixtures.broker import drain
from yuqing.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 7, 1, 9, 30, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    return Assessor(Settings(data_dir=str(tmp_path_factory.mktemp("var")), config_dir=ROOT / "config"))


def raw(n: int, title: str, text: str, region: str | None = None) -> RawPost:
    return RawPost(
        post_id=make_post_id("test", f"p{n}"),
        source_id="test",
        source_kind="news",
        title=title,
        text=text,
        published_at=T0 + timedelta(minutes=n),
        fetched_at=T0 + timedelta(minutes=n, seconds=20),
        source_region=region,
    )


def test_raw_in_assessed_out(settings: Settings, assessor: Assessor) -> None:
    assert settings.transport.kind == "embedded"
    posts = [
        raw(1, "霍山县一厂房坍塌", "安徽省六安市霍山县一在建厂房坍塌，造成12人死亡、3人受伤。"),
        raw(2, "小区停水", "小区停水三天了，物业不管", region="340123"),
        raw(3, "", "中超联赛第10轮，主队2比1战胜客队，球迷欢呼。"),
    ]
    feeder = EmbeddedTransport(settings.data_path(settings.transport.embedded_path),
                               topic_prefix=settings.transport.topic_prefix)
    raw_topic = topic(settings, T.RAW_POSTS)
    out_topic = topic(settings, T.ASSESSED_POSTS)
    dlq_topic = topic(settings, T.DEAD_LETTER)
    feeder.ensure_topics([raw_topic, out_topic, dlq_topic])
    reader = feeder.consumer("test-reader", [out_topic])
    stop = threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            worker.run(settings, stop, assessor=assessor)
        except BaseException as e:  # noqa: B036 - reported below
            errors.append(e)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        prod = feeder.producer()
        for p in posts:
            prod.send(raw_topic, encode(p), key=p.post_id.encode())
        prod.send(raw_topic, b'{"schema": "raw_post", "v": 1, "text": 5}', key=b"bad")
        prod.flush()
        got = drain(reader, len(posts), timeout_s=30)
        dead = dead_letters(feeder, dlq_topic, expect=1, timeout_s=15)
    finally:
        stop.set()
        thread.join(timeout=30)
        reader.close()
        feeder.close()
    assert not thread.is_alive() and errors == []

    assert len(got) == len(posts)
    by_id = {}
    for rec in got:
        msg = decode(rec.value, AssessedPost)
        assert isinstance(msg, AssessedPost)
        assert rec.key == msg.post.post_id.encode()
        assert msg.assessed_at.utcoffset() == timedelta(hours=8)
        by_id[msg.post.post_id] = msg
    assert set(by_id) == {p.post_id for p in posts}
    collapse = by_id[posts[0].post_id].assessment
    assert (collapse.severity, collapse.place.code, collapse.event_subtype) == ("重大", "341525", "坍塌")
    water = by_id[posts[1].post_id].assessment
    assert water.place.code == "340123" and water.department == "肥西县住房和城乡建设局"
    assert by_id[posts[2].post_id].assessment.relevant is False

    assert len(dead) == 1 and dead[0].key == b"bad"
    assert b"text" in (dead[0].header(T.DLQ_REASON) or b"")
    assert dead[0].header(T.DLQ_STAGE) == worker.STAGE.encode()


def test_handler_keys_by_post_id(assessor: Assessor) -> None:
    fixed = datetime(2024, 7, 2, 8, 0, tzinfo=SHANGHAI)
    handle = worker.make_handler(assessor, "out", now=lambda: fixed)
    p = raw(9, "", "肥西县停水三天")
    (o,) = handle([p])
    assert (o.topic, o.key) == ("out", p.post_id)
    assert isinstance(o.value, AssessedPost) and o.value.assessed_at == fixed
    assert o.value.assessment.place.code == "340123"
