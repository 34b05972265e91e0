"""The database URL forms every entry point accepts, and the async driver each one means.

The tracker, ``sessiontrack migrate``/``purge``/``serve`` and the example all go through
:func:`normalize_url`, so a URL that works in one works in all of them: a plain
``postgresql://`` means asyncpg (SQLAlchemy alone would pick psycopg, which sessiontrack
neither needs nor installs), a plain ``sqlite://`` means aiosqlite.
"""

from __future__ import annotations

import importlib.util

import sqlalchemy as sa

SUPPORTED_FORMS = (
    "sqlite:///file.db, sqlite+aiosqlite:///file.db, "
    "postgresql://user@host/db, postgres://user@host/db or postgresql+asyncpg://user@host/db"
)
# drivername as SQLAlchemy parses it -> the one sessiontrack runs it with
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
# the driver module each one imports, and the extra that installs it
_MODULES = {"postgresql+asyncpg": ("asyncpg", "postgres"), "sqlite+aiosqlite": ("aiosqlite", "")}


def normalize_url(url: str | sa.URL) -> str:
    """``url`` with the async driver sessiontrack uses (its password kept, not masked).

    :raises ValueError: the URL is malformed or names another database or driver; the
        message lists the supported forms (and never shows the password).
    :raises ModuleNotFoundError: the driver is not installed; the message says which
        ``pip install`` adds it.
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        raise ValueError(f"not a database URL: {_safe(url)!r}; use {SUPPORTED_FORMS}") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database URL {parsed.render_as_string(hide_password=True)!r} "
            f"(driver {parsed.drivername!r}); use {SUPPORTED_FORMS}"
        )
    _require_driver(driver)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _require_driver(driver: str) -> None:
    module, extra = _MODULES[driver]
    if importlib.util.find_spec(module) is None:
        hint = f'pip install "sessiontrack[{extra}]"' if extra else "pip install sessiontrack"
        raise ModuleNotFoundError(f"{driver} URLs need the {module} package: {hint}", name=module)


def _safe(url: object) -> str:
    """A URL that failed to parse, with anything that looks like a password hidden."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    return text
