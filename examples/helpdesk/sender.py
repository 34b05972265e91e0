"""Senders: how the bot's replies reach the customer (see :class:`~.engine.Sender`)."""

from __future__ import annotations

import itertools
import logging
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engine import Reply
from .whatsapp import message_body

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sent:
    id: str
    to: str
    reply: Reply
    body: dict[str, Any]


class RecordingSender:
    """The demo's sender: keeps the Cloud API bodies it would have sent, per recipient
    (the newest ``keep`` each), and makes WhatsApp-like message ids."""

    def __init__(self, keep: int = 50) -> None:
        self.outbox: defaultdict[str, deque[Sent]] = defaultdict(lambda: deque(maxlen=keep))
        self.count = 0
        self._ids = itertools.count(1)

    async def send(self, to: str, reply: Reply) -> str:
        mid = f"wamid.out.{next(self._ids)}.{secrets.token_hex(6)}"
        self.outbox[to].append(Sent(mid, to, reply, message_body(to, reply)))
        self.count += 1
        return mid

    def last(self, to: str) -> Sent | None:
        """The newest reply sent to ``to``."""
        box = self.outbox.get(to)
        return box[-1] if box else None

    def forget(self, to: str) -> None:
        self.outbox.pop(to, None)


class CloudApiSender:
    """Sends through the WhatsApp Cloud API (``POST /{phone_number_id}/messages``).

    :param access_token: a system-user token with ``whatsapp_business_messaging``.

    Needs ``httpx`` (``pip install httpx``); the demo's :class:`RecordingSender` does not.
    """

    def __init__(
        self,
        phone_number_id: str,
        access_token: str,
        *,
        base_url: str = "https://graph.facebook.com/v21.0",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/{phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._own_client = client is None
        if client is None:
            import httpx

            client = httpx.AsyncClient(timeout=10)
        self._client = client

    async def send(self, to: str, reply: Reply) -> str | None:
        response = await self._client.post(
            self._url, json=message_body(to, reply), headers=self._headers
        )
        response.raise_for_status()
        messages = response.json().get("messages") or [{}]
        mid = messages[0].get("id")
        return mid if isinstance(mid, str) else None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
