"""Sending one alert to one target: a signed webhook, a Slack- or Teams-compatible
incoming webhook, or an e-mail over SMTP (aiosmtplib)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import orjson

from ._signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

if TYPE_CHECKING:
    import httpx

USER_AGENT = "sessiontrack-alerts/1"


def http_error(what: str) -> type[Exception]:
    """``httpx.HTTPError``, or an ImportError saying that ``what`` needs the extra."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            f'{exc}: {what} needs httpx (pip install "sessiontrack[notify]")'
        ) from None
    return httpx.HTTPError


@dataclass(frozen=True, slots=True)
class SMTP:
    """The SMTP server e-mail targets are sent through (``Alerts(smtp=SMTP(...))``).

    :param sender: the ``From`` address.
    :param username: with ``password``, log in (AUTH) before sending; use it over
        ``starttls`` or ``use_tls`` only: the password would otherwise cross in clear.
    :param starttls: upgrade a plain connection with STARTTLS (port 587).
    :param use_tls: connect with implicit TLS (port 465).
    :param cert_bundle: a file of CA certificates to verify the server's certificate
        against (a private CA); by default the system's. The certificate is always
        verified, its name against ``host``.
    """

    host: str
    port: int = 25
    sender: str = "sessiontrack@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_tls: bool = False
    timeout: float = 10.0
    cert_bundle: str | None = None

    def __repr__(self) -> str:  # never the password
        return f"SMTP({self.host!r}, {self.port}, sender={self.sender!r})"


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def alert_json(row: Mapping[str, Any], dashboard_url: str | None = None) -> dict[str, Any]:
    """An alert as ``GET /alerts`` and the targets carry it: ``link`` is the dashboard's
    hash route (``#/sessions/<id>``, ``#/analytics?...``), ``url`` the same under
    ``dashboard_url`` (``None`` when the group was given none)."""
    out = {
        "id": int(row["id"]),
        "ruleId": row["rule_id"],
        "kind": row["kind"],
        "chatbotId": row["chatbot_id"],
        "sessionId": row["session_id"],
        "nodeId": row["node_id"],
        "title": row["title"],
        "link": row["link"],
        "url": dashboard_link(dashboard_url, row["link"]),
        "details": dict(row["details"] or {}),
        "firedAt": _iso(row["fired_at"]),
        "resolvedAt": _iso(row["resolved_at"]),
    }
    if "deliveries" in row:
        out["deliveries"] = [
            {
                "type": d["type"],
                "state": d["state"],
                "attempts": int(d["attempts"]),
                "error": d["error"],
                "deliveredAt": _iso(d["delivered_at"]),
            }
            for d in row["deliveries"]
        ]
    return out


def dashboard_link(dashboard_url: str | None, link: str) -> str | None:
    if not dashboard_url:
        return None
    base = dashboard_url.split("#", 1)[0]
    return base + link


def facts(alert: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The alert's details as (label, value) pairs, for the chat cards and the e-mail."""
    d = alert["details"]
    pairs = [("Rule", d.get("rule")), ("Chatbot", alert["chatbotId"])]
    pairs += [("Session", alert["sessionId"]), ("Node", alert["nodeId"])]
    for key, label in (
        ("status", "Status"),
        ("reason", "Reason"),
        ("since", "In this status since"),
        ("metric", "Metric"),
        ("rate", "Rate"),
        ("threshold", "Threshold"),
        ("sessions", "Sessions"),
        ("window", "Window (s)"),
    ):
        pairs.append((label, d.get(key)))
    return [(k, str(v)) for k, v in pairs if v is not None and v != ""]


def slack_payload(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the notification's) and ``blocks``."""
    lines = "\n".join(f"*{k}:* {v}" for k, v in facts(alert))
    url = alert["url"]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert["title"][:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": lines[:3000] or "-"}},
    ]
    if url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in sessiontrack"},
                        "url": url,
                    }
                ],
            }
        )
    text = f"{alert['title']} <{url}|open>" if url else alert["title"]
    return {"text": text, "blocks": blocks}


def teams_payload(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A Teams incoming-webhook (or Workflows) message carrying an Adaptive Card."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "Medium",
                "weight": "Bolder",
                "text": alert["title"],
                "wrap": True,
            },
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts(alert)]},
        ],
    }
    if alert["url"]:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in sessiontrack", "url": alert["url"]}
        ]
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


def email_message(alert: Mapping[str, Any], sender: str, to: list[str]) -> EmailMessage:
    message = EmailMessage()
    subject = " ".join(f"[sessiontrack] {alert['title']}".split())  # no CR/LF in a header
    message["Subject"] = subject[:500]
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["X-Sessiontrack-Alert"] = str(alert["id"])
    lines = [alert["title"], "", *(f"{k}: {v}" for k, v in facts(alert)), ""]
    lines.append(f"Open in sessiontrack: {alert['url'] or alert['link']}")
    message.set_content("\n".join(lines))
    return message


class Sender:
    """Sends alerts with one HTTP client and the SMTP settings; returns ``None`` on
    success or what went wrong."""

    def __init__(self, client: httpx.AsyncClient, http_error: type[Exception], smtp: SMTP | None):
        self.client = client
        self.http_error = http_error
        self.smtp = smtp

    async def send(
        self, target: Mapping[str, Any], alert: Mapping[str, Any], key: str
    ) -> str | None:
        kind = target["type"]
        if kind == "email":
            return await self._email(target, alert)
        if kind == "webhook":
            body = orjson.dumps({"alert": alert})
            ts = str(int(time.time()))
            headers = {
                "X-Sessiontrack-Alert": str(alert["id"]),
                "Idempotency-Key": key,
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sign(str(target.get("secret", "")), ts, body),
            }
        else:
            payload = slack_payload(alert) if kind == "slack" else teams_payload(alert)
            body, headers = orjson.dumps(payload), {}
        headers |= {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            answer = await self.client.post(target["url"], content=body, headers=headers)
        except self.http_error as exc:
            return f"{type(exc).__name__}: {exc}"[:1000]
        if 200 <= answer.status_code < 300:
            return None
        return f"HTTP {answer.status_code}"

    async def _email(self, target: Mapping[str, Any], alert: Mapping[str, Any]) -> str | None:
        smtp = self.smtp
        if smtp is None:
            return "no SMTP server configured (Alerts(smtp=SMTP(...)))"
        try:
            import aiosmtplib
        except ImportError:  # pragma: no cover - the extra is missing
            return 'e-mail needs aiosmtplib (pip install "sessiontrack[notify]")'
        message = email_message(alert, smtp.sender, list(target["to"]))
        try:
            await aiosmtplib.send(
                message,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password,
                start_tls=smtp.starttls,
                use_tls=smtp.use_tls,
                timeout=smtp.timeout,
                cert_bundle=smtp.cert_bundle,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:1000]
        return None
