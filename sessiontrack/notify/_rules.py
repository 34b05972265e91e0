"""Alert rules and their targets: what they are, how they are checked, how they look on
the wire (``/alerts/rules``) and in the database (``<prefix>alert_rules``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ..errors import InvalidParameter
from ..status import ACTIVE_STATUSES, TERMINAL_STATUSES
from ._models import check_chatbots, check_url, new_secret

SESSION_ENDED: Final = "session_ended"
STUCK: Final = "stuck"
NODE_RATE: Final = "node_rate"
KINDS: Final = (SESSION_ENDED, STUCK, NODE_RATE)
TARGET_TYPES: Final = ("webhook", "slack", "teams", "email")
METRICS: Final = ("dropOff", "error")
MAX_TARGETS: Final = 10
_RULES_NS = uuid.UUID("5b0f8a4e-2f4f-4c1e-9a57-7a1c9d5e0b11")
_MAX_SECONDS = 366 * 86400


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """Where an alert goes.

    - ``Target.webhook(url, secret)``: a JSON POST ``{"alert": {...}}`` signed like
      the webhooks (``X-Sessiontrack-Signature`` over ``<timestamp>.<body>``);
    - ``Target.slack(url)``: a Slack incoming webhook (``text`` and ``blocks``);
    - ``Target.teams(url)``: a Microsoft Teams incoming webhook or Workflows URL (an
      Adaptive Card in a ``message``);
    - ``Target.email(*to)``: an e-mail through the SMTP server given to
      :class:`~sessiontrack.notify.Alerts` (``smtp=``).
    """

    type: Literal["webhook", "slack", "teams", "email"]
    url: str | None = None
    secret: str | None = None
    to: tuple[str, ...] = ()

    @classmethod
    def webhook(cls, url: str, secret: str) -> Target:
        return cls(type="webhook", url=url, secret=secret)

    @classmethod
    def slack(cls, url: str) -> Target:
        return cls(type="slack", url=url)

    @classmethod
    def teams(cls, url: str) -> Target:
        return cls(type="teams", url=url)

    @classmethod
    def email(cls, *to: str) -> Target:
        return cls(type="email", to=tuple(to))

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"type": self.type}
        if self.url is not None:
            row["url"] = self.url
        if self.secret is not None:
            row["secret"] = self.secret
        if self.to:
            row["to"] = list(self.to)
        return row


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertRule:
    """A rule: when it fires (``kind`` and ``params``), for which chatbots (empty: all),
    and where its alerts go (``targets``). Make one with :meth:`session_ended`,
    :meth:`stuck` or :meth:`node_rate` and pass it to
    :class:`~sessiontrack.notify.Alerts`; or create one through ``POST /alerts/rules``.

    ``params`` (camelCase, as on the wire): ``statuses``, ``reasons`` (session ended);
    ``status``, ``longerThan`` in seconds (stuck); ``metric`` (``dropOff`` or
    ``error``), ``threshold`` (0-1), ``window`` in seconds, ``minSessions``, ``nodeId``
    (``None``: every node) and ``version`` (``None``: the chatbot's current one) (node
    rate).
    """

    id: str
    name: str
    kind: str
    chatbot_ids: tuple[str, ...]
    params: Mapping[str, Any]
    targets: tuple[Target, ...]
    source: str = "code"
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    _row: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def code_id(name: str) -> str:
        """The id of the code's rule ``name``: the same in every process and restart."""
        return str(uuid.uuid5(_RULES_NS, name))

    @classmethod
    def _make(
        cls,
        name: str,
        kind: str,
        params: dict[str, Any],
        chatbot_ids: Iterable[str],
        targets: Iterable[Target],
    ) -> AlertRule:
        body = {
            "name": name,
            "kind": kind,
            "chatbotIds": list(chatbot_ids),
            "params": params,
            "targets": [t.to_row() for t in targets],
        }
        return cls.from_row({**check_rule(body), "id": cls.code_id(name), "source": "code"})

    @classmethod
    def session_ended(
        cls,
        name: str,
        *,
        statuses: Iterable[str] = (),
        reasons: Iterable[str] = (),
        chatbot_ids: Iterable[str] = (),
        targets: Iterable[Target] = (),
    ) -> AlertRule:
        """Fires once per session that ends with one of ``statuses`` (``expired``,
        ``stopped``, ``completed``) or one of ``reasons`` (the completion reason, e.g.
        ``error``); with both, a session must match both; with neither, every end."""
        params = {"statuses": list(statuses), "reasons": list(reasons)}
        return cls._make(name, SESSION_ENDED, params, chatbot_ids, targets)

    @classmethod
    def stuck(
        cls,
        name: str,
        *,
        status: str,
        longer_than: timedelta | float,
        chatbot_ids: Iterable[str] = (),
        targets: Iterable[Target] = (),
    ) -> AlertRule:
        """Fires once per session and status spell: an active session that has been in
        ``status`` (``waiting_flow``, ...) for longer than ``longer_than`` (a timedelta or
        seconds), as the periodic evaluation sees it."""
        params = {"status": status, "longerThan": _seconds(longer_than)}
        return cls._make(name, STUCK, params, chatbot_ids, targets)

    @classmethod
    def node_rate(
        cls,
        name: str,
        *,
        chatbot_ids: Iterable[str],
        threshold: float,
        metric: Literal["dropOff", "error"] = "dropOff",
        window: timedelta | float = timedelta(hours=1),
        min_sessions: int = 20,
        node_id: str | None = None,
        version: str | None = None,
        targets: Iterable[Target] = (),
    ) -> AlertRule:
        """Fires when a node's drop-off rate (``dropOffRate`` of the flow analytics) or
        error rate (errors ÷ visits) goes above ``threshold`` over the sessions started in
        the last ``window`` (in quarter-hours, as the analytics count), with at least
        ``min_sessions`` sessions at the node; once per crossing: it fires again only
        after the rate went back to the threshold or below (the alert is then resolved)."""
        params = {
            "metric": metric,
            "threshold": threshold,
            "window": _seconds(window),
            "minSessions": min_sessions,
            "nodeId": node_id,
            "version": version,
        }
        return cls._make(name, NODE_RATE, params, chatbot_ids, targets)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertRule:
        return cls(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            chatbot_ids=tuple(row["chatbot_ids"] or ()),
            params=dict(row["params"]),
            targets=tuple(
                Target(
                    type=t["type"],
                    url=t.get("url"),
                    secret=t.get("secret"),
                    to=tuple(t.get("to", ())),
                )
                for t in row["targets"]
            ),
            source=row.get("source", "code"),
            created_by=row.get("created_by"),
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
            _row=dict(row),
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "chatbot_ids": list(self.chatbot_ids),
            "params": dict(self.params),
            "targets": [t.to_row() for t in self.targets],
            "source": self.source,
            "created_by": self.created_by,
        }

    def applies_to(self, chatbot_id: str) -> bool:
        return not self.chatbot_ids or chatbot_id in self.chatbot_ids


def _hint(url: str) -> str:
    """An incoming webhook's URL is its credential: shown as its host and last four."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…{url[-4:]}"


def target_json(target: Target) -> dict[str, Any]:
    out: dict[str, Any] = {"type": target.type}
    if target.url is not None:
        out["url"] = target.url if target.type == "webhook" else _hint(target.url)
    if target.secret is not None:
        out["secretHint"] = "…" + target.secret[-4:]
    if target.type == "email":
        out["to"] = list(target.to)
    return out


def rule_json(rule: AlertRule) -> dict[str, Any]:
    """A rule as ``/alerts/rules`` answers it (secrets never shown)."""
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind,
        "chatbotIds": list(rule.chatbot_ids),
        "params": dict(rule.params),
        "targets": [target_json(t) for t in rule.targets],
        "source": rule.source,
        "createdBy": rule.created_by,
        "createdAt": rule.created_at.isoformat() if rule.created_at else None,
        "updatedAt": rule.updated_at.isoformat() if rule.updated_at else None,
    }


# --- checks: a bad value is an InvalidParameter naming its field (camelCase) -----------


def check_rule(body: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's row from its wire form (``name``, ``kind``, ``chatbotIds``, ``params``,
    ``targets``), every value checked."""
    unknown = sorted(set(body) - {"name", "kind", "chatbotIds", "params", "targets"})
    if unknown:
        raise InvalidParameter(
            unknown[0], "unknown field; known: name, kind, chatbotIds, params, targets"
        )
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200 or not name.isprintable():
        raise InvalidParameter("name", "must be 1-200 printable characters")
    kind = body.get("kind")
    if kind not in KINDS:
        raise InvalidParameter("kind", f"must be one of {', '.join(KINDS)}")
    chatbots = check_chatbots(body.get("chatbotIds"))
    params = body.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InvalidParameter("params", "must be a JSON object")
    checked = _CHECKS[kind](dict(params))
    if kind == NODE_RATE and not chatbots:
        raise InvalidParameter("chatbotIds", "a node rate rule needs at least one chatbot")
    return {
        "name": name.strip(),
        "kind": kind,
        "chatbot_ids": chatbots,
        "params": checked,
        "targets": check_targets(body.get("targets")),
    }


def _only(params: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidParameter(f"params.{unknown[0]}", f"unknown; known: {', '.join(known)}")


def _strings(value: object, field: str, allowed: frozenset[str] | None = None) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 50:
        raise InvalidParameter(field, "must be a list of at most 50 strings")
    out = []
    for item in value:
        if not isinstance(item, str) or not 1 <= len(item) <= 200 or "\x00" in item:
            raise InvalidParameter(field, "each must be 1-200 characters")
        if allowed is not None and item not in allowed:
            raise InvalidParameter(field, f"unknown {item!r}; one of {', '.join(sorted(allowed))}")
        out.append(item)
    return sorted(set(out))


def _number(value: object, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise InvalidParameter(field, f"must be a number from {lo:g} to {hi:g}")
    return float(value)


def _ended(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, ("statuses", "reasons"))
    return {
        "statuses": _strings(params.get("statuses"), "params.statuses", TERMINAL_STATUSES),
        "reasons": _strings(params.get("reasons"), "params.reasons"),
    }


def _stuck(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, ("status", "longerThan"))
    status = params.get("status")
    if status not in ACTIVE_STATUSES:
        raise InvalidParameter(
            "params.status", f"must be an active status: {', '.join(sorted(ACTIVE_STATUSES))}"
        )
    if "longerThan" not in params:
        raise InvalidParameter("params.longerThan", "required (seconds)")
    longer = _number(params["longerThan"], "params.longerThan", 0.001, _MAX_SECONDS)
    return {"status": status, "longerThan": longer}


def _node_rate(params: dict[str, Any]) -> dict[str, Any]:
    known = ("metric", "threshold", "window", "minSessions", "nodeId", "version")
    _only(params, known)
    metric = params.get("metric", "dropOff")
    if metric not in METRICS:
        raise InvalidParameter("params.metric", f"must be one of {', '.join(METRICS)}")
    if "threshold" not in params:
        raise InvalidParameter("params.threshold", "required (a rate from 0 to 1)")
    minimum = params.get("minSessions", 20)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or not 1 <= minimum <= 10**9:
        raise InvalidParameter("params.minSessions", "must be an integer from 1 to 1000000000")
    out: dict[str, Any] = {
        "metric": metric,
        "threshold": _number(params["threshold"], "params.threshold", 0, 1),
        "window": _number(params.get("window", 3600), "params.window", 900, 400 * 86400),
        "minSessions": minimum,
    }
    for name in ("nodeId", "version"):
        value = params.get(name)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 200):
            raise InvalidParameter(f"params.{name}", "must be 1-200 characters")
        out[name] = value
    return out


_CHECKS = {SESSION_ENDED: _ended, STUCK: _stuck, NODE_RATE: _node_rate}


def check_targets(targets: object) -> list[dict[str, Any]]:
    if targets is None:
        return []
    if not isinstance(targets, list) or len(targets) > MAX_TARGETS:
        raise InvalidParameter("targets", f"must be a list of at most {MAX_TARGETS} targets")
    return [_target(t, f"targets[{i}]") for i, t in enumerate(targets)]


def _target(target: object, field: str) -> dict[str, Any]:
    if not isinstance(target, Mapping):
        raise InvalidParameter(field, "must be a JSON object")
    kind = target.get("type")
    if kind not in TARGET_TYPES:
        raise InvalidParameter(f"{field}.type", f"must be one of {', '.join(TARGET_TYPES)}")
    known = {"webhook": ("type", "url", "secret"), "email": ("type", "to")}.get(
        kind, ("type", "url")
    )
    unknown = sorted(set(target) - set(known))
    if unknown:
        raise InvalidParameter(f"{field}.{unknown[0]}", f"unknown; known: {', '.join(known)}")
    if kind == "email":
        to = target.get("to")
        if not isinstance(to, list) or not 1 <= len(to) <= 20:
            raise InvalidParameter(f"{field}.to", "must list 1-20 e-mail addresses")
        for address in to:
            if not isinstance(address, str) or not _address(address):
                raise InvalidParameter(f"{field}.to", f"not an e-mail address: {address!r}")
        return {"type": kind, "to": list(to)}
    try:
        url = check_url(target.get("url"))
    except InvalidParameter as exc:
        raise InvalidParameter(f"{field}.url", exc.message) from None
    row: dict[str, Any] = {"type": kind, "url": url}
    if kind == "webhook":
        secret = target.get("secret")
        if secret is None:
            secret = new_secret()
        elif (
            not isinstance(secret, str) or not 16 <= len(secret) <= 200 or not secret.isprintable()
        ):
            raise InvalidParameter(f"{field}.secret", "must be 16-200 printable characters")
        row["secret"] = secret
    return row


def _address(text: str) -> bool:
    local, at, domain = text.rpartition("@")
    return (
        bool(at and local and "." in domain.strip("."))
        and len(text) <= 254
        and text.isprintable()
        and not any(ch in text for ch in " <>,;\r\n")
    )


def new_rule_id() -> str:
    return str(uuid.uuid4())
