"""normalize_question: the one rule by which every front end turns typed text into a question."""

from __future__ import annotations

import unicodedata
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.search.question import (
    EMPTY_QUESTION,
    MAX_QUESTION_CHARS,
    EmptyQuestionError,
    clipped_notice,
    normalize_question,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji made of three joined by ZWJ


@pytest.mark.parametrize(
    ("typed", "asked"),
    [
        ("  Why do defectors return?  ", "Why do defectors return?"),
        ("Why do\r\ndefectors\treturn?\r", "Why do defectors return?"),
        ("Why\x00 do de\x07fectors return?", "Why do defectors return?"),
        ("\x1b[31mWhy\x1b[0m do \x1b]0;title\x07defectors return?", "Why do defectors return?"),
        ("Why\u200b do\ufeff defec\u00adtors\u2060 return?", "Why do defectors return?"),
        ("\u202eWhy do defectors return?\u202c\u200f", "Why do defectors return?"),
        ("Why do defectors return?\udcff", "Why do defectors return?"),  # undecodable byte in argv
        ("Why do defectors return\u2028\u3000\u00a0?", "Why do defectors return ?"),
        ("탈북민은 왜 북한으로 돌아가나요?", "탈북민은 왜 북한으로 돌아가나요?"),
        ("لماذا يعود المنشقون إلى كوريا الشمالية؟", "لماذا يعود المنشقون إلى كوريا الشمالية؟"),
        (f"Do families {FAMILY} reunite? 🙂", f"Do families {FAMILY} reunite? 🙂"),
        ("<script>alert(1)</script> **bold** [link](x)", "<script>alert(1)</script> **bold** [link](x)"),
        (unicodedata.normalize("NFD", "Was Séoul's café named?"), "Was Séoul's café named?"),
    ],
)
def test_typed_text_becomes_the_question(typed: str, asked: str) -> None:
    question = normalize_question(typed)
    assert question.text == asked
    assert not question.clipped and clipped_notice(question) == ""


@pytest.mark.parametrize("typed", ["", "   ", "\r\n\t", "\x00", "\u200b\ufeff", "\x1b[0m\x1b[2J", "\u202e\u202c"])
def test_nothing_to_ask_is_refused_with_one_message(typed: str) -> None:
    with pytest.raises(EmptyQuestionError) as caught:
        normalize_question(typed)
    assert str(caught.value) == EMPTY_QUESTION


def test_a_long_question_is_cut_at_a_word_with_a_notice() -> None:
    typed = "why do defectors return " * 5_000  # 120,000 characters
    question = normalize_question(typed)
    assert question.clipped and question.typed_chars == len(typed)
    assert MAX_QUESTION_CHARS * 0.9 < len(question.text) <= MAX_QUESTION_CHARS
    assert typed.startswith(question.text + " ")  # whole words only
    assert clipped_notice(question) == (
        f"Your question was {len(typed):,} characters long; only the first {len(question.text):,} were used."
    )


def test_a_long_question_without_spaces_is_cut_at_the_limit() -> None:
    question = normalize_question("北" * 100_000)
    assert question.clipped and question.text == "北" * MAX_QUESTION_CHARS


def test_a_cut_question_never_ends_in_a_space() -> None:
    # Found by the property below: a cut that fell just after a space kept it.
    with mock.patch("qa.search.question.MAX_QUESTION_CHARS", 5):
        assert normalize_question("0000 0").text == "0000"


def test_spaces_do_not_count_toward_the_limit() -> None:
    typed = "word\r\n\t " * 400  # 3,200 characters typed, 1,999 once whitespace is single spaces
    question = normalize_question(typed)
    assert len(typed) > MAX_QUESTION_CHARS
    assert not question.clipped and question.text == " ".join(["word"] * 400)


typed_text = st.lists(
    st.text(st.characters(codec="utf-8"), max_size=60)
    | st.sampled_from(["\x1b[1m", "\x1b]0;t\x07", "\u200b", "\ufeff", "\r\n", "\u202e", "\udcff", " ", "\t"]),
    max_size=120,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(typed=typed_text, limit=st.sampled_from([5, 40, MAX_QUESTION_CHARS]))
def test_any_text_gives_a_clean_question_or_the_empty_error(typed: str, limit: int) -> None:
    with (
        mock.patch("qa.search.question.MAX_QUESTION_CHARS", 10**9),
        mock.patch("qa.search.question._CONSIDERED_CHARS", 10**9),
    ):
        try:
            whole = normalize_question(typed).text
        except EmptyQuestionError:
            whole = ""
    with mock.patch("qa.search.question.MAX_QUESTION_CHARS", limit):
        if not whole:
            with pytest.raises(EmptyQuestionError):
                normalize_question(typed)
            return
        question = normalize_question(typed)
        again = normalize_question(question.text)
    text = question.text
    assert 0 < len(text) <= limit
    assert text == " ".join(text.split())  # single spaces only, none at the ends
    assert not any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u200b\ufeff\u202e" for c in text)
    assert (again.text, again.clipped) == (text, False)  # a normalised question stays as it is
    assert question.clipped == (len(whole) > limit)
    assert whole == text if not question.clipped else whole.startswith(text)
