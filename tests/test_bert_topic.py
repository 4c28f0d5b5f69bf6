"""The pre-trainable character BERT (classifiers.bert_topic) on fixture text, on the CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from classifiers.bert_topic import corpus, encode, finetune, mlm_pretrain, predict, special_ids, windows
from classifiers.train import build_vocab, make_tokenizer


def test_windows_cut_long_texts_and_drop_short_ones() -> None:
    w = windows(["甲" * 600, "短", "乙" * 30], size=250, min_len=20)
    assert [len(x) for x in w] == [250, 250, 100, 30]


def test_corpus_keeps_held_out_texts_out(tmp_path: Path) -> None:
    gov = tmp_path / "gov_messages_tipdm2020"
    gov.mkdir()
    held = ("尊敬的领导：我们小区的电梯已经坏了三个月，物业一直不修，老人上下楼非常困难，"
            "多次打电话给物业公司都没有人回应，请相关部门帮忙解决。")
    with open(gov / "hot_messages_with_votes_附件3.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["留言主题", "留言详情"])
        w.writeheader()
        w.writerow({"留言主题": "", "留言详情": held + "（再次反映）"})  # a near duplicate of a held-out text
        w.writerow({"留言主题": "公交线路", "留言详情": "希望增开一条从火车站到大学城的公交线路，方便学生出行。"})
    wins, dropped = corpus(tmp_path, ["学校食堂的饭菜价格太贵，学生负担很重，希望教育局管一管。"], [held])
    assert dropped == 1
    assert not any("电梯已经坏了" in x for x in wins)
    assert any("大学城" in x for x in wins) and any("食堂" in x for x in wins)


def test_pretrain_finetune_predict_on_a_toy_task(tmp_path: Path) -> None:
    from transformers import BertConfig

    school = ["学校老师乱收补课费", "学生在学校食堂吃不饱", "教育局应该管管学校收费", "孩子上学的学校太远"]
    clinic = ["医院看病排队太久", "医生态度不好还乱开药", "卫生院的药价太贵", "医院收费不透明"]
    texts = school * 4 + clinic * 4
    y = [0] * 16 + [1] * 16
    vocab = build_vocab(texts, cap=200)
    tok = make_tokenizer(vocab, tmp_path / "tok", 32)
    sp = special_ids(vocab)
    ids = encode(tok, texts, 32)
    assert ids.shape == (32, 32) and ids.dtype == np.int16
    base = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=32, pad_token_id=sp["[PAD]"])
    state, summary = mlm_pretrain(BertConfig(**base), ids, sp, minutes=0.02, batch_size=8, lr=1e-3, device="cpu")
    assert summary["steps"] > 0 and summary["device"] == "cpu"
    assert any(k.startswith("embeddings.") for k in state)
    cls = BertConfig(**base, id2label={0: "教育文体", 1: "卫生计生"}, label2id={"教育文体": 0, "卫生计生": 1})
    model = finetune(cls, ids, y, sp["[PAD]"], encoder_state=state, epochs=30, lr=3e-3, batch_size=8,
                     minutes=1.0, device="cpu")
    p = predict(model, encode(tok, ["学校老师乱收补课费", "医院看病排队太久"], 32), sp["[PAD]"], device="cpu")
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert p[0].argmax() == 0 and p[1].argmax() == 1
