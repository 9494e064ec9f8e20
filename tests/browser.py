"""Headless Chromium for the browser journeys: Debian's chromium driven by Playwright.

Pages may only reach loopback: every other request is aborted in the browser context, and
Chromium's own background traffic is switched off, so a test can also prove that hostile
mail made no request to a remote host. Screenshots go to `test-artifacts/` for people to
look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from tests.support import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
QUIET = [
    "--no-sandbox",  # CI runs as root
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def available() -> bool:
    """Whether Debian's chromium is installed (`make test` installs it)."""
    return shutil.which(CHROMIUM) is not None


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the whole test session."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=QUIET)
        try:
            yield browser
        finally:
            browser.close()


class LoopbackOnly:
    """A browser context that aborts, and remembers, every request off loopback."""

    def __init__(self, browser: Browser, **options: Any) -> None:
        """`options` are Playwright's for the context, such as the browser's `locale`."""
        self.context: BrowserContext = browser.new_context(**options)
        self.blocked: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "about:", "blob:")) or host in LOOPBACK:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def page(self) -> Page:
        return self.context.new_page()

    def close(self) -> None:
        self.context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the page as `test-artifacts/NAME.png`."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
