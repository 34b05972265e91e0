"""The dashboard in a real browser: Debian's chromium driven by Playwright (async API)
against the example host app (``python -m examples.helpdesk``) in its own process, with
its traffic simulator running, on a database seeded with known history
(tests/dashboard_helpers/seed.py).

Locally the tests skip when /usr/bin/chromium is missing; under ``CI=true`` they fail.
They save screenshots of both pages at desktop and phone sizes into a temporary folder, or
into the folder that ``SESSIONTRACK_SCREENSHOTS`` names: ``scripts/screenshots`` sets it to
docs/images/ to refresh the README's pictures (a plain test run leaves the checkout as it
was).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest
from dashboard_helpers import axe_violations
from dashboard_helpers.pages import DESKTOP, PHONE, close_page, launched_browser, new_page
from dashboard_helpers.seed import BILLING_SESSIONS, LONG_MESSAGES, ORDER_PATH
from dashboard_helpers.server import PREFIX, helpdesk
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import MessagesState
from langgraph.prebuilt import ToolNode
from langgraph.types import Command
from web_helpers.live import host_app, serve

import sessiontrack
from examples.support_agent.agent import support_graph
from sessiontrack.adapters.langgraph import LangGraphAdapter
from sessiontrack.web import create_app

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"completed", "expired", "stopped"}

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, chromium: Path) -> Iterator[str]:
    with helpdesk(tmp_path_factory.mktemp("dashboard")) as url:
        yield url


@pytest.fixture(scope="module")
def ui(base_url: str) -> str:
    return f"{base_url}{PREFIX}/ui/"


@pytest.fixture(scope="module")
async def browser(base_url: str, chromium: Path) -> AsyncIterator[Any]:
    async with launched_browser(chromium) as browser:
        yield browser


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser)
    yield page
    await close_page(page)


async def api(base_url: str, path: str = "", *, method: str = "GET", **params: Any) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(method, f"{base_url}{PREFIX}/{path}", params=params)
    response.raise_for_status()
    return response.json()


async def session_id(base_url: str, name: str) -> str:
    found = (await api(base_url, search=name, limit=1))["data"]
    assert found, f"no session for {name!r}"
    return str(found[0]["id"])


ROW_IDS = "rows => rows.map(r => r.dataset.sessionId)"
ROWS = "#sessions-table tbody tr"
MESSAGE_COUNTS = "cells => JSON.stringify(cells.map(c => c.textContent))"
DASH = "\N{EN DASH}"  # the pager says "1<en dash>20 of 45"
TIMES = "\N{MULTIPLICATION SIGN}"  # a node's figures start "2<times> · …"


# --- the list ---------------------------------------------------------------------------


async def test_list_updates_live_while_the_simulator_runs(
    page: Any, ui: str, base_url: str
) -> None:
    await page.goto(ui + "#/?tab=all")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    rows = page.locator(ROWS)
    await expect(rows.first).to_be_visible()
    before = set(await rows.evaluate_all(ROW_IDS))
    counts = await page.locator(f"{ROWS} .cell-messages").evaluate_all(MESSAGE_COUNTS)
    await expect(page.locator("#stat-total")).not_to_have_text("—")
    total = int(re.sub(r"\D", "", await page.locator("#stat-total").inner_text()))
    assert total >= 40  # the seeded sessions
    await page.evaluate("window.__sameDocument = true")

    # A session the simulator starts now appears at the top, with a toast, without reload.
    await page.wait_for_function(
        f"ids => [...document.querySelectorAll('{ROWS}')]"
        ".some(r => !ids.includes(r.dataset.sessionId))",
        arg=sorted(before),
        timeout=30_000,
    )
    await expect(page.locator(".toast-started").first).to_be_attached()
    new_ids = set(await rows.evaluate_all(ROW_IDS)) - before
    for sid in new_ids:
        assert (await api(base_url, sid))["id"] == sid
    assert await page.evaluate("window.__sameDocument === true")
    # Rows change in place as messages arrive.
    await page.wait_for_function(
        f"old => ({MESSAGE_COUNTS})([...document.querySelectorAll('{ROWS} .cell-messages')]) "
        "!== old",
        arg=counts,
        timeout=30_000,
    )
    # The statistics cards follow.
    await page.wait_for_function(
        "n => Number(document.getElementById('stat-total').textContent.replace(/\\D/g, '')) > n",
        arg=total,
        timeout=15_000,
    )


async def test_completed_sessions_leave_the_active_tab(page: Any, ui: str, base_url: str) -> None:
    await page.goto(ui)
    await expect(page.locator("#tab-active")).to_have_attribute("aria-current", "page")
    rows = page.locator(ROWS)
    await expect(rows.first).to_be_visible()
    # A session that ends is patched in place and leaves the tab at the next (throttled)
    # refresh: wait for a moment when every row is active, and take the ids in that moment.
    settled = await page.wait_for_function(
        f"""() => {{
            const rows = [...document.querySelectorAll(`{ROWS}`)];
            const active = ['running', 'waiting_input', 'waiting_flow'];
            return rows.length > 0 && rows.every(r => active.includes(r.dataset.status))
                && rows.map(r => r.dataset.sessionId);
        }}""",
        timeout=15_000,
    )
    before = await settled.json_value()
    await page.evaluate("window.__sameDocument = true")
    # The simulator finishes, hands off and stops sessions: one of them leaves this tab.
    gone = await page.wait_for_function(
        f"ids => ids.find(id => !document.querySelector(`{ROWS}[data-session-id='${{id}}']`))",
        arg=before,
        timeout=60_000,
    )
    sid = await gone.json_value()
    assert (await api(base_url, sid))["status"] in TERMINAL
    assert await page.evaluate("window.__sameDocument === true")
    await page.click("#tab-completed")
    await expect(page).to_have_url(re.compile(r"tab=completed"))
    phone = (await api(base_url, sid))["customerPhone"]
    await page.fill("#search", phone)
    await expect(page.locator(f"{ROWS}[data-session-id='{sid}']")).to_be_visible()


async def test_filters_search_sort_and_keyset_pagination(page: Any, ui: str) -> None:
    list_requests: list[str] = []
    page.on(
        "request",
        lambda r: (
            list_requests.append(r.url)
            if PREFIX + "/?" in r.url or r.url.endswith("/active")
            else None
        ),
    )
    await page.goto(ui + "#/?tab=completed&sort=startedAt.ASC")
    rows = page.locator(ROWS)
    first_link = page.locator(f"{ROWS} .row-link").first
    await expect(first_link).to_have_text("Seed Customer 01")
    statuses = await rows.evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert len(statuses) == 20 and set(statuses) <= TERMINAL
    summary = await page.locator("#pager-summary").inner_text()
    assert re.fullmatch(rf"1{DASH}20 of \d+", summary), summary
    assert int(re.sub(r"\D", "", summary.split("of")[1])) >= 36

    await page.click("#page-next")
    await expect(first_link).to_have_text("Seed Customer 21")
    assert re.search(r"page=2&cursor=[\w-]+", page.url), page.url
    await expect(page.locator("#pager-summary")).to_contain_text(f"21{DASH}")
    await page.click("#page-prev")
    await expect(first_link).to_have_text("Seed Customer 01")

    await page.select_option("#chatbot-filter", "billing")
    await expect(rows).to_have_count(BILLING_SESSIONS)
    assert set(await page.locator(f"{ROWS} td[data-label=Chatbot]").all_inner_texts()) == {
        "Billing Bot"
    }
    assert "bot=billing" in page.url
    await expect(page.locator("#stat-total")).to_have_text(str(BILLING_SESSIONS))  # per chatbot
    await page.select_option("#chatbot-filter", "")

    await page.fill("#search", "Seed Customer 07")
    await expect(rows).to_have_count(1)
    await expect(first_link).to_have_text("Seed Customer 07")
    await page.fill("#search", "+1999000001")
    await expect(rows).to_have_count(10)  # +19990000010 … +19990000019
    assert all(
        p.startswith("+1999000001") for p in await page.locator(f"{ROWS} .phone").all_inner_texts()
    )

    # The URL holds the view: a reload (or a shared link) shows the same.
    await expect(page).to_have_url(re.compile(r"q=%2B1999000001"))
    await page.reload()
    await expect(rows).to_have_count(10)
    await expect(page.locator("#search")).to_have_value("+1999000001")
    await expect(page.locator("#sort")).to_have_value("startedAt.ASC")
    await expect(page.locator("#tab-completed")).to_have_attribute("aria-current", "page")

    await page.fill("#search", "nobody-by-this-name")
    await expect(page.locator("#empty-state")).to_contain_text("No sessions match")
    await page.click("#empty-state a")
    await expect(page.locator("#search")).to_have_value("")
    await expect(rows).to_have_count(20)

    # A shared link with a cursor the API refuses falls back to the same page by offset.
    await page.goto(ui + "#/?tab=completed&sort=startedAt.ASC&page=2&cursor=not-a-cursor")
    await expect(first_link).to_have_text("Seed Customer 21")
    assert "cursor" not in page.url and "page=2" in page.url

    # Never more than one page per request, never the unbounded /active list.
    assert list_requests
    for url in list_requests:
        assert not url.endswith("/active"), url
        limit = int(re.search(r"limit=(\d+)", url).group(1))  # type: ignore[union-attr]
        assert limit <= 100, url


# --- the detail -------------------------------------------------------------------------


async def test_detail_draws_the_flow_with_the_executed_path(page: Any, ui: str) -> None:
    await page.goto(ui + "#/?tab=completed&q=Seed%20Customer%2003")
    await page.click(f"{ROWS} .row-link")
    await expect(page).to_have_url(re.compile(r"#/sessions/[0-9a-f-]{36}$"))
    nodes = page.locator("#flow-svg .node")
    await expect(nodes).to_have_count(17)
    executed = await page.locator("#flow-svg .node.executed").evaluate_all(
        "els => els.map(e => e.dataset.nodeId)"
    )
    assert sorted(executed) == sorted(ORDER_PATH)
    await expect(page.locator("#flow-svg .node.unexecuted")).to_have_count(17 - len(ORDER_PATH))
    edges = await page.locator("#flow-svg .edge-g.executed").evaluate_all(
        "els => els.map(e => [e.dataset.source, e.dataset.target])"
    )
    assert sorted(map(tuple, edges)) == sorted(pairwise(ORDER_PATH))
    await expect(page.locator("#flow-svg .node.current")).to_have_count(0)  # it ended
    await expect(page.locator("#detail-status")).to_have_text("Completed")
    await expect(page.locator("#stop-button")).to_have_count(0)
    steps = page.locator("#timeline li")
    await expect(steps).to_have_count(len(ORDER_PATH))
    await expect(steps.last).to_contain_text("Goodbye")
    await expect(page.locator("#conversation .msg")).to_have_count(2)
    await expect(page.locator("#variables")).to_contain_text('"order_number"')
    await expect(page.locator("#back-link")).to_have_attribute("href", re.compile("q=Seed"))


async def test_detail_of_an_active_session_renders_interactive_messages(
    browser: Any, ui: str, base_url: str
) -> None:
    sid = await session_id(base_url, "Maria Garcia")
    for reduced, animation in (("reduce", "none"), ("no-preference", "node-pulse")):
        page = await new_page(browser, reduced_motion=reduced)
        await page.goto(ui + f"#/sessions/{sid}")
        current = page.locator("#flow-svg .node.current")
        await expect(current).to_have_attribute("data-node-id", "support_form")
        name = await current.locator(".node-box").evaluate("e => getComputedStyle(e).animationName")
        assert name == animation, (reduced, name)
        assert not page.errors
        if reduced == "reduce":
            await page.context.close()
    await expect(page.locator("#stop-button")).to_be_visible()
    await expect(page.locator("#timeline li[aria-current=step]")).to_contain_text("Ticket form")
    conv = page.locator("#conversation")
    await expect(conv.locator(".choices .choice")).to_have_text(
        ["Order status", "Tech support", "Talk to an agent"]
    )
    await expect(conv.locator(".list-rows li")).to_have_count(2)
    await expect(conv.locator(".msg-choice").first).to_contain_text("Tech support")
    await expect(conv.locator(".form-card")).to_contain_text("Open form")
    await expect(conv.locator(".form-fields")).to_contain_text("Charged twice for order A-1002")
    await expect(conv.locator(".msg-group.inbound .msg-sender").first).to_have_text("Customer")
    # Times are shown in the browser's time zone.
    shown = await conv.locator("time").first.inner_text()
    iso = await conv.locator("time").first.get_attribute("datetime")
    local = await page.evaluate(
        "iso => new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit', "
        "second: '2-digit'}).format(new Date(iso))",
        iso,
    )
    assert shown == local
    await page.context.close()


async def test_flow_without_positions_gets_a_layered_layout_and_pans_and_zooms(
    page: Any, ui: str
) -> None:
    await page.goto(ui + "#/?tab=completed&bot=billing")
    await page.click(f"{ROWS} .row-link >> nth=0")
    nodes = page.locator("#flow-svg .node")
    await expect(nodes).to_have_count(9)
    place = await nodes.evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.dataset.nodeId, "
        "e.getAttribute('transform').match(/-?[\\d.]+/g).map(Number)]))"
    )
    assert len({tuple(p) for p in place.values()}) == 9
    for source, target in [
        ("b_start", "b_greet"),
        ("b_greet", "b_ask"),
        ("b_ask", "b_lookup"),
        ("b_found", "b_show"),
        ("b_show", "b_pay"),
        ("b_pay", "b_end"),
    ]:
        assert place[target][1] > place[source][1], (source, target)
    await expect(page.locator("#flow-svg .node.revisited")).to_have_count(4)

    viewport = page.locator("#flow-svg .viewport")

    async def view() -> list[float]:
        transform = await viewport.get_attribute("transform")
        return [float(v) for v in re.findall(r"-?[\d.]+", transform)]

    x0, y0, k0 = await view()
    await page.click("#flow-zoom-in")
    assert (await view())[2] > k0
    box = await page.locator("#flow-svg").bounding_box()
    await page.mouse.move(box["x"] + 200, box["y"] + 200)
    await page.mouse.down()
    await page.mouse.move(box["x"] + 260, box["y"] + 240, steps=4)
    await page.mouse.up()
    x1, y1, _ = await view()
    assert (round(x1 - x0), round(y1 - y0)) != (0, 0)
    await page.mouse.wheel(0, 400)
    await page.click("#flow-fit")
    # Fit keeps the labels readable: the first node in view, the rest a pan away.
    assert await page.locator("#flow-svg").evaluate(LABEL_PX) >= 9
    assert await page.locator("#flow-svg").evaluate(NODE_ON_SCREEN, "b_start")
    # Zoomed out on purpose, the whole graph is in view.
    for _ in range(4):
        await page.click("#flow-zoom-out")
    for node in await nodes.all():
        b = await node.bounding_box()
        assert box["x"] <= b["x"] and b["x"] + b["width"] <= box["x"] + box["width"]
        assert box["y"] <= b["y"] and b["y"] + b["height"] <= box["y"] + box["height"]


FLOW_GEOMETRY = r"""svg => {
    const boxes = [...svg.querySelectorAll('.node')].map(g => {
        const m = g.transform.baseVal.consolidate().matrix;
        const r = g.querySelector('.node-box');
        return {id: g.dataset.nodeId, x: m.e, y: m.f, w: r.width.baseVal.value,
                h: r.height.baseVal.value};
    });
    const byId = Object.fromEntries(boxes.map(b => [b.id, b]));
    const back = [], crossings = [], ends = [];
    for (const g of svg.querySelectorAll('.edge-g')) {
        const s = byId[g.dataset.source], t = byId[g.dataset.target];
        if (t.y + t.h / 2 > s.y + s.h / 2) continue;  // a forward edge
        const name = `${s.id}>${t.id}`;
        back.push(name);
        const path = g.querySelector('.edge');
        const length = path.getTotalLength();
        for (let d = 0; d <= length; d += 2) {
            const p = path.getPointAtLength(d);
            for (const b of boxes) {
                if (b === s || b === t) continue;
                if (p.x > b.x + 1 && p.x < b.x + b.w - 1 && p.y > b.y + 1 && p.y < b.y + b.h - 1)
                    crossings.push(`${name} crosses ${b.id}`);
            }
        }
        // It ends on the target's outline, with an arrowhead.
        const end = path.getPointAtLength(length);
        const dx = Math.max(t.x - end.x, 0, end.x - t.x - t.w);
        const dy = Math.max(t.y - end.y, 0, end.y - t.y - t.h);
        const marker = (path.getAttribute('marker-end') || '').match(/url\(#(.+)\)/);
        const head = !!(marker && document.getElementById(marker[1]));
        ends.push([name, Math.hypot(dx, dy) <= 4, head]);
    }
    return {back, crossings: [...new Set(crossings)], ends};
}"""

NODE_ON_SCREEN = """(svg, id) => {
    const s = svg.getBoundingClientRect();
    const r = svg.querySelector(`.node[data-node-id='${id}'] .node-box`).getBoundingClientRect();
    return r.width > 0 && s.left <= r.left && r.right <= s.right && s.top <= r.top
        && r.bottom <= s.bottom;
}"""

LABEL_PX = """svg => Math.min(...[...svg.querySelectorAll('.node-label')].map(
    e => parseFloat(getComputedStyle(e).fontSize) * e.getScreenCTM().a))"""


async def test_flow_opens_with_its_first_node_and_routes_back_edges_round_the_nodes(
    browser: Any, ui: str, base_url: str
) -> None:
    """The graph opens with its first node in view (and the current node when both fit);
    edges back to an earlier node go round the layout, crossing no node, into their target
    with an arrowhead; fit never zooms below readable labels."""
    maria = await session_id(base_url, "Maria Garcia")
    seed = await session_id(base_url, "Seed Customer 03")
    cases = [
        (f"#/sessions/{maria}", "start", "support_form", 4),
        (f"#/sessions/{seed}", "start", None, 4),
        ("#/?tab=completed&bot=billing", "b_start", None, 1),
    ]
    for viewport in (DESKTOP, PHONE):
        for url, first, current, back_edges in cases:
            page = await new_page(browser, viewport)
            await page.goto(ui + url)
            if "bot=billing" in url:
                await page.click(f"{ROWS} .row-link >> nth=0")
            svg = page.locator("#flow-svg")
            await expect(svg.locator(".node").first).to_be_attached()
            await page.wait_for_timeout(300)  # the first view is set on the next frame
            where = (viewport["width"], url)
            assert await svg.evaluate(NODE_ON_SCREEN, first), where
            if current and viewport is DESKTOP:
                assert await svg.evaluate(NODE_ON_SCREEN, current), where
            assert await svg.evaluate(LABEL_PX) >= 9, where

            geometry = await svg.evaluate(FLOW_GEOMETRY)
            assert len(geometry["back"]) == back_edges, geometry
            assert geometry["crossings"] == [], geometry["crossings"]
            assert all(on and arrow for _, on, arrow in geometry["ends"]), geometry["ends"]

            # Fit: all of it when it stays readable, else readable from the first node.
            await page.click("#flow-fit")
            assert await svg.evaluate(LABEL_PX) >= 9, where
            assert await svg.evaluate(NODE_ON_SCREEN, first), where
            # The reader can still zoom out past it, and the focus button comes back.
            await page.click("#flow-zoom-out")
            assert await svg.evaluate(LABEL_PX) < 9
            if current:
                await page.click("#flow-focus")
                assert await svg.evaluate(NODE_ON_SCREEN, current), where
            assert not page.errors
            await page.context.close()


async def test_long_conversation_loads_older_messages_on_scroll_up(
    page: Any, ui: str, base_url: str
) -> None:
    sid = await session_id(base_url, "Long Talker")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/messages" in r.url else None)
    await page.goto(ui + f"#/sessions/{sid}")
    conv = page.locator("#conversation")
    messages = conv.locator(".msg")
    await expect(messages).to_have_count(100)
    await expect(messages.last).to_contain_text(f"Long message {LONG_MESSAGES}")
    await page.wait_for_function(
        "() => { const s = document.getElementById('conversation'); "
        "return s.scrollHeight - s.scrollTop - s.clientHeight < 4; }"
    )
    chunk_style = await conv.locator(".chunk").first.evaluate(
        "e => getComputedStyle(e).contentVisibility"
    )
    assert chunk_style == "auto"
    loaded = 100
    while loaded < LONG_MESSAGES:
        await conv.evaluate("e => { e.scrollTop = 0; }")
        await page.wait_for_function(
            "n => document.querySelectorAll('#conversation .msg').length > n", arg=loaded
        )
        loaded = await messages.count()
        # The reader stays where they were: the view does not jump to the new top.
        assert await conv.evaluate("e => e.scrollTop") > 0
    assert loaded == LONG_MESSAGES
    ids = await messages.evaluate_all("els => els.map(e => e.dataset.messageId)")
    assert len(set(ids)) == LONG_MESSAGES
    await expect(messages.first).to_contain_text("Long message 1")
    await expect(page.locator("#conv-status")).to_have_text("Start of the conversation")
    assert len(requests) == (LONG_MESSAGES - 100) // 100
    assert all("before=" in url and "limit=100" in url for url in requests)
    assert await conv.locator(".day-sep").count() >= 2


async def test_error_and_not_found_states(page: Any, ui: str) -> None:
    await page.goto(ui + "#/sessions/01a20000-0000-7000-8000-000000000000")
    await expect(page.locator("#error-state")).to_contain_text("Session not found")
    await page.goto(ui + "#/sessions/not-a-session-id")
    await expect(page.locator("#error-state")).to_contain_text("Session not found")

    # The network fails: the list says so and offers Retry, which works once it is back.
    list_route = re.compile(r".*/api/chatbot-sessions/\?.*")
    network = {"down": True}

    async def flaky(route: Any) -> None:
        await (route.abort() if network["down"] else route.continue_())

    await page.route(list_route, flaky)
    await page.goto(ui + "#/?tab=all")
    await expect(page.locator("#error-state")).to_contain_text("Could not load sessions")
    await expect(page.locator(ROWS)).to_have_count(0)
    network["down"] = False
    # Clicked in the page at once: live events also refresh the list (and so re-render
    # the error box meanwhile), and once the network is back one of them may recover it
    # before a click with Playwright's actionability waits would land.
    assert await page.evaluate(
        "() => { const b = document.querySelector('#error-state button'); b?.click(); return !!b; }"
    )
    await expect(page.locator(ROWS).first).to_be_visible()
    await expect(page.locator("#error-state")).to_have_count(0)
    await page.unroute(list_route)


# --- stopping ---------------------------------------------------------------------------


async def test_stop_button_stops_the_session(page: Any, ui: str, base_url: str) -> None:
    await page.goto(ui + "#/?q=Stella%20Stop")
    await page.click(f"{ROWS} .row-link")
    await expect(page.locator("#detail-status")).to_have_text("Waiting for input")
    await page.click("#stop-button")
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await page.click("#confirm-dialog button[value=cancel]")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#detail-status")).to_have_text("Waiting for input")
    await page.click("#stop-button")
    await page.click("#confirm-ok")
    await expect(page.locator("#detail-status")).to_have_text("Stopped")
    await expect(page.locator("#stop-button")).to_have_count(0)
    await expect(page.locator("#flow-svg .node.current")).to_have_count(0)
    stella = await session_id(base_url, "Stella Stop")
    assert (await api(base_url, stella))["status"] == "stopped"


async def test_stop_of_a_session_that_already_ended_says_so(
    page: Any, ui: str, base_url: str
) -> None:
    sid = await session_id(base_url, "Rex Race")
    # Cut the live stream so the page cannot learn of the stop before the click.
    await page.route(re.compile(r".*/events(\?.*)?$"), lambda route: route.abort())
    await page.goto(ui + f"#/sessions/{sid}")
    await expect(page.locator("#stop-button")).to_be_visible()
    await api(base_url, f"{sid}/stop", method="POST")
    await page.click("#stop-button")
    await page.click("#confirm-ok")
    await expect(page.locator("#stop-message")).to_have_text("This session had already ended.")
    await expect(page.locator("#detail-status")).to_have_text("Stopped")


# --- people -----------------------------------------------------------------------------


async def test_keyboard_reaches_and_opens_a_session(page: Any, ui: str) -> None:
    await page.goto(ui + "#/?tab=completed")
    await expect(page.locator(f"{ROWS} .row-link").first).to_be_visible()
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.classList.contains('row-link')"):
            break
    else:
        pytest.fail("Tab never reached a session link")
    outline = await page.evaluate(
        "getComputedStyle(document.activeElement.closest('tr')).outlineStyle"
    )
    assert outline == "solid"
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"#/sessions/"))
    await expect(page.locator("#flow-svg .node").first).to_be_attached()


async def test_pages_pass_an_accessibility_audit(
    browser: Any, ui: str, base_url: str, axe_script: Path
) -> None:
    """axe-core's WCAG 2 A/AA rules (contrast, names, roles, labels) on both pages, both
    sizes, with live updates and toasts on screen."""
    sid = await session_id(base_url, "Maria Garcia")
    for viewport in (DESKTOP, PHONE):
        page = await new_page(browser, viewport)
        for url, ready in (
            (ui + "#/?tab=all", ROWS),
            (ui + f"#/sessions/{sid}", "#flow-svg .node"),
        ):
            await page.goto(url)
            await expect(page.locator(ready).first).to_be_attached()
            await page.wait_for_timeout(500)
            violations = await axe_violations(page, axe_script)
            assert violations == [], (viewport, url, violations)
        assert not page.errors
        await page.context.close()


async def test_screenshots(browser: Any, ui: str, base_url: str, screenshots: Path) -> None:
    sid = await session_id(base_url, "Maria Garcia")
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await new_page(browser, viewport, reduced_motion="reduce")
        await page.goto(ui + "#/?tab=all")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await expect(page.locator(ROWS).first).to_be_visible()
        await page.wait_for_timeout(1500)
        await page.screenshot(path=str(screenshots / f"list-{size}.png"))
        await page.goto(ui + f"#/sessions/{sid}")
        await expect(page.locator("#flow-svg .node.current")).to_be_visible()
        await page.evaluate("document.getElementById('toasts').replaceChildren()")
        await page.wait_for_timeout(500)
        await page.screenshot(
            path=str(screenshots / f"detail-{size}.png"), full_page=size == "desktop"
        )
        # Readable: nothing wider than the screen.
        assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert not page.errors
        await page.context.close()
    for name in ("list-desktop", "detail-desktop", "list-phone", "detail-phone"):
        assert (screenshots / f"{name}.png").stat().st_size > 10_000


# --- another mount, with an authenticator -------------------------------------------------


async def test_asks_for_a_token_once_under_any_prefix(browser: Any, tmp_path: Path) -> None:
    def authenticate(request: Any) -> sessiontrack.Principal | None:
        return sessiontrack.Principal(id="ops") if request.token == "s3cret" else None

    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    async with sessiontrack.Tracker(
        f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}",
        plugin_manager=pm,
        migrate=True,
        poll_interval=0.05,
    ) as tracker:
        pm.hook.sessiontrack_flow_registered(
            chatbot_id="ops",
            name="Ops Bot",
            flow={
                "nodes": [{"id": "a", "data": {"label": "A"}}, {"id": "b", "data": {"label": "B"}}],
                "edges": [{"id": "ab", "source": "a", "target": "b"}],
            },
        )

        def start(name: str) -> str:
            sid = sessiontrack.new_session_id()
            pm.hook.sessiontrack_session_started(
                session_id=sid, chatbot_id="ops", contact={"name": name, "phone": "+100"}
            )
            pm.hook.sessiontrack_node_executed(session_id=sid, node_id="a")
            return sid

        first = start("First Ops Customer")
        await tracker.flush()
        sub_app = create_app(tracker, authenticate=authenticate, sse_max_age=1.5)
        app = host_app(sub_app, "/ops/desk/sessions")
        async with serve(app) as base:
            page = await new_page(browser)
            await page.goto(f"{base}/ops/desk/sessions/ui/")
            dialog = page.locator("#token-dialog")
            await expect(dialog).to_be_visible()
            await page.fill("#token-input", "wrong")
            await page.press("#token-input", "Enter")
            await expect(page.locator("#token-error")).to_be_visible()
            await page.fill("#token-input", "s3cret")
            await page.press("#token-input", "Enter")
            await expect(dialog).to_be_hidden()
            await expect(page.locator(f"{ROWS}[data-session-id='{first}']")).to_be_visible()
            # The event stream authenticates with ?access_token= and delivers live.
            await expect(page.locator("#live")).to_have_attribute("data-state", "live")
            second = start("Second Ops Customer")
            await expect(page.locator(f"{ROWS}[data-session-id='{second}']")).to_be_visible()
            assert await page.evaluate("sessionStorage.getItem('sessiontrack.token')") == "s3cret"

            # Kept for the browser session: a reload or a detail page asks nothing.
            await page.reload()
            await page.click(f"{ROWS}[data-session-id='{first}'] .row-link")
            await expect(page.locator("#flow-svg .node.current")).to_have_attribute(
                "data-node-id", "a"
            )
            await expect(page.locator("#live")).to_have_attribute("data-state", "live")
            pm.hook.sessiontrack_node_executed(session_id=first, node_id="b")
            await expect(page.locator("#flow-svg .edge-g.executed")).to_have_count(1)
            await expect(page.locator("#flow-svg .node.current")).to_have_attribute(
                "data-node-id", "b"
            )
            await expect(dialog).to_be_hidden()

            # The server ends streams after sse_max_age; while the browser waits to
            # reconnect, an event is committed. The browser reconnects with Last-Event-ID
            # and the stream resumes after it, so the event still arrives.
            resumed: list[str] = []

            async def on_request(request: Any) -> None:
                if "/events?" in request.url:
                    resumed.append(await request.header_value("last-event-id") or "")

            page.on("request", on_request)
            await expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
            pm.hook.sessiontrack_node_executed(session_id=first, node_id="a")
            await tracker.flush()
            await expect(page.locator("#timeline li")).to_have_count(3)
            await expect(page.locator("#flow-svg .node.current")).to_have_attribute(
                "data-node-id", "a"
            )
            assert any(v.isdigit() for v in resumed), resumed

            # Messages, variables and the end arrive live too.
            pm.hook.sessiontrack_message(
                session_id=first, direction="outbound", text="Live hello", node_id="a"
            )
            pm.hook.sessiontrack_variables_changed(session_id=first, variables={"plan": "gold"})
            await expect(page.locator("#conversation .msg").last).to_contain_text("Live hello")
            await expect(page.locator("#variables")).to_contain_text('"plan": "gold"')
            pm.hook.sessiontrack_session_completed(session_id=first, reason="done")
            await expect(page.locator("#detail-status")).to_have_text("Completed")
            await expect(page.locator("#stop-button")).to_have_count(0)
            await expect(page.locator("#metadata")).to_contain_text("done")
            assert not page.errors
            await page.context.close()


# --- LLM and tool calls ------------------------------------------------------------------

AGENT_FLOW: dict[str, Any] = {
    "nodes": [
        {"id": "greet", "type": "start", "data": {"label": "Greet"}},
        {"id": "classify", "type": "llm", "data": {"label": "Classify"}},
        {"id": "lookup", "type": "tools", "data": {"label": "Look up order"}},
        {"id": "answer", "type": "llm", "data": {"label": "Answer"}},
        {"id": "handoff", "type": "handoff", "data": {"label": "Agent"}},
    ],
    "edges": [
        {"id": "e1", "source": "greet", "target": "classify"},
        {"id": "e2", "source": "classify", "target": "lookup"},
        {"id": "e3", "source": "lookup", "target": "answer"},
        {"id": "e4", "source": "classify", "target": "handoff"},
    ],
}
ORDER_RESULT = {"order": "A-1001", "status": "shipped", "carrier": "DHL", "eta": "2026-12-03"}


def agent_turn(hook: Any, sid: str) -> None:
    """One turn of an LLM agent: a model call, two tool calls (one fails), a second call."""
    hook.sessiontrack_node_executed(session_id=sid, node_id="greet", duration_ms=2.0)
    hook.sessiontrack_llm_call(
        session_id=sid,
        node_id="classify",
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=120,
        output_tokens=8,
        latency_ms=640.0,
        ttfb_ms=210.0,
        cost=0.0004,
        finish_reason="tool_calls",
    )
    hook.sessiontrack_node_executed(session_id=sid, node_id="classify", duration_ms=700.0)
    hook.sessiontrack_tool_call(
        session_id=sid,
        node_id="lookup",
        name="lookup_order",
        call_id="call_1",
        arguments={"order": "A-1001"},
        result=ORDER_RESULT,
        duration_ms=85.0,
    )
    hook.sessiontrack_tool_call(
        session_id=sid,
        node_id="lookup",
        name="refund",
        arguments={"order": "A-1001"},
        error="refund service unavailable",
        duration_ms=30.0,
    )
    hook.sessiontrack_node_executed(session_id=sid, node_id="lookup", duration_ms=130.0)
    hook.sessiontrack_llm_call(
        session_id=sid,
        node_id="answer",
        model="gpt-4o",
        provider="openai",
        input_tokens=300,
        output_tokens=42,
        latency_ms=1200.0,
        ttfb_ms=300.0,
        cost=0.0031,
        finish_reason="stop",
    )
    hook.sessiontrack_node_executed(session_id=sid, node_id="answer", duration_ms=1250.0)


async def figures(page: Any, node: str) -> dict[str, str]:
    element = page.locator(f"#flow-svg .node[data-node-id='{node}']")
    data: dict[str, str] = await element.evaluate("e => ({...e.dataset})")
    data["stats"] = await element.locator(".node-stats").text_content() or ""
    return data


async def test_llm_and_tool_calls_show_in_the_list_and_the_detail_and_follow_live(
    browser: Any, tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    hook = pm.hook
    hook.sessiontrack_flow_registered(chatbot_id="agent", name="Agent", flow=AGENT_FLOW)
    sid = sessiontrack.new_session_id()
    hook.sessiontrack_session_started(
        session_id=sid, chatbot_id="agent", contact={"name": "Ada Agent", "phone": "+200"}
    )
    agent_turn(hook, sid)
    plain = sessiontrack.new_session_id()
    hook.sessiontrack_session_started(
        session_id=plain, chatbot_id="agent", contact={"name": "Plain Customer"}
    )
    hook.sessiontrack_node_executed(session_id=plain, node_id="greet")
    await tracker.flush()

    async with serve(host_app(create_app(tracker))) as base:
        page = await new_page(browser)
        await page.goto(f"{base}{PREFIX}/ui/")
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        row = page.locator(f"{ROWS}[data-session-id='{sid}']")
        # The list: tokens (input + output), tool calls and the errors, compact.
        await expect(row.locator(".cell-tokens")).to_have_text("470")
        await expect(row.locator(".cell-tokens")).to_have_attribute(
            "title", "420 input + 50 output tokens"
        )
        await expect(row.locator(".cell-tools")).to_have_text("2")
        await expect(row.locator(".badge-errors")).to_have_text("1 error")
        other = page.locator(f"{ROWS}[data-session-id='{plain}']")
        await expect(other.locator(".cell-tokens")).to_have_text("—")
        await expect(other.locator(".badge-errors")).to_have_count(0)
        # A call reported now changes the row in place.
        hook.sessiontrack_llm_call(
            session_id=sid, node_id="answer", model="gpt-4o", input_tokens=25, output_tokens=5
        )
        await expect(row.locator(".cell-tokens")).to_have_text("500")

        await row.locator(".row-link").click()
        totals = page.locator("#totals")
        await expect(totals.locator("[data-total=inputTokens] dd")).to_have_text("445")
        await expect(totals.locator("[data-total=outputTokens] dd")).to_have_text("55")
        await expect(totals.locator("[data-total=llmCalls] dd")).to_have_text("3")
        await expect(totals.locator("[data-total=toolCalls] dd")).to_have_text("2")
        await expect(totals.locator("[data-total=errorCount] dd")).to_have_text("1")
        await expect(totals.locator("[data-total=errorCount]")).to_have_class(
            re.compile("has-errors")
        )
        cost = await totals.locator("[data-total=cost] dd").inner_text()
        assert float(cost) == pytest.approx(0.0035)

        # The graph: each node's figures under it, errors marked.
        await expect(page.locator("#flow-svg .node.executed")).to_have_count(4)
        classify = await figures(page, "classify")
        assert classify["stats"] == f"1{TIMES} · 700 ms · 128 tok"
        assert (classify["llmCalls"], classify["tokens"], classify["errors"]) == ("1", "128", "0")
        lookup = await figures(page, "lookup")
        assert lookup["stats"] == f"1{TIMES} · 130 ms · 2 tools · 1 error"
        assert (lookup["toolCalls"], lookup["errors"]) == ("2", "1")
        node = page.locator("#flow-svg .node[data-node-id='lookup']")
        await expect(node).to_have_class(re.compile("has-errors"))
        await expect(node.locator(".error-badge text")).to_have_text("1")
        await expect(node.locator("title")).to_contain_text("2 tool calls, 1 error")
        answer = await figures(page, "answer")
        assert (answer["llmCalls"], answer["tokens"]) == ("2", "372")
        assert (await figures(page, "handoff"))["stats"] == ""

        # The call table: LLM and tool calls merged, oldest first.
        calls = page.locator("#calls-table tbody tr")
        await expect(calls).to_have_count(5)
        kinds = await calls.evaluate_all("rows => rows.map(r => r.dataset.kind)")
        assert kinds == ["llm", "tool", "tool", "llm", "llm"]
        first = calls.nth(0)
        await expect(first.locator(".call-node")).to_have_text("Classify")
        await expect(first.locator(".call-what")).to_contain_text("gpt-4o-mini")
        await expect(first.locator(".call-what")).to_contain_text("openai")
        await expect(first.locator(".call-tokens")).to_have_text("120 → 8")
        await expect(first.locator(".call-duration")).to_have_text("640 msfirst token 210 ms")
        await expect(first.locator(".call-outcome")).to_contain_text("tool_calls")
        lookup_row = calls.nth(1)
        await expect(lookup_row.locator(".call-what")).to_contain_text("lookup_order")
        await expect(lookup_row.locator(".call-arguments")).to_have_text('{"order":"A-1001"}')
        await expect(lookup_row.locator(".call-duration")).to_have_text("85 ms")
        result = lookup_row.locator("details.call-result")
        await result.locator("summary").click()
        await expect(result.locator(".json")).to_contain_text('"carrier": "DHL"')
        failed = calls.nth(2)
        await expect(failed).to_have_class(re.compile("failed"))
        await expect(failed.locator(".call-outcome")).to_contain_text("refund service unavailable")

        # Live: a call reported now updates the totals, the table and its node's figures;
        # what the reader unfolded stays unfolded.
        hook.sessiontrack_llm_call(
            session_id=sid,
            node_id="answer",
            model="gpt-4o",
            input_tokens=1000,
            output_tokens=200,
            latency_ms=2500.0,
            error="rate limited",
        )
        await expect(calls).to_have_count(6)
        await expect(calls.last).to_contain_text("rate limited")
        await expect(totals.locator("[data-total=inputTokens] dd")).to_have_text("1,445")
        await expect(totals.locator("[data-total=outputTokens] dd")).to_have_text("255")
        await expect(totals.locator("[data-total=llmCalls] dd")).to_have_text("4")
        await expect(totals.locator("[data-total=errorCount] dd")).to_have_text("2")
        await expect(
            page.locator("#flow-svg .node[data-node-id='answer'] .node-stats")
        ).to_have_text(f"1{TIMES} · 1.3 s · 1.6K tok · 1 error")
        await expect(calls.nth(1).locator("details.call-result")).to_have_attribute("open", "")
        hook.sessiontrack_tool_call(
            session_id=sid, node_id="handoff", name="notify_agent", result="queued"
        )
        hook.sessiontrack_node_executed(session_id=sid, node_id="handoff", duration_ms=15.0)
        await expect(totals.locator("[data-total=toolCalls] dd")).to_have_text("3")
        await expect(calls.last.locator(".call-result")).to_have_text("queued")
        await expect(
            page.locator("#flow-svg .node[data-node-id='handoff'] .node-stats")
        ).to_have_text(f"1{TIMES} · 15 ms · 1 tool")
        # The detail read again agrees with what the events built.
        await page.reload()
        await expect(calls).to_have_count(7)
        await expect(totals.locator("[data-total=inputTokens] dd")).to_have_text("1,445")
        await expect(
            page.locator("#flow-svg .node[data-node-id='answer'] .node-stats")
        ).to_have_text(f"1{TIMES} · 1.3 s · 1.6K tok · 1 error")
        assert not page.errors
        await page.context.close()


# --- what a new user reads: durations, times, toasts ---------------------------------------

TOAST_OVERLAPS = """() => {
    const cards = [...document.querySelectorAll('.stat, .total-item')];
    const toasts = [...document.querySelectorAll('#toasts .toast')];
    const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom
        && b.top < a.bottom;
    const name = e => e.id || e.dataset.total || e.textContent.trim().slice(0, 20);
    const controls = [...document.querySelectorAll(
        'main a, main button, main input, main select, .topbar a, #live')];
    const hits = [], covered = [];
    const bar = document.querySelector('.topbar').getBoundingClientRect();
    let inBar = true;
    for (const t of toasts) {
        const r = t.getBoundingClientRect();
        inBar &&= r.top >= bar.top && r.bottom <= bar.bottom;
        for (const c of cards) if (overlap(r, c.getBoundingClientRect())) hits.push(name(c));
        for (const c of controls) if (overlap(r, c.getBoundingClientRect())) covered.push(name(c));
    }
    return {cards: cards.length, toasts: toasts.length, hits, covered, inBar};
}"""

SHOW_TOASTS = """async () => {
    const { toast } = await import(new URL('js/toast.js', location.href).href);
    toast({kind: 'started', title: 'Somebody With A Long Name started a session',
           text: 'Helpdesk', href: '#/'});
    toast({kind: 'completed', title: 'Another Customer completed', text: 'done', href: '#/'});
}"""


async def test_toasts_cover_no_card(browser: Any, ui: str, base_url: str) -> None:
    sid = await session_id(base_url, "Maria Garcia")
    for viewport in (DESKTOP, PHONE):
        page = await new_page(browser, viewport)
        for url, cards in (
            (ui + "#/?tab=all", "#stats .stat"),
            (ui + f"#/sessions/{sid}", "#totals .total-item"),
        ):
            await page.goto(url)
            await expect(page.locator(cards).first).to_be_visible()
            await page.evaluate(SHOW_TOASTS)
            await expect(page.locator("#toasts .toast").first).to_be_visible()
            found = await page.evaluate(TOAST_OVERLAPS)
            assert found["cards"] >= 3 and found["toasts"] >= 1, found
            assert found["hits"] == [], (viewport, url, found)
            if viewport is DESKTOP:  # in the top bar's free space: over no control either
                assert found["inBar"] and found["covered"] == [], (url, found)
        assert not page.errors
        await page.context.close()


async def test_durations_show_only_when_reported_and_times_show_seconds(
    browser: Any, tracker: sessiontrack.Tracker, pm: pluggy.PluginManager
) -> None:
    """No duration reported: no duration shown (not "0 ms"); a reported 0 or a fraction of
    a millisecond: "<1 ms". Started, Updated and Expires show seconds, so they differ."""
    hook = pm.hook
    hook.sessiontrack_flow_registered(chatbot_id="agent", name="Agent", flow=AGENT_FLOW)
    sid = sessiontrack.new_session_id()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
    hook.sessiontrack_session_started(
        session_id=sid, chatbot_id="agent", contact={"name": "Tim Timer"}, at=t0
    )
    hook.sessiontrack_node_executed(session_id=sid, node_id="greet", at=t0 + timedelta(seconds=3))
    for node, seconds, ms in (("classify", 5, 0.0), ("lookup", 7, 0.4), ("answer", 9, 1250.0)):
        hook.sessiontrack_node_executed(
            session_id=sid, node_id=node, at=t0 + timedelta(seconds=seconds), duration_ms=ms
        )
    await tracker.flush()

    async with serve(host_app(create_app(tracker))) as base:
        page = await new_page(browser)
        await page.goto(f"{base}{PREFIX}/ui/#/?tab=all")
        row = page.locator(f"{ROWS}[data-session-id='{sid}']")
        started = row.locator("td[data-label=Started] time")
        shown = await started.inner_text()
        assert re.search(r"\d:\d\d:\d\d", shown), shown
        await row.locator(".row-link").click()

        steps = page.locator("#timeline li")
        await expect(steps).to_have_count(4)
        durations = await steps.evaluate_all(
            "els => els.map(e => e.querySelector('.step-duration')?.textContent ?? null)"
        )
        assert durations == [None, " · <1 ms", " · <1 ms", " · 1.3 s"], durations
        assert all("0 ms" not in t for t in await steps.all_inner_texts())
        assert (await figures(page, "greet"))["stats"] == f"1{TIMES}"
        assert (await figures(page, "classify"))["stats"] == f"1{TIMES} · <1 ms"
        assert (await figures(page, "answer"))["stats"] == f"1{TIMES} · 1.3 s"

        # Times with seconds, in the browser's zone: Started and Updated differ.
        meta = page.locator("#metadata")
        texts = {}
        for label in ("Started", "Updated", "Expires"):
            item = meta.locator(".meta-item", has=page.locator(f"dt:text-is('{label}')"))
            element = item.locator("time")
            text = await element.inner_text()
            expected = await page.evaluate(
                "iso => new Intl.DateTimeFormat(undefined, {year: 'numeric', month: 'short', "
                "day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit'})"
                ".format(new Date(iso))",
                await element.get_attribute("datetime"),
            )
            assert text == expected and re.search(r"\d:\d\d:\d\d", text), (label, text)
            texts[label] = text
        assert len(set(texts.values())) == 3, texts

        # Live: a node with no duration adds none.
        hook.sessiontrack_node_executed(session_id=sid, node_id="handoff")
        await expect(steps).to_have_count(5)
        assert await steps.last.locator(".step-duration").count() == 0
        await expect(
            page.locator("#flow-svg .node[data-node-id='handoff'] .node-stats")
        ).to_have_text(f"1{TIMES}")
        assert not page.errors
        await page.context.close()


# --- an engine adapter's session ------------------------------------------------------------


async def test_a_langgraph_session_shows_its_graph_tokens_and_tool_calls(
    browser: Any, tracker: sessiontrack.Tracker
) -> None:
    """A real LangGraph graph (langchain-core's fake chat model calling a real tool through
    ``ToolNode``) reported by the adapter: the dashboard shows what the API serves, and a
    second turn arrives live."""

    def reply(text: str, i: int, o: int, calls: list[dict[str, Any]] | None = None) -> AIMessage:
        return AIMessage(
            text,
            tool_calls=calls or [],
            usage_metadata={"input_tokens": i, "output_tokens": o, "total_tokens": i + o},
            response_metadata={"finish_reason": "tool_calls" if calls else "stop"},
        )

    model = GenericFakeChatModel(
        messages=iter(
            [
                reply(
                    "", 110, 12, [{"name": "lookup_order", "args": {"order": "A-7"}, "id": "c1"}]
                ),
                reply("Order A-7 has shipped. Anything else?", 180, 9),
                reply("Goodbye!", 210, 6),
            ]
        )
    )

    @tool
    def lookup_order(order: str) -> str:
        """Look an order up."""
        return f"order {order} shipped with DHL"

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = support_graph(agent, ToolNode([lookup_order]), "waiting for the customer")
    adapter = LangGraphAdapter(tracker, graph, "lg-support")
    config = {"configurable": {"thread_id": "customer-7"}}
    try:
        await adapter.ainvoke({"messages": [HumanMessage("Where is order A-7?")]}, config)
        await tracker.flush()
        page_of = await tracker.sessions.list(chatbot_id="lg-support")
        sid = page_of.data[0].id
        detail = await tracker.sessions.get(sid)
        assert (detail.llm_calls, detail.tool_calls) == (2, 1)

        async with serve(host_app(create_app(tracker))) as base:
            page = await new_page(browser)
            await page.goto(f"{base}{PREFIX}/ui/#/?tab=all")
            row = page.locator(f"{ROWS}[data-session-id='{sid}']")
            await expect(row.locator(".cell-tokens")).to_have_text("311")
            await expect(row.locator(".cell-tools")).to_have_text("1")
            await row.locator(".row-link").click()

            totals = page.locator("#totals")
            await expect(totals.locator("[data-total=inputTokens] dd")).to_have_text("290")
            await expect(totals.locator("[data-total=outputTokens] dd")).to_have_text("21")
            await expect(totals.locator("[data-total=llmCalls] dd")).to_have_text("2")
            await expect(totals.locator("[data-total=toolCalls] dd")).to_have_text("1")
            # The graph LangGraph declared, with the figures of each node it ran.
            nodes = page.locator("#flow-svg .node")
            await expect(nodes).to_have_count(len(detail.flow_data["nodes"]))
            for t in detail.node_totals:
                shown = await figures(page, t.node_id)
                tokens = t.input_tokens + t.output_tokens
                assert shown["executions"] == str(t.executions), shown
                assert (shown["tokens"], shown["toolCalls"]) == (str(tokens), str(t.tool_calls))
            agent_figures = await figures(page, "agent")
            assert agent_figures["stats"].startswith(f"2{TIMES} · ")
            assert agent_figures["stats"].endswith(" · 311 tok")
            tools_figures = await figures(page, "tools")
            assert tools_figures["stats"].endswith(" · 1 tool")
            # The calls as the model and the tool made them.
            calls = page.locator("#calls-table tbody tr")
            await expect(calls).to_have_count(3)
            kinds = await calls.evaluate_all("rows => rows.map(r => r.dataset.kind)")
            assert kinds == ["llm", "tool", "llm"]
            await expect(calls.nth(0).locator(".call-tokens")).to_have_text("110 → 12")
            await expect(calls.nth(1).locator(".call-what")).to_contain_text("lookup_order")
            await expect(calls.nth(1).locator(".call-arguments")).to_have_text('{"order":"A-7"}')
            await expect(calls.nth(1).locator(".call-outcome")).to_contain_text("shipped with DHL")
            await expect(calls.nth(2).locator(".call-outcome")).to_contain_text("stop")
            await expect(page.locator("#detail-status")).to_have_text("Waiting for input")

            # The customer answers: the next model call and the end arrive live.
            await expect(page.locator("#live")).to_have_attribute("data-state", "live")
            await adapter.ainvoke(Command(resume="No, thanks"), config)
            await expect(calls).to_have_count(4)
            await expect(calls.last.locator(".call-tokens")).to_have_text("210 → 6")
            await expect(totals.locator("[data-total=inputTokens] dd")).to_have_text("500")
            await expect(totals.locator("[data-total=llmCalls] dd")).to_have_text("3")
            await expect(page.locator("#detail-status")).to_have_text("Completed")
            assert (await figures(page, "agent"))["stats"].startswith(f"3{TIMES} · ")
            assert not page.errors
            await page.context.close()
    finally:
        adapter.close()


# --- the flow as a heat map (FlowView.setHeat; the analytics page uses it) ------------------

HEAT_FIXTURE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Heat map fixture</title>
<link rel="stylesheet" href="app.css"></head>
<body><main id="main"><h1>Heat map fixture</h1>
<div id="host-a" class="panel" style="width: 820px"></div>
<div id="host-b" class="panel" style="width: 420px"></div></main>
<script type="module">
import { FlowView, heatColor } from "./js/flow.js";
Object.assign(window, { FlowView, heatColor, fixtureReady: true });
</script></body></html>"""

HEAT_FLOW: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "start", "data": {"label": "Start"}},
        {"id": "ask", "type": "question", "data": {"label": "Ask"}},
        {"id": "answer", "type": "message", "data": {"label": "Answer"}},
        {"id": "agent", "type": "handoff", "data": {"label": "Agent"}},
        {"id": "gone", "type": "message", "data": {"label": "Removed later"}},
    ],
    "edges": [
        {"id": "e1", "source": "start", "target": "ask"},
        {"id": "e2", "source": "ask", "target": "answer"},
        {"id": "e3", "source": "ask", "target": "agent"},
        {"id": "e4", "source": "answer", "target": "ask"},
        {"id": "e5", "source": "start", "target": "gone"},
    ],
}
HEAT = {
    "nodes": {
        "start": {"level": 0, "text": "Start: 100 sessions, drop-off 0%"},
        "ask": {"level": 0.25, "text": "Ask: 90 sessions, drop-off 25%"},
        "answer": {"level": 1, "text": "Answer: 40 sessions, drop-off 100%"},
        "agent": {"level": None, "text": "Agent: no sessions"},
    },
    "edges": {
        "start\u0000ask": {"weight": 1, "text": "Start → Ask: 90 sessions (90%)"},
        "ask\u0000answer": {"weight": 0.4, "text": "Ask → Answer: 40 sessions (44%)"},
        "ask\u0000agent": {"weight": 0.05, "text": "Ask → Agent: 5 sessions (6%)"},
        "answer\u0000ask": {"weight": 0.2, "text": "Answer → Ask: 20 sessions (50%)"},
    },
}


async def heat_page(browser: Any, ui: str) -> Any:
    """A page of the dashboard's origin with two FlowViews side by side (no session)."""
    page = await new_page(browser)
    url = ui + "__heat-fixture.html"
    await page.route(url, lambda route: route.fulfill(body=HEAT_FIXTURE, content_type="text/html"))
    await page.goto(url)
    await page.wait_for_function("window.fixtureReady === true")
    await page.evaluate(
        """([flow, heat]) => {
            window.activated = [];
            window.views = {};
            for (const [key, prefix] of [['a', 'heat-a'], ['b', 'heat-b']]) {
                const view = new FlowView(flow, {
                    idPrefix: prefix, onNodeActivate: (id) => activated.push(`${key}:${id}`) });
                document.getElementById(`host-${key}`).append(view.el);
                view.setHeat(heat);
                views[key] = view;
            }
        }""",
        [HEAT_FLOW, HEAT],
    )
    return page


async def test_flow_heat_map_colours_nodes_sizes_edges_and_tells_on_hover_and_focus(
    browser: Any, ui: str, axe_script: Path
) -> None:
    page = await heat_page(browser, ui)
    svg = page.locator("#heat-a-svg")
    await expect(svg).to_have_class(re.compile(r"\bheat\b"))

    # Node fill by level, on the legend's scale; no data is grey and dashed.
    fills = await svg.locator(".node").evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.dataset.nodeId, "
        "getComputedStyle(e.querySelector('.node-box')).fill]))"
    )
    for node, level in (("start", 0), ("ask", 0.25), ("answer", 1)):
        assert fills[node] == await page.evaluate("l => heatColor(l)", level), node
    assert len({fills["start"], fills["ask"], fills["answer"]}) == 3
    await expect(svg.locator(".node[data-node-id=agent]")).to_have_class(re.compile("heat-none"))
    await expect(svg.locator(".node[data-node-id=gone]")).not_to_have_attribute("tabindex", "0")
    legend = page.locator("#heat-a-heat-legend")
    await expect(legend).to_be_visible()
    await expect(legend).to_contain_text("Drop-off rate")
    await expect(legend).to_contain_text("No data")
    bar = await legend.locator(".heat-bar").evaluate("e => getComputedStyle(e).backgroundImage")
    assert "linear-gradient" in bar

    # Edge width by weight; each edge keeps an arrowhead of its own size.
    widths = await svg.locator(".edge-g").evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.dataset.source + '>' + e.dataset.target, "
        "parseFloat(getComputedStyle(e.querySelector('.edge')).strokeWidth)]))"
    )
    assert widths["start>ask"] > widths["ask>answer"] > widths["answer>ask"] > widths["ask>agent"]
    assert widths["ask>agent"] >= 1.5
    markers = await svg.locator(".edge-g.heat .edge").evaluate_all(
        "els => els.map(e => e.getAttribute('marker-end'))"
    )
    assert len(set(markers)) == 4
    for m in markers:
        marker_id = m[len("url(#") : -1]
        assert await page.locator(f"marker#{marker_id}").count() == 1

    # Focusable, named by their text; the tooltip follows keyboard focus.
    tip = page.locator("#heat-a-tooltip")
    await expect(tip).to_be_hidden()
    labels = await svg.locator("[tabindex='0']").evaluate_all(
        "els => els.map(e => e.getAttribute('aria-label'))"
    )
    texts = [v["text"] for part in ("nodes", "edges") for v in HEAT[part].values()]
    assert sorted(labels) == sorted(texts)
    await svg.focus()
    seen = []
    for _ in range(len(texts)):
        await page.keyboard.press("Tab")
        label = await page.evaluate("document.activeElement.getAttribute('aria-label')")
        await expect(tip).to_be_visible()
        await expect(tip).to_have_text(label)
        seen.append(label)
    assert sorted(seen) == sorted(texts)
    # A focused node or edge is shown with the tooltip inside the view.
    tip_box = await tip.bounding_box()
    host_box = await page.locator("#host-a .flow").bounding_box()
    assert host_box["x"] <= tip_box["x"]
    assert tip_box["x"] + tip_box["width"] <= host_box["x"] + host_box["width"]
    await page.keyboard.press("Escape")
    await expect(tip).to_be_hidden()

    # Hover shows it too, and leaving hides it.
    await svg.locator(".node[data-node-id=answer] .node-box").hover()
    await expect(tip).to_have_text(HEAT["nodes"]["answer"]["text"])
    await svg.locator(".edge-g[data-source=ask][data-target=agent] .edge-hit").hover()
    await expect(tip).to_have_text(HEAT["edges"]["ask\u0000agent"]["text"])
    await page.mouse.move(2, 2)
    await expect(tip).to_be_hidden()

    # A click (not a drag) or Enter on a node activates it, in its own view.
    await page.locator("#heat-b-svg .node[data-node-id=ask] .node-box").click()
    await page.keyboard.press("Enter")
    assert await page.evaluate("activated") == ["b:ask", "b:ask"]
    await expect(page.locator("#heat-b-svg .node[data-node-id=ask]")).to_have_attribute(
        "role", "button"
    )

    # Two views on one page: no id twice; and the page passes the accessibility audit.
    dupes = await page.evaluate(
        "() => { const ids = [...document.querySelectorAll('[id]')].map(e => e.id); "
        "return ids.filter((id, i) => ids.indexOf(id) !== i); }"
    )
    assert dupes == []
    violations = await axe_violations(page, axe_script)
    assert violations == []

    # The back edge (answer → ask) goes round the nodes, as in the plain graph; with every
    # edge at full width (the example's flow, four back edges), its lanes stay apart.
    geometry = await svg.evaluate(FLOW_GEOMETRY)
    assert geometry["back"] == ["answer>ask"] and geometry["crossings"] == [], geometry
    helpdesk_flow = json.loads((ROOT / "examples/helpdesk/flow.json").read_text())
    lanes = await page.evaluate(
        """flow => {
            const heat = {nodes: {}, edges: {}};
            for (const n of flow.nodes) heat.nodes[n.id] = {level: 0.5, text: n.id};
            for (const e of flow.edges)
                heat.edges[e.source + '\u0000' + e.target] = {weight: 1, text: e.id};
            const view = new FlowView(flow, {idPrefix: 'heat-c'});
            document.getElementById('host-b').replaceChildren(view.el);
            view.setHeat(heat);
            return [...view.svg.querySelectorAll('.edge-g.back-edge .edge')].map(p => {
                const xs = [];
                for (let d = 0; d <= p.getTotalLength(); d += 4) xs.push(p.getPointAtLength(d).x);
                return [Math.min(...xs), Math.max(...xs), parseFloat(p.style.strokeWidth)];
            });
        }""",
        helpdesk_flow,
    )
    assert len(lanes) == 4
    width = max(w for _, _, w in lanes)
    outer = sorted([lo for lo, _, _ in lanes] + [hi for _, hi, _ in lanes])
    rights = sorted(hi for _, hi, _ in lanes if hi > outer[-1] - 200)
    lefts = sorted(lo for lo, _, _ in lanes if lo < outer[0] + 200)
    for side in (rights, lefts):
        assert all(b - a >= width + 4 for a, b in pairwise(side)), (side, width)  # a gap
    geometry = await page.locator("#heat-c-svg").evaluate(FLOW_GEOMETRY)
    assert geometry["crossings"] == [], geometry["crossings"]

    # null clears it: the plain graph again.
    await page.evaluate("views.a.setHeat(null)")
    await expect(svg).not_to_have_class(re.compile(r"\bheat\b"))
    await expect(svg.locator("[tabindex='0']")).to_have_count(0)
    await expect(legend).to_be_hidden()
    assert await svg.locator(".node-box").evaluate_all("els => els.every(e => e.style.fill === '')")
    assert await page.locator("#heat-a-svg marker.heat-marker").count() == 0
    assert not page.errors
    await page.context.close()
