"""Message contracts: what is accepted on a topic and how a refusal explains itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from stream.contracts import (
    SHANGHAI,
    AssessedPost,
    Assessment,
    Casualties,
    ContractError,
    Place,
    RawPost,
    Responder,
    TicketEvent,
    decode,
    encode,
    make_post_id,
)

T0 = datetime(2024, 7, 1, 9, 30, tzinfo=SHANGHAI)


def raw_post(**over: object) -> RawPost:
    fields: dict[str, object] = {
        "post_id": make_post_id("demo-news", "a1"),
        "source_id": "demo-news",
        "source_kind": "news",
        "title": "某县发生山体滑坡",
        "text": "7月1日，某县发生山体滑坡，造成3人死亡。",
        "published_at": T0,
        "fetched_at": T0 + timedelta(minutes=5),
        "published_precision": "minute",
        "source_region": "510000",
    }
    fields.update(over)
    return RawPost(**fields)  # type: ignore[arg-type]


def assessed_post() -> AssessedPost:
    return AssessedPost(
        post=raw_post(),
        assessment=Assessment(
            relevant=True,
            topic="地质灾害",
            casualties=Casualties(deaths=3),
            severity="较大",
            place=Place(province="四川省", code="510000", level="province"),
            responders=[Responder(role="primary", name="四川省应急管理厅", rule="属地")],
            scores={"topic": {"地质灾害": 0.9}},
        ),
        assessed_at=datetime(2024, 7, 1, 1, 40, tzinfo=UTC),
    )


def ticket_event() -> TicketEvent:
    return TicketEvent(
        event_key="ticket-7:opened",
        ticket_id=7,
        event_id=1,
        kind="opened",
        at=T0,
        detail={"severity": "较大"},
    )


@pytest.mark.parametrize("make", [raw_post, assessed_post, ticket_event])
def test_round_trip(make) -> None:  # type: ignore[no-untyped-def]
    msg = make()
    data = encode(msg)
    obj = json.loads(data)
    assert obj["v"] == 1 and obj["schema"] in {"raw_post", "assessed_post", "ticket_event"}
    back = decode(data)
    assert type(back) is type(msg)
    assert back == msg
    assert decode(data, type(msg)) == msg


def test_other_offsets_are_accepted_and_keep_the_instant() -> None:
    utc = raw_post(published_at=datetime(2024, 7, 1, 1, 30, tzinfo=UTC))
    back = decode(encode(utc), RawPost)
    assert isinstance(back, RawPost)
    assert back.published_at == T0
    assert back.published_at.utcoffset() == timedelta(0)


def test_naive_datetime_is_rejected_everywhere() -> None:
    with pytest.raises(ValidationError, match="UTC offset"):
        raw_post(published_at=datetime(2024, 7, 1, 9, 30))

    # Mutated after construction: encode re-validates.
    post = raw_post()
    post.published_at = datetime(2024, 7, 1, 9, 30)
    with pytest.raises(ContractError, match="published_at.*UTC offset"):
        encode(post)

    # On the wire: a time without offset is refused with the field named.
    obj = json.loads(encode(raw_post()))
    obj["fetched_at"] = "2024-07-01T09:35:00"
    with pytest.raises(ContractError, match="fetched_at.*UTC offset"):
        decode(json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("data", "expect", "message"),
    [
        (b'{"schema": "tweet", "v": 1}', None, "unknown schema 'tweet'"),
        (b'{"v": 1, "text": "x"}', None, "unknown schema None"),
        (b'{"schema": 5, "v": 1}', None, "unknown schema 5"),
        (b"not json", None, "not JSON: Expecting value at line 1 column 1"),
        (b'{"schema": "raw_post", ', None, "not JSON"),
        ("中文".encode("gbk"), None, "not UTF-8"),
        (b"\xff\xfe\x00", None, "not UTF-8"),
        (b"[1, 2]", None, "not a JSON object"),
        (b'"raw_post"', None, "not a JSON object"),
    ],
)
def test_refusals_name_the_problem(data: bytes, expect: type[BaseModel] | None, message: str) -> None:
    with pytest.raises(ContractError) as e:
        decode(data, expect)
    assert message in str(e.value)


def test_wrong_version_and_wrong_schema() -> None:
    obj = json.loads(encode(raw_post()))
    obj["v"] = 2
    with pytest.raises(ContractError, match=r"unsupported version 2 of schema 'raw_post'"):
        decode(json.dumps(obj).encode())
    del obj["v"]
    with pytest.raises(ContractError, match=r"unsupported version None"):
        decode(json.dumps(obj).encode())

    with pytest.raises(ContractError, match=r"expected schema 'assessed_post', got 'raw_post'"):
        decode(encode(raw_post()), AssessedPost)


def test_bad_fields_are_named() -> None:
    obj = json.loads(encode(raw_post()))
    obj["source_kind"] = "blog"
    obj["unexpected"] = 1
    del obj["text"]
    with pytest.raises(ContractError) as e:
        decode(json.dumps(obj, ensure_ascii=False).encode())
    msg = str(e.value)
    assert "source_kind" in msg and "text" in msg and "unexpected" in msg

    nested = json.loads(encode(assessed_post()))
    nested["assessment"]["severity"] = "严重"
    with pytest.raises(ContractError, match=r"assessment\.severity"):
        decode(json.dumps(nested).encode(), AssessedPost)


def test_encode_refuses_what_is_not_a_contract() -> None:
    class Other(BaseModel):
        x: int = 1

    with pytest.raises(ContractError, match="Other is not a stream contract"):
        encode(Other())


def test_non_ascii_text_survives_as_utf8() -> None:
    post = raw_post(
        text="暴雨致💧内涝", published_at=datetime(2024, 7, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    )
    data = encode(post)
    assert "暴雨致💧内涝".encode() in data  # raw UTF-8, not \u escapes
    back = decode(data, RawPost)
    assert isinstance(back, RawPost) and back.text == "暴雨致💧内涝"


def test_a_stage_expecting_a_schema_accepts_and_refuses_exactly_the_same() -> None:
    """decode(data, expect) takes a one-pass path for the schema it expects; it
    must accept what the full check accepts and refuse with the same words."""
    good = encode(raw_post())
    assert decode(good, RawPost) == decode(good)
    obj = json.loads(good)
    variants = []
    for change in (
        lambda o: o.pop("v"),
        lambda o: o.update(v=2),
        lambda o: o.update(schema_=o.pop("schema")),  # the field's name, not its alias
        lambda o: o.pop("schema"),
        lambda o: o.update(source_kind="blog"),
        lambda o: o.update(published_at="2024-07-01T09:30:00"),
    ):
        bad = json.loads(json.dumps(obj))
        change(bad)
        variants.append(json.dumps(bad).encode())
    for data in variants:
        with pytest.raises(ContractError) as plain:
            decode(data)
        with pytest.raises(ContractError) as expecting:
            decode(data, RawPost)
        assert str(expecting.value) == str(plain.value)
