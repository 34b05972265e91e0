"""Fixtures for the web tests; a test module imports the ones it uses.

Override ``authenticate`` or ``app_options`` in a module to configure the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pluggy
import pytest
from starlette.applications import Starlette

import sessiontrack
from sessiontrack.web import create_app

from .engine import Engine
from .live import PREFIX, host_app, serve


@pytest.fixture
def authenticate() -> Any:
    return None


@pytest.fixture
def app_options() -> dict[str, Any]:
    return {}


@pytest.fixture
def web_app(
    tracker: sessiontrack.Tracker, authenticate: Any, app_options: dict[str, Any]
) -> Starlette:
    return create_app(tracker, authenticate=authenticate, **app_options)


@pytest.fixture
async def live_url(web_app: Starlette) -> AsyncIterator[str]:
    """The root URL of a uvicorn serving a host app with the sub-app under PREFIX."""
    async with serve(host_app(web_app)) as url:
        yield url


@pytest.fixture
async def api(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_url + PREFIX, timeout=10) as client:
        yield client


@pytest.fixture
def engine(pm: pluggy.PluginManager) -> Engine:
    return Engine(pm)
