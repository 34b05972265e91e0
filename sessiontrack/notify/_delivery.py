"""Delivering the committed log to webhook subscriptions: one durable consumer each."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from ..abc import Store
from ..consumer import Consumer, ConsumerGroup, backoff, check_backoff
from ..events import StoredEvent
from ..store import SQLAlchemyStore
from ..store._webhooks import cursor_name
from . import _models as m
from ._signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from ._targets import http_error

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
USER_AGENT = "sessiontrack-webhooks/1"
GROUP = "webhooks"


def event_json(event: StoredEvent) -> dict[str, Any]:
    """One event of a delivery's body: ``seq`` (its idempotency key), ``event`` (the live
    event's name), ids, time, and ``data``, the live event's payload."""
    return {
        "seq": event.seq,
        "event": event.wire_name,
        "sessionId": event.session_id,
        "chatbotId": event.chatbot_id,
        "at": event.at.isoformat(),
        "data": event.to_wire(),
    }


class WebhookConsumer(Consumer):
    """Delivers one subscription's events, in sequence order, from its own cursor."""

    creates_cursor = False  # made with the subscription, deleted with it

    def __init__(self, hooks: Webhooks, row: dict[str, Any]) -> None:
        self.hooks = hooks
        self.id: str = row["id"]
        self.name = cursor_name(self.id)
        self.version = row["updated_at"]
        self.url: str = row["url"]
        self._secret: str = row["secret"]
        self._kinds = m.kinds_of(row["events"] or ())
        self._chatbots = frozenset(row["chatbot_ids"] or ())
        self.batch = int(row["batch"])
        self.batch_size = max(self.batch, 200)  # events read at once; filtered here
        self.failures = int(row["failures"])
        self._active = True

    @property
    def active(self) -> bool:
        return self._active

    def wants(self, event: StoredEvent) -> bool:
        return (not self._kinds or event.kind in self._kinds) and (
            not self._chatbots or event.chatbot_id in self._chatbots
        )

    async def handle(self, events: Sequence[StoredEvent]) -> int | None:
        chosen = [e for e in events if self.wants(e)]
        if not chosen:
            return None
        chunk = chosen[: self.batch]
        if not await self._deliver(chunk):
            return chunk[0].seq - 1  # paused: everything before this POST is done
        # one POST per handle() call, so the cursor moves after every delivered POST
        return None if len(chosen) <= self.batch else chosen[self.batch].seq - 1

    async def _deliver(self, chunk: Sequence[StoredEvent]) -> bool:
        first, last = chunk[0].seq, chunk[-1].seq
        key = f"{first}-{last}" if first != last else str(first)
        body = orjson.dumps({"webhookId": self.id, "events": [event_json(e) for e in chunk]})
        attempt = 0
        while True:
            attempt += 1
            status, error, latency = await self._post(body, key)
            await self.hooks.record(self, first, last, len(chunk), attempt, status, error, latency)
            if error is None:
                if self.failures:
                    self.failures = 0
                    await self.hooks.store_of().set_webhook_failures(self.id, 0)
                return True
            self.failures += 1
            reason = self.hooks.pause_reason(self.failures, status, error)
            if reason is not None:
                await self.hooks.pause(self, reason)
                return False
            await self.hooks.store_of().set_webhook_failures(self.id, self.failures)
            delay = backoff(self.failures, self.hooks.retry_initial, self.hooks.retry_cap)
            log.info(
                "webhook %s: delivery %s failed (%s); retry %d in %.1f s",
                self.id,
                key,
                error,
                self.failures,
                delay,
            )
            await anyio.sleep(delay)

    async def _post(self, body: bytes, key: str) -> tuple[int | None, str | None, float]:
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Sessiontrack-Webhook": self.id,
            "X-Sessiontrack-Delivery": key,
            "Idempotency-Key": key,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self._secret, ts, body),
        }
        t0 = time.perf_counter()
        try:
            answer = await self.hooks.client().post(self.url, content=body, headers=headers)
        except self.hooks.http_error as exc:
            return None, f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__, _ms(t0)
        latency = _ms(t0)
        if 200 <= answer.status_code < 300:
            return answer.status_code, None, latency
        return answer.status_code, f"HTTP {answer.status_code}", latency


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


class Webhooks(ConsumerGroup):
    """Delivers to the webhook subscriptions kept in the database: pass it to the tracker,
    ``Tracker(url, consumers=[Webhooks()])``, in every process that may deliver; one of
    them does at a time (the ``webhooks`` lease).

    Each subscription is a consumer of its own (cursor ``webhook:<id>``): at least once,
    in sequence order (so in order per session), up to the subscription's ``batch``
    events per POST, signed (``X-Sessiontrack-Signature``). A failed POST (no answer
    within ``timeout``, or not 2xx) is retried, the same events again, after an
    exponential backoff with full jitter from ``retry_initial`` to ``retry_max``
    seconds; after ``max_failures`` consecutive failures (or at once on ``410 Gone``)
    the subscription is paused with the reason, until resumed. Every attempt is logged
    (``GET /webhooks/{id}/deliveries``) and kept for ``log_retention``.

    :param refresh_interval: seconds between reloads of the subscriptions (added,
        removed, paused or resumed by any process).
    :param transport: an ``httpx`` transport (tests, proxies); redirects are never
        followed.
    """

    def __init__(
        self,
        *,
        max_failures: int = 15,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        timeout: float = 10.0,
        log_retention: timedelta = timedelta(days=7),
        refresh_interval: float = 2.0,
        poll_interval: float = 1.0,
        lease_retry: float = 2.0,
        lease_check: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http_error = http_error("webhook delivery")
        super().__init__(
            GROUP, poll_interval=poll_interval, lease_retry=lease_retry, lease_check=lease_check
        )
        if max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, got {max_failures}")
        check_backoff(retry_initial, retry_max)
        self.max_failures = max_failures
        self.retry_initial = retry_initial
        self.retry_cap = retry_max
        self.timeout = timeout
        self.log_retention = log_retention
        self.refresh_interval = refresh_interval
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._store: SQLAlchemyStore | None = None
        self._refresh = anyio.Event()
        self._paused_at: dict[str, datetime] = {}

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the webhooks group is not leading")
        return self._client

    def store_of(self) -> SQLAlchemyStore:
        assert self._store is not None
        return self._store

    def refresh(self) -> None:
        """Reload the subscriptions now (this process just changed them)."""
        self._refresh.set()

    def pause_reason(self, failures: int, status: int | None, error: str) -> str | None:
        if status == 410:
            return "the receiver answered 410 Gone"
        if failures >= self.max_failures:
            return f"{failures} consecutive failed deliveries; the last: {error}"
        return None

    async def pause(self, consumer: WebhookConsumer, reason: str) -> None:
        consumer._active = False
        now = datetime.now(UTC)
        self._paused_at[consumer.id] = now  # a read of the rows from before it: stale
        await self.store_of().update_webhook(
            consumer.id,
            state=m.PAUSED,
            paused_reason=reason[:1000],
            failures=consumer.failures,
            updated_at=now,
        )
        log.warning("webhook %s (%s) paused: %s", consumer.id, consumer.url, reason)

    async def record(
        self,
        consumer: WebhookConsumer,
        first: int,
        last: int,
        events: int,
        attempt: int,
        status: int | None,
        error: str | None,
        latency: float,
    ) -> None:
        row = {
            "webhook_id": consumer.id,
            "at": datetime.now(UTC),
            "first_seq": first,
            "last_seq": last,
            "events": events,
            "attempt": attempt,
            "status_code": status,
            "latency_ms": latency,
            "error": error,
        }
        try:
            await self.store_of().log_delivery(row)
        except Exception:
            log.warning("webhook %s: the delivery log failed", consumer.id, exc_info=True)

    async def while_leading(self, store: Store) -> None:
        if not isinstance(store, SQLAlchemyStore):
            raise TypeError(f"webhooks need the SQLAlchemy store, got {type(store).__name__}")
        self._store = store
        self._refresh = anyio.Event()
        import httpx

        client = httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, transport=self._transport
        )
        self._client = client
        pruned = 0.0
        try:
            while True:
                try:
                    await self._sync(store)
                    if time.monotonic() - pruned > 60:
                        pruned = time.monotonic()
                        await store.prune_deliveries(datetime.now(UTC) - self.log_retention)
                except Exception as exc:
                    log.warning(
                        "webhooks: reading the subscriptions failed: %s",
                        exc,
                        exc_info=not store.is_transient(exc),
                    )
                with anyio.move_on_after(self.refresh_interval):
                    await self._refresh.wait()
                self._refresh = anyio.Event()
        finally:
            self._client = None
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _sync(self, store: SQLAlchemyStore) -> None:
        """Run a consumer for each active subscription; stop the others (removed, paused,
        or changed: a changed one starts again with what it now says)."""
        rows = {
            r["id"]: r
            for r in await store.webhooks_rows()
            if r["state"] == m.ACTIVE
            and not r["updated_at"] <= self._paused_at.get(r["id"], _EPOCH)
        }
        running = {c.id: c for c in self.consumers.values() if isinstance(c, WebhookConsumer)}
        for wid, consumer in running.items():
            row = rows.get(wid)
            if row is None or row["updated_at"] != consumer.version:
                self.remove(consumer.name)
        current = self.consumers
        for wid, row in rows.items():
            if cursor_name(wid) not in current and row.get("cursor") is not None:
                self.add(WebhookConsumer(self, row))
