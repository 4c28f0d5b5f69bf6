"""Fuzz the real stages' loops on both transports: thousands of random and mutated
messages (deep nesting, huge strings, invalid UTF-8, wrong types, extreme
values, valid messages with bytes flipped) go through the classifier and the
responder; every one ends exactly once, through or dead-lettered, and the
stage keeps consuming. Larger counts: ``bench/stage_fuzz.py``."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from classifiers import worker
from classifiers.assess import Assessor
from responder import service
from responder.store import Post, Store
from stream.contracts import AssessedPost, RawPost
from tests.fixtures.fuzz import make_cases, run_fuzz
from yuqing.settings import LimitsSettings, Settings, StoreSettings

ROOT = Path(__file__).resolve().parents[1]
N = 600  # per stage and transport: about 20 s each here


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    return Assessor(Settings(data_dir=str(tmp_path_factory.mktemp("var")), config_dir=ROOT / "config"))


def _settings(transport_settings: Settings) -> Settings:
    # Shorter texts than the default limit, so that cutting them is cheap to test.
    limits = LimitsSettings(max_text_chars=5_000)
    return transport_settings.model_copy(update={"config_dir": ROOT / "config", "limits": limits})


def test_classifier_takes_anything(transport_settings: Settings, assessor: Assessor) -> None:
    s = _settings(transport_settings)
    cases = make_cases(random.Random(13), N, RawPost, s.limits.max_message_bytes, s.limits.max_text_chars)

    def run(settings: Settings, stop: threading.Event) -> None:
        worker.run(settings, stop, assessor=assessor)

    res = run_fuzz(s, "classifier", cases, run)
    print(res.summary())
    assert res.problems == []
    assert res.through + res.dead == len(cases)
    # The fuzz reached what it is for: all kinds, both outcomes, texts cut.
    assert {"valid", "valid_extreme", "long_text", "wrong_type", "mutated"} <= set(res.kinds)
    assert res.through > N // 4 and res.dead > N // 4 and res.truncated > 0


def test_responder_takes_anything(transport_settings: Settings) -> None:
    s = _settings(transport_settings)
    cases = make_cases(random.Random(29), N, AssessedPost, s.limits.max_message_bytes, s.limits.max_text_chars)
    store = Store(s.store_url)

    def stored() -> set[str]:
        with store.reader() as r:
            return set(r.scalars(select(Post.post_id)))

    try:
        res = run_fuzz(s, "responder", cases, service.run, stored=stored)
    finally:
        store.close()
    print(res.summary())
    assert res.problems == []
    assert res.through + res.dead == len(cases)
    assert res.through > N // 4 and res.dead > N // 4


def test_responder_takes_anything_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    from tests.fixtures.broker import stream_settings

    s = _settings(stream_settings("embedded", tmp_path)).model_copy(
        update={"store": StoreSettings(url=pg_url)}
    )
    cases = make_cases(random.Random(31), N, AssessedPost, s.limits.max_message_bytes, s.limits.max_text_chars)
    store = Store(s.store_url)

    def stored() -> set[str]:
        with store.reader() as r:
            return set(r.scalars(select(Post.post_id)))

    try:
        res = run_fuzz(s, "responder", cases, service.run, stored=stored)
    finally:
        store.close()
    print(res.summary())
    assert res.problems == []
    assert res.through + res.dead == len(cases)
    assert res.through > N // 4 and res.dead > N // 4
