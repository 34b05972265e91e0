"""The Analytics page in a real browser: Debian's chromium driven by Playwright (async API)
against a real uvicorn serving the sub-app on a tracker seeded here with known history,
on SQLite and on PostgreSQL.

The seeded chatbot "shop" ran two flow versions: v1 (with an "agent" node) and then v2
(which drops "agent" and adds "faq"). The page must show what the API answers, for the
browser's time zone (the context runs in America/New_York).

Locally the tests skip when /usr/bin/chromium is missing or when the build has no
analytics routes yet; under ``CI=true`` they fail. Screenshots go to a temporary folder,
or to the folder ``SESSIONTRACK_SCREENSHOTS`` names (``scripts/screenshots`` sets it to
docs/images/): a plain test run leaves the checkout as it was.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pluggy
import pytest
from dashboard_helpers import axe_violations, pages
from dashboard_helpers.pages import (
    BACKENDS,
    DESKTOP,
    PHONE,
    close_page,
    launched_browser,
    served_tracker,
)

import sessiontrack

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

PREFIX = "/api/chatbot-sessions"
TZ = "America/New_York"
SEP = "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}"  # between the nodes of a path

expect.set_options(timeout=15_000)


def flow(*nodes: str) -> dict[str, Any]:
    labels = {
        "start": "Start",
        "greet": "Greeting",
        "ask": "Ask order",
        "pay": "Payment",
        "agent": "Human agent",
        "faq": "FAQ",
        "end": "Done",
    }
    chain = {
        "start": ["greet"],
        "greet": ["ask", "faq"],
        "ask": ["pay", "agent"],
        "pay": ["end"],
        "faq": ["end"],
        "agent": [],
    }
    return {
        "nodes": [{"id": n, "type": "step", "data": {"label": labels[n]}} for n in nodes],
        "edges": [
            {"id": f"{a}-{b}", "source": a, "target": b}
            for a in nodes
            for b in chain.get(a, [])
            if b in nodes
        ],
    }


FLOW_V1 = flow("start", "greet", "ask", "pay", "agent", "end")
FLOW_V2 = flow("start", "greet", "faq", "ask", "pay", "end")
PAID = ["start", "greet", "ask", "pay", "end"]
HANDOFF = ["start", "greet", "ask", "agent"]
BOUNCE = ["start", "greet"]
FAQ = ["start", "greet", "faq", "end"]
# (version, path, final status or None for active, how many)
PLAN: list[tuple[str, list[str], str | None, int]] = [
    ("v1", PAID, "completed", 5),
    ("v1", HANDOFF, "stopped", 3),
    ("v1", BOUNCE, "expired", 2),
    ("v1", ["start", "greet", "ask"], None, 1),
    ("v2", FAQ, "completed", 4),
    ("v2", PAID, "completed", 2),
]


@dataclass
class Shop:
    base: str
    ui: str
    pm: pluggy.PluginManager
    tracker: sessiontrack.Tracker
    sessions: dict[tuple[str, tuple[str, ...]], list[str]] = field(default_factory=dict)


def seed(hook: Any, now: datetime) -> dict[tuple[str, tuple[str, ...]], list[str]]:
    """The plan above, v1's sessions 5 to 3 days ago, v2's in the last 2 days."""
    made: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    n = 0
    for version, graph in (("v1", FLOW_V1), ("v2", FLOW_V2)):
        hook.sessiontrack_flow_registered(
            chatbot_id="shop", name="Shop Bot", flow=graph, version=version
        )
        for v, path, status, count in PLAN:
            if v != version:
                continue
            for _ in range(count):
                day = (5 - n % 3) if version == "v1" else n % 2
                at = now - timedelta(days=day, minutes=30 + n)
                n += 1
                sid = sessiontrack.new_session_id()
                hook.sessiontrack_session_started(
                    session_id=sid,
                    chatbot_id="shop",
                    contact={"name": f"Shopper {n:02d}", "phone": f"+1777000{n:04d}"},
                    at=at,
                )
                hook.sessiontrack_message(
                    session_id=sid, direction="inbound", type="text", text="hi", at=at
                )
                for node in path:
                    at += timedelta(seconds=3)
                    hook.sessiontrack_node_executed(session_id=sid, node_id=node, at=at)
                if status == "completed":
                    for text in ("Here you go", "Bye"):
                        hook.sessiontrack_message(
                            session_id=sid, direction="outbound", type="text", text=text, at=at
                        )
                if status is not None:
                    hook.sessiontrack_session_completed(
                        session_id=sid, status=status, at=at + timedelta(seconds=1)
                    )
                made.setdefault((version, tuple(path)), []).append(sid)
    # A chatbot without sessions, and one the live test feeds.
    hook.sessiontrack_flow_registered(chatbot_id="quiet", name="Quiet Bot", flow=flow("start"))
    hook.sessiontrack_flow_registered(
        chatbot_id="pulse", name="Pulse Bot", flow=flow("start", "greet"), version="p1"
    )
    return made


@pytest.fixture(scope="module", params=BACKENDS)
async def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Shop]:
    # The seeded active session is days old: keep the sweeper from expiring it.
    options = {"idle_timeout": timedelta(days=30)}
    async with served_tracker(request.param, tmp_path_factory, **options) as served:
        made = seed(served.hook, datetime.now(UTC))
        await served.tracker.flush()
        yield Shop(served.base, served.ui, served.pm, served.tracker, made)


@pytest.fixture(scope="module")
async def browser(shop: Shop, chromium: Path) -> AsyncIterator[Any]:
    async with launched_browser(chromium) as browser:
        yield browser


async def new_page(browser: Any, viewport: dict[str, int] = DESKTOP, **options: Any) -> Any:
    page = await pages.new_page(browser, viewport, timezone_id=TZ, **options)
    page.analytics = []
    page.on("request", lambda r: page.analytics.append(r.url) if "/analytics/" in r.url else None)
    return page


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser)
    yield page
    await close_page(page)


async def api(shop: Shop, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{shop.base}{PREFIX}/{path}", params=params)
    response.raise_for_status()
    return response.json()


def asked(page: Any, route: str, **match: str) -> dict[str, str]:
    """The query of the page's last request to /analytics/<route> (with those params)."""
    for url in reversed(page.analytics):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if parts.path.endswith(f"/analytics/{route}") and all(
            query.get(k) == v for k, v in match.items()
        ):
            return query
    raise AssertionError(f"the page did not ask /analytics/{route} {match}: {page.analytics}")


async def js(page: Any, expr: str, arg: Any = None) -> Any:
    """Evaluate with the page's own formatting helpers (js/analytics.js) as `m`."""
    return await page.evaluate(
        f"async (arg) => {{ const m = await import('./js/analytics.js'); return {expr}; }}", arg
    )


def card(name: str) -> str:
    return f"#an-card-{name} .an-value"


async def tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the keyboard focus."""
    for _ in range(limit):
        if await page.evaluate(f"document.activeElement?.matches({selector!r}) ?? false"):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


# --- figures ----------------------------------------------------------------------------


async def test_cards_and_heat_map_show_what_the_api_answers(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/analytics?chatbotId=shop&version=v1")
    await expect(page.locator(card("sessions"))).to_have_text("11")
    query = asked(page, "summary")
    assert query["tz"] == TZ
    assert query["version"] == "v1"
    summary = await api(shop, "analytics/summary", **query)
    assert summary["sessions"] == 11 and summary["active"] == 1
    assert summary["completionRate"] == 0.5  # 5 of 10 ended
    expected = await js(
        page,
        "[m.formatRate(arg.completionRate), m.formatSeconds(arg.duration.p50), "
        "m.formatSeconds(arg.duration.p90)]",
        summary,
    )
    assert expected[0] == "50%"
    await expect(page.locator(card("completion"))).to_have_text(expected[0])
    await expect(page.locator(card("p50"))).to_have_text(expected[1])
    await expect(page.locator(card("p90"))).to_have_text(expected[2])
    mean = summary["messages"]["mean"]
    assert mean == 2  # 5 x 3 and 5 x 1 messages over 10 ended sessions
    await expect(page.locator(card("messages"))).to_have_text("2")

    nodes = await api(shop, "analytics/nodes", **asked(page, "nodes"))
    by_id = {n["nodeId"]: n for n in nodes["nodes"]}
    assert by_id["ask"]["sessions"] == 9 and by_id["agent"]["dropOffRate"] == 1
    graph = page.locator(".an-flow").first
    # Hover: the node's counts in a tooltip.
    await graph.locator(".node[data-node-id='ask']").hover()
    tip = graph.locator("[role=tooltip]:visible")
    await expect(tip).to_contain_text(f"{by_id['ask']['sessions']} sessions")
    await expect(tip).to_contain_text(f"{by_id['ask']['visits']} visits")
    # Keyboard: Tab reaches nodes and edges; the focused one's counts show and are its name.
    await graph.locator(".flow-svg").focus()
    await tab_to(page, ".an-flow .node[data-node-id='agent']")
    await expect(tip).to_contain_text("Human agent: 3 sessions")
    await expect(tip).to_contain_text("drop-off 100%")
    await expect(tip).to_contain_text("3 stopped")
    label = await page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label == await tip.text_content()
    edge = next(e for e in nodes["edges"] if (e["source"], e["target"]) == ("ask", "agent"))
    await graph.locator(".flow-svg").focus()
    await tab_to(page, ".an-flow .edge-g[data-source='ask'][data-target='agent']")
    await expect(tip).to_contain_text(f"Ask order → Human agent: {edge['sessions']} sessions")
    # Edge width by traffic, node colour by drop-off.
    widths = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.an-flow .edge-g')].map(
            g => [g.dataset.source + '>' + g.dataset.target,
                  parseFloat(getComputedStyle(g.querySelector('.edge')).strokeWidth)]))"""
    )
    assert widths["start>greet"] > widths["greet>ask"] > widths["ask>agent"]
    fills = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.an-flow .node')].map(
            g => [g.dataset.nodeId, getComputedStyle(g.querySelector('.node-box')).fill]))"""
    )
    assert fills["agent"] != fills["start"]
    # The same figures as a table; a node the newer version removed keeps its numbers.
    row = page.locator("#an-nodes-table tr[data-node-id='agent']")
    await expect(row).to_contain_text("Human agent")
    await expect(row).to_contain_text("100%")
    # The daily trend has one bar per day of the range, each with the API's count.
    days = summary["daily"]
    await expect(page.locator("#an-trend .trend-day")).to_have_count(len(days))
    busiest = max(days, key=lambda d: d["started"])
    bar = page.locator(f"#an-trend .trend-day[data-date='{busiest['date']}']")
    await expect(bar).to_have_attribute("aria-label", re.compile(f": {busiest['started']} started"))


async def test_the_duration_histogram_draws_the_api_buckets(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/analytics?chatbotId=shop&version=v1")
    await expect(page.locator(card("sessions"))).to_have_text("11")
    summary = await api(shop, "analytics/summary", **asked(page, "summary", version="v1"))
    histogram = summary["duration"]["histogram"]
    # v1's ended sessions: 2 bounces of 7 s, 3 handoffs of 13 s and 5 payments of 16 s.
    assert [b["sessions"] for b in histogram][:3] == [2, 8, 0]
    assert sum(b["sessions"] for b in histogram) == 10 and histogram[-1]["le"] is None
    bars = page.locator("#an-histogram .bar")
    await expect(bars).to_have_count(len(histogram))
    values = await bars.evaluate_all("bars => bars.map(b => Number(b.dataset.value))")
    assert values == [b["sessions"] for b in histogram]
    await expect(bars.nth(0)).to_have_attribute("aria-label", "2 sessions lasted up to 10 s")
    await expect(bars.nth(1)).to_have_attribute("aria-label", "8 sessions lasted 10 s to 30 s")
    await expect(bars.last).to_have_attribute("aria-label", "0 sessions lasted over 1 day")
    await expect(page.locator("#an-hist-note")).to_contain_text("Ended sessions of the range")
    # No ended session: no bars, a note.
    await page.goto(shop.ui + "#/analytics?chatbotId=quiet")
    await expect(page.locator(card("sessions"))).to_have_text("0")
    await expect(page.locator("#an-hist-note")).to_have_text("No ended sessions in this range yet.")
    await expect(page.locator("#an-histogram .chart")).to_be_hidden()


async def test_a_top_path_links_to_exactly_its_sessions(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/analytics?chatbotId=shop")
    paths = page.locator("#an-paths .an-path")
    await expect(paths.first).to_be_visible()
    answer = await api(shop, "analytics/paths", **asked(page, "paths"))
    assert answer["version"] == "v2"
    shown = await paths.evaluate_all("items => items.map(i => i.dataset.nodes)")
    assert shown == [",".join(p["nodes"]) for p in answer["paths"]]
    faq = page.locator(f"#an-paths .an-path[data-nodes='{','.join(FAQ)}']")
    await expect(faq.locator(".an-path-sessions")).to_have_text("4 sessions")
    await faq.locator(".an-path-link").click()
    await expect(page).to_have_url(re.compile(re.escape("path=start%2Cgreet%2Cfaq%2Cend")))
    rows = page.locator("#sessions-table tbody tr")
    await expect(rows).to_have_count(4)
    ids = set(await rows.evaluate_all("rows => rows.map(r => r.dataset.sessionId)"))
    assert ids == set(shop.sessions[("v2", tuple(FAQ))])
    await expect(page.locator("#path-filter")).to_contain_text(f" {SEP} ".join(FAQ))
    await expect(page.locator("#version-filter")).to_have_text(" of flow version v2")
    # Back to every path of the chatbot.
    await page.click("#path-filter-clear")
    await expect(page.locator("#path-filter")).to_be_hidden()
    assert "version=" not in page.url


async def test_a_versions_top_path_lists_only_that_versions_sessions(page: Any, shop: Shop) -> None:
    """v1 and v2 both have PAID sessions: v1's link lists v1's, the all-versions link both."""
    await page.goto(shop.ui + "#/analytics?chatbotId=shop&version=v1")
    paid = page.locator(f"#an-paths .an-path[data-nodes='{','.join(PAID)}']")
    await expect(paid.locator(".an-path-sessions")).to_have_text("5 sessions")
    answer = await api(shop, "analytics/paths", **asked(page, "paths", version="v1"))
    assert answer["version"] == "v1"
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "path=" in r.url else None)
    await paid.locator(".an-path-link").click()
    await expect(page).to_have_url(re.compile(re.escape("version=v1&path=start%2Cgreet%2Cask")))
    rows = page.locator("#sessions-table tbody tr")
    await expect(rows).to_have_count(5)
    ids = set(await rows.evaluate_all("rows => rows.map(r => r.dataset.sessionId)"))
    assert ids == set(shop.sessions[("v1", tuple(PAID))])
    await expect(page.locator("#version-filter")).to_have_text(" of flow version v1")
    await expect(page.locator("#path-filter")).to_contain_text(f" {SEP} ".join(PAID))
    # The list asked the API for that version's path.
    asks = [dict(parse_qsl(urlsplit(url).query)) for url in requests]
    assert {"version": "v1", "path": ",".join(PAID)}.items() <= asks[-1].items(), asks
    # All versions: no version in the link, both versions' sessions on those node ids.
    await page.goto(shop.ui + "#/analytics?chatbotId=shop&version=all")
    paid = page.locator(f"#an-paths .an-path[data-nodes='{','.join(PAID)}']")
    await expect(paid.locator(".an-path-sessions")).to_have_text("7 sessions")
    href = await paid.locator(".an-path-link").get_attribute("href")
    assert "version=" not in href
    await paid.locator(".an-path-link").click()
    await expect(rows).to_have_count(7)
    ids = set(await rows.evaluate_all("rows => rows.map(r => r.dataset.sessionId)"))
    assert ids == set(shop.sessions[("v1", tuple(PAID))]) | set(shop.sessions[("v2", tuple(PAID))])
    await expect(page.locator("#version-filter")).to_have_count(0)


async def test_the_funnel_builds_from_picked_nodes(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/analytics?chatbotId=shop")
    graph = page.locator(".an-flow").first
    await expect(graph.locator(".node[data-node-id='greet']")).to_be_visible()
    await expect(page.locator(card("sessions"))).to_have_text("6")
    # A click on a node in the graph, the picker, and Enter on a focused node.
    await graph.locator(".node[data-node-id='greet']").click()
    await expect(page.locator("#an-steps .an-step")).to_have_count(1)
    await page.select_option("#an-step-pick", "pay")
    await page.click("#an-step-add")
    await expect(page.locator("#an-steps .an-step")).to_have_count(2)
    await graph.locator(".flow-svg").focus()
    await tab_to(page, ".an-flow .node[data-node-id='end']")
    await page.keyboard.press("Enter")
    await expect(page.locator("#an-steps .an-step")).to_have_count(3)
    await expect(page).to_have_url(re.compile(re.escape("steps=greet%2Cpay%2Cend")))
    funnel = await api(shop, "analytics/funnel", **asked(page, "funnel", steps="greet,pay,end"))
    assert [s["sessions"] for s in funnel["steps"]] == [6, 2, 2]
    rows = page.locator("#an-funnel-steps-table tbody tr")
    await expect(rows).to_have_count(3)
    cells = await rows.evaluate_all("rows => rows.map(r => r.children[1].textContent)")
    assert cells == [str(s["sessions"]) for s in funnel["steps"]]
    await expect(page.locator("#an-funnel .funnel-step")).to_have_count(3)
    # Removing a step rebuilds it.
    await page.get_by_role("button", name="Remove step 2, Payment").click()
    await expect(rows).to_have_count(2)
    await expect(page).to_have_url(re.compile(re.escape("steps=greet%2Cend")))


async def test_compare_shows_two_versions_side_by_side(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/analytics?chatbotId=shop&version=v1&compare=v2")
    await expect(page.locator(".an-flow")).to_have_count(2)
    await expect(page.locator(card("sessions"))).to_have_text(["11", "6"])
    a = await api(shop, "analytics/summary", **asked(page, "summary", version="v1"))
    b = await api(shop, "analytics/summary", **asked(page, "summary", version="v2"))
    rates = await js(
        page,
        "[m.formatRate(arg[0]), m.formatRate(arg[1])]",
        [a["completionRate"], b["completionRate"]],
    )
    await expect(page.locator(card("completion"))).to_have_text(rates)
    await expect(page.locator(".an-flow[data-slot='A'] .an-flow-title")).to_contain_text("v1")
    await expect(page.locator(".an-flow[data-slot='B'] .an-flow-title")).to_contain_text("v2")
    # Each graph is its version's: "agent" only in A, "faq" only in B.
    await expect(page.locator(".an-flow[data-slot='A'] .node[data-node-id='agent']")).to_have_count(
        1
    )
    await expect(page.locator(".an-flow[data-slot='B'] .node[data-node-id='agent']")).to_have_count(
        0
    )
    await expect(page.locator(".an-flow[data-slot='B'] .node[data-node-id='faq']")).to_have_count(1)
    agent = page.locator("#an-nodes-table tr[data-node-id='agent']")
    await expect(agent).to_contain_text("not in version")
    ask = page.locator("#an-nodes-table tr[data-node-id='ask'] td")
    await expect(ask.nth(0)).to_have_text("9")
    await expect(ask.nth(1)).to_have_text("2")
    # The version pickers name what the API knows.
    versions = await api(shop, "analytics/versions", chatbotId="shop")
    assert versions["current"] == "v2"
    options = await page.locator("#an-version option").evaluate_all("o => o.map(x => x.value)")
    assert options == ["", *[v["version"] for v in versions["versions"]], "all"]


async def test_new_sessions_update_the_figures_without_a_reload(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/analytics?chatbotId=pulse")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator(card("sessions"))).to_have_text("0")
    await page.evaluate("window.__sameDocument = true")
    hook = shop.pm.hook
    sid = sessiontrack.new_session_id()
    hook.sessiontrack_session_started(session_id=sid, chatbot_id="pulse", contact={"name": "P"})
    hook.sessiontrack_node_executed(session_id=sid, node_id="start")
    hook.sessiontrack_node_executed(session_id=sid, node_id="greet")
    await shop.tracker.flush()
    await expect(page.locator(card("sessions"))).to_have_text("1")
    await expect(page.locator(card("completion"))).to_have_text("—")
    hook.sessiontrack_session_completed(session_id=sid)
    await shop.tracker.flush()
    await expect(page.locator(card("completion"))).to_have_text("100%")
    await expect(page.locator("#an-paths .an-path-sessions")).to_have_text("1 session")
    assert await page.evaluate("window.__sameDocument === true")


# --- states, links, sizes -----------------------------------------------------------------


async def test_empty_and_error_states(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/analytics?chatbotId=quiet")
    await expect(page.locator("#an-empty")).to_contain_text("No sessions in this range")
    await page.goto(shop.ui + "#/analytics?chatbotId=no-such-bot")
    await expect(page.locator("#an-error")).to_be_visible()
    await page.goto(shop.ui + "#/analytics?chatbotId=shop&startDate=2026-03-10&endDate=2026-03-01")
    await expect(page.locator("#an-error")).to_contain_text("endDate")
    await page.goto(shop.ui + "#/analytics?chatbotId=shop")
    await expect(page.locator("#an-error")).to_have_count(0)
    await expect(page.locator(card("sessions"))).to_have_text("6")


async def test_the_list_links_each_chatbot_to_its_analytics(page: Any, shop: Shop) -> None:
    await page.goto(shop.ui + "#/?tab=all&bot=shop")
    link = page.locator("#sessions-table tbody tr .chatbot-link").first
    await expect(link).to_have_attribute("href", "#/analytics?chatbotId=shop")
    await expect(page.locator("#chatbot-analytics")).to_have_attribute(
        "href", "#/analytics?chatbotId=shop"
    )
    await link.click()
    await expect(page.locator("#an-title")).to_have_text("Analytics · Shop Bot")
    await expect(page.locator("#nav-analytics")).to_have_attribute("aria-current", "page")
    # The chatbot picker switches the page to another chatbot.
    await page.select_option("#an-chatbot", "pulse")
    await expect(page).to_have_url(re.compile(re.escape("chatbotId=pulse")))
    await page.click("#nav-sessions")
    await expect(page.locator("#sessions-table")).to_be_attached()


async def test_phone_width_and_date_pickers(browser: Any, shop: Shop) -> None:
    page = await new_page(browser, PHONE)
    await page.goto(shop.ui + "#/analytics?chatbotId=shop&version=v1&compare=v2")
    await expect(page.locator(card("sessions"))).to_have_text(["11", "6"])
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # A narrower range: the page asks for it, in the browser's time zone.
    today = await js(page, "m.localDate()")
    await page.fill("#an-start", today)
    await expect(page).to_have_url(re.compile(re.escape(f"startDate={today}")))
    query = asked(page, "summary", startDate=today, version="v1")
    assert query["endDate"] == today and query["tz"] == TZ
    summary = await api(shop, "analytics/summary", **query)
    await expect(page.locator(card("sessions")).first).to_have_text(str(summary["sessions"]))
    assert not page.errors
    await page.context.close()


async def test_the_page_passes_an_accessibility_audit(
    browser: Any, shop: Shop, axe_script: Path
) -> None:
    for viewport in (DESKTOP, PHONE):
        page = await new_page(browser, viewport)
        await page.goto(
            shop.ui + "#/analytics?chatbotId=shop&version=v1&compare=v2&steps=greet,ask"
        )
        await expect(page.locator("#an-funnel-steps-table tbody tr")).to_have_count(2)
        await page.wait_for_timeout(300)
        violations = await axe_violations(page, axe_script)
        assert violations == [], (viewport, violations)
        assert not page.errors
        await page.context.close()


async def test_screenshots(
    browser: Any, shop: Shop, screenshots: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if "postgresql" in request.node.callspec.id:
        screenshots = tmp_path  # the kept pictures come from the SQLite run
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await new_page(browser, viewport, reduced_motion="reduce")
        await page.goto(shop.ui + "#/analytics?chatbotId=shop&version=v1&steps=start,greet,ask,pay")
        await expect(page.locator("#an-funnel-steps-table tbody tr")).to_have_count(4)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await page.wait_for_timeout(800)
        await page.screenshot(path=str(screenshots / f"analytics-{size}.png"), full_page=True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert not page.errors
        await page.context.close()
    for size in ("desktop", "phone"):
        assert (screenshots / f"analytics-{size}.png").stat().st_size > 10_000
