"""``yuqing extract PAGE.html``: encodings from header, <meta> and sniffing; the JSON it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from crawlers.extract import decode_html, extract_page, strip_wrapper
from stream.contracts import SHANGHAI

ROOT = Path(__file__).resolve().parents[1]

PAGE = """<html><head>{meta}<title>肥西县一化工厂发生爆炸 已致2人受伤_皖江网</title></head><body>
<div class="nav"><a href="/">首页</a> | <a href="/news/">新闻</a> | <a href="/sh/">社会</a></div>
<h1>肥西县一化工厂发生爆炸 已致2人受伤</h1>
<div class="info">2026年11月22日 09:40　来源：皖江网　记者 陈刚</div>
<div id="content"><p>　　11月22日8时许，肥西县一化工厂车间发生爆炸，已致2人受伤，伤者已送医救治。</p>
<p>　　事故发生后，当地应急管理、消防等部门迅速赶到现场处置，事故原因正在调查。</p></div>
<div class="related"><a href="/a/1.html">相关新闻一</a><a href="/a/2.html">相关新闻二</a></div>
<div class="footer">版权所有 皖江网 Copyright 2026</div></body></html>"""


@pytest.mark.parametrize(("declared", "encoding", "expect"), [
    ('<meta http-equiv="Content-Type" content="text/html; charset=gb2312">', "gb18030", "gb18030"),
    ('<meta charset="GBK">', "gbk", "gb18030"),
    ('<meta charset="gb18030">', "gb18030", "gb18030"),
    ('<meta charset="utf-8">', "utf-8", "utf-8"),
    ("", "gb18030", "gb18030"),  # nothing declared: sniffed
    ("", "utf-8", "utf-8"),
    ('<meta charset="utf-8">', "gb18030", "gb18030"),  # says UTF-8, is not
])
def test_decode_from_meta_and_sniffing(declared: str, encoding: str, expect: str) -> None:
    # "镕" is in GBK but not GB2312: a GB2312-declared page decoded as GB18030 keeps it.
    raw = PAGE.format(meta=declared).replace("陈刚", "朱镕").encode(encoding)
    text, used = decode_html(raw)
    assert used == expect and "肥西县一化工厂发生爆炸" in text and "朱镕" in text


def test_header_charset_wins_over_meta() -> None:
    raw = PAGE.format(meta='<meta charset="utf-8">').encode("gbk")
    assert decode_html(raw, "GBK")[1] == "gb18030"
    assert decode_html(PAGE.format(meta="").encode("utf-8"), "text/html; charset=utf-8".split("=")[1])[1] == "utf-8"


def test_extract_page_fields() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=SHANGHAI)
    out = extract_page(PAGE.format(meta=""), "http://example.cn/a/t20261122_1.html", now)
    assert out["title"] == "肥西县一化工厂发生爆炸 已致2人受伤"
    assert out["published_at"] == "2026-11-22T09:40:00+08:00" and out["published_precision"] == "minute"
    assert out["author"] == "陈刚" and out["source"] == "皖江网"
    assert out["content"] == ("11月22日8时许，肥西县一化工厂车间发生爆炸，已致2人受伤，伤者已送医救治。\n"
                              "事故发生后，当地应急管理、消防等部门迅速赶到现场处置，事故原因正在调查。")


def test_wrapper_line_is_stripped() -> None:
    raw = b'<text id="http://x.cn/1.html" title="t" encoding="gb2312">\n<html><body>x</body></html>'
    body, url = strip_wrapper(raw)
    assert url == "http://x.cn/1.html" and body.startswith(b"<html>")


def test_cli_prints_json(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(PAGE.format(meta='<meta charset="gb2312">').encode("gb18030"))
    out = subprocess.run([sys.executable, "-m", "yuqing.cli", "extract", str(page), "--url", "http://example.cn/a/1.html",
                          "--fetched-at", "2026-11-22T12:00:00"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={**os.environ})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert set(got) >= {"title", "published_at", "published_precision", "author", "source", "content"}
    assert got["title"] == "肥西县一化工厂发生爆炸 已致2人受伤" and got["encoding"] == "gb18030"
    assert got["published_at"] == "2026-11-22T09:40:00+08:00"
    bad = subprocess.run([sys.executable, "-m", "yuqing.cli", "extract", str(tmp_path / "missing.html")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "无法读取" in bad.stderr
