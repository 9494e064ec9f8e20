"""An administrator's and a moderator's journeys in headless Chromium, against a running
`arsip serve` whose outgoing mail lands in a test smarthost."""

from __future__ import annotations

import email
import os
import re
from email.message import EmailMessage
from email.policy import default

from playwright.sync_api import Page

from tests.browser import LoopbackOnly, screenshot
from tests.support import JOURNAL, LIST_DOMAIN, RunningService, SmarthostSink, write_mbox
from tests.test_browser import subprocess_input
from tests.test_lists import post, send

ADMIN = "root@example.org"
ADMIN_PASSWORD = "administrator passphrase"
NEWCOMER = "nina@example.org"
LIST = f"team@{LIST_DOMAIN}"
NARROW = {"viewport": {"width": 390, "height": 844}}


def log_in(page: Page, base: str, who: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=email]", who)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")


def reset_link(mail: bytes) -> str:
    body = email.message_from_bytes(mail, policy=default).get_body().get_content()  # type: ignore[union-attr]
    found = re.search(r"http://127\.0\.0\.1:\d+/account/reset-password/\S+", body)
    assert found, body
    return found.group(0)


def fits(page: Page) -> bool:
    """Whether the page needs no sideways scrolling (wide tables scroll in their box)."""
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def a_big_scan() -> bytes:
    scan = EmailMessage()
    scan["From"], scan["To"], scan["Subject"] = "a@example.com", "b@example.com", "Scan"
    scan["Message-ID"] = "<scan@example.com>"
    scan.set_content("The scan.")
    scan.add_attachment(os.urandom(1_500_000), maintype="application", subtype="octet-stream")
    return scan.as_bytes()


def test_an_admin_runs_lists_and_accounts_and_a_newcomer_sets_a_password_by_mail(
    make_service, browser, loopback_browser
) -> None:
    with SmarthostSink() as sink:
        service: RunningService = make_service(ARSIP_SMARTHOST=sink.address)
        added = subprocess_input(
            service, ["users", "add", ADMIN, "--role", "admin"], ADMIN_PASSWORD
        )
        assert added.returncode == 0, added.stderr
        with service.smtp() as client:
            client.sendmail("a@example.com", [JOURNAL], a_big_scan())
        service.wait_until_found("")
        base = f"http://127.0.0.1:{service.settings.web_port}"
        page = loopback_browser.page()
        log_in(page, base, ADMIN, ADMIN_PASSWORD)

        # The dashboard, in words and sizes people read.
        page.goto(f"{base}/admin/")
        storage = page.inner_text(".figure:has-text('Storage used')")
        assert re.search(r"\d\.\d MB", storage) and "as received" in storage
        screenshot(page, "admin-dashboard")

        # The only administrator cannot stop being one.
        page.click("main >> text=Accounts")
        page.click(f"main >> text={ADMIN}")
        page.select_option("main select[name=role]", "user")
        page.click("main >> text=Change the role")
        assert "last enabled administrator" in page.inner_text("main")

        # A list, made in the browser.
        page.goto(f"{base}/admin/lists/new")
        page.fill("input[name=address]", LIST)
        page.fill("textarea[name=owners]", ADMIN)
        page.select_option("select[name=archive]", "private")
        page.click("main >> text=Create the list")
        assert f"Created the list {LIST}." in page.inner_text("main")
        assert "private" in service.run_cli("lists", "show", LIST, check=True).stdout

        # A new account, whose owner sets the password through the mailed link.
        page.goto(f"{base}/admin/accounts")
        page.fill("input[name=email]", NEWCOMER)
        page.click("main >> text=Make the account")
        assert f"{NEWCOMER} gets a mail with a link" in page.inner_text("main")
        screenshot(page, "admin-account")
        (mail,) = sink.wait_for(NEWCOMER)
        newcomer = LoopbackOnly(browser)
        try:
            own = newcomer.page()
            own.goto(reset_link(mail))
            own.fill("input[name=password]", "first password")
            own.fill("input[name=repeat]", "first password")
            own.click("main button[type=submit]")
            assert "Your password is set." in own.inner_text("main")

            # Forgotten at once: the login page's link mails a new one.
            own.click("main >> text=Forgot your password?")
            own.fill("input[name=email]", NEWCOMER)
            own.click("main button[type=submit]")
            assert "we have mailed it a link" in own.inner_text("main")
            second = sink.wait_for(NEWCOMER, count=2)[-1]
            own.goto(reset_link(second))
            own.fill("input[name=password]", "second password")
            own.fill("input[name=repeat]", "second password")
            own.click("main button[type=submit]")
            log_in(own, base, NEWCOMER, "second password")
            token = service.run_cli("users", "token", NEWCOMER, check=True).stdout.strip()
            assert token
            own.goto(f"{base}/account")
            own.click("main #tokens ~ div button:has-text('Revoke')")
            assert "is revoked" in own.inner_text("main")
            tokens = service.run_cli("users", "tokens", NEWCOMER, "--json", check=True).stdout
            assert tokens.strip() == "[]"
        finally:
            newcomer.close()

        # The newcomer becomes an administrator.
        page.goto(f"{base}/admin/accounts")
        page.click(f"main >> text={NEWCOMER}")
        page.select_option("main select[name=role]", "admin")
        page.click("main >> text=Change the role")
        assert "The role is now administrator." in page.inner_text("main")

        # Deleting the list, purging its archive except what a legal hold keeps.
        mbox = service.settings.data_dir.parent / "team.mbox"
        # Filed into the list as its own posts are: with its List-Id.
        header = {"List_Id": f"<{LIST.replace('@', '.')}>"}
        lunch = post("ann@example.org", LIST, "Lunch", **header)
        contract = post("dave@example.org", LIST, "Contract", **header)
        write_mbox(mbox, [lunch, contract])
        list_id = LIST.replace("@", ".")
        service.run_cli("import", "--list", list_id, str(mbox), check=True)
        service.wait_until_found("", count=3)
        service.run_cli("hold", "add", "--name", "lawsuit", "--reason", "Dave v. Co",
                        "--custodian", "dave@example.org", check=True)  # fmt: skip
        page.goto(f"{base}/admin/")
        page.click(f"main tr:has-text('{LIST}') >> text=Delete")
        asked = page.inner_text("main")
        assert "2 archived messages" in asked, asked
        page.check("input[name=purge]")
        page.fill("input[name=confirm]", LIST)
        page.click("main button:has-text('Delete the list')")
        said = page.inner_text("main")
        assert f"Deleted the list {LIST}." in said and "1 kept under a legal hold." in said
        left = service.run_cli("search", "--json", "", check=True).stdout
        assert "Contract" in left and "Lunch" not in left
        assert loopback_browser.blocked == []


def test_admin_pages_fit_a_phone_in_the_dark(make_service, browser) -> None:
    service: RunningService = make_service()
    added = subprocess_input(service, ["users", "add", ADMIN, "--role", "admin"], ADMIN_PASSWORD)
    assert added.returncode == 0, added.stderr
    service.run_cli("lists", "create", LIST, "--owner", ADMIN, check=True)
    base = f"http://127.0.0.1:{service.settings.web_port}"
    phone = LoopbackOnly(browser, color_scheme="dark", locale="id-ID", **NARROW)
    try:
        page = phone.page()
        log_in(page, base, ADMIN, ADMIN_PASSWORD)
        for path in ("/admin/", "/admin/accounts", "/admin/accounts/1", "/admin/lists/new",
                     f"/admin/lists/{LIST}/delete", f"/lists/{LIST}/held", f"/lists/{LIST}/",
                     "/account", "/account/forgot-password"):  # fmt: skip
            page.goto(f"{base}{path}")
            assert fits(page), path
        page.goto(f"{base}/admin/")
        assert "Pesan diarsipkan" in page.inner_text("main")  # in Bahasa Indonesia
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(21, 24, 29)"  # the dark theme
        screenshot(page, "admin-dashboard-phone-dark")
    finally:
        phone.close()


HELD = (
    "From: stranger@example.net\r\nTo: {list}\r\nSubject: Conference offer\r\n"
    "Message-ID: <offer@example.net>\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nEarly-bird seats until Friday.\r\n"
    '--b1\r\nContent-Type: application/pdf; name="programme.pdf"\r\n'
    'Content-Disposition: attachment; filename="programme.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSVFT0YK\r\n--b1--\r\n"
)


def test_a_moderator_reads_a_held_post_and_its_attachment_then_approves_it(
    make_service, loopback_browser
) -> None:
    with SmarthostSink() as sink:
        service: RunningService = make_service(ARSIP_SMARTHOST=sink.address)
        owner = "owner@example.com"
        password = "owner passphrase of some length"
        assert subprocess_input(service, ["users", "add", owner], password).returncode == 0
        service.run_cli("lists", "create", LIST, "--owner", owner, check=True)
        service.run_cli("lists", "add-member", LIST, "ann@example.org", "--no-confirm", check=True)
        send(service, "stranger@example.net", LIST, HELD.format(list=LIST).encode())
        sink.wait_for(owner)  # the moderation notice

        base = f"http://127.0.0.1:{service.settings.web_port}"
        page = loopback_browser.page()
        log_in(page, base, owner, password)
        page.goto(f"{base}/lists/{LIST}/")
        page.click("main >> text=Held posts")
        held = page.inner_text("main")
        assert "Early-bird seats until Friday." in held and "programme.pdf" in held
        screenshot(page, "held-post-in-view")
        with page.expect_download() as download:
            page.click("main >> text=programme.pdf")
        saved = download.value.path()
        assert saved is not None and saved.read_bytes().startswith(b"%PDF-1.4")
        page.click("main button[value=approve]")
        assert "approved" in page.inner_text("main")
        (delivered,) = sink.wait_for("ann@example.org")
        assert email.message_from_bytes(delivered, policy=default)["Subject"].endswith(
            "Conference offer"
        )
        assert loopback_browser.blocked == []
