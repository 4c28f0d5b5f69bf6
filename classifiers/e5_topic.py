"""Topic from the pre-trained e5 encoder (:mod:`classifiers.e5_convert`),
fine-tuned on the labelled citizen messages.

The encoder is mean-pooled over its tokens (as e5 was trained) and a linear
layer on top gives the topic; the whole network is fine-tuned with AdamW,
linear warm-up and decay, bf16 autocast on a GPU. The text is the message's
title and body with e5's ``passage: `` prefix, cut to ``max_length`` tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.topic_model import HFTopicModel


@dataclass
class E5TopicConfig:
    max_length: int = 256
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    epochs: int = 8
    warmup: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1
    seed: int = 13


def _torch():
    import torch

    return torch


class E5Classifier(_torch().nn.Module):  # type: ignore[misc]
    """Encoder + mean pooling + dropout + linear."""

    def __init__(self, encoder: Any, n_labels: int, dropout: float) -> None:
        torch = _torch()
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def _encode(tok: Any, texts: Sequence[str], max_length: int) -> dict[str, Any]:
    return tok(["passage: " + t for t in texts], padding=True, truncation=True, max_length=max_length,
               return_tensors="pt")


def finetune(encoder_dir: Path | str, texts: Sequence[str], y: Sequence[int], n_labels: int,
             cfg: E5TopicConfig, device: str | None = None) -> tuple[E5Classifier, Any, dict[str, object]]:
    """Fine-tune the encoder in ``encoder_dir`` on ``texts`` / label ids ``y``."""
    torch = _torch()
    from transformers import AutoModel, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(encoder_dir)
    model = E5Classifier(AutoModel.from_pretrained(encoder_dir), n_labels, cfg.dropout).to(device)
    enc = _encode(tok, texts, cfg.max_length)
    labels = torch.tensor(list(y), dtype=torch.long)
    n = len(texts)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup))
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    enc_params = list(model.encoder.named_parameters())
    groups = [
        {"params": [p for k, p in enc_params if not k.endswith(no_decay)], "weight_decay": cfg.weight_decay,
         "lr": cfg.learning_rate},
        {"params": [p for k, p in enc_params if k.endswith(no_decay)], "weight_decay": 0.0, "lr": cfg.learning_rate},
        {"params": list(model.head.parameters()), "weight_decay": 0.0, "lr": cfg.head_learning_rate},
    ]
    opt = torch.optim.AdamW(groups)
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(cfg.seed)
    use_bf16 = device.startswith("cuda")
    step = 0
    t0 = time.monotonic()
    model.train()
    for _epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            mask = enc["attention_mask"][idx]
            width = int(mask.sum(1).max())
            ids = enc["input_ids"][idx][:, :width].to(device)
            mask = mask[:, :width].to(device)
            scale = step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))
            for g, b in zip(opt.param_groups, base, strict=True):
                g["lr"] = b * scale
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(ids, mask)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
    info = {"config": asdict(cfg), "steps": step, "seconds": round(time.monotonic() - t0, 1), "device": device}
    return model, tok, info


def predict_proba(model: E5Classifier, tok: Any, texts: Sequence[str], max_length: int = 256,
                  batch_size: int = 64) -> np.ndarray:
    """Class probabilities for ``texts``."""
    torch = _torch()
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = _encode(tok, texts[i : i + batch_size], max_length)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            out.append(torch.softmax(logits.float(), -1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features))


# -- a model directory the Assessor loads ------------------------------------------

MARKER = "e5_topic.json"


def save(model: E5Classifier, tok: Any, labels: Sequence[str], cfg: E5TopicConfig, out_dir: Path | str,
         info: dict[str, object] | None = None) -> None:
    """Encoder + tokenizer (HuggingFace layout), the head, and ``e5_topic.json``
    naming the labels, pooling and prefix; :class:`E5TopicModel` loads it."""
    import json

    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out)
    tok.save_pretrained(out)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(out / "head.safetensors"))
    meta = {"labels": list(labels), "pooling": "mean", "prefix": "passage: ", "max_length": cfg.max_length,
            "config": asdict(cfg), **(info or {})}
    (out / MARKER).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")


class E5TopicModel(HFTopicModel):
    """A saved e5 topic model: :class:`~classifiers.topic_model.HFTopicModel`'s
    batching and interface (so it also serves in the ensemble with the TF-IDF
    model) over the mean-pooled encoder and its linear head."""

    def __init__(self, model_dir: Path | str, batch_size: int = 32, threads: int | None = None):
        import json

        torch = _torch()
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_dir = Path(model_dir)
        meta = json.loads((self.model_dir / MARKER).read_text(encoding="utf-8"))
        self.labels: list[str] = list(meta["labels"])
        self.max_length = int(meta.get("max_length", 256))
        self.prefix = str(meta.get("prefix", "passage: "))
        self.batch_size = max(1, batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.model = E5Classifier(AutoModel.from_pretrained(str(self.model_dir)), len(self.labels), 0.0)
        self.model.head.load_state_dict(load_file(str(self.model_dir / "head.safetensors")))
        self.model.eval()
        self.version = f"e5:{self.model_dir.name}"

    def _logits(self, enc: Any) -> Any:
        return self.model(enc["input_ids"], enc["attention_mask"])
