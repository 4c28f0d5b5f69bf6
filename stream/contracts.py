"""Versioned JSON message contracts between the stages.

Every message on a topic is one JSON object with ``schema`` (the contract
name) and ``v`` (its version). :func:`encode` validates before a message is
sent and :func:`decode` validates on receipt, so a stage never acts on a
message it does not understand: it goes to the dead-letter topic with the
reason (see :mod:`stream.stage`).

Times are ISO 8601 with an offset. Producers write Asia/Shanghai; consumers
accept any offset. A naive time is rejected: a clock must never start from a
time whose zone was guessed.

Versioning: a change every reader of version ``v`` already accepts keeps
``v``. An optional field may be added to a version when it is written only
where it is set (``exclude_if``), so a reader of the previous release, which
forbids unknown fields, still takes every message that does not use it (e.g.
``RawPost.text_length``, only on a truncated post). Anything else is a new
version, and :func:`decode` accepts the old one until every producer has moved.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("time must carry a UTC offset (e.g. +08:00)")
    return dt


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]

SourceKind = Literal["news", "forum", "weibo", "comments", "gov_board", "official"]
Precision = Literal["second", "minute", "hour", "day", "unknown"]
Severity = Literal["特别重大", "重大", "较大", "一般"]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Engagement(_Contract):
    reposts: int | None = None
    comments: int | None = None
    likes: int | None = None
    views: int | None = None
    replies: int | None = None


class RawPost(_Contract):
    """A post as a crawler saw it. Topic: ``posts.raw``."""

    schema_: Literal["raw_post"] = Field("raw_post", alias="schema")
    v: Literal[1] = 1
    post_id: str = Field(min_length=1, max_length=80)
    source_id: str = Field(min_length=1)
    source_kind: SourceKind
    source_name: str = ""
    url: str = ""
    title: str = ""
    text: str
    author: str = ""
    published_at: AwareDatetime
    # How much of published_at the page really gave: a day-precision date
    # starts a clock at 00:00 and the ticket says so.
    published_precision: Precision = "minute"
    fetched_at: AwareDatetime
    # The source's own jurisdiction (6-digit division code), used when the
    # text names no place.
    source_region: str | None = None
    parent_id: str | None = None  # thread of a reply, original of a repost
    engagement: Engagement = Field(default_factory=Engagement)
    content_hash: str = ""
    # Set only when ``text`` was cut to the size limit (:func:`fit_text`): the
    # original length in characters. Written only when set (see Versioning).
    text_length: int | None = Field(None, ge=0, exclude_if=lambda v: v is None)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Place(_Contract):
    province: str | None = None
    city: str | None = None
    county: str | None = None
    code: str | None = None  # 6-digit division code of the most specific level
    level: Literal["province", "city", "county", "unknown"] = "unknown"
    reason: str = ""

    @property
    def label(self) -> str:
        parts = [p for p in (self.province, self.city, self.county) if p]
        # 北京市 / 北京市 / 东城区: drop the repeated municipality name
        out: list[str] = []
        for p in parts:
            if not out or out[-1] != p:
                out.append(p)
        return "".join(out) if out else "待定"


class Casualties(_Contract):
    deaths: int | None = None
    injured: int | None = None  # seriously injured (重伤)
    missing: int | None = None
    trapped: int | None = None
    loss_yuan: float | None = None


class Responder(_Contract):
    role: Literal["primary", "co", "coordinator", "leader"]
    name: str
    rule: str  # the jurisdiction rule that chose it, in Chinese


class Assessment(_Contract):
    relevant: bool
    relevance_reason: str = ""
    focus: str | None = None
    topic: str | None = None
    topic_reason: str = ""
    department: str | None = None
    event_type: str | None = None
    event_subtype: str | None = None
    casualties: Casualties = Field(default_factory=Casualties)
    severity: Severity = "一般"
    severity_reason: str = ""
    is_emergency: bool = False
    place: Place = Field(default_factory=Place)
    responders: list[Responder] = Field(default_factory=list)
    handling_type: str | None = None
    handling_reason: str = ""
    # False for a government's own work report that asks for nothing (政务动态):
    # kept, indexed and grouped, but its ticket is archived with no clock.
    needs_response: bool = True
    scores: dict[str, dict[str, float]] = Field(default_factory=dict)
    model_version: str = ""


class AssessedPost(_Contract):
    """A raw post plus its assessment. Topic: ``posts.assessed``."""

    schema_: Literal["assessed_post"] = Field("assessed_post", alias="schema")
    v: Literal[1] = 1
    post: RawPost
    assessment: Assessment
    assessed_at: AwareDatetime

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


TicketEventKind = Literal[
    "opened",
    "post_added",
    "acknowledged",
    "assigned",
    "milestone",
    "deadline_warning",
    "deadline_breached",
    "deadline_fired",
    "severity_changed",
    "t0_moved",
    "event_split",
    "closed",
    "reopened",
]


class TicketEvent(_Contract):
    """Something that happened to a ticket. Topic: ``tickets.events``."""

    schema_: Literal["ticket_event"] = Field("ticket_event", alias="schema")
    v: Literal[1] = 1
    event_key: str  # idempotency key: the same fact always has the same key
    ticket_id: int
    event_id: int
    kind: TicketEventKind
    at: AwareDatetime
    actor: str = "system"
    detail: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CrawlHealth(_Contract):
    """Health of one crawled source. Topic: ``crawl.health`` (sent by the crawler stage
    after each crawl, and when a source has gone dark; read by the responder,
    :mod:`responder.sources`)."""

    schema_: Literal["crawl_health"] = Field("crawl_health", alias="schema")
    v: Literal[1] = 1
    source_id: str = Field(min_length=1)
    source_name: str = ""
    # ok | failing (errors, not yet dark) | blocked (418/403/captcha) |
    # cookie_expired | dark (no successful crawl for longer than the threshold) | never
    state: Literal["ok", "failing", "blocked", "cookie_expired", "dark", "never"]
    checked_at: AwareDatetime
    last_success_at: AwareDatetime | None = None
    last_attempt_at: AwareDatetime | None = None
    newest_item_at: AwareDatetime | None = None
    lag_s: float | None = None  # seconds since the newest item seen
    dark_s: float | None = None  # seconds since the last successful crawl
    error_rate: float = 0.0  # failed pages / pages over the last crawls
    reason: str = ""
    alert: bool = False
    # Pages of the last crawl that no encoding decoded cleanly (refused, not sent on as
    # posts). Written only when there were any, so older readers take the rest.
    encoding_failed: int = Field(0, ge=0, exclude_if=lambda v: v == 0)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


CONTRACTS: dict[str, type[BaseModel]] = {
    "raw_post": RawPost,
    "assessed_post": AssessedPost,
    "ticket_event": TicketEvent,
}
CONTRACTS["crawl_health"] = CrawlHealth


class ContractError(ValueError):
    """A message that does not satisfy its contract; ``str()`` says why."""


def encode(msg: BaseModel) -> bytes:
    """Validate and serialise a contract message to UTF-8 JSON bytes."""
    if type(msg) not in CONTRACTS.values():
        raise ContractError(f"{type(msg).__name__} is not a stream contract")
    data = msg.model_dump_json(by_alias=True, exclude_none=False)
    # Re-validate what is sent: a model mutated after construction may no longer hold.
    try:
        type(msg).model_validate_json(data)
    except ValidationError as e:
        raise ContractError(_explain(e)) from None
    return data.encode("utf-8")


_ENVELOPE = frozenset({"schema_", "v"})


# A JSON escape of a UTF-16 surrogate: JSON lets "\\ud800" through alone, and a
# string holding it cannot be encoded again, so such a message is refused here.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode(data: bytes, expect: type[BaseModel] | None = None) -> BaseModel:
    """Parse and validate bytes from a topic; raise :class:`ContractError`."""
    msg = _decode(data, expect)
    if _SURROGATE_ESCAPE.search(data):
        try:
            msg.model_dump_json()
        except ValueError as e:  # PydanticSerializationError is a ValueError
            raise ContractError(f"not valid Unicode (a lone surrogate): {str(e)[:200]}") from None
    return msg


def _decode(data: bytes, expect: type[BaseModel] | None) -> BaseModel:
    if expect is not None:
        # The common case, parsed and validated in one pass by pydantic-core;
        # anything it does not accept as is (and a message that leaves out its
        # schema or version) goes the long way below, which says what is wrong.
        try:
            # Aliases only, as on the long path ("schema", never "schema_").
            msg = expect.model_validate_json(data, by_alias=True, by_name=False)
        except ValidationError:
            pass
        else:
            if _ENVELOPE <= msg.model_fields_set:
                return msg
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ContractError(f"not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise ContractError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        # json.loads recurses per nesting level: [[[[... must not take the stage down.
        raise ContractError("JSON nested too deep") from None
    if not isinstance(obj, dict):
        raise ContractError("not a JSON object")
    name = obj.get("schema")
    model = CONTRACTS.get(name) if isinstance(name, str) else None
    if model is None:
        raise ContractError(f"unknown schema {name!r}")
    if expect is not None and model is not expect:
        raise ContractError(f"expected schema {expect.model_fields['schema_'].default!r}, got {name!r}")
    version = obj.get("v")
    if version != 1:
        raise ContractError(f"unsupported version {version!r} of schema {name!r}")
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise ContractError(_explain(e)) from None
    except RecursionError:
        raise ContractError("nested too deep") from None


def _explain(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


# Room in an assessed message for everything but its post (the assessment's
# scores, responders and reasons take a few KiB): a post is cut to fit
# max_message_bytes less this, so its assessed message fits too.
ASSESSMENT_RESERVE_BYTES = 32_768


@dataclass(frozen=True)
class Fitted:
    post: RawPost
    truncated: bool


def fit_text(post: RawPost, max_chars: int, max_bytes: int | None = None) -> Fitted:
    """``post`` with its text cut to ``max_chars`` characters and, with ``max_bytes``,
    short enough that the encoded post takes at most that many bytes.

    A cut post records the original length in ``text_length`` (kept from an
    earlier cut). The text is cut at a character, never inside one. Other
    fields are left alone: a post still over ``max_bytes`` without any text
    stays over it, and the stage refuses to produce it.
    """
    text = post.text
    n = min(len(text), max_chars)
    if max_bytes is not None:
        empty = len(encode(post.model_copy(update={"text": "", "text_length": post.text_length or len(text)})))
        room = max_bytes - empty + 2  # the empty text's two quotes are counted in ``empty``
        if len(to_json(text[:n])) > room:
            # Largest prefix whose JSON form fits: binary search, each probe one Rust call.
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if len(to_json(text[:mid])) <= room:
                    lo = mid
                else:
                    hi = mid - 1
            n = lo
    if n >= len(text):
        return Fitted(post, False)
    original = post.text_length if post.text_length is not None else len(text)
    return Fitted(post.model_copy(update={"text": text[:n], "text_length": original}), True)


def make_post_id(source_id: str, native_id: str) -> str:
    """Stable post id from the source and the item's own id or canonical URL."""
    return hashlib.sha1(f"{source_id}|{native_id}".encode()).hexdigest()[:24]


def content_hash(title: str, text: str) -> str:
    return hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()
