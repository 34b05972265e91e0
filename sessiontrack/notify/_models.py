"""Webhook subscriptions and delivery attempts, and the checks of what may be stored."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from ..errors import InvalidParameter
from ..events import WIRE_NAMES

ACTIVE: Final = "active"
PAUSED: Final = "paused"
EVENT_NAMES: Final = frozenset(WIRE_NAMES.values())
"""What a subscription may filter on: the live events' names (``session:completed``)."""
_KIND_OF = {wire: kind for kind, wire in WIRE_NAMES.items()}
MAX_BATCH: Final = 500


@dataclass(frozen=True, kw_only=True, slots=True)
class Webhook:
    """A webhook subscription, as listed (the secret is never shown again: only its
    last four characters, in :attr:`secret_hint`).

    :param events: the live event names delivered (``session:completed``, ...); empty:
        every event.
    :param chatbot_ids: the chatbots whose events are delivered; empty: every chatbot.
    :param batch: events per POST at the most.
    :param state: ``active`` or ``paused`` (see :attr:`paused_reason`).
    :param failures: consecutive failed attempts (reset by a success or a resume).
    :param cursor: the sequence number of the last event delivered (or skipped by the
        filters); ``None`` while the subscription is being created or removed.
    """

    id: str
    url: str
    description: str
    events: tuple[str, ...]
    chatbot_ids: tuple[str, ...]
    batch: int
    state: str
    paused_reason: str | None
    failures: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    secret_hint: str
    cursor: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Webhook:
        secret = str(row["secret"])
        return cls(
            id=row["id"],
            url=row["url"],
            description=row["description"],
            events=tuple(row["events"] or ()),
            chatbot_ids=tuple(row["chatbot_ids"] or ()),
            batch=int(row["batch"]),
            state=row["state"],
            paused_reason=row["paused_reason"],
            failures=int(row["failures"]),
            created_by=row["created_by"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            secret_hint="…" + secret[-4:],
            cursor=None if row.get("cursor") is None else int(row["cursor"]),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class CreatedWebhook:
    """A new subscription and its secret: the only time the secret is returned."""

    webhook: Webhook
    secret: str


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookDelivery:
    """One delivery attempt: one POST of the events ``first_seq`` to ``last_seq``.

    ``status_code`` is ``None`` when no answer came (refused, timed out); ``error`` is
    ``None`` for a success (a 2xx answer).
    """

    id: int
    webhook_id: str
    at: datetime
    first_seq: int
    last_seq: int
    events: int
    attempt: int
    status_code: int | None
    latency_ms: float
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WebhookDelivery:
        return cls(**{name: row[name] for name in cls.__slots__})


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def check_url(url: object) -> str:
    """An http(s) URL with a host; anything else (``file:``, ``gopher:``, no host) is
    refused. Which hosts may be reached is the host application's policy: see
    docs/notifications.md (SSRF)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidParameter("url", "must be an http or https URL")
    url = url.strip()
    if len(url) > 2000:
        raise InvalidParameter("url", "must be at most 2000 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise InvalidParameter("url", f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidParameter("url", f"must be an http or https URL, not {parts.scheme or '?'}:")
    if not parts.hostname:
        raise InvalidParameter("url", "must name a host")
    if any(ord(ch) < 33 for ch in url):
        raise InvalidParameter("url", "must not contain spaces or control characters")
    return url


def check_events(events: Iterable[object] | None) -> list[str]:
    values = _strings(events, "events")
    unknown = sorted(set(values) - EVENT_NAMES)
    if unknown:
        raise InvalidParameter(
            "events", f"unknown event {unknown[0]!r}; one of {', '.join(sorted(EVENT_NAMES))}"
        )
    return sorted(set(values))


def check_chatbots(chatbot_ids: Iterable[object] | None) -> list[str]:
    values = _strings(chatbot_ids, "chatbotIds")
    if any(not v or len(v) > 200 for v in values):
        raise InvalidParameter("chatbotIds", "each must be 1-200 characters")
    return sorted(set(values))


def check_batch(batch: object) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise InvalidParameter("batch", f"must be an integer from 1 to {MAX_BATCH}")
    return batch


def check_secret(secret: object) -> str:
    if secret is None:
        return new_secret()
    if not isinstance(secret, str) or not 16 <= len(secret) <= 200 or not secret.isprintable():
        raise InvalidParameter("secret", "must be 16-200 printable characters")
    return secret


def check_description(description: object) -> str:
    if not isinstance(description, str) or len(description) > 500 or "\x00" in description:
        raise InvalidParameter("description", "must be text of at most 500 characters")
    return description


def _strings(values: Iterable[object] | None, field: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidParameter(field, "must be a list of strings")
    out = list(values)
    if not all(isinstance(v, str) and "\x00" not in v for v in out) or len(out) > 100:
        raise InvalidParameter(field, "must be a list of at most 100 strings")
    return [str(v) for v in out]


def kinds_of(events: Iterable[str]) -> frozenset[str]:
    """The log's event kinds behind these wire names."""
    return frozenset(_KIND_OF[e] for e in events)


def to_json(obj: Webhook | WebhookDelivery, **extra: Any) -> dict[str, Any]:
    """A subscription or a delivery attempt as ``/webhooks`` answers it (camelCase)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        head, *rest = field.name.split("_")
        out[head + "".join(part.title() for part in rest)] = value
    return {**out, **extra}
