"""Snippets show the words that matched, safely, whatever the message contains."""

from __future__ import annotations

from archiver.search.service import folded as fold
from archiver.search.snippets import WIDTH, snippet


def test_the_excerpt_is_around_the_first_match_with_every_form_marked() -> None:
    text = "Intro words here. " * 50 + "The <b>Forecasting</b> meeting & the forecast." + " x" * 300
    result = snippet(text, ["forecast"], fold)
    assert result.startswith("…") and result.endswith("…")
    assert "<mark>Forecasting</mark>" in result and "<mark>forecast</mark>" in result
    assert "&lt;b&gt;" in result and "&amp;" in result and "<b>" not in result
    assert len(result) < WIDTH * 2


def test_without_a_match_the_snippet_is_the_start_of_the_text() -> None:
    assert snippet("Lunch at noon <script>", ["forecast"], fold) == "Lunch at noon &lt;script&gt;"
    assert snippet("", ["forecast"], fold) == ""


def test_every_form_that_folds_to_the_query_stem_is_marked() -> None:
    text = "Ideas: Café culture, the CAFES nearby, a dying art and possibilities galore."
    result = snippet(text, ["cafe", "die", "possibility"], fold)
    for word in ("Café", "CAFES", "possibilities"):
        assert f"<mark>{word}</mark>" in result
    # Snowball's irregular stems: the query word's own start finds them.
    assert "<mark>dying</mark>" in snippet(text, ["dying"], fold)


def test_query_words_with_regex_characters_are_plain_text() -> None:
    assert snippet("the (draft) plan", ["(draft*"], fold) == "the (<mark>draft</mark>) plan"
