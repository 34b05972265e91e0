"""Replay and compare in the dashboard, in a real browser: Debian's chromium driven by
Playwright (async API) against a real uvicorn serving the sub-app on a tracker of this
module, seeded through the hooks with crafted sessions, on SQLite and PostgreSQL.

Replay: each step (one event of the session, in order) must show the same thing in the
flow highlight, the node timeline, the conversation and the call table; play, pause,
step and speed drive it; the step is in the URL and a link opens at that step. Compare:
two sessions side by side with the first place their paths diverge, for one flow
version, two versions of a chatbot, and two chatbots.

Where the data path matters (the order of the steps, the paths compared across flow
versions and chatbots) the tests run on both backends; those that only drive the page
(play and speed, links, the list's selection, keyboard, reduced motion, axe-core,
screenshots) run on SQLite only: what they show comes through the same API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from dashboard_helpers import axe_violations
from dashboard_helpers.pages import (
    BACKENDS,
    DESKTOP,
    PHONE,
    close_page,
    launched_browser,
    new_page,
    served_tracker,
)

import sessiontrack

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

ROWS = "#sessions-table tbody tr"
SHOP = "shop"
DESK = "desk"
GAP_CAP_MS = 3000  # js/replay.js
MIN_STEP_MS = 250

expect.set_options(timeout=15_000)

LABELS = {
    "start": "Start",
    "menu": "Menu",
    "billing": "Billing",
    "tech": "Tech support",
    "survey": "Survey",
    "goodbye": "Goodbye",
}


def flow(*edges: tuple[str, str]) -> dict[str, Any]:
    ids = list(dict.fromkeys(n for e in edges for n in e))
    return {
        "nodes": [{"id": n, "type": "step", "data": {"label": LABELS[n]}} for n in ids],
        "edges": [{"id": f"{a}-{b}", "source": a, "target": b} for a, b in edges],
    }


SHOP_V1 = flow(
    ("start", "menu"),
    ("menu", "billing"),
    ("menu", "tech"),
    ("billing", "goodbye"),
    ("tech", "goodbye"),
)
SHOP_V2 = flow(
    ("start", "menu"),
    ("menu", "billing"),
    ("menu", "tech"),
    ("billing", "survey"),
    ("survey", "goodbye"),
    ("tech", "goodbye"),
)
DESK_FLOW = {
    "nodes": [
        {"id": i, "type": "step", "data": {"label": label}}
        for i, label in [("s1", "Start"), ("m1", "Menu"), ("t1", "Tech support"), ("h1", "Handoff")]
    ],
    "edges": [
        {"id": "e1", "source": "s1", "target": "m1"},
        {"id": "e2", "source": "m1", "target": "t1"},
        {"id": "e3", "source": "t1", "target": "h1"},
    ],
}

# A session's events: (seconds after its start, kind, what). Strictly increasing times,
# so the replay's order is the order written here.
Event = tuple[float, str, Any]

ANN: list[Event] = [
    (1, "node", "start"),
    (2, "node", "menu"),
    (3, "out", ("Hi! Billing or tech support?", "menu")),
    (5, "in", "Billing please"),
    (6, "llm", ("gpt-test", "billing")),
    (7, "tool", ("lookup_invoice", "billing")),
    (8, "node", "billing"),
    (9, "out", ("Your invoice INV-7 is on its way.", "billing")),
    (99, "in", "Thanks!"),  # 90 s later: played as GAP_CAP_MS
    (100, "node", "goodbye"),
    (101, "out", ("Bye!", "goodbye")),
]
BEN: list[Event] = [
    (1, "node", "start"),
    (2, "node", "menu"),
    (3, "out", ("Hi! Billing or tech support?", "menu")),
    (5, "in", "Tech support"),
    (8, "node", "tech"),
    (9, "out", ("Have you tried turning it off and on?", "tech")),
    (10, "in", "ok"),
    (11, "node", "goodbye"),
    (12, "out", ("Bye!", "goodbye")),
]
CARA: list[Event] = [  # flow version v2: a survey after billing
    (1, "node", "start"),
    (2, "node", "menu"),
    (4, "in", "billing"),
    (5, "node", "billing"),
    (6, "node", "survey"),
    (7, "out", ("How did we do?", "survey")),
    (8, "node", "goodbye"),
]
DAN: list[Event] = [  # another chatbot, other node ids, the same labels but the last
    (1, "node", ("s1", "Start")),
    (2, "node", ("m1", "Menu")),
    (3, "in", "tech"),
    (4, "node", ("t1", "Tech support")),
    (5, "node", ("h1", "Handoff")),
    (6, "out", ("An agent will take over.", "h1")),
]


TIA: list[Event] = [  # stamped two by two in the same instant, reported in this order
    (1, "in", "hello"),
    (1, "llm", ("gpt-test", "m1")),
    (1, "node", ("m1", "Menu")),
    (1, "out", ("Hi there", "m1")),
    (2, "node", ("t1", "Tech support")),
    (2, "out", ("Tech here", "t1")),
]
EVE: list[Event] = [(1, "node", ("s1", "Start")), (2, "out", ("Welcome", "s1"))]  # active


@dataclass
class Site:
    base: str
    ui: str
    backend: str
    ids: dict[str, str]
    hook: Any
    tracker: sessiontrack.Tracker


def report(hook: Any, sid: str, start: datetime, events: list[Event]) -> None:
    for seconds, kind, what in events:
        at = start + timedelta(seconds=seconds)
        if kind == "node":
            node, label = what if isinstance(what, tuple) else (what, LABELS[what])
            hook.sessiontrack_node_executed(
                session_id=sid, node_id=node, label=label, node_type="step", at=at
            )
        elif kind in ("in", "out"):
            text, node = (what, None) if kind == "in" else what
            hook.sessiontrack_message(
                session_id=sid,
                direction="inbound" if kind == "in" else "outbound",
                text=text,
                node_id=node,
                at=at,
            )
        elif kind == "llm":
            hook.sessiontrack_llm_call(
                session_id=sid,
                model=what[0],
                node_id=what[1],
                input_tokens=120,
                output_tokens=30,
                latency_ms=800,
                at=at,
            )
        else:
            hook.sessiontrack_tool_call(
                session_id=sid,
                name=what[0],
                node_id=what[1],
                arguments={"customer": "ann"},
                result={"invoice": "INV-7"},
                duration_ms=40,
                at=at,
            )


def seed(hook: Any, now: datetime) -> dict[str, str]:
    hook.sessiontrack_flow_registered(chatbot_id=SHOP, name="Shop", flow=SHOP_V1, version="v1")
    hook.sessiontrack_flow_registered(chatbot_id=DESK, name="Desk", flow=DESK_FLOW, version="d1")
    ids: dict[str, str] = {}
    plan = [
        ("ann", SHOP, ANN),
        ("ben", SHOP, BEN),
        ("cara", SHOP, CARA),
        ("dan", DESK, DAN),
        ("tia", DESK, TIA),
        ("eve", DESK, EVE),
    ]
    for i, (name, bot, events) in enumerate(plan):
        if name == "cara":
            hook.sessiontrack_flow_registered(
                chatbot_id=SHOP, name="Shop", flow=SHOP_V2, version="v2"
            )
        sid = sessiontrack.new_session_id()
        ids[name] = sid
        start = now - timedelta(hours=2) + timedelta(minutes=10 * i)
        hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=bot,
            contact={"name": name.capitalize(), "phone": f"+1777000{i:04d}"},
            at=start,
        )
        report(hook, sid, start, events)
        if name == "eve":
            continue
        hook.sessiontrack_session_completed(
            session_id=sid, reason="flow_end", at=start + timedelta(seconds=events[-1][0] + 1)
        )
    return ids


def expected_states(events: list[Event]) -> list[dict[str, Any]]:
    """What the page must show at each step: step 0 (nothing yet), then one event more."""
    states: list[dict[str, Any]] = []
    messages: list[str] = []
    nodes: list[str] = []
    called: set[str] = set()
    calls = 0
    for k in range(len(events) + 1):
        if k:
            _, kind, what = events[k - 1]
            if kind == "node":
                nodes.append(what[0] if isinstance(what, tuple) else what)
            elif kind == "in":
                messages.append(what)
            elif kind == "out":
                messages.append(what[0])
            else:
                calls += 1
                called.add(what[1])
        states.append(
            {
                "step": k,
                "messages": list(messages),
                "timeline": [LABELS.get(n, n) for n in nodes],
                "executed": sorted(set(nodes)),
                "current": nodes[-1] if nodes else None,
                # Figures under a node: what it ran and called so far.
                "figures": sorted(set(nodes) | called),
                "calls": calls,
                "urlStep": str(k),
            }
        )
    return states


STATE_JS = """() => {
  const text = (els) => [...els].map((e) => e.textContent.trim());
  const current = document.querySelector('#flow-svg .node.current');
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  return {
    step: Number(document.getElementById('replay').dataset.step),
    messages: text(document.querySelectorAll('#conversation .msg .msg-text')),
    timeline: text(document.querySelectorAll('#timeline li.step .step-label'))
      .map((t) => t.replace(/Current$/, '').replace(/Error$/, '').trim()),
    timelineCurrent: text(document.querySelectorAll('#timeline li[aria-current=step] .step-label'))
      .map((t) => t.replace(/Current$/, '').trim()),
    executed: [...document.querySelectorAll('#flow-svg .node.executed')]
      .map((n) => n.dataset.nodeId).sort(),
    current: current ? current.dataset.nodeId : null,
    figures: [...document.querySelectorAll('#flow-svg .node')]
      .filter((n) => n.querySelector('.node-stats').textContent)
      .map((n) => n.dataset.nodeId).sort(),
    calls: document.querySelectorAll('#calls-table tbody tr').length,
    urlStep: params.get('step'),
  };
}"""


async def state(page: Any) -> dict[str, Any]:
    got: dict[str, Any] = await page.evaluate(STATE_JS)
    current_label = got.pop("timelineCurrent")
    # The timeline's current step is the flow's current node: they agree.
    assert current_label == (got["timeline"][-1:]), got
    return got


async def slide(page: Any, k: int) -> None:
    """Move the replay's slider to ``k``, as a drag or its arrow keys do."""
    await page.locator("#replay-slider").evaluate(
        "(el, k) => { el.value = String(k);"
        " el.dispatchEvent(new Event('input', { bubbles: true })); }",
        k,
    )


async def at_step(page: Any, k: int) -> dict[str, Any]:
    await expect(page.locator("#replay")).to_have_attribute("data-step", str(k))
    return await state(page)


@pytest.fixture(scope="module", params=BACKENDS)
async def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    async with served_tracker(request.param, tmp_path_factory) as served:
        ids = seed(served.hook, datetime.now(UTC))
        await served.tracker.flush()
        yield Site(served.base, served.ui, request.param, ids, served.hook, served.tracker)


@pytest.fixture(scope="module")
async def browser(site: Site, chromium: Path) -> AsyncIterator[Any]:
    async with launched_browser(chromium) as browser:
        yield browser


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser)
    yield page
    await close_page(page)


# A test that only drives the page runs on SQLite alone: the PostgreSQL run's page shows
# the same data. Parametrising the module's site directly keeps it from being collected on
# PostgreSQL at all, where a skip would only say so.
sqlite_page_only = pytest.mark.parametrize("site", ["sqlite"], indirect=True)


def hash_params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).fragment.partition("?")[2])


async def open_replay(page: Any, site: Site, name: str) -> None:
    await page.goto(site.ui + f"#/sessions/{site.ids[name]}")
    await expect(page.locator("#timeline li.step")).to_have_count(
        sum(1 for e in {"ann": ANN, "ben": BEN}[name] if e[1] == "node")
    )
    await page.locator("#replay-button").click()
    await expect(page.locator("#replay")).to_be_visible()


async def animations(page: Any) -> tuple[str, str]:
    """The animations of the step's new message and of the flow's current node."""
    new = page.locator("#conversation .msg.replay-new")
    await expect(new).to_have_count(1)
    message: str = await new.evaluate("e => getComputedStyle(e).animationName")
    node: str = await page.locator("#flow-svg .node.current .node-box").evaluate(
        "e => getComputedStyle(e).animationName"
    )
    return message, node


async def test_stepping_keeps_flow_timeline_conversation_and_calls_together(
    page: Any, site: Site
) -> None:
    await open_replay(page, site, "ann")
    want = expected_states(ANN)
    assert hash_params(page)["step"] == ["0"]
    # The Replay button leaves the focus on Play: the keys work at once.
    await expect(page.locator("#replay-play")).to_be_focused()
    assert await at_step(page, 0) == want[0]
    await expect(page.locator("#replay-caption")).to_contain_text("Step 0 of 11")
    for k in range(1, len(want)):
        await page.keyboard.press("ArrowRight")
        assert await at_step(page, k) == want[k], k
        if k == 3:  # a message: it slides in (no reduced motion here), the node pulses
            assert await animations(page) == ("replay-in", "node-pulse")
    # The last step is the session as the live page shows it, and Forward stops there.
    await expect(page.locator("#replay-forward")).to_be_disabled()
    await expect(page.locator("#replay-caption")).to_contain_text("Bot: “Bye!”")
    # Back, then the buttons, then the slider: every way in shows the same state.
    await page.keyboard.press("ArrowLeft")
    assert await at_step(page, 10) == want[10]
    await page.locator("#replay-back").click()
    assert await at_step(page, 9) == want[9]
    await expect(page.locator("#replay-gap")).to_contain_text("1m 30s passed before this step")
    await page.locator("#replay-first").click()
    assert await at_step(page, 0) == want[0]
    await slide(page, 6)
    assert await at_step(page, 6) == want[6]
    # The step's message is marked in the conversation; a node step marks its node.
    await slide(page, 3)
    await expect(page.locator("#conversation .msg.replay-current")).to_contain_text(
        "Billing or tech"
    )
    # Exit: the live page again, everything shown.
    await page.locator("#replay-exit").click()
    await expect(page.locator("#replay")).to_have_count(0)
    assert "step" not in hash_params(page)
    await expect(page.locator("#conversation .msg")).to_have_count(5)
    await expect(page.locator("#calls-table tbody tr")).to_have_count(2)


async def test_events_of_one_instant_keep_their_stored_order(page: Any, site: Site) -> None:
    # Messages and calls by sequence number; a node after the customer's message and the
    # calls it made, before its reply.
    await page.goto(site.ui + f"#/sessions/{site.ids['tia']}?step=0")
    await expect(page.locator("#replay")).to_have_attribute("data-step", "0")
    kinds = []
    for k in range(1, len(TIA) + 1):
        await page.keyboard.press("ArrowRight")
        await expect(page.locator("#replay")).to_have_attribute("data-step", str(k))
        kinds.append(await page.locator("#replay-caption .replay-what").get_attribute("data-kind"))
        if k == 3:
            await expect(page.locator("#flow-svg .node.current")).to_have_attribute(
                "data-node-id", "m1"
            )
            await expect(page.locator("#conversation p.msg-text")).to_have_text(["hello"])
    assert kinds == ["inbound", "llm", "node", "outbound", "node", "outbound"]
    await expect(page.locator("#replay-gap")).to_be_hidden()


@sqlite_page_only
async def test_live_events_become_new_steps_without_moving_the_replay(
    site: Site, page: Any
) -> None:
    sid = site.ids["eve"]
    await page.goto(site.ui + f"#/sessions/{sid}?step=2")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#replay-caption")).to_contain_text("Step 2 of 2")
    at = datetime.now(UTC)
    site.hook.sessiontrack_message(session_id=sid, direction="inbound", text="help", at=at)
    site.hook.sessiontrack_node_executed(
        session_id=sid, node_id="m1", label="Menu", at=at + timedelta(seconds=1)
    )
    await site.tracker.flush()
    await expect(page.locator("#replay-caption")).to_contain_text("Step 2 of 4")
    # The replay stays where it was: the new events are not shown yet.
    await expect(page.locator("#conversation p.msg-text")).to_have_text(["Welcome"])
    await expect(page.locator("#timeline li.step")).to_have_count(1)
    await page.keyboard.press("End")
    await expect(page.locator("#replay")).to_have_attribute("data-step", "4")
    await expect(page.locator("#conversation p.msg-text")).to_have_text(["Welcome", "help"])
    await expect(page.locator("#flow-svg .node.current")).to_have_attribute("data-node-id", "m1")
    await expect(page.locator("#timeline li.step")).to_have_count(2)


@sqlite_page_only
async def test_play_pause_and_speed_follow_the_recorded_timing(site: Site, page: Any) -> None:
    await open_replay(page, site, "ann")
    want = expected_states(ANN)
    await page.locator("#replay-speed-10").click()
    await expect(page.locator("#replay-speed-10")).to_have_attribute("aria-pressed", "true")
    assert hash_params(page)["speed"] == ["10"]
    # Each step change, timed in the page.
    await page.evaluate("""() => {
      window.stepTimes = [];
      const bar = document.getElementById('replay');
      let last = bar.dataset.step;
      new MutationObserver(() => {
        if (bar.dataset.step === last) return;
        last = bar.dataset.step;
        window.stepTimes.push([Number(last), performance.now()]);
      }).observe(bar, { attributeFilter: ['data-step'] });
    }""")
    await page.locator("#replay-play").click()
    await expect(page.locator("#replay")).to_have_attribute("data-playing", "true")
    await expect(page.locator("#replay-play")).to_have_attribute("aria-label", "Pause")
    await page.wait_for_function("Number(document.getElementById('replay').dataset.step) >= 4")
    await page.locator("#replay-play").click()
    await expect(page.locator("#replay")).to_have_attribute("data-playing", "false")
    paused = int(await page.locator("#replay").get_attribute("data-step"))
    await page.wait_for_timeout(500)
    # Paused means paused, and what is shown is that step, whole.
    assert await at_step(page, paused) == want[paused]
    assert hash_params(page)["step"] == [str(paused)]
    # Play on to the end: it stops there by itself.
    await page.locator("#replay-play").click()
    await expect(page.locator("#replay")).to_have_attribute("data-step", str(len(ANN)))
    await expect(page.locator("#replay")).to_have_attribute("data-playing", "false")
    assert await state(page) == want[-1]
    times: list[list[float]] = await page.evaluate("window.stepTimes")
    starts = {int(k): t for k, t in times}
    # The waits follow the recorded gaps at 10x: 1 s → 100 ms, 90 s → 3 s capped → 300 ms.
    offsets = [0.0] + [e[0] for e in ANN]
    for k in range(paused + 2, len(ANN) + 1):
        gap_ms = (offsets[k] - offsets[k - 1]) * 1000
        wait = max(MIN_STEP_MS, min(gap_ms, GAP_CAP_MS)) / 10
        took = starts[k] - starts[k - 1]
        assert took >= wait * 0.9, (k, took, wait)
        assert took < wait + 1500, (k, took, wait)  # a 90 s pause is not played whole
    # Play at the end starts again from the beginning; 1x is slower than 10x.
    await page.locator("#replay-speed-1").click()
    assert "speed" not in hash_params(page)
    await page.locator("#replay-play").click()
    await expect(page.locator("#replay")).to_have_attribute("data-step", "1")
    await page.wait_for_timeout(300)
    assert int(await page.locator("#replay").get_attribute("data-step")) <= 2
    await page.keyboard.press("Home")  # seeking pauses
    await expect(page.locator("#replay")).to_have_attribute("data-playing", "false")


@sqlite_page_only
async def test_a_link_to_a_step_opens_that_step(site: Site, browser: Any) -> None:
    want = expected_states(ANN)
    first = await new_page(browser)
    await open_replay(first, site, "ann")
    await slide(first, 8)
    await first.locator("#replay-speed-4").click()
    shown = await at_step(first, 8)
    assert shown == want[8]
    link = first.url
    assert hash_params(first) == {"step": ["8"], "speed": ["4"]}
    # A fresh tab with the link: the same step, the same speed, everything agreeing.
    second = await first.context.new_page()
    second.errors = []
    second.on("pageerror", lambda exc: second.errors.append(str(exc)))
    await second.goto(link)
    assert await at_step(second, 8) == shown
    await expect(second.locator("#replay-speed-4")).to_have_attribute("aria-pressed", "true")
    await expect(second.locator("#replay")).to_have_attribute("data-playing", "false")
    # A step past the end (the link edited in place) shows the last one, and the URL
    # says so; nonsense opens step 0.
    await second.goto(site.ui + f"#/sessions/{site.ids['ann']}?step=999&speed=4")
    assert await at_step(second, len(ANN)) == want[-1]
    await second.goto(site.ui + f"#/sessions/{site.ids['ben']}?step=abc")
    assert (await at_step(second, 0))["messages"] == []
    # Back in history leaves the replay for the session page it came from.
    await first.go_back()
    await expect(first.locator("#replay")).to_have_count(0)
    await expect(first.locator("#conversation .msg")).to_have_count(5)
    assert not first.errors
    assert not second.errors
    await first.context.close()


async def compare(page: Any, site: Site, a: str, b: str) -> Any:
    await page.goto(site.ui + f"#/compare/{site.ids[a]}/{site.ids[b]}")
    await expect(page.locator("#compare-paths")).to_be_visible()
    return page.locator("#compare-paths tbody tr")


async def test_compare_marks_the_first_divergence(page: Any, site: Site) -> None:
    rows = await compare(page, site, "ann", "ben")
    # start, menu; billing ↔ tech; goodbye.
    await expect(rows).to_have_count(4)
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.kind)") == [
        "same",
        "same",
        "changed",
        "same",
    ]
    first = page.locator("#first-divergence")
    await expect(first).to_have_count(1)
    await expect(first.locator("th")).to_have_text("3")
    await expect(first).to_contain_text("Billing")
    await expect(first).to_contain_text("Tech support")
    await expect(first).to_contain_text("First divergence")
    await expect(page.locator("#compare-summary")).to_have_text(
        "The paths diverge at step 3, after 2 common nodes (last: “Menu”): "
        "A ran “Billing”, B ran “Tech support”."
    )
    await expect(page.locator("#compare-note")).to_contain_text(
        "Same chatbot and flow version (v1)"
    )
    # Each graph marks its own side of the divergence, with its path highlighted.
    await expect(page.locator("#flow-a-svg .node.diverge")).to_have_attribute(
        "data-node-id", "billing"
    )
    await expect(page.locator("#flow-b-svg .node.diverge")).to_have_attribute(
        "data-node-id", "tech"
    )
    executed = "els => els.map(e => e.dataset.nodeId).sort()"
    assert await page.locator("#flow-a-svg .node.executed").evaluate_all(executed) == [
        "billing",
        "goodbye",
        "menu",
        "start",
    ]
    assert await page.locator("#flow-b-svg .node.executed").evaluate_all(executed) == [
        "goodbye",
        "menu",
        "start",
        "tech",
    ]
    # Both conversations, whole, the first message after the divergence flagged.
    await expect(page.locator("#conversation-a .msg")).to_have_count(5)
    await expect(page.locator("#conversation-b .msg")).to_have_count(5)
    await expect(page.locator("#conversation-a .after-divergence")).to_contain_text("INV-7")
    await expect(page.locator("#conversation-b .after-divergence")).to_contain_text(
        "turning it off"
    )
    # Swap: B becomes A.
    await page.locator("#compare-swap").click()
    await expect(page.locator("#compare-summary")).to_contain_text("A ran “Tech support”")


async def test_compare_across_flow_versions_and_chatbots(page: Any, site: Site) -> None:
    # Two versions of one chatbot: matched by node id; v2's survey is only in B.
    rows = await compare(page, site, "ann", "cara")
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.kind)") == [
        "same",
        "same",
        "same",
        "onlyB",
        "same",
    ]
    await expect(page.locator("#first-divergence th")).to_have_text("4")
    await expect(page.locator("#compare-summary")).to_contain_text(
        "B ran “Survey”, which A skipped"
    )
    await expect(page.locator("#compare-note")).to_contain_text(
        "different flow versions (v1 and v2)"
    )
    await expect(page.locator("#compare-a")).to_contain_text("flow version v1")
    await expect(page.locator("#compare-b")).to_contain_text("flow version v2")
    # Each side draws the graph its session ran: v2 has the survey node, v1 not.
    await expect(page.locator('#flow-a-svg .node[data-node-id="survey"]')).to_have_count(0)
    await expect(page.locator('#flow-b-svg .node[data-node-id="survey"]')).to_have_class(
        "node executed diverge"
    )
    # A's side of it: it stopped short there, after its last common node.
    await expect(page.locator("#flow-a-svg .node.diverge")).to_have_attribute(
        "data-node-id", "billing"
    )

    # Two chatbots: matched by label (other node ids); the ends differ.
    rows = await compare(page, site, "ben", "dan")
    assert await rows.evaluate_all("rs => rs.map(r => r.dataset.kind)") == [
        "same",
        "same",
        "same",
        "changed",
    ]
    await expect(page.locator("#compare-note")).to_contain_text(
        "Different chatbots (Shop and Desk)"
    )
    await expect(page.locator("#compare-summary")).to_contain_text(
        "at step 4, after 3 common nodes (last: “Tech support”): A ran “Goodbye”, B ran “Handoff”"
    )
    await expect(page.locator("#flow-b-svg .node.diverge")).to_have_attribute("data-node-id", "h1")
    # The same session twice: nothing diverges.
    rows = await compare(page, site, "ben", "ben")
    await expect(page.locator("#compare-summary")).to_have_text(
        "Same path: both sessions ran the same 4 nodes in the same order."
    )
    await expect(page.locator("#first-divergence")).to_have_count(0)


@sqlite_page_only
async def test_compare_is_reached_from_the_list_and_from_a_session(site: Site, page: Any) -> None:
    await page.goto(site.ui + f"#/?tab=all&bot={SHOP}")
    await expect(page.locator(ROWS)).to_have_count(3)
    link = page.locator("#compare-selected")
    await expect(link).to_have_attribute("aria-disabled", "true")
    for name in ("ann", "ben", "cara"):
        # Ended sessions can be selected too (to compare), but none can be stopped.
        await page.locator(f'{ROWS}[data-session-id="{site.ids[name]}"] .row-select').check()
    await expect(link).to_have_attribute("aria-disabled", "true")
    await expect(page.locator("#stop-selected")).to_be_disabled()
    await page.locator(f'{ROWS}[data-session-id="{site.ids["cara"]}"] .row-select').uncheck()
    await expect(page.locator("#selection-count")).to_have_text("2 sessions selected")
    await expect(link).not_to_have_attribute("aria-disabled", "true")
    await link.click()
    await expect(page.locator("#compare-summary")).to_contain_text("A ran “Tech support”")
    # In the table's order, newest first: Ben is A, Ann is B.
    await expect(page.locator("#compare-a")).to_contain_text("Ben")

    # From a session page: "Compare…" offers the chatbot's other sessions.
    await page.goto(site.ui + f"#/sessions/{site.ids['ann']}")
    await page.locator("#compare-box summary").click()
    select = page.locator("#compare-with")
    await expect(select.locator(f'option[value="{site.ids["cara"]}"]')).to_have_count(1)
    await select.select_option(site.ids["cara"])
    await page.locator("#compare-go").click()
    assert urlsplit(page.url).fragment == f"/compare/{site.ids['ann']}/{site.ids['cara']}"
    await expect(page.locator("#compare-summary")).to_contain_text("B ran “Survey”")
    # Each side opens its own replay.
    await page.locator("#compare-replay-b").click()
    await expect(page.locator("#replay")).to_have_attribute("data-step", "0")


@sqlite_page_only
async def test_keyboard_and_reduced_motion(site: Site, browser: Any) -> None:
    # (Without reduced motion the new message slides in: see the stepping test.)
    for motion in ("reduce",):
        page = await new_page(browser, reduced_motion=motion)
        await page.goto(site.ui + f"#/sessions/{site.ids['ann']}?step=2")
        await expect(page.locator("#replay")).to_have_attribute("data-step", "2")
        # From nowhere in particular (the page), the keys drive the replay.
        await page.locator("#main").focus()
        await page.keyboard.press("ArrowRight")
        await expect(page.locator("#replay")).to_have_attribute("data-step", "3")
        assert await animations(page) == ("none", "none")
        await page.keyboard.press("End")
        await expect(page.locator("#replay")).to_have_attribute("data-step", str(len(ANN)))
        await page.keyboard.press("Home")
        await expect(page.locator("#replay")).to_have_attribute("data-step", "0")
        await page.keyboard.press("Space")
        await expect(page.locator("#replay")).to_have_attribute("data-playing", "true")
        await page.keyboard.press("Space")
        await expect(page.locator("#replay")).to_have_attribute("data-playing", "false")
        # Tab reaches the controls; a focused button keeps Space for itself.
        await page.locator("#replay-forward").focus()
        step = int(await page.locator("#replay").get_attribute("data-step"))
        await page.keyboard.press("Space")
        await expect(page.locator("#replay")).to_have_attribute("data-step", str(step + 1))
        await expect(page.locator("#replay")).to_have_attribute("data-playing", "false")
        # In the flow the arrows pan, as they always do: the step stays.
        await page.locator("#flow-svg").focus()
        await page.keyboard.press("ArrowRight")
        await expect(page.locator("#replay")).to_have_attribute("data-step", str(step + 1))
        assert not page.errors
        await page.context.close()


@sqlite_page_only
async def test_replay_and_compare_pass_an_accessibility_audit_and_screenshots(
    site: Site, browser: Any, axe_script: Path, screenshots: Path
) -> None:
    page = await new_page(browser, DESKTOP, reduced_motion="reduce")
    for viewport, size in ((DESKTOP, "desktop"), (PHONE, "phone")):
        await page.set_viewport_size(viewport)
        await page.goto(site.ui + f"#/sessions/{site.ids['ann']}?step=8")
        await expect(page.locator("#replay")).to_have_attribute("data-step", "8")
        await expect(page.locator("#flow-svg .node.current")).to_have_count(1)
        await page.wait_for_timeout(200)
        assert await axe_violations(page, axe_script) == [], (size, "replay")
        await page.screenshot(
            path=str(screenshots / f"replay-{size}.png"), full_page=size == "desktop"
        )
        await compare(page, site, "ann", "ben")
        await page.wait_for_timeout(200)
        assert await axe_violations(page, axe_script) == [], (size, "compare")
        # A full-page picture takes what is below the window too: the conversations'
        # blocks are drawn only in view (content-visibility), so draw them all for it.
        await page.add_style_tag(content=".chunk { content-visibility: visible; }")
        await page.screenshot(
            path=str(screenshots / f"compare-{size}.png"), full_page=size == "desktop"
        )
    assert not page.errors
    await page.context.close()
    for name in ("replay-desktop", "replay-phone", "compare-desktop", "compare-phone"):
        assert (screenshots / f"{name}.png").stat().st_size > 10_000
