"""An administrator's journey in headless Chromium: open a case's page on a running
`arsip serve`, export a production, watch the page follow it until it has finished (the
page's script reloads it), and download it as a `.zip` holding the load files and the
manifest."""

from __future__ import annotations

import zipfile
from email.message import EmailMessage

from tests.support import JOURNAL, RunningService, eventually, run_arsip
from tests.test_browser import subprocess_input
from tests.test_browser_admin import ADMIN, ADMIN_PASSWORD, log_in

CUSTODIAN = "carol@example.com"


def merger_mail(number: int) -> bytes:
    message = EmailMessage()
    message["From"], message["To"] = CUSTODIAN, "bob@example.com"
    message["Subject"] = f"merger terms, draft {number}"
    message["Message-ID"] = f"<draft-{number}@example.com>"
    message.set_content(f"Draft {number} of the merger terms.")
    return message.as_bytes()


def test_an_administrator_exports_a_case_and_downloads_the_zip(
    make_service, loopback_browser
) -> None:
    service: RunningService = make_service()
    added = subprocess_input(service, ["users", "add", ADMIN, "--role", "admin"], ADMIN_PASSWORD)
    assert added.returncode == 0, added.stderr
    with service.smtp() as client:
        for number in range(1, 4):
            client.sendmail(CUSTODIAN, [JOURNAL], merger_mail(number))
    service.wait_until_found("merger", count=3)
    made = run_arsip(
        service.settings, "case", "create", "acme", "--custodian", CUSTODIAN, "--query", "merger"
    )
    assert made.returncode == 0, made.stderr

    base = f"http://127.0.0.1:{service.settings.web_port}"
    page = loopback_browser.page()
    log_in(page, base, ADMIN, ADMIN_PASSWORD)
    page.goto(f"{base}/cases/acme/")
    assert "No productions yet" in page.inner_text("#case-productions")
    page.fill("#case-productions input[name=prefix]", "ACME")
    page.select_option("#case-productions select[name=dedupe]", "custodian")
    page.click("#case-productions >> text=Start the production")
    assert "The production has started" in page.inner_text("main")

    finished = page.locator('#case-productions tr[data-state="finished"]')
    eventually(lambda: finished.count() == 1, what=lambda: page.inner_text("#case-productions"))
    row = finished.inner_text()
    assert "ACME0000001" in row and "ACME0000003" in row and "not timestamped" in row
    with page.expect_download() as download:
        page.click("#case-productions >> text=Download .zip")
    assert download.value.suggested_filename == "case-acme-ACME0000001-ACME0000003.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
        top = "case-acme-ACME0000001-ACME0000003"
        assert f"{top}/DATA/loadfile.dat" in names and f"{top}/manifest.sha256" in names
        assert "merger terms, draft 2" in archive.read(f"{top}/DATA/loadfile.csv").decode()
    assert loopback_browser.blocked == []
