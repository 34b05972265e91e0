"""The demo's alert rules, posted to a local receiver (``--alerts-url``; see
docs/notifications.md and ``python -m examples.helpdesk.alert_receiver``)."""

from __future__ import annotations

from datetime import timedelta

from sessiontrack.notify import AlertRule, Alerts, Target

DEFAULT_SECRET = "helpdesk-alerts-secret"
"""The signing secret of the webhook target when ``HELPDESK_ALERTS_SECRET`` is not set."""


def target(url: str, kind: str, secret: str) -> Target:
    if kind == "slack":
        return Target.slack(url)
    if kind == "teams":
        return Target.teams(url)
    return Target.webhook(url, secret)


def demo_alerts(
    url: str, *, kind: str = "webhook", secret: str = DEFAULT_SECRET, dashboard_url: str | None
) -> Alerts:
    """Three rules an on-call engineer of the helpdesk would want: a customer's session
    expired or was stopped; a session waits on the WhatsApp Flow form for over two
    minutes; a node loses more than half of its sessions over the last hour."""
    to = [target(url, kind, secret)]
    rules = [
        AlertRule.session_ended(
            "helpdesk: session expired or stopped", statuses=["expired", "stopped"], targets=to
        ),
        AlertRule.stuck(
            "helpdesk: waiting on a flow form",
            status="waiting_flow",
            longer_than=timedelta(minutes=2),
            targets=to,
        ),
        AlertRule.node_rate(
            "helpdesk: drop-off at a node",
            chatbot_ids=["helpdesk"],
            threshold=0.5,
            window=timedelta(hours=1),
            min_sessions=5,
            targets=to,
        ),
    ]
    return Alerts(rules, dashboard_url=dashboard_url, evaluate_interval=10.0)
