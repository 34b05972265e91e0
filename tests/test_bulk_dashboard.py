"""The list's row selection and "Stop selected" in a real browser: Debian's chromium driven
by Playwright (async API) against a real uvicorn serving the sub-app on a tracker of this
module, on SQLite and on PostgreSQL. The stops must reach the engine's plugin.

Each test seeds sessions of a chatbot of its own and opens the list filtered to it.
Locally the tests skip when /usr/bin/chromium is missing; under ``CI=true`` they fail.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from web_helpers.engine import Engine
from web_helpers.live import PREFIX

import sessiontrack

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

ROWS = "#sessions-table tbody tr"

expect.set_options(timeout=15_000)


@dataclass
class Heard:
    """The engine's plugin: the stops it is told about."""

    stops: list[tuple[str, str | None]] = field(default_factory=list)

    @sessiontrack.hookimpl
    def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
        self.stops.append((session_id, principal))


@dataclass
class Site:
    base: str
    ui: str
    engine: Engine
    tracker: sessiontrack.Tracker
    heard: Heard

    async def bot(self, active: int, ended: int = 0) -> tuple[str, list[str], list[str]]:
        """A chatbot of its own with ``active`` waiting sessions and ``ended`` completed
        ones (names "Active 1".., "Ended 1"..): (chatbot id, active ids, ended ids)."""
        bot = f"bot-{uuid.uuid4().hex[:6]}"
        self.engine.register(bot, f"Bot {bot[-6:]}")
        live = [
            self.engine.full_run(bot, finish=False, name=f"Active {i + 1}", phone=f"+1555{i:07d}")
            for i in range(active)
        ]
        done = [
            self.engine.full_run(bot, name=f"Ended {i + 1}", phone=f"+1666{i:07d}")
            for i in range(ended)
        ]
        await self.tracker.flush()
        return bot, live, done

    async def status(self, sid: str) -> str:
        return (await self.tracker.sessions.get(sid)).status

    async def heard_of(self, sids: list[str]) -> set[tuple[str, str | None]]:
        with anyio.fail_after(10):
            while not set(sids) <= {s for s, _ in self.heard.stops}:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        return {stop for stop in self.heard.stops if stop[0] in sids}


@pytest.fixture(scope="module", params=BACKENDS)
async def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    heard = Heard()
    async with served_tracker(request.param, tmp_path_factory, heard) as served:
        yield Site(served.base, served.ui, Engine(served.pm), served.tracker, heard)


@pytest.fixture(scope="module")
async def browser(site: Site, chromium: Path) -> AsyncIterator[Any]:
    async with launched_browser(chromium) as browser:
        yield browser


async def new_page(browser: Any, viewport: dict[str, int] = DESKTOP) -> Any:
    page = await pages.new_page(browser, viewport)
    page.stop_bodies = []
    page.on(
        "request",
        lambda r: page.stop_bodies.append(r.post_data_json) if r.url.endswith("/stop") else None,
    )
    return page


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser)
    yield page
    await close_page(page)


def row(page: Any, sid: str) -> Any:
    return page.locator(f'{ROWS}[data-session-id="{sid}"]')


async def open_list(page: Any, site: Site, bot: str, tab: str = "all") -> None:
    await page.goto(site.ui + f"#/?tab={tab}&bot={bot}")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator(ROWS).first).to_be_visible()


async def test_stop_selected_asks_first_then_stops_and_tells_the_counts(
    page: Any, site: Site
) -> None:
    bot, live, done = await site.bot(active=3, ended=2)
    await open_list(page, site, bot)
    await expect(page.locator(ROWS)).to_have_count(5)
    # Every row can be picked (two of them to compare); only active ones can be stopped.
    for sid in done:
        await row(page, sid).locator(".row-select").check()
    await expect(page.locator("#selection-count")).to_have_text("2 sessions selected")
    await expect(page.locator("#stop-selected")).to_be_disabled()
    await page.locator("#clear-selection").click()
    await expect(page.locator("#stop-selected")).to_be_disabled()
    await expect(page.locator("#selection-count")).to_have_text("None selected")
    url = page.url
    await row(page, live[0]).locator(".row-select").click()
    await row(page, live[2]).get_by_role("checkbox", name="Select Active 3").check()
    assert page.url == url  # a checkbox click does not open the session
    await expect(page.locator("#selection-count")).to_have_text("2 sessions selected")
    await expect(page.locator("#select-all")).to_have_js_property("indeterminate", True)
    await expect(row(page, live[0])).to_have_class("row-selected")

    # Cancel: nothing is sent, nothing stops.
    await page.locator("#stop-selected").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#confirm-title")).to_have_text("Stop 2 sessions?")
    await expect(page.locator("#confirm-text")).to_contain_text("Active 3, Active 1")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#stop-selected")).to_be_focused()
    assert page.stop_bodies == []
    assert [await site.status(s) for s in live] == ["waiting_input"] * 3

    # Confirm: one POST /stop with both ids, a toast with the count, the rows stopped.
    await page.locator("#stop-selected").click()
    await page.locator("#confirm-ok").click()
    toast = page.locator("#toasts .toast-stopped")
    await expect(toast).to_contain_text("Stopped 2 sessions")
    assert sorted(page.stop_bodies[0]["ids"]) == sorted([live[0], live[2]])
    for sid in (live[0], live[2]):
        await expect(row(page, sid)).to_have_attribute("data-status", "stopped")
        await expect(row(page, sid).locator(".row-select")).not_to_be_checked()
    await expect(row(page, live[1])).to_have_attribute("data-status", "waiting_input")
    await expect(page.locator("#selection-count")).to_have_text("None selected")
    assert [await site.status(s) for s in live] == ["stopped", "waiting_input", "stopped"]
    assert await site.heard_of([live[0], live[2]]) == {(live[0], "local"), (live[2], "local")}
    # The stops' own session:completed events add no toast of their own.
    await page.wait_for_timeout(500)
    await expect(page.locator("#toasts .toast-completed")).to_have_count(0)


async def test_select_all_takes_the_page_and_a_session_that_ends_leaves_the_selection(
    page: Any, site: Site
) -> None:
    bot, live, _ = await site.bot(active=4)
    await open_list(page, site, bot, tab="active")
    await expect(page.locator(ROWS)).to_have_count(4)
    await page.locator("#select-all").check()
    await expect(page.locator("#selection-count")).to_have_text("4 sessions selected")
    await expect(page.locator(f"{ROWS} .row-select:checked")).to_have_count(4)
    # One ends while selected (its engine completes it): it leaves the selection.
    site.engine.complete(live[1])
    await site.tracker.flush()
    await expect(page.locator("#selection-count")).to_have_text("3 sessions selected")
    await expect(page.locator("#select-all")).to_be_checked()
    await page.locator("#stop-selected").click()
    await expect(page.locator("#confirm-title")).to_have_text("Stop 3 sessions?")
    await page.locator("#confirm-ok").click()
    await expect(page.locator("#toasts .toast-stopped")).to_contain_text("Stopped 3 sessions")
    assert sorted(page.stop_bodies[-1]["ids"]) == sorted([live[0], live[2], live[3]])
    # The Active tab empties: the selection bar goes with its last selectable row.
    await expect(page.locator("#empty-state")).to_be_visible()
    await expect(page.locator("#selection-bar")).to_be_hidden()
    assert await site.status(live[1]) == "completed"
    assert len(await site.heard_of([live[0], live[2], live[3]])) == 3


async def test_a_stop_that_meets_an_ended_session_says_so(page: Any, site: Site) -> None:
    bot, live, _ = await site.bot(active=2)
    await open_list(page, site, bot, tab="active")
    await page.locator("#select-all").check()
    await page.locator("#stop-selected").click()
    # While the dialog is open, one of them is stopped elsewhere (another agent, the API).
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{site.base}{PREFIX}/{live[0]}/stop")
        assert r.status_code == 200
    # The list hears it and drops it from the selection, or the answer counts it as ended:
    # either way the toast's numbers are right.
    await page.locator("#confirm-ok").click()
    toast = page.locator("#toasts .toast-stopped")
    await expect(toast).to_contain_text("Stopped 1 session")
    sent = page.stop_bodies[-1]["ids"]
    if live[0] in sent:
        await expect(toast).to_contain_text("1 session had already ended")
    assert [await site.status(s) for s in live] == ["stopped", "stopped"]


async def test_the_keyboard_selects_and_stops(page: Any, site: Site) -> None:
    bot, live, _ = await site.bot(active=1)
    await open_list(page, site, bot, tab="active")
    box = row(page, live[0]).locator(".row-select")
    await box.focus()
    await page.keyboard.press("Space")
    await expect(box).to_be_checked()
    await page.locator("#stop-selected").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#confirm-dialog")).to_be_visible()
    await expect(page.locator("#confirm-dialog button[value=cancel]")).to_be_focused()
    await expect(page.locator("#confirm-ok")).to_have_text("Stop session")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("#toasts .toast-stopped")).to_contain_text("Stopped 1 session")
    assert await site.status(live[0]) == "stopped"


async def test_a_failed_stop_keeps_the_selection_and_says_why(page: Any, site: Site) -> None:
    bot, live, _ = await site.bot(active=2)
    await open_list(page, site, bot, tab="active")

    async def unavailable(route: Any) -> None:
        await route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": "the sessiontrack tracker is not running", "detail": []}',
        )

    await page.route("**/stop", unavailable)
    await page.locator("#select-all").check()
    await page.locator("#stop-selected").click()
    await page.locator("#confirm-ok").click()
    toast = page.locator("#toasts .toast-error")
    await expect(toast).to_contain_text("Could not stop the sessions")
    await expect(toast).to_contain_text("not running")
    await expect(page.locator("#selection-count")).to_have_text("2 sessions selected")
    assert [await site.status(s) for s in live] == ["waiting_input"] * 2


async def test_phone_width_rows_keep_their_checkbox(browser: Any, site: Site) -> None:
    bot, live, _ = await site.bot(active=2, ended=1)
    page = await new_page(browser, PHONE)
    await open_list(page, site, bot)
    box = row(page, live[0]).locator(".row-select")
    await expect(box).to_be_visible()
    await box.click()
    await expect(page.locator("#selection-count")).to_have_text("1 session selected")
    assert "#/sessions/" not in page.url
    await expect(page.locator("#stop-selected")).to_be_visible()
    assert not page.errors
    await page.context.close()


async def test_selection_passes_an_accessibility_audit(
    browser: Any, site: Site, axe_script: Path
) -> None:
    bot, live, _ = await site.bot(active=3, ended=1)
    for viewport in (DESKTOP, PHONE):
        page = await new_page(browser, viewport)
        await open_list(page, site, bot)
        await row(page, live[0]).locator(".row-select").check()
        await page.wait_for_timeout(300)
        assert await axe_violations(page, axe_script) == [], viewport
        await page.locator("#stop-selected").click()
        await expect(page.locator("#confirm-dialog")).to_be_visible()
        assert await axe_violations(page, axe_script) == [], (viewport, "dialog")
        await page.keyboard.press("Escape")
        assert not page.errors
        await page.context.close()
