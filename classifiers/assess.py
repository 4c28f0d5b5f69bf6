"""The assessment of one post: relevance, focus, topic → department, event
type, casualties, severity, place, responders, handling type.

:class:`Assessor` loads every rule file once (gazetteer + regions.yaml,
taxonomy.yaml, severity.yaml, responders.yaml) and is then safe to share
between threads (it keeps no per-call state).

Rules are the first assessor (``model_version`` "rules-1"). A trained topic
model plugs in through :class:`TopicModel`: pass one to ``Assessor(...,
topic_model=...)`` (or set ``classifier.model_dir`` to a HuggingFace
sequence-classification model whose labels are topic names). The model then
decides the topic when it is confident (``min_confidence``); everything else
(departments, places, severity, responders) stays rule-based and explained.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from classifiers.casualties import CasualtyResult, extract_casualties
from classifiers.places import Gazetteer, PlaceResolution
from classifiers.responders import ResponderRules, check_departments
from classifiers.severity import SeverityRules
from classifiers.taxonomy import EventResult, LabelScores, Taxonomy, TopicResult, normalise
from stream.contracts import Assessment, Engagement, RawPost
from yuqing.configfile import ConfigError
from yuqing.settings import Settings

log = logging.getLogger("yuqing.classifier")


@runtime_checkable
class TopicModel(Protocol):
    """A topic classifier: per-label probabilities for each text."""

    version: str  # e.g. "bert-topic-2025-03"; goes into model_version

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]: ...


class HFTopicModel:
    """A HuggingFace sequence-classification model whose labels are topic names."""

    def __init__(self, model_dir: Path | str, max_length: int = 256):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(self.model_dir))
        self.model.eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.max_length = max_length
        self.version = f"hf:{self.model_dir.name}"

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        import torch

        if not texts:
            return []
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(self.model(**enc).logits, dim=-1)
        return [{label: float(p[i]) for i, label in enumerate(self.labels)} for p in probs]


def load_topic_model(settings: Settings) -> TopicModel | None:
    """The model named by ``classifier.model_dir``, or None for rules only."""
    model_dir = settings.classifier.model_dir.strip()
    if not model_dir:
        return None
    path = Path(model_dir)
    if not path.is_absolute():
        path = settings.data_path(model_dir)
    if not (path / "config.json").is_file():
        raise ConfigError(
            settings.config_path("settings.yaml"),
            [(None, "classifier.model_dir", f"{path} is not a HuggingFace model directory (no config.json)")],
        )
    return HFTopicModel(path)


class Assessor:
    """Assess posts with the deployment's rules (and an optional topic model)."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic_model: TopicModel | None = None,
        gazetteer: Gazetteer | None = None,
        min_confidence: float = 0.5,
    ):
        self.settings = settings
        self.gazetteer = gazetteer or Gazetteer.load(settings.config_path("regions.yaml"))
        self.taxonomy = Taxonomy.load(settings.config_path("taxonomy.yaml"))
        self.severity = SeverityRules.load(settings.config_path("severity.yaml"))
        self.responders = ResponderRules.load(settings.config_path("responders.yaml"), self.gazetteer)
        check_departments(settings.config_path("taxonomy.yaml"), self.responders)
        self.topic_model = topic_model if topic_model is not None else load_topic_model(settings)
        self.min_confidence = min_confidence

    @property
    def model_version(self) -> str:
        rules = self.taxonomy.model_version
        return f"{self.topic_model.version}+{rules}" if self.topic_model is not None else rules

    # -- entry points -------------------------------------------------------------

    def assess(self, post: RawPost) -> Assessment:
        return self.assess_batch([post])[0]

    def assess_batch(self, posts: Sequence[RawPost]) -> list[Assessment]:
        """Assess several posts; a topic model sees them in one batch."""
        model_out: list[dict[str, float] | None] = [None] * len(posts)
        if self.topic_model is not None and posts:
            model_out = list(self.topic_model.predict([f"{p.title}\n{p.text}" for p in posts]))
        return [
            self._assess(p.title, p.text, p.source_region, p.engagement, model_scores=m)
            for p, m in zip(posts, model_out, strict=True)
        ]

    def assess_text(
        self,
        text: str,
        *,
        title: str = "",
        source_region: str | None = None,
        engagement: Engagement | None = None,
    ) -> Assessment:
        """Assess free text (the batch CLI and evaluation scripts use this)."""
        model_scores = self.topic_model.predict([f"{title}\n{text}"])[0] if self.topic_model is not None else None
        return self._assess(title, text, source_region, engagement, model_scores=model_scores)

    # -- the assessment ---------------------------------------------------------------

    def _topic(self, title: str, text: str, model_scores: dict[str, float] | None) -> TopicResult:
        rules = self.taxonomy.topic(title, text)
        if model_scores is None:
            return rules
        known = {k: v for k, v in model_scores.items() if k in self.taxonomy.topic_names}
        if not known:
            return rules
        scores = normalise(known)
        best = max(scores, key=lambda k: scores[k])
        label_scores = LabelScores(scores, dict(known), rules.scores.words)
        if scores[best] < self.min_confidence:
            rules.reason += f"（模型{self.topic_model.version}最高为{best} {scores[best]:.2f}，低于{self.min_confidence}，按规则）"  # type: ignore[union-attr]
            return rules
        dept, why = self.taxonomy.department_for(best, title, text)
        reason = f"模型{self.topic_model.version}判定为{best}（置信度{scores[best]:.2f}），主管部门{dept}{why}"  # type: ignore[union-attr]
        return TopicResult(best, dept, [], reason, label_scores)

    def _assess(
        self,
        title: str,
        text: str,
        source_region: str | None,
        engagement: Engagement | None,
        *,
        model_scores: dict[str, float] | None = None,
    ) -> Assessment:
        tax = self.taxonomy
        full = f"{title}\n{text}" if title else text
        cas: CasualtyResult = extract_casualties(full)
        event: EventResult = tax.event(title, text)
        c = cas.casualties
        loss_of_life = bool(c.deaths or c.missing or c.trapped)
        is_emergency = event.subtype is not None or loss_of_life
        topic = self._topic(title, text, model_scores)
        gov = tax.government.score(title, text)
        irr = tax.irrelevant.score(title, text)
        focus_scores = tax.focus.score(title, text)
        place: PlaceResolution = self.gazetteer.resolve(full, source_region)

        # -- relevance
        rel_score = topic.scores.total + gov.total + sum(
            v for k, v in focus_scores.raw.items() if k != tax.cfg.focus.emergency
        )
        irr_score = irr.total
        if is_emergency:
            relevant = True
            what = event.reason if event.subtype else "正文称有人员伤亡"
            casualty_note = cas.describe()
            relevance_reason = f"突发事件：{what}" + (f"；{casualty_note}" if casualty_note else "")
        elif rel_score <= 0 or irr_score > rel_score:
            relevant = False
            kind = irr.top()
            what = f"{kind}内容（命中{irr.quoted(kind)}），" if kind else ""
            gov_words = "未命中政务相关词（主题、部门、重点类别）" if rel_score <= 0 else "政务相关词较少"
            relevance_reason = f"{what}{gov_words}，非政务舆情，归档不立单"
        else:
            relevant = True
            words = topic.scores.quoted(topic.topic) if topic.topic else gov.quoted("政务")
            relevance_reason = f"命中政务相关词{words or gov.quoted('政务')}，属政务舆情"
        rel_total = rel_score + irr_score + (10.0 if is_emergency else 0.0)
        relevance_scores = (
            {"relevant": round((rel_score + (10.0 if is_emergency else 0.0)) / rel_total, 6),
             "irrelevant": round(irr_score / rel_total, 6)}
            if rel_total > 0 else {"relevant": 0.0, "irrelevant": 1.0}
        )

        # -- severity (stated figures, statutory thresholds)
        sev = self.severity.assess(cas, event_type=event.event_type, is_emergency=is_emergency, engagement=engagement)

        scores: dict[str, dict[str, float]] = {
            "relevance": relevance_scores,
            "topic": topic.scores.scores,
            "event_type": event.type_scores.scores,
            "event_subtype": event.subtype_scores.scores,
        }
        if not relevant:
            scores["focus"] = focus_scores.scores
            return Assessment(
                relevant=False,
                relevance_reason=relevance_reason,
                topic=None,
                topic_reason=topic.reason,
                casualties=c,
                severity=sev.level,
                severity_reason=sev.reason,
                is_emergency=False,
                place=place.place,
                scores=scores,
                model_version=self.model_version,
            )

        # -- focus
        emergency_focus = tax.cfg.focus.emergency
        if is_emergency:
            focus = emergency_focus
            scores["focus"] = {k.name: (1.0 if k.name == focus else 0.0) for k in tax.cfg.focus.kinds}
        else:
            raw = {k: v for k, v in focus_scores.raw.items() if k != emergency_focus}
            raw[emergency_focus] = 0.0
            best = max(raw, key=lambda k: raw[k]) if any(raw.values()) else None
            focus = best or tax.cfg.focus.default
            scores["focus"] = normalise({k.name: raw.get(k.name, 0.0) for k in tax.cfg.focus.kinds})

        # -- departments: an emergency goes to its event departments and topic
        if is_emergency:
            depts = event.departments or tax.default_event_departments()
            if event.subtype:
                dept_reason = f"突发事件{event.event_type}（{event.subtype}），由{'、'.join(depts)}负责"
                if event.topic:
                    topic = TopicResult(event.topic, depts[0], depts[1:],
                                        f"{event.reason}，归入{event.topic}；{dept_reason}", topic.scores)
                    dept_reason = ""
                else:
                    dept_reason = "；" + dept_reason
            else:
                dept_reason = f"；有人员伤亡但未识别事件类型，由{'、'.join(depts)}负责"
        else:
            depts = ([topic.department] if topic.department else []) + topic.co_departments
            dept_reason = ""

        # -- responders
        province_policy = focus == "重大决策部署" and place.place.level == "province"
        responders = self.responders.assign(place, depts, sev.level, province_policy=province_policy)
        primary = next((r.name for r in responders if r.role == "primary"), None)
        department = primary if place.division is not None else (depts[0] if depts else None)

        handling = tax.handling(title, text, is_emergency=is_emergency)
        scores["handling"] = handling.scores.scores

        return Assessment(
            relevant=True,
            relevance_reason=relevance_reason,
            focus=focus,
            topic=topic.topic,
            topic_reason=topic.reason + dept_reason,
            department=department,
            event_type=event.event_type if is_emergency else None,
            event_subtype=event.subtype if is_emergency else None,
            casualties=c,
            severity=sev.level,
            severity_reason=sev.reason,
            is_emergency=is_emergency,
            place=place.place,
            responders=responders,
            handling_type=handling.name,
            handling_reason=handling.reason,
            scores=scores,
            model_version=self.model_version,
        )
