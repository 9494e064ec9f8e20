"""The web UI under gunicorn (`web.wsgi:app`) beside an `arsip serve` without the web role.

This is the split the README's "Running on several machines" describes: the service takes
mail in, archives, indexes and delivers; gunicorn's workers serve the pages from the same
database and data directory. On SQLite that is allowed, since gunicorn is not a second
`arsip serve`.
"""

from __future__ import annotations

import email
import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.policy import default
from pathlib import Path

import pytest

from tests.support import (
    JOURNAL,
    LIST_DOMAIN,
    ROOT,
    RunningService,
    SmarthostSink,
    eventually,
    service_env,
    simple_message,
)

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
LIST = f"dev@{LIST_DOMAIN}"
OWNER = "owner@example.com"
ANN = "ann@example.org"
NEWCOMER = "bob@example.net"


@pytest.fixture
def sink() -> Iterator[SmarthostSink]:
    """The smarthost the service's worker delivers list mail to."""
    with SmarthostSink() as running:
        yield running


@pytest.fixture
def service(tmp_path: Path, sink: SmarthostSink) -> Iterator[RunningService]:
    """`arsip serve` on SQLite with every role but the web, and the list dev@ whose only
    member is ann@example.org."""
    env = service_env(tmp_path / "var", ARSIP_SMARTHOST=sink.address)
    running = RunningService(
        env, tmp_path / "serve.log", roles="intake,worker,indexer,scheduler"
    ).start()
    try:
        running.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
        running.run_cli("lists", "add-member", LIST, ANN, "--no-confirm", check=True)
        yield running
    finally:
        running.close()


@pytest.fixture
def web(service: RunningService, tmp_path: Path) -> Iterator[str]:
    """Two gunicorn workers on the service's web port (where ARSIP_BASE_URL points, so
    links in list mail lead to them); yields the base URL."""
    base = f"http://127.0.0.1:{service.settings.web_port}"
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                GUNICORN,
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{service.settings.web_port}",
                "--no-control-socket",  # its default path is shared by every gunicorn
                "web.wsgi:app",
            ],
            env={**os.environ, **service.env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_pages(process, base, log_path)
        yield base
    finally:
        _stop(process)


def _wait_for_pages(process: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    """Wait until gunicorn answers /healthz, or fail with its log."""

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    eventually(answers, what=lambda: f"gunicorn to answer: {log_path.read_text(errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the gunicorn master we started, by its PID (it stops its workers)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Browser:
    """An HTTP client that keeps cookies between requests and follows redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self._opener.open(self._url(path), timeout=30) as response:
            return response.read().decode()

    def post(self, path: str, fields: dict[str, str]) -> str:
        data = urllib.parse.urlencode(fields).encode()
        with self._opener.open(self._url(path), data=data, timeout=30) as response:
            return response.read().decode()

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path


def csrf_field(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def archived_count(page: str) -> int:
    found = re.search(r"Archived messages</td><td[^>]*>(\d+)<", page)
    assert found, page
    return int(found.group(1))


def test_status_page_under_gunicorn_counts_mail_taken_in_by_the_service(
    service: RunningService, web: str
) -> None:
    browser = Browser(web)
    assert archived_count(browser.get("/status")) == 0

    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], simple_message("one@example.com"))
        client.sendmail("alice@example.com", [JOURNAL], simple_message("two@example.com"))
    service.wait_until_archived()

    page = browser.get("/status")
    assert "Arsip is up" in page
    assert archived_count(page) == 2


def test_list_pages_under_gunicorn_show_posts_and_take_subscriptions(
    service: RunningService, web: str, sink: SmarthostSink
) -> None:
    post = simple_message("post-1@example.org", subject="Release planning", sender=ANN, to=LIST)
    with service.smtp() as client:
        client.sendmail(ANN, [LIST], post)
    service.wait_until_archived()
    browser = Browser(web)

    assert LIST in browser.get("/lists/")
    page = browser.get(f"/lists/{LIST}/")
    assert "2026-02" in page, "the post's month is in the list's archive"
    assert "Release planning" in browser.get(f"/lists/{LIST}/2026-02")

    # Joining through the web: the page asks, the service's worker mails the confirmation,
    # and its link leads back to gunicorn.
    answer = browser.post(
        f"/lists/{LIST}/subscribe", {"csrf_token": csrf_field(page), "email": NEWCOMER}
    )
    assert "A confirmation has been sent" in answer
    (mail,) = sink.wait_for(NEWCOMER)
    body = email.message_from_bytes(mail, policy=default).get_body().get_content()
    link = re.search(rf"{re.escape(web)}/lists/confirm/\S+", body)
    assert link, body

    confirm_page = browser.get(link.group(0))
    assert f"Confirm that {NEWCOMER} joins {LIST}" in confirm_page
    done = browser.post(link.group(0), {"csrf_token": csrf_field(confirm_page)})
    assert f"{NEWCOMER} is now a member of {LIST}" in done
    assert NEWCOMER in service.run_cli("lists", "members", LIST, check=True).stdout


def test_the_wsgi_app_knows_the_lists_as_arsip_serve_does(service: RunningService) -> None:
    """`web.wsgi` plugs the list engine into its core, as the built-in web processes do."""
    probe = (
        "import web.wsgi as w; "
        "print(sorted(type(e).__name__ for e in w.core.extensions)); "
        f"print(w.core.policy.check({LIST!r}, journal_source=False).accepted)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **service.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.split("\n")[:2] == ["['ListEngine']", "True"]
