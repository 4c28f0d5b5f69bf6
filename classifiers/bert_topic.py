"""The character BERT of the topic model: pre-training corpus, masked-LM
pre-training and fine-tuning, on a GPU when there is one.

No pre-trained Chinese weights can be downloaded here, so the encoder learns
Chinese from the unlabelled text in ``../shared/data`` (citizen messages and
official replies, CCTV Weibo posts, CEC emergency reports, news headlines) —
about 5.5 million characters. On one H100 the preset :data:`GPU_PRESET`
(4 layers × 256, 256 tokens) runs ≈ 8,500 masked-LM steps of 256 windows in
250 s; the same on two CPU cores would take days, so the CPU preset stays
small (see ``classifiers.train.TrainConfig``).

Held-out texts (and near duplicates of them) are kept out of the pre-training
corpus, so the held-out figures stay honest.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifiers.weak_labels import drop_near_duplicates

log = logging.getLogger("yuqing.train")

# 4 layers × 256 hidden: what a GPU pre-trains well in a few minutes and what
# still fits the 25 MB model budget (fp16 weights ≈ 9.5 MB).
GPU_PRESET = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024,
              "max_length": 256, "mlm_minutes": 4.2, "mlm_batch_size": 256, "mlm_learning_rate": 6e-4,
              "learning_rate": 1e-4, "batch_size": 32, "epochs": 12, "finetune_minutes": 10.0}
WINDOW = 250  # characters per pre-training window (≈ max_length tokens)


def pretraining_texts(data_dir: Path, extra: Sequence[str] = ()) -> list[str]:
    """Unlabelled Chinese text from ``data_dir`` (those files that exist) plus ``extra``."""
    from classifiers.train import read_unlabelled

    out = list(read_unlabelled(data_dir)) + list(extra)
    cec = data_dir / "emergency_events_cec" / "raw_corpus"
    if cec.is_dir():
        for p in sorted(cec.rglob("*.txt")):
            out.append(p.read_text(encoding="utf-8", errors="ignore").strip())
    heads = data_dir / "news_headline_classification"
    thuc = heads / "thucnews_titles_5k.csv"
    if thuc.is_file():
        with open(thuc, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            cols = [c for c in reader.fieldnames or [] if "title" in c.lower() or "标题" in c] or (reader.fieldnames or [])[:1]
            out += [row[cols[0]] for row in reader if cols and row.get(cols[0])]
    tnews = heads / "tnews_clue_dev.jsonl"
    if tnews.is_file():
        for line in tnews.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line).get("sentence") or "")
    return [t for t in out if t.strip()]


def windows(texts: Sequence[str], size: int = WINDOW, max_chars: int = 4000, min_len: int = 20) -> list[str]:
    """Texts cut into windows of ``size`` characters (the first ``max_chars`` of each)."""
    out = []
    for t in texts:
        t = t.replace("\n", " ")
        for s in range(0, min(len(t), max_chars), size):
            w = t[s:s + size]
            if len(w) >= min_len:
                out.append(w)
    return out


def corpus(data_dir: Path, train_texts: Sequence[str], held_out: Sequence[str]) -> tuple[list[str], int]:
    """Pre-training windows, without held-out texts or their near duplicates; and how many were dropped."""
    texts = pretraining_texts(data_dir, train_texts)
    keep, dropped = drop_near_duplicates(texts, held_out)
    return windows([texts[i] for i in keep]), dropped


def _device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def encode(tok, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Token ids, padded to ``max_length`` (int16: the vocabulary is small)."""
    enc = tok(list(texts), truncation=True, max_length=max_length, padding="max_length")
    return np.asarray(enc["input_ids"], dtype=np.int16)


def special_ids(vocab: Sequence[str]) -> dict[str, int]:
    return {t: list(vocab).index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}


def mlm_pretrain(config, ids: np.ndarray, special: dict[str, int], *, minutes: float, batch_size: int, lr: float,
                 seed: int = 0, device: str = "auto") -> tuple[dict, dict]:
    """Masked-LM pre-training (15 %: 80 % [MASK], 10 % random, 10 % kept) for ``minutes``.

    ``ids``: pre-training windows as token ids (:func:`encode`). Returns the
    encoder's state dict and a summary (steps, seconds, last loss).
    """
    import torch
    from transformers import BertForMaskedLM

    dev = _device(device)
    torch.manual_seed(seed)
    x = torch.from_numpy(ids.astype(np.int64))
    pad, mask_id = special["[PAD]"], special["[MASK]"]
    fixed = torch.tensor([special[t] for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]")], device=dev)
    model = BertForMaskedLM(config).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm, planned = 300, max(1000, int(minutes * 60 * (34 if dev == "cuda" else 0.5)))
    start, step, loss = time.monotonic(), 0, None
    model.train()
    while time.monotonic() - start < minutes * 60:
        batch = x[torch.randint(0, len(x), (batch_size,))].to(dev)
        labels = batch.clone()
        chosen = (torch.rand(batch.shape, device=dev) < 0.15) & ~torch.isin(batch, fixed)
        labels[~chosen] = -100
        r = torch.rand(batch.shape, device=dev)
        inp = batch.clone()
        inp[chosen & (r < 0.8)] = mask_id
        rnd = chosen & (r >= 0.8) & (r < 0.9)
        inp[rnd] = torch.randint(5, config.vocab_size, (int(rnd.sum()),), device=dev)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warm) * max(0.05, 1 - step / planned)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            loss = model(input_ids=inp, attention_mask=(batch != pad).long(), labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 500 == 0:
            log.info("mlm step %d loss %.3f", step, float(loss.detach()))
    summary = {"steps": step, "seconds": round(time.monotonic() - start, 1), "device": dev,
               "windows": len(x), "last_loss": round(float(loss.detach()), 4) if loss is not None else None}
    log.info("mlm: %s", summary)
    state = {k: v.detach().cpu().clone() for k, v in model.bert.state_dict().items()}
    return state, summary


def finetune(config, ids: np.ndarray, y: Sequence[int], pad_id: int, *, encoder_state: dict | None,
             epochs: int, lr: float, batch_size: int, minutes: float, seed: int = 0,
             weights: Sequence[float] | None = None, device: str = "auto"):
    """Fine-tune a ``BertForSequenceClassification`` (``config`` carries the labels); returns it on the CPU."""
    import torch
    from transformers import BertForSequenceClassification

    dev = _device(device)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    if encoder_state is not None:
        model.bert.load_state_dict(encoder_state, strict=False)
    model.to(dev)
    x = torch.from_numpy(ids.astype(np.int64))
    yt = torch.tensor(list(y))
    wt = torch.tensor(list(weights) if weights is not None else [1.0] * len(yt), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n = len(yt)
    total = max(1, epochs * math.ceil(n / batch_size))
    step, start = 0, time.monotonic()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for b in range(0, n, batch_size):
            idx = perm[b:b + batch_size]
            batch = x[idx]
            width = int((batch != pad_id).sum(1).max())
            batch = batch[:, :width].to(dev)
            for grp in opt.param_groups:
                grp["lr"] = lr * min(1.0, (step + 1) / (0.1 * total)) * max(0.0, 1 - step / total)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                logits = model(input_ids=batch, attention_mask=(batch != pad_id).long()).logits.float()
            loss = (torch.nn.functional.cross_entropy(logits, yt[idx].to(dev), reduction="none")
                    * wt[idx].to(dev)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if time.monotonic() - start > minutes * 60:
            log.info("fine-tuning stopped by its time budget after %d steps", step)
            break
    model.eval()
    return model.to("cpu").float()


def predict(model, ids: np.ndarray, pad_id: int, batch_size: int = 128, device: str = "auto") -> np.ndarray:
    """Class probabilities for token ids (:func:`encode`)."""
    import torch

    dev = _device(device)
    model.to(dev).eval()
    x = torch.from_numpy(ids.astype(np.int64))
    out = []
    with torch.no_grad():
        for b in range(0, len(x), batch_size):
            batch = x[b:b + batch_size]
            width = int((batch != pad_id).sum(1).max())
            batch = batch[:, :width].to(dev)
            logits = model(input_ids=batch, attention_mask=(batch != pad_id).long()).logits.float()
            out.append(torch.softmax(logits, -1).cpu().numpy())
    model.to("cpu")
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels))
