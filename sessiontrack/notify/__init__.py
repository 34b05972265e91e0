"""Notifications out of the committed event log: durable, signed webhooks.

Subscriptions live in the database (``<prefix>webhooks``), managed through
:class:`WebhookService` (``GET/POST/DELETE /webhooks`` and ``sessiontrack webhooks``);
the :class:`Webhooks` consumer group delivers them, in one process at a time::

    from sessiontrack.notify import Webhooks
    tracker = sessiontrack.Tracker(url, consumers=[Webhooks()])

A receiver checks each POST with :func:`verify`. See docs/notifications.md.
"""

from __future__ import annotations

from ._delivery import GROUP, WebhookConsumer, Webhooks, event_json
from ._models import ACTIVE, EVENT_NAMES, PAUSED, CreatedWebhook, Webhook, WebhookDelivery
from ._service import WebhookService
from ._signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

__all__ = [
    "ACTIVE",
    "EVENT_NAMES",
    "GROUP",
    "PAUSED",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CreatedWebhook",
    "Webhook",
    "WebhookConsumer",
    "WebhookDelivery",
    "WebhookService",
    "Webhooks",
    "event_json",
    "sign",
    "verify",
]
