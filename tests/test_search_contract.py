"""One contract for every search backend.

``embedded`` (tantivy + jieba, posts in SQLite) always runs. ``elasticsearch`` runs on
``YUQING_ES_URL`` (a real 8.x or 9.x) or else on noida-db's Elasticsearch
service, ``opensearch`` on osmem-server (OpenSearch 3.x API), both started by
``tests/fixtures/search.py``; each test gets its own index, deleted afterwards.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from unittest.mock import patch

import pytest

from responder.search import PostDoc, SearchBackend, SearchQuery, open_search, place_prefix
from responder.search import segment as seg
from responder.search.elastic import ElasticSearch
from responder.search.embedded import EmbeddedSearch
from responder.search.opensearch import OpenSearch
from responder.search.rest import RestSearch
from yuqing.settings import Settings

CST = timezone(timedelta(hours=8))


def _t(day: int, hour: int, minute: int = 0, month: int = 8) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=CST)


DOCS: list[PostDoc] = [
    PostDoc(
        post_id="p01",
        title="霍山县一在建厂房发生坍塌事故",
        text="8月3日上午，六安市霍山县经济开发区一在建厂房发生坍塌事故，造成2人死亡、3人受伤，"
        "另有多人被困。事故原因正在调查中，当地已启动应急响应。",
        source_id="ahnews",
        source_kind="news",
        url="https://news.example.cn/a/1",
        published_at=_t(3, 10),
        place_code="341525",
        place_label="安徽省六安市霍山县",
        topic="安全生产",
        severity="较大",
        event_id=101,
    ),
    PostDoc(
        post_id="p02",
        title="合肥蜀山区一餐馆燃气爆炸",
        text="网友爆料：今晚蜀山区某小区底商餐馆发生燃气爆炸，玻璃碎了一地，有人受伤送医。",
        source_id="weibo-hf",
        source_kind="weibo",
        url="https://weibo.example.cn/2",
        published_at=_t(2, 20, 15),
        place_code="340104",
        place_label="安徽省合肥市蜀山区",
        topic="安全生产",
        severity="一般",
    ),
    PostDoc(
        post_id="p03",
        title="金寨县暴雨引发山体滑坡",
        text="受持续强降雨影响，金寨县多个乡镇发生山体滑坡，滑坡体阻断县道，滑坡现场已设警戒。",
        source_id="ahnews",
        source_kind="news",
        url="https://news.example.cn/a/3",
        published_at=_t(1, 6, 30),
        place_code="341524",
        place_label="安徽省六安市金寨县",
        topic="自然灾害",
        severity="较大",
        event_id=102,
    ),
    PostDoc(
        post_id="p04",
        title="合肥市召开防汛工作调度会",
        text="市防汛抗旱指挥部召开调度会，部署主汛期防汛工作，要求各区县落实巡查值守。",
        source_id="hefei-gov",
        source_kind="gov_board",
        url="https://www.hefei.example.gov.cn/4",
        published_at=_t(30, 9, month=7),
        place_code="340100",
        place_label="安徽省合肥市",
        topic="防汛",
        severity=None,
    ),
    PostDoc(
        post_id="p05",
        title="南京玄武区居民反映夜间施工噪音扰民",
        text="玄武区某工地连续多日夜间施工，ABC物业公司称已多次向城管投诉，噪音问题仍未解决。",
        source_id="nj-forum",
        source_kind="forum",
        url="https://bbs.example.cn/5",
        published_at=_t(28, 23, 40, month=7),
        place_code="320102",
        place_label="江苏省南京市玄武区",
        topic="环境",
        severity="一般",
    ),
    PostDoc(
        post_id="p06",
        title="霍山厂房坍塌救援进展：被困人员全部救出",
        text="记者从霍山县获悉，厂房坍塌现场被困人员已全部救出，伤者正在医院救治。",
        source_id="weibo-la",
        source_kind="weibo",
        url="https://weibo.example.cn/6",
        # 15:00 in Shanghai, given in UTC: backends must compare instants.
        published_at=datetime(2025, 8, 3, 7, 0, tzinfo=UTC),
        place_code="341525",
        place_label="安徽省六安市霍山县",
        topic="安全生产",
        severity="较大",
        event_id=101,
    ),
    PostDoc(
        post_id="p07",
        title="安徽省气象台发布高温橙色预警",
        text="预计未来三天全省大部分地区最高气温将达38℃以上，请注意防暑降温。",
        source_id="ah-official",
        source_kind="official",
        url="https://www.ah.example.gov.cn/7",
        published_at=_t(4, 8),
        place_code="340000",
        place_label="安徽省",
        topic="气象",
        severity=None,
    ),
    PostDoc(
        post_id="p08",
        title="六安市举办茶叶博览会",
        text="第十届六安茶叶博览会开幕，来自各地的茶商齐聚一堂，现场签约金额超过3亿元。",
        source_id="ahnews",
        source_kind="news",
        url="https://news.example.cn/a/8",
        published_at=_t(25, 14, month=7),
        place_code="341500",
        place_label="安徽省六安市",
        topic=None,
        severity=None,
    ),
    PostDoc(
        post_id="p09",
        title="汛期地质灾害防治知识问答",
        text="汛期降雨集中，容易诱发泥石流、崩塌等地质灾害。居民应关注预警信息，出现滑坡征兆时及时撤离，"
        "不要在陡坡下停留。本文整理了常见问题，供公众参考。",
        source_id="hefei-gov",
        source_kind="gov_board",
        url="https://www.hefei.example.gov.cn/9",
        published_at=_t(29, 10, month=7),
        place_code=None,
        place_label="待定",
        topic="自然灾害",
        severity=None,
    ),
]
BY_ID = {d.post_id: d for d in DOCS}


def _make_embedded(tmp_path: Path) -> tuple[SearchBackend, object]:
    b = EmbeddedSearch(tmp_path / "search.db")
    return b, b.close


def _server_url(request: pytest.FixtureRequest, kind: str = "elasticsearch") -> str:
    return str(request.getfixturevalue("opensearch_url" if kind == "opensearch" else "es_url"))


_SERVER_BACKEND: dict[str, type[RestSearch]] = {"elasticsearch": ElasticSearch, "opensearch": OpenSearch}


def _make_server(url: str, kind: str) -> tuple[RestSearch, object]:
    b = _SERVER_BACKEND[kind](url, f"yuqing-test-{uuid.uuid4().hex[:12]}")

    def cleanup() -> None:
        b.drop_index()
        b.close()

    return b, cleanup


@pytest.fixture(params=["embedded", "elasticsearch", "opensearch"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SearchBackend]:
    if request.param == "embedded":
        b, cleanup = _make_embedded(tmp_path)
    else:
        b, cleanup = _make_server(_server_url(request, request.param), request.param)
    try:
        yield b
    finally:
        cleanup()  # type: ignore[operator]


@pytest.fixture
def loaded(backend: SearchBackend) -> SearchBackend:
    backend.index(DOCS)
    return backend


def ids(backend: SearchBackend, **kw: object) -> set[str]:
    r = backend.search(SearchQuery(limit=100, **kw))  # type: ignore[arg-type]
    got = {h.post_id for h in r.hits}
    assert r.total == len(got), "total disagrees with the hits when everything fits on one page"
    return got


# -- full text ---------------------------------------------------------------


def test_chinese_full_text(loaded: SearchBackend) -> None:
    assert ids(loaded, text="坍塌") == {"p01", "p06"}
    assert ids(loaded, text="厂房坍塌") == {"p01", "p06"}
    assert ids(loaded, text="茶叶") == {"p08"}
    assert ids(loaded, text="地铁") == set()


def test_all_query_words_must_match(loaded: SearchBackend) -> None:
    # 厂房 is only in p01/p06, 爆炸 only in p02: together nothing.
    assert ids(loaded, text="厂房 爆炸") == set()
    assert ids(loaded, text="燃气爆炸") == {"p02"}


def test_part_of_a_longer_word_matches(loaded: SearchBackend) -> None:
    # 霍山县 is indexed with its sub-words 霍山 / 山县 (search mode).
    assert ids(loaded, text="霍山") == {"p01", "p06"}
    assert ids(loaded, text="霍山县") == {"p01", "p06"}


def test_full_width_and_case_are_normalised(loaded: SearchBackend) -> None:
    assert ids(loaded, text="abc") == {"p05"}
    assert ids(loaded, text="ＡＢＣ") == {"p05"}


def test_function_words_in_a_query_are_ignored(loaded: SearchBackend) -> None:
    # p01 has no 的; the query's 的 must not make it miss.
    assert "的" not in BY_ID["p01"].text + BY_ID["p01"].title
    assert ids(loaded, text="霍山的坍塌") == {"p01", "p06"}


def test_empty_query_lists_everything(loaded: SearchBackend) -> None:
    assert ids(loaded) == set(BY_ID)
    assert ids(loaded, text="  ！？ ") == set(BY_ID)


def test_relevance_ranks_stronger_match_first(loaded: SearchBackend) -> None:
    # p03 has 滑坡 in the title and three times in the text; p09 once.
    r = loaded.search(SearchQuery(text="滑坡"))
    assert [h.post_id for h in r.hits] == ["p03", "p09"]
    assert r.hits[0].score > r.hits[1].score


# -- upsert / get / delete / count ------------------------------------------


def test_index_is_an_upsert_by_post_id(loaded: SearchBackend) -> None:
    assert loaded.count() == len(DOCS)
    loaded.index(DOCS)  # a replayed batch
    assert loaded.count() == len(DOCS)
    assert ids(loaded, text="坍塌") == {"p01", "p06"}

    old = BY_ID["p08"]
    new = PostDoc(
        **{**old.__dict__, "title": "六安市举办小龙虾美食节", "text": "小龙虾美食节开幕，游客众多。"}
    )
    loaded.index([new])
    assert loaded.count() == len(DOCS)
    assert ids(loaded, text="茶叶") == set(), "the old words must leave the index"
    assert ids(loaded, text="龙虾") == {"p08"}
    got = loaded.get("p08")
    assert got is not None and got.title == "六安市举办小龙虾美食节"


def test_last_version_in_one_batch_wins(backend: SearchBackend) -> None:
    a = BY_ID["p02"]
    b = PostDoc(**{**a.__dict__, "text": "更正：系液化气罐泄漏，无人受伤。"})
    backend.index([a, b])
    assert backend.count() == 1
    assert ids(backend, text="液化气") == {"p02"}
    assert ids(backend, text="玻璃") == set()


def test_get_round_trips_a_document(loaded: SearchBackend) -> None:
    for d in (BY_ID["p06"], BY_ID["p09"], BY_ID["p01"]):
        got = loaded.get(d.post_id)
        assert got == d
        assert got is not None and got.published_at.utcoffset() == d.published_at.utcoffset()
    assert loaded.get("no-such-post") is None


def test_delete(loaded: SearchBackend) -> None:
    loaded.delete("p05")
    assert loaded.get("p05") is None
    assert loaded.count() == len(DOCS) - 1
    assert ids(loaded, text="噪音") == set()
    loaded.delete("p05")  # again: not an error
    loaded.delete("never-indexed")
    assert loaded.count() == len(DOCS) - 1


def test_count_of_empty_index(backend: SearchBackend) -> None:
    assert backend.count() == 0
    assert backend.search(SearchQuery(text="坍塌")).total == 0
    backend.index([])
    assert backend.count() == 0


# -- filters -----------------------------------------------------------------


def test_place_prefix_scopes_a_jurisdiction_and_below(loaded: SearchBackend) -> None:
    anhui = {"p01", "p02", "p03", "p04", "p06", "p07", "p08"}
    assert ids(loaded, place_code="34") == anhui
    assert ids(loaded, place_code="340000") == anhui  # a full province code means the same
    # Lu'an city sees its counties and itself, not Hefei, not the province level.
    assert ids(loaded, place_code="3415") == {"p01", "p03", "p06", "p08"}
    assert ids(loaded, place_code="341500") == {"p01", "p03", "p06", "p08"}
    assert ids(loaded, place_code="3401") == {"p02", "p04"}
    assert ids(loaded, place_code="341525") == {"p01", "p06"}
    assert ids(loaded, place_code="32") == {"p05"}
    assert ids(loaded, place_code="44") == set()


def test_source_kind_severity_topic_event_filters(loaded: SearchBackend) -> None:
    assert ids(loaded, source_kind="weibo") == {"p02", "p06"}
    assert ids(loaded, source_kind=["forum", "official"]) == {"p05", "p07"}
    assert ids(loaded, severity="较大") == {"p01", "p03", "p06"}
    assert ids(loaded, topic="自然灾害") == {"p03", "p09"}
    assert ids(loaded, event_id=101) == {"p01", "p06"}
    assert ids(loaded, text="坍塌", source_kind="weibo") == {"p06"}
    assert ids(loaded, text="坍塌", place_code="3401") == set()


def test_date_range_from_inclusive_to_exclusive(loaded: SearchBackend) -> None:
    # p06 is 2025-08-03 15:00 +08:00, given as 07:00 UTC; the bound is in UTC too.
    got = ids(loaded, published_from=_t(2, 0), published_to=datetime(2025, 8, 3, 7, 0, tzinfo=UTC))
    assert got == {"p02", "p01"}
    assert ids(loaded, published_from=_t(3, 15)) == {"p06", "p07"}
    assert ids(loaded, published_to=_t(28, 23, 40, month=7)) == {"p08"}


# -- facets, sorting, paging -------------------------------------------------


def test_facets_count_the_whole_matching_set(loaded: SearchBackend) -> None:
    r = loaded.search(SearchQuery(limit=1))
    assert len(r.hits) == 1 and r.total == len(DOCS)
    assert r.facets["source_kind"] == {"news": 3, "weibo": 2, "gov_board": 2, "forum": 1, "official": 1}
    assert r.facets["severity"] == {"较大": 3, "一般": 2}
    assert r.facets["topic"] == {"安全生产": 3, "自然灾害": 2, "防汛": 1, "环境": 1, "气象": 1}

    r = loaded.search(SearchQuery(place_code="3415"))
    assert r.facets["source_kind"] == {"news": 3, "weibo": 1}
    assert r.facets["severity"] == {"较大": 3}

    r = loaded.search(SearchQuery(text="坍塌"))
    assert r.facets["source_kind"] == {"news": 1, "weibo": 1}
    assert r.facets["topic"] == {"安全生产": 2}


def test_sort_by_time(loaded: SearchBackend) -> None:
    newest_first = [d.post_id for d in sorted(DOCS, key=lambda d: d.published_at, reverse=True)]
    assert newest_first[:2] == ["p07", "p06"]
    r = loaded.search(SearchQuery(sort="time", limit=100))
    assert [h.post_id for h in r.hits] == newest_first
    r = loaded.search(SearchQuery(sort="time_asc", limit=100))
    assert [h.post_id for h in r.hits] == newest_first[::-1]
    r = loaded.search(SearchQuery(text="坍塌", sort="time"))
    assert [h.post_id for h in r.hits] == ["p06", "p01"]
    r = loaded.search(SearchQuery(text="坍塌", sort="time_asc"))
    assert [h.post_id for h in r.hits] == ["p01", "p06"]


def test_pagination(loaded: SearchBackend) -> None:
    pages = [loaded.search(SearchQuery(sort="time", limit=4, offset=o)) for o in (0, 4, 8)]
    assert [len(p.hits) for p in pages] == [4, 4, 1]
    assert all(p.total == len(DOCS) for p in pages)
    walked = [h.post_id for p in pages for h in p.hits]
    full = [h.post_id for h in loaded.search(SearchQuery(sort="time", limit=100)).hits]
    assert walked == full and len(set(walked)) == len(DOCS)
    past = loaded.search(SearchQuery(sort="time", limit=4, offset=40))
    assert past.hits == [] and past.total == len(DOCS)


# -- what a hit shows ---------------------------------------------------------


def test_highlighted_snippet_reads_as_written(loaded: SearchBackend) -> None:
    r = loaded.search(SearchQuery(text="厂房坍塌", place_code="341525", sort="time_asc"))
    hit = r.hits[0]
    assert hit.post_id == "p01"
    assert "<em>坍塌</em>" in hit.snippet and "<em>厂房</em>" in hit.snippet
    assert "厂房</em>发生<em>坍塌</em>事故" in hit.snippet, "no spaces between Chinese words"
    assert hit.title_html == "霍山县一在建<em>厂房</em>发生<em>坍塌</em>事故"
    assert hit.title == BY_ID["p01"].title
    assert hit.place_label == "安徽省六安市霍山县" and hit.severity == "较大" and hit.event_id == 101
    assert hit.published_at == BY_ID["p01"].published_at


def test_snippet_escapes_html_and_centres_on_a_late_match(backend: SearchBackend) -> None:
    filler = "今日天气晴好，市民出行正常。" * 30
    d = PostDoc(
        post_id="long",
        title="<b>标题</b>",
        text=filler + "下午河道突发溃堤，<script>alert(1)</script>周边群众紧急转移。" + filler,
        source_id="s",
        source_kind="forum",
        url="",
        published_at=_t(5, 12),
    )
    backend.index([d])
    hit = backend.search(SearchQuery(text="溃堤")).hits[0]
    assert "<em>溃堤</em>" in hit.snippet
    assert "&lt;script&gt;" in hit.snippet and "<script>" not in hit.snippet
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…")
    assert len(hit.snippet) < 200
    assert hit.title_html == "&lt;b&gt;标题&lt;/b&gt;"


# -- backend-independent pieces -----------------------------------------------


def test_query_validation() -> None:
    with pytest.raises(ValueError):
        SearchQuery(published_from=datetime(2025, 8, 1, 0, 0))  # naive
    with pytest.raises(ValueError):
        SearchQuery(place_code="34AB")
    with pytest.raises(ValueError):
        SearchQuery(limit=-1)
    with pytest.raises(ValueError):
        SearchQuery(sort="popularity")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PostDoc("x", "t", "x", "s", "news", "", datetime(2025, 8, 1))
    assert place_prefix("340000") == "34" and place_prefix("341500") == "3415"
    assert place_prefix("341525") == "341525" and place_prefix("110100") == "1101"


def test_segmentation() -> None:
    assert seg.normalize("ＡＢＣ公司３．５亿元　Ok") == "abc公司3.5亿元 ok"
    assert len(seg.normalize("ＡＢＣ　ｘ")) == len("ＡＢＣ　ｘ")
    # One character for one: what does not lower to one character stays; Σ lowers on its own.
    assert seg.normalize("İＳΣ物") == "İsσ物" and seg.normalize("ΟΔΟΣ路") == "οδοσ路"
    assert seg.normalize("Ｉ物业ΑΒ") == "i物业αβ"
    toks = seg.index_tokens("霍山县一在建厂房发生坍塌事故")
    assert {"霍山", "霍山县", "厂房", "坍塌"} <= set(toks)
    assert all(" " not in t and t.isalnum() for t in seg.index_tokens("3.5亿元，ABC_def！"))
    assert seg.query_terms("厂房坍塌") == ["厂房", "坍塌"]
    assert seg.query_terms("的") == ["的"]  # nothing else left: keep it
    assert seg.query_terms("  ") == []
    # ASCII terms light up whole words only.
    assert seg.highlight("AI said", ["ai"]) == "<em>AI</em> said"



def test_a_query_for_a_passage_finds_the_document_holding_it() -> None:
    # Search mode must emit every word precise mode cuts a passage into, Latin
    # and digit runs included, or a quoted sentence would miss its own page.
    doc = (
        "合肥市住建局通报：GB50016规范第5.5.17条，iPhone15 Pro用户反映5m宽消防通道被占，"
        "损失约3.5亿元；详见http://gov.example.cn/a_b?id=20（ABC_def）。霍山县一在建厂房发生坍塌事故。"
    )
    indexed = set(seg.index_tokens(doc))
    for passage in ["GB50016规范", "5m宽消防通道", "iPhone15 Pro用户", "3.5亿元", "a_b?id=20", "霍山县厂房坍塌"]:
        terms = seg.query_terms(passage)
        assert terms and set(terms) <= indexed, (passage, terms)
    assert seg.query_terms("消防通道被占") != seg.query_terms("消防通道")

def test_open_search_follows_settings(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path))
    b = open_search(s)
    try:
        assert isinstance(b, EmbeddedSearch)
        assert b.path == tmp_path / "search.db" and b.path.exists()
    finally:
        b.close()
    s = Settings(data_dir=str(tmp_path))
    for kind, cls in _SERVER_BACKEND.items():
        s.search.kind = kind  # type: ignore[assignment]
        s.search.url = "http://127.0.0.1:9"  # not contacted until first use
        s.search.index = "posts-x"
        server = open_search(s)
        try:
            assert type(server) is cls and server.index_name == "posts-x" and server.url == s.search.url
        finally:
            server.close()


def test_search_settings_read_the_old_names_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yuqing.settings import load_settings

    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "settings.yaml").write_text(
        f"data_dir: {tmp_path / 'data'}\nsearch:\n  kind: elasticsearch\n  es_url: http://es.example:9200\n  es_index: old-name\n",
        encoding="utf-8",
    )
    for name in ("YUQING_ES_URL", "YUQING_OPENSEARCH_URL", "YUQING_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings(cfg)
    assert (s.search.kind, s.search.url, s.search.index) == ("elasticsearch", "http://es.example:9200", "old-name")
    monkeypatch.setenv("YUQING_OPENSEARCH_URL", "http://os.example:9200")
    s = load_settings(cfg)
    assert (s.search.kind, s.search.url) == ("opensearch", "http://os.example:9200")
    monkeypatch.setenv("YUQING_ES_URL", "http://es.example:9200")
    with pytest.raises(ValueError, match="只能设置其一"):
        load_settings(cfg)


@pytest.mark.parametrize(("kind", "other"), [("elasticsearch", "opensearch"), ("opensearch", "elasticsearch")])
def test_a_server_of_the_other_kind_is_refused_by_name(kind: str, other: str, request: pytest.FixtureRequest) -> None:
    # The Elasticsearch client pointed at OpenSearch (and the reverse) says which kind to set.
    b = _SERVER_BACKEND[kind](_server_url(request, other), f"yuqing-test-{uuid.uuid4().hex[:12]}")
    try:
        with pytest.raises(RuntimeError, match=f"search.kind: {other}"):
            b.count()
    finally:
        b.close()


def test_embedded_survives_reopen_and_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first = EmbeddedSearch(path)
    first.index(DOCS[:3])
    first.close()

    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            b = EmbeddedSearch(path)  # its own connection, as another process would have
            try:
                for i in range(10):
                    base = DOCS[i % len(DOCS)]
                    b.index([PostDoc(**{**base.__dict__, "post_id": f"w{n}-{i}"})])
            finally:
                b.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reader = EmbeddedSearch(path)
    try:
        assert reader.count() == 3 + 40
        per_writer = sum(DOCS[i % len(DOCS)].post_id in ("p01", "p06") for i in range(10))
        assert reader.search(SearchQuery(text="坍塌")).total == 1 + 4 * per_writer
    finally:
        reader.close()


@contextmanager
def _cut_by_another_segmenter(path: Path) -> Iterator[sqlite3.Connection]:
    """DOCS indexed by a segmenter that cuts every text into one stale token, as
    another segmenter's index would differ; the caller edits ``meta`` in the same transaction."""
    with patch.object(seg, "segment", lambda text: "stale"):
        b = EmbeddedSearch(path)
        b.index(DOCS)
        b.close()
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def test_embedded_index_cut_by_another_segmenter_is_recut_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import responder.search.embedded as embedded

    path = tmp_path / "old.db"
    with _cut_by_another_segmenter(path) as db:
        db.execute("UPDATE meta SET value = 'jieba 0.42.1' WHERE key = 'segmenter'")

    monkeypatch.setattr(embedded, "_REBUILD_CHUNK", 2)  # several transactions
    b = EmbeddedSearch(path)
    try:
        assert b.search(SearchQuery(text="stale")).total == 0
        assert {h.post_id for h in b.search(SearchQuery(text="坍塌")).hits} == {"p01", "p06"}
        assert b.search(SearchQuery()).total == len(DOCS)
    finally:
        b.close()
    db = sqlite3.connect(path)
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    db.close()
    assert meta["segmenter"] == seg.SEGMENTER and "rebuilt_upto" not in meta


def test_embedded_resegmenting_resumes_after_the_last_row_it_recut(tmp_path: Path) -> None:
    path = tmp_path / "half.db"
    with _cut_by_another_segmenter(path) as db:
        ids = [r[0] for r in db.execute("SELECT id FROM posts ORDER BY id")]
        db.execute("DELETE FROM meta WHERE key = 'segmenter'")  # as before the key existed
        # A crash after the first two rows were re-cut: those are not cut again.
        db.execute("INSERT INTO meta (key, value) VALUES ('rebuilt_upto', ?)", (str(ids[1]),))
    b = EmbeddedSearch(path)
    try:
        assert b.search(SearchQuery(text="stale")).total == 2
    finally:
        b.close()


@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
def test_elastic_index_records_its_segmenter_and_flags_another(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    url = _server_url(request, kind)
    b, cleanup = _make_server(url, kind)
    try:
        b.index(DOCS[:2])
        assert b.segmenter() == seg.SEGMENTER
        b._put_meta({"segmenter": "jieba 0.42.1"})
        with caplog.at_level("WARNING", logger="responder.search.rest"):
            again = _SERVER_BACKEND[kind](url, b.index_name)
            assert again.count() == 2
        assert any("jieba 0.42.1" in r.getMessage() and "reindex" in r.getMessage() for r in caplog.records)
        again.record_segmenter()
        assert again.segmenter() == seg.SEGMENTER
        again.close()
    finally:
        cleanup()  # type: ignore[operator]


# -- the query language (responder/search/query.py) ----------------------------------

LANGUAGE_QUERIES = [
    "厂房 坍塌",
    "霍山 | 金寨",
    "(霍山 | 金寨) -厂房",
    "合肥 (爆炸 | 防汛) -燃气",
    "坍塌 | 滑坡 | 爆炸",
    "-霍山",
    "-(霍山 | 合肥 | 六安)",
    "（滑坡｜坍塌）－救援",
    "厂房坍塌 | 茶叶博览会",
    '"霍山 县" 被困',
    "防汛 OR 高温 OR 噪音",
    "滑坡 -(泥石流 | 阻断)",
    "合肥 地铁 | 六安 茶叶",
    "-不存在的词",
]


@pytest.mark.parametrize("text", LANGUAGE_QUERIES)
def test_query_language_matches_a_brute_force_evaluation(loaded: SearchBackend, text: str) -> None:
    from responder.search import query as qlang

    node = qlang.parse(text)
    want = {d.post_id for d in DOCS if qlang.matches(node, qlang.doc_tokens(d.title, d.text))}
    assert ids(loaded, text=text) == want
    # With filters the language still applies inside them.
    want_news = {i for i in want if BY_ID[i].source_kind == "news"}
    assert ids(loaded, text=text, source_kind="news") == want_news
    # An excluded word is never highlighted.
    r = loaded.search(SearchQuery(text=text, limit=100))
    for h in r.hits:
        for excluded in ("燃气", "救援", "厂房") if "-" in text or "－" in text else ():
            if f"-{excluded}" in text or f"－{excluded}" in text:
                assert f"<em>{excluded}</em>" not in h.title_html + h.snippet


def test_query_language_brute_force_sees_what_the_docs_hold() -> None:
    # The reference itself: a few answers worked out by hand from DOCS.
    from responder.search import query as qlang

    def ref(text: str) -> set[str]:
        node = qlang.parse(text)
        return {d.post_id for d in DOCS if qlang.matches(node, qlang.doc_tokens(d.title, d.text))}

    assert ref("(霍山 | 金寨) -厂房") == {"p03"}
    assert ref("-(霍山 | 合肥 | 六安)") == {"p03", "p05", "p07", "p09"}
    assert ref("合肥 地铁 | 六安 茶叶") == {"p08"}


@pytest.mark.parametrize("bad", ["(地铁", "地铁 |", "| 地铁", "地铁)", "()", '"未闭合'])
def test_a_query_the_language_cannot_read_is_refused_in_chinese(loaded: SearchBackend, bad: str) -> None:
    from responder.search.query import QuerySyntaxError

    with pytest.raises(QuerySyntaxError, match="第 \\d+ 个字符处"):
        loaded.search(SearchQuery(text=bad))
