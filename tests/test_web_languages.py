"""The web UI in English and in Bahasa Indonesia: every string is marked and translated,
the catalogue that ships is the one translators wrote, and each reader gets the language
they asked for (account, browser, service default), with dates, numbers and plurals to
match."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from io import BytesIO

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from jinja2 import Environment, nodes
from sqlalchemy import select

import web.search
from archiver.accounts import User, add_user
from archiver.core import Core, build_core
from archiver.search.indexer import Indexer
from tests.browser import LoopbackOnly, screenshot
from tests.support import JOURNAL, ROOT
from tests.test_accounts import csrf_field, log_in
from tests.test_browser import REPLY_IN_RESULTS, subprocess_input, thread_of_two
from tests.test_search import ALICE, BOB, message, sample_copies
from web import create_app

# Words a page shows as they are in every language.
UNTRANSLATED_WORDS = {"Arsip", "UTC"}
# Attributes whose text people read (or hear, from a screen reader).
READ_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "label"}
# Where the gettext calls are: Babel's usual names, the web's module-level lazy_gettext and
# the texts the core and the list engine say later (lazy_gettext, lazy_ngettext); the
# Makefile's `translations` target extracts with the same.
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "lazy_ngettext": (1, 2)}
# Every package with a catalogue: the core, the list engine, the web.
PACKAGES = ("archiver", "lists", "web")
TEMPLATES = ROOT / "web" / "templates"

PASSWORD = "correct horse battery staple"


def catalogue(package: str):
    return read_po((ROOT / package / "translations/id/LC_MESSAGES/messages.po").open("rb"))


def marked_strings(package: str) -> set[str]:
    """Every string marked for translation in `package`, found as `make translations`
    finds them."""
    method_map, options_map = parse_mapping_cfg((ROOT / "babel.cfg").open())
    found = extract_from_dir(str(ROOT / package), method_map, options_map, KEYWORDS)
    return {msgid if isinstance(msgid, str) else msgid[0] for _, _, msgid, _, _ in found}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_marked_string_has_an_indonesian_translation(package: str) -> None:
    po = catalogue(package)
    entries = {entry.id if isinstance(entry.id, str) else entry.id[0]: entry for entry in po}
    missing = sorted(marked_strings(package) - set(entries))
    assert not missing, f"run `make translations` and translate: {missing}"
    untranslated = [
        entry.id for entry in po if entry.id and (entry.fuzzy or not all(_forms(entry.string)))
    ]
    assert not untranslated, f"translate these in {package}'s messages.po: {untranslated}"
    problems = [(entry.id, errors) for entry, errors in po.check()]
    assert not problems, f"placeholders differ from the English: {problems}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_committed_catalogue_is_the_compiled_translation(package: str) -> None:
    compiled = BytesIO()
    write_mo(compiled, catalogue(package))
    compiled.seek(0)
    committed = (ROOT / package / "translations/id/LC_MESSAGES/messages.mo").open("rb")

    def messages(mo) -> dict[object, object]:
        return {_key(entry.id): _key(entry.string) for entry in read_mo(mo) if entry.id}

    assert messages(committed) == messages(compiled), "run `make translations` and commit it"


def _forms(string: str | tuple[str, ...]) -> tuple[str, ...]:
    """A translation's forms: one, or one per plural form."""
    return string if isinstance(string, tuple) else (string,)


def _key(value: object) -> object:
    """A catalogue entry's id or string, hashable (plural entries come as lists)."""
    return tuple(value) if isinstance(value, list) else value


# A stand-in for every Jinja tag and expression whose words are not the template's own.
MARK = "\ue000"


def _shown_literals(expression: nodes.Node) -> str:
    """The literal text an expression may print: `"a" if x else "b"`, `x or "c"`. Calls
    (gettext among them) and variables print what they are given, not template text."""
    if isinstance(expression, nodes.Const) and isinstance(expression.value, str):
        return expression.value
    if isinstance(expression, nodes.CondExpr):
        branches = [expression.expr1, expression.expr2]
        return " ".join(_shown_literals(b) for b in branches if b is not None)
    if isinstance(expression, nodes.Or):
        return _shown_literals(expression.left) + " " + _shown_literals(expression.right)
    if isinstance(expression, (nodes.Filter, nodes.Concat)):
        inner = [expression.node] if isinstance(expression, nodes.Filter) else expression.nodes
        return " ".join(_shown_literals(n) for n in inner if n is not None)
    return MARK


def page_skeleton(source: str) -> str:
    """The template's HTML with every tag and expression replaced by MARK, except the
    literal text an expression prints, kept where it stands."""
    parts: list[str] = []

    def walk(node: nodes.Node) -> None:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                is_data = isinstance(child, nodes.TemplateData)
                parts.append(child.data if is_data else _shown_literals(child))
            return
        parts.append(MARK)
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Stmt):  # bodies; tests and arguments are expressions
                walk(child)
                parts.append(MARK)

    walk(Environment(extensions=["jinja2.ext.i18n"]).parse(source))
    return "".join(parts)


class UnmarkedText(HTMLParser):
    """Collects the words of a page skeleton that a reader would see untranslated: text
    between tags and read attributes, outside <style> and elements marked translate="no"
    (the HTML way to say "data, not words": search syntax, action names)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skipping: list[str] = []
        self.found: list[str] = []

    def _check(self, text: str) -> None:
        words = set(re.findall(r"[^\W\d_]+", text.replace(MARK, " "))) - UNTRANSLATED_WORDS
        if words:
            self.found.append(text.replace(MARK, "…").strip())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("style", "script") or values.get("translate") == "no":
            self.skipping.append(tag)
        if not self.skipping:
            for name in READ_ATTRIBUTES & values.keys():
                self._check(values[name] or "")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self._check(data)


def _templates() -> list[str]:
    return sorted(p.name for p in TEMPLATES.glob("*.html"))


@pytest.mark.parametrize("name", _templates())
def test_templates_show_no_text_outside_gettext(name: str) -> None:
    reader = UnmarkedText()
    reader.feed(page_skeleton((TEMPLATES / name).read_text()))
    reader.close()
    assert reader.found == [], f"{name}: wrap these in _() or ngettext()"


def test_the_template_check_finds_unmarked_text() -> None:
    """The check above would notice a forgotten string, in text, attributes and literals."""
    for source in (
        "<p>Hello {{ name }}</p>",
        '<input placeholder="Search mail">',
        '{{ "verified" if ok else _("not yet") }}',
        '<a href="/">{{ subject or "(no subject)" }}</a>',
        "{% if x %}<b>Log in</b>{% endif %}",
    ):
        reader = UnmarkedText()
        reader.feed(page_skeleton(source))
        assert reader.found, source
    for source in (
        '<p>{{ _("Hello %(name)s", name=name) }} · Arsip</p>',
        '<dt translate="no">from:alice@example.com</dt><style>p { color: red }</style>',
        '<option value="{{ v }}"{% if v == c %} selected{% endif %}>{{ label }}</option>',
    ):
        reader = UnmarkedText()
        reader.feed(page_skeleton(source))
        assert reader.found == [], source


# A December and a May message to alice (Indonesian writes those months Des and Mei), and a
# long one so that the archive's byte counts need a thousands separator.
DECEMBER = message(
    "december@example.com",
    "Year-end figures",
    "The figures for the year.",
    sender=BOB,
    to=ALICE,
    date="Mon, 07 Dec 2026 14:05:00 +0000",
)
MAY = message(
    "may@example.com",
    "Spring figures",
    "The figures for spring. " + "More figures. " * 200,
    sender=BOB,
    to=ALICE,
    date="Thu, 07 May 2026 09:30:00 +0000",
)
INDONESIAN = {"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-GB,en;q=0.9"}


@contextmanager
def serving(core: Core) -> Iterator[Flask]:
    """The web UI over `core`, with the two messages archived and indexed and alice's
    account; its search backend is closed afterwards."""
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, sample_copies([DECEMBER, MAY], datetime.now(UTC)))
        add_user(session, ALICE, "user", PASSWORD)
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    backend.close()
    app = create_app(core)
    try:
        yield app
    finally:
        app.extensions[web.search.BACKEND_KEY].close()


@pytest.fixture
def client(core: Core) -> Iterator[FlaskClient]:
    """A browser on the web UI of `serving`."""
    with serving(core) as app:
        yield app.test_client()


def page(client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> str:
    """The page's text, its markup's entities read as a browser reads them."""
    return html.unescape(client.get(path, headers=headers or {}).get_data(as_text=True))


def language_of(text: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', text)
    assert found, "the page has no <html lang>"
    return found.group(1)


def logged_in(client: FlaskClient, headers: dict[str, str]) -> FlaskClient:
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = headers["Accept-Language"]
    assert log_in(client, ALICE, PASSWORD).status_code == 302
    return client


def test_a_browser_asking_for_indonesian_gets_indonesian_pages(client: FlaskClient) -> None:
    home = page(client, "/", INDONESIAN)
    assert language_of(home) == "id"
    assert "Cara mencari" in home and "Cari di arsip" in home and "How to search" not in home
    # The explanations are translated, the query language is not.
    assert "kecualikan pesan yang memuat suatu kata" in home
    assert "from:alice@example.com" in home and "has:attachment" in home
    login = page(client, "/login", INDONESIAN)
    assert language_of(login) == "id"
    assert "<h1>Masuk</h1>" in login and "Kata sandi" in login
    missing = client.get("/no-such-page", headers=INDONESIAN)
    assert missing.status_code == 404
    assert "Tidak Ditemukan" in missing.get_data(as_text=True)


@pytest.mark.parametrize("asked", [None, "en-US,en;q=0.9", "fr-FR,fr;q=0.9"])
def test_english_is_for_browsers_asking_for_english_or_for_nothing_arsip_has(
    client: FlaskClient, asked: str | None
) -> None:
    home = page(client, "/", {"Accept-Language": asked} if asked else {})
    assert language_of(home) == "en"
    assert "How to search" in home and "Cara mencari" not in home
    assert "Not Found" in page(client, "/no-such-page", {"Accept-Language": asked or ""})


def test_the_service_default_language_is_for_browsers_asking_for_neither(core: Core) -> None:
    indonesian_core = build_core(replace(core.settings, default_language="id"))
    try:
        with serving(indonesian_core) as app:
            client = app.test_client()
            for asked in ({}, {"Accept-Language": "fr-FR,fr;q=0.9"}):
                home = page(client, "/", asked)
                assert language_of(home) == "id" and "Cara mencari" in home
            assert language_of(page(client, "/", ENGLISH)) == "en"
    finally:
        indonesian_core.engine.dispose()


def test_an_accounts_chosen_language_wins_over_the_browsers(
    client: FlaskClient, core: Core
) -> None:
    alice = logged_in(client, ENGLISH)
    account = page(alice, "/account")
    assert '<option value="" selected>Browser\'s language</option>' in account
    token = csrf_field(account)
    chosen = alice.post("/account/language", data={"csrf_token": token, "language": "id"})
    assert chosen.status_code == 302
    with core.sessions() as session:
        assert session.scalars(select(User.language).where(User.email == ALICE)).one() == "id"
    # The browser still asks for English; the account's choice wins, on every page.
    account = page(alice, "/account")
    assert language_of(account) == "id"
    assert "Halaman kini ditampilkan dalam Bahasa Indonesia." in account
    assert '<option value="id" lang="id" selected>Bahasa Indonesia</option>' in account
    assert "Cara mencari" in page(alice, "/")
    back = alice.post("/account/language", data={"csrf_token": token, "language": ""})
    assert back.status_code == 302
    account = page(alice, "/account")
    assert language_of(account) == "en"
    assert "The pages now follow your browser's language." in account
    with core.sessions() as session:
        assert session.scalars(select(User.language).where(User.email == ALICE)).one() is None
    refused = alice.post("/account/language", data={"csrf_token": token, "language": "fr"})
    assert refused.status_code == 400


def test_dates_on_a_message_page_are_written_in_the_readers_language(
    client: FlaskClient,
) -> None:
    alice = logged_in(client, INDONESIAN)
    december = page(alice, "/messages/december@example.com")
    assert "7 Des 2026 14:05 UTC" in december and "Tanggal" in december
    assert 'datetime="2026-12-07T14:05:00' in december  # for machines, as it was
    assert "7 Mei 2026 09:30 UTC" in page(alice, "/messages/may@example.com")
    alice.environ_base["HTTP_ACCEPT_LANGUAGE"] = ENGLISH["Accept-Language"]
    december = page(alice, "/messages/december@example.com")
    assert "7 Dec 2026 14:05 UTC" in december and "Date" in december
    assert "7 May 2026 09:30 UTC" in page(alice, "/messages/may@example.com")


def test_counts_are_singular_or_plural_and_numbers_grouped_as_each_language_does(
    client: FlaskClient,
) -> None:
    alice = logged_in(client, ENGLISH)
    assert "<strong>1 message</strong>" in page(alice, "/?q=year-end")
    assert "<strong>2 messages</strong>" in page(alice, "/?q=figures")
    alice.environ_base["HTTP_ACCEPT_LANGUAGE"] = INDONESIAN["Accept-Language"]
    assert "<strong>1 pesan</strong>" in page(alice, "/?q=year-end")
    assert "<strong>2 pesan</strong>" in page(alice, "/?q=figures")
    # Over a thousand original bytes: 3,142 in English is 3.142 in Bahasa Indonesia.
    original = r"<td>{}</td><td class=\"n\">(\d+)([.,])(\d{{3}})</td>"
    english = re.search(original.format("Original bytes"), page(client, "/status", ENGLISH))
    indonesian = re.search(original.format("Byte asli"), page(client, "/status", INDONESIAN))
    assert english and indonesian
    assert english.group(2) == "," and indonesian.group(2) == "."
    assert english.group(1, 3) == indonesian.group(1, 3)


def test_an_indonesian_browser_logs_in_searches_and_reads_in_indonesian(
    make_service, browser
) -> None:
    service = make_service()
    added = subprocess_input(service, ["users", "add", "alice@example.com"], PASSWORD)
    assert added.returncode == 0, added.stderr
    with service.smtp() as client:
        for data in thread_of_two():
            client.sendmail("sender@example.net", [JOURNAL], data)
    service.wait_until_found("", count=2)

    context = LoopbackOnly(browser, locale="id-ID")  # Accept-Language: id-ID
    try:
        base = f"http://127.0.0.1:{service.settings.web_port}"
        page = context.page()
        page.goto(f"{base}/login")
        assert page.get_attribute("html", "lang") == "id"
        assert page.inner_text("main h1") == "Masuk"
        page.fill("input[name=email]", "alice@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("main button[type=submit]")
        assert page.inner_text("header button[type=submit]") == "Cari"
        page.fill("header input[name=q]", '"quarterly forecast"')
        page.click("header button[type=submit]")
        results = page.inner_text("main")
        assert "2 pesan" in results and "Urutkan menurut:" in results
        screenshot(page, "search-indonesian")
        # The two messages are one conversation: the reply is its entry or one of its
        # other matches, whichever ranks first.
        page.locator(REPLY_IN_RESULTS).first.click()
        message = page.inner_text("main")
        assert "Agreed." in message and "Tanggal" in message and "Utas" in message
        assert "2 Feb 2026 11:00 UTC" in message
        page.click("header .menu summary")
        assert page.inner_text("header .menu button") == "Keluar"
        screenshot(page, "message-indonesian")
        assert context.blocked == []
    finally:
        context.close()
