"""Delivery channels: DingTalk, WeCom and Feishu robots, e-mail, webhook, SMS gateway.

Each channel turns a :class:`Message` (Chinese title and Markdown-ish text)
into the far end's own request and raises :class:`DeliveryError` when the
far end does not confirm it. Message shapes:

* DingTalk custom robot (自定义机器人): ``{"msgtype": "markdown", "markdown":
  {"title", "text"}, "at": {"atMobiles": [...], "isAtAll": false}}``, answer
  ``{"errcode": 0}``; with a secret the URL gets ``timestamp`` and ``sign``
  (HMAC-SHA256 of ``"{timestamp}\\n{secret}"``, base64, URL-encoded).
* WeCom group robot (企业微信群机器人): ``{"msgtype": "markdown",
  "markdown": {"content"}}``, answer ``{"errcode": 0}``.
* Feishu custom bot (飞书自定义机器人): ``{"msg_type": "text", "content":
  {"text"}}`` (plus ``timestamp``/``sign`` with a secret), answer
  ``{"code": 0}`` (older: ``{"StatusCode": 0}``).
* E-mail: ``smtplib`` plain-text UTF-8 message with a stable Message-ID.
* Generic webhook: JSON POST of the message fields (``key`` is the readable
  idempotency key), header ``Idempotency-Key`` (its SHA-256, 32 hex digits).
* SMS gateway: JSON POST ``{"phone", "content", "sign", "idempotency_key"}``
  (Bearer token from ``secret``); any 2xx is success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

import httpx

from responder.notify.config import ChannelSpec


def idempotency_key(key: str) -> str:
    """An ASCII header value for a message key (keys carry Chinese milestone names)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


class DeliveryError(Exception):
    """The far end did not accept the message; ``str()`` says why."""


@dataclass
class Message:
    title: str
    text: str  # Markdown (robots render it; e-mail and SMS get it as plain text)
    key: str  # idempotency key (stable across retries)
    address: str | None = None  # e-mail address / mobile number
    data: dict[str, Any] = field(default_factory=dict)  # structured fields for the webhook


class Channel(Protocol):
    spec: ChannelSpec

    def send(self, msg: Message) -> None: ...


def _plain(md: str) -> str:
    out = []
    for line in md.splitlines():
        s = line.lstrip("#").strip() if line.startswith("#") else line
        out.append(s.replace("**", ""))
    return "\n".join(out)


class _Http:
    def __init__(self, spec: ChannelSpec, client: httpx.Client | None = None):
        self.spec = spec
        self.client = client or httpx.Client(timeout=spec.timeout_s, trust_env=False)

    def _post(self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            r = self.client.post(url, json=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryError(f"{self.spec.kind}: {type(e).__name__}: {e}") from e
        if r.status_code // 100 != 2:
            raise DeliveryError(f"{self.spec.kind}: HTTP {r.status_code}: {r.text[:200]}")
        return r

    @staticmethod
    def _json(r: httpx.Response) -> dict[str, Any]:
        try:
            j = r.json()
        except ValueError:
            return {}
        return j if isinstance(j, dict) else {}

    def close(self) -> None:
        self.client.close()


def _hmac_b64(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


class DingTalk(_Http):
    def send(self, msg: Message) -> None:
        url = self.spec.url or ""
        if self.spec.secret:
            ts = str(int(time.time() * 1000))
            sign = _hmac_b64(self.spec.secret.encode(), f"{ts}\n{self.spec.secret}".encode())
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}timestamp={ts}&sign={urllib.parse.quote_plus(sign)}"
        mobiles = [msg.address] if msg.address else []
        body = {
            "msgtype": "markdown",
            "markdown": {"title": msg.title, "text": msg.text},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }
        j = self._json(self._post(url, body))
        if j.get("errcode", 0) != 0:
            raise DeliveryError(f"dingtalk: errcode {j.get('errcode')}: {j.get('errmsg')}")


class WeCom(_Http):
    def send(self, msg: Message) -> None:
        body = {"msgtype": "markdown", "markdown": {"content": msg.text}}
        j = self._json(self._post(self.spec.url or "", body))
        if j.get("errcode", 0) != 0:
            raise DeliveryError(f"wecom: errcode {j.get('errcode')}: {j.get('errmsg')}")


class Feishu(_Http):
    def send(self, msg: Message) -> None:
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": _plain(msg.text)}}
        if self.spec.secret:
            ts = str(int(time.time()))
            body["timestamp"] = ts
            body["sign"] = _hmac_b64(f"{ts}\n{self.spec.secret}".encode(), b"")
        j = self._json(self._post(self.spec.url or "", body))
        code = j.get("code", j.get("StatusCode", 0))
        if code != 0:
            raise DeliveryError(f"feishu: code {code}: {j.get('msg') or j.get('StatusMessage')}")


class Webhook(_Http):
    def send(self, msg: Message) -> None:
        body = {"title": msg.title, "text": msg.text, "key": msg.key, **msg.data}
        self._post(self.spec.url or "", body, headers={"Idempotency-Key": idempotency_key(msg.key)})


class SmsGateway(_Http):
    def send(self, msg: Message) -> None:
        if not msg.address:
            raise DeliveryError("sms: no mobile number")
        headers = {"Idempotency-Key": idempotency_key(msg.key)}
        if self.spec.secret:
            headers["Authorization"] = f"Bearer {self.spec.secret}"
        body = {
            "phone": msg.address,
            "sign": self.spec.sms_sign,
            "content": f"【{self.spec.sms_sign}】{msg.title}：{_plain(msg.text)}"[:500],
            "idempotency_key": idempotency_key(msg.key),
        }
        self._post(self.spec.url or "", body, headers=headers)


class Email:
    def __init__(self, spec: ChannelSpec):
        self.spec = spec

    def send(self, msg: Message) -> None:
        if not msg.address:
            raise DeliveryError("email: no address")
        m = EmailMessage()
        m["Subject"] = msg.title
        m["From"] = self.spec.sender or ""
        m["To"] = msg.address
        m["Date"] = formatdate(localtime=False)
        domain = (self.spec.sender or "yuqing.local").rsplit("@", 1)[-1]
        m["Message-ID"] = f"<{hashlib.sha1(msg.key.encode()).hexdigest()}@{domain}>"
        m.set_content(_plain(msg.text), charset="utf-8")
        try:
            with smtplib.SMTP(self.spec.host or "", self.spec.port, timeout=self.spec.timeout_s) as s:
                if self.spec.starttls:
                    s.starttls()
                if self.spec.username:
                    s.login(self.spec.username, self.spec.password or "")
                s.send_message(m)
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"email: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        pass


FACTORIES: dict[str, Callable[[ChannelSpec], Any]] = {
    "dingtalk": DingTalk,
    "wecom": WeCom,
    "feishu": Feishu,
    "webhook": Webhook,
    "sms": SmsGateway,
    "email": Email,
}


def make_channel(spec: ChannelSpec) -> Channel:
    return FACTORIES[spec.kind](spec)
