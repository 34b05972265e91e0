"""Notifications out of the committed event log: durable, signed webhooks and alert rules.

Subscriptions live in the database (``<prefix>webhooks``), managed through
:class:`WebhookService` (``GET/POST/DELETE /webhooks`` and ``sessiontrack webhooks``);
the :class:`Webhooks` consumer group delivers them, in one process at a time::

    from sessiontrack.notify import Webhooks
    tracker = sessiontrack.Tracker(url, consumers=[Webhooks()])

A receiver checks each POST with :func:`verify`. Alert rules (a session ended, stuck in a
status, a node's drop-off or error rate) fire alerts to webhooks, Slack, Teams and e-mail::

    from sessiontrack.notify import Alerts, AlertRule, Target
    rule = AlertRule.session_ended("expired", statuses=["expired"], targets=[Target.slack(url)])
    tracker = sessiontrack.Tracker(url, consumers=[Alerts([rule])])

See docs/notifications.md.
"""

from __future__ import annotations

from ._alert_service import AlertService
from ._alerting import Alerts
from ._delivery import GROUP, WebhookConsumer, Webhooks, event_json
from ._models import ACTIVE, EVENT_NAMES, PAUSED, CreatedWebhook, Webhook, WebhookDelivery
from ._rules import AlertRule, Target
from ._service import WebhookService
from ._signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from ._targets import SMTP, alert_json

__all__ = [
    "ACTIVE",
    "EVENT_NAMES",
    "GROUP",
    "PAUSED",
    "SIGNATURE_HEADER",
    "SMTP",
    "TIMESTAMP_HEADER",
    "AlertRule",
    "AlertService",
    "Alerts",
    "CreatedWebhook",
    "Target",
    "Webhook",
    "WebhookConsumer",
    "WebhookDelivery",
    "WebhookService",
    "Webhooks",
    "alert_json",
    "event_json",
    "sign",
    "verify",
]
