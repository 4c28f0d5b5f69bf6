"""The whole assessment of a post, and the config it rests on."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from classifiers.assess import Assessor
from classifiers.topic_model import TopicModel
from stream.contracts import SHANGHAI, AssessedPost, Assessment, Engagement, RawPost, decode, encode
from yuqing.configfile import ConfigError
from yuqing.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 7, 1, 9, 30, tzinfo=SHANGHAI)


def settings_for(config_dir: Path, data_dir: Path) -> Settings:
    return Settings(data_dir=str(data_dir), config_dir=config_dir)


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    # the rules alone (the committed topic model is tested in test_model.py)
    return Assessor(settings_for(ROOT / "config", tmp_path_factory.mktemp("var")), use_model=False)


def roles(a: Assessment) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in a.responders:
        out.setdefault(r.role, []).append(r.name)
    return out


def rule_of(a: Assessment, role: str) -> str:
    return next(r.rule for r in a.responders if r.role == role)


# ---------------------------------------------------------------- emergencies


COLLAPSE = (
    "霍山县一在建厂房坍塌 已造成12人死亡",
    "今日上午，安徽省六安市霍山县经济开发区一在建厂房发生坍塌事故，截至目前已造成12人死亡、3人受伤，"
    "伤者已送医救治，事故原因正在调查中。",
)


def test_collapse_with_twelve_deaths(assessor: Assessor) -> None:
    a = assessor.assess_text(COLLAPSE[1], title=COLLAPSE[0])
    assert a.relevant and a.is_emergency
    assert a.focus == "突发事件与自然灾害"
    assert (a.event_type, a.event_subtype) == ("事故灾难", "坍塌")
    assert a.casualties.deaths == 12
    assert a.severity == "重大"
    assert "12人死亡" in a.severity_reason and "为重大" in a.severity_reason
    assert (a.place.province, a.place.city, a.place.county, a.place.code) == ("安徽省", "六安市", "霍山县", "341525")
    assert a.department == "霍山县应急管理局"
    r = roles(a)
    assert r["primary"] == ["霍山县应急管理局"]
    assert "霍山县住房和城乡建设局" in r["co"]
    assert r["coordinator"] == ["霍山县人民政府办公室 会同 霍山县委宣传部"]
    assert "leader" not in r
    primary_rule = rule_of(a, "primary")
    assert primary_rule.startswith("属地管理：事发地霍山县，由霍山县政府主管部门负责") and "安徽 三(一)" in primary_rule
    assert a.handling_type == "重大问题" and "调查处置情况" in a.handling_reason
    assert a.model_version == "rules-1"
    assert "坍塌" in a.relevance_reason


def test_extraordinarily_serious_gets_the_principal_leader(assessor: Assessor) -> None:
    a = assessor.assess_text("池州市东至县境内一大客车侧翻坠入深沟，事故造成32人死亡、18人受伤。")
    assert a.severity == "特别重大"
    assert a.event_subtype == "交通事故"
    r = roles(a)
    assert r["primary"] == ["东至县公安局交通管理大队"]
    assert r["leader"] == ["东至县人民政府主要负责同志"]
    assert rule_of(a, "leader").startswith("特别重大：")


def test_two_counties_go_one_level_up(assessor: Assessor) -> None:
    a = assessor.assess_text("受持续强降雨影响，霍山县和金寨县多地发生洪涝，造成3人死亡。")
    assert (a.place.code, a.place.level) == ("341500", "city")
    r = roles(a)
    assert r["primary"] == ["六安市水利局"]
    assert {"霍山县水利局", "金寨县水利局"} <= set(r["co"])
    assert "涉及多个地方" in rule_of(a, "primary") and "六安市" in rule_of(a, "primary")
    assert r["coordinator"] == ["六安市人民政府办公室 会同 六安市委宣传部"]


def test_casualties_without_an_event_word_are_an_emergency(assessor: Assessor) -> None:
    a = assessor.assess_text("霍山县某村昨夜2人死亡，原因不明")
    assert a.relevant and a.is_emergency and a.event_type is None
    assert a.department == "霍山县应急管理局"


def test_prevention_is_not_an_emergency(assessor: Assessor) -> None:
    a = assessor.assess_text("怀宁县开展冬季森林防火宣传，森林火险等级持续偏高，提醒群众消除火灾隐患")
    assert not a.is_emergency and a.event_type is None


# ---------------------------------------------------------------- complaints and policy


def test_water_cut_complaint(assessor: Assessor) -> None:
    a = assessor.assess_text("合肥市肥西县上派镇某小区已经停水三天了，物业说是管网维修，什么时候能恢复供水？")
    assert a.relevant and not a.is_emergency
    assert a.topic == "城乡建设"
    assert "停水" in a.topic_reason
    assert a.department == "肥西县住房和城乡建设局"
    assert roles(a)["primary"] == ["肥西县住房和城乡建设局"]
    assert a.severity == "一般"
    assert a.focus == "公众切身利益"
    assert a.handling_type == "实际困难" and "研究解决的情况要对外公布" in a.handling_reason
    assert a.place.code == "340123"


def test_vertically_managed_department(assessor: Assessor) -> None:
    a = assessor.assess_text("霍山县个税退税申请提交两个月了还没到账，发票也开不出来")
    assert a.topic == "财政税务"
    r = roles(a)
    assert r["primary"] == ["霍山县税务局"]
    assert r["coordinator"] == ["六安市税务局办公室 会同 霍山县委宣传部"]
    assert rule_of(a, "coordinator").startswith("垂直管理：")


def test_province_level_policy(assessor: Assessor) -> None:
    a = assessor.assess_text("安徽省印发实施方案，调整城乡居民养老保险缴费档次")
    assert a.focus == "重大决策部署" and a.place.level == "province"
    r = roles(a)
    assert r["primary"] == ["安徽省人力资源和社会保障厅"]
    assert r["coordinator"] == ["安徽省人民政府办公厅 会同 安徽省委宣传部"]
    assert rule_of(a, "primary").startswith("省级重大政策")


def test_unknown_place_goes_to_pending(assessor: Assessor) -> None:
    a = assessor.assess_text("小区停水三天了，物业也不管")
    assert a.relevant and a.place.level == "unknown"
    assert roles(a) == {"primary": ["待定（属地未明）"]}
    assert "属地未明" in a.responders[0].rule
    assert a.department == "住房和城乡建设局"  # generic until the place is known


def test_source_region_used_for_a_post(assessor: Assessor) -> None:
    post = RawPost(
        post_id="p-1", source_id="huoshan-bbs", source_kind="forum", title="小区停水三天",
        text="小区停水三天了，物业也不管", published_at=T0, fetched_at=T0, source_region="341525",
    )
    a = assessor.assess(post)
    assert a.place.code == "341525" and "信息源属地" in a.place.reason
    assert roles(a)["primary"] == ["霍山县住房和城乡建设局"]


# ---------------------------------------------------------------- not 政务舆情


def test_football_report_is_irrelevant(assessor: Assessor) -> None:
    a = assessor.assess_text(
        "武磊梅开二度，球迷欢呼，本赛季积分榜继续领跑，主教练赛后表示球队还有提升空间。",
        title="中超第12轮：海港主场2比1战胜国安",
    )
    assert not a.relevant
    assert "体育赛事" in a.relevance_reason and "归档" in a.relevance_reason
    assert a.responders == [] and a.topic is None and a.focus is None


def test_entertainment_is_irrelevant(assessor: Assessor) -> None:
    a = assessor.assess_text("某男星官宣恋情，粉丝刷屏，新剧热播，票房破十亿")
    assert not a.relevant and "娱乐八卦" in a.relevance_reason


# ---------------------------------------------------------------- scores and contract


def test_scores_sum_to_one(assessor: Assessor) -> None:
    a = assessor.assess_text(COLLAPSE[1], title=COLLAPSE[0])
    assert {"relevance", "focus", "topic", "event_type", "handling"} <= set(a.scores)
    for name, scores in a.scores.items():
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4), name
    assert a.scores["event_type"]["事故灾难"] > 0.5


def test_assessment_passes_the_stream_contract(assessor: Assessor) -> None:
    post = RawPost(
        post_id="p-2", source_id="news", source_kind="news", title=COLLAPSE[0], text=COLLAPSE[1],
        published_at=T0, fetched_at=T0, engagement=Engagement(reposts=5),
    )
    msg = AssessedPost(post=post, assessment=assessor.assess(post), assessed_at=T0)
    back = decode(encode(msg), AssessedPost)
    assert isinstance(back, AssessedPost) and back.assessment.severity == "重大"


def test_batch_equals_single(assessor: Assessor) -> None:
    posts = [
        RawPost(post_id=f"b{i}", source_id="s", source_kind="news", text=t, published_at=T0, fetched_at=T0)
        for i, t in enumerate(["合肥市肥西县停水三天", COLLAPSE[1]])
    ]
    assert assessor.assess_batch(posts) == [assessor.assess(p) for p in posts]


# ---------------------------------------------------------------- a topic model plugs in


class FakeModel:
    version = "fake-1"

    def __init__(self, label: str, p: float):
        self.label, self.p = label, p
        self.seen: list[str] = []

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.seen.extend(texts)
        return [{self.label: self.p, "城乡建设": 1 - self.p} for _ in texts]


def test_topic_model_decides_the_topic_when_confident(tmp_path: Path) -> None:
    model = FakeModel("环境保护", 0.9)
    assert isinstance(model, TopicModel)
    a = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=model)
    got = a.assess_text("合肥市肥西县某小区停水三天")
    assert got.topic == "环境保护" and got.department == "肥西县生态环境局"
    assert "模型fake-1" in got.topic_reason and got.model_version == "fake-1+rules-1"
    assert model.seen and "停水" in model.seen[0]
    unsure = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=FakeModel("环境保护", 0.3))
    assert unsure.assess_text("合肥市肥西县某小区停水三天").topic == "城乡建设"


@pytest.mark.slow
def test_model_dir_loads_a_huggingface_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"停水小区污染排放"]
    (model_dir / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    labels = ["城乡建设", "环境保护"]
    cfg = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
        num_labels=2, id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)},
    )
    transformers.BertForSequenceClassification(cfg).save_pretrained(str(model_dir))
    transformers.BertTokenizer(str(model_dir / "vocab.txt")).save_pretrained(str(model_dir))
    s = settings_for(ROOT / "config", tmp_path)
    s.classifier.model_dir = str(model_dir)
    a = Assessor(s)
    assert a.model_version == "hf:model+rules-1"
    got = a.assess_text("合肥市肥西县某小区停水")
    assert set(got.scores["topic"]) == set(labels)
    assert sum(got.scores["topic"].values()) == pytest.approx(1.0, abs=1e-4)


def test_model_dir_without_a_model_is_a_config_error(tmp_path: Path) -> None:
    s = settings_for(ROOT / "config", tmp_path)
    s.classifier.model_dir = str(tmp_path / "nothing")
    with pytest.raises(ConfigError) as ei:
        Assessor(s)
    assert "classifier.model_dir" in str(ei.value)


# ---------------------------------------------------------------- config errors


def _config_copy(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    return d


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_bad_field_in_taxonomy_names_file_and_line(tmp_path: Path) -> None:
    d = _config_copy(tmp_path)
    f = d / "taxonomy.yaml"
    _edit(f, "    department: 生态环境局", "    departmnt: 生态环境局")
    with pytest.raises(ConfigError) as ei:
        Assessor(settings_for(d, tmp_path))
    msg = str(ei.value)
    assert f"{f}:{_line_of(f, 'departmnt: 生态环境局')}: topics.1.departmnt: unknown field" in msg
    assert "topics.1.department: Field required" in msg


def test_unknown_department_names_taxonomy_line(tmp_path: Path) -> None:
    d = _config_copy(tmp_path)
    f = d / "taxonomy.yaml"
    _edit(f, "    department: 生态环境局", "    department: 环保局")
    with pytest.raises(ConfigError) as ei:
        Assessor(settings_for(d, tmp_path))
    msg = str(ei.value)
    assert f"{f}:{_line_of(f, 'department: 环保局')}: topics.1.department: 环保局 is not listed" in msg


def test_event_topic_must_exist(tmp_path: Path) -> None:
    d = _config_copy(tmp_path)
    f = d / "taxonomy.yaml"
    _edit(f, "      topic: 政法", "      topic: 治安")
    with pytest.raises(ConfigError) as ei:
        Assessor(settings_for(d, tmp_path))
    assert f"{f}:{_line_of(f, 'topic: 治安')}: events.types.3.topic: 治安 is not one of the topics" in str(ei.value)


def test_start_up_loaders_accept_the_shipped_config(tmp_path: Path) -> None:
    from classifiers.places import load_regions
    from classifiers.responders import load_responder_rules
    from classifiers.severity import load_severity_rules
    from classifiers.taxonomy import load_taxonomy

    s = settings_for(ROOT / "config", tmp_path)
    assert load_taxonomy(s).model_version == "rules-1"
    assert load_regions(s).get("341525") is not None
    assert load_severity_rules(s).levels[0].level == "特别重大"
    assert "应急管理局" in load_responder_rules(s).cfg.departments


def test_municipality_district_names_its_city(assessor: Assessor) -> None:
    a = assessor.assess_text("北京市朝阳区某小区停水两天，物业不管")
    assert (a.place.province, a.place.city, a.place.county) == ("北京市", "北京市", "朝阳区")
    r = roles(a)
    # two 朝阳区 exist, so the name carries its city
    assert r["primary"] == ["北京市朝阳区住房和城乡建设局"]
    assert r["coordinator"] == ["北京市朝阳区人民政府办公室 会同 北京市朝阳区委宣传部"]
    city = assessor.assess_text("北京市出台新规，调整城乡居民养老保险缴费档次")
    assert roles(city)["primary"] == ["北京市人力资源和社会保障局"]
    assert roles(city)["coordinator"] == ["北京市人民政府办公厅 会同 北京市委宣传部"]


def test_no_department_found_goes_to_the_government_office(assessor: Assessor) -> None:
    a = assessor.assess_text("霍山县某单位领导不作为，群众反映多次无果")
    assert a.relevant and a.topic is None and a.focus == "政府形象公信力"
    assert roles(a)["primary"] == ["霍山县人民政府办公室"]
    assert "未识别主管部门" in rule_of(a, "primary")


# ---------------------------------------------------------------- what counts as an emergency

# Complaints that name an event without reporting one that happened: a worry, a
# hypothesis, a habit, a past reference, prevention, a negation, a comparison,
# the writer's own mishap. Each keeps the topic its keywords give.
NOT_EMERGENCIES = [
    ("学校门口车辆乱停乱放，家长们都担心发生交通事故，希望交警部门加强疏导。", "交通运输"),
    ("小区楼道堆满杂物，电动车也在楼道充电，一旦发生火灾后果不堪设想，请物业清理。", "城乡建设"),
    ("这个路口没有红绿灯，经常发生交通事故，建议尽快安装信号灯。", "交通运输"),
    ("我们小区去年曾发生过火灾，物业至今没有整改，业主很不满意。", "城乡建设"),
    ("县教育局组织全县学校开展消防安全检查和应急演练，预防火灾事故。", "教育文体"),
    ("交警说这不是交通事故，让我们自己去找物业协商停车位的赔偿。", "交通运输"),
    ("化工厂的锅炉天天超负荷运行，就像一颗定时炸弹，附近居民都睡不着，环保部门管不管？", "环境保护"),
    ("我老婆遭遇车祸后住院三个月，医保报销比例太低，请问如何申请大病医疗保险？", "劳动和社会保障"),
]


@pytest.mark.parametrize(("text", "topic"), NOT_EMERGENCIES)
def test_hazards_worries_and_past_references_are_not_emergencies(assessor: Assessor, text: str, topic: str) -> None:
    a = assessor.assess_text(text)
    assert a.relevant
    assert not a.is_emergency and a.event_type is None and a.event_subtype is None
    assert a.focus != "突发事件与自然灾害"
    assert a.topic == topic
    assert a.severity == "一般" and "非突发事件" in a.severity_reason


REPORTS = [
    ("今天上午，某县一居民楼发生火灾，消防人员正在全力扑救。", "事故灾难", "火灾"),
    ("包河区一仓库起火，无人员伤亡。", "事故灾难", "火灾"),
    ("某县发生4.5级地震，暂无人员伤亡报告。", "自然灾害", "地震"),
    ("昨晚县城一路口两车相撞，造成3人受伤，伤者已送医救治。", "事故灾难", "交通事故"),
    ("某小学30多名学生午餐后出现呕吐腹泻症状，疑似食物中毒，均已送医治疗。", "公共卫生事件", "食物中毒"),
]


@pytest.mark.parametrize(("text", "event_type", "subtype"), REPORTS)
def test_reports_of_events_that_happened_are_emergencies(
    assessor: Assessor, text: str, event_type: str, subtype: str
) -> None:
    a = assessor.assess_text(text)
    assert a.relevant and a.is_emergency
    assert (a.event_type, a.event_subtype) == (event_type, subtype)
    assert a.focus == "突发事件与自然灾害"


def test_a_headline_reports_the_event(assessor: Assessor) -> None:
    a = assessor.assess_text("现场已拉起警戒线。", title="某化工园区一仓库爆炸")
    assert a.is_emergency and a.event_subtype == "爆炸"
    # the same words as a post's own 【headline】
    b = assessor.assess_text("【某化工园区一仓库爆炸】现场已拉起警戒线。")
    assert b.is_emergency and b.event_subtype == "爆炸"
    # and not without it: the sentence says nothing happened
    assert not assessor.assess_text("某化工园区一仓库爆炸品管理混乱。").is_emergency


def test_chemical_plant_explosion_with_twelve_deaths(assessor: Assessor) -> None:
    a = assessor.assess_text(
        "11月22日，安徽省黄山市歙县经济开发区一化工厂车间发生爆炸事故，造成12人死亡、3人受伤。"
        "事故发生后，当地立即启动应急预案，组织力量开展救援，事故原因正在调查中。",
        title="黄山市歙县一化工厂发生爆炸事故",
    )
    assert (a.event_type, a.event_subtype) == ("事故灾难", "爆炸")
    assert a.severity == "重大" and a.casualties.deaths == 12
    assert a.topic == "公共安全" and a.department == "歙县应急管理局"


def test_a_bomb_attack_is_terrorism_a_gas_explosion_an_accident(assessor: Assessor) -> None:
    attack = assessor.assess_text("当地时间3日上午，某国首都一集市发生自杀式炸弹袭击，爆炸造成20人死亡、30多人受伤。")
    assert (attack.event_type, attack.event_subtype) == ("社会安全事件", "恐怖袭击")
    assert attack.topic == "政法"
    gas = assessor.assess_text("今天中午，某县一餐馆发生燃气爆炸，造成2人死亡、5人受伤，伤者已送医。")
    assert (gas.event_type, gas.event_subtype) == ("事故灾难", "爆炸")


def test_the_cause_is_the_event(assessor: Assessor) -> None:
    crash = assessor.assess_text("今天凌晨，高速公路上6车追尾引发大火，事故造成3人死亡。")
    assert crash.event_subtype == "交通事故"
    quake = assessor.assess_text("今天下午，某县发生5.1级地震，多处房屋倒塌，倒塌房屋30间，暂无人员伤亡报告。")
    assert quake.event_subtype == "地震"


def test_event_absorbs_must_name_another_subtype(tmp_path: Path) -> None:
    d = _config_copy(tmp_path)
    f = d / "taxonomy.yaml"
    _edit(f, "          absorbs: [坍塌, 地质灾害]", "          absorbs: [坍塌, 山崩]")
    with pytest.raises(ConfigError) as ei:
        Assessor(settings_for(d, tmp_path), use_model=False)
    assert "absorbs '山崩'" in str(ei.value)


def test_citizen_questions_to_an_office_are_relevant(assessor: Assessor) -> None:
    a = assessor.assess_text("尊敬的厅长：去年考的职业资格证书到现在还没有发放，请问什么时候能拿到？")
    assert a.relevant and a.topic == "劳动和社会保障"


@pytest.mark.parametrize(
    ("title", "text", "needs"),
    [
        ("合肥市政府召开常务会议 研究部署冬季安全生产", "市政府召开常务会议，研究部署冬季安全生产、保供稳价等工作。", False),
        ("安徽省前三季度经济运行情况发布", "全省地区生产总值同比增长5.8%。", False),
        ("歙县乡村道路提升改造工程全面完工", "近日，歙县乡村道路提升改造工程全面完工，群众出行更加便利。", False),
        # the same kinds of title, but the text asks, complains or doubts
        ("合肥市政府召开常务会议", "会议部署了供暖工作，可我们小区至今没有供暖，怎么办？", True),
        ("歙县乡村道路工程全面完工", "网友反映刚完工的道路已经开裂，质疑工程质量。", True),
        ("市政府召开专题会议", "会议研究某小区停水问题", True),
        # no work-report word in the title: a complaint as usual
        ("小区停水三天无人管", "我们小区已经停水三天了。", True),
        # an emergency always needs a response
        ("市政府召开会议部署化工厂爆炸事故救援", "蜀山区一化工厂发生爆炸，已造成3人死亡。", True),
    ],
)
def test_work_reports_that_ask_for_nothing_need_no_response(assessor: Assessor, title: str, text: str,
                                                             needs: bool) -> None:
    a = assessor.assess_text(text, title=title)
    assert a.relevant and a.needs_response is needs, a.handling_reason
    if needs:
        assert a.handling_type is not None
    else:
        assert a.handling_type is None and a.handling_reason.startswith("政务动态") and "无需回应" in a.handling_reason


# ---------------------------------------------------------------- the model and the rules together


class TableModel:
    """A topic model that gives the same probabilities to every text."""

    version = "table-1"

    def __init__(self, probs: dict[str, float]):
        self.probs = probs

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [dict(self.probs) for _ in texts]


SEVEN = ["城乡建设", "环境保护", "交通运输", "教育文体", "劳动和社会保障", "商贸旅游", "卫生计生"]


def table(best: str, p: float) -> dict[str, float]:
    rest = (1 - p) / (len(SEVEN) - 1)
    return {t: (p if t == best else rest) for t in SEVEN}


LEAK = ("F市F2区一化工厂，27号下午3点左右在转移原料时发生泄漏，三公里内的居民区都是刺鼻的化学气味，"
        "工厂照样生产，环保部门管不管？")


def test_an_emergency_without_casualties_keeps_a_confident_model_topic(tmp_path: Path) -> None:
    a = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=TableModel(table("环境保护", 0.8)))
    got = a.assess_text(LEAK)
    assert got.is_emergency and got.event_subtype == "危化品泄漏"
    assert got.topic == "环境保护"
    assert "未述及人员伤亡" in got.topic_reason and "环境保护" in got.topic_reason
    # with casualties the event decides the topic
    hurt = a.assess_text(LEAK.replace("三公里内", "造成2人死亡，三公里内"))
    assert hurt.is_emergency and hurt.topic == "公共安全"
    # and so it does for a report about the event: its title names it
    titled = a.assess_text(LEAK, title="F2区一化工厂发生泄漏")
    assert titled.is_emergency and titled.topic == "公共安全"
    # and an unsure model does not keep it either
    unsure = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=TableModel(table("环境保护", 0.45)))
    assert unsure.assess_text(LEAK).topic == "公共安全"


def test_an_unsure_model_is_helped_by_the_keywords(tmp_path: Path) -> None:
    probs = {t: 0.076 for t in SEVEN}
    probs.update({"城乡建设": 0.32, "环境保护": 0.30})
    a = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=TableModel(probs))
    got = a.assess_text("楼下饭店油烟污染严重，还有噪音扰民，希望有关部门处理。")
    assert got.topic == "环境保护"
    assert "把握不足" in got.topic_reason and "关键词" in got.topic_reason
    # no keyword at all: the model's best stands when it is not too weak
    assert a.assess_text("请问这个事情到底归哪个部门管？我打了好几次电话了。").topic == "城乡建设"


def test_a_topic_outside_the_model_needs_strong_keywords(tmp_path: Path) -> None:
    a = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=TableModel(table("商贸旅游", 0.45)))
    # one 低保 hit: the model's label
    assert a.assess_text("我想问一下低保怎么申请，需要什么材料？").topic == "商贸旅游"
    # two different 民政 words: the rules' topic outside the model's labels
    strong = a.assess_text("我想问一下低保和临时救助怎么申请，需要什么材料？")
    assert strong.topic == "民政" and "不在模型table-1的类别内" in strong.topic_reason
    sure = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=TableModel(table("商贸旅游", 0.8)))
    assert sure.assess_text("我想问一下低保和临时救助怎么申请，需要什么材料？").topic == "商贸旅游"


def test_a_contested_topic_outside_the_model_yields_sooner(tmp_path: Path) -> None:
    a = Assessor(settings_for(ROOT / "config", tmp_path), topic_model=TableModel(table("商贸旅游", 0.6)))
    # nothing in the keywords for 商贸旅游: the rules' 民政 stands below 0.7
    assert a.assess_text("我想问一下低保和临时救助怎么申请，需要什么材料？").topic == "民政"
    # the keywords also point to 商贸旅游 (超市): the model wins from 0.5
    got = a.assess_text("我在超市打工，想问一下低保和临时救助怎么申请，需要什么材料？")
    assert got.topic == "商贸旅游"
