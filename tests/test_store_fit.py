"""A valid message is stored, never refused, whatever its strings hold.

The contract allows what PostgreSQL's columns refuse (NUL in text, strings
longer than a varchar, integers beyond int4): the responder stores such a
post cut to fit, on SQLite and PostgreSQL alike. A lone UTF-16 surrogate is
not valid Unicode at all: the contract refuses it at decode time, so the
stage dead-letters it at once instead of failing three times to re-encode it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from responder.service import fit_for_store, handle_batch
from responder.store import Event, Post, Store, Ticket
from stream.contracts import AssessedPost, ContractError, RawPost, decode
from tests.fixtures.databases import assessed, sh

T = sh(2026, 11, 20, 9, 0)


def _hostile() -> AssessedPost:
    ap = assessed(
        "nul-1",
        title="蜀山区\x00小区停水",
        text="合肥市蜀山区某小区\x00停水三天，物业不管。",
        published_at=T,
        source_name="论坛" * 300,
        severity_reason="理由\x00",
        department="住房和城乡建设局" * 20,
    )
    data = ap.model_dump(by_alias=True)
    data["post"]["author"] = "作者\x00" + "长" * 500
    data["post"]["parent_id"] = "p" * 200
    data["assessment"]["event_type"] = "事故灾难" * 20
    data["assessment"]["casualties"]["deaths"] = 10**12
    return AssessedPost.model_validate(data)


def test_fit_for_store_leaves_an_ordinary_post_alone() -> None:
    ap = assessed("plain", text="合肥市蜀山区某小区停水三天。", published_at=T)
    assert fit_for_store(ap) is ap


def test_hostile_strings_are_stored_cut_to_fit(store_url: str, settings) -> None:
    store = Store(store_url)
    try:
        handle_batch(store, settings, [_hostile()], now=T + timedelta(hours=1))
        with store.reader() as s:
            post = s.query(Post).one()
            ticket = s.query(Ticket).one()
            event = s.query(Event).one()
        assert post.title == "蜀山区小区停水" and "\x00" not in post.text
        assert post.text == "合肥市蜀山区某小区停水三天，物业不管。"
        assert len(post.source_name) == 200 and len(post.author) == 200 and post.author.startswith("作者长")
        assert post.parent_id == "p" * 80
        assert len(post.department or "") == 100 and len(post.event_type or "") == 40
        assert post.deaths == 2**31 - 1
        assert "\x00" not in ticket.severity_reason and len(ticket.department or "") <= 100
        assert event.title == "蜀山区小区停水"
    finally:
        store.close()


def _raw(text_json: str) -> bytes:
    return (
        '{"schema": "raw_post", "v": 1, "post_id": "s1", "source_id": "s", "source_kind": "news",'
        f' "text": {text_json}, "published_at": "2026-11-20T09:00:00+08:00",'
        ' "fetched_at": "2026-11-20T09:10:00+08:00"}'
    ).encode()


@pytest.mark.parametrize("escape", [r'"a\ud800b"', r'"a\uDFFFb"', r'"\udc00"'])
def test_lone_surrogate_is_a_contract_error(escape: str) -> None:
    with pytest.raises(ContractError, match="surrogate"):
        decode(_raw(escape), RawPost)


def test_surrogate_pair_and_escaped_backslash_are_fine() -> None:
    assert decode(_raw(json.dumps("😀")), RawPost).text == "😀"  # ascii JSON: \ud83d\ude00
    assert decode(_raw(r'"C:\\ud800"'), RawPost).text == r"C:\ud800"
