"""Managing webhook subscriptions: what ``/webhooks``, the CLI and host code call."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable

from ..abc import Store
from ..errors import InvalidParameter, PermissionDenied, WebhookNotFound
from ..models import Principal
from ..store import SQLAlchemyStore
from ..store._webhooks import cursor_name
from . import _models as m
from ._models import CreatedWebhook, Webhook, WebhookDelivery


class WebhookService:
    """Subscriptions kept in the database: any process sharing it may manage them; the
    process leading the ``webhooks`` consumer group delivers (see :class:`Webhooks`).

    Every method takes an optional ``principal``: ``None`` is the host's own code (or the
    CLI) and may do anything; a :class:`~sessiontrack.Principal` needs ``can_manage``
    (:class:`~sessiontrack.errors.PermissionDenied` otherwise), and one limited to some
    chatbots sees and makes only subscriptions limited to those chatbots (others are
    :class:`~sessiontrack.errors.WebhookNotFound`).
    """

    def __init__(self, store: Store) -> None:
        if not isinstance(store, SQLAlchemyStore):
            raise TypeError(f"webhooks need the SQLAlchemy store, got {type(store).__name__}")
        self._store = store

    @property
    def store(self) -> SQLAlchemyStore:
        return self._store

    async def create(
        self,
        url: str,
        *,
        events: Iterable[str] | None = None,
        chatbot_ids: Iterable[str] | None = None,
        secret: str | None = None,
        batch: int = 100,
        description: str = "",
        principal: Principal | None = None,
    ) -> CreatedWebhook:
        """Subscribe ``url`` to the events committed from now on (``events``: live event
        names, empty for all; ``chatbot_ids``: empty for all). Without ``secret`` one is
        made (``whsec_...``); either way it is returned here and never again.

        :raises InvalidParameter: a bad value (``field`` names it: ``url``, ``events``,
            ``chatbotIds``, ``secret``, ``batch``, ``description``).
        """
        _may_manage(principal)
        hook_id, chosen_secret = str(uuid.uuid4()), m.check_secret(secret)
        chatbots = m.check_chatbots(chatbot_ids)
        row: dict[str, object] = {
            "id": hook_id,
            "url": m.check_url(url),
            "events": m.check_events(events),
            "chatbot_ids": chatbots,
            "secret": chosen_secret,
            "batch": m.check_batch(batch),
            "description": m.check_description(description),
            "state": m.ACTIVE,
            "paused_reason": None,
            "failures": 0,
            "created_by": principal.id if principal is not None else None,
        }
        if principal is not None and principal.chatbot_ids is not None:
            wanted = set(chatbots)
            if not wanted:
                raise InvalidParameter(
                    "chatbotIds", "required: this principal may see only some chatbots"
                )
            if not wanted <= principal.chatbot_ids:
                raise InvalidParameter("chatbotIds", "includes a chatbot this principal cannot see")
        await self._store.add_webhook(row)
        created = await self.get(hook_id)
        return CreatedWebhook(webhook=created, secret=chosen_secret)

    async def list(self, *, principal: Principal | None = None) -> list[Webhook]:
        """Every subscription the principal may see, oldest first."""
        _may_manage(principal)
        rows = await self._store.webhooks_rows()
        return [Webhook.from_row(r) for r in rows if _visible(r["chatbot_ids"], principal)]

    async def get(self, webhook_id: str, *, principal: Principal | None = None) -> Webhook:
        """One subscription. :raises WebhookNotFound:"""
        _may_manage(principal)
        rows = await self._store.webhooks_rows(_check_id(webhook_id))
        if not rows or not _visible(rows[0]["chatbot_ids"], principal):
            raise WebhookNotFound(webhook_id)
        return Webhook.from_row(rows[0])

    async def remove(self, webhook_id: str, *, principal: Principal | None = None) -> None:
        """Delete a subscription with its cursor and delivery log; the delivering process
        stops it within its refresh interval. :raises WebhookNotFound:"""
        await self.get(webhook_id, principal=principal)
        if not await self._store.delete_webhook(webhook_id):
            raise WebhookNotFound(webhook_id)

    async def resume(self, webhook_id: str, *, principal: Principal | None = None) -> Webhook:
        """Make a paused subscription active again, its failure count zero: delivery goes
        on from its cursor (the events committed while it was paused are delivered).
        Resuming an active one changes nothing. :raises WebhookNotFound:"""
        hook = await self.get(webhook_id, principal=principal)
        if hook.state != m.ACTIVE:
            await self._store.update_webhook(
                hook.id, state=m.ACTIVE, paused_reason=None, failures=0
            )
        return await self.get(webhook_id, principal=principal)

    async def pause(
        self, webhook_id: str, reason: str = "paused by hand", *, principal: Principal | None = None
    ) -> Webhook:
        """Stop delivering to a subscription until :meth:`resume`. :raises WebhookNotFound:"""
        hook = await self.get(webhook_id, principal=principal)
        await self._store.update_webhook(hook.id, state=m.PAUSED, paused_reason=reason[:1000])
        return await self.get(webhook_id, principal=principal)

    async def deliveries(
        self, webhook_id: str, *, limit: int = 50, principal: Principal | None = None
    ) -> builtins.list[WebhookDelivery]:
        """The subscription's newest delivery attempts (at most ``limit``, 1-1000), newest
        first. :raises WebhookNotFound:"""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidParameter("limit", "must be an integer from 1 to 1000")
        hook = await self.get(webhook_id, principal=principal)
        rows = await self._store.webhook_deliveries(hook.id, limit)
        return [WebhookDelivery.from_row(r) for r in rows]

    async def lag(self, webhook: Webhook) -> int | None:
        """Events committed after the subscription's cursor (of every kind: an upper
        bound of what is still to be delivered)."""
        if webhook.cursor is None:
            return None
        return max(0, await self._store.last_seq() - webhook.cursor)


def _may_manage(principal: Principal | None) -> None:
    if principal is not None and not principal.can_manage:
        raise PermissionDenied("manage webhooks", f"principal {principal.id!r} lacks can_manage")


def _visible(chatbot_ids: list[str] | None, principal: Principal | None) -> bool:
    if principal is None or principal.chatbot_ids is None:
        return True
    return bool(chatbot_ids) and set(chatbot_ids or ()) <= principal.chatbot_ids


def _check_id(webhook_id: object) -> str:
    try:
        return str(uuid.UUID(str(webhook_id)))
    except ValueError:
        raise InvalidParameter("id", "must be a webhook id (a UUID)") from None


__all__ = ["WebhookService", "cursor_name"]
