"""The code of README.md and docs/quickstart.md, taken from the Markdown files themselves
and run as printed, so that an edit which breaks a snippet fails here.

What the test changes, and why (nothing else is touched):

- It runs each snippet in a temporary directory: the snippets use relative SQLite files.
- On PostgreSQL it replaces the snippet's one SQLite URL literal with a ``postgresql://``
  URL of a database made for the test (the snippets use the default table prefix), after
  running the README's own ``sessiontrack migrate`` line against it.
- The README's serving snippet calls ``my_auth``, the host's authenticator; the test
  defines it (:func:`my_auth`: bearer token ``docs-token`` is principal ``docs-reader``).
- The quick start's ``uvicorn bot:app`` and ``curl localhost:8000`` get a free port instead
  of 8000, which other processes on the machine may hold.
- Install commands are not re-run (this environment was made by one of them); the test
  checks that every extra they name exists, and builds the documented wheel once.

Stop requests: each snippet's wiring must deliver ``sessiontrack_stop_requested`` to the
plugins on the engine's manager; every test below stops a session and sees it arrive.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

import sessiontrack
from sessiontrack.web import AuthRequest
from tests.fresh_database import fresh_postgres_database
from tests.web_helpers.live import PREFIX, free_port, serve, wait_until

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"
PAGES = (README, QUICKSTART)
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def fenced(page: Path, language: str) -> list[str]:
    """The bodies of ``page``'s fenced blocks in ``language``, in order."""
    text = page.read_text(encoding="utf-8")
    return [str(b) for b in re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)]


def block(page: Path, containing: str) -> str:
    [found] = [b for b in fenced(page, "python") if containing in b]
    return found


def commands(page: Path) -> list[str]:
    """Each shell command of ``page``'s console blocks, comments stripped."""
    lines = (
        line.split("  #")[0].strip() for b in fenced(page, "console") for line in b.splitlines()
    )
    return [line for line in lines if line]


def command(page: Path, start: str) -> list[str]:
    [found] = [shlex.split(c) for c in commands(page) if c.startswith(start)]
    return found


def on_database(code: str, sqlite_url: str, url: str | None) -> str:
    """``code`` with its one SQLite URL literal replaced by ``url`` (``None``: as printed)."""
    assert code.count(f'"{sqlite_url}"') == 1, f"the snippet no longer uses {sqlite_url}"
    return code if url is None else code.replace(f'"{sqlite_url}"', f'"{url}"')


# --- every block is run (or checked) by a test here ------------------------------------

# The README's Python blocks and the quick start's, each named by a line it contains,
# with the test that runs it.
PYTHON_BLOCKS = {
    (README, "asyncio.run(main())"): "test_readme_recording_script",
    (README, "app.mount("): "test_readme_serving_snippet",
    (QUICKSTART, "app = Starlette("): "test_quickstart_bot_with_uvicorn_and_curl",
}
# Each kind of shell command, and where it is checked.
COMMAND_KINDS: dict[str, str] = {
    r"python3 -m pip install -e \S+( && python3 -m examples\.helpdesk)?": "test_the_extras_exist "
    "(tests/test_example_demo.py runs python -m examples.helpdesk)",
    r"python3 -m pip install -e \S+ && python3 -m examples\.support_agent": "test_the_extras_exist "
    "(tests/test_example_support_agent.py runs python -m examples.support_agent)",
    r"python3 -m examples\.helpdesk": "tests/test_example_demo.py",
    r"python3 -m pip wheel --no-deps \S+ -w dist": "test_the_documented_wheel",
    r'python3 -m pip install "dist/\S+\.whl\[\w+\]"': "test_the_documented_wheel",
    r"sessiontrack migrate --database-url \S+": "the PostgreSQL runs below",
    r"uvicorn bot:app|curl .*": "test_quickstart_bot_with_uvicorn_and_curl",
    r"scripts/test": "the whole suite: this run",
}


def test_every_snippet_is_covered() -> None:
    for page in PAGES:
        for code in fenced(page, "python"):
            compile(code, str(page), "exec")
            claims = [t for (p, marker), t in PYTHON_BLOCKS.items() if p == page and marker in code]
            assert len(claims) == 1, f"a Python block of {page.name} no test runs:\n{code}"
        for line in commands(page):
            assert any(re.fullmatch(kind, line) for kind in COMMAND_KINDS), (
                f"{page.name}: no test covers `{line}`: add it to COMMAND_KINDS with its test"
            )


def test_the_extras_exist() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    named = {
        extra
        for page in (*PAGES, ROOT / "docs" / "storage.md")
        for found in re.findall(r'(?:sessiontrack[^"\s]*|"\.)\[([\w,]+)\]', page.read_text())
        for extra in found.split(",")
    }
    assert named and named <= set(extras), named - set(extras)


# --- databases ------------------------------------------------------------------------


@pytest.fixture
async def docs_url(backend: str) -> AsyncIterator[str | None]:
    """``None`` on SQLite (the snippet's own URL, as printed); on PostgreSQL a fresh
    database, migrated with the README's command, as a plain ``postgresql://`` URL."""
    if backend == "sqlite":
        yield None
        return
    async with fresh_postgres_database() as url:
        plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
        argv = command(README, "sessiontrack migrate")
        argv[argv.index("--database-url") + 1] = plain
        done = await anyio.to_thread.run_sync(_run_cli, argv[1:])
        assert done.returncode == 0, done.stderr
        yield plain


def _run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    cli = [sys.executable, "-m", "sessiontrack.cli"]
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


# --- README ---------------------------------------------------------------------------


async def test_readme_recording_script(backend: str, docs_url: str | None, in_tmp: Path) -> None:
    """``python3 record.py``, as the README says: it records, reads and stops, and its
    Engine (on the manager given to the tracker) hears the stop."""
    code = on_database(block(README, "asyncio.run(main())"), "sqlite:///sessions.db", docs_url)
    (in_tmp / "record.py").write_text(code, encoding="utf-8")
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "record.py"], cwd=in_tmp, capture_output=True, text=True, timeout=60
        )
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout  # the second: Engine heard the stop
    assert lines[0] == "1 completed session(s) for Ann"
    assert re.fullmatch(rf"stop {UUID}, asked by agent-7", lines[1]), lines
    assert (in_tmp / "sessions.db").exists() == (backend == "sqlite")


def my_auth(request: AuthRequest) -> sessiontrack.Principal | None:
    """The host's authenticator that the README's serving snippet names."""
    return sessiontrack.Principal(id="docs-reader") if request.token == "docs-token" else None


class StopRecorder:
    """A plugin of the engine's, on the manager the snippet gives the tracker."""

    def __init__(self) -> None:
        self.stops: list[tuple[str, str | None]] = []

    @sessiontrack.hookimpl
    def sessiontrack_stop_requested(self, session_id: str, principal: str | None) -> None:
        self.stops.append((session_id, principal))


async def test_readme_serving_snippet(docs_url: str | None, in_tmp: Path) -> None:
    """The host app of the README under a real uvicorn (its lifespan enters the tracker):
    a stop through the API reaches a plugin on the snippet's ``pm``."""
    code = on_database(block(README, "app.mount("), "sqlite:///sessions.db", docs_url)
    namespace: dict[str, Any] = {"my_auth": my_auth}
    exec(compile(code, "README.md", "exec"), namespace)
    recorder = StopRecorder()
    namespace["pm"].register(recorder)
    async with (
        serve(namespace["app"], lifespan="on") as url,
        httpx.AsyncClient(base_url=url + PREFIX) as client,
    ):
        sid = sessiontrack.new_session_id()
        namespace["pm"].hook.sessiontrack_session_started(session_id=sid, chatbot_id="helpdesk")
        await namespace["tracker"].flush()
        assert (await client.get(f"/{sid}")).status_code == 401  # my_auth guards it
        token = {"Authorization": "Bearer docs-token"}
        assert (await client.get(f"/{sid}", headers=token)).json()["status"] == "running"
        assert (await client.post(f"/{sid}/stop", headers=token)).status_code == 200
        await wait_until(lambda: bool(recorder.stops))
    assert recorder.stops == [(sid, "docs-reader")]


# --- the quick start ------------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_process(argv: list[str], cwd: Path, port: int) -> Iterator[Callable[[], str]]:
    """Run the documented ``uvicorn`` command on ``port``; yields a function returning
    what it has printed so far."""
    assert argv[0] == "uvicorn"
    log = cwd / "uvicorn.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv, "--port", str(port)],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield lambda: log.read_text()
    finally:
        proc.terminate()
        proc.wait(30)


def curl(line: str, port: int) -> str:
    argv = shlex.split(line.replace("localhost:8000", f"localhost:{port}"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, (line, done.stderr)
    return done.stdout


async def test_quickstart_bot_with_uvicorn_and_curl(docs_url: str | None, in_tmp: Path) -> None:
    """``bot.py`` as printed, served by ``uvicorn bot:app`` and talked to with the printed
    ``curl`` lines; then the dashboard's stop reaches its ``StopHandler``."""
    code = on_database(block(QUICKSTART, "app = Starlette("), "sqlite:///bot.db", docs_url)
    (in_tmp / "bot.py").write_text(code, encoding="utf-8")
    lines = [c for c in commands(QUICKSTART) if c.startswith(("uvicorn", "curl"))]
    port = free_port()
    with uvicorn_process(shlex.split(lines[0]), in_tmp, port) as printed:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _until_up(client, printed)
            hi, bye, stats = [
                await anyio.to_thread.run_sync(curl, line, port) for line in lines[1:]
            ]
            first = httpx.Response(200, content=hi).json()
            assert first["reply"] == "You said: hi"
            assert httpx.Response(200, content=bye).json() == {
                "reply": "Bye!",
                "sessionId": first["sessionId"],
            }
            assert httpx.Response(200, content=stats).json()["byStatus"]["completed"] == 1
            bob = (await client.post("/chat", json={"user": "bob", "text": "hi"})).json()
            stop = await client.post(f"{PREFIX}/{bob['sessionId']}/stop")
            assert stop.status_code == 200, stop.text
            stopped = f"session {bob['sessionId']} stopped by local"  # StopHandler's print
            await wait_until(lambda: stopped in printed(), within=10)
    assert (in_tmp / "bot.db").exists() == (docs_url is None)


async def _until_up(client: httpx.AsyncClient, printed: Callable[[], str]) -> None:
    with anyio.fail_after(30):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{PREFIX}/stats")).status_code == 200:
                    return
            assert "Traceback" not in printed(), printed()
            await anyio.sleep(0.1)


# --- the wheel ------------------------------------------------------------------------


def test_the_documented_wheel(tmp_path: Path) -> None:
    """The README's two wheel commands, in a copy of the checkout: the wheel has the name
    the install command gives, and carries the migrations and the dashboard's files."""
    source = tmp_path / "sessiontrack"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = command(README, "python3 -m pip wheel")
    done = subprocess.run(
        [sys.executable, *build[1:]], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    install = command(README, 'python3 -m pip install "dist/')
    wheel = source / install[-1].split("[")[0]
    assert sorted((source / "dist").iterdir()) == [wheel]
    quick = command(QUICKSTART, 'python3 -m pip install "dist/')
    assert quick[-1] == install[-1]  # both pages name the same file
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {
        str(p.relative_to(source))
        for folder in ("sessiontrack/store/migrations", "sessiontrack/web/static")
        for p in (source / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert any(n.startswith("sessiontrack/store/migrations/versions/0001") for n in packaged)
    assert "sessiontrack/web/static/index.html" in packaged
    assert packaged <= names, packaged - names
    dry = subprocess.run(
        [sys.executable, *install[1:], "--dry-run", "--no-deps", "--ignore-installed"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    assert "Would install sessiontrack-0.1.0" in dry.stdout


def test_postgresql_urls_are_plain_in_the_docs() -> None:
    """The docs' PostgreSQL URLs are the forms every entry point accepts."""
    for page in PAGES:
        for url in re.findall(r"postgres(?:ql)?(?:\+\w+)?://[^\s`\"']+", page.read_text()):
            assert sa.make_url(sessiontrack.store.normalize_url(url)).drivername == (
                "postgresql+asyncpg"
            )
