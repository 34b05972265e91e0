"""Managing alert rules and reading recent alerts: what ``/alerts``, the CLI and host
code call."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from typing import Any

from ..abc import Store
from ..errors import AlertRuleNotFound, InvalidParameter, PermissionDenied
from ..models import Principal
from ..store import SQLAlchemyStore
from . import _rules as r
from ._rules import AlertRule
from ._targets import alert_json


class AlertService:
    """Alert rules kept in the database and the alerts they fired; any process sharing
    it may manage them, the process leading the ``alerts`` group evaluates and delivers
    (see :class:`~sessiontrack.notify.Alerts`).

    Every method takes an optional ``principal``: ``None`` is the host's own code (or
    the CLI); a :class:`~sessiontrack.Principal` needs ``can_manage``
    (:class:`~sessiontrack.errors.PermissionDenied` otherwise), and one limited to some
    chatbots sees and makes only rules limited to those chatbots, and sees only their
    chatbots' alerts (others are :class:`~sessiontrack.errors.AlertRuleNotFound`).
    """

    def __init__(self, store: Store, *, dashboard_url: str | None = None) -> None:
        if not isinstance(store, SQLAlchemyStore):
            raise TypeError(f"alerts need the SQLAlchemy store, got {type(store).__name__}")
        self._store = store
        self.dashboard_url = dashboard_url

    @property
    def store(self) -> SQLAlchemyStore:
        return self._store

    async def create_rule(
        self, body: Mapping[str, Any], *, principal: Principal | None = None
    ) -> tuple[AlertRule, builtins.list[str | None]]:
        """Create a rule from its wire form (``name``, ``kind``, ``chatbotIds``,
        ``params``, ``targets``); returns it and the webhook targets' secrets by
        position (made when not given; returned here only).

        :raises InvalidParameter: a bad value; ``field`` names it (``params.status``,
            ``targets[0].url``).
        """
        _may_manage(principal)
        row = r.check_rule(body)
        if principal is not None and principal.chatbot_ids is not None:
            wanted = set(row["chatbot_ids"])
            if not wanted:
                raise InvalidParameter(
                    "chatbotIds", "required: this principal may see only some chatbots"
                )
            if not wanted <= principal.chatbot_ids:
                raise InvalidParameter("chatbotIds", "includes a chatbot this principal cannot see")
        row |= {
            "id": r.new_rule_id(),
            "source": "api",
            "created_by": principal.id if principal is not None else None,
        }
        await self._store.put_alert_rule(row, replace=False)
        rule = await self.get_rule(row["id"])
        return rule, [t.get("secret") for t in row["targets"]]

    async def list_rules(self, *, principal: Principal | None = None) -> builtins.list[AlertRule]:
        """Every rule the principal may see, oldest first."""
        _may_manage(principal)
        rows = await self._store.alert_rules_rows()
        return [AlertRule.from_row(x) for x in rows if _visible(x["chatbot_ids"], principal)]

    async def get_rule(self, rule_id: str, *, principal: Principal | None = None) -> AlertRule:
        """One rule. :raises AlertRuleNotFound:"""
        _may_manage(principal)
        rows = await self._store.alert_rules_rows(_check_id(rule_id))
        if not rows or not _visible(rows[0]["chatbot_ids"], principal):
            raise AlertRuleNotFound(str(rule_id))
        return AlertRule.from_row(rows[0])

    async def remove_rule(self, rule_id: str, *, principal: Principal | None = None) -> None:
        """Delete a rule made through the API (its alerts stay; their pending deliveries
        are dropped). A rule defined in code is refused: it comes back at the next start.

        :raises AlertRuleNotFound:
        :raises InvalidParameter: the rule is defined in the host's code (``ruleId``).
        """
        rule = await self.get_rule(rule_id, principal=principal)
        if rule.source == "code":
            raise InvalidParameter(
                "ruleId", "this rule is defined in the host's code: remove it there"
            )
        if not await self._store.delete_alert_rule(rule.id):
            raise AlertRuleNotFound(rule_id)

    async def alerts(
        self,
        *,
        limit: int = 50,
        before: int | None = None,
        rule_id: str | None = None,
        chatbot_id: str | None = None,
        principal: Principal | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Recent alerts, newest first, as ``GET /alerts`` answers them (camelCase, with
        ``deliveries``): at most ``limit`` (1-500), older than alert ``before``, of one
        rule or one chatbot."""
        _may_manage(principal)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise InvalidParameter("limit", "must be an integer from 1 to 500")
        if before is not None and (
            isinstance(before, bool) or not isinstance(before, int) or before < 1
        ):
            raise InvalidParameter("before", "must be an alert id (a positive integer)")
        if rule_id is not None:
            rule_id = _check_id(rule_id, "ruleId")
        chatbots: set[str] | None = None
        if principal is not None and principal.chatbot_ids is not None:
            chatbots = set(principal.chatbot_ids)
        if chatbot_id is not None:
            if not isinstance(chatbot_id, str) or not 1 <= len(chatbot_id) <= 200:
                raise InvalidParameter("chatbotId", "must be 1-200 characters")
            chatbots = {chatbot_id} & chatbots if chatbots is not None else {chatbot_id}
        rows = await self._store.alerts_rows(
            limit=limit, before=before, rule_id=rule_id, chatbot_ids=chatbots
        )
        return [alert_json(row, self.dashboard_url) for row in rows]


def _may_manage(principal: Principal | None) -> None:
    if principal is not None and not principal.can_manage:
        raise PermissionDenied("manage alerts", f"principal {principal.id!r} lacks can_manage")


def _visible(chatbot_ids: builtins.list[str] | None, principal: Principal | None) -> bool:
    if principal is None or principal.chatbot_ids is None:
        return True
    return bool(chatbot_ids) and set(chatbot_ids or ()) <= principal.chatbot_ids


def _check_id(rule_id: object, field: str = "ruleId") -> str:
    try:
        return str(uuid.UUID(str(rule_id)))
    except ValueError:
        raise InvalidParameter(field, "must be an alert rule id (a UUID)") from None
