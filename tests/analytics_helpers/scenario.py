"""Random sessions over two versions of a flow, reported through the real hooks.

:func:`plan` draws a scenario from a seed: v1 is registered, sessions run, v2 (which drops
node ``faq`` and adds ``survey``) is registered at :data:`SPLIT`, more sessions run, and the
v1 sessions still running then go on. Sessions walk the flow with loops and self-loops,
wait for input (answered or not), message both ways, call an LLM, fail at nodes, and end
completed, expired, stopped (by a hook or by ``Tracker.stop``) or not at all; some report
after their end (inside the completion grace window, or late). :func:`report` replays the
plan on a tracker and returns the plain list of what it reported (:class:`Report`), the
only input of the oracle.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pluggy

import sessiontrack

CHATBOT = "oracle-bot"
OTHER = "other-bot"  # same version names and node ids: none of it may leak into CHATBOT's
BASE = datetime(2026, 10, 20, tzinfo=UTC)  # crosses Europe's (Oct 25) and America's (Nov 1) DST end
DAYS = 20
SPLIT = BASE + timedelta(days=10)  # when v2 is registered (in report order)
V1, V2 = "v1", "v2"

_TYPES = {"start": "input", "bye": "output"}
_LABELS = {
    V1: {
        "start": "Start",
        "greet": "Greeting",
        "menu": "Main menu",
        "faq": "FAQ",
        "order": "Order",
        "pay": "Payment",
        "human": "Human agent",
        "bye": "Goodbye",
    },
    V2: {
        "start": "Start",
        "greet": "Greeting",
        "menu": "Main menu (new)",
        "survey": "Survey",
        "order": "Order",
        "pay": "Payment",
        "human": "Human agent",
        "bye": "Goodbye",
    },
}
_NEXT = {
    V1: {
        "start": ["greet"],
        "greet": ["menu"],
        "menu": ["menu", "faq", "order", "human"],
        "faq": ["menu", "faq", "bye"],
        "order": ["pay", "menu"],
        "pay": ["pay", "menu", "bye"],
        "human": ["bye", "menu"],
        "ghost": ["menu"],
        "survey": ["bye", "menu"],  # a v1 session that meets v2's node after the change
    },
    V2: {
        "start": ["greet"],
        "greet": ["menu"],
        "menu": ["menu", "survey", "order", "human"],
        "survey": ["bye", "menu"],
        "order": ["pay", "menu"],
        "pay": ["pay", "menu", "bye"],
        "human": ["bye", "menu"],
        "ghost": ["menu"],
    },
}
NODE_POOL = ["start", "greet", "menu", "faq", "survey", "order", "pay", "human", "bye", "ghost"]


def flow(version: str) -> dict[str, Any]:
    """The React Flow graph registered as ``version``."""
    labels = _LABELS[version]
    nodes = [
        {"id": n, "type": _TYPES.get(n, "default"), "data": {"label": lab}}
        for n, lab in labels.items()
    ]
    edges = [
        {"id": f"{s}-{t}", "source": s, "target": t}
        for s, targets in _NEXT[version].items()
        if s in labels
        for t in targets
        if t in labels
    ]
    return {"nodes": nodes, "edges": edges}


@dataclass
class Report:
    """One hook call as made (``at`` is what was passed; for ``api_stop`` the stop's
    commit time, read back afterwards)."""

    kind: str  # start, node, message, status, complete, llm, api_stop, flow
    sid: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    order: datetime | None = None  # when it is reported, if ``at`` is stamped earlier


@dataclass
class Registration:
    chatbot: str
    version: str
    flow: dict[str, Any]
    before: datetime  # wall clock around the hook call
    after: datetime


@dataclass
class Reported:
    reports: list[Report]
    registrations: list[Registration]


def _ms(rng: random.Random, mean_s: float) -> timedelta:
    """A gap: sometimes zero, mostly exponential, sometimes hours."""
    r = rng.random()
    if r < 0.07:
        return timedelta(0)
    if r < 0.12:
        return timedelta(milliseconds=rng.randint(1, 20))
    if r < 0.17:
        return timedelta(milliseconds=rng.randint(3_600_000, 30 * 3_600_000))
    return timedelta(milliseconds=int(rng.expovariate(1 / (mean_s * 1000))) + 1)


def _start_time(rng: random.Random) -> datetime:
    r = rng.random()
    if r < 0.1:  # exactly on a quarter-hour
        return BASE + timedelta(minutes=15 * rng.randrange(DAYS * 96))
    if r < 0.2:  # just before the change of version, so it runs on past it
        return SPLIT - timedelta(milliseconds=rng.randint(1, 3_600_000))
    return BASE + timedelta(milliseconds=rng.randrange(DAYS * 86_400_000))


def _session(
    rng: random.Random, index: int, long: bool, repeat_waits: bool, bot: str = CHATBOT
) -> list[Report]:
    sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    t = _start_time(rng)
    version = V1 if t < SPLIT else V2
    out = [Report("start", sid, t, {"conversation_id": f"c{index}", "chatbot": bot})]
    steps = rng.randint(105, 130) if long else min(int(rng.expovariate(1 / 6)), 40)
    node, last_mid, waiting = "start", None, False
    if rng.random() < 0.08:  # waiting before any node: no visit, so no wait to count
        t += _ms(rng, 1)
        out.append(Report("status", sid, t, {"status": "waiting_input", "node_id": None}))
        t += _ms(rng, 20)
        out.append(Report("message", sid, t, {"direction": "inbound", "mid": f"m{index}-pre"}))
        waiting = True
    for step in range(steps):
        t += _ms(rng, 40)
        error = "boom" if rng.random() < 0.08 else None
        out.append(Report("node", sid, t, {"node_id": node, "error": error}))
        if rng.random() < 0.6:
            t += _ms(rng, 2)
            mid = last_mid if last_mid and rng.random() < 0.1 else f"m{index}-{step}-o"
            out.append(
                Report("message", sid, t, {"direction": "outbound", "node_id": node, "mid": mid})
            )
            last_mid = mid
        if rng.random() < 0.3:
            t += _ms(rng, 3)
            out.append(
                Report(
                    "llm",
                    sid,
                    t,
                    {
                        "node_id": node,
                        "input_tokens": rng.randint(0, 2000),
                        "output_tokens": rng.randint(0, 500),
                        "cost": rng.choice([None, round(rng.uniform(0, 0.05), 6)]),
                    },
                )
            )
        pending = False
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            t += _ms(rng, 1)
            if waiting and not repeat_waits:  # every wait opens with a change of status
                out.append(Report("status", sid, t, {"status": "running", "node_id": None}))
            node_arg = node if rng.random() < 0.5 else None
            out.append(Report("status", sid, t, {"status": "waiting_input", "node_id": node_arg}))
            waiting = True
            if rng.random() < 0.2:
                pending = True  # no answer: the wait lasts to the visit's close
                break
            t += _ms(rng, 60)
            mid = f"m{index}-{step}-{len(out)}-i"
            out.append(Report("message", sid, t, {"direction": "inbound", "mid": mid}))
            if rng.random() < 0.7:
                t += _ms(rng, 0.5)
                out.append(Report("status", sid, t, {"status": "running", "node_id": None}))
                waiting = False
        if not pending and rng.random() < 0.05:
            t += _ms(rng, 5)
            out.append(Report("status", sid, t, {"status": "waiting_flow", "node_id": None}))
            t += _ms(rng, 5)
            out.append(Report("status", sid, t, {"status": "running", "node_id": None}))
            waiting = False
        if node == "bye" and not long:
            break
        choices = _NEXT[version].get(node, ["menu"])
        if long:
            choices = [node, node, node, *choices]
        node = rng.choice(choices)
        if rng.random() < 0.03:
            node = "ghost"
        elif version == V1 and t >= SPLIT and "survey" not in choices and rng.random() < 0.2:
            node = "survey"
    out.extend(_ending(rng, sid, t, ended_at_bye=node == "bye"))
    for r in out:  # a few reports stamped up to 5 s before the one they follow
        if r.kind in ("node", "message", "llm", "status") and rng.random() < 0.03:
            r.order, r.at = r.at, r.at - timedelta(milliseconds=rng.randint(1, 5000))
    return out


def _ending(rng: random.Random, sid: str, t: datetime, ended_at_bye: bool) -> list[Report]:
    out: list[Report] = []
    r = rng.random()
    reason = rng.choice([None, "done", "idle", "user_left"])
    t += _ms(rng, 5)
    if r < (0.6 if ended_at_bye else 0.3):
        if rng.random() < 0.5:
            out.append(Report("complete", sid, t, {"status": "completed", "reason": reason}))
        else:
            out.append(Report("status", sid, t, {"status": "completed", "reason": reason}))
        if rng.random() < 0.3:  # the final turn's reports, inside the grace window
            g = t + timedelta(milliseconds=rng.randint(0, 9000))
            out.append(Report("node", sid, g, {"node_id": "bye", "error": None}))
            out.append(Report("message", sid, g, {"direction": "outbound", "mid": f"{sid}-g"}))
            out.append(Report("llm", sid, g, {"input_tokens": 7, "output_tokens": 3, "cost": 0.5}))
    elif r < 0.5:
        kind = rng.choice(["complete", "status"])
        out.append(Report(kind, sid, t, {"status": "expired", "reason": reason}))
    elif r < 0.62:
        kind = rng.choice(["complete", "status"])
        out.append(Report(kind, sid, t, {"status": "stopped", "reason": reason}))
    elif r < 0.7:
        out.append(Report("api_stop", sid, t, {}))  # at: read back after the stop
    else:
        return out  # still active
    if rng.random() < 0.15:  # late: dropped by the tracker
        late = t + timedelta(hours=1)
        out.append(Report("node", sid, late, {"node_id": "menu", "error": None}))
        out.append(Report("status", sid, late, {"status": "running", "node_id": None}))
    return out


def plan(seed: int, sessions: int = 140, *, repeat_waits: bool = False) -> list[Report]:
    """Every report of the scenario, in the order they are made; ``flow`` reports mark
    the registrations.

    With ``repeat_waits``, a session asks again while its status is still
    ``waiting_input`` (answered, or not, without a ``running`` report in between): a
    ``status_changed`` to ``waiting_input`` that changes no status, which still opens a
    wait by the definition. Without it, each wait opens with a change of status.
    """
    rng = random.Random(seed)
    per_session = [
        _session(rng, i, long=i == 0 and seed % 2 == 0, repeat_waits=repeat_waits)
        for i in range(sessions)
    ]
    per_session += [_session(rng, i, False, repeat_waits, OTHER) for i in range(sessions // 10)]
    keyed = [
        ((r.order or r.at, i, j), r)
        for i, reps in enumerate(per_session)
        for j, r in enumerate(reps)
    ]
    for bot in (CHATBOT, OTHER):
        v1 = Report("flow", "", BASE, {"version": V1, "chatbot": bot})
        keyed.append(((BASE - timedelta(days=1), -1, 0), v1))
        keyed.append(((SPLIT, -1, 0), Report("flow", "", SPLIT, {"version": V2, "chatbot": bot})))
    keyed.sort(key=lambda kr: kr[0])
    return [r for _, r in keyed]


async def report(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager, reports: list[Report]
) -> Reported:
    """Make every report through ``pm``'s hooks; read back when each API stop happened."""
    hook = pm.hook
    done: list[Report] = []
    regs: list[Registration] = []
    for r in reports:
        d = r.data
        if r.kind == "flow":
            before = datetime.now(UTC)
            bot, version = d["chatbot"], d["version"]
            hook.sessiontrack_flow_registered(
                chatbot_id=bot, name=bot, flow=flow(version), version=version
            )
            regs.append(Registration(bot, version, flow(version), before, datetime.now(UTC)))
            await anyio.sleep(0.002)  # distinct registration times
            done.append(r)
            continue
        if r.kind == "start":
            hook.sessiontrack_session_started(
                session_id=r.sid,
                chatbot_id=d["chatbot"],
                conversation_id=d["conversation_id"],
                at=r.at,
            )
        elif r.kind == "node":
            hook.sessiontrack_node_executed(
                session_id=r.sid, node_id=d["node_id"], error=d["error"], at=r.at
            )
        elif r.kind == "message":
            hook.sessiontrack_message(
                session_id=r.sid,
                direction=d["direction"],
                text="hi",
                node_id=d.get("node_id"),
                message_id=d["mid"],
                at=r.at,
            )
        elif r.kind == "llm":
            hook.sessiontrack_llm_call(
                session_id=r.sid,
                model="gpt-x",
                node_id=d.get("node_id"),
                input_tokens=d["input_tokens"],
                output_tokens=d["output_tokens"],
                cost=d["cost"],
                at=r.at,
            )
        elif r.kind == "status":
            hook.sessiontrack_status_changed(
                session_id=r.sid,
                status=d["status"],
                node_id=d.get("node_id"),
                reason=d.get("reason"),
                at=r.at,
            )
        elif r.kind == "complete":
            hook.sessiontrack_session_completed(
                session_id=r.sid, status=d["status"], reason=d.get("reason"), at=r.at
            )
        elif r.kind == "api_stop":
            await tracker.stop(r.sid)
            detail = await tracker.sessions.get(r.sid)
            assert detail.completed_at is not None
            r = Report("api_stop", r.sid, detail.completed_at, {"reason": "stopped_by_api"})
        done.append(r)
    await tracker.flush()
    return Reported(done, regs)
