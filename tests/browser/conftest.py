"""Browser tests: a real ``urbanmim serve`` on the three demo cities, driven by Debian's Chromium.

What these fixtures give a test (mark it ``@pytest.mark.browser``; every test in this folder is
marked automatically):

* ``twin_server`` — a server process on a free port over a demo database built once per session
  (``urbanmim demo --no-serve --history 1``: portamar, lindmark, valdoria with a day of hourly
  history). No simulator runs, so a test's own writes are the only changes. Its log goes to
  ``test-artifacts/browser/server.log``.
* ``browser`` — (one per test module) headless Chromium launched by Playwright with ``executable_path`` (never a
  downloaded browser) and the flags this machine needs (no background networking: the network is
  closed; SwiftShader: WebGL without a GPU).
* ``page`` — a fresh context and page per test; console errors are collected on ``page.errors``;
  a screenshot is saved to ``test-artifacts/browser/<test name>.png`` when the test ends.
* ``axe(page)`` — injects the local axe-core (``web/node_modules``, installed by
  ``scripts/install-browser``) and fails on any serious or critical WCAG 2.1 A/AA violation.

Missing Chromium, Playwright or axe-core skips these tests on a developer machine and fails them
in CI (``CI=true``), as the other external services do (``scripts/test``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port

CHROMIUM = os.environ.get("URBANMIM_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--disable-default-apps",
    "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist",
]
VIEWPORT = {"width": 1366, "height": 900}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run: {why} (run scripts/install-browser)")
    pytest.skip(f"{why}; run scripts/install-browser")


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("twin") / "demo.db"
    subprocess.run([sys.executable, "-m", "urbanmim.cli", "demo", "--db", str(db), "--no-serve", "--no-progress",
                    "--history", "1"], check=True, stdout=subprocess.DEVNULL, timeout=300)
    return db


class LiveServer:
    """``urbanmim serve`` in a subprocess; its log in a file (a pipe nobody reads would fill and block it)."""

    def __init__(self, db: Path, log: Path):
        self.db, self.log_path, self.port = db, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        log = self.log_path.open("ab")
        env = dict(os.environ, URBANMIM_LOG_LEVEL="warning")
        self.proc = subprocess.Popen([sys.executable, "-m", "urbanmim.cli", "serve", "--port", str(self.port),
                                      "--db", str(self.db)], env=env, stdout=log, stderr=log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                httpx.get(f"{self.base}/", timeout=0.5)
                return self
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited, see {self.log_path}") from None
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


@pytest.fixture(scope="session")
def twin_server(demo_db: Path) -> Iterator[LiveServer]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LiveServer(demo_db, ARTIFACTS / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in the main
    # thread while it is alive, and pytest-asyncio cannot run the async tests of later modules then.
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package playwright is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    pg.on("console", lambda msg: pg.errors.append(msg.text) if msg.type == "error" else None)
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
    except Exception:  # a crashed page must not hide the test's own failure
        pass
    context.close()


def shot(page: Any, name: str) -> Path:
    """Save a named screenshot as a test artefact (besides the automatic one at the end)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


SERIOUS = ("serious", "critical")


def run_axe(page: Any, context: str | None = None) -> list[dict[str, Any]]:
    """axe-core on the page (WCAG 2.0/2.1 A and AA rules); returns the serious and critical violations."""
    if not AXE.exists():
        _unavailable(f"axe-core is missing at {AXE}")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async (ctx) => await axe.run(ctx || document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}, resultTypes: ['violations']})""",
                           context)
    return [v for v in result["violations"] if v.get("impact") in SERIOUS]


@pytest.fixture
def axe() -> Callable[..., None]:
    def check(page: Any, context: str | None = None) -> None:
        bad = run_axe(page, context)
        if bad:
            lines = [f"{v['id']} ({v['impact']}): {v['help']} — " +
                     "; ".join(n["target"][0] if isinstance(n["target"][0], str) else str(n["target"])
                               for n in v["nodes"][:5]) for v in bad]
            pytest.fail("axe-core found serious/critical violations:\n" + "\n".join(lines))
    return check
