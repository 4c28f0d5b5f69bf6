"""`yuqing classify`: the batch CLI, run as a subprocess on a JSONL written here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GOOD = [
    {"id": "p1", "title": "A2区某小区物业乱收停车费", "text": "尊敬的领导：我们小区物业未经业主同意擅自提高停车费，请住建部门查处。",
     "region": "430102", "url": "https://example.org/1", "source": "问政", "published_at": "2024-07-01T10:00:00+08:00"},
    {"id": "p2", "text": "昨日下午，湖南省长沙市雨花区一居民楼发生火灾，造成3人死亡、12人重伤。"},
    {"id": "p3", "text": "今天天气真好，去吃了火锅，推荐大家来。"},
    {"id": "p4", "text": "長沙市發生交通事故，造成十二人死亡。"},
    {"id": "p5", "text": "Hello 我们village的road坏了 ничего 请修路 🚧 ΑΒΓ"},
    {"id": "p6", "text": "学校食堂" * 25000},
    {"id": 7, "text": "某县发生4.5级地震，暂无人员伤亡报告"},
]
BAD_LINES = [
    b'{"id": "e1", "text": ""}\n',  # empty
    b"{not json\n",
    b'["a list"]\n',
    b'{"text": "no id"}\n',
    b'{"id": "e5", "text": 5}\n',
    b'{"id": "e6", "text": "\xff\xfe\xff"}\n',
    b'{"id": "e7"}\n',
]
FIELDS = {"id", "relevant", "focus", "topic", "department", "event_type", "event_subtype", "casualties",
          "severity", "severity_reason", "place", "responders", "handling_type", "scores"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    d = tmp_path_factory.mktemp("classify")
    src = d / "in.jsonl"
    with open(src, "wb") as fh:
        for row in GOOD[:3]:
            fh.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        fh.write(b"\n")  # blank lines are skipped, not errors
        for raw in BAD_LINES:
            fh.write(raw)
        for row in GOOD[3:]:
            fh.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        fh.write(json.dumps({"id": "gbk", "text": "北京市朝阳区一工地夜间施工噪音扰民"}, ensure_ascii=False).encode("gbk") + b"\n")
    out = d / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "yuqing.cli", "--config", str(ROOT / "config"), "classify",
         "--input", str(src), "--output", str(out), "--batch-size", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return proc, rows


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows if "id" in r}


def test_every_line_gets_a_record_in_input_order(run):
    proc, rows = run
    assert proc.returncode == 0, proc.stderr
    assert len(rows) == len(GOOD) + len(BAD_LINES) + 1
    lines = [r["line"] for r in rows]
    assert lines == sorted(lines)
    assert 4 not in lines  # the blank line


def test_good_lines_have_every_field(run):
    _, rows = run
    ok = [r for r in rows if "error" not in r]
    assert len(ok) == len(GOOD) + 1
    for r in ok:
        assert FIELDS <= set(r), r["id"]
        assert set(r["casualties"]) == {"deaths", "injured", "missing", "trapped", "loss_yuan"}
        assert set(r["place"]) == {"province", "city", "county", "code"}
        assert r["severity"] in {"特别重大", "重大", "较大", "一般"}


def test_bad_lines_name_line_and_reason(run):
    _, rows = run
    errors = {r["line"]: r for r in rows if "error" in r}
    assert len(errors) == len(BAD_LINES)
    # blank line 4 is skipped, so the bad lines are 5..11
    assert "为空" in errors[5]["error"] and errors[5]["id"] == "e1"
    assert "JSON" in errors[6]["error"]
    assert "对象" in errors[7]["error"]
    assert "缺少 id" in errors[8]["error"]
    assert "字符串" in errors[9]["error"] and errors[9]["id"] == "e5"
    assert "解码" in errors[10]["error"]
    assert "缺少 text" in errors[11]["error"]


def test_summary_is_printed(run):
    proc, _ = run
    assert f"共 {len(GOOD) + len(BAD_LINES) + 1} 行" in proc.stdout
    assert f"成功 {len(GOOD) + 1}" in proc.stdout
    assert f"错误 {len(BAD_LINES)}" in proc.stdout
    assert "第 6 行" in proc.stdout


def test_assessments(run):
    _, rows = run
    r = by_id(rows)
    p1 = r["p1"]
    assert p1["relevant"] and p1["topic"] == "城乡建设"
    assert p1["place"]["code"] == "430102"  # from the given region
    fire = r["p2"]
    assert fire["event_subtype"] == "火灾"
    assert fire["casualties"]["deaths"] == 3 and fire["casualties"]["injured"] == 12
    assert fire["severity"] == "较大"
    assert fire["place"]["county"] == "雨花区"
    assert any(x["role"] == "primary" for x in fire["responders"])
    assert r["p3"]["relevant"] is False
    assert r["7"]["event_subtype"] == "地震"


def test_traditional_mixed_and_huge(run):
    _, rows = run
    r = by_id(rows)
    trad = r["p4"]
    assert trad["casualties"]["deaths"] == 12 and trad["severity"] == "重大"
    assert trad["event_subtype"] == "交通事故"
    assert trad["place"]["city"] == "长沙市"
    assert r["p5"]["relevant"] is True
    huge = r["p6"]
    assert huge["topic"] == "教育文体"
    assert any("仅研判前" in n for n in huge["notes"])
    gbk = r["gbk"]
    assert gbk["place"]["county"] == "朝阳区" and any("GB18030" in n for n in gbk["notes"])


def test_missing_input_file_is_a_clear_error(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "yuqing.cli", "classify", "--input", str(tmp_path / "nope.jsonl"),
         "--output", str(tmp_path / "o.jsonl"), "--rules-only"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "不存在" in proc.stderr
