"""Topic models the Assessor can use: any HuggingFace sequence-classification
directory, the committed TF-IDF model, or their ensemble; and how
``classifier.model_dir`` picks one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from yuqing.configfile import ConfigError
from yuqing.settings import Settings


@runtime_checkable
class TopicModel(Protocol):
    """A topic classifier: per-label probabilities for each text."""

    version: str  # e.g. "bert-topic-2025-03"; goes into model_version

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]: ...


DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "model"
RULES_ONLY = {"none", "rules", "off", "-"}


class HFTopicModel:
    """A HuggingFace sequence-classification model whose labels are topic names.

    Texts are cut to a few times ``max_length`` characters before tokenising (a
    100k-character post costs no more than a short one) and run in length-sorted
    batches of ``batch_size`` so that little time goes into padding.
    """

    def __init__(self, model_dir: Path | str, max_length: int | None = None, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(self.model_dir))
        self.model.eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        limit = min(getattr(self.tokenizer, "model_max_length", 512) or 512, 512,
                    getattr(self.model.config, "max_position_embeddings", 512))
        self.max_length = min(max_length, limit) if max_length else limit
        self.batch_size = max(1, batch_size)
        self.version = f"hf:{self.model_dir.name}"

    def proba(self, texts: Sequence[str]):
        import numpy as np
        import torch

        cut = [self.prefix + t[: self.max_length * 4] for t in texts]
        order = sorted(range(len(cut)), key=lambda i: len(cut[i]))
        out = np.zeros((len(cut), len(self.labels)), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self.tokenizer([cut[i] for i in idx], truncation=True, max_length=self.max_length,
                                     padding=True, return_tensors="pt")
                out[idx] = torch.softmax(self._logits(enc), dim=-1).double().numpy()
        return out

    prefix = ""  # put before every text (e5 models: "passage: ")

    def _logits(self, enc):
        return self.model(**enc).logits

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        return [{label: float(p[i]) for i, label in enumerate(self.labels)} for p in self.proba(texts)]


class EnsembleTopicModel:
    """The average of the BERT model's and the TF-IDF model's probabilities."""

    def __init__(self, bert: HFTopicModel, tfidf, bert_weight: float = 0.5):
        self.bert = bert
        self.tfidf = tfidf
        self.w = bert_weight
        self.labels = bert.labels
        self.version = f"ens:{bert.model_dir.name}"
        if sorted(tfidf.labels) != sorted(bert.labels):
            raise ValueError("TF-IDF 与 BERT 模型的标签不一致")
        self._perm = [tfidf.labels.index(label) for label in bert.labels]

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        p = self.w * self.bert.proba(texts) + (1 - self.w) * self.tfidf.proba([t[:20000] for t in texts])[:, self._perm]
        return [{label: float(row[i]) for i, label in enumerate(self.labels)} for row in p]


def load_model_dir(path: Path, batch_size: int = 32) -> TopicModel:
    """A HuggingFace model directory; with the TF-IDF part and ``ensemble.json``
    saying so (``mode``: bert / tfidf / ensemble, see :mod:`classifiers.train`),
    the TF-IDF model alone or the ensemble of both."""
    import json

    ens = path / "ensemble.json"
    cfg = json.loads(ens.read_text(encoding="utf-8")) if ens.is_file() else {}
    mode = cfg.get("mode") or ("ensemble" if cfg.get("use_ensemble") else "bert")

    def encoder_model() -> HFTopicModel:
        # An e5 topic model (classifiers.e5_topic: mean pooling + linear head) or
        # any HuggingFace sequence-classification model.
        from classifiers.e5_topic import MARKER, E5TopicModel

        if (path / MARKER).is_file():
            return E5TopicModel(path, batch_size=batch_size)
        return HFTopicModel(path, batch_size=batch_size)

    if mode in ("ensemble", "tfidf") and (path / "tfidf.npz").is_file():
        from classifiers.linear_topic import TfidfTopicModel

        tfidf = TfidfTopicModel(path)
        if mode == "tfidf":
            return tfidf
        return EnsembleTopicModel(encoder_model(), tfidf, float(cfg.get("bert_weight", 0.5)))
    return encoder_model()


def load_topic_model(settings: Settings) -> TopicModel | None:
    """The model named by ``classifier.model_dir``; when that is empty, the
    committed model in ``classifiers/model/`` if present; "none"/"rules" → rules only."""
    model_dir = settings.classifier.model_dir.strip()
    if model_dir.lower() in RULES_ONLY:
        return None
    if not model_dir:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            return None
        return load_model_dir(DEFAULT_MODEL_DIR, settings.classifier.batch_size)
    path = Path(model_dir)
    if not path.is_absolute():
        path = settings.data_path(model_dir)
    if not (path / "config.json").is_file():
        raise ConfigError(
            settings.config_path("settings.yaml"),
            [(None, "classifier.model_dir", f"{path} is not a HuggingFace model directory (no config.json)")],
        )
    return load_model_dir(path, settings.classifier.batch_size)
