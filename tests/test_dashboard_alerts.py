"""The Alerts page in a real browser: Debian's chromium driven by Playwright (async API)
against a real uvicorn serving the sub-app on a tracker that runs real alert rules
(``sessiontrack.notify.Alerts``) delivering to a real local receiver, on SQLite and on
PostgreSQL.

Screenshots go to a temporary folder, or to ``SESSIONTRACK_SCREENSHOTS`` (``scripts/
screenshots`` sets it to docs/images/)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
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
from sessiontrack.notify import AlertRule, Alerts, AlertService, Target
from tests.alert_helpers import HttpReceiver, eventually

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

PREFIX = "/api/chatbot-sessions"
VIEWER = "x-test-viewer"  # a request with this header is a principal without can_manage

expect.set_options(timeout=15_000)


def authenticate(request: Any) -> sessiontrack.Principal:
    if request.connection.headers.get(VIEWER):
        return sessiontrack.Principal(id="viewer")
    return sessiontrack.Principal(id="ops", can_manage=True)


@dataclass
class Desk:
    ui: str
    tracker: sessiontrack.Tracker
    expired: str
    stopped: str
    api_rule: str


@pytest.fixture(scope="module", params=BACKENDS)
async def desk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Desk]:
    receiver = HttpReceiver()
    async with receiver.serving() as hook_base:
        rules = [
            AlertRule.session_ended(
                "Session expired or stopped",
                statuses=["expired", "stopped"],
                targets=[
                    Target.webhook(f"{hook_base}/hook", "dashboard-secret-0123"),
                    Target.slack(f"{hook_base}/slack"),
                ],
            ),
            AlertRule.node_rate(
                "Drop-off at a node",
                chatbot_ids=["shop"],
                threshold=0.3,
                window=timedelta(hours=2),
                min_sessions=10,
                targets=[Target.email("oncall@example.com")],
            ),
        ]
        alerts = Alerts(rules, refresh_interval=0.1, poll_interval=0.1, lease_check=0.5)
        async with served_tracker(
            request.param,
            tmp_path_factory,
            consumers=[alerts],
            app_options={"authenticate": authenticate},
        ) as served:
            tracker = served.tracker
            with anyio.fail_after(10):
                while not alerts.leading:  # noqa: ASYNC110 - the group's own flag
                    await anyio.sleep(0.02)
            service = AlertService(tracker.store)
            made, _ = await service.create_rule(
                {
                    "name": "Waiting on a form",
                    "kind": "stuck",
                    "chatbotIds": ["shop"],
                    "params": {"status": "waiting_flow", "longerThan": 600},
                    "targets": [{"type": "teams", "url": f"{hook_base}/teams-abcdefghijkl"}],
                }
            )
            hook = tracker.plugin_manager.hook
            ids = []
            for status in ("expired", "stopped"):
                sid = sessiontrack.new_session_id()
                hook.sessiontrack_session_started(session_id=sid, chatbot_id="shop")
                hook.sessiontrack_node_executed(session_id=sid, node_id="ask")
                hook.sessiontrack_session_completed(session_id=sid, status=status)
                ids.append(sid)
            await tracker.flush()

            async def delivered() -> bool:
                listed = await service.alerts()
                states = [d["state"] for a in listed for d in a["deliveries"]]
                return len(listed) == 2 and states == ["delivered"] * 4

            await eventually(delivered, 10)
            yield Desk(served.ui, tracker, ids[0], ids[1], made.id)


@pytest.fixture(scope="module")
async def browser(desk: Desk, chromium: Path) -> AsyncIterator[Any]:
    async with launched_browser(chromium) as browser:
        yield browser


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    page = await new_page(browser)
    yield page
    await close_page(page)


async def test_the_page_lists_rules_and_recent_alerts(page: Any, desk: Desk) -> None:
    await page.goto(desk.ui)
    await page.click("#nav-alerts")
    await expect(page.locator("#alerts-title")).to_have_text("Alerts")
    await expect(page.locator("#nav-alerts")).to_have_attribute("aria-current", "page")
    rules = page.locator("#alert-rules tbody tr")
    await expect(rules).to_have_count(3)
    await expect(rules.nth(0)).to_contain_text("Session expired or stopped")
    await expect(rules.nth(0)).to_contain_text("Ends with status expired or stopped")
    await expect(rules.nth(1)).to_contain_text(
        "Drop-off rate at any node above 30% over 2 h (at least 10 sessions)"
    )
    await expect(rules.nth(2)).to_contain_text("In waiting_flow for more than 10 min")
    await expect(rules.nth(2)).not_to_contain_text("abcdefghijkl")  # the URL is a credential
    # the code's rules cannot be deleted here; the API's can
    await expect(rules.nth(0).locator("button")).to_have_count(0)
    await expect(rules.nth(2).locator("button")).to_have_text("Delete")
    alerts = page.locator("#alerts-table tbody tr")
    await expect(alerts).to_have_count(2)
    newest = alerts.nth(0)
    await expect(newest).to_contain_text("Session ended stopped")
    await expect(newest.locator(".badge")).to_have_text(["webhook: delivered", "slack: delivered"])
    link = newest.locator("a.alert-link")
    await expect(link).to_have_attribute("href", f"#/sessions/{desk.stopped}")
    await link.click()
    await page.wait_for_url(f"**#/sessions/{desk.stopped}")
    await expect(page.locator("#nav-alerts")).to_have_attribute("aria-current", "false")


AXE_AGAIN = """async () => (await axe.run(document, {
    runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'],
    resultTypes: ['violations'],
})).violations.map(v => v.id + ': ' + v.help)"""


async def test_the_page_is_accessible(page: Any, desk: Desk, axe_script: Path) -> None:
    await page.goto(desk.ui + "#/alerts")
    await expect(page.locator("#alerts-table tbody tr")).to_have_count(2)
    assert await axe_violations(page, axe_script) == []
    await page.click("#new-rule")  # the form, each kind's fields
    for kind in ("session_ended", "stuck", "node_rate"):
        await page.select_option("#rule-kind", kind)
        await page.select_option("#rule-target-type", "email")
        assert await page.evaluate(AXE_AGAIN) == [], kind
    await page.click("#rule-form button:has-text('Cancel')")
    await expect(page.locator("#rule-form")).to_be_hidden()
    await expect(page.locator("#new-rule")).to_be_focused()
    # keyboard: Tab reaches the first alert's link from the top of the page
    for _ in range(30):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement?.classList.contains('alert-link')"):
            break
    else:
        raise AssertionError("Tab never reached an alert's link")


WIDER_THAN = """(width) => [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > width + 1)
    .slice(0, 8).map((e) => `${e.tagName}#${e.id}.${e.className}`)"""


async def test_screenshots(
    browser: Any, desk: Desk, screenshots: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if "postgresql" in request.node.callspec.id:
        screenshots = tmp_path  # the kept pictures come from the SQLite run
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await new_page(browser, viewport, reduced_motion="reduce")
        await page.goto(desk.ui + "#/alerts")
        await expect(page.locator("#alerts-table tbody tr")).to_have_count(2)
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
        await page.wait_for_timeout(300)
        await page.screenshot(path=str(screenshots / f"alerts-{size}.png"), full_page=True)
        wide = await page.evaluate(WIDER_THAN, viewport["width"])
        assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], (
            wide
        )
        assert not page.errors
        await page.context.close()
    for size in ("desktop", "phone"):
        assert (screenshots / f"alerts-{size}.png").stat().st_size > 10_000


async def test_a_principal_without_can_manage_is_told_so(browser: Any, desk: Desk) -> None:
    page = await new_page(browser, extra_http_headers={VIEWER: "1"})
    await page.goto(desk.ui + "#/alerts")
    error = page.locator("#alerts-error")
    await expect(error).to_contain_text("Not allowed to see alerts")
    await expect(error).to_contain_text("can_manage")
    await page.context.close()


async def test_an_api_rule_is_deleted_after_confirmation(browser: Any, desk: Desk) -> None:
    page = await new_page(browser)
    await page.goto(desk.ui + "#/alerts")
    row = page.locator(f"tr[data-rule-id='{desk.api_rule}']")
    await row.locator("button").click()
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#confirm-text")).to_contain_text("Waiting on a form")
    await dialog.locator("button[value=cancel]").click()
    await expect(row).to_have_count(1)
    await row.locator("button").click()
    await page.click("#confirm-ok")
    await expect(row).to_have_count(0)
    await expect(page.locator("#alert-rules tbody tr")).to_have_count(2)
    assert [r.name for r in await AlertService(desk.tracker.store).list_rules()] == [
        "Session expired or stopped",
        "Drop-off at a node",
    ]
    assert not page.errors
    await page.context.close()


async def test_a_new_alert_appears_while_the_page_is_open(page: Any, desk: Desk) -> None:
    await page.goto(desk.ui + "#/alerts")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.locator("#alerts-table tbody tr")).to_have_count(2)
    sid = sessiontrack.new_session_id()
    hook = desk.tracker.plugin_manager.hook
    hook.sessiontrack_session_started(session_id=sid, chatbot_id="shop")
    hook.sessiontrack_session_completed(session_id=sid, status="expired")
    await desk.tracker.flush()
    first = page.locator("#alerts-table tbody tr").nth(0)
    await expect(first.locator("a.alert-link")).to_have_attribute("href", f"#/sessions/{sid}")


async def test_a_rule_is_made_with_the_form(page: Any, desk: Desk) -> None:
    await page.goto(desk.ui + "#/alerts")
    await expect(page.locator("#alert-rules tbody tr")).to_have_count(2)
    await page.click("#new-rule")
    await expect(page.locator("#new-rule")).to_have_attribute("aria-expanded", "true")
    await expect(page.locator("#rule-name")).to_be_focused()
    await page.fill("#rule-name", "Error rate at pay")
    await page.select_option("#rule-kind", "node_rate")
    await expect(page.locator("#rule-ended-fields")).to_be_hidden()
    await page.fill("#rule-threshold", "150")  # refused by the API, which names the field
    await page.click("#rule-create")
    error = page.locator("#rule-form-error")
    await expect(error).to_contain_text("params.threshold")
    await page.fill("#rule-threshold", "25")
    await page.click("#rule-create")
    await expect(error).to_contain_text("chatbotIds")  # a node rate needs a chatbot
    await page.fill("#rule-chatbots", "shop")
    await page.select_option("#rule-metric", "error")
    await page.fill("#rule-node", "pay")
    await page.select_option("#rule-target-type", "webhook")
    await page.fill("#rule-target", "http://127.0.0.1:9/hook")
    await page.click("#rule-create")
    await expect(page.locator("#rule-form")).to_be_hidden()
    await expect(page.locator("#rule-secret-value")).to_have_text(re.compile(r"^whsec_"))
    row = page.locator("#alert-rules tbody tr").nth(2)
    await expect(row).to_contain_text("Error rate at pay above 25% over 60 min")
    made = (await AlertService(desk.tracker.store).list_rules())[-1]
    assert made.name == "Error rate at pay" and made.source == "api"
    assert dict(made.params) == {
        "metric": "error",
        "threshold": 0.25,
        "window": 3600.0,
        "minSessions": 20,
        "nodeId": "pay",
        "version": None,
    }
    assert made.chatbot_ids == ("shop",) and made.targets[0].type == "webhook"
