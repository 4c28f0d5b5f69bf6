"""Derive ``classifiers/data/gazetteer.tsv`` from the NBS division tables.

Usage::

    python -m classifiers.build_gazetteer [--src ../shared/data/admin_divisions] [--out PATH]

Input: ``provinces.csv`` (2-digit codes), ``cities.csv`` (4-digit codes) and
``areas.csv`` (6-digit county-level codes) of the NBS 统计用区划代码. The
output is one row per province, city and county::

    code  name  level  province  city  short  flags

* ``code``: 6-digit code (NBS 4-digit city codes get "00" appended).
* ``level``: ``province`` / ``city`` / ``county``.
* ``province``, ``city``: 6-digit codes of the parents (empty where none).
  A direct-administered municipality (北京市, 天津市, 上海市, 重庆市) is one
  row at province level and is also the city of its districts, so
  ``朝阳区`` has province 110000 and city 110000. The NBS placeholder cities
  (市辖区, 县, 省直辖县级行政区划) are dropped; a county directly under a
  province (济源市, 仙桃市) has no city.
* ``short``: the short names people write, ``|``-separated (合肥市 → 合肥,
  广西壮族自治区 → 广西, 恩施土家族苗族自治州 → 恩施). A short name is left
  out when it has one character, is made of generic place words only
  (城关, 河东, 市中), is an everyday word (和平, 合作, 东方: from jieba's
  dictionary and a hand list), or is shared by four or more divisions (朝阳,
  鼓楼): the full name still matches.
* ``flags``: ``p`` marks a county whose full name is also an ordinary phrase
  (城区, 老城区, 市中区, 城关区, 新县): the resolver accepts it only right
  after a mention of an ancestor (阳泉市城区). ``w`` marks another
  two-character full name (高县, 息县): accepted only on word boundaries
  (not in 提高县级, 信息县), like every short name.

Former names and deployment aliases are not here: they live in
``config/regions.yaml`` so an office can edit them.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SRC = HERE.parent.parent / "shared" / "data" / "admin_divisions"
DEFAULT_OUT = HERE / "data" / "gazetteer.tsv"

# NBS placeholder cities that are not real divisions.
PLACEHOLDER_CITIES = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}
MUNICIPALITIES = {"11", "12", "31", "50"}

# The 55 minority peoples, as they appear inside autonomous-area names (with or
# without 族: 博尔塔拉蒙古自治州, 鄂伦春自治旗).
ETHNIC = (
    "蒙古 回 藏 维吾尔 苗 彝 壮 布依 朝鲜 满 侗 瑶 白 土家 哈尼 哈萨克 傣 黎 傈僳 佤 畲 高山 拉祜 水 东乡 "
    "纳西 景颇 柯尔克孜 土 达斡尔 仫佬 羌 布朗 撒拉 毛南 仡佬 锡伯 阿昌 普米 塔吉克 怒 乌孜别克 俄罗斯 "
    "鄂温克 德昂 保安 裕固 京 塔塔尔 独龙 鄂伦春 赫哲 门巴 珞巴 基诺"
).split()
_ETHNIC_SUFFIXES = sorted({e + "族" for e in ETHNIC} | {e for e in ETHNIC if len(e) >= 2}, key=len, reverse=True)

# A short name made only of these characters is generic (城关, 河东, 市中, 新城).
GENERIC_CHARS = set("东西南北中上下前后左右内外城郊矿新老区市县关桥河江")
# A county whose full name is made of these plus the suffix (城区, 老城区,
# 市中区, 城关区, 新县) is only recognised right after its parent.
PARENT_ONLY_CHARS = set("东西南北中新老城郊矿市关")
# ... except these, which are not ordinary phrases.
DISTINCT_FULL_NAMES = {"东城区", "西城区", "新北区", "南城县", "市南区", "市北区", "南关区", "北关区"}

# Everyday words that are also the stem of a division name (和平区 → 和平 would
# match 世界和平). jieba's dictionary catches frequent ones; these it does not.
STOP_SHORT = set(
    """
    安宁 太平 江山 永和 白云 天河 盐田 光明 中原 平原 通道 二七 南山 东山 北山 青山 黄埔 大通 明光 城步
    永定 长宁 普陀 金山 宝山 龙华 新华 和平 平安 合作 东方 阿里 红旗 向阳 胜利 长安 高新 新建 河口 古城
    甘泉 商城 南海 东海 太湖 西湖 东湖 南湖 北湖 月湖 湖滨 天心 泰山 庐山 恒山 衡山 天涯 海棠 七星 新星
    白杨 同心 民乐 高台 石棉 富民 麒麟 灯塔 元宝 平房 方正 木兰 博爱 民权 惠民 兴业 紫金 阳春 白沙 白塔
    白玉 白河 太白 宝塔 天桥 上街 路桥 双桥 大城 大厂 小店 回民 玉泉 金牛 九龙 长寿 长乐 龙凤 龙潭 龙井
    新民 江海 金沙 水城 江口 天柱 西山 盘龙 红塔 大关 滨海 海港 青龙 无极 路南 新会 商都 满城 兴隆 故城
    江岸 钟山 卢氏 清流 马尾 新罗 铜鼓 牡丹 山城 东坡 万山 沿河 弥勒 祥云 景泰 灵台 同仁 西夏 盐池 天山
    玄武 钟楼 海盐 天台 临海 云霄 孙吴 阳明 爱民 泰来 延寿 榆树 盘山 南宫 盐湖 来宾 白银 玉树 建华 新兴
    安定 文明 友谊 前进 团结 共和 会同 凤凰 龙门 龙湖 龙山 龙泉 三江 三都 正安 大安 宁安 民和 东港 海城
    道里 道外 安居 乐业 日照 南岗 和政 大化 利通 天等 定结
    """.split()
)
# County-level stems that jieba's dictionary over-weights (its counts for Hubei
# places are inflated) but that people do write as places.
KEEP_SHORT = set("大冶 当阳 钟祥 应城 石首 麻城 仙桃 阳新 监利 罗田 竹溪 洪湖 桃源 宁远 秦安 高陵 古田 西华 太康".split())
# Suffixes stripped to get the short name, tried longest first.
SUFFIXES = ("特别行政区", "自治区", "自治州", "自治县", "自治旗", "林区", "新区", "地区", "省", "市", "县", "区", "盟", "旗")
# A short name is not derived from names that are zones rather than places.
NO_SHORT_MARKERS = ("开发区", "管理区", "管委会", "委员会", "群岛", "海域", "新城")


@dataclass
class Row:
    code: str
    name: str
    level: str
    province: str = ""
    city: str = ""
    short: list[str] = field(default_factory=list)
    flags: str = ""


def _strip_ethnic(stem: str) -> str:
    changed = True
    while changed and stem:
        changed = False
        for suf in _ETHNIC_SUFFIXES:
            if stem.endswith(suf) and len(stem) - len(suf) >= 2:
                stem = stem[: -len(suf)]
                changed = True
                break
            if stem == suf:
                return ""
    return stem


def stem_of(name: str, level: str) -> str | None:
    """The bare stem of a division name, or None when no short name applies."""
    if any(m in name for m in NO_SHORT_MARKERS):
        return None
    for suf in SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            stem = name[: -len(suf)]
            if suf in ("自治区", "自治州", "自治县", "自治旗"):
                stem = _strip_ethnic(stem)
            if suf == "旗" and stem and stem[-1] in "左右前中后":
                return None  # 土默特左旗: people write the full name
            return stem or None
    return None


def _jieba_words() -> dict[str, tuple[int, str]]:
    try:
        import jieba
    except ImportError:  # pragma: no cover - jieba is a project dependency
        return {}
    path = Path(os.path.dirname(jieba.__file__)) / "dict.txt"
    words: dict[str, tuple[int, str]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                words[parts[0]] = (int(parts[1]), parts[2])
    return words


def is_generic(stem: str, level: str, words: dict[str, tuple[int, str]]) -> bool:
    """True when ``stem`` would match ordinary text more often than the place.

    Province and prefecture names (合肥, 保定, 恩施) are what people write, so
    only the hand list removes them; county-level stems are also checked
    against jieba's dictionary: a frequent word that jieba does not tag as a
    place (ns) is an everyday word (合作, 平安, 城中).
    """
    if len(stem) < 2 or stem in STOP_SHORT:
        return True
    if level != "county" or stem in KEEP_SHORT:
        return False
    if all(c in GENERIC_CHARS for c in stem):
        return True
    hit = words.get(stem)
    return hit is not None and hit[1] != "ns" and hit[0] >= 300


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def build_rows(src: Path) -> list[Row]:
    provinces = _read(src / "provinces.csv")
    cities = _read(src / "cities.csv")
    areas = _read(src / "areas.csv")

    rows: list[Row] = []
    for p in provinces:
        rows.append(Row(code=p["code"] + "0000", name=p["name"], level="province"))
    city_codes: set[str] = set()
    for c in cities:
        if c["name"] in PLACEHOLDER_CITIES or c["provinceCode"] in MUNICIPALITIES:
            continue
        code = c["code"] + "00"
        city_codes.add(code)
        rows.append(Row(code=code, name=c["name"], level="city", province=c["provinceCode"] + "0000"))
    for a in areas:
        code = a["code"]
        if code in city_codes:
            continue  # 东莞市, 中山市, 儋州市: a city without counties, listed again as its own area
        prov = a["provinceCode"] + "0000"
        city = a["cityCode"] + "00"
        if a["provinceCode"] in MUNICIPALITIES:
            city = prov
        elif city not in city_codes:
            city = ""  # directly under the province (济源市, 仙桃市)
        flags = ""
        stem = a["name"][:-1]
        if all(c in PARENT_ONLY_CHARS for c in stem) and a["name"] not in DISTINCT_FULL_NAMES:
            # 城区, 新县, 老城区, 市中区, 城关区: also ordinary words; only right
            # after the parent's name (阳泉市城区).
            flags = "p"
        elif len(a["name"]) == 2:
            # 高县, 息县: only on word boundaries (not 提高县级, 信息县).
            flags = "w"
        rows.append(Row(code=code, name=a["name"], level="county", province=prov, city=city, flags=flags))

    words = _jieba_words()
    stems: dict[str, str | None] = {r.code: stem_of(r.name, r.level) for r in rows}
    owners = Counter(s for s in stems.values() if s)
    full_names = {r.name for r in rows}
    for r in rows:
        s = stems[r.code]
        if not s or s in full_names or owners[s] >= 4 or is_generic(s, r.level, words):
            continue
        r.short.append(s)
    return rows


def write_tsv(rows: Iterable[Row], out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["code\tname\tlevel\tprovince\tcity\tshort\tflags"]
    for r in rows:
        lines.append("\t".join([r.code, r.name, r.level, r.province, r.city, "|".join(r.short), r.flags]))
    data = "\n".join(lines) + "\n"
    out.write_text(data, encoding="utf-8")
    return len(data.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build classifiers/data/gazetteer.tsv from NBS division tables")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with provinces.csv, cities.csv, areas.csv")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    for name in ("provinces.csv", "cities.csv", "areas.csv"):
        if not (args.src / name).is_file():
            print(f"{args.src / name}: not found", file=sys.stderr)
            return 2
    rows = build_rows(args.src)
    size = write_tsv(rows, args.out)
    by_level = Counter(r.level for r in rows)
    shorts = sum(len(r.short) for r in rows)
    print(
        f"{args.out}: {len(rows)} rows ({by_level['province']} provinces, {by_level['city']} cities, "
        f"{by_level['county']} counties), {shorts} short names, {size} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
