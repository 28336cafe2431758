"""Asking: evidence sentences, re-ranking, extractive answers and abstention."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from conftest import FakeEncoder
from qa.errors import IndexMismatchError, QAError
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.index.store import SearchFilter
from qa.ingest.split import split_passages, split_sentences
from qa.records import Document, Evidence, Hit, Passage
from qa.search.abstention import CALIBRATED, NEVER_ABSTAIN, NOT_IN_CORPUS, Abstention, specific_terms
from qa.search.answer import compose_answer
from qa.search.ask import ask
from qa.search.duplicates import fold_duplicates
from qa.search.evidence import SentenceMemory, attach_evidence, best_evidence
from qa.search.filters import NO_ARTICLE_MATCHES
from qa.search.modes import Mode
from qa.search.query import embed_query, lexical_query
from qa.search.rerank import RERANK_DEPTH, SENTENCE_WEIGHT, rerank_by_evidence
from qa.search.retrieval import candidate_hits, retrieve

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


def build(documents: list[Document], encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in documents for p in split_passages(d, max_tokens=200, min_words=1)]
    return LocalIndex.empty(encoder.name, SETTINGS).update(documents, passages, encoder=encoder, settings=SETTINGS)


def build_index(encoder: FakeEncoder) -> LocalIndex:
    return build(DOCUMENTS, encoder)


def fused_hits(index: LocalIndex, question: str, encoder: FakeEncoder, k: int) -> list[Hit]:
    """Hybrid search fused and folded but not re-ranked by evidence (the old ``PassageIndex.search``)."""
    query_vector = embed_query(encoder, question)
    return fold_duplicates(
        candidate_hits(index, query_vector, lexical_query(question), mode="hybrid", where=None), limit=k
    )


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def test_evidence_is_the_sentence_closest_to_the_question(encoder: FakeEncoder) -> None:
    index = build_index(encoder)
    question = "what did the lighthouse keeper say about the harbour wall"
    hits = fused_hits(index, question, encoder, k=3)
    memory = SentenceMemory()
    with_evidence = attach_evidence(hits, embed_query(encoder, question), lambda s: memory.embed(s, encoder))
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


def test_a_filter_that_leaves_nothing_says_so(encoder: FakeEncoder) -> None:
    index = build_index(encoder)
    result = ask(index, "harbour wall", encoder=encoder, where=SearchFilter(date_from="2030-01-01"))
    assert (result.answerable, result.hits) == (False, ())
    assert result.answer.startswith(NO_ARTICLE_MATCHES)
    with pytest.raises(QAError, match="no document 'x' in the index"):
        ask(index, "harbour wall", encoder=encoder, where=SearchFilter(doc_ids=frozenset({"x"})))


def test_rerank_by_evidence_orders_by_the_weighted_sum_of_scaled_scores() -> None:
    rng = np.random.default_rng(7)
    fused, sentence = rng.random(12), rng.random(12)
    hits = [
        dataclasses.replace(_hit(rank, f"passage {rank}.", float(s)), score=float(f))
        for rank, (f, s) in enumerate(zip(fused, sentence, strict=True), start=1)
    ]
    for weight in (0.0, 0.3, SENTENCE_WEIGHT, 1.0):
        expected = (1 - weight) * _scaled(fused) + weight * _scaled(sentence)
        reranked = rerank_by_evidence(hits, weight=weight)
        assert [h.passage.passage_id for h in reranked] == [f"p{i + 1}" for i in np.argsort(-expected, kind="stable")]
        assert [h.rank for h in reranked] == list(range(1, 13))
        assert [h.score for h in reranked] == pytest.approx(sorted(expected, reverse=True))
    assert rerank_by_evidence([]) == []


def _scaled(values: np.ndarray) -> np.ndarray:
    return (values - values.min()) / (values.max() - values.min())


FERRY = [
    Document(
        "council",
        "council.txt",
        (
            "The ferry company announced changes to the island timetable. The island council met about the ferry. "
            "Running costs of the ferry rose. The ferry stop was moved.",
            "Farmers sold sheep at the market. Lambs fetched good prices at the auction in town.",
        ),
    ),
    Document(
        "village",
        "village.txt",
        (
            "In May the ferry to the island did stop running. Farmers sold sheep at the market. Lambs fetched good "
            "prices at the auction. The weather was mild and wet all week, and the school reopened. Roads were "
            "repaired near the church. A new bakery opened on the main street.",
        ),
    ),
]


def test_hybrid_search_lifts_the_passage_whose_one_sentence_answers(encoder: FakeEncoder) -> None:
    index = build(FERRY, encoder)
    question = "When did the ferry to the island stop running?"
    plain = fused_hits(index, question, encoder, k=3)
    assert plain[0].passage.doc_id == "council"  # precondition: the whole passage shares more words
    hits = retrieve(index, question, encoder=encoder, k=3)
    assert hits[0].passage.doc_id == "village"
    assert hits[0].evidence is not None
    assert hits[0].evidence.text.startswith("In May the ferry to the island did stop running.")


def test_hybrid_retrieve_agrees_with_a_brute_force_rerank(encoder: FakeEncoder) -> None:
    index = build_index(encoder)
    question = "storm damage to the harbour wall and boats"
    query = _unit(encoder, [question])[0]
    candidates = fused_hits(index, question, encoder, k=RERANK_DEPTH)
    best_sentence = np.array(
        [
            max(float(_unit(encoder, [h.passage.text[s:e]])[0] @ query) for s, e in split_sentences(h.passage.text))
            for h in candidates
        ]
    )
    fused = np.array([h.score for h in candidates])
    expected = (1 - SENTENCE_WEIGHT) * _scaled(fused) + SENTENCE_WEIGHT * _scaled(best_sentence)
    want = [candidates[i].passage.passage_id for i in np.argsort(-expected, kind="stable")][:2]
    assert [h.passage.passage_id for h in retrieve(index, question, encoder=encoder, k=2)] == want


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_single_retriever_modes_are_not_reranked(encoder: FakeEncoder, mode: Mode) -> None:
    index = build_index(encoder)
    question = "harbour wall repairs"
    hits = retrieve(index, question, encoder=encoder, k=3, mode=mode)
    query_vector = embed_query(encoder, question) if mode == "dense" else None  # bm25 mode embeds nothing
    plain = candidate_hits(index, query_vector, lexical_query(question), mode=mode, where=None)
    assert hits == fold_duplicates(plain, limit=3)
    # Ranked by the mode's own score, without evidence.
    own = [hit.dense_score if mode == "dense" else hit.bm25_score for hit in hits]
    assert [hit.score for hit in hits] == own == sorted(own, reverse=True)
    assert all(hit.evidence is None for hit in hits)


# ---------------------------------------------------------------- abstention defaults and model checks

CALIBRATED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
UNKNOWN_NAME = "What did Napoleon say about the harbour wall?"  # "napoleon" is nowhere in the corpus
KNOWN_NAMES = "How much will repairs to the harbour wall cost, the council said on Friday?"


def test_without_an_abstention_the_thresholds_calibrated_for_the_model_apply() -> None:
    assert CALIBRATED[CALIBRATED_MODEL].require_specific_terms  # precondition: the calibration checks names
    encoder = FakeEncoder(name=CALIBRATED_MODEL)
    index = build_index(encoder)
    result = ask(index, UNKNOWN_NAME, encoder=encoder)
    assert (result.answerable, result.answer) == (False, NOT_IN_CORPUS)
    assert result.hits  # the nearest passages are still listed
    # The calibrated thresholds made the difference: never abstaining, the same question is answered ...
    assert ask(index, UNKNOWN_NAME, encoder=encoder, abstention=NEVER_ABSTAIN).answerable
    # ... and the calibration does not refuse a question whose names the corpus knows.
    known = ask(index, KNOWN_NAMES, encoder=encoder)
    assert known.answerable and "four million euros" in known.answer


def test_a_model_without_calibration_never_abstains_by_default(encoder: FakeEncoder) -> None:
    assert encoder.name not in CALIBRATED
    result = ask(build_index(encoder), UNKNOWN_NAME, encoder=encoder)
    assert result.answerable and result.answer != NOT_IN_CORPUS


def test_ask_with_another_model_than_the_index_fails_before_encoding_anything() -> None:
    index = build_index(FakeEncoder(name="model-a"))
    other = FakeEncoder(name="model-b")
    with pytest.raises(IndexMismatchError, match="model-a"):
        ask(index, "How much will the repairs cost?", encoder=other)
    with pytest.raises(IndexMismatchError, match="model-a"):
        retrieve(index, "How much will the repairs cost?", encoder=other, mode="dense")
    assert other.calls == []
