"""The randomized oracle (issue 12, point 2): every figure of every analytics route, on
SQLite and PostgreSQL, against a plain-Python computation over the same reports.

Each seed draws ~140 sessions over two versions of a flow (see
``analytics_helpers/scenario.py``), reports them through the real hooks with explicit
timestamps over 20 days, and asks ``tracker.analytics`` for summary, nodes, paths, funnel
(random steps) and versions, over random ranges (dates, datetimes, ISO strings) and time
zones (``:30``/``:45`` offsets, DST changes in the range), for v1, v2, all, the default and
an unknown version. After ``rebuild`` every answer must be the same again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pluggy
import pytest
from analytics_helpers import scenario
from analytics_helpers.compare import nodes_answer, offsets, same
from analytics_helpers.oracle import Oracle, utc_range

import sessiontrack
from sessiontrack.analytics._sketch import bin_of, value_of

pytestmark = pytest.mark.anyio
SEEDS = (1, 2, 3)
ZONES = (
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -02:30 / -03:30, DST ends 2026-11-01
    "America/New_York",  # DST ends 2026-11-01
    "Europe/Berlin",  # DST ends 2026-10-25
    "UTC",
    "Asia/Kolkata",  # +05:30
    "Pacific/Chatham",  # +13:45
    "Pacific/Kiritimati",  # +14
    "Pacific/Pago_Pago",  # -11
)
VERSIONS = (None, scenario.V1, scenario.V2, "all")


@pytest.fixture
def tracker_options() -> dict[str, Any]:
    # timestamps are weeks old: no idle expiry, no sweeper (expiries are reported); small
    # batches, so that sessions span many (their analytics state goes through an_traces)
    return {"idle_timeout": None, "sweep_interval": None, "commit_delay": 0, "max_batch": 50}


Call = tuple[str, dict[str, Any]]


def _form(rng: random.Random, dt: datetime, tz: str, is_end: bool) -> Any:
    """``dt`` (aware) as the API may be given it: a date, a naive or aware datetime, or
    one of those as an ISO string."""
    local = dt.astimezone(ZoneInfo(tz))
    r = rng.random()
    if r < 0.3:
        value: Any = local.date()
    elif r < 0.55:
        value = local.replace(tzinfo=None)
    elif r < 0.75:
        value = dt.astimezone(ZoneInfo(rng.choice(ZONES)))
    else:
        value = rng.choice([local.date(), local.replace(tzinfo=None), dt])
        return value.isoformat()
    return value


def ranges(rng: random.Random, starts: Sequence[datetime]) -> list[tuple[Any, Any, str]]:
    base = scenario.BASE
    on_quarters = sorted(s for s in starts if s.timestamp() % 900 == 0)
    a, b = sorted(rng.sample(on_quarters, 2))  # sessions right on both ends: [a, b)
    zone = ZoneInfo(rng.choice(ZONES))
    out: list[tuple[Any, Any, str]] = [
        (date(2026, 10, 19), date(2026, 11, 10), "Asia/Kathmandu"),  # everything
        ("2026-10-29", "2026-11-03", "America/St_Johns"),  # over its DST change
        (datetime(2026, 10, 24, 22, 7), datetime(2026, 10, 26, 1, 52, 31), "Europe/Berlin"),
        (a.astimezone(zone), b.astimezone(zone).isoformat(), str(zone)),
    ]
    for tz in ("UTC", rng.choice([z for z in ZONES if z != "UTC"])):  # UTC: grain 1 only
        start = base - timedelta(days=1) + timedelta(seconds=rng.randrange(21 * 86400))
        end = start + timedelta(seconds=rng.randrange(1800, 12 * 86400))
        out.append((_form(rng, start, tz, False), _form(rng, end, tz, True), tz))
    return out


def calls(rng: random.Random, starts: Sequence[datetime]) -> list[Call]:
    """What to ask: on each of four fixed ranges and two random ones, two versions (in
    turn, so each of the default, v1, v2 and all comes three times); each time summary,
    nodes, paths (random limit) and a funnel of 1-5 random steps (repeats and unknown
    nodes included)."""
    out: list[Call] = []
    for i, (start, end, tz) in enumerate(ranges(rng, starts)):
        common = {"start_date": start, "end_date": end, "tz": tz}
        turn = ("all", scenario.V1, scenario.V2, None)
        for version in (turn[i % 4], turn[(i + 1 + i // 4) % 4]):
            kw = {**common, "version": version}
            out.append(("summary", kw))
            out.append(("nodes", kw))
            out.append(("paths", {**kw, "limit": rng.choice([1, 3, 20, 100])}))
            steps = [rng.choice(scenario.NODE_POOL) for _ in range(rng.randint(1, 5))]
            out.append(("funnel", {**kw, "steps": steps}))
    out.append(("summary", {"version": "nope", "tz": "Asia/Kolkata"}))  # the default range
    whole = {"start_date": date(2026, 10, 1), "end_date": date(2026, 11, 30)}
    out.append(("nodes", {"version": "nope", **whole}))
    out.append(("funnel", {**whole, "steps": ["start", "greet", "menu", "order", "pay", "bye"]}))
    return out


def expected(orc: Oracle, route: str, kw: dict[str, Any]) -> dict[str, Any]:
    tz = kw.get("tz", "UTC")
    start, end = utc_range(kw.get("start_date"), kw.get("end_date"), tz)
    version = kw.get("version")
    if route == "summary":
        return orc.summary(version, start, end, tz)
    if route == "nodes":
        return orc.nodes(version, start, end, tz)
    if route == "paths":
        return orc.paths(version, start, end, tz, kw.get("limit", 20))
    return orc.funnel(version, start, end, tz, kw["steps"])


def service(tracker: sessiontrack.Tracker) -> Any:
    return tracker.analytics


async def ask(tracker: sessiontrack.Tracker, route: str, kw: dict[str, Any]) -> dict[str, Any]:
    method = getattr(service(tracker), route)
    answer: dict[str, Any] = await method(scenario.CHATBOT, **kw)
    return answer


def check(orc: Oracle, route: str, kw: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    where = f"{route}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
    exp = expected(orc, route, kw)
    if route == "nodes":
        nodes_answer(exp, answer, where, problems)
    else:
        same(exp, answer, where, problems)
    offsets(answer, kw.get("tz", "UTC"), where, problems)
    return problems


def check_versions(orc: Oracle, answer: dict[str, Any]) -> list[str]:
    exp = orc.versions()
    problems: list[str] = []
    got = answer.get("versions") or []
    for e, a in zip(exp["versions"], got, strict=False):
        reg = e["registeredAt"]
        try:
            at = datetime.fromisoformat(a["registeredAt"])
            if not reg.before - timedelta(seconds=1) <= at <= reg.after + timedelta(seconds=1):
                problems.append(f"versions: {a} registered outside [{reg.before}, {reg.after}]")
        except (KeyError, TypeError, ValueError):
            problems.append(f"versions: bad registeredAt in {a}")
        e["registeredAt"] = a.get("registeredAt")
    same(exp, answer, "versions()", problems)
    return problems


async def check_sessions(tracker: sessiontrack.Tracker, orc: Oracle) -> list[str]:
    """The oracle's fold agrees with the tracker's on each session (else the oracle, not the
    analytics, would be wrong)."""
    stored: dict[str, Any] = {}
    cursor = None
    while True:
        page = await tracker.sessions.list(chatbot_id=scenario.CHATBOT, limit=100, cursor=cursor)
        stored.update((s.id, s) for s in page.data)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    problems = []
    if set(stored) != set(orc.sessions):
        problems.append(f"sessions: tracker has {len(stored)}, oracle {len(orc.sessions)}")
    for s in orc.sessions.values():
        d = stored.get(s.sid)
        mine = (s.status, s.completed_at, len(s.path), s.messages, s.tokens_in, s.tokens_out)
        theirs = d and (
            d.status,
            d.completed_at,
            d.node_count,
            d.message_count,
            d.input_tokens,
            d.output_tokens,
        )
        if mine != theirs:
            problems.append(f"session {s.sid}: oracle {mine}, tracker {theirs}")
    return problems


async def rebuild(tracker: sessiontrack.Tracker) -> None:
    from sessiontrack.analytics._rebuild import rebuild as replay

    await replay(tracker.store)  # type: ignore[arg-type]


def _fail(seed: int, problems: Sequence[str]) -> None:
    if problems:
        shown = "\n  ".join(problems[:40])
        more = f"\n  … and {len(problems) - 40} more" if len(problems) > 40 else ""
        pytest.fail(f"seed {seed}: {len(problems)} mismatches\n  {shown}{more}", pytrace=False)


async def run_scenario(
    tracker: sessiontrack.Tracker,
    pm: pluggy.PluginManager,
    seed: int,
    sessions: int = 120,
    repeat_waits: bool = False,
) -> tuple[Oracle, list[Call]]:
    plan = scenario.plan(seed, sessions, repeat_waits=repeat_waits)
    reported = await scenario.report(tracker, pm, plan)
    orc = Oracle.of(reported.reports, reported.registrations)
    _fail(seed, await check_sessions(tracker, orc))
    starts = [s.start for s in orc.sessions.values()]
    return orc, calls(random.Random(seed * 7919), starts)


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_figure_matches_the_oracle(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager, seed: int
) -> None:
    print(f"oracle seed {seed}")
    orc, todo = await run_scenario(tracker, pm, seed)
    answers = [await ask(tracker, route, kw) for route, kw in todo]
    problems = [
        p for (route, kw), a in zip(todo, answers, strict=True) for p in check(orc, route, kw, a)
    ]
    problems += check_versions(orc, await service(tracker).versions(scenario.CHATBOT))
    _fail(seed, problems)

    await rebuild(tracker)
    again = [await ask(tracker, route, kw) for route, kw in todo]
    problems = []
    for (route, kw), before, after in zip(todo, answers, again, strict=True):
        same(before, after, f"after rebuild: {route}({kw})", problems)  # floats: sum order
    _fail(seed, problems)


async def test_repeated_waits_match_the_oracle(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    """An engine that asks again after an answer without reporting ``running`` in
    between: each ``waiting_input`` opens a wait of its own."""
    seed = 1
    orc, todo = await run_scenario(tracker, pm, seed, 80, repeat_waits=True)
    todo = [(route, kw) for route, kw in todo if route == "nodes"]
    answers = [await ask(tracker, route, kw) for route, kw in todo]
    problems = [
        p for (route, kw), a in zip(todo, answers, strict=True) for p in check(orc, route, kw, a)
    ]
    _fail(seed, problems)


async def test_a_second_question_in_one_visit_is_waited_for(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    """The minimal case: node ``ask`` waits 2 s for a first answer, asks again without a
    ``running`` in between and waits 6 s more; it leaves for ``next`` after 11 s."""
    t0 = datetime(2026, 10, 20, 9, tzinfo=UTC)
    hook = pm.hook
    sid = "00000000-0000-4000-8000-000000000001"
    hook.sessiontrack_flow_registered(chatbot_id="b", name="B", flow={"nodes": []}, version="1")
    hook.sessiontrack_session_started(session_id=sid, chatbot_id="b", at=t0)
    steps: list[tuple[int, str, dict[str, Any]]] = [
        (0, "node", {"node_id": "ask"}),
        (1, "status", {"status": "waiting_input"}),
        (3, "message", {"direction": "inbound"}),
        (4, "status", {"status": "waiting_input"}),  # no status change: still a wait
        (10, "message", {"direction": "inbound"}),
        (11, "node", {"node_id": "next"}),
    ]
    for s, kind, kw in steps:
        at = t0 + timedelta(seconds=s)
        if kind == "node":
            hook.sessiontrack_node_executed(session_id=sid, at=at, **kw)
        elif kind == "status":
            hook.sessiontrack_status_changed(session_id=sid, at=at, **kw)
        else:
            hook.sessiontrack_message(session_id=sid, at=at, text="x", **kw)
    await tracker.flush()
    got = await service(tracker).nodes("b", start_date=t0.date(), end_date=t0.date())
    ask_row = next(n for n in got["nodes"] if n["nodeId"] == "ask")
    want_wait, want_bot = value_of(bin_of(8000)), value_of(bin_of(3000))
    assert (ask_row["waitTime"]["p50"], ask_row["botTime"]["p50"]) == (
        round(want_wait, 2),
        round(want_bot, 2),
    ), f"ask: {ask_row}"  # the rollup gives waitTime 2000 ms (binned), botTime 9000 ms


async def test_rest_routes_give_the_same_answers(
    tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    from sessiontrack.web import create_app

    seed = 4
    orc, _ = await run_scenario(tracker, pm, seed, 60)
    tenant = sessiontrack.Principal(id="tenant", chatbot_ids=frozenset({scenario.CHATBOT}))
    app = create_app(tracker, authenticate=lambda request: tenant)
    params = {
        "chatbotId": scenario.CHATBOT,
        "startDate": "2026-10-25",
        "endDate": "2026-11-02T09:40:00",
        "tz": "America/St_Johns",
    }
    steps = ["menu", "order", "pay", "bye"]
    problems: list[str] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for version in VERSIONS:
            q = {**params, **({"version": version} if version else {})}
            kw = {"start_date": q["startDate"], "end_date": q["endDate"], "tz": q["tz"]}
            kw["version"] = version
            for route, extra, extra_kw in (
                ("summary", {}, {}),
                ("nodes", {}, {}),
                ("paths", {"limit": "5"}, {"limit": 5}),
                ("funnel", {"steps": ",".join(steps)}, {"steps": steps}),
            ):
                resp = await client.get(f"/analytics/{route}", params={**q, **extra})
                if resp.status_code != 200:
                    problems.append(f"GET /analytics/{route} {q}: {resp.status_code} {resp.text}")
                    continue
                problems += check(orc, route, {**kw, **extra_kw}, resp.json())
                direct = await ask(tracker, route, {**kw, **extra_kw})
                if resp.json() != direct:
                    problems.append(f"GET /analytics/{route} {q} differs from the Python API")
        resp = await client.get("/analytics/versions", params={"chatbotId": scenario.CHATBOT})
        if resp.status_code != 200:
            problems.append(f"GET /analytics/versions: {resp.status_code} {resp.text}")
        else:
            problems += check_versions(orc, resp.json())
    stranger = sessiontrack.Principal(id="stranger", chatbot_ids=frozenset({scenario.OTHER}))
    for route, extra_kw in (("summary", {}), ("funnel", {"steps": steps})):
        with pytest.raises(sessiontrack.SessionNotFound):
            await ask(tracker, route, {**extra_kw, "principal": stranger})
    _fail(seed, problems)


def test_the_oracle_knows_its_ranges() -> None:
    """The oracle's own range rules (the brief's): local days, inclusive end dates,
    naive datetimes in the tz, quarter-hour floors."""
    s, e = utc_range(date(2026, 11, 1), date(2026, 11, 1), "America/New_York")
    assert (s, e) == (
        datetime(2026, 11, 1, 4, tzinfo=UTC),
        datetime(2026, 11, 2, 5, tzinfo=UTC),  # a 25-hour day
    )
    s, e = utc_range("2026-10-20T10:14:59", "2026-10-20T10:15:00+00:00", "Asia/Kathmandu")
    assert (s, e) == (
        datetime(2026, 10, 20, 4, 15, tzinfo=UTC),
        datetime(2026, 10, 20, 10, 15, tzinfo=UTC),
    )
    now = datetime(2026, 12, 1, 20, tzinfo=UTC)  # already Dec 2 in Kolkata
    s, e = utc_range(None, None, "Asia/Kolkata", now)
    assert (s, e) == (
        datetime(2026, 11, 25, 18, 30, tzinfo=UTC),
        datetime(2026, 12, 2, 18, 30, tzinfo=UTC),
    )
