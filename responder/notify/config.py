"""``config/notify.yaml``: channels, recipients, escalation chains, quiet hours.

Loaded with :func:`yuqing.configfile.load_model`, so a bad value names the
file, line and field. See the file itself for the format.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from yuqing.configfile import read_yaml, validate

if TYPE_CHECKING:
    from yuqing.settings import Settings

ChannelKind = Literal["dingtalk", "wecom", "feishu", "email", "webhook", "sms"]
Role = Literal["department", "office", "propaganda", "leader", "duty", "admin"]
ROLE_LABEL = {
    "department": "责任部门",
    "office": "本级政府办公厅（室）",
    "propaganda": "宣传部门",
    "leader": "政府主要负责同志",
    "duty": "值班室",
    "admin": "系统管理员",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


PLACEHOLDER = "CHANGE-ME"


def _no_placeholder(v: str | None, info: ValidationInfo) -> str | None:
    """The shipped example's CHANGE-ME values are refused once notifications are
    enabled: a robot URL left as the example would fail every delivery, silently, at 3 a.m."""
    if v and PLACEHOLDER in v and (info.context or {}).get("enabled", True):
        raise ValueError(f"still the example's {PLACEHOLDER} placeholder: put the real value here "
                         "(or set enabled: false)")
    return v


class ChannelSpec(_Model):
    kind: ChannelKind
    # Robots, webhook, SMS gateway: the URL messages are POSTed to.
    url: str | None = None
    # DingTalk / Feishu signing secret (加签); SMS gateway token (Bearer).
    secret: str | None = None
    # Messages per minute the far end accepts (DingTalk and WeCom robots: 20).
    rate_per_minute: int | None = Field(None, ge=1)
    timeout_s: float = Field(10.0, gt=0)
    # E-mail (smtplib).
    host: str | None = None
    port: int = Field(25, ge=1, le=65535)
    sender: str | None = None
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    # SMS gateway: signature (签名) put before the text.
    sms_sign: str = "舆情监测"

    _placeholders = field_validator("url", "secret", "password")(_no_placeholder)

    @model_validator(mode="after")
    def _needs(self) -> ChannelSpec:
        if self.kind == "email":
            if not self.host or not self.sender:
                raise ValueError("an email channel needs host and sender")
        elif not self.url:
            raise ValueError(f"a {self.kind} channel needs url")
        if self.kind in ("dingtalk", "wecom") and self.rate_per_minute is None:
            self.rate_per_minute = 20  # what the robots accept
        return self


class RecipientSpec(_Model):
    name: str = Field(min_length=1)
    role: Role
    # Division-code prefix of the jurisdiction ("34" 安徽省, "3401" 合肥市,
    # "340104" 蜀山区; a full code such as 340100 is read as its prefix).
    # Empty: the top level, which also receives items whose place is 待定.
    jurisdiction: str = ""
    # For role department: the departments this recipient answers for; empty = all.
    # A generic name (as in taxonomy.yaml: 住房和城乡建设局) covers that kind of
    # department anywhere in the jurisdiction (蜀山区住房和城乡建设局 under 3401);
    # a full name (蜀山区住房和城乡建设局) only itself. See responder.notify.router.
    departments: list[str] = Field(default_factory=list)
    channel: str
    # E-mail address or mobile number (email / sms channels; robots: optional @mobile).
    address: str | None = None

    _placeholders = field_validator("address")(_no_placeholder)

    @field_validator("jurisdiction")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip()
        if v and not v.isdigit():
            raise ValueError(f"jurisdiction {v!r} must be a division-code prefix such as 3401")
        while len(v) > 2 and v.endswith("00"):
            v = v[:-2]
        return v


class Step(_Model):
    role: Role
    # 0: the ticket's own government level; 1: one level up; ...
    up: int = Field(0, ge=0, le=3)
    severity_in: list[str] | None = None


class Escalation(_Model):
    opened: list[Step] = Field(default_factory=list)
    unacknowledged: list[Step] = Field(default_factory=list)
    deadline_warning: list[Step] = Field(default_factory=list)
    deadline_breached: list[Step] = Field(default_factory=list)
    acknowledged: list[Step] = Field(default_factory=list)
    milestone: list[Step] = Field(default_factory=list)
    # 督办 by hand from the ticket page (responder.casework.escalate); empty: the steps of
    # deadline_breached (a hand escalation reaches whoever a breach would).
    escalated: list[Step] = Field(default_factory=list)
    # Crawl health (responder.sources): a source dark/blocked, and back to normal.
    source_alert: list[Step] = Field(default_factory=list)
    source_recovered: list[Step] = Field(default_factory=list)


class QuietHours(_Model):
    start: time
    end: time
    # Notice kinds that wait for the end of quiet hours (informational ones).
    # Deadline warnings and breaches are statutory and can never be listed;
    # every notice of a ticket without a statutory clock (rule none) waits too.
    applies_to: list[str] = Field(default_factory=lambda: ["acknowledged", "milestone"])

    @field_validator("applies_to")
    @classmethod
    def _not_statutory(cls, v: list[str]) -> list[str]:
        bad = [k for k in v if k.startswith("deadline_")]
        if bad:
            raise ValueError(f"{', '.join(bad)} is statutory: night or weekend muting never applies to it")
        return v


class Reminders(_Model):
    interval_minutes: float = Field(15, gt=0)
    max_reminders: int = Field(8, ge=0)


class Retry(_Model):
    backoff_s: list[float] = Field(default_factory=lambda: [10, 60, 300, 900], min_length=1)

    @property
    def attempts(self) -> int:
        return len(self.backoff_s) + 1


class NotifyConfig(_Model):
    enabled: bool = True
    # Ticket links: "{base_url}/tickets/{id}"; empty = settings.web.base_url.
    base_url: str = ""
    channels: dict[str, ChannelSpec] = Field(default_factory=dict)
    recipients: list[RecipientSpec] = Field(default_factory=list)
    escalation: Escalation = Field(default_factory=Escalation)
    quiet_hours: QuietHours | None = None
    unacknowledged: Reminders = Field(default_factory=Reminders)
    retry: Retry = Field(default_factory=Retry)
    # A claimed delivery whose process died is taken over after this long.
    claim_lease_s: float = Field(60, gt=0)
    # The config dir it was read from: department names are read back to their
    # kind with that dir's responders.yaml and regions.yaml.
    _config_dir: Path | None = PrivateAttr(default=None)

    @property
    def config_dir(self) -> Path | None:
        return self._config_dir

    @model_validator(mode="after")
    def _channels_known(self) -> NotifyConfig:
        names = set()
        for i, r in enumerate(self.recipients):
            if r.channel not in self.channels:
                raise ValueError(
                    f"recipients.{i} ({r.name}): unknown channel {r.channel!r} "
                    f"(known: {', '.join(self.channels) or 'none'})"
                )
            kind = self.channels[r.channel].kind
            if kind in ("email", "sms") and not r.address:
                raise ValueError(f"recipients.{i} ({r.name}): a {kind} channel needs address")
            if r.name in names:
                raise ValueError(f"recipients.{i}: recipient {r.name!r} is listed twice")
            names.add(r.name)
        return self


def load_notify(config_dir: Path | str, filename: str = "notify.yaml") -> NotifyConfig | None:
    """The notification config, or None when the file does not exist."""
    p = Path(config_dir) / filename
    if not p.exists():
        return None
    data, lines = read_yaml(p)
    enabled = not (isinstance(data, dict) and data.get("enabled") is False)
    cfg = validate(p, data, lines, NotifyConfig, context={"enabled": enabled})
    cfg._config_dir = Path(config_dir)
    return cfg


def load_notify_config(settings: Settings) -> NotifyConfig | None:
    """Start-up check hook (``yuqing.checks``)."""
    return load_notify(settings.config_dir)
