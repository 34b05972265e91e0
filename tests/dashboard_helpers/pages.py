"""What every dashboard test module needs: a tracker on a fresh database served by a real
uvicorn, one headless Chromium for the module, and pages that collect their JavaScript
errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pluggy
import pytest
from conftest import drop_prefixed_tables, module_database_url
from web_helpers.live import PREFIX, host_app, serve

import sessiontrack
from sessiontrack.web import create_app

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
LAUNCH_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
"""Nothing but 127.0.0.1 resolves: a page that reached for the network would fail."""

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
"""The params of a module-scoped fixture that runs the module on both backends."""


class Served:
    """A running tracker, its plugin manager and the base URL of the app serving it."""

    def __init__(self, tracker: sessiontrack.Tracker, pm: pluggy.PluginManager, base: str):
        self.tracker = tracker
        self.pm = pm
        self.hook = pm.hook
        self.base = base
        self.ui = f"{base}{PREFIX}/ui/"


@asynccontextmanager
async def served_tracker(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    *plugins: object,
    app_options: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Served]:
    """A :class:`~sessiontrack.Tracker` on a new SQLite file or a fresh PostgreSQL prefix
    (dropped afterwards), with ``plugins`` registered and ``options`` given, and
    ``create_app(tracker, **app_options)`` behind a real uvicorn on 127.0.0.1."""
    prefix = f"st{uuid.uuid4().hex[:10]}_"
    url = await module_database_url(backend, tmp_path_factory)
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    options = {"migrate": True, "poll_interval": 0.05, **options}
    try:
        async with (
            sessiontrack.Tracker(url, plugin_manager=pm, prefix=prefix, **options) as tracker,
            serve(host_app(create_app(tracker, **(app_options or {})))) as base,
        ):
            yield Served(tracker, pm, base)
    finally:
        if backend == "postgresql":
            await drop_prefixed_tables(url, prefix)


@asynccontextmanager
async def launched_browser(chromium: Path) -> AsyncIterator[Any]:
    """Debian's Chromium, headless, through Playwright."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Any, viewport: dict[str, int] = DESKTOP, **options: Any) -> Any:
    """A page in a context of its own; its uncaught JavaScript errors go to
    ``page.errors``."""
    context = await browser.new_context(viewport=viewport, **options)
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


async def close_page(page: Any) -> None:
    """Close ``page``'s context, then fail if the page had JavaScript errors."""
    errors = page.errors
    await page.context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
