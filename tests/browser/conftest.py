"""Headless Chromium for the dashboard browser tests: installed on demand, launched once per module.

Chromium is Debian's `chromium` package (never `playwright install`, which downloads its own build):
when it is missing and we are root with apt-get, the session installs it. If installation is
impossible the tests are skipped with the reason, except under CI (CI=1), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FAIRWAY_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _install_chromium() -> str:
    """Returns why it could not be installed ("" when it was)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "chromium is missing and installing it needs root (apt-get install -y chromium)"
    if shutil.which("apt-get") is None:
        return "chromium is missing and this system has no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr.strip()[-300:]}"
    return "" if Path(CHROMIUM).exists() else f"apt-get installed chromium but {CHROMIUM} is missing"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        reason = _install_chromium()
        if reason:
            _unavailable(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -r requirements.txt)")
    # Playwright's sync API keeps an event loop marked as running in this thread, so Django would
    # refuse the tests' own (truly synchronous) ORM calls; Django documents this switch for that case.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path, args=ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    # Failed loads are checked here, by URL (the admin's favicon.ico request is not a page resource).
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.js_errors = errors  # script errors and console errors (CSP violations among them)
    yield page
    context.close()


def screenshot(page, name: str, *, viewport: dict | None = None) -> Path:
    """Save artifacts/screenshots/<name>.png (full page), optionally at another viewport size."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if viewport:
        page.set_viewport_size(viewport)
        page.wait_for_timeout(300)  # let charts resize
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if viewport:
        page.set_viewport_size(LAPTOP)
    return path


# The dashboard tests' fixtures (isolated cache, fast hasher, tenants, operator) serve here too.
from tests.dashboard.conftest import (_isolated_cache, acme, acme_key, executor_db_released, globex,  # noqa: E402,F401
                                     operator, plan)
