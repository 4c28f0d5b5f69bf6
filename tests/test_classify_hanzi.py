"""Traditional characters are read as simplified ones before the rules run."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifiers.assess import Assessor
from classifiers.hanzi import TRAD_TO_SIMP, to_simplified
from yuqing.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_conversion_keeps_length_and_leaves_simplified_alone() -> None:
    trad = "長沙市雨花區發生交通事故，造成十二人死亡。臺灣"
    simp = to_simplified(trad)
    assert simp == "长沙市雨花区发生交通事故，造成十二人死亡。台湾"
    assert len(simp) == len(trad)
    plain = "长沙市雨花区发生火灾 abc 123"
    assert to_simplified(plain) == plain
    # a one-for-one table: no target is itself converted again
    assert not any(v in TRAD_TO_SIMP for v in TRAD_TO_SIMP.values())


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    s = Settings(data_dir=str(tmp_path_factory.mktemp("var")), config_dir=ROOT / "config")
    return Assessor(s, use_model=False)


def test_traditional_post_gets_the_same_assessment(assessor: Assessor) -> None:
    trad = assessor.assess_text("長沙市雨花區一居民樓發生火災，造成三人死亡、十二人重傷。")
    simp = assessor.assess_text("长沙市雨花区一居民楼发生火灾，造成三人死亡、十二人重伤。")
    assert trad.place.code == simp.place.code == "430111"  # not 沙市区 (荆州) from "長沙市"
    assert (trad.event_subtype, trad.casualties.deaths, trad.casualties.injured) == ("火灾", 3, 12)
    assert trad.severity == simp.severity == "较大"
    assert [r.name for r in trad.responders] == [r.name for r in simp.responders]
