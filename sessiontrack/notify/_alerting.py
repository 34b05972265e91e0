"""Evaluating alert rules and delivering their alerts: the ``alerts`` consumer group."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from ..abc import Store
from ..analytics._service import Analytics
from ..consumer import Consumer, ConsumerGroup, backoff, check_backoff
from ..errors import SessionTrackError
from ..events import SESSION_COMPLETED, STATUS_CHANGED, StoredEvent
from ..status import TERMINAL_STATUSES
from ..store import SQLAlchemyStore
from ..store._alerts import DELIVERED, FAILED
from . import _rules as r
from ._rules import AlertRule
from ._targets import SMTP, Sender, alert_json, http_error

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
GROUP = "alerts"
CURSOR = "alerts"


def session_link(session_id: str) -> str:
    return f"#/sessions/{session_id}"


def analytics_link(chatbot_id: str, version: str | None, start: datetime, end: datetime) -> str:
    """The analytics page over the (UTC) days the window covers: the page takes whole
    dates."""
    from urllib.parse import urlencode

    params = {"chatbotId": chatbot_id, "startDate": start.date().isoformat()}
    params["endDate"] = end.date().isoformat()
    if version:
        params["version"] = version
    return "#/analytics?" + urlencode(params)


class _Ended(Consumer):
    """Reads the log for session ends (cursor ``alerts``) and fires the ``session_ended``
    rules; the alert and its outbox rows are one transaction, unique per rule and
    session, so an end read twice fires once."""

    name = CURSOR

    def __init__(self, group: Alerts) -> None:
        self.group = group

    async def handle(self, events: Sequence[StoredEvent]) -> int | None:
        ends = [e for e in events if _ended(e)]
        if not ends:
            return None
        rules = [x for x in await self.group.rules() if x.kind == r.SESSION_ENDED]
        found = [(x, _end_alert(x, e)) for e in ends for x in rules if _matches_end(x, e)]
        if found:  # one transaction for the batch: the writer shares the database
            await self.group.fire_many(found)
        return None


def _ended(event: StoredEvent) -> bool:
    if event.kind == SESSION_COMPLETED:
        return True
    return event.kind == STATUS_CHANGED and event.data.get("status") in TERMINAL_STATUSES


def _matches_end(rule: AlertRule, event: StoredEvent) -> bool:
    statuses, reasons = rule.params.get("statuses") or [], rule.params.get("reasons") or []
    status, reason = event.data.get("status", "completed"), event.data.get("reason")
    return (
        rule.applies_to(event.chatbot_id)
        and (not statuses or status in statuses)
        and (not reasons or reason in reasons)
    )


def _end_alert(rule: AlertRule, event: StoredEvent) -> dict[str, Any]:
    status, reason = event.data.get("status", "completed"), event.data.get("reason")
    title = f"Session ended {status}" + (f" ({reason})" if reason else "")
    return {
        "key": event.session_id,
        "chatbot_id": event.chatbot_id,
        "session_id": event.session_id,
        "title": f"{title} · {event.chatbot_id}",
        "link": session_link(event.session_id),
        "details": {
            "status": status,
            "reason": reason,
            "conversationId": event.data.get("conversation_id"),
            "duration": event.data.get("duration"),
            "seq": event.seq,
        },
    }


class Alerts(ConsumerGroup):
    """Evaluates alert rules and delivers their alerts; pass it to the tracker,
    ``Tracker(url, consumers=[Alerts(rules=[...])])``, in every process that may do so:
    one of them does at a time (the ``alerts`` lease).

    - **Session ended** rules follow the committed log from a cursor of their own
      (``alerts``): at least once, and once per rule and session (the alerts table is
      unique per rule and key).
    - **Stuck** and **node rate** rules are evaluated every ``evaluate_interval``
      seconds: a stuck session fires once per status spell; a node rate fires once per
      crossing of its threshold and is resolved when the rate is back at or below it.
    - Every alert is written with one outbox row per target, in the same transaction;
      a delivery task works through the outbox, retrying a failed delivery after an
      exponential backoff with full jitter (``retry_initial`` to ``retry_max``) up to
      ``max_attempts`` times. Nothing of this runs in the writer or under its lock.

    :param rules: the code's rules (:class:`AlertRule`), written to the rules table at
        start (id from their name) beside the rules made through ``/alerts/rules``.
    :param dashboard_url: the dashboard's address (``https://ops.example/api/chatbot-sessions/ui/``),
        to which each alert's link (``#/sessions/<id>``) is appended in what is sent.
    :param smtp: the SMTP server of the e-mail targets.
    :param retention: how long alerts (and their delivery records) are kept; node rate
        alerts still open are kept until resolved.
    :param transport: an ``httpx`` transport (tests, proxies); redirects are never followed.
    """

    def __init__(
        self,
        rules: Iterable[AlertRule] = (),
        *,
        dashboard_url: str | None = None,
        smtp: SMTP | None = None,
        evaluate_interval: float = 30.0,
        refresh_interval: float = 5.0,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        max_attempts: int = 12,
        timeout: float = 10.0,
        retention: timedelta = timedelta(days=30),
        poll_interval: float = 1.0,
        lease_retry: float = 2.0,
        lease_check: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http_error = http_error("alert delivery")
        super().__init__(
            GROUP, poll_interval=poll_interval, lease_retry=lease_retry, lease_check=lease_check
        )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        check_backoff(retry_initial, retry_max)
        self.code_rules = list(rules)
        names = [x.name for x in self.code_rules]
        if len(set(names)) != len(names):
            raise ValueError(f"alert rules need distinct names, got {names}")
        self.dashboard_url = dashboard_url
        self.smtp = smtp
        self.evaluate_interval = evaluate_interval
        self.refresh_interval = refresh_interval
        self.retry = (retry_initial, retry_max)
        self.max_attempts = max_attempts
        self.timeout = timeout
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, got {retention}")
        self.retention = retention
        self._transport = transport
        self._sql: SQLAlchemyStore | None = None
        self._rules: list[AlertRule] | None = None
        self._loaded = 0.0
        self._outbox = anyio.Event()
        self.add(_Ended(self))

    # --- rules ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the rules again at the next use (this process just changed them)."""
        self._loaded = 0.0

    async def rules(self) -> list[AlertRule]:
        """Every rule, as the database has them (read again every ``refresh_interval``)."""
        if self._rules is None or time.monotonic() - self._loaded > self.refresh_interval:
            rows = await self.store.alert_rules_rows()
            self._rules = [AlertRule.from_row(row) for row in rows]
            self._loaded = time.monotonic()
        return self._rules

    @property
    def store(self) -> SQLAlchemyStore:
        if self._sql is None:
            raise RuntimeError("the alerts group is not running")
        return self._sql

    async def run(self, store: Store) -> None:
        if not isinstance(store, SQLAlchemyStore):
            raise TypeError(f"alerts need the SQLAlchemy store, got {type(store).__name__}")
        self._sql = store
        await self._prepare(store)
        await super().run(store)

    async def _prepare(self, store: SQLAlchemyStore) -> None:
        """The code's rules into the table, so that every process lists them; and the
        cursor, at the log's head the first time, so that the ends committed from the
        tracker's start on are evaluated even before this process leads."""
        try:
            await store.create_cursor(CURSOR)
        except Exception:
            log.warning("alerts: creating the cursor failed", exc_info=True)
        for rule in self.code_rules:
            try:
                await store.put_alert_rule(rule.to_row(), replace=True)
            except Exception:
                log.warning("alerts: writing rule %r failed", rule.name, exc_info=True)

    # --- firing ----------------------------------------------------------------------

    async def fire(self, rule: AlertRule, **alert: Any) -> int | None:
        """Record an alert and its deliveries: ``key`` (unique per rule), ``chatbot_id``,
        ``title``, ``link``, ``details``, optionally ``session_id``, ``node_id``, ``at``.
        ``None``: this rule already fired for ``key``."""
        (alert_id,) = await self.fire_many([(rule, alert)])
        return alert_id

    async def fire_many(
        self, alerts: Sequence[tuple[AlertRule, dict[str, Any]]]
    ) -> list[int | None]:
        """:meth:`fire` for several alerts, in one transaction."""
        now = datetime.now(UTC)
        rows = []
        for rule, a in alerts:
            row = {
                "rule_id": rule.id,
                "key": a["key"][:500],
                "kind": rule.kind,
                "chatbot_id": a["chatbot_id"],
                "session_id": a.get("session_id"),
                "node_id": a.get("node_id"),
                "title": a["title"][:1000],
                "link": a["link"][:2000],
                "details": {"rule": rule.name, **a["details"]},
                "fired_at": a.get("at") or now,
            }
            rows.append((row, [t.to_row() for t in rule.targets]))
        ids = await self.store.fire_alerts(rows)
        for (row, _), alert_id in zip(rows, ids, strict=True):
            if alert_id is not None:
                log.info(
                    "alert %s fired: %s (rule %r)", alert_id, row["title"], row["details"]["rule"]
                )
        if any(i is not None for i in ids):
            self._outbox.set()
        return ids

    # --- while leading: evaluation and delivery ----------------------------------------

    async def while_leading(self, store: Store) -> None:
        import httpx

        client = httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, transport=self._transport
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._evaluate_loop)
                tg.start_soon(self._deliver_loop, Sender(client, self._http_error, self.smtp))
                tg.start_soon(self._prune_loop)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _prune_loop(self) -> None:
        """Drop the alerts older than ``retention`` (and their deliveries), now and then."""
        every = min(3600.0, max(0.05, self.retention.total_seconds() / 10))
        while True:
            try:
                pruned = await self.store.prune_alerts(datetime.now(UTC) - self.retention)
                if pruned:
                    log.info("alerts: %d alerts older than %s pruned", pruned, self.retention)
            except Exception as exc:
                log.warning("alerts: pruning failed: %s", exc)
            await anyio.sleep(every)

    async def _evaluate_loop(self) -> None:
        while True:
            try:
                await self.evaluate()
            except Exception as exc:
                log.warning(
                    "alerts: evaluating the periodic rules failed: %s",
                    exc,
                    exc_info=not self.store.is_transient(exc),
                )
            await anyio.sleep(self.evaluate_interval)

    async def evaluate(self, now: datetime | None = None) -> None:
        """Evaluate the stuck and node rate rules once (the loop calls it)."""
        now = now or datetime.now(UTC)
        for rule in await self.rules():
            try:
                if rule.kind == r.STUCK:
                    await self._stuck(rule, now)
                elif rule.kind == r.NODE_RATE:
                    await self._node_rate(rule, now)
            except SessionTrackError as exc:  # an unknown chatbot, a bad version
                log.warning("alerts: rule %r: %s", rule.name, exc)
            except Exception as exc:
                log.warning("alerts: rule %r: %s", rule.name, exc, exc_info=True)

    async def _stuck(self, rule: AlertRule, now: datetime) -> None:
        status = str(rule.params["status"])
        since = now - timedelta(seconds=float(rule.params["longerThan"]))
        found = await self.store.stuck_sessions(status, since, rule.chatbot_ids or None)
        keys = {f"{s['session_id']}:{s['spell_seq']}" for s in found}
        fired = await self.store.fired_keys(rule.id, keys) if keys else set()
        new = []
        for s in found:
            if f"{s['session_id']}:{s['spell_seq']}" in fired:
                continue
            minutes = (now - s["spell_at"]).total_seconds() / 60
            alert = {
                "key": f"{s['session_id']}:{s['spell_seq']}",
                "chatbot_id": s["chatbot_id"],
                "session_id": s["session_id"],
                "title": f"Session stuck in {status} for {minutes:.0f} min · {s['chatbot_id']}",
                "link": session_link(s["session_id"]),
                "details": {"status": status, "since": s["spell_at"].isoformat()},
                "at": now,
            }
            new.append((rule, alert))
        if new:
            await self.fire_many(new)

    async def _node_rate(self, rule: AlertRule, now: datetime) -> None:
        p = rule.params
        start = now - timedelta(seconds=float(p["window"]))
        end = now + timedelta(minutes=15)  # the analytics floor to the quarter-hour
        open_alerts = {
            (a["chatbot_id"], a["node_id"]): a
            for a in await self.store.alerts_rows(rule_id=rule.id, open_only=True, limit=10_000)
        }
        for chatbot_id in rule.chatbot_ids:
            answer = await Analytics(self.store).nodes(
                chatbot_id, version=p.get("version"), start_date=start, end_date=end
            )
            for node in answer["nodes"]:
                if p.get("nodeId") is not None and node["nodeId"] != p["nodeId"]:
                    continue
                await self._node_crossing(rule, answer, node, open_alerts, now, start)

    async def _node_crossing(
        self,
        rule: AlertRule,
        answer: dict[str, Any],
        node: dict[str, Any],
        open_alerts: dict[tuple[str, str | None], dict[str, Any]],
        now: datetime,
        start: datetime,
    ) -> None:
        p = rule.params
        chatbot_id, node_id = answer["chatbotId"], node["nodeId"]
        sessions = int(node["sessions"])
        if p["metric"] == "error":
            rate = min(1.0, node["errors"] / node["visits"]) if node["visits"] else 0.0
        else:
            rate = float(node["dropOffRate"] or 0.0)
        above = sessions >= int(p["minSessions"]) and rate > float(p["threshold"])
        current = open_alerts.get((chatbot_id, node_id))
        if current is not None and not above:
            await self.store.resolve_alert(int(current["id"]), now)
            log.info("alert %s resolved: %s back at %.3f", current["id"], node_id, rate)
        if current is not None or not above:
            return
        label = node.get("label") or node_id
        what = "error rate" if p["metric"] == "error" else "drop-off rate"
        await self.fire(
            rule,
            key=f"{chatbot_id}:{node_id}:{now.isoformat()}",
            chatbot_id=chatbot_id,
            node_id=node_id,
            title=f"{label}: {what} {rate:.0%} > {float(p['threshold']):.0%} · {chatbot_id}",
            link=analytics_link(chatbot_id, answer.get("version"), start, now),
            details={
                "metric": p["metric"],
                "rate": round(rate, 4),
                "threshold": p["threshold"],
                "sessions": sessions,
                "window": p["window"],
                "version": answer.get("version"),
            },
            at=now,
        )

    async def _deliver_loop(self, sender: Sender) -> None:
        while True:
            self._outbox = anyio.Event()
            wait = self.poll_interval
            try:
                await self.deliver_due(sender)
                due = await self.store.next_alert_delivery_at()
                if due is not None:
                    wait = min(wait, max(0.0, (due - datetime.now(UTC)).total_seconds()))
            except Exception as exc:
                log.warning(
                    "alerts: the outbox failed: %s", exc, exc_info=not self.store.is_transient(exc)
                )
            with anyio.move_on_after(wait):
                await self._outbox.wait()

    async def deliver_due(self, sender: Sender) -> None:
        """Send every delivery that is due, a few at a time."""
        while True:
            due = await self.store.due_alert_deliveries(datetime.now(UTC), 20)
            if not due:
                return
            async with anyio.create_task_group() as tg:
                for row in due:
                    tg.start_soon(self._deliver, sender, row)

    async def _deliver(self, sender: Sender, row: dict[str, Any]) -> None:
        alert = alert_json(row["alert"], self.dashboard_url)
        key = f"alert-{alert['id']}-{row['position']}"
        error = await sender.send(row["target"], alert, key)
        attempts = int(row["attempts"]) + 1
        now = datetime.now(UTC)
        if error is None:
            await self.store.update_alert_delivery(
                row["id"], state=DELIVERED, attempts=attempts, error=None, delivered_at=now
            )
            return
        if attempts >= self.max_attempts:
            log.warning(
                "alert %s: %s delivery failed for good: %s", alert["id"], row["type"], error
            )
            await self.store.update_alert_delivery(
                row["id"], state=FAILED, attempts=attempts, error=error
            )
            return
        delay = backoff(attempts, *self.retry)
        log.info(
            "alert %s: %s delivery failed (%s); retry in %.1f s",
            alert["id"],
            row["type"],
            error,
            delay,
        )
        await self.store.update_alert_delivery(
            row["id"], attempts=attempts, error=error, next_at=now + timedelta(seconds=delay)
        )
