"""System settings: ``config/settings.yaml``, overridable from the environment.

The config directory is ``yuqing --config DIR``, else ``$YUQING_CONFIG_DIR``,
else the project's own ``config/`` (next to this package, whatever the
current directory); a missing one is a :class:`ConfigError` that says how to
name it. Paths in settings are relative to ``data_dir``: ``$YUQING_DATA_DIR``
(a relative one from the current directory), else ``data_dir`` of
``settings.yaml``, a relative one counted from the directory that holds the
config directory (``var`` of the shipped config is the project's ``var/``).
Environment overrides exist for what differs between a laptop, a test and
production (transport, store URL, Kafka address); everything else is YAML.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from yuqing.configfile import ConfigError, load_model

# The project's own config/: the default wherever `yuqing` is started from.
PROJECT_DIR = Path(__file__).resolve().parents[1]
PROJECT_CONFIG_DIR = PROJECT_DIR / "config"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "localhost:9092"
    session_timeout_ms: int = Field(10000, ge=1000)
    request_timeout_ms: int = Field(30000, ge=1000)
    client_id: str = "yuqing"


class TransportSettings(_Section):
    kind: Literal["embedded", "kafka"] = "embedded"
    topic_prefix: str = "yuqing."
    embedded_path: str = "stream.db"
    # Embedded log retention (hours; 0 = forever). Unconsumed messages are kept regardless.
    embedded_retention_hours: float = Field(168.0, ge=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


class StoreSettings(_Section):
    # SQLAlchemy URL; relative sqlite paths are resolved against data_dir.
    url: str = "sqlite:///yuqing.db"


class SearchSettings(_Section):
    # embedded: in data_dir; elasticsearch: 8.x/9.x; opensearch: 2.x/3.x (opensearch-py).
    kind: Literal["embedded", "elasticsearch", "opensearch"] = "embedded"
    embedded_path: str = "search.db"
    # The search server (elasticsearch / opensearch); credentials go in the URL.
    # es_url / es_index are the names these had before OpenSearch: still read.
    url: str = Field("http://localhost:9200", validation_alias=AliasChoices("url", "es_url"))
    index: str = Field("yuqing-posts", validation_alias=AliasChoices("index", "es_index"))


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Public address used in notification links ("https://yuqing.example.gov.cn").
    # Empty: http://HOST:PORT of the two settings above (after YUQING_WEB_HOST /
    # YUQING_WEB_PORT), so the links follow the port the web listens on.
    base_url: str = ""
    # A request body over this many bytes gets 413 without the rest being read.
    max_body_bytes: int = Field(1024 * 1024, ge=1)


    @property
    def public_url(self) -> str:
        """Where users reach the console: ``base_url`` when set, else
        ``http://HOST:PORT`` (a wildcard host such as 0.0.0.0 → this machine)."""
        if self.base_url.strip():
            return self.base_url.strip().rstrip("/")
        host = self.host.strip()
        if host in ("", "0.0.0.0", "*"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal
        return f"http://{host}:{self.port}"


class DemoSiteSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=1, le=65535)
    # Seconds between new demo posts (the site publishes over time).
    publish_every_s: float = Field(20.0, gt=0)
    seed: int = 7


class ClassifierSettings(_Section):
    batch_size: int = Field(32, ge=1, le=1024)
    # Directory of a HuggingFace sequence-classification model (relative: under data_dir);
    # empty = the committed model in classifiers/model/; "none" or "rules" = rules only.
    model_dir: str = ""


class LimitsSettings(_Section):
    """What no message may exceed, so that no stage ever produces one the transport refuses."""

    # The largest message a stage produces (bytes, with its key and headers).
    # 1 MiB is Kafka's producer default (max.request.size) and about its
    # broker's message.max.bytes; more needs both raised, so it is the ceiling.
    max_message_bytes: int = Field(1_048_576, ge=65_536, le=1_048_576)
    # Post text longer than this (characters) is cut where it enters: the post
    # records its original length (text_length), the crawler keeps the full text.
    # 50,000 is a long report; assessing a text costs more than linear time in
    # its place names (seconds at this length), and a batch must stay well
    # inside Kafka's max.poll.interval (5 min).
    max_text_chars: int = Field(50_000, ge=1_000)
    # A message handed to a stage's handler this many times without success
    # (failures, or the process dying while handling it) goes to the dead-letter topic.
    max_attempts: int = Field(3, ge=1, le=100)

    @field_validator("max_text_chars")
    @classmethod
    def _text_fits(cls, v: int, info: ValidationInfo) -> int:
        limit = info.data.get("max_message_bytes")
        # 3 bytes per Chinese character in UTF-8, and 32 KiB for the rest of an assessed post.
        if isinstance(limit, int) and v * 3 + 32_768 > limit:
            raise ValueError(
                f"{v} characters take up to {v * 3} bytes; with 32 KiB for the rest of a message "
                f"that is over max_message_bytes ({limit})"
            )
        return v


class ResponderSettings(_Section):
    # Posts within this window, same place and similar text, join one event.
    event_window_hours: float = Field(72.0, gt=0)
    similarity_threshold: float = Field(0.2, gt=0, le=1)
    scheduler_tick_s: float = Field(1.0, gt=0)


class AuthSettings(_Section):
    """Sign-in, sessions, lockout, passwords and the audit (responder.accounts)."""

    # A session ends after this long without a request, and this long after sign-in at the latest.
    idle_minutes: float = Field(30.0, gt=0)
    absolute_hours: float = Field(12.0, gt=0)
    # This many failed sign-ins within the window lock the account for lockout_minutes.
    lockout_failures: int = Field(5, ge=1, le=100)
    lockout_window_minutes: float = Field(10.0, gt=0)
    lockout_minutes: float = Field(15.0, gt=0)
    # A password needs this many characters and this many of the four classes
    # (lower case, upper case, digits, anything else).
    password_min_length: int = Field(10, ge=8, le=128)
    password_classes: int = Field(3, ge=1, le=4)
    # The deployment's own jurisdiction (division-code prefix, "" = the whole country):
    # the initial admin's; users there also see items with no place (待定).
    root_jurisdiction: str = ""
    # The demo accounts' jurisdiction (demo source enabled): the demo's emergencies are all over 安徽.
    demo_jurisdiction: str = "34"
    # Audit rows are never changed or deleted by yuqing; whoever archives the
    # database must keep at least this many days (网络安全法 第二十一条: 180).
    audit_retention_days: int = 180

    @field_validator("root_jurisdiction", "demo_jurisdiction")
    @classmethod
    def _jurisdiction(cls, v: str) -> str:
        from responder.permissions import normalise_jurisdiction

        return normalise_jurisdiction(v)

    @field_validator("audit_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v < 180:
            raise ValueError(f"{v} 天过短：审计日志至少保留 180 天（网络安全法 第二十一条），不能调低")
        return v


class Settings(_Section):
    data_dir: str = "var"
    timezone: Literal["Asia/Shanghai"] = "Asia/Shanghai"
    transport: TransportSettings = Field(default_factory=TransportSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    demo_site: DemoSiteSettings = Field(default_factory=DemoSiteSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    responder: ResponderSettings = Field(default_factory=ResponderSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

    # Not from YAML: where the config files live.
    config_dir: Path = Field(default=PROJECT_CONFIG_DIR, exclude=True)

    def data_path(self, name: str) -> Path:
        p = Path(name)
        return p if p.is_absolute() else Path(self.data_dir) / p

    def config_path(self, name: str) -> Path:
        return self.config_dir / name

    @property
    def store_url(self) -> str:
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.data_path(url[len(prefix):]).resolve())
        return url


def config_dir() -> Path:
    """``$YUQING_CONFIG_DIR`` (a relative one from the current directory), else the project's ``config/``."""
    env = os.environ.get("YUQING_CONFIG_DIR", "").strip()
    return Path(env).expanduser() if env else PROJECT_CONFIG_DIR


def _missing_config(d: Path, given: bool) -> ConfigError:
    if given:
        where = "（由 --config 指定）"
    elif os.environ.get("YUQING_CONFIG_DIR", "").strip():
        where = "（由环境变量 YUQING_CONFIG_DIR 指定）"
    else:
        where = "（项目自带的 config/）"
    return ConfigError(d / "settings.yaml", [(None, "", (
        f"找不到配置目录 {d.absolute()}{where}或其中没有 settings.yaml。"
        "请设置环境变量 YUQING_CONFIG_DIR=/path/to/config（含 settings.yaml 等配置文件的目录），"
        "或运行 yuqing --config /path/to/config …"
    ))])


def load_settings(cfg_dir: Path | str | None = None) -> Settings:
    """Load ``settings.yaml`` and apply environment overrides; ``data_dir`` comes out absolute."""
    d = Path(cfg_dir).expanduser() if cfg_dir is not None else config_dir()
    if not (d / "settings.yaml").is_file():
        raise _missing_config(d, cfg_dir is not None)
    s = load_model(d / "settings.yaml", Settings)
    s.config_dir = d
    env = os.environ
    if env.get("YUQING_DATA_DIR", "").strip():
        s.data_dir = os.path.abspath(Path(env["YUQING_DATA_DIR"].strip()).expanduser())
    else:
        # settings.yaml's own data_dir: relative to where the config directory lives.
        s.data_dir = os.path.abspath(d.absolute().parent / Path(s.data_dir).expanduser())
    if "YUQING_TRANSPORT" in env:
        s.transport.kind = env["YUQING_TRANSPORT"]  # type: ignore[assignment]
        if s.transport.kind not in ("embedded", "kafka"):
            raise ValueError(f"YUQING_TRANSPORT must be embedded or kafka, not {s.transport.kind!r}")
    if "YUQING_KAFKA_BOOTSTRAP" in env:
        s.transport.kafka.bootstrap_servers = env["YUQING_KAFKA_BOOTSTRAP"]
    if "YUQING_STORE_URL" in env:
        s.store.url = env["YUQING_STORE_URL"]
    if "YUQING_ES_URL" in env and "YUQING_OPENSEARCH_URL" in env:
        raise ValueError("YUQING_ES_URL 与 YUQING_OPENSEARCH_URL 只能设置其一（Elasticsearch 或 OpenSearch）")
    if "YUQING_ES_URL" in env:
        s.search.kind = "elasticsearch"
        s.search.url = env["YUQING_ES_URL"]
    if "YUQING_OPENSEARCH_URL" in env:
        s.search.kind = "opensearch"
        s.search.url = env["YUQING_OPENSEARCH_URL"]
    if "YUQING_WEB_HOST" in env:
        s.web.host = env["YUQING_WEB_HOST"]
    if "YUQING_WEB_PORT" in env:
        s.web.port = int(env["YUQING_WEB_PORT"])
    if env.get("YUQING_WEB_BASE_URL", "").strip():
        s.web.base_url = env["YUQING_WEB_BASE_URL"].strip()
    if "YUQING_DEMO_PORT" in env:
        s.demo_site.port = int(env["YUQING_DEMO_PORT"])
    Path(s.data_dir).mkdir(parents=True, exist_ok=True)
    return s
