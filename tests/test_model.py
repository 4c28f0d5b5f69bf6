"""The trained topic model: the committed one in classifiers/model/, and a tiny
one trained here in seconds that must survive save/load."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from classifiers.assess import Assessor
from classifiers.linear_topic import (
    VARIANTS,
    ExtraData,
    TfidfTopicModel,
    Variant,
    fit_scale,
    fit_variant,
    save_linear,
    softmax,
)
from classifiers.topic_model import DEFAULT_MODEL_DIR, EnsembleTopicModel, HFTopicModel, load_model_dir
from classifiers.train import (
    ENSEMBLE_FILE,
    SPECIAL_TOKENS,
    TOPICS,
    TrainConfig,
    bert_predict,
    build_vocab,
    finetune,
    fit_tfidf,
    make_tokenizer,
    save_tfidf,
    train_all,
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
def test_char_counts_are_sklearns_counts_exactly() -> None:
    """The vectorised n-gram counting gives sklearn's count matrix entry for entry,
    so the topic scores are the same floats (white-space runs, case folding that
    changes length, characters beyond the BMP, one-character and empty texts)."""
    import random

    from sklearn.feature_extraction.text import CountVectorizer

    model = TfidfTopicModel(DEFAULT_MODEL_DIR)
    assert model._keys is not None  # the committed model is a char 1-2-gram one
    rng = random.Random(2)
    texts = ["", " ", "物", "İstanbul  ÀB\n\n\t x", "\u3000\u3000全角　空格", "ﬁ ß Σ ΣΣ", "𠀀𠀁 😀😀", *CLEAR.values()]
    texts += ["".join(rng.choice("物业费 \n\tAbc，。！ＡＢ小区停车学校") for _ in range(rng.randint(0, 60))) for _ in range(300)]
    want = CountVectorizer.transform(model.vec, texts)
    got = model._char_counts(texts)
    assert np.array_equal(want.indptr, got.indptr) and np.array_equal(want.indices, got.indices)
    assert np.array_equal(want.data, got.data) and want.nnz > 1000
    sk = np.asarray(model.vec.transform(texts) @ model.coef.T) + model.intercept
    assert np.array_equal(model.decision(texts), sk)


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

    # the TF-IDF part, stored without pickle (binary logistic regression), and the ensemble built from both
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
    (tmp_path / ENSEMBLE_FILE).write_text(json.dumps({"mode": "tfidf"}), encoding="utf-8")
    assert isinstance(load_model_dir(tmp_path), TfidfTopicModel)


THREE = {
    "城乡建设": ["小区物业乱收费{}，开发商延期交房", "小区电梯坏了{}物业不修", "楼盘违建{}，住建局不管", "小区停水{}，物业服务差"],
    "环境保护": ["工厂排放废水{}污染河流", "化工厂污染{}严重，空气恶臭", "河道垃圾{}成堆发臭", "砖厂烟尘{}污染，请环保局查处"],
    "教育文体": ["学校{}强制补课收费", "老师{}体罚学生", "中学{}乱收资料费", "幼儿园{}招生不公平"],
}


def three_class(n: int = 3) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for lab, forms in THREE.items():
        for form in forms:
            for k in range(n):
                texts.append(form.format("，" + "甲乙丙丁戊己"[k] * (k + 1)))
                labels.append(lab)
    return texts, labels


def test_linear_variant_fits_saves_and_loads_with_a_fitted_scale(tmp_path: Path) -> None:
    texts, labels = three_class()
    names = list(THREE)
    y = [names.index(lab) for lab in labels]
    v = Variant("t", ngram=(1, 2), min_df=1, max_df=1.0, c=1.0)
    m = fit_variant(v, texts, y, names)
    d = m.decision(["工厂偷排废水，河流污染", "学校补课乱收费"])
    assert list(d.argmax(1)) == [1, 2]
    scale = fit_scale(m.decision(texts), y)
    assert scale > 0
    # messages of other topics (to be left unsure about) pull the fitted scale down
    other = m.decision(["今天天气真好，去吃了火锅", "派出所办户口太慢", "低保申请一直不批"])
    assert fit_scale(m.decision(texts), y, other) < scale
    # a larger scale makes the (training) texts' probabilities sharper, never changes the argmax
    assert (softmax(d, 5.0).max(1) > softmax(d, 1.0).max(1)).all()
    save_linear(m, names, tmp_path, scale, v)
    loaded = TfidfTopicModel(tmp_path)
    assert loaded.labels == names and loaded.scale == pytest.approx(scale, rel=1e-6)
    np.testing.assert_allclose(loaded.proba(["工厂偷排废水，河流污染"]),
                               softmax(d[:1], scale), atol=1e-5)
    assert loaded.proba([]).shape == (0, 3)
    out = loaded.predict(["", "学校" * 30000])
    assert all(sum(p.values()) == pytest.approx(1.0) for p in out)
    assert max(out[1], key=lambda k: out[1][k]) == "教育文体"


def test_weak_labels_are_used_and_near_duplicates_of_evaluated_texts_dropped() -> None:
    texts, labels = three_class(2)
    names = list(THREE)
    y = [names.index(lab) for lab in labels]
    extra = ExtraData(weak_texts=["垃圾焚烧厂烟气污染，空气恶臭", "学校食堂乱收费", "被评估的那条留言，完全一样"],
                      weak_labels=["环境保护", "教育文体", "城乡建设"],
                      unlabelled=["工厂排污，河水发黑", "被评估的那条留言完全一样！", "小区物业不作为"])
    exclude = ["被评估的那条留言 完全一样"]
    v = Variant("w", ngram=(1, 2), min_df=1, max_df=1.0, weak_weight=0.5, self_weight=0.5, self_margin=0.0)
    m = fit_variant(v, texts, y, names, extra, exclude=exclude)
    assert m.info["weak_used"] == 2 and m.info["weak_dropped_near_duplicates"] == 1
    assert m.info["unlabelled_dropped_near_duplicates"] == 1
    assert m.info["pseudo_labelled"] == 2
    assert "焚烧" in m.vec.vocabulary_  # type: ignore[attr-defined]
    plain = fit_variant(VARIANTS["svc_c13"], texts, y, names, extra, exclude=exclude)
    assert "weak_used" not in plain.info and "焚烧" not in plain.vec.vocabulary_  # type: ignore[attr-defined]


def test_train_all_on_a_tiny_corpus(tmp_path: Path) -> None:
    texts, labels = three_class(4)
    labelled = tmp_path / "labelled.csv"
    with open(labelled, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["split_in_source", "留言详情", "label_id", "一级分类"])
        for t, lab in zip(texts, labels, strict=True):
            w.writerow(["dev", t, 0, lab])
    gov = tmp_path / "data" / "gov_messages_tipdm2020"
    gov.mkdir(parents=True)
    with open(gov / "messages_with_official_replies_附件4_half.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["留言编号", "留言主题", "留言详情", "答复意见"])
        w.writerow(["1", "t", "学校收取高额补课费", "经A县教育局调查，已责令退费。"])
        w.writerow(["2", "t", "工厂夜间偷排废水", "A市生态环境局已立案查处。"])
        w.writerow(["3", "t", "派出所办事慢", "已转A市公安局处理。"])  # outside the seven: no weak label
    out = tmp_path / "model"
    cfg = TrainConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=32,
                      batch_size=8, epochs=2, finetune_minutes=0.2, seed=3, threads=1, holdout=0.25,
                      variants="svc_c12,svc_c13+weak", cv_folds=3)
    m = train_all(cfg, labelled, out, tmp_path / "data")
    assert set(m["linear_variants"]) == {"svc_c12", "svc_c13+weak"}
    assert m["extra_data"]["weak_labelled"] == 2
    for r in m["linear_variants"].values():
        assert 0 <= r["heldout"]["macro_f1"] <= 1 and 0 <= r["cv"]["macro_f1"] <= 1
        assert sum(map(sum, r["cv"]["confusion"])) == len(texts)
    assert m["linear_chosen"] in m["linear_variants"]
    assert m["fit_on"] == "all" and m["deployed_info"]["n_labelled"] == len(texts)
    for f in ("config.json", "model.safetensors", "tfidf.npz", "tfidf_vocab.json", "ensemble.json", "MODEL_CARD.md"):
        assert (out / f).is_file(), f
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert m["linear_chosen"] in card and "CV macro-F1" in card
    loaded = load_model_dir(out)
    assert sorted(loaded.labels) == sorted(THREE)
    probs = loaded.predict(["化工厂废水污染河流，空气恶臭"])[0]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(probs, key=lambda k: probs[k]) == "环境保护"
