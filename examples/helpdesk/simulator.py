"""A traffic simulator: customers chatting with the helpdesk through the real webhook.

Each customer posts WhatsApp Cloud API notifications to ``POST /webhook`` over HTTP, reads
the bot's replies from its "phone" (the demo's :class:`~.sender.RecordingSender`), pauses
as people do, and follows one of a few plans: some finish, some reach an agent, some walk
away (their sessions expire through the tracker's sweeper) and some get stopped by a
supervisor through ``POST /api/chatbot-sessions/{id}/stop``. Now and then a notification
is delivered twice, as Meta does on retries.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import random
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio

from .sender import RecordingSender
from .whatsapp import sign

log = logging.getLogger(__name__)

NAMES = [
    "Ann Lee",
    "Bruno Díaz",
    "Chen Wei",
    "Dana Novak",
    "Emeka Obi",
    "Fatima Zahra",
    "Gustav Berg",
    "Hana Sato",
    "Ivan Petrov",
    "Julia Costa",
    "Kofi Mensah",
    "Lena Vogel",
    "Mateo Rossi",
    "Nadia Haddad",
    "Omar Farouk",
    "Priya Nair",
    "Quinn Murphy",
    "Rosa Lima",
    "Sven Olsen",
    "Tariq Aziz",
    "Uma Iyer",
    "Victor Hugo",
    "Wen Li",
    None,
]
OUTCOMES = ("finished", "agent", "abandoned", "stopped", "failed")


@dataclass
class Tally:
    started: int = 0
    chatting: int = 0
    messages: int = 0
    redelivered: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))


class Customer:
    """One person on WhatsApp: says things, taps buttons, fills forms."""

    def __init__(self, sim: Simulator, phone: str, name: str | None) -> None:
        self.sim, self.phone, self.name = sim, phone, name
        self._ids = itertools.count(1)

    async def pause(self, low: float = 1.0) -> None:
        lo, hi = self.sim.pause
        await anyio.sleep(self.sim.rng.uniform(lo * low, hi))

    async def say(self, text: str) -> None:
        await self._send({"type": "text", "text": {"body": text}})

    async def tap(self, option_id: str) -> None:
        """Tap a reply button or a list row of the bot's last message."""
        body = self._last_body()
        inter = body.get("interactive", {})
        if inter.get("type") == "button":
            titles = {b["reply"]["id"]: b["reply"]["title"] for b in inter["action"]["buttons"]}
            kind = "button_reply"
        elif inter.get("type") == "list":
            titles = {r["id"]: r["title"] for s in inter["action"]["sections"] for r in s["rows"]}
            kind = "list_reply"
        else:
            raise LookupError(f"{self.phone}: nothing to tap in {body.get('type')!r}")
        reply = {"id": option_id, "title": titles[option_id]}
        await self._send(
            {
                "type": "interactive",
                "context": self._context(),
                "interactive": {"type": kind, kind: reply},
            }
        )

    async def fill_form(self, answers: dict[str, Any]) -> None:
        """Complete the WhatsApp Flow the bot sent last (an ``nfm_reply``)."""
        params = self._last_body()["interactive"]["action"]["parameters"]
        response = {"flow_token": params["flow_token"], **answers}
        await self._send(
            {
                "type": "interactive",
                "context": self._context(),
                "interactive": {
                    "type": "nfm_reply",
                    "nfm_reply": {
                        "name": "flow",
                        "body": "Sent",
                        "response_json": json.dumps(response),
                    },
                },
            }
        )

    def _last_body(self) -> dict[str, Any]:
        last = self.sim.sender.last(self.phone)
        if last is None:
            raise LookupError(f"{self.phone}: the bot has not said anything")
        return last.body

    def _context(self) -> dict[str, str]:
        last = self.sim.sender.last(self.phone)
        return {"from": "15550001111", "id": last.id if last else ""}

    async def _send(self, message: dict[str, Any]) -> None:
        message = {
            "from": self.phone,
            "id": f"wamid.{secrets.token_urlsafe(18)}",
            "timestamp": str(int(time.time())),
            **message,
        }
        contact: dict[str, Any] = {"wa_id": self.phone}
        if self.name:
            contact["profile"] = {"name": self.name}
        note = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550001111",
                                    "phone_number_id": "106540352242922",
                                },
                                "contacts": [contact],
                                "messages": [message],
                            },
                        }
                    ],
                }
            ],
        }
        await self.sim.deliver(json.dumps(note).encode())
        if self.sim.rng.random() < self.sim.redeliver:
            await self.sim.deliver(json.dumps(note).encode())
            self.sim.tally.redelivered += 1


Plan = Callable[[Customer], Awaitable[str]]


class HttpError(OSError):
    """The helpdesk answered with an error status."""


async def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Any:
    """One HTTP request with the standard library (in a worker thread, so the demo needs
    no HTTP client package); returns the decoded JSON answer."""

    def call() -> Any:
        request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise HttpError(f"{method} {url}: {exc.code} {exc.read()[:200]!r}") from None

    return await anyio.to_thread.run_sync(call)


async def order_found(c: Customer) -> str:
    await c.say(c.sim.rng.choice(["hi", "Hello!", "hey there", "good morning"]))
    await c.pause()
    await c.tap("order")
    await c.pause()
    if c.sim.rng.random() < 0.3:
        await c.say("where is my package??")
        await c.pause()
    await c.say(c.sim.rng.choice(["A-1001", "a1002", "A 1003", "A-1004"]))
    await c.pause()
    await c.tap("no")
    return "finished"


async def order_not_found(c: Customer) -> str:
    await c.say("hi")
    await c.pause()
    await c.tap("order")
    await c.pause()
    await c.say("B-7731")
    await c.pause()
    if c.sim.rng.random() < 0.5:
        await c.tap("agent")
        return "agent"
    await c.tap("retry")
    await c.pause()
    await c.say("A-1002")
    await c.pause()
    await c.tap("yes")
    await c.pause()
    await c.tap("agent")
    return "agent"


async def support_ticket(c: Customer) -> str:
    rng = c.sim.rng
    await c.say("hello, I need help")
    await c.pause()
    await c.tap("support")
    await c.pause()
    await c.tap(rng.choice(["login", "billing", "bug", "other"]))
    await c.pause(low=2.0)  # filling in a form takes a while
    severity = rng.choice(["low", "normal", "high"])
    await c.fill_form(
        {
            "description": "The app shows an error when I open my invoices.",
            "severity": severity,
            "email": f"customer{c.phone[-4:]}@example.com",
        }
    )
    if severity == "high":
        return "agent"
    return "finished"


async def straight_to_agent(c: Customer) -> str:
    await c.say("I want to talk to a human")
    await c.pause()
    if c.sim.rng.random() < 0.5:
        await c.say("talk to an agent")  # typing a button's title works too
    else:
        await c.tap("agent")
    return "agent"


async def walks_away(c: Customer) -> str:
    await c.say("hi")
    await c.pause()
    if c.sim.rng.random() < 0.5:
        await c.tap("order")
    else:
        await c.tap("support")
    return "abandoned"  # never answers again: the sweeper expires the session


async def gets_stopped(c: Customer) -> str:
    await c.say("hi, my account is locked")
    await c.pause()
    await c.tap("support")
    await c.pause()
    await c.tap("login")
    await anyio.sleep(c.sim.rng.uniform(*c.sim.stop_after))
    await c.sim.supervisor_stop(c.phone)
    return "stopped"


PLANS: list[tuple[Plan, float]] = [
    (order_found, 0.22),
    (order_not_found, 0.12),
    (support_ticket, 0.2),
    (straight_to_agent, 0.12),
    (walks_away, 0.2),
    (gets_stopped, 0.14),
]


class Simulator:
    """Plays customers against a running helpdesk at ``base_url``.

    :param customers: how many to play in all (``None``: until cancelled).
    :param concurrency: customers chatting at the same time at the most.
    :param mix: plans to play in turn (default: picked at random with :data:`PLANS`'
        weights).
    """

    def __init__(
        self,
        base_url: str,
        sender: RecordingSender,
        *,
        app_secret: str | None = None,
        customers: int | None = None,
        concurrency: int = 10,
        arrival: tuple[float, float] = (0.3, 1.5),
        pause: tuple[float, float] = (0.8, 3.0),
        stop_after: tuple[float, float] = (3.0, 8.0),
        redeliver: float = 0.05,
        seed: int | None = None,
        out: TextIO | None = None,
        mix: Sequence[Plan] | None = None,
        api_prefix: str = "/api/chatbot-sessions",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sender = sender
        self.app_secret = app_secret
        self.customers = customers
        self.concurrency = concurrency
        self.arrival, self.pause, self.stop_after = arrival, pause, stop_after
        self.redeliver = redeliver
        self.rng = random.Random(seed)
        self.out = out
        self.mix = list(mix or [])
        self.api = api_prefix
        self.tally = Tally()
        self.tracker_stats: dict[str, Any] = {}

    async def run(self) -> Tally:
        """Play customers (all of them, or until cancelled), then return the tally."""
        limiter = anyio.Semaphore(self.concurrency)
        progress = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            if self.out is not None:
                tg.start_soon(self._progress, progress)
            async with anyio.create_task_group() as players:
                for n in itertools.count():
                    if self.customers is not None and n >= self.customers:
                        break
                    await limiter.acquire()
                    players.start_soon(self._play, limiter, self._plan(n))
                    await anyio.sleep(self.rng.uniform(*self.arrival))
            progress.cancel()
            if self.out is not None:
                await self._refresh_stats()
                self._print(final=True)
        return self.tally

    def _plan(self, n: int) -> Plan:
        if self.mix:
            return self.mix[n % len(self.mix)]
        plans = [plan for plan, _ in PLANS]
        return self.rng.choices(plans, [weight for _, weight in PLANS])[0]

    async def _play(self, limiter: anyio.Semaphore, plan: Plan) -> None:
        phone = f"1555{self.rng.randrange(10**7):07d}"
        customer = Customer(self, phone, self.rng.choice(NAMES))
        self.tally.started += 1
        self.tally.chatting += 1
        try:
            outcome = await plan(customer)
        except (OSError, LookupError, KeyError) as exc:
            log.warning("simulated customer %s failed: %r", phone, exc)
            outcome = "failed"
        finally:
            self.tally.chatting -= 1
            limiter.release()
        self.tally.outcomes[outcome] += 1
        self.sender.forget(phone)

    async def deliver(self, body: bytes) -> None:
        """POST a notification to the webhook, signed when an app secret is set."""
        headers = {"Content-Type": "application/json"}
        if self.app_secret:
            headers["X-Hub-Signature-256"] = sign(body, self.app_secret)
        await http("POST", f"{self.base_url}/webhook", body, headers)
        self.tally.messages += 1

    async def supervisor_stop(self, phone: str) -> None:
        """What a supervisor does on the dashboard: find the session and stop it."""
        query = urllib.parse.urlencode({"conversationId": phone, "filter": "active", "limit": 1})
        found = await http("GET", f"{self.base_url}{self.api}/?{query}")
        for session in found["data"]:
            await http("POST", f"{self.base_url}{self.api}/{session['id']}/stop")

    async def _refresh_stats(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.tracker_stats = await http("GET", f"{self.base_url}{self.api}/stats")

    async def _progress(self, scope: anyio.CancelScope) -> None:
        tty = bool(self.out and self.out.isatty())
        with scope:
            for tick in itertools.count():
                await anyio.sleep(1.0)
                await self._refresh_stats()
                if tty or tick % 10 == 9:
                    self._print()

    def _print(self, *, final: bool = False) -> None:
        if self.out is None:
            return
        t, by = self.tally, self.tracker_stats.get("byStatus", {})
        line = (
            f"customers {t.started} · chatting {t.chatting} · finished "
            f"{t.outcomes['finished']} · agent {t.outcomes['agent']} · walked away "
            f"{t.outcomes['abandoned']} · stopped {t.outcomes['stopped']} · messages "
            f"{t.messages} | sessions: active {self.tracker_stats.get('active', '?')}, "
            f"completed {by.get('completed', 0)}, expired {by.get('expired', 0)}, "
            f"stopped {by.get('stopped', 0)}"
        )
        if self.out.isatty() and not final:
            self.out.write("\r\x1b[2K" + line)
        else:
            self.out.write(("\r\x1b[2K" if self.out.isatty() else "") + line + "\n")
        self.out.flush()
