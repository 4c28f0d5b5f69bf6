"""The brief as Word, PDF and Excel files (issue 17 part 1), its volume chart and spike flag.

The archive is test_brief's hand-computed example, filled through the real
responder (``handle_batch``), plus a burst of 6 posts in one hour at 蜀山区
(a spike: nothing there in the 24 hours before). Each file is opened with
the library that reads it (python-docx, openpyxl, pdftotext or pypdf) and
its text and figures are compared with the brief function's own result.
``$YUQING_BRIEF_FILES`` (a folder), when set, receives the three files to look at.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from responder.archive import KIND_LABEL
from responder.brief import SEVERITIES, brief
from responder.brief_files import chart_images, to_bytes, unit_name, write
from responder.permissions import CLI_ACTOR, Actor
from responder.service import handle_batch
from responder.store import Store
from responder.trends import SPIKE_MIN, find_spikes
from tests.fixtures.auth import client_as
from tests.fixtures.databases import assessed, sh
from tests.test_brief import AS_OF, D1, ROOT, _fill
from web.app import create_app

BURST_AT = sh(2026, 11, 20, 15, 0)
BURST = 6  # posts at 蜀山区 in the hour 15:00-16:00 on D1


def _burst(store: Store, settings) -> None:
    posts = []
    for i in range(BURST):
        ap = assessed(f"burst{i}", title=f"翡翠湖小区业主聚集维权{i}", text="翡翠湖小区业主聚集，要求物业公开账目。",
                      published_at=BURST_AT + timedelta(minutes=5 * i), place="蜀山区", source_kind="weibo")
        ap.assessment.topic = "城乡建设"
        posts.append(ap)
    handle_batch(store, settings, posts, now=BURST_AT + timedelta(hours=1))


@pytest.fixture
def filled(store_url: str, settings):
    store = Store(store_url)
    _fill(store, settings)
    _burst(store, settings)
    yield store
    store.close()


def _pdf_text(data: bytes, tmp_path: Path) -> str:
    p = tmp_path / "b.pdf"
    p.write_bytes(data)
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", "-raw", str(p), "-"], capture_output=True, text=True,
                              check=True).stdout
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(str(p)).pages)


def _flat(s: str) -> str:
    return "".join(s.split())


def test_spike_rule() -> None:
    from collections import Counter

    h = sh(2026, 11, 20, 15, 0)
    quiet = Counter({h: SPIKE_MIN})
    assert [(p, t, n) for p, t, n, *_ in find_spikes({"甲": quiet}, h, h + timedelta(hours=1))] == [("甲", h, 5)]
    assert find_spikes({"甲": Counter({h: SPIKE_MIN - 1})}, h, h + timedelta(hours=1)) == []
    # A place busy all along (10 an hour, 24 hours) at 12: mean 10, sd 0 → threshold 10: a spike; at 9 none.
    busy = Counter({h - timedelta(hours=k): 10 for k in range(1, 25)})
    assert find_spikes({"乙": busy | Counter({h: 12})}, h, h + timedelta(hours=1))[0][2:] == (12, 10.0, 0.0, 10.0)
    assert find_spikes({"乙": busy | Counter({h: 9})}, h, h + timedelta(hours=1)) == []
    # Alternating 0/20 before: mean 10, sd 10 → threshold 40.
    wavy = Counter({h - timedelta(hours=k): 20 * (k % 2) for k in range(1, 25)})
    assert find_spikes({"丙": wavy | Counter({h: 39})}, h, h + timedelta(hours=1)) == []
    assert find_spikes({"丙": wavy | Counter({h: 40})}, h, h + timedelta(hours=1))[0][5] == 40.0


def test_volume_and_spike_in_the_brief(filled) -> None:
    b = brief(filled, "day", D1, as_of=AS_OF, actor=CLI_ACTOR)
    v = b.volume
    assert v is not None and v.bucket == "hour" and len(v.starts) == 24 and v.labels[0] == "00时"
    assert sum(v.posts_total) == b.overview.posts
    assert {s.name: sum(s.data) for s in v.posts_by_kind} == {c.name: c.count for c in b.overview.posts_by_kind}
    assert sum(v.events) == b.overview.new_events
    weibo = next(s for s in v.posts_by_kind if s.name == "weibo")
    assert weibo.data[15] == BURST and weibo.data[11] == 1 and weibo.data[23] == 1  # fire2 11:00, late 23:59
    assert [(x.place, x.hour, x.count, x.bucket) for x in v.spikes] == [
        ("安徽省合肥市蜀山区", BURST_AT, BURST, 15)]
    week = brief(filled, "week", D1, as_of=AS_OF, actor=CLI_ACTOR).volume
    assert week is not None and week.bucket == "day" and len(week.starts) == 7
    assert [x.bucket for x in week.spikes] == [4]  # Friday 11-20
    # The page's chart data marks it (web/routes/trends.py → charts.js).
    from web.routes.trends import chart_specs

    vol = next(c for c in chart_specs(b) if c["kind"] == "volume")
    assert [(x["bucket"], x["place"], x["count"]) for x in vol["spikes"]] == [(15, "安徽省合肥市蜀山区", BURST)]
    assert vol["total"] == v.posts_total and vol["labels"][15] == "15时"
    # Out of scope: a user at 芜湖 (3402) sees neither the burst nor its spike.
    wuhu = Actor("u", "u", None, "3402", via="test", root_jurisdiction="34")
    bw = brief(filled, "day", D1, as_of=AS_OF, actor=wuhu)
    assert bw.volume is not None and bw.volume.spikes == [] and sum(bw.volume.posts_total) == 0


def _check_common(text: str, b, unit: str) -> None:
    flat = _flat(text)
    o, t = b.overview, b.timeliness
    for s in (b.title, f"单位{unit}", "统计周期2026-11-2000:00至2026-11-2100:00", "统计时点2026-11-2112:00",
              f"采集帖文{o.posts}条", f"政务舆情{o.relevant_posts}条", f"新发事件{o.new_events}起",
              f"新建工单{o.tickets_opened}件", f"本期到期节点{t.due}个", "突增", "安徽省合肥市蜀山区"):
        assert _flat(s) in flat, s
    for e in b.key_events:
        assert _flat(e.title) in flat, e.title


def test_docx_pdf_xlsx_carry_the_brief(filled, tmp_path: Path) -> None:
    from docx import Document
    from openpyxl import load_workbook

    b = brief(filled, "day", D1, as_of=AS_OF, actor=CLI_ACTOR)
    unit = unit_name("3401")
    assert unit == "安徽省合肥市"
    if keep := os.environ.get("YUQING_BRIEF_FILES"):  # to open and look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        for fmt in ("docx", "pdf", "xlsx"):
            write(b, fmt, Path(keep) / f"brief.{fmt}", unit=unit)
    o, t = b.overview, b.timeliness

    # Word: the text, the figure tables, the charts, the page-number fields.
    doc = Document(io.BytesIO(to_bytes(b, "docx", unit=unit)))
    tables = [[[c.text for c in r.cells] for r in tb.rows] for tb in doc.tables]
    text = "\n".join(p.text for p in doc.paragraphs) + "\n".join(c for tb in tables for r in tb for c in r)
    _check_common(text, b, unit)
    assert tables[0][1:] == [["单位", unit], ["统计周期", "2026-11-20 00:00 至 2026-11-21 00:00（北京时间）"],
                             ["统计时点", "2026-11-21 12:00（北京时间）"]]
    figures = dict((r[0].strip("　 "), r[1]) for r in tables[1][1:])
    assert figures["采集帖文（条）"] == str(o.posts) and figures["新建工单（件）"] == str(o.tickets_opened)
    assert all(figures[k] == str(o.tickets_by_severity[k]) for k in SEVERITIES)
    for c in o.posts_by_kind:
        assert figures[f"其中 {KIND_LABEL[c.name]}"] == str(c.count)
    events = tables[2]
    assert [r[2] for r in events[1:]] == [e.title for e in b.key_events]
    assert [r[5] for r in events[1:]] == [f"{e.post_count}（{e.posts_in_period}）" for e in b.key_events]
    states = dict(tables[3][1:])
    assert (states["按时完成"], states["超时完成"], states["已超时未完成"]) == (
        str(t.on_time), str(t.late), str(t.open_past_deadline))
    assert [r for r in tables[4][1:]] == [[c.name, str(c.count)] for c in b.distribution.topics]
    assert [r for r in tables[5][1:]] == [[c.name, str(c.count)] for c in b.distribution.places]
    assert len(doc.inline_shapes) == len(chart_images(b)) == 5
    footer = doc.sections[0].footer.paragraphs[0]._p.xml
    assert "PAGE" in footer and "NUMPAGES" in footer and "第 " in doc.sections[0].footer.paragraphs[0].text

    # PDF: the text (real text, extractable), page numbers, the charts as images.
    data = to_bytes(b, "pdf", unit=unit)
    assert data.startswith(b"%PDF")
    text = _pdf_text(data, tmp_path)
    _check_common(text, b, unit)
    from pypdf import PdfReader

    # Every font the text uses is embedded (a TrueType subset): the Chinese shows
    # on a reader without Chinese fonts, not only where one is installed.
    fonts = [f for p in PdfReader(io.BytesIO(data)).pages for f in (p["/Resources"].get("/Font") or {}).values()]
    used = {f.get_object()["/BaseFont"]: f.get_object() for f in fonts}
    cjk = {k: v for k, v in used.items() if "NotoSansCJK" in k}
    assert cjk and all("/FontFile2" in v["/FontDescriptor"] for v in cjk.values())
    assert not any("STSong" in k for k in used)

    pages = len(PdfReader(io.BytesIO(data)).pages)
    assert pages >= 2
    for n in range(1, pages + 1):
        assert f"第 {n} 页 / 共 {pages} 页" in text
    assert sum(len(p.images) for p in PdfReader(io.BytesIO(data)).pages) == 5

    # Excel: every sheet; figures are numbers in cells.
    path = tmp_path / "b.xlsx"
    write(b, "xlsx", path, unit=unit)
    wb = load_workbook(path)
    assert wb.sheetnames == ["概况", "重点事件", "时限执行", "分布", "趋势", "图表"]
    ov = {r[0]: r[1] for r in wb["概况"].iter_rows(values_only=True) if r and r[0]}
    assert ov["单位"] == unit and ov["统计时点"] == "2026-11-21 12:00（北京时间）"
    assert ov["采集帖文（条）"] == o.posts and ov["政务舆情帖文（条）"] == o.relevant_posts
    assert ov["新发事件（起）"] == o.new_events and ov["新建工单（件）"] == o.tickets_opened
    ke = [r for r in wb["重点事件"].iter_rows(values_only=True) if r and isinstance(r[0], int)]
    assert [r[2] for r in ke] == [e.title for e in b.key_events]
    tl = {r[0]: r[1] for r in wb["时限执行"].iter_rows(values_only=True) if r and r[0]}
    assert (tl["本期到期"], tl["按时完成"], tl["超时完成"]) == (t.due, t.on_time, t.late)
    trend = [r for r in wb["趋势"].iter_rows(values_only=True) if r and str(r[0]).startswith("2026-11-20 ")]
    assert len(trend) == 24 and sum(r[-2] for r in trend) == o.posts and sum(r[-1] for r in trend) == o.new_events
    assert any("突增" in str(r[0]) for r in wb["趋势"].iter_rows(values_only=True) if r and r[0])
    assert len(wb["图表"]._images) == 5
    assert wb["概况"].oddFooter.center.text == "第 &P 页 / 共 &N 页"


def test_cli_writes_each_format(tmp_path: Path, settings, config_dir: Path) -> None:
    from docx import Document
    from openpyxl import load_workbook

    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    _fill(store, settings)
    _burst(store, settings)
    b = brief(store, "week", D1, as_of=AS_OF, actor=CLI_ACTOR)
    store.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YUQING_STORE_URL": url, "YUQING_DATA_DIR": str(tmp_path)}
    base = [sys.executable, "-m", "yuqing.cli", "--config", str(config_dir), "report", "brief"]
    for fmt in ("docx", "pdf", "xlsx"):
        out = tmp_path / f"brief.{fmt}"
        p = subprocess.run(base + ["--period", "week", "--date", D1.isoformat(), "--as-of", AS_OF.isoformat(),
                                   "--format", fmt, "--output", str(out), "--jurisdiction", "3401"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
        assert p.returncode == 0, p.stderr
        assert f"已写入 {out}" in p.stderr
        if fmt == "docx":
            doc = Document(str(out))
            text = "\n".join(x.text for x in doc.paragraphs) + "\n".join(
                c.text for t in doc.tables for r in t.rows for c in r.cells)
        elif fmt == "pdf":
            text = _pdf_text(out.read_bytes(), tmp_path)
        else:
            text = "\n".join(str(c) for r in load_workbook(out)["概况"].iter_rows(values_only=True) for c in r if c)
        flat = _flat(text)
        # Narrowed to 合肥市: its name as 单位, and not the 芜湖 school canteen.
        assert _flat(b.title) in flat and "单位安徽省合肥市" in flat, fmt
        assert "学校食堂涨价" not in flat, fmt
    # A file format without --output is refused, in Chinese.
    p = subprocess.run(base + ["--format", "pdf"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert p.returncode == 2 and "--output" in p.stderr


def test_download_is_scoped_like_the_page(filled, settings) -> None:
    from docx import Document

    app = create_app(settings, store=filled, now=lambda: AS_OF)
    with client_as(app, "芜湖宣传办", "office", "3402") as c:
        r = c.get("/briefs/download", params={"period": "day", "date": D1.isoformat(), "format": "docx"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.wordprocessing")
        assert "attachment" in r.headers["content-disposition"]
        doc = Document(io.BytesIO(r.content))
        text = "\n".join(p.text for p in doc.paragraphs) + "\n".join(
            c.text for t in doc.tables for row in t.rows for c in row.cells)
        assert "安徽省芜湖市" in text and "居民楼火灾" not in text and "采集帖文 0 条" in text
        page = c.get("/briefs", params={"period": "day", "date": D1.isoformat()}).text
        assert "/briefs/download?period=day&amp;date=2026-11-20&amp;format=pdf" in page
        bad = c.get("/briefs/download", params={"format": "doc"})
        assert bad.status_code == 400 and "docx" in bad.text
