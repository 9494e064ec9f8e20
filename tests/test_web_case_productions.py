"""A case's productions from its page: an administrator starts one, it is written in the
background and listed with its numbers, and a finished one downloads as a `.zip` holding
the load files and a manifest that checks; an interrupted one offers "Resume"; auditors
download but do not start, reviewers only see the list, outsiders not even the case; and
every start and download lands in the audit trail against the case."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.cases.export import export_case
from archiver.core import Core
from archiver.production.models import Production
from tests import test_web_cases
from tests.support import eventually
from tests.test_web_cases import ADMIN, AUDITOR, OUTSIDER, REVIEWER, audited, page
from tests.test_web_retention import browser, post_form
from tests.web_client import foreign_scripts
from web.production_runs import case_folder

CASE = "/cases/acme/"
# The case page's fixtures: mail about a merger and accounts; the case opened by the
# administrator, with its reviewer
app = test_web_cases.app
case = test_web_cases.case


def start(client: FlaskClient, **form: str):
    fields = {"format": "native", "dedupe": "none"} | form
    return post_form(client, CASE, CASE + "productions", **fields)


def finished(client: FlaskClient) -> str:
    """The case page once no production of it is running any more."""

    def settled() -> str | None:
        shown = page(client, CASE)
        return None if 'data-state="running"' in shown else shown

    return eventually(settled, what="the production to finish")


def productions(core: Core) -> list[Production]:
    with core.sessions() as session:
        return list(session.scalars(select(Production).order_by(Production.id)))


def unzipped(client: FlaskClient, production: int) -> zipfile.ZipFile:
    answer = client.get(f"{CASE}productions/{production}.zip")
    assert answer.status_code == 200, answer.status_code
    assert answer.mimetype == "application/zip"
    assert answer.is_streamed
    assert "attachment" in answer.headers["Content-Disposition"]
    return zipfile.ZipFile(io.BytesIO(answer.get_data()))


def test_an_administrator_exports_the_case_and_downloads_it_as_a_zip(
    case: FlaskClient, core: Core
) -> None:
    answer = start(case, prefix="ACME", dedupe="custodian")
    assert answer.status_code == 302 and answer.location.endswith("#case-productions")
    assert "The production has started" in page(case, CASE)
    shown = finished(case)
    assert "ACME0000001" in shown and "finished" in shown and "not timestamped" in shown
    assert foreign_scripts(shown) == []
    (made,) = productions(core)
    assert made.status == "complete" and made.created_by == ADMIN
    assert made.output.startswith(str(case_folder(core, "acme")))

    archive = unzipped(case, made.id)
    top = "case-acme-ACME0000001-ACME0000004"
    names = archive.namelist()
    assert f"{top}/DATA/loadfile.dat" in names and f"{top}/production.json" in names
    assert not any("/." in name for name in names)  # no staging folder, no journal
    loadfile = archive.read(f"{top}/DATA/loadfile.csv").decode("utf-8-sig")
    assert "ACME0000001" in loadfile and "merger draft" in loadfile
    manifest = archive.read(f"{top}/manifest.sha256").decode()
    for line in manifest.splitlines():
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256(archive.read(f"{top}/{name.lstrip('*')}")).hexdigest() == digest

    exports = audited(core, "case.export")
    assert [(actor, target) for actor, _, target, _ in exports] == [(ADMIN, "acme")]
    assert exports[0][3]["production"] == made.id
    (download,) = audited(core, "case.download")
    assert download[0] == ADMIN and download[3]["production"] == made.id


def test_later_productions_keep_the_series_prefix(case: FlaskClient, core: Core) -> None:
    start(case, prefix="ACME")
    shown = finished(case)
    assert "carry on with the prefix ACME" in shown and 'name="prefix"' not in shown
    start(case, prefix="OTHER", format="mbox", dedupe="global")
    shown = finished(case)
    first, second = productions(core)
    assert (second.prefix, second.first_number) == ("ACME", first.last_number + 1)
    assert second.format == "mbox" and second.dedupe == "global"
    assert shown.index(f"ACME000000{second.first_number}") < shown.index("ACME0000001")


def test_bad_choices_are_refused_with_a_reason(case: FlaskClient, core: Core) -> None:
    start(case, prefix="no spaces")
    said = page(case, CASE)
    assert "The prefix no spaces cannot be used" in said
    start(case, format="pdf")
    assert "Choose a format and a de-duplication" in page(case, CASE)
    assert productions(core) == []


def test_an_interrupted_production_is_resumed_from_the_page(
    case: FlaskClient, app: Flask, core: Core
) -> None:
    folder = case_folder(core, "acme") / "2026-03-01-120000"
    folder.parent.mkdir(parents=True)

    def stop_after_one(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), app.app_context():
        backend = core.search_backend()
        try:
            export_case(
                core, backend, "acme", folder, ADMIN, prefix="ACME", progress=stop_after_one
            )
        finally:
            backend.close()
    shown = page(case, CASE)
    assert "interrupted" in shown and "Resume" in shown and "Download .zip" not in shown
    (stopped,) = productions(core)
    answer = post_form(case, CASE, f"{CASE}productions/{stopped.id}/resume")
    assert answer.status_code == 302
    assert "The production carries on" in page(case, CASE)
    finished(case)
    (done,) = productions(core)
    assert done.status == "complete" and done.id == stopped.id
    archive = unzipped(case, done.id)
    assert any(name.endswith("DATA/loadfile.dat") for name in archive.namelist())
    assert post_form(case, CASE, f"{CASE}productions/{done.id}/resume").status_code == 302
    assert "Only an interrupted production can be resumed" in page(case, CASE)


def test_who_may_start_see_and_download_productions(
    case: FlaskClient, app: Flask, core: Core
) -> None:
    start(case)
    finished(case)
    (made,) = productions(core)
    auditor = browser(app, AUDITOR)
    shown = page(auditor, CASE)
    assert "Download .zip" in shown and "Start the production" not in shown
    assert start(auditor).status_code == 403
    assert unzipped(auditor, made.id).namelist()

    reviewer = browser(app, REVIEWER)
    shown = page(reviewer, CASE)
    assert "ARSIP0000001" in shown and "Download .zip" not in shown
    assert "Start the production" not in shown
    assert reviewer.get(f"{CASE}productions/{made.id}.zip").status_code == 403
    assert start(reviewer).status_code == 403
    assert post_form(reviewer, CASE, f"{CASE}productions/{made.id}/resume").status_code == 403

    outsider = browser(app, OUTSIDER)
    assert outsider.get(f"{CASE}productions/{made.id}.zip").status_code == 404
    assert outsider.get(f"{CASE}productions.json").status_code == 404
    assert case.get(f"{CASE}productions/{made.id + 1}.zip").status_code == 404
    downloads = [actor for actor, *_ in audited(core, "case.download")]
    assert downloads == [AUDITOR]


def test_starting_without_the_csrf_token_is_refused(case: FlaskClient, core: Core) -> None:
    assert case.post(CASE + "productions", data={"format": "native"}).status_code == 400
    assert case.post(CASE + "productions/1/resume").status_code == 400
    assert productions(core) == []


def test_the_progress_endpoint_says_how_each_production_stands(
    case: FlaskClient, core: Core
) -> None:
    start(case)
    finished(case)
    (item,) = case.get(CASE + "productions.json").get_json()
    assert item["state"] == "finished" and item["progress"] == ""
    assert re.fullmatch(r"\d+", str(item["id"]))
