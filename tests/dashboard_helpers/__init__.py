"""Helpers for the browser tests of the dashboard (tests/test_dashboard.py and
tests/test_dashboard_analytics.py); their shared fixtures (``axe_script``,
``screenshots``) are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HELPERS = Path(__file__).resolve().parent
AXE = HELPERS / "node_modules" / "axe-core" / "axe.min.js"
"""axe-core, from this folder's package.json (``npm ci`` installs it)."""

_AXE_RUN = """async () => (await axe.run(document, {
    runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'],
    resultTypes: ['violations'],
})).violations.map(v => `${v.id}: ${v.help} (${v.nodes.map(
    n => n.target.join(' ')).slice(0, 3).join(', ')})`)"""


async def axe_violations(page: Any, axe_script: Path) -> list[str]:
    """axe-core's WCAG 2 A/AA and best-practice violations on the page as it is now, one
    line each (rule, help, the first three elements)."""
    await page.add_script_tag(path=str(axe_script))
    violations: list[str] = await page.evaluate(_AXE_RUN)
    return violations
