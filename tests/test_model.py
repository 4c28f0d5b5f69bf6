"""The trained topic model: the committed one in classifiers/model/, and a tiny
one trained here in seconds that must survive save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifiers.assess import DEFAULT_MODEL_DIR, Assessor, EnsembleTopicModel, HFTopicModel, load_model_dir
from classifiers.train import (
    ENSEMBLE_FILE,
    SPECIAL_TOKENS,
    TOPICS,
    TfidfTopicModel,
    TrainConfig,
    bert_predict,
    build_vocab,
    finetune,
    fit_tfidf,
    make_tokenizer,
    save_tfidf,
)
from yuqing.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

CLEAR = {
    "劳动和社会保障": "我在公司工作五年，老板一直不给我们交社保和养老保险，还拖欠了三个月工资，劳动合同也不签，请人社局帮忙维权。",
    "教育文体": "我们学校的老师上课体罚学生，还强制学生参加收费补课，孩子不敢去上学，希望教育局管管这所中学。",
    "城乡建设": "我们小区的物业不作为，电梯经常坏，开发商交房延期，房产证至今办不下来，小区业主强烈要求住建局处理。",
}

needs_model = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="no committed model")


@pytest.fixture(scope="module")
def committed():
    return load_model_dir(DEFAULT_MODEL_DIR)


@needs_model
def test_committed_model_is_small_and_labelled_with_topic_names(committed) -> None:
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir() if p.is_file())
    assert size <= 25 * 1024 * 1024
    labels = committed.labels
    assert sorted(labels) == sorted(TOPICS)
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()


@needs_model
def test_committed_model_predicts_clear_messages(committed) -> None:
    out = committed.predict(list(CLEAR.values()))
    for (want, _), probs in zip(CLEAR.items(), out, strict=True):
        assert max(probs, key=lambda k: probs[k]) == want, probs
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


@needs_model
def test_committed_model_handles_empty_and_huge_text(committed) -> None:
    out = committed.predict(["", "学校" * 50000])
    assert len(out) == 2
    assert all(sum(p.values()) == pytest.approx(1.0, abs=1e-5) for p in out)


@needs_model
def test_assessor_with_committed_model(tmp_path: Path, committed) -> None:
    s = Settings(data_dir=str(tmp_path), config_dir=ROOT / "config")
    a = Assessor(s, topic_model=committed)  # the same object the default loader builds
    got = a.assess_text(CLEAR["劳动和社会保障"])
    assert got.topic == "劳动和社会保障"
    assert "模型" in got.topic_reason
    # a topic outside the model's seven stays with the rules
    welfare = a.assess_text("我母亲今年78岁，想申请低保和高龄补贴，民政部门一直不给办理救助")
    assert welfare.topic == "民政"
    # irrelevant chatter stays irrelevant: the model does not make it 政务
    chat = a.assess_text("今天天气真好，去吃了火锅，推荐大家来。")
    assert chat.relevant is False


@needs_model
def test_default_loader_and_rules_only_switch(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path), config_dir=ROOT / "config")
    assert s.classifier.model_dir == ""
    a = Assessor(s)
    assert a.topic_model is not None
    assert a.model_version.endswith("+rules-1") and a.model_version != "rules-1"
    s.classifier.model_dir = "none"
    assert Assessor(s).model_version == "rules-1"


# -- a tiny model trained here -------------------------------------------------------

FIXTURE = [
    ("小区物业乱收费，开发商延期交房", "城乡建设"),
    ("小区电梯坏了物业不修，业主投诉", "城乡建设"),
    ("楼盘违建，房屋质量差，住建局不管", "城乡建设"),
    ("小区停水停电，物业服务差", "城乡建设"),
    ("工厂排放废水污染河流，空气恶臭", "环境保护"),
    ("化工厂污染严重，噪音扰民", "环境保护"),
    ("河道垃圾成堆，水质发黑发臭", "环境保护"),
    ("砖厂烟尘污染，环保局请查处", "环境保护"),
]


def test_tiny_model_round_trips_through_save_and_load(tmp_path: Path) -> None:
    texts = [t for t, _ in FIXTURE]
    labels = [lab for _, lab in FIXTURE]
    names = ["城乡建设", "环境保护"]
    vocab = build_vocab(texts, cap=500, extra_chars=list("的是了在"))
    assert vocab[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert len(vocab) == len(set(vocab)) and "污" in vocab and "的" in vocab
    cfg = TrainConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=32,
                      batch_size=4, learning_rate=3e-3, epochs=25, finetune_minutes=1.0, seed=1, threads=1)
    tok = make_tokenizer(vocab, tmp_path, cfg.max_length)
    assert tok.tokenize("小区ab污染") == ["小", "区", "a", "##b", "污", "染"]
    model = finetune(cfg, tok, texts, labels, names)
    before = bert_predict(model, tok, texts, cfg.max_length)
    assert (before.argmax(1) == [names.index(x) for x in labels]).mean() >= 0.75  # it learned something
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    loaded = HFTopicModel(tmp_path)
    assert loaded.labels == names
    after = loaded.proba(texts)
    np.testing.assert_allclose(after, before, atol=1e-5)

    # the TF-IDF part, stored without pickle, and the ensemble the loader builds from both
    vec, clf = fit_tfidf(texts, labels, names)
    save_tfidf(vec, clf, names, tmp_path)
    tf = TfidfTopicModel(tmp_path)
    np.testing.assert_allclose(tf.proba(texts), clf.predict_proba(vec.transform(texts)), atol=1e-5)
    assert isinstance(load_model_dir(tmp_path), HFTopicModel)  # no ensemble.json: BERT alone
    (tmp_path / ENSEMBLE_FILE).write_text(json.dumps({"use_ensemble": True, "bert_weight": 0.5}), encoding="utf-8")
    ens = load_model_dir(tmp_path)
    assert isinstance(ens, EnsembleTopicModel)
    p = ens.predict(["化工厂排放废水污染"])[0]
    want = 0.5 * loaded.predict(["化工厂排放废水污染"])[0]["环境保护"] + 0.5 * tf.predict(["化工厂排放废水污染"])[0]["环境保护"]
    assert p["环境保护"] == pytest.approx(want, abs=1e-6)
