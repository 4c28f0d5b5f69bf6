"""Place resolution: gazetteer, mentions, ambiguity, fallbacks, regions.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from classifiers import build_gazetteer
from classifiers.places import GAZETTEER_TSV, Gazetteer, read_tsv, resolve_place
from yuqing.configfile import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ROOT / "config" / "regions.yaml"


@pytest.fixture(scope="module")
def gaz() -> Gazetteer:
    return Gazetteer.load(REGIONS)


def _regions_with(tmp_path: Path, extra: str) -> Path:
    p = tmp_path / "regions.yaml"
    shutil.copy(REGIONS, p)
    with p.open("a", encoding="utf-8") as f:
        f.write(extra)
    return p


# ---------------------------------------------------------------- the shipped gazetteer


def test_gazetteer_rows_are_complete_and_compact() -> None:
    rows = read_tsv(GAZETTEER_TSV)
    by_code = {r.code: r for r in rows}
    assert len(by_code) == len(rows), "codes are unique"
    assert sum(r.level == "province" for r in rows) == 31
    assert 300 < sum(r.level == "city" for r in rows) < 340
    assert 2900 < sum(r.level == "county" for r in rows) < 3000
    assert all(len(r.code) == 6 and r.code.isdigit() for r in rows)
    assert not any(r.name in ("市辖区", "县", "省直辖县级行政区划") for r in rows)
    assert GAZETTEER_TSV.stat().st_size < 200_000
    # parents exist and sit above their children
    for r in rows:
        if r.level != "province":
            assert by_code[r.province].level == "province"
        if r.city:
            assert by_code[r.city].level in ("city", "province")
    # short names: none of one character, none shared by four or more divisions
    owners: dict[str, int] = {}
    for r in rows:
        for s in r.short:
            assert len(s) >= 2, (r.name, s)
            owners[s] = owners.get(s, 0) + 1
    assert max(owners.values()) < 4


@pytest.mark.parametrize(
    ("code", "short"),
    [
        ("340100", "合肥"),
        ("341525", "霍山"),
        ("150000", "内蒙古"),
        ("450000", "广西"),
        ("422800", "恩施"),
        ("110000", "北京"),
    ],
)
def test_short_names(code: str, short: str) -> None:
    rows = {r.code: r for r in read_tsv(GAZETTEER_TSV)}
    assert short in rows[code].short


def test_municipality_is_province_and_city(gaz: Gazetteer) -> None:
    bj = gaz.get("110000")
    assert bj is not None and bj.level == "province"
    chaoyang = gaz.get("110105")
    assert chaoyang is not None and chaoyang.city == "110000" and chaoyang.province == "110000"
    p = gaz.place_for(chaoyang)
    assert (p.province, p.city, p.county) == ("北京市", "北京市", "朝阳区")
    assert p.label == "北京市朝阳区"


def test_build_script_on_fixture_tables(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "provinces.csv").write_text(
        'code,name\n11,"北京市"\n34,"安徽省"\n45,"广西壮族自治区"\n42,"湖北省"\n', encoding="utf-8"
    )
    (src / "cities.csv").write_text(
        'code,name,provinceCode\n1101,"市辖区",11\n3415,"六安市",34\n4228,"恩施土家族苗族自治州",42\n'
        '4290,"省直辖县级行政区划",42\n',
        encoding="utf-8",
    )
    (src / "areas.csv").write_text(
        'code,name,cityCode,provinceCode\n110105,"朝阳区",1101,11\n341525,"霍山县",3415,34\n'
        '341502,"金安区",3415,34\n429004,"仙桃市",4290,42\n422801,"恩施市",4228,42\n',
        encoding="utf-8",
    )
    out = tmp_path / "g.tsv"
    assert build_gazetteer.main(["--src", str(src), "--out", str(out)]) == 0
    rows = {r.code: r for r in read_tsv(out)}
    assert set(rows) == {"110000", "340000", "450000", "420000", "341500", "422800", "110105", "341525",
                         "341502", "429004", "422801"}
    assert rows["110105"].city == "110000"  # 市辖区 dropped, the municipality is the city
    assert rows["429004"].city is None  # directly under the province
    assert rows["341525"].short == ("霍山",)
    assert rows["450000"].short == ("广西",)
    assert rows["422800"].short == ("恩施",)
    assert rows["341500"].province == "340000"


def test_build_script_reports_missing_input(tmp_path: Path) -> None:
    assert build_gazetteer.main(["--src", str(tmp_path), "--out", str(tmp_path / "x.tsv")]) == 2


# ---------------------------------------------------------------- resolution


def test_full_name_gives_the_chain(gaz: Gazetteer) -> None:
    p = gaz.resolve_place("安徽省六安市霍山县一在建厂房发生坍塌事故")
    assert (p.province, p.city, p.county, p.code, p.level) == ("安徽省", "六安市", "霍山县", "341525", "county")
    assert p.reason == "正文提及“霍山县”，属安徽省六安市"


def test_short_name_resolves_and_says_so(gaz: Gazetteer) -> None:
    p = gaz.resolve_place("霍山一在建厂房坍塌，多名工人被埋")
    assert p.code == "341525"
    assert "“霍山”（霍山县）" in p.reason


def test_full_name_beats_short_name(gaz: Gazetteer) -> None:
    ms = gaz.mentions("霍山县城停水")
    assert [(m.surface, m.kind) for m in ms] == [("霍山县", "full")]


def test_county_alone_fills_city_and_province(gaz: Gazetteer) -> None:
    p = gaz.resolve_place("肥西县上派镇某小区停水三天")
    assert (p.province, p.city, p.county, p.code) == ("安徽省", "合肥市", "肥西县", "340123")


@pytest.mark.parametrize(
    ("text", "code", "level"),
    [
        ("六安市发布暴雨预警", "341500", "city"),
        ("安徽发布暴雨预警", "340000", "province"),
        ("内蒙古出台新政", "150000", "province"),
        ("恩施一景区", "422800", "city"),
    ],
)
def test_most_specific_level_named(gaz: Gazetteer, text: str, code: str, level: str) -> None:
    p = gaz.resolve_place(text)
    assert (p.code, p.level) == (code, level)


def test_same_name_resolved_by_context(gaz: Gazetteer) -> None:
    assert gaz.resolve_place("吉林省长春市朝阳区某小区停电").code == "220104"
    assert gaz.resolve_place("长春朝阳区某小区停电").code == "220104"
    p = gaz.resolve_place("北京朝阳区某小区停电")
    assert p.code == "110105"


def test_same_name_resolved_by_source_region(gaz: Gazetteer) -> None:
    text = "朝阳区某小区停电两天"
    assert gaz.resolve_place(text, "220100").code == "220104"
    p = gaz.resolve_place(text, "110000")
    assert p.code == "110105"
    assert "信息源属地" in p.reason


def test_same_name_without_clues_goes_to_pending(gaz: Gazetteer) -> None:
    p = gaz.resolve_place("朝阳区某小区停电两天")
    assert p.level == "unknown" and p.code is None
    assert "多处同名" in p.reason and "待定" in p.reason
    assert "北京市朝阳区" in p.reason and "吉林省长春市朝阳区" in p.reason


def test_former_name(gaz: Gazetteer) -> None:
    p = gaz.resolve_place("密云县一村庄发生山洪")
    assert (p.code, p.county, p.city) == ("110118", "密云区", "北京市")
    assert "“密云县”（现密云区）" in p.reason
    assert gaz.resolve_place("襄樊一小区").code == "420600"
    assert gaz.resolve_place("思茅市").code == "530800"


def test_falls_back_to_source_region(gaz: Gazetteer) -> None:
    p = gaz.resolve_place("小区停水三天了，没人管", "341525")
    assert p.code == "341525" and p.county == "霍山县"
    assert p.reason.startswith("正文未提及地名，取信息源属地“霍山县”")
    # the text wins over the source
    assert gaz.resolve_place("肥西县停水", "341525").code == "340123"


def test_unknown_place_is_pending_with_reason(gaz: Gazetteer) -> None:
    p = gaz.resolve_place("小区停水三天了，没人管", None)
    assert p.level == "unknown" and p.code is None and p.label == "待定"
    assert p.reason.startswith("无法确定地点") and "待定队列" in p.reason
    bad = gaz.resolve_place("小区停水", "999999")
    assert bad.level == "unknown" and "999999" in bad.reason


def test_several_places_give_the_common_parent(gaz: Gazetteer) -> None:
    r = gaz.resolve("霍山县和金寨县遭遇洪水，多处道路被淹")
    assert (r.place.code, r.place.level) == ("341500", "city")
    assert sorted(d.name for d in r.places) == ["金寨县", "霍山县"]
    assert "共同上级" in r.place.reason


def test_a_place_named_in_passing_is_not_the_place(gaz: Gazetteer) -> None:
    text = ("池州市东至县发生一起交通事故。一辆由安庆开往江西景德镇的客车行驶至池州市东至县路段时侧翻，"
            "伤者送往东至县人民医院")
    r = gaz.resolve(text)
    assert r.place.code == "341721"
    assert [d.code for d in r.places] == ["341721"]
    assert "提及较少" in r.place.reason


@pytest.mark.parametrize(
    "text",
    [
        "双方加强合作，共建平安社区，和平发展，太平盛世，胜利召开，江山如画",
        "单位和政府从未发过补贴，还我们安居乐业",
        "汽车站整体搬迁安置小区，高铁西站附近",
        "提高县级财政保障水平，信息县里已经公开",
        "城区停水，老城区改造，市中区域",
        "孙中山先生的故居，中山大学的学生",
        "广州北京路步行街人很多",
    ],
)
def test_no_junk_matches(gaz: Gazetteer, text: str) -> None:
    found = [(m.surface, m.code) for m in gaz.mentions(text) if "广州" not in m.surface]
    assert found == []


def test_generic_county_name_after_its_parent(gaz: Gazetteer) -> None:
    assert gaz.resolve_place("阳泉市城区停水").code == "140302"
    assert gaz.resolve_place("城区停水").level == "unknown"


def test_module_level_resolve_place_uses_default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import classifiers.places as places

    monkeypatch.setenv("YUQING_CONFIG_DIR", str(ROOT / "config"))
    monkeypatch.setattr(places, "_default", None)
    assert resolve_place("霍山县一小区", None).code == "341525"


# ---------------------------------------------------------------- regions.yaml


def test_config_alias(tmp_path: Path) -> None:
    p = _regions_with(tmp_path, "\n# test\n")
    text = p.read_text(encoding="utf-8").replace(
        "aliases:\n", 'aliases:\n  - {name: 大别山经开区, code: "341525", note: 本县内部叫法}\n', 1
    )
    p.write_text(text, encoding="utf-8")
    g = Gazetteer.load(p)
    place = g.resolve_place("大别山经开区一企业发生火灾")
    assert place.code == "341525"
    assert "本地别名" in place.reason and "本县内部叫法" in place.reason
    # the shipped gazetteer does not know the name
    assert Gazetteer.load(REGIONS).resolve_place("大别山经开区一企业发生火灾").level == "unknown"


def test_extra_region(tmp_path: Path) -> None:
    p = tmp_path / "regions.yaml"
    p.write_text(
        'extra_regions:\n  - {code: "341599", name: 皖西试验区, level: county, parent: "341500", short: [皖西试验]}\n',
        encoding="utf-8",
    )
    g = Gazetteer.load(p)
    place = g.resolve_place("皖西试验区一工地停工")
    assert (place.code, place.city, place.province) == ("341599", "六安市", "安徽省")


def test_unknown_code_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "regions.yaml"
    p.write_text('former_names:\n  - {name: 某某县, code: "341599"}\n  - {name: 另一县, code: "999999"}\n',
                 encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        Gazetteer.load(p)
    msg = str(ei.value)
    assert f"{p}:3: former_names.1.code: unknown division code 999999" in msg
    assert "341599" in msg


def test_bad_field_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "regions.yaml"
    p.write_text('aliases:\n  - {name: 某地, code: "341525"}\n  - {nmae: 某地, code: "341525"}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        Gazetteer.load(p)
    assert f"{p}:3: aliases.1.nmae: unknown field" in str(ei.value)


def test_extra_region_may_not_reuse_a_code(tmp_path: Path) -> None:
    p = tmp_path / "regions.yaml"
    p.write_text('extra_regions:\n  - {code: "341525", name: 新霍山, level: county, parent: "341500"}\n',
                 encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        Gazetteer.load(p)
    assert f"{p}:2: extra_regions.0.code: 341525 is already 霍山县" in str(ei.value)


# ---------------------------------------------------------------- fast paths agree with the plain ones


def _naive_longest(words: set[str], text: str) -> list[tuple[int, int, str]]:
    """Leftmost-longest, non-overlapping matching, position by position."""
    out, i = [], 0
    longest = max(map(len, words))
    while i < len(text):
        hit = next((text[i:i + n] for n in range(longest, 0, -1) if text[i:i + n] in words), None)
        if hit is None:
            i += 1
        else:
            out.append((i, i + len(hit), hit))
            i += len(hit)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_longest_matcher_equals_naive_scan(seed: int) -> None:
    import random

    from classifiers.places import LongestMatcher

    rng = random.Random(seed)
    alphabet = "交通事故火灾安全生产区县市.*+?()[]\\|^$"
    words = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 40))}
    m = LongestMatcher(words)
    for _ in range(50):
        text = "".join(rng.choice(alphabet + "，。 \n") for _ in range(rng.randint(0, 80)))
        if rng.random() < 0.5:
            w = rng.choice(sorted(words))
            k = rng.randint(0, len(text))
            text = text[:k] + w + text[k:]
        want = _naive_longest(words, text)
        assert list(m.finditer(text)) == want, (words, text)
        starts = list(m.starts(text))
        assert {s for s, _e, _w in want} <= set(starts)
        assert all(any(True for _ in m.candidates(text, i)) or text[i:i + 2] in m._heads for i in starts)
    assert list(LongestMatcher([]).finditer("交通事故")) == []


def test_word_boundaries_of_a_run_equal_those_of_the_whole_text(gaz: Gazetteer) -> None:
    from classifiers.places import _Segmenter, _TextBounds

    texts = [
        "领导和政府部门，请关注搬迁安置问题；高铁西站附近提高县级公路标准。",
        "ABC和政府123，和政县城区 alias—迁安市 铁西区，2024年高县。",
        "我们村在和政县\n城关镇，路况很差！！请迁安领导尽快处理（谢谢）",
    ]
    gaz.mentions(texts[0])  # the gazetteer's names are in the shared tokenizer
    tk = _Segmenter._get(())
    for text in texts:
        whole = _Segmenter.boundaries(text)
        assert whole is not None
        bounds = _TextBounds(text, tk)
        for i in range(len(text)):
            for j in range(i + 1, min(len(text), i + 6) + 1):
                assert bounds.ok(i, j) == (i in whole and j in whole), (text, i, j)


def test_normalise_fast_path_equals_the_general_formula() -> None:
    import math
    import random

    from classifiers.taxonomy import normalise

    def general(raw: dict[str, float]) -> dict[str, float]:
        total = sum(max(v, 0.0) for v in raw.values())
        if total <= 0:
            return {k: round(1.0 / len(raw), 6) for k in raw}
        return {k: round(max(v, 0.0) / total, 6) for k, v in raw.items()}

    rng = random.Random(3)
    pool = [0.0, -0.0, 1.0, 2.0, 3.0, 0.5, -1.0, 7.25, 1e-9, math.nan]
    for _ in range(500):
        raw = {f"k{i}": rng.choice(pool) for i in range(rng.randint(1, 6))}
        got, want = normalise(raw), general(raw)
        assert list(got) == list(want)
        for k in raw:
            a, b = got[k], want[k]
            assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), raw
    assert normalise({}) == {}


def test_keyword_scorer_with_no_hit_is_uniform_and_fresh() -> None:
    from classifiers.taxonomy import KeywordScorer

    s = KeywordScorer({"甲": ["火灾"], "乙": ["交通事故"], "丙": ["噪音"]}, blocked=["森林火灾险"])
    empty = s.score("标题", "没有关键词")
    assert empty.scores == {"甲": 0.333333, "乙": 0.333333, "丙": 0.333333}
    assert empty.raw == {"甲": 0.0, "乙": 0.0, "丙": 0.0} and empty.words == {"甲": [], "乙": [], "丙": []}
    empty.words["甲"].append("x")
    assert s.score("", "").words["甲"] == []  # each result has its own lists
    hit = s.score("火灾", "交通事故，森林火灾险，火灾")
    assert [(h.word, h.in_title) for h in s.hits("火灾", "交通事故，森林火灾险，火灾")] == [
        ("火灾", True), ("交通事故", False), ("火灾", False)]
    assert hit.raw == {"甲": 3.0, "乙": 1.0, "丙": 0.0}
