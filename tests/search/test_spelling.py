"""Spelling variants: names written otherwise and one-edit typos count as the corpus's words."""

from __future__ import annotations

import itertools
import random

import pytest

from conftest import FakeEncoder
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.ingest.split import split_passages
from qa.records import Document, result_to_dict
from qa.search.abstention import Abstention, unknown_names
from qa.search.ask import ask
from qa.search.spelling import (
    Correction,
    _one_edit_apart,
    build_vocabulary,
    corrections,
    dictionary,
    question_corrections,
    ready_vocabulary,
    store_vocabulary,
    suggested_question,
)

SETTINGS = IndexSettings(max_tokens=200, min_words=1)
DOCUMENTS = [
    Document(
        "lim",
        "lim.txt",
        (
            "Lim Ji-hyun, a television personality, returned to North Korea in 2017 after three years in the South. "
            "Defectors return for many reasons.",
            "Kim Yo Jong ordered officials to visit the families of defectors in Hoeryong.",
        ),
        title="Defectors return North",
        date="2020-08-02",
    ),
    Document("market", "market.txt", ("Traders sold rice at the market in Seoul on Monday.",), title="Market day"),
]
NAMES = Abstention(min_evidence=0.0, require_specific_terms=True)


def build(encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in DOCUMENTS for p in split_passages(d, max_tokens=200, min_words=1)]
    return LocalIndex.empty(encoder.name, SETTINGS).update(DOCUMENTS, passages, encoder=encoder, settings=SETTINGS)


def _suggest(question: str) -> str:
    vocabulary = build_vocabulary(p for d in DOCUMENTS for p in d.paragraphs)
    return suggested_question(question, corrections(question, vocabulary))


@pytest.mark.parametrize(
    ("question", "suggested"),
    [
        ("What happened to Lim Jihyun?", "What happened to Lim Ji-hyun?"),  # hyphen left out
        ("What did Kim Yojong order?", "What did Kim Yo Jong order?"),  # spaces left out
        ("What did Kim Yo-Jong order?", "What did Kim Yo Jong order?"),  # hyphen for a space
        ("Why do defecters retrun to Nroth Korea?", "Why do defectors return to North Korea?"),  # typos, one swap
        ("what did kim yo jong order?", "what did kim yo jong order?"),  # case alone is no misspelling
        ("Lim Ji-hyun's return", "Lim Ji-hyun's return"),  # nor a possessive
    ],
)
def test_words_the_corpus_spells_otherwise_get_its_spelling(question: str, suggested: str) -> None:
    assert _suggest(question) == suggested


def test_numbers_and_short_words_must_match_exactly() -> None:
    vocabulary = build_vocabulary(["In 2020 the rice fell; the market made money."])
    assert vocabulary.closest("2021") is None  # one edit from 2020, but a number
    assert vocabulary.closest("mice") is None  # one edit from "rice", but short
    assert vocabulary.closest("markett") == "market"
    assert vocabulary.closest("market") is None  # known as written: nothing closer


def _osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (edits and swaps of neighbours), the textbook dynamic programme."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        cost = 0 if a[i - 1] == b[j - 1] else 1
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def test_one_edit_apart_agrees_with_the_edit_distance() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 5)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 5)))
        assert _one_edit_apart(a, b) == (_osa_distance(a, b) == 1), (a, b)


def test_closest_finds_every_word_one_edit_away() -> None:
    rng = random.Random(11)
    words = {"".join(rng.choice("abcdef") for _ in range(rng.randint(5, 8))) for _ in range(300)}
    vocabulary = build_vocabulary([" ".join(sorted(words))])
    for _ in range(300):
        probe = "".join(rng.choice("abcdef") for _ in range(rng.randint(5, 8)))
        near = {word for word in words if _osa_distance(probe, word) == 1}
        found = vocabulary.closest(probe)
        if probe in words or not near:
            assert found is None
        else:
            assert found in near


def test_variants_of_corpus_names_are_not_unknown_names(encoder: FakeEncoder) -> None:
    index = build(encoder)
    assert unknown_names(index, "What happened to Lim Jihyun?") == []
    assert unknown_names(index, "What did Kim Yojong order in Hoeryung?") == []
    assert unknown_names(index, "Why do defectors return to Nroth Korea?") == []
    # Still refused: a name nowhere in the corpus, and a year one edit from a known one.
    assert unknown_names(index, "What did Napoleon say in 2021?") == ["Napoleon", "2021"]


def test_misspelled_names_are_answered_with_a_suggestion(encoder: FakeEncoder) -> None:
    index = build(encoder)
    result = ask(index, "What did Kim Yojong order?", encoder=encoder, abstention=NAMES)
    assert result.answerable and "Hoeryong" in result.answer
    assert result.suggestion == "What did Kim Yo Jong order?"
    assert result_to_dict(result)["suggestion"] == "What did Kim Yo Jong order?"
    assert not ask(index, "What did Napoleon order?", encoder=encoder, abstention=NAMES).answerable
    plain = ask(index, "What did Kim Yo Jong order?", encoder=encoder, abstention=NAMES)
    assert plain.answerable and plain.suggestion == ""


def test_no_spelling_advice_for_a_question_far_from_every_passage(encoder: FakeEncoder) -> None:
    result = ask(build(encoder), "How do I bake sourdough breadd?", encoder=encoder, abstention=Abstention(0.5))
    assert not result.answerable and result.suggestion == ""


def test_the_vocabulary_is_read_once_per_store(encoder: FakeEncoder) -> None:
    index = build(encoder)
    assert store_vocabulary(index) is store_vocabulary(index)
    assert store_vocabulary(build(encoder)) is not store_vocabulary(index)


def test_the_corrected_question_is_the_one_searched(encoder: FakeEncoder) -> None:
    index = build(encoder)
    typed = ask(index, "Where did Lim Jihyun go after she retrned?", encoder=encoder, abstention=NAMES)
    spelled = ask(index, "Where did Lim Ji-hyun go after she returned?", encoder=encoder, abstention=NAMES)
    assert typed.suggestion == "Where did Lim Ji-hyun go after she returned?"
    assert typed.query == "Where did Lim Jihyun go after she retrned?"  # the question as asked
    assert typed.hits == spelled.hits and typed.answer == spelled.answer


def test_words_bm25_matches_or_the_language_knows_are_left_as_written(encoder: FakeEncoder) -> None:
    index = build(encoder)
    # "families" shares its stem with "families"/"family"; "going" is a stop word: neither is a typo.
    assert question_corrections(index, "Are the families going to Seoull?") == [
        Correction(start=26, end=32, corpus_spelling="Seoul")
    ]
    # "marked" is one edit from the corpus's "market": a dictionary of the language keeps it as written.
    assert suggested_question("Who marked it?", question_corrections(index, "Who marked it?")) == "Who market it?"
    assert question_corrections(index, "Who marked it?", is_word={"marked"}.__contains__) == []


@pytest.mark.slow
def test_the_models_word_pieces_tell_words_from_typos() -> None:
    from qa.embed.encoder import SentenceTransformerEncoder

    is_word = dictionary(SentenceTransformerEncoder("sentence-transformers/all-MiniLM-L6-v2"))
    assert is_word is not None
    assert is_word("whole") and is_word("Bread")
    assert not is_word("retrun") and not is_word("defecters")
    assert dictionary(FakeEncoder()) is None  # no tokenizer: every close word is corrected


def test_a_large_index_corrects_only_once_its_vocabulary_was_read(
    encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qa.search.spelling.SPELLING_WAIT_LIMIT", 2)  # this index counts as large
    index = build(encoder)
    question = "What did Kim Yojong order?"
    assert ready_vocabulary(index) is None  # a question does not read every passage of a large index
    assert ask(index, question, encoder=encoder, abstention=NAMES).suggestion == ""
    store_vocabulary(index)  # as the app does in the background
    assert ready_vocabulary(index) is store_vocabulary(index)
    assert ask(index, question, encoder=encoder, abstention=NAMES).suggestion == "What did Kim Yo Jong order?"
