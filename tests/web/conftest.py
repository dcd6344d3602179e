"""One installation, one live `mloncall server` and one Chromium for every browser test of the dashboard.

Playwright drives Debian's `chromium` (`scripts/services.sh` installs it): its own browser download cannot
work here. Screenshots of every page go to `test-output/web/` (or `$MLONCALL_TEST_OUTPUT/web`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mloncall.stores.context import Context
from tests.api.live import live_server
from tests.conftest import make_context, unavailable
from tests.web.state import PASSWORD, Built, build

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MLONCALL_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(os.environ.get("MLONCALL_TEST_OUTPUT", ROOT / "test-output")) / "web"


@dataclass
class Dashboard:
    url: str
    ctx: Context
    built: Built
    browser: Any
    shots: Path


@dataclass
class Watched:
    """A logged-in page that records console errors, failed requests and error responses."""

    page: Any
    problems: list[str] = field(default_factory=list)

    def visit(self, url: str) -> Any:
        self.problems.clear()
        return self.page.goto(url)

    def assert_clean(self, what: str) -> None:
        assert not self.problems, f"{what}: {self.problems}"


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the test extra's playwright is not installed"
    )
    if not shutil.which(CHROMIUM):
        unavailable(f"no Chromium at {CHROMIUM}: run scripts/services.sh")
    ctx = make_context(tmp_path_factory.mktemp("dashboard") / "home")
    built = build(ctx)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with live_server(ctx) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield Dashboard(url=url, ctx=ctx, built=built, browser=browser, shots=OUTPUT)
        finally:
            browser.close()
    ctx.close()


def login(dashboard: Dashboard, role: str) -> Watched:
    """A new browser context logged in as the user of role, through the login form."""
    context = dashboard.browser.new_context(base_url=dashboard.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watched = Watched(page)
    page.on("console", lambda m: m.type == "error" and watched.problems.append(f"console: {m.text}"))
    page.on("requestfailed", lambda r: watched.problems.append(f"failed: {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and watched.problems.append(f"{r.status}: {r.url}"))
    page.goto("/login")
    page.fill("input[name=name]", f"{role}-user")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{dashboard.url}/")
    return watched


@pytest.fixture
def as_role(dashboard: Dashboard) -> Iterator[Any]:
    opened: list[Watched] = []

    def open_as(role: str) -> Watched:
        watched = login(dashboard, role)
        opened.append(watched)
        return watched

    yield open_as
    for w in opened:
        w.page.context.close()
