"""Page encodings: the encoding that yields valid, plausible text for the whole page, and a page
no encoding decodes is refused and counted in crawl health, not sent on as mojibake.

The cases are the fixture site's (tests/fixtures/sites.py ``ENCODING_ARTICLES``), checked on
``decode_html`` and through a real news spider crawling them over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from crawlers.extract import (
    PageEncodingError,
    choose_decoding,
    content_type_charset,
    decode_html,
    plausibility,
)
from crawlers.health import health_of, record_crawl
from crawlers.pipelines import STATE_FILE
from crawlers.runner import crawl_once_report
from crawlers.sources import Source, get_source
from stream.contracts import SHANGHAI, CrawlHealth, decode
from stream.topics import CRAWL_HEALTH
from tests.fixtures.sites import ENCODING_ARTICLES, FixtureServer, encoding_cases
from tests.test_crawl_sources import posts_of, read_topic
from yuqing.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=SHANGHAI)

# name → the encoding that must be chosen (None: refused)
EXPECTED = {
    "utf8-stray": "utf-8",
    "meta-gbk-utf8": "utf-8",
    "gbk": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5hkscs",
    "garbage": None,
    "header-utf8-gbk": "gb18030",
}


def _lines(name: str) -> list[str]:
    return ENCODING_ARTICLES[name][1].split("\n")


# ---------------------------------------------------------------- decode_html


def test_fixture_cases_cover_every_expectation() -> None:
    assert set(encoding_cases(NOW)) == set(ENCODING_ARTICLES) == set(EXPECTED)


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e])
def test_each_case_decodes_whole_in_the_right_encoding(name: str) -> None:
    content_type, body = encoding_cases(NOW)[name]
    text, enc = decode_html(body, content_type_charset(content_type))
    assert enc == EXPECTED[name]
    assert ENCODING_ARTICLES[name][0] in text  # the title, intact
    if name == "utf8-stray":
        # The stray bytes become U+FFFD where they are; everything around them is intact.
        assert "周边\ufffd居民已安全疏散" in text and "恢复\ufffd\ufffd供气时间另行通知" in text
        assert text.count("\ufffd") == 3
    else:
        for line in _lines(name):
            assert line in text
        assert "\ufffd" not in text


def test_garbage_is_refused_naming_each_encoding_tried() -> None:
    content_type, body = encoding_cases(NOW)["garbage"]
    with pytest.raises(PageEncodingError) as e:
        decode_html(body, content_type_charset(content_type))
    tried = [d.encoding for d in e.value.tried]
    assert tried == ["utf-8", "gb18030", "big5hkscs"]
    assert all(not d.ok for d in e.value.tried)
    assert "无法识别页面编码" in str(e.value) and "个字节无法解码" in str(e.value)
    # Valid GB18030 bytes, but of characters no page uses (GBK's extension rows): mojibake.
    rare = "".join(chr(c) for c in range(0x4E02, 0x4E80) if len(chr(c).encode("gb18030")) == 2
                   and chr(c).encode("gb18030")[0] < 0xA1)
    with pytest.raises(PageEncodingError) as e:
        decode_html(f"<html><body><p>{rare}</p></body></html>".encode("gb18030"))
    gb = next(d for d in e.value.tried if d.encoding == "gb18030")
    assert gb.invalid == 0 and gb.plausible is not None and gb.plausible < 0.1
    assert "gb18030：疑似乱码（常用汉字占" in str(e.value)


def test_header_says_utf8_body_is_gbk() -> None:
    _, body = encoding_cases(NOW)["header-utf8-gbk"]
    assert decode_html(body, "utf-8")[1] == "gb18030"
    # Scrapy's choice for the same response: the header's UTF-8, every Chinese character lost.
    assert "安庆市" not in body.decode("utf-8", errors="replace")


def test_meta_gbk_over_utf8_body_was_mojibake_before() -> None:
    _, body = encoding_cases(NOW)["meta-gbk-utf8"]
    as_declared = body.decode("gb18030", errors="replace")
    score, n = plausibility(as_declared)
    assert n > 50 and score < 0.5  # what the declared encoding gives: rare characters
    text, enc = decode_html(body)
    assert enc == "utf-8" and plausibility(text)[0] > 0.9


def test_plausibility_separates_text_from_mojibake() -> None:
    real = "".join(ENCODING_ARTICLES[n][1] for n in ("utf8-stray", "gbk", "header-utf8-gbk"))
    assert plausibility(real)[0] > 0.95
    moj = real.encode("utf-8").decode("gb18030", errors="replace")
    assert "鍙戝竷" in "发布".encode().decode("gb18030") and plausibility(moj)[0] < 0.4
    assert plausibility("hello") == (1.0, 0)
    # Traditional characters count as common too: a Big5 page is as plausible as a GB one.
    assert plausibility(ENCODING_ARTICLES["big5"][1])[0] > 0.95


def test_undeclared_pages_are_detected_from_their_bytes() -> None:
    for name, enc in (("gbk", "gb18030"), ("big5", "big5hkscs"), ("meta-gbk-utf8", "utf-8")):
        _, body = encoding_cases(NOW)[name]
        body = body.replace(b"charset=gb2312", b"").replace(b'charset="big5"', b"").replace(b"charset=gbk", b"")
        text, got = decode_html(body)
        assert got == enc, name
        assert _lines(name)[0] in text


def test_single_byte_header_is_trusted_only_when_no_chinese_encoding_fits() -> None:
    _, gbk = encoding_cases(NOW)["header-utf8-gbk"]
    assert decode_html(gbk, "ISO-8859-1")[1] == "gb18030"  # a server's default header on a GBK page
    french = ("<html><body><p>Le préfet a annoncé la réouverture des routes après la tempête ; les écoles "
              "fermées depuis mercredi rouvriront à la rentrée, a précisé la préfecture.</p></body></html>")
    text, enc = decode_html(french.encode("latin-1"), "ISO-8859-1")
    assert enc == "iso8859-1" and "réouverture" in text


def test_bom_cut_off_page_and_one_stray_byte_in_a_short_page() -> None:
    body = "\ufeff<html><head><meta charset='gbk'></head><body>燃气管道破裂</body></html>".encode()
    text, enc = decode_html(body)
    assert enc == "utf-8" and "燃气管道破裂" in text and not text.startswith("\ufeff")
    cut = "<html><body>燃气管道破裂，抢修人员连夜处置".encode()[:-2]  # cut inside the last character
    assert decode_html(cut)[1] == "utf-8"
    # A short GBK page whose UTF-8 reading has two bad bytes is not UTF-8.
    assert decode_html("<p>新闻</p>".encode("gbk"))[1] == "gb18030"


def test_choose_decoding_reports_why() -> None:
    _, body = encoding_cases(NOW)["utf8-stray"]
    d = choose_decoding(body)
    assert d.ok and d.encoding == "utf-8" and d.invalid == 3 and d.plausible is None
    assert d.why().startswith("utf-8：3 个字节无法解码")
    # The same page with more than 2% of its non-ASCII bytes bad is not UTF-8 any more.
    # (0xFF is no GB18030 or Big5 byte either: nothing decodes it.)
    worse = body.replace("燃气公司".encode(), b"\xff" * (d.high // 20), 1)
    with pytest.raises(PageEncodingError):
        choose_decoding(worse)


def test_extract_cli_refuses_garbage(tmp_path: Path) -> None:
    page = tmp_path / "garbage.html"
    page.write_bytes(encoding_cases(NOW)["garbage"][1])
    out = subprocess.run([sys.executable, "-m", "yuqing.cli", "extract", str(page)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 2 and "无法识别页面编码" in out.stderr and not out.stdout


# ---------------------------------------------------------------- crawl health


def test_health_counts_encoding_failures_and_migrates_an_old_file(tmp_path: Path) -> None:
    db = tmp_path / "crawl_state.db"
    con = sqlite3.connect(db)  # the table as the first release wrote it
    con.execute("""CREATE TABLE health (source_id TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
        last_attempt_at TEXT, last_success_at TEXT, newest_item_at TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0, pages INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0, alerted_dark_at TEXT)""")
    con.commit()
    con.close()
    src = Source.model_validate({"id": "s1", "name": "某网", "kind": "news", "start_urls": ["http://x.test/"],
                                 "schedule": {"every_s": 300}})
    t0 = datetime(2026, 11, 22, 8, 0, tzinfo=SHANGHAI)
    stats = {"yuqing/encoding_failed": 2, "yuqing/encoding_failed_url": "http://x.test/a/9.html"}
    assert record_crawl(db, "s1", started=t0, finished=t0 + timedelta(seconds=5), pages=6, errors=0,
                        failed=False, stats=stats) == "ok"
    h = health_of(db, src, t0 + timedelta(minutes=1))
    assert h.state == "ok" and not h.alert and h.encoding_failed == 2
    assert "2 个页面无法识别编码" in h.reason and "http://x.test/a/9.html" in h.reason
    # The next clean crawl: none in the last crawl, the total is kept.
    record_crawl(db, "s1", started=t0 + timedelta(minutes=5), finished=t0 + timedelta(minutes=6), pages=6,
                 errors=0, failed=False, stats={})
    h = health_of(db, src, t0 + timedelta(minutes=7))
    assert h.encoding_failed == 0 and h.reason == ""
    con = sqlite3.connect(db)
    assert con.execute("SELECT encoding_failed_total, encoding_failed_url FROM health").fetchone() == (
        2, "http://x.test/a/9.html")
    con.close()


# ---------------------------------------------------------------- through a real spider

SOURCES = """sources:
  - {id: enc, name: 编码测试站, kind: news, start_urls: ["%(u)s/enc/list"], schedule: {every_s: 60},
     selectors: {list_links: "ul a::attr(href)"}, politeness: {download_delay_s: 0, concurrency: 4}}
"""


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureServer]:
    with FixtureServer() as s:
        yield s


@pytest.fixture(scope="module")
def env(site: FixtureServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("enc")
    cfg = tmp / "config"
    shutil.copytree(ROOT / "config", cfg)
    (cfg / "sources.yaml").write_text(SOURCES % {"u": site.url}, encoding="utf-8")
    data = tmp / "var"
    data.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YUQING_DATA_DIR", str(data))
        mp.delenv("YUQING_TRANSPORT", raising=False)
        return load_settings(cfg)


def test_spider_decodes_each_page_and_refuses_garbage(env: Settings, site: FixtureServer) -> None:
    r = crawl_once_report(env, "enc", timeout_s=120)
    assert r.emitted == 6 and r.rejected == 1 and r.health == "ok", r
    posts = {p.url.rsplit("/", 1)[-1].removesuffix(".html"): p for p in posts_of(env) if p.source_id == "enc"}
    assert set(posts) == {n for n, e in EXPECTED.items() if e}
    for name, p in posts.items():
        assert p.title == ENCODING_ARTICLES[name][0], name
        if name == "utf8-stray":
            assert p.text == ("包河区一处燃气管道破裂，抢修人员连夜处置，周边\ufffd居民已安全疏散。\n"
                              "燃气公司表示，管道预计今天中午前修复，恢复\ufffd\ufffd供气时间另行通知。")
        else:
            assert p.text == ENCODING_ARTICLES[name][1], name
        assert p.published_precision == "minute"

    garbage = f"{site.url}/enc/a/garbage.html"
    h = health_of(env.data_path(STATE_FILE), get_source(env, "enc"))
    assert h.state == "ok" and h.encoding_failed == 1 and garbage in h.reason
    sent = [decode(v, CrawlHealth) for v in read_topic(env, CRAWL_HEALTH)]
    assert [m.encoding_failed for m in sent if m.source_id == "enc"][-1] == 1  # type: ignore[attr-defined]

    cli = [sys.executable, "-m", "yuqing.cli", "--config", str(env.config_dir), "crawl-health"]
    run_env = {**os.environ, "YUQING_DATA_DIR": str(env.data_dir)}
    table = subprocess.run(cli, capture_output=True, text=True, timeout=60, env=run_env)
    assert table.returncode == 0, table.stderr
    head, row = table.stdout.splitlines()[:2]
    assert "编码失败" in head and row.split()[:2] == ["enc", "正常"] and "1 个页面无法识别编码" in row
    rows = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60,
                                     env=run_env).stdout)
    assert rows[0]["source_id"] == "enc" and rows[0]["encoding_failed"] == 1
