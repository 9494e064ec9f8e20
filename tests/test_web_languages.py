"""The web UI in English and in Bahasa Indonesia: every string is marked and translated,
the catalogue that ships is the one translators wrote, and each reader gets the language
they asked for (account, browser, service default), with dates, numbers and plurals to
match."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from io import BytesIO

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, nodes

from tests.support import ROOT

# Templates another change is rewriting; their strings are marked once it has landed.
NOT_YET_MARKED = {"retention.html", "holds.html"}
# Words a page shows as they are in every language.
UNTRANSLATED_WORDS = {"Arsip", "UTC"}
# Attributes whose text people read (or hear, from a screen reader).
READ_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "label"}
# Where the gettext calls are: Babel's usual names and the module-level lazy_gettext (the
# Makefile's `translations` target extracts with the same).
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
PACKAGES = ("web", "lists")
TEMPLATES = ROOT / "web" / "templates"

PASSWORD = "correct horse battery staple"
ALICE = "alice@example.com"
BOB = "bob@example.com"
OWNER = "owner@example.com"
LIST = "dev@lists.example.com"


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
    return sorted(p.name for p in TEMPLATES.glob("*.html") if p.name not in NOT_YET_MARKED)


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
