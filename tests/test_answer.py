"""Evidence sentences, extractive answers and abstention."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import FakeEncoder
from qa.answer import (
    NOT_IN_CORPUS,
    Abstention,
    ask,
    attach_evidence,
    best_evidence,
    compose_answer,
    specific_terms,
)
from qa.index import IndexSettings, PassageIndex, embed_query
from qa.records import Document, Evidence, Hit, Passage
from qa.split import split_passages, split_sentences

SETTINGS = IndexSettings(max_tokens=200, min_words=1)
DOCUMENTS = [
    Document(
        "harbour",
        "harbour.txt",
        (
            "The storm reached the coast on Monday. Fishermen pulled their boats onto the beach before the waves "
            "came. The lighthouse keeper said the harbour wall cracked in two places.",
            "Repairs to the harbour wall will cost four million euros, the council said on Friday.",
        ),
        title="Storm damages harbour",
        date="2021-03-04",
    ),
    Document(
        "orchard",
        "orchard.txt",
        ("Apple growers in the valley expect a record harvest. Cider makers are hiring extra workers for autumn.",),
        title="Record apple harvest",
    ),
]


def build_index(encoder: FakeEncoder) -> PassageIndex:
    passages = [p for d in DOCUMENTS for p in split_passages(d, max_tokens=200, min_words=1)]
    return PassageIndex.build(DOCUMENTS, passages, encoder=encoder, settings=SETTINGS)


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def test_evidence_is_the_sentence_closest_to_the_question(encoder: FakeEncoder) -> None:
    index = build_index(encoder)
    question = "what did the lighthouse keeper say about the harbour wall"
    hits = index.search(question, encoder=encoder, k=3)
    with_evidence = attach_evidence(hits, embed_query(encoder, question), lambda s: index.embed_sentences(s, encoder))
    for hit in with_evidence:
        assert hit.evidence is not None
        assert hit.passage.text[hit.evidence.start : hit.evidence.end] == hit.evidence.text
        sentences = [hit.passage.text[s:e] for s, e in split_sentences(hit.passage.text)]
        # The fake encoder is a bag of words: the best sentence shares the most question words.
        best = max(sentences, key=lambda s: float(np.dot(*_unit(encoder, [s, question]))))
        assert best in hit.evidence.text
    assert "lighthouse keeper" in with_evidence[0].evidence.text  # type: ignore[union-attr]


def _unit(encoder: FakeEncoder, texts: list[str]) -> np.ndarray:
    vectors = encoder.encode(texts)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_close_neighbour_sentence_joins_the_evidence() -> None:
    text = "First sentence here. Second sentence here. Third one."
    spans = split_sentences(text)
    alone = best_evidence(text, spans, np.array([0.2, 0.9, 0.5]))
    assert alone == Evidence("Second sentence here.", spans[1][0], spans[1][1], pytest.approx(0.9))
    pair = best_evidence(text, spans, np.array([0.2, 0.9, 0.88]))
    assert pair.text == "Second sentence here. Third one." and pair.score == pytest.approx(0.9)


def _hit(rank: int, text: str, score: float, source: str = "a.txt") -> Hit:
    passage = Passage(f"p{rank}", source.removesuffix(".txt"), source, 1, 0, len(text), text)
    return Hit(rank=rank, score=1.0, passage=passage, evidence=Evidence(text, 0, len(text), score))


def test_answer_cites_evidence_of_different_passages_in_rank_order() -> None:
    hits = [
        _hit(1, "Walls cracked in the storm.", 0.70),
        _hit(2, "Repairs will cost four million euros.", 0.80),
        _hit(3, "Apples are ripe.", 0.20),  # far below the best evidence
        _hit(4, "Walls cracked in the storm!", 0.69, source="copy.txt"),  # a copy of [1]
    ]
    assert compose_answer(hits) == "Walls cracked in the storm. [1] Repairs will cost four million euros. [2]"


def test_answer_has_at_most_three_sentences() -> None:
    sentences = [
        "Boats were pulled ashore.",
        "The wall cracked.",
        "Repairs start soon.",
        "Costs rose.",
        "Fish sold out.",
    ]
    hits = [_hit(rank, sentence, 0.8) for rank, sentence in enumerate(sentences, start=1)]
    assert compose_answer(hits).count("[") == 3


def test_ask_answers_with_citations(encoder: FakeEncoder) -> None:
    result = ask(build_index(encoder), "How much will repairs to the harbour wall cost?", encoder=encoder, k=3)
    assert result.answerable
    assert "four million euros" in result.answer
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", result.answer)]
    assert cited and all(1 <= n <= len(result.hits) for n in cited)


def test_off_topic_question_abstains_but_lists_nearest_passages(encoder: FakeEncoder) -> None:
    result = ask(build_index(encoder), "Who won the chess tournament?", encoder=encoder, abstention=Abstention(0.3))
    assert not result.answerable
    assert result.answer == NOT_IN_CORPUS
    assert result.hits


def test_question_about_an_unknown_name_or_year_abstains(encoder: FakeEncoder) -> None:
    index = build_index(encoder)
    strict = Abstention(min_evidence=0.0, require_specific_terms=True)
    assert not ask(
        index, "How much did the harbour wall repairs cost in 2023?", encoder=encoder, abstention=strict
    ).answerable
    assert not ask(
        index, "What did Napoleon say about the harbour wall?", encoder=encoder, abstention=strict
    ).answerable
    # 2021 is known from the article's date, Monday from its text.
    assert ask(
        index, "What happened to the harbour wall on Monday in 2021?", encoder=encoder, abstention=strict
    ).answerable


def test_specific_terms_are_numbers_and_names_after_the_first_word() -> None:
    assert specific_terms("How many defectors returned in 2023?") == ["2023"]
    assert specific_terms("What is Hanawon?") == ["hanawon"]
    assert specific_terms("Why do defectors return?") == []


def test_empty_index_or_filter_gives_a_plain_no_answer(encoder: FakeEncoder) -> None:
    from qa.retrieve import SearchFilter

    result = ask(build_index(encoder), "harbour wall", encoder=encoder, where=SearchFilter(doc_ids=frozenset({"x"})))
    assert (result.answerable, result.answer, result.hits) == (False, NOT_IN_CORPUS, ())
