"""Behavioural tests for sentence and passage splitting."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CORPUS
from qa.ingest.corpus import load_documents
from qa.ingest.split import (
    approximate_token_count,
    passage_id,
    split_passages,
    split_sentences,
)
from qa.records import Document, Passage


def count_words(text: str) -> int:
    return len(text.split())


def make_document(*paragraphs: str, doc_id: str = "doc") -> Document:
    return Document(
        doc_id=doc_id,
        source=f"{doc_id}.txt",
        paragraphs=paragraphs,
        title="A Title",
        outlet="The Outlet",
        author="A. Writer",
        date="2024-01-02",
        url="https://example.org/a",
    )


def sentences_of(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def words(count: int, stem: str = "word") -> str:
    """Return ``count`` distinct lowercase words, without punctuation."""
    return " ".join(f"{stem}{index}" for index in range(count))


def sentence(count: int, stem: str = "word") -> str:
    """Return a sentence of exactly ``count`` words."""
    return f"{capitalized(words(count, stem))}."


def body(count: int = 20, stem: str = "word") -> str:
    """Return a paragraph long enough to stand alone under the default ``min_words``."""
    return sentence(count, stem)


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]  # str.capitalize would lowercase "U.S."


def non_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def assert_offsets_hold(document: Document, passages: list[Passage]) -> None:
    text = document.text
    previous_end = 0
    for passage in passages:
        assert passage.text == text[passage.start : passage.end]
        assert passage.text
        assert passage.text == passage.text.strip()
        assert passage.start >= previous_end
        assert text[previous_end : passage.start].strip() == ""
        previous_end = passage.end
    assert text[previous_end:].strip() == ""


# --- split_sentences -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith met Dr. Jones. They talked.",
            ["Mr. Smith met Dr. Jones.", "They talked."],
        ),
        (
            "Kim J. Lee arrived late. He sat down.",
            ["Kim J. Lee arrived late.", "He sat down."],
        ),
        (
            "Growth was 3.5 percent in 2023. Prices rose 2.1 percent.",
            ["Growth was 3.5 percent in 2023.", "Prices rose 2.1 percent."],
        ),
        ("Really?! Yes. No way!", ["Really?!", "Yes.", "No way!"]),
        (
            'He said, "Stop." Then he left.',
            ['He said, "Stop."', "Then he left."],
        ),
        (
            "“Is it over?” she asked. “Yes.” ‘Fine.’ (An aside.) [Note.] 2024 came.",
            [
                "“Is it over?” she asked.",
                "“Yes.”",
                "‘Fine.’",
                "(An aside.)",
                "[Note.]",
                "2024 came.",
            ],
        ),
        (
            "The U.S. Army and the U.N. met on Jan. 5 in Room No. 4. It rained.",
            ["The U.S. Army and the U.N. met on Jan. 5 in Room No. 4.", "It rained."],
        ),
        (
            "Acme Corp. met Widgets Inc., i.e. they joined, e.g. Bob vs. Al. Done.",
            [
                "Acme Corp. met Widgets Inc., i.e. they joined, e.g. Bob vs. Al.",
                "Done.",
            ],
        ),
        ("He waited… Nobody came.", ["He waited…", "Nobody came."]),
        (
            "It ends here. but this is lowercase.",
            ["It ends here. but this is lowercase."],
        ),
        ("A heading\n\nThe body", ["A heading", "The body"]),
        ("One line\nsame sentence.", ["One line\nsame sentence."]),
    ],
)
def test_split_sentences_on_tricky_text(text: str, expected: list[str]) -> None:
    assert sentences_of(text) == expected


def test_sentence_spans_exclude_surrounding_whitespace() -> None:
    assert split_sentences("  One.  Two.\n") == [(2, 6), (8, 12)]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_blank_text_has_no_sentences(text: str) -> None:
    assert split_sentences(text) == []


sentence_alphabet = st.sampled_from([*"aAbZ19 .!?…\"'“”‘’()[]\n\t", "Mr.", "J.", "U.S.", "3.5", " ", "\n\n"])


@given(st.lists(sentence_alphabet, max_size=60).map("".join))
def test_sentence_spans_cover_all_non_whitespace_in_order(text: str) -> None:
    spans = split_sentences(text)
    covered = [False] * len(text)
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end
        assert text[start:end] == text[start:end].strip()
        covered[start:end] = [True] * (end - start)
        previous_end = end
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))


# --- token counting and ids -------------------------------------------------


def test_approximate_token_count_counts_words_and_punctuation() -> None:
    assert approximate_token_count("Hello, world!") == 4


def test_approximate_token_count_counts_long_words_as_several() -> None:
    assert approximate_token_count("internationalisation") == 4  # 20 chars // 6 + 1


@given(st.text(max_size=200))
def test_approximate_token_count_is_at_least_the_word_count(text: str) -> None:
    assert approximate_token_count(text) >= count_words(text)


def test_passage_id_combines_document_ordinal_and_content_hash() -> None:
    digest = hashlib.sha256(b"Some text.").hexdigest()[:8]
    assert passage_id("doc-1", 3, "Some text.") == f"doc-1#p3-{digest}"


def test_passage_id_changes_with_content() -> None:
    assert passage_id("d", 1, "Some text.") != passage_id("d", 1, "Other text.")


# --- split_passages: one paragraph per passage ------------------------------


def test_each_long_enough_paragraph_is_one_passage_with_metadata() -> None:
    document = make_document(body(stem="a"), body(stem="b"), body(stem="c"))
    passages = split_passages(document, max_tokens=100)

    assert [p.text for p in passages] == list(document.paragraphs)
    assert [p.paragraph for p in passages] == [1, 2, 3]
    assert_offsets_hold(document, passages)
    first = passages[0]
    assert (first.doc_id, first.source, first.title, first.outlet) == (
        "doc",
        "doc.txt",
        "A Title",
        "The Outlet",
    )
    assert (first.author, first.date, first.url) == (
        "A. Writer",
        "2024-01-02",
        "https://example.org/a",
    )
    assert first.passage_id == passage_id("doc", 1, first.text)


def test_a_passage_that_is_a_whole_paragraph_holds_that_paragraphs_text_not_a_copy() -> None:
    document = make_document(body(stem="a"), f"  {body(stem='b')}")
    whole, padded = split_passages(document, max_tokens=100)
    assert whole.text is document.paragraphs[0]  # a million passages would otherwise double the corpus in memory
    assert padded.text == body(stem="b") and padded.text is not document.paragraphs[1]  # a slice of it
    assert_offsets_hold(document, [whole, padded])


def test_empty_document_has_no_passages() -> None:
    assert split_passages(make_document(), max_tokens=10) == []


def test_blank_paragraphs_are_skipped_but_keep_numbering() -> None:
    document = make_document(body(stem="a"), "  ", body(stem="c"))
    passages = split_passages(document, max_tokens=100)
    assert [p.paragraph for p in passages] == [1, 3]


def test_padded_paragraph_passage_excludes_padding() -> None:
    document = make_document(f"  {body()}\n")
    (passage,) = split_passages(document, max_tokens=100)
    assert passage.text == body()
    assert_offsets_hold(document, [passage])


def test_max_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        split_passages(make_document(body()), max_tokens=0)


# --- split_passages: merging short paragraphs -------------------------------


def test_heading_merges_forward_into_next_paragraph() -> None:
    document = make_document(body(stem="a"), "Background", body(stem="b"))
    passages = split_passages(document, max_tokens=100)

    assert [p.text for p in passages] == [
        body(stem="a"),
        f"Background\n\n{body(stem='b')}",
    ]
    assert [p.paragraph for p in passages] == [1, 2]
    assert_offsets_hold(document, passages)


def test_stacked_headings_all_merge_into_the_body() -> None:
    document = make_document("Main title", "A subtitle here", body())
    (passage,) = split_passages(document, max_tokens=100)
    assert passage.text == document.text
    assert passage.paragraph == 1


def test_short_sentence_paragraph_merges_backward() -> None:
    document = make_document(body(stem="a"), "He declined to comment.", body(stem="b"))
    passages = split_passages(document, max_tokens=100)

    assert [p.text for p in passages] == [
        f"{body(stem='a')}\n\nHe declined to comment.",
        body(stem="b"),
    ]
    assert [p.paragraph for p in passages] == [1, 3]


def test_short_paragraph_ending_in_quote_merges_backward() -> None:
    document = make_document(body(), "“We will not go back.”")
    (passage,) = split_passages(document, max_tokens=100)
    assert passage.text == document.text


def test_short_first_paragraph_merges_forward() -> None:
    document = make_document("It began in June.", body(stem="b"), body(stem="c"))
    passages = split_passages(document, max_tokens=100)

    assert [p.text for p in passages] == [
        f"It began in June.\n\n{body(stem='b')}",
        body(stem="c"),
    ]
    assert [p.paragraph for p in passages] == [1, 3]


def test_trailing_heading_with_nothing_to_lead_merges_backward() -> None:
    document = make_document(body(), "Reporting by A Writer")
    (passage,) = split_passages(document, max_tokens=100)
    assert passage.text == document.text


def test_single_short_paragraph_is_one_passage() -> None:
    document = make_document("Short.")
    passages = split_passages(document, max_tokens=100)
    assert [(p.text, p.paragraph, p.start, p.end) for p in passages] == [("Short.", 1, 0, 6)]


def test_merge_that_would_exceed_max_tokens_is_not_done() -> None:
    document = make_document(body(20), "He declined to comment.")
    passages = split_passages(document, max_tokens=22, count_tokens=count_words)
    assert [p.text for p in passages] == list(document.paragraphs)


def test_heading_stays_alone_when_next_paragraph_is_full() -> None:
    document = make_document("Background", body(20))
    passages = split_passages(document, max_tokens=20, count_tokens=count_words)
    assert [p.text for p in passages] == list(document.paragraphs)


def test_min_words_decides_what_is_short() -> None:
    document = make_document(body(stem="a"), sentence(5, "b"))
    assert len(split_passages(document, max_tokens=100, min_words=5)) == 2
    assert len(split_passages(document, max_tokens=100, min_words=6)) == 1


# --- split_passages: splitting long paragraphs ------------------------------


def ten_sentences_of_five_words() -> str:
    return " ".join(sentence(5, stem=f"s{index}w") for index in range(10))


def test_long_paragraph_splits_on_sentence_boundaries_within_max_tokens() -> None:
    paragraph = ten_sentences_of_five_words()
    document = make_document(body(stem="intro"), paragraph)
    passages = split_passages(document, max_tokens=20, count_tokens=count_words)
    pieces = [p for p in passages if p.paragraph == 2]

    assert len(pieces) == 3
    assert all(count_words(p.text) <= 20 for p in passages)
    assert all(p.text.endswith(".") for p in pieces)
    assert " ".join(p.text for p in pieces) == paragraph
    assert_offsets_hold(document, passages)


def test_long_paragraph_pieces_are_balanced() -> None:
    # Greedy packing would give 20 + 20 + 10 words; balanced packing avoids the scrap.
    document = make_document(ten_sentences_of_five_words())
    sizes = [count_words(p.text) for p in split_passages(document, max_tokens=20, count_tokens=count_words)]

    assert len(sizes) == 3
    assert max(sizes) - min(sizes) <= 5  # at most one sentence apart


def test_sentence_longer_than_max_tokens_splits_between_words() -> None:
    paragraph = words(50)
    document = make_document(paragraph)
    passages = split_passages(document, max_tokens=12, count_tokens=count_words)

    assert all(count_words(p.text) <= 12 for p in passages)
    assert " ".join(p.text for p in passages) == paragraph
    assert len(passages) == 5  # ceil(50 / 12)


def test_word_longer_than_max_tokens_splits_between_characters() -> None:
    document = make_document("x" * 60)
    passages = split_passages(document, max_tokens=3)  # approximate count: 60 // 6 + 1 = 11
    assert all(approximate_token_count(p.text) <= 3 for p in passages)
    assert "".join(p.text for p in passages) == "x" * 60


def test_short_paragraph_merges_into_last_piece_of_split_paragraph() -> None:
    document = make_document(ten_sentences_of_five_words(), "He declined to comment.")
    passages = split_passages(document, max_tokens=20, count_tokens=count_words)
    assert passages[-1].text.endswith("\n\nHe declined to comment.")
    assert passages[-1].paragraph == 1
    assert all(count_words(p.text) <= 20 for p in passages)


# --- split_passages: ids ------------------------------------------------------


def test_ids_are_stable_and_unique() -> None:
    document = make_document(body(stem="a"), ten_sentences_of_five_words(), body(stem="c"))
    first = split_passages(document, max_tokens=20, count_tokens=count_words)
    second = split_passages(document, max_tokens=20, count_tokens=count_words)

    assert [p.passage_id for p in first] == [p.passage_id for p in second]
    assert len({p.passage_id for p in first}) == len(first)


def test_editing_one_paragraph_changes_only_its_passage_ids() -> None:
    original = make_document(body(stem="a"), "Background", body(stem="b"), body(stem="c"))
    edited = make_document(body(stem="a"), "Background", body(stem="x"), body(stem="c"))
    before = [p.passage_id for p in split_passages(original, max_tokens=100)]
    after = [p.passage_id for p in split_passages(edited, max_tokens=100)]

    assert len(before) == len(after) == 3
    assert [b == a for b, a in zip(before, after, strict=True)] == [True, False, True]


def test_ids_differ_between_documents() -> None:
    passage_a = split_passages(make_document(body(), doc_id="a"), max_tokens=100)[0]
    passage_b = split_passages(make_document(body(), doc_id="b"), max_tokens=100)[0]
    assert passage_a.passage_id != passage_b.passage_id


# --- split_passages: properties -----------------------------------------------

vocabulary = st.sampled_from(
    [
        "the",
        "North",
        "said",
        "Mr.",
        "U.S.",
        "3.5",
        "J.",
        "“quoted”",
        "(aside)",
        "e.g.",
        "word",
    ]
)
random_sentence = st.builds(
    lambda body_words, stop: capitalized(" ".join(body_words)) + stop,
    st.lists(vocabulary, min_size=1, max_size=15),
    st.sampled_from([".", "!", "?", "?!", "…", ".”", ""]),
)
random_paragraph = st.lists(random_sentence, min_size=1, max_size=8).map(" ".join)
random_document = st.lists(random_paragraph | st.sampled_from(["", " ", "Heading"]), max_size=8).map(
    lambda paragraphs: make_document(*paragraphs)
)


@settings(max_examples=300, deadline=None)
@given(
    document=random_document,
    max_tokens=st.integers(min_value=1, max_value=60),
    min_words=st.integers(min_value=0, max_value=20),
)
def test_passages_keep_offsets_text_and_limits(document: Document, max_tokens: int, min_words: int) -> None:
    passages = split_passages(document, max_tokens=max_tokens, count_tokens=count_words, min_words=min_words)

    assert_offsets_hold(document, passages)
    assert non_space("".join(p.text for p in passages)) == non_space(document.text)
    assert all(count_words(p.text) <= max_tokens for p in passages)
    assert len({p.passage_id for p in passages}) == len(passages)
    spans = document.paragraph_spans()
    for passage in passages:
        start, end = spans[passage.paragraph - 1]
        assert start <= passage.start < end


@settings(max_examples=100, deadline=None)
@given(document=random_document, max_tokens=st.integers(min_value=1, max_value=80))
def test_passages_respect_the_default_token_estimate(document: Document, max_tokens: int) -> None:
    passages = split_passages(document, max_tokens=max_tokens)

    assert_offsets_hold(document, passages)
    assert non_space("".join(p.text for p in passages)) == non_space(document.text)
    assert all(approximate_token_count(p.text) <= max_tokens for p in passages)


# --- split_passages: huge paragraphs ------------------------------------------


class CharacterTally:
    """A token counter (the default estimate) that adds up how many characters it was given."""

    def __init__(self) -> None:
        self.characters = 0

    def __call__(self, text: str) -> int:
        self.characters += len(text)
        return approximate_token_count(text)


def test_a_long_paragraph_is_counted_a_few_times_over_not_once_per_piece() -> None:
    # Each piece used to re-count all the text after it: 200 kB were counted 111 times over.
    paragraph = " ".join(f"The river rose near bridge number {i} after rain." for i in range(4_000))
    tally = CharacterTally()
    passages = split_passages(make_document(paragraph), max_tokens=254, count_tokens=tally)

    assert len(passages) > 100
    assert tally.characters <= 5 * len(paragraph)
    assert all(approximate_token_count(p.text) <= 254 for p in passages)


def test_a_huge_word_is_halved_not_cut_into_characters() -> None:
    word = "abcdefghij" * 20_000
    tally = CharacterTally()
    passages = split_passages(make_document(word), max_tokens=50, count_tokens=tally)

    assert "".join(p.text for p in passages) == word
    assert all(approximate_token_count(p.text) <= 50 for p in passages)
    assert tally.characters <= 40 * len(word)  # one pass per halving level, not one call per character


def test_paragraph_longer_than_a_window_is_split_window_by_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("qa.ingest.split.WINDOW_CHARS", 300)
    paragraph = " ".join(f"Sentence number {i} is here." for i in range(200))
    document = make_document(paragraph)
    passages = split_passages(document, max_tokens=40, count_tokens=count_words)

    assert_offsets_hold(document, passages)
    assert non_space("".join(p.text for p in passages)) == non_space(paragraph)
    assert all(p.text.endswith(".") for p in passages)  # windows end at sentence ends
    assert all(len(p.text) <= 300 for p in passages)


# --- split_passages: properties on any text -------------------------------------
# Paragraphs of arbitrary Unicode: every kind of whitespace (including the
# separators str.split knows and "\x1c"), zero-width and format characters,
# combining marks, CJK, right-to-left letters, emoji, and the punctuation
# sentence splitting looks at.

any_character = st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    [" ", "\n", "\t", "\u00a0", "\u2028", "\u3000", "\x1c", "\u200b", "\ufeff", "\u0301", ".", "!", "?", "…", "”", "("]
)
any_paragraph = st.text(any_character, max_size=120)
any_document = st.lists(any_paragraph, max_size=6).map(lambda paragraphs: make_document(*paragraphs))
counters = st.sampled_from([count_words, approximate_token_count])


def assert_passages_cover_the_text(document: Document, passages: list[Passage]) -> None:
    """Offsets map back to the text, passages come in order, and no visible character is left out."""
    text = document.text
    covered = [False] * len(text)
    previous_end = 0
    for passage in passages:
        assert passage.text == text[passage.start : passage.end]
        assert previous_end <= passage.start < passage.end
        covered[passage.start : passage.end] = [True] * (passage.end - passage.start)
        previous_end = passage.end
    assert [i for i, character in enumerate(text) if not covered[i] and not character.isspace()] == []


@settings(max_examples=300, deadline=None)
@given(document=any_document, max_tokens=st.integers(1, 40), min_words=st.integers(0, 15), count=counters)
def test_passages_of_any_text_cover_it_within_the_limit(
    document: Document, max_tokens: int, min_words: int, count: Callable[[str], int]
) -> None:
    passages = split_passages(document, max_tokens=max_tokens, count_tokens=count, min_words=min_words)

    assert_passages_cover_the_text(document, passages)
    # A single character is the smallest piece there is; only it may exceed the limit.
    assert all(count(p.text) <= max_tokens or len(p.text) == 1 for p in passages)


@settings(max_examples=150, deadline=None)
@given(document=any_document, max_tokens=st.integers(1, 40), window=st.integers(1, 60))
def test_window_by_window_splitting_covers_any_text(document: Document, max_tokens: int, window: int) -> None:
    with mock.patch("qa.ingest.split.WINDOW_CHARS", window):
        passages = split_passages(document, max_tokens=max_tokens, count_tokens=count_words)

    assert_passages_cover_the_text(document, passages)
    assert all(count_words(p.text) <= max_tokens for p in passages)


@settings(max_examples=100, deadline=None)
@given(document=any_document, max_tokens=st.integers(1, 40))
def test_same_document_gives_the_same_passage_ids(document: Document, max_tokens: int) -> None:
    first = split_passages(document, max_tokens=max_tokens)
    again = split_passages(dataclasses.replace(document, paragraphs=tuple(document.paragraphs)), max_tokens=max_tokens)
    assert [p.passage_id for p in first] == [p.passage_id for p in again]
    assert len({p.passage_id for p in first}) == len(first)


IDS_OF_THE_CORPUS = """
import json, sys
from qa.ingest.corpus import load_documents
from qa.ingest.split import split_passages
from pathlib import Path
documents = load_documents(Path(sys.argv[1]))
print(json.dumps([p.passage_id for d in documents for p in split_passages(d, max_tokens=int(sys.argv[2]))]))
"""


@pytest.mark.parametrize("max_tokens", [254, 40])
def test_passage_ids_are_the_same_in_another_process_with_another_hash_seed(max_tokens: int) -> None:
    # Nothing may depend on set or dict order under str hashing, which changes per process.
    here = [p.passage_id for d in load_documents(CORPUS) for p in split_passages(d, max_tokens=max_tokens)]
    for seed in ("1", "4242"):
        environment = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.pathsep.join(sys.path)}
        child = [sys.executable, "-c", IDS_OF_THE_CORPUS, str(CORPUS), str(max_tokens)]
        output = subprocess.run(child, env=environment, capture_output=True, text=True, check=True).stdout
        assert json.loads(output) == here
