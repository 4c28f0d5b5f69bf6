"""The assessment of one post: relevance, focus, topic → department, event
type, casualties, severity, place, responders, handling type.

:class:`Assessor` loads every rule file once (gazetteer + regions.yaml,
taxonomy.yaml, severity.yaml, responders.yaml) and is then safe to share
between threads (it keeps no per-call state).

Rules are the first assessor (``model_version`` "rules-1"). A trained topic
model plugs in through :class:`TopicModel`: pass one to ``Assessor(...,
topic_model=...)``, or set ``classifier.model_dir`` to a HuggingFace
sequence-classification model whose labels are topic names; with
``model_dir`` empty the committed model in ``classifiers/model/`` is used when
present ("none" or ``use_model=False``: rules only). The model then decides
among its labels when it is confident (``min_confidence``); when it is unsure
its probabilities and the rules' keyword shares decide together (see
:meth:`Assessor._topic`); a topic outside its labels stays when the rules find
it clearly and the model is not sure. An emergency files under its event's
topic, except one without casualties and not named in the title that a
confident model files elsewhere (``emergency_topic_confidence``: a leak
reported in a pollution complaint).
Relevance, emergencies, departments, places, severity and responders stay
rule-based and explained.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from classifiers.casualties import CasualtyResult, extract_casualties
from classifiers.hanzi import to_simplified
from classifiers.places import Gazetteer, PlaceResolution
from classifiers.responders import ResponderRules, check_departments
from classifiers.severity import SeverityRules
from classifiers.taxonomy import EventResult, LabelScores, Taxonomy, TopicResult, normalise
from classifiers.topic_model import TopicModel, load_topic_model
from stream.contracts import Assessment, Engagement, RawPost
from yuqing.settings import Settings

log = logging.getLogger("yuqing.classifier")


class Assessor:
    """Assess posts with the deployment's rules (and an optional topic model)."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic_model: TopicModel | None = None,
        gazetteer: Gazetteer | None = None,
        min_confidence: float = 0.4,
        other_topic_confidence: float = 0.7,
        contested_confidence: float = 0.5,
        other_topic_min_score: float = 2.0,
        no_rule_topic_confidence: float = 0.3,
        emergency_topic_confidence: float = 0.5,
        rule_weight: float = 0.1,
        use_model: bool = True,
    ):
        self.settings = settings
        self.gazetteer = gazetteer or Gazetteer.load(settings.config_path("regions.yaml"))
        self.taxonomy = Taxonomy.load(settings.config_path("taxonomy.yaml"))
        self.severity = SeverityRules.load(settings.config_path("severity.yaml"))
        self.responders = ResponderRules.load(settings.config_path("responders.yaml"), self.gazetteer)
        check_departments(settings.config_path("taxonomy.yaml"), self.responders)
        if topic_model is not None:
            self.topic_model: TopicModel | None = topic_model
        else:
            self.topic_model = load_topic_model(settings) if use_model else None
        self.min_confidence = min_confidence
        self.other_topic_confidence = other_topic_confidence
        self.contested_confidence = contested_confidence
        self.other_topic_min_score = other_topic_min_score
        self.no_rule_topic_confidence = no_rule_topic_confidence
        self.emergency_topic_confidence = emergency_topic_confidence
        self.rule_weight = rule_weight

    @property
    def model_version(self) -> str:
        rules = self.taxonomy.model_version
        return f"{self.topic_model.version}+{rules}" if self.topic_model is not None else rules

    # -- entry points -------------------------------------------------------------

    def assess(self, post: RawPost) -> Assessment:
        return self.assess_batch([post])[0]

    def assess_batch(self, posts: Sequence[RawPost]) -> list[Assessment]:
        """Assess several posts; a topic model sees them in one batch."""
        return self.assess_texts([(p.title, p.text, p.source_region, p.engagement) for p in posts])

    def assess_text(
        self,
        text: str,
        *,
        title: str = "",
        source_region: str | None = None,
        engagement: Engagement | None = None,
    ) -> Assessment:
        """Assess free text."""
        return self.assess_texts([(title, text, source_region, engagement)])[0]

    def assess_texts(
        self, items: Sequence[tuple[str, str, str | None, Engagement | None]]
    ) -> list[Assessment]:
        """Assess (title, text, source_region, engagement) tuples; the topic model sees them in one batch.

        Traditional characters are read as simplified ones (see :mod:`classifiers.hanzi`).
        """
        items = [(to_simplified(t), to_simplified(x), r, e) for t, x, r, e in items]
        model_out: list[dict[str, float] | None] = [None] * len(items)
        if self.topic_model is not None and items:
            model_out = list(self.topic_model.predict([f"{t}\n{x}" if t else x for t, x, _, _ in items]))
        return [
            self._assess(t, x, r, e, model_scores=m) for (t, x, r, e), m in zip(items, model_out, strict=True)
        ]

    # -- the assessment ---------------------------------------------------------------

    def _topic(self, title: str, text: str, model_scores: dict[str, float] | None) -> TopicResult:
        """Rules first; the model decides among its own labels when confident.

        A rule topic outside the model's labels (公共安全, 民政, ...) stays when
        its keywords are strong enough (``other_topic_min_score``: two hits, or
        one in the title) and the model is not very sure
        (``other_topic_confidence``; only ``contested_confidence`` when the
        keywords also point to the model's label). Below ``min_confidence`` the model's
        probabilities plus ``rule_weight`` times the rules' share of keyword
        hits decide among the model's labels; when the rules find no topic the
        model's best still stands down to ``no_rule_topic_confidence``. The
        relevance decision keeps the rules' raw keyword scores either way.
        """
        rules = self.taxonomy.topic(title, text)
        if model_scores is None or self.topic_model is None:
            return rules
        known = {k: v for k, v in model_scores.items() if k in self.taxonomy.topic_names}
        if not known:
            return rules
        version = self.topic_model.version
        scores = normalise(known)
        best = max(scores, key=lambda k: scores[k])
        conf = scores[best]
        if rules.topic is not None and rules.topic not in known:
            strong = rules.scores.raw[rules.topic] >= self.other_topic_min_score
            # the keywords also for the model's label: a contest the model wins at a lower bar
            bar = self.contested_confidence if rules.scores.raw.get(best, 0.0) > 0 else self.other_topic_confidence
            if strong and conf < bar:
                rules.reason += (f"（{rules.topic}不在模型{version}的类别内，模型最高为{best} {conf:.2f}，"
                                 f"低于{bar}，按规则）")
                return rules
        how = f"模型{version}判定为{best}（置信度{conf:.2f}）"
        if rules.topic is None and conf < self.no_rule_topic_confidence:
            rules.reason += f"（模型{version}最高为{best} {conf:.2f}，低于{self.no_rule_topic_confidence}）"
            return rules
        if rules.topic is not None and conf < self.min_confidence:
            if rules.topic not in known:
                rules.reason += f"（模型{version}最高为{best} {conf:.2f}，低于{self.min_confidence}，按规则）"
                return rules
            # an unsure model: its probabilities plus the rules' share of the
            # keyword hits (weighted by rule_weight) decide among its labels
            total = rules.scores.total
            blend = {k: v + self.rule_weight * rules.scores.raw.get(k, 0.0) / total for k, v in scores.items()}
            best = max(blend, key=lambda k: blend[k])
            conf = scores[best]
            how = (f"模型{version}把握不足（最高{max(scores.values()):.2f}，低于{self.min_confidence}），"
                   f"结合关键词判定为{best}（模型{conf:.2f}，关键词占比{rules.scores.raw.get(best, 0.0) / total:.2f}）")
        label_scores = LabelScores(scores, rules.scores.raw, rules.scores.words)
        dept, why = self.taxonomy.department_for(best, title, text)
        reason = f"{how}，主管部门{dept}{why}"
        if rules.topic == best:
            reason += f"，与规则一致（命中{rules.scores.quoted(best)}）"
        elif rules.topic:
            reason += f"（规则命中{rules.scores.quoted(rules.topic)}倾向{rules.topic}）"
        return TopicResult(best, dept, [], reason, label_scores, model_confidence=conf)

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
        casualties = loss_of_life or bool(c.injured)
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
                # An emergency without casualties, not named in the title, that
                # a confident topic model files elsewhere (a leak reported in a
                # pollution complaint) keeps the model's topic; its event
                # departments still respond.
                conf = topic.model_confidence
                keeps_topic = (not casualties and not event.headline and topic.topic is not None
                               and conf is not None and conf >= self.emergency_topic_confidence)
                if keeps_topic:
                    if topic.department and topic.department not in depts:
                        depts = [*depts, topic.department]
                    dept_reason = (f"；{dept_reason}（未述及人员伤亡，主题按模型置信度{conf:.2f}"
                                   f"不低于{self.emergency_topic_confidence}保留为{topic.topic}）")
                elif event.topic:
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
        no_response = tax.no_response_reason(title, text, is_emergency=is_emergency)

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
            handling_type=None if no_response else handling.name,
            handling_reason=no_response or handling.reason,
            needs_response=no_response is None,
            scores=scores,
            model_version=self.model_version,
        )
