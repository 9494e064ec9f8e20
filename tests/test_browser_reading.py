"""Reading mail in Chromium, as an employee would: search, a conversation in the results,
a message, the next one in the thread with `j`, back to the results with `u`, the
shortcuts with `?`; attachment previews and an HTML mail whose frame fits it; at a
desktop's and a phone's width, in light and dark, in English and Bahasa Indonesia."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import pytest
from playwright.sync_api import Page

from tests import reading_mail
from tests.browser import LoopbackOnly, screenshot
from tests.reading_mail import (
    ADMIN,
    FILES,
    LIST,
    LOG_LINES,
    NEWSLETTER,
    PASSWORD,
    THREAD,
    USER,
)
from tests.support import RunningService, eventually, missing, shared_service

# Each width, theme and language twice, each pair of them once.
LOOKS = [
    pytest.param(1280, "light", "en-GB", id="desktop-light-en"),
    pytest.param(390, "dark", "id-ID", id="phone-dark-id"),
    pytest.param(390, "light", "en-GB", id="phone-light-en"),
    pytest.param(1280, "dark", "id-ID", id="desktop-dark-id"),
]
# The frame's height in the stylesheet (24rem) when nothing fits it.
FIXED_FRAME = 384


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with shared_service(tmp_path_factory.mktemp("reading")) as running:
        reading_mail.fill(running)
        yield running


def base(service: RunningService) -> str:
    return f"http://127.0.0.1:{service.settings.web_port}"


def log_in(page: Page, service: RunningService, email: str = USER) -> None:
    page.goto(f"{base(service)}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/(\?.*)?$"))


@contextmanager
def reader(
    browser, service: RunningService, width: int, scheme: str = "light", locale: str = "en-GB"
) -> Iterator[Page]:
    """A logged-in reader's page with this look; afterwards, nothing may have left
    loopback (the mail's trackers included)."""
    context = LoopbackOnly(
        browser, viewport={"width": width, "height": 900}, color_scheme=scheme, locale=locale
    )
    try:
        page = context.page()
        log_in(page, service)
        yield page
        assert context.blocked == []
    finally:
        context.close()


@pytest.mark.parametrize(("width", "scheme", "locale"), LOOKS)
def test_search_a_conversation_walk_its_thread_and_come_back_to_the_results(
    browser, service: RunningService, width: int, scheme: str, locale: str
) -> None:
    name = f"reading-{width}-{scheme}-{locale[:2]}"
    with reader(browser, service, width, scheme, locale) as page:
        page.fill("header input[name=q]", "forecast -subject:files")
        page.press("header input[name=q]", "Enter")
        page.wait_for_url(re.compile(r"q=forecast"))
        conversation = page.locator("ol.results > li.conversation")
        assert conversation.count() == 1
        assert re.search(r"\b3\b", conversation.locator(".badge").inner_text())
        # The total counts messages; the page says how they fold into conversations.
        assert re.search(r"(this page|halaman ini).*\b\d+\b", page.inner_text(".toolbar .count"))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(page, f"{name}-results")

        results_url = page.url
        conversation.locator(".subject a").click()
        page.wait_for_url(re.compile(r"/messages/"))
        first = page.url
        steps = page.inner_text(".message-nav")
        assert re.search(r"\b\d of 3\b|\b\d dari 3\b", steps), steps
        screenshot(page, f"{name}-message")

        page.keyboard.press("j")  # the next message of the thread
        page.wait_for_url(lambda url: url != first and "/messages/" in url)
        assert page.locator("a[rel=up]").count() == 1
        page.keyboard.press("k")
        page.wait_for_url(first)
        page.keyboard.press("j")
        page.wait_for_url(lambda url: url != first and "/messages/" in url)
        page.keyboard.press("u")  # back to the very page of results
        page.wait_for_url(lambda url: unquote(url) == unquote(results_url))
        assert page.locator("ol.results > li.conversation").count() == 1

        page.keyboard.press("?")
        dialog = page.locator("dialog#keys")
        dialog.wait_for(state="visible")
        assert "j" in dialog.inner_text()
        screenshot(page, f"{name}-shortcuts")
        page.keyboard.press("Escape")


@pytest.fixture(params=[look.values for look in LOOKS[:2]], ids=[look.id for look in LOOKS[:2]])
def looking(request: pytest.FixtureRequest, browser, service: RunningService) -> Iterator[Page]:
    """A reader's page at a desktop's width in light and English, then at a phone's in
    dark and Indonesian."""
    with reader(browser, service, *request.param) as page:
        yield page


def look(page: Page) -> str:
    """The width and theme of `page`, for its screenshots' names."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    return f"{width}-{'dark' if dark else 'light'}"


def test_attachments_show_a_picture_a_pdf_page_and_the_first_lines_of_a_log(
    looking: Page, service: RunningService
) -> None:
    page = looking
    page.goto(f"{base(service)}/messages/{FILES}")
    cards = page.locator("ul.attachments > li")
    assert cards.count() == 3
    for kind in ("png", "pdf"):
        image = page.locator(f'ul.attachments > li:has-text(".{kind}") img.preview')
        eventually(
            lambda image=image: image.evaluate("i => i.complete && i.naturalWidth > 0"),
            what=f"the {kind} preview to show",
        )
    text = page.locator("ul.attachments pre.preview").inner_text()
    assert LOG_LINES[0] in text and LOG_LINES[39] in text and LOG_LINES[40] not in text
    for card in range(3):
        assert cards.nth(card).locator("a[download]").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, f"attachments-{look(page)}")


def test_the_html_frame_grows_to_a_long_mail(looking: Page, service: RunningService) -> None:
    page = looking
    page.goto(f"{base(service)}/messages/{NEWSLETTER}")
    frame = page.locator("iframe.html-frame")
    eventually(lambda: frame.evaluate("f => f.clientHeight") > 2 * FIXED_FRAME,
               what="the frame to fit its mail")  # fmt: skip
    inside = page.frame(name="html-body")
    assert inside is not None and "Paragraph 119" in inside.inner_text("body")
    # Fitted: the mail's last line is in the frame, with no scroll bar of its own.
    assert inside.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 1")
    screenshot(page, f"html-frame-{look(page)}")


def test_without_scripts_the_frame_keeps_its_height_and_scrolls(
    browser, service: RunningService
) -> None:
    desktop = {"width": 1280, "height": 900}
    context = LoopbackOnly(browser, java_script_enabled=False, viewport=desktop)
    page = context.page()
    log_in(page, service)
    page.goto(f"{base(service)}/messages/{NEWSLETTER}")
    assert page.locator("iframe.html-frame").bounding_box()["height"] == FIXED_FRAME
    context.close()


def test_the_thread_page_marks_the_message_and_leads_up_to_the_results(
    browser, service: RunningService
) -> None:
    with reader(browser, service, 1280, "light", "en-GB") as page:
        page.goto(f"{base(service)}/?q=forecast")
        page.locator("ol.results > li.conversation .thread-link a").click()
        page.wait_for_url(re.compile(r"/threads/"))
        current = page.locator("ol.thread > li.current")
        assert current.count() == 1
        assert page.locator("a[rel=up]").get_attribute("href").startswith("/?q=forecast")
        page.keyboard.press("j")
        assert page.locator("ol.thread > li.current").count() == 1
        page.keyboard.press("o")
        page.wait_for_url(re.compile(r"/messages/"))
        page.keyboard.press("u")
        page.wait_for_url(re.compile(r"/\?q=forecast"))


def test_a_month_of_a_list_groups_its_threads_and_leads_to_the_months_around_it(
    browser, service: RunningService
) -> None:
    context = LoopbackOnly(browser, viewport={"width": 390, "height": 900})
    page = context.page()
    page.goto(f"{base(service)}/lists/{LIST}/2026-02")
    entries = page.locator("ol.results > li")
    assert entries.count() == 1  # "Release notes" and its reply
    assert "2" in entries.first.locator(".badge").inner_text()
    assert page.locator("a[rel=next]").count() == 0  # no mail in March
    page.locator("a[rel=prev]").first.click()
    page.wait_for_url(re.compile(r"/2026-1$|/2026-01$"))
    assert page.locator("ol.results > li").count() == 2
    assert page.locator("a[rel=prev]").count() == 0
    assert page.locator("a[rel=up]").get_attribute("href") == f"/lists/{LIST}/"
    screenshot(page, "list-month-390")
    context.close()


def owned_pages(service: RunningService) -> list[str]:
    """Every page this part of the UI draws, and the public ones around it."""
    with service.core().sessions() as db:
        from sqlalchemy import select

        from archiver.models import Message

        thread = db.scalar(select(Message.thread_id).where(Message.message_id == THREAD[0]))
    return [
        "/",
        "/?q=forecast",
        "/?q=forecast&sort=date",
        "/?q=nothing-matches-this",
        "/login",
        "/lists/",
        f"/lists/{LIST}/",
        f"/lists/{LIST}/2026-02",
        f"/lists/{LIST}/2026-01",
        f"/messages/{THREAD[1]}?from=/?q%3Dforecast",
        f"/messages/{FILES}",
        f"/messages/{NEWSLETTER}",
        f"/messages/{reading_mail.LONG}",
        f"/threads/{thread}?message={THREAD[1]}",
    ]


# The pages of administrators, auditors and list owners.
ADMIN_PAGES = [
    "/account",
    "/admin/",
    "/admin/accounts",
    "/admin/lists/new",
    "/admin/retention",
    "/admin/holds",
    "/audit",
    f"/lists/{LIST}/held",
    f"/lists/{LIST}/members",
    f"/lists/{LIST}/settings",
]


@pytest.mark.parametrize("width", [390, 360])
def test_no_page_scrolls_sideways_on_a_phone(browser, service: RunningService, width: int) -> None:
    wide = []
    with reader(browser, service, width, "dark", "id-ID") as page:
        wide += _too_wide(page, service, owned_pages(service), width)
        screenshot(page, f"thread-{width}")
    context = LoopbackOnly(browser, viewport={"width": width, "height": 900}, locale="id-ID")
    page = context.page()
    log_in(page, service, ADMIN)
    wide += _too_wide(page, service, ADMIN_PAGES, width)
    context.close()
    assert wide == []


def _too_wide(page: Page, service: RunningService, paths: list[str], width: int) -> list[str]:
    """The pages among `paths` wider than the window (a screenshot of each)."""
    wide = []
    for path in paths:
        page.goto(base(service) + path)
        if not page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"):
            wide.append(path)
            screenshot(page, f"too-wide-{width}-" + re.sub(r"\W+", "-", path).strip("-"))
    return wide


AXE = Path(__file__).parent / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
# Each violation's rule, impact and where it was found.
AXE_RUN = """async () => (await axe.run(document, {iframes: false})).violations.map(
  (v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" "))}))"""
# The impacts that fail the check; "moderate" and "minor" findings are left to judgement.
BLOCKING = {"serious", "critical"}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_page_has_a_serious_accessibility_fault(
    browser, service: RunningService, scheme: str
) -> None:
    if not AXE.exists():
        missing("axe-core is not installed (tests/ensure-axe.sh, which make test runs)")
    # axe is injected as an inline script, which the pages' policy rightly refuses.
    context = LoopbackOnly(browser, bypass_csp=True, color_scheme=scheme,
                           viewport={"width": 1280, "height": 900})  # fmt: skip
    page = context.page()
    found: dict[str, list[str]] = {}
    for who, paths in (
        ("visitor", ["/", "/login", "/lists/"]),
        (USER, owned_pages(service)),
        (ADMIN, ADMIN_PAGES),
    ):
        if who != "visitor":
            log_in(page, service, who)
        for path in paths:
            page.goto(base(service) + path)
            page.add_script_tag(path=str(AXE))
            # The mail inside a message's frame is the sender's, not the page's.
            violations = page.evaluate(AXE_RUN)
            serious = [
                f"{v['id']} ({v['impact']}): {', '.join(v['nodes'][:3])}"
                for v in violations
                if v["impact"] in BLOCKING
            ]
            if serious:
                found[f"{who} {path}"] = serious
    assert found == {}
    context.close()
