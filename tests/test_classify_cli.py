"""`yuqing classify`: the batch CLI, run as a subprocess on a JSONL written here."""

from __future__ import annotations

import json
import shutil
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


# -- --workers: several processes, same output ----------------------------------------------------

MANY = [
    "湖南省长沙市雨花区一居民楼发生火灾，造成3人死亡、12人重伤。",
    "小区物业擅自提高停车费，请住建部门查处。",
    "安徽省六安市霍山县一在建厂房坍塌，造成12人死亡、3人受伤。",
    "今天天气真好，去吃了火锅，推荐大家来。",
    "學校食堂衛生差，孩子吃了拉肚子，請教育局管一管。",
    "北京市朝阳区一工地夜间施工噪音扰民，多次投诉无果。",
    "某县发生4.5级地震，暂无人员伤亡报告。",
    "工厂向河道排放废水，河里的鱼都死了，环保部门不管。",
]


def _many_lines() -> list[bytes]:
    """Enough lines for several chunks (batch size 2 → 8 lines a chunk), bad ones in between."""
    out: list[bytes] = []
    for n in range(36):
        if n % 11 == 5:
            out.append(b"{broken json\n")
        elif n % 13 == 7:
            out.append(json.dumps({"id": f"x{n}", "text": 5}).encode() + b"\n")
        else:
            row = {"id": f"m{n}", "title": f"第{n}条", "text": MANY[n % len(MANY)] + "。" * (n % 3)}
            out.append(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return out


def _classify(src: Path, out: Path, *extra: str, config: Path = ROOT / "config") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yuqing.cli", "--config", str(config), "classify", "--input", str(src),
         "--output", str(out), "--batch-size", "2", "--rules-only", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess[str], str]]:
    d = tmp_path_factory.mktemp("workers")
    src = d / "in.jsonl"
    src.write_bytes(b"".join(_many_lines()))
    got = {}
    for w in ("1", "2"):
        out = d / f"out{w}.jsonl"
        proc = _classify(src, out, "--workers", w)
        got[w] = (proc, out.read_text(encoding="utf-8"))
    return got


def test_workers_output_identical_to_one_process(parallel):
    (p1, out1), (p2, out2) = parallel["1"], parallel["2"]
    assert p1.returncode == 0, p1.stderr
    assert p2.returncode == 0, p2.stderr
    assert "1 个进程" in p1.stdout and "2 个进程" in p2.stdout
    assert out2 == out1
    # the summary lines agree too (but for the timing)
    assert p2.stdout.split("；")[:2] == p1.stdout.split("；")[:2]


def test_workers_keep_input_order_and_report_bad_lines(parallel):
    _, out = parallel["2"]
    rows = [json.loads(line) for line in out.splitlines()]
    sent = _many_lines()
    assert [r["line"] for r in rows] == list(range(1, len(sent) + 1))
    for r, raw in zip(rows, sent, strict=True):
        if raw.startswith(b"{broken"):
            assert "JSON" in r["error"]
        elif b'"text": 5' in raw:
            assert "字符串" in r["error"] and r["id"] == json.loads(raw)["id"]
        else:
            assert "error" not in r and r["id"] == json.loads(raw)["id"]
    # lines after every bad one were assessed
    assert rows[-1]["id"] == "m35" and "topic" in rows[-1]


def test_workers_config_error_stops_with_reason(tmp_path: Path):
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    (cfg / "taxonomy.yaml").write_text("focus: [\n", encoding="utf-8")
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(_many_lines()))
    proc = _classify(src, tmp_path / "out.jsonl", "--workers", "2", config=cfg)
    assert proc.returncode == 2
    assert "taxonomy.yaml" in proc.stderr


def test_workers_must_be_positive(tmp_path: Path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(_many_lines()))
    proc = _classify(src, tmp_path / "out.jsonl", "--workers", "0")
    assert proc.returncode == 2 and "--workers" in proc.stderr


# ---------------------------------------------------------------- clock rules (issue 15 part 3)

CLOCK_LINES = [
    {"id": "c1", "source_kind": "gov_board", "title": "建议在蜀山区翡翠湖片区增设公交站点",
     "text": "尊敬的领导：翡翠湖片区离最近的公交站要走二十分钟，建议在翡翠路口增设一个公交站点。"},
    {"id": "c2", "source_kind": "gov_board", "title": "蜀山区某小区物业私自上调停车费",
     "text": "物业未经业主大会同意把停车费从每月150元涨到300元，投诉到街道也没有回音，请有关部门查处。"},
    {"id": "c3", "source_kind": "forum", "title": "建议合肥地铁4号线早高峰加密班次",
     "text": "早高峰换乘站根本挤不上去，建议加开区间车。"},
    {"id": "c4", "source_kind": "news", "title": "蜀山区一化工厂发生爆炸 已造成12人死亡",
     "text": "合肥市蜀山区一化工厂发生爆炸，已造成12人死亡、8人受伤。"},
    {"id": "c5", "source_kind": "news", "title": "合肥新增5条公交线路 下月起运行",
     "text": "为方便市民出行，合肥市将于下月1日起新开通5条公交线路。"},
    {"id": "c6", "title": "合肥蜀山区一小区停水三天", "text": "蜀山区翡翠湖小区连续停水三天，居民只能买桶装水。"},
    {"id": "c7", "text": "今天天气真好，去吃了火锅。"},
    {"id": "c8", "source_kind": "blog", "text": "合肥蜀山区一小区停水三天"},
    {"id": "c9", "source_kind": 3, "text": "合肥蜀山区一小区停水三天"},
]


def test_classify_takes_source_kind_and_writes_the_clock_rule(tmp_path: Path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in CLOCK_LINES), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = _classify(src, out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    rows = by_id([json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()])
    got = {k: (r.get("source_kind"), r.get("clock_rule")) for k, r in rows.items() if "error" not in r}
    assert got == {
        "c1": ("gov_board", "suggestion"),
        "c2": ("gov_board", "complaint"),
        "c3": ("forum", "response_48h"),
        "c4": ("news", "major_emergency"),
        "c5": ("news", None),  # 政务动态: archived, no clock
        "c6": (None, "response_48h"),  # no source kind given: not a message board
        "c7": (None, None),  # not 政务舆情
    }
    assert rows["c1"]["clock_reason"].startswith("来源为政府留言板/问政平台；处置类型为建设性意见建议")
    assert "7个工作日内（可延长至15个工作日）反馈处理意见" in rows["c1"]["clock_reason"]
    assert "来源为论坛，非政府留言板/问政平台" in rows["c3"]["clock_reason"]
    assert rows["c5"]["clock_reason"].startswith("政务动态") and rows["c5"]["needs_response"] is False
    assert rows["c6"]["clock_reason"].startswith("非突发事件；来源未注明")
    assert rows["c7"]["clock_reason"].startswith("非政务舆情")
    for bad in ("c8", "c9"):
        assert "source_kind" in rows[bad]["error"] and "gov_board" in rows[bad]["error"], rows[bad]


def test_classify_stops_on_a_bad_clocks_yaml(tmp_path: Path):
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    f = cfg / "clocks.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace("source_kind_in: [gov_board]", "source_kind_in: [bbs]", 1),
                 encoding="utf-8")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(CLOCK_LINES[0], ensure_ascii=False) + "\n", encoding="utf-8")
    proc = _classify(src, tmp_path / "out.jsonl", "--workers", "1", config=cfg)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "clocks.yaml" in proc.stderr and "source_kind_in" in proc.stderr
