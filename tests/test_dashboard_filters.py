"""The list's advanced-filter panel, message search and Export links in a real browser:
Debian's chromium driven by Playwright (async API) against a real uvicorn serving the
sub-app on a tracker of this module, seeded through the hooks, on SQLite and PostgreSQL.

The panel's state is in the hash, so a reload or a shared link shows the same sessions;
what the page asks the API for is checked against what the API answers for the same
parameters.

These need the list parameters of the advanced filters (nodeId, ...), of message search
(q) and GET /export: locally a build without one of them skips the tests that need it;
under ``CI=true`` they fail.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
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
from web_helpers.live import PREFIX, host_app, serve

import sessiontrack
from sessiontrack.web import create_app

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

ROWS = "#sessions-table tbody tr"
BOT = "desk"

expect.set_options(timeout=15_000)


@dataclass
class Site:
    base: str
    ui: str
    ids: dict[str, str]
    tracker: sessiontrack.Tracker

    async def api(self, path: str = "", **params: Any) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(f"{self.base}{PREFIX}/{path}", params=params)
        r.raise_for_status()
        return r.json()


def seed(hook: Any, now: datetime) -> dict[str, str]:
    """Four sessions of BOT, each picked out by some filter:

    - paid: start, ask, pay; 2 messages ("card payment please"); completed after 2 min,
      reason flow_end; plan gold
    - chatty: start; 6 messages; a node error; expired after 40 min; plan free
    - open: start, ask; 4 messages ("refund for my order"); active, started 10 min ago
    - quiet: start; no message; completed after 5 s, reason handoff; plan gold, vip true
    """
    hook.sessiontrack_flow_registered(
        chatbot_id=BOT, name="Help Desk", flow={"nodes": [], "edges": []}
    )
    plan = {
        "paid": (
            ["start", "ask", "pay"],
            ["card payment please", "done"],
            120,
            "completed",
            "flow_end",
            {"plan": "gold"},
        ),
        "chatty": (
            ["start"],
            [f"line {i}" for i in range(6)],
            2400,
            "expired",
            "idle",
            {"plan": "free"},
        ),
        "open": (
            ["start", "ask"],
            ["refund for my order", "a", "b", "c"],
            None,
            None,
            None,
            {"plan": "free"},
        ),
        "quiet": (["start"], [], 5, "completed", "handoff", {"plan": "gold", "vip": True}),
    }
    ids = {}
    for i, (name, (nodes, texts, seconds, status, reason, variables)) in enumerate(plan.items()):
        sid = sessiontrack.new_session_id()
        ids[name] = sid
        at = now - timedelta(minutes=50 - i) if seconds else now - timedelta(minutes=10)
        start = at
        hook.sessiontrack_session_started(
            session_id=sid,
            chatbot_id=BOT,
            contact={"name": f"Customer {name}", "phone": f"+1999000{i:04d}"},
            variables=variables,
            at=at,
        )
        for node in nodes:
            at += timedelta(seconds=1)
            error = "lookup failed" if name == "chatty" else None
            hook.sessiontrack_node_executed(session_id=sid, node_id=node, at=at, error=error)
        for n, text in enumerate(texts):
            at += timedelta(seconds=1)
            direction = "inbound" if n % 2 == 0 else "outbound"
            hook.sessiontrack_message(session_id=sid, direction=direction, text=text, at=at)
        if status is not None:
            assert seconds is not None
            hook.sessiontrack_session_completed(
                session_id=sid, status=status, reason=reason, at=start + timedelta(seconds=seconds)
            )
    return ids


@pytest.fixture(scope="module", params=BACKENDS)
async def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    options = {"idle_timeout": timedelta(days=30)}
    async with served_tracker(request.param, tmp_path_factory, **options) as served:
        ids = seed(served.hook, datetime.now(UTC))
        await served.tracker.flush()
        yield Site(served.base, served.ui, ids, served.tracker)


@pytest.fixture(scope="module")
async def browser(site: Site, chromium: Path) -> AsyncIterator[Any]:
    async with launched_browser(chromium) as browser:
        yield browser


async def new_page(browser: Any, viewport: dict[str, int] = DESKTOP) -> Any:
    page = await pages.new_page(browser, viewport, accept_downloads=True)
    page.lists = []
    page.on(
        "request",
        lambda r: (
            page.lists.append(parse_qs(urlsplit(r.url).query))
            if urlsplit(r.url).path == PREFIX + "/"
            else None
        ),
    )
    return page


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser)
    yield page
    await close_page(page)


async def shown(page: Any) -> set[str]:
    ids: list[str] = await page.locator(ROWS).evaluate_all("rs => rs.map(r => r.dataset.sessionId)")
    return set(ids)


async def expect_rows(page: Any, site: Site, *names: str) -> None:
    wanted = {site.ids[n] for n in names}
    if wanted:
        await expect(page.locator(ROWS)).to_have_count(len(wanted))
        await page.wait_for_function(
            "ids => { const rs = [...document.querySelectorAll('#sessions-table tbody tr')];"
            " return rs.length === ids.length && rs.every(r => ids.includes(r.dataset.sessionId))"
            " && document.getElementById('list-region').getAttribute('aria-busy') === 'false'; }",
            arg=sorted(wanted),
        )
    else:
        await expect(page.locator("#empty-state")).to_be_visible()
    assert await shown(page) == wanted


def hash_params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).fragment.partition("?")[2])


async def open_panel(page: Any, site: Site, extra: str = "") -> None:
    await page.goto(site.ui + f"#/?tab=all&bot={BOT}{extra}")
    await expect(page.locator(ROWS).first).to_be_visible()
    if await page.locator("#advanced-filters").is_hidden():
        await page.locator("#filters-toggle").click()
    await expect(page.locator("#advanced-filters")).to_be_visible()


async def test_a_node_filter_goes_into_the_hash_the_request_and_survives_a_reload(
    page: Any, site: Site
) -> None:
    await open_panel(page, site)
    await expect(page.locator("#filters-toggle")).to_have_attribute("aria-expanded", "true")
    await expect(page.locator("#f-node")).to_be_focused()
    await page.locator("#f-node").fill("ask")
    await page.keyboard.press("Enter")  # submits the panel
    await expect_rows(page, site, "paid", "open")
    assert hash_params(page)["nodeId"] == ["ask"]
    assert page.lists[-1]["nodeId"] == ["ask"] and page.lists[-1]["chatbotId"] == [BOT]
    await expect(page.locator("#filter-count")).to_have_text(" (1)")
    answer = await site.api(chatbotId=BOT, nodeId="ask")
    assert {s["id"] for s in answer["data"]} == await shown(page)
    await page.reload()
    await expect_rows(page, site, "paid", "open")
    await expect(page.locator("#advanced-filters")).to_be_visible()  # open: a filter is set
    await expect(page.locator("#f-node")).to_have_value("ask")
    await page.locator("#f-clear").click()
    await expect_rows(page, site, "paid", "chatty", "open", "quiet")
    assert "nodeId" not in hash_params(page)
    await expect(page.locator("#f-node")).to_have_value("")


@pytest.mark.parametrize(
    ("fill", "hashed", "names"),
    [
        ({"#f-min-messages": "3"}, {"minMessages": ["3"]}, ["chatty", "open"]),
        ({"#f-max-messages": "2"}, {"maxMessages": ["2"]}, ["paid", "quiet"]),
        ({"#f-reason": "flow_end"}, {"completionReason": ["flow_end"]}, ["paid"]),
        (
            {"#f-min-duration": "1", "#f-max-duration": "5"},
            {"minDuration": ["60"], "maxDuration": ["300"]},
            ["paid"],
        ),
        ({"#f-min-duration": "30"}, {"minDuration": ["1800"]}, ["chatty"]),
        ({"#f-errors": "true"}, {"hasError": ["true"]}, ["chatty"]),
        ({"#f-errors": "false"}, {"hasError": ["false"]}, ["paid", "open", "quiet"]),
        ({"#f-variables": "plan:gold"}, {"variable": ["plan:gold"]}, ["paid", "quiet"]),
        (
            {"#f-variables": "plan:gold\nvip:true"},
            {"variable": ["plan:gold", "vip:true"]},
            ["quiet"],
        ),
        (
            {"#f-node": "start", "#f-min-messages": "1", "#f-variables": "plan:free"},
            {"nodeId": ["start"], "minMessages": ["1"], "variable": ["plan:free"]},
            ["chatty", "open"],
        ),
        ({"#f-reason": "no-such-reason"}, {"completionReason": ["no-such-reason"]}, []),
    ],
)
async def test_each_filter_and_a_combination_shows_what_the_api_answers(
    page: Any, site: Site, fill: dict[str, str], hashed: dict[str, list[str]], names: list[str]
) -> None:
    await open_panel(page, site)
    for selector, value in fill.items():
        if selector == "#f-errors":
            await page.locator(selector).select_option(value)
        else:
            await page.locator(selector).fill(value)
    await page.locator("#f-apply").click()
    await expect_rows(page, site, *names)
    params = hash_params(page)
    for key, values in hashed.items():
        assert params[key] == values, key
        assert page.lists[-1][key] == values, key
    asked = {k: v for k, v in page.lists[-1].items() if k not in ("limit", "offset")}
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{site.base}{PREFIX}/", params=asked)
    assert {s["id"] for s in r.json()["data"]} == {site.ids[n] for n in names}
    if not names:
        await expect(page.locator("#empty-state")).to_contain_text("No sessions match")
    await expect(page.locator("#filter-count")).to_have_text(f" ({sum(map(len, hashed.values()))})")


async def test_a_shared_link_opens_the_panel_with_its_filters_in_minutes(
    page: Any, site: Site
) -> None:
    await page.goto(
        site.ui + f"#/?tab=all&bot={BOT}&minDuration=90&hasError=false&variable=plan:gold"
        "&minMessages=-4&maxMessages=lots"  # a hand-edited link: those two are dropped
    )
    await expect_rows(page, site, "paid")
    await expect(page.locator("#advanced-filters")).to_be_visible()
    await expect(page.locator("#f-min-duration")).to_have_value("1.5")
    await expect(page.locator("#f-errors")).to_have_value("false")
    await expect(page.locator("#f-variables")).to_have_value("plan:gold")
    await expect(page.locator("#f-min-messages")).to_have_value("")
    assert "minMessages" not in page.lists[-1]


async def test_a_variable_line_without_name_and_value_is_left_out(page: Any, site: Site) -> None:
    await open_panel(page, site)
    await page.locator("#f-variables").fill("no colon here")
    await page.locator("#f-reason").fill("handoff")
    await page.locator("#f-apply").click()
    # A line without name:value never reaches the hash; the rest applies.
    await expect_rows(page, site, "quiet")
    await expect(page.locator("#filter-count")).to_have_text(" (1)")
    assert "variable" not in hash_params(page)
    await expect(page.locator("#f-variables")).to_have_value("")


async def test_message_search_finds_sessions_by_what_was_said(
    page: Any, site: Site, axe_script: Path
) -> None:
    await page.goto(site.ui + f"#/?tab=all&bot={BOT}")
    await expect(page.locator(ROWS).first).to_be_visible()
    await page.locator("#search-in").select_option("messages")
    await expect(page.locator("#search")).to_have_attribute("placeholder", "Words in a message")
    await page.locator("#search").fill("refund")
    await page.keyboard.press("Enter")
    await expect_rows(page, site, "open")
    assert page.lists[-1]["q"] == ["refund"] and "search" not in page.lists[-1]
    # The matching message is shown under the customer, the word marked.
    snippet = page.locator(f"{ROWS} .match-snippet")
    await expect(snippet).to_have_text("Customer said: refund for my order")
    await expect(snippet.locator("mark")).to_have_text("refund")
    assert await axe_violations(page, axe_script) == []
    assert hash_params(page)["in"] == ["messages"]
    await page.locator("#search").fill("pay*")
    await page.keyboard.press("Enter")
    await expect_rows(page, site, "paid")
    await expect(page.locator(f"{ROWS} .match-snippet mark")).to_have_text("payment")
    await page.reload()
    await expect_rows(page, site, "paid")
    await expect(page.locator("#search-in")).to_have_value("messages")
    # Back to customers: the same box searches names again.
    await page.locator("#search-in").select_option("customer")
    await page.locator("#search").fill("Customer quiet")
    await page.keyboard.press("Enter")
    await expect_rows(page, site, "quiet")
    assert page.lists[-1]["search"] == ["Customer quiet"] and "q" not in page.lists[-1]
    await expect(page.locator(f"{ROWS} .match-snippet")).to_have_count(0)


async def test_export_links_carry_the_current_filter_and_download_it(page: Any, site: Site) -> None:
    await page.goto(site.ui + f"#/?tab=all&bot={BOT}&nodeId=ask")
    await expect(page.locator(ROWS).first).to_be_visible()
    href = await page.locator("#export-csv").get_attribute("href")
    query = parse_qs(urlsplit(href).query)
    assert urlsplit(href).path == f"{PREFIX}/export"
    assert query["format"] == ["csv"] and query["chatbotId"] == [BOT]
    assert query["nodeId"] == ["ask"]
    assert not {"limit", "offset", "cursor"} & set(query)
    async with page.expect_download() as info:
        await page.locator("#export-csv").click()
    download = await info.value
    text = await anyio.Path(await download.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["id"] for r in rows} == await shown(page)
    async with page.expect_download() as info:
        await page.locator("#export-jsonl").click()
    lines = (await anyio.Path(await (await info.value).path()).read_text()).splitlines()
    assert len(lines) == len(rows)


async def test_with_an_access_token_the_export_is_fetched_with_it(browser: Any, site: Site) -> None:
    seen: list[str | None] = []

    def authenticate(request: Any) -> sessiontrack.Principal | None:
        if str(request.connection.url.path).endswith("/export"):
            seen.append(request.token)
        return sessiontrack.Principal(id="lead") if request.token == "desk-token" else None

    async with serve(host_app(create_app(site.tracker, authenticate=authenticate))) as base:
        page = await new_page(browser)
        await page.add_init_script("sessionStorage.setItem('sessiontrack.token', 'desk-token')")
        await page.goto(f"{base}{PREFIX}/ui/#/?tab=all&bot={BOT}")
        await expect(page.locator(ROWS)).to_have_count(4)
        async with page.expect_download() as info:
            await page.locator("#export-csv").click()
        download = await info.value
        assert download.suggested_filename == "sessions.csv"
        text = await anyio.Path(await download.path()).read_text()
        assert {r["id"] for r in csv.DictReader(io.StringIO(text))} == set(site.ids.values())
        assert seen == ["desk-token"]
        assert not page.errors
        await page.context.close()


async def test_the_panel_passes_an_accessibility_audit(
    browser: Any, site: Site, axe_script: Path
) -> None:
    for viewport in (DESKTOP, PHONE):
        page = await new_page(browser, viewport)
        await open_panel(page, site)
        await page.locator("#f-node").fill("start")
        assert await axe_violations(page, axe_script) == [], viewport
        assert not page.errors
        await page.context.close()
