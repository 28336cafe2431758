"""qa.search over a LocalIndex, as PassageIndex.search was tested: modes, fusion, filters, history, sentence memory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from conftest import FakeEncoder, make_documents
from qa.embed.encoder import normalize
from qa.errors import IndexMismatchError, QAError
from qa.index.lexical import LexicalIndex
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.index.store import SearchFilter
from qa.index.texts import embedding_text, lexical_text
from qa.ingest.split import split_passages
from qa.records import Document, Hit
from qa.search.duplicates import fold_duplicates
from qa.search.modes import MODES
from qa.search.query import embed_query, lexical_query
from qa.search.retrieval import CANDIDATE_DEPTH, candidate_hits, retrieve

SETTINGS = IndexSettings(max_tokens=128, min_words=1)


def build(documents: list[Document], encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]
    return LocalIndex.empty(encoder.name, SETTINGS).update(documents, passages, encoder=encoder, settings=SETTINGS)


def fused_search(index: LocalIndex, query: str, encoder: FakeEncoder, *, k: int) -> list[Hit]:
    """What PassageIndex.search did in hybrid mode: fused candidates, copies folded, no re-ranking."""
    hits = candidate_hits(index, embed_query(encoder, query), lexical_query(query), mode="hybrid", where=None)
    return fold_duplicates(hits, limit=k)


def min_max(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return (values - values.min()) / spread if spread else np.zeros_like(values)


def dense_reference(index: LocalIndex, encoder: FakeEncoder, query: str) -> np.ndarray:
    """Every passage's inner product with the query, from the encoder's vectors (brute force)."""
    matrix = normalize(encoder.encode([embedding_text(p, SETTINGS) for p in index.passages]))
    scores: np.ndarray = matrix @ normalize(encoder.encode([query]))[0]
    return scores


@pytest.mark.parametrize("query", ["defector family", "river bridge army", "prison court letter phone", "money"])
def test_dense_search_agrees_with_brute_force_numpy_ranking(encoder: FakeEncoder, query: str) -> None:
    index = build(make_documents(30), encoder)
    hits = retrieve(index, query, encoder=encoder, k=10, mode="dense")

    scores = dense_reference(index, encoder, query)
    expected = np.sort(scores)[::-1][:10]
    assert [h.rank for h in hits] == list(range(1, 11))
    np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-5, atol=1e-6)
    for hit in hits:  # ties may come in any order; each hit's score must be its own
        assert scores[index.passages.index(hit.passage)] == pytest.approx(hit.score, abs=1e-5)
        assert hit.dense_score == pytest.approx(hit.score, abs=1e-5)
        assert hit.bm25_score is None and hit.evidence is None  # the plain retriever: no BM25, no evidence


@pytest.mark.parametrize("query", ["defector family", "river bridge army", "prison court letter phone"])
def test_bm25_and_fused_search_agree_with_brute_force(encoder: FakeEncoder, query: str) -> None:
    index = build(make_documents(30), encoder)
    assert len(index.passages) <= CANDIDATE_DEPTH  # every passage is a candidate of each retriever
    bm25 = LexicalIndex.build([lexical_text(p, SETTINGS) for p in index.passages]).scores(query)
    fused = 0.5 * min_max(dense_reference(index, encoder, query)) + 0.5 * min_max(bm25)
    bm25_hits = retrieve(index, query, encoder=encoder, k=8, mode="bm25")
    np.testing.assert_allclose([h.score for h in bm25_hits], np.sort(bm25)[::-1][:8], rtol=1e-5, atol=1e-6)
    hybrid = fused_search(index, query, encoder, k=8)
    np.testing.assert_allclose([h.score for h in hybrid], np.sort(fused)[::-1][:8], rtol=1e-5, atol=1e-6)
    assert all(h.dense_rank is not None and h.bm25_rank is not None for h in hybrid)
    top_bm25 = bm25_hits[0]
    assert top_bm25.bm25_rank == 1 and top_bm25.bm25_score == pytest.approx(float(bm25.max()), rel=1e-5)
    assert top_bm25.dense_score is None  # bm25 mode never embeds the question


@pytest.mark.parametrize("mode", MODES)
def test_filters_restrict_hits_to_matching_passages(encoder: FakeEncoder, mode: str) -> None:
    documents = [
        dataclasses.replace(d, outlet="Gazette" if i % 2 else "Herald", date=f"2020-01-{i + 1:02d}")
        for i, d in enumerate(make_documents(10))
    ]
    index = build(documents, encoder)

    def search(where: SearchFilter) -> list[Hit]:
        return retrieve(index, "army", encoder=encoder, k=50, mode=mode, where=where)  # type: ignore[arg-type]

    assert {h.passage.doc_id for h in search(SearchFilter(doc_ids=frozenset({"doc3", "doc4"})))} == {"doc3", "doc4"}
    gazette = search(SearchFilter(outlets=frozenset({"Gazette"})))
    assert gazette and {h.passage.outlet for h in gazette} == {"Gazette"}
    dated = search(SearchFilter(date_from="2020-01-03", date_to="2020-01-05"))
    assert {h.passage.date for h in dated} == {"2020-01-03", "2020-01-04", "2020-01-05"}
    assert search(SearchFilter(outlets=frozenset({"Nobody"}))) == []


def test_history_gives_a_follow_up_its_subject(encoder: FakeEncoder) -> None:
    documents = [
        Document("baker", "baker.txt", ("Alice the baker opened a shop. Later she said bread prices rose.",)),
        Document("pilot", "pilot.txt", ("Bob the pilot flew north. Later she said nothing at all about it.",)),
    ]
    index = build(documents, encoder)
    follow_up = "what did she say later"
    with_history = retrieve(
        index, follow_up, encoder=encoder, k=1, mode="dense", history=["Tell me about Alice the baker"]
    )
    with_other = retrieve(index, follow_up, encoder=encoder, k=1, mode="dense", history=["Tell me about Bob the pilot"])
    assert with_history[0].passage.doc_id == "baker"
    assert with_other[0].passage.doc_id == "pilot"


def test_copies_of_a_passage_appear_once_with_the_other_source(encoder: FakeEncoder) -> None:
    text = "The council voted to rebuild the lighthouse after the storm damaged the harbour wall."
    documents = [
        Document("a", "a.txt", (text,)),
        Document("b", "copy/b.txt", (text.replace("voted", "voted  "),)),
        Document("c", "c.txt", ("Farmers in the valley expect a good harvest of apples this year.",)),
    ]
    index = build(documents, encoder)
    query = "lighthouse council storm"
    for hits in (retrieve(index, query, encoder=encoder, k=5), fused_search(index, query, encoder, k=5)):
        assert [h.rank for h in hits] == [1, 2]
        assert hits[0].also_in in (("copy/b.txt",), ("a.txt",))


def test_unknown_mode_is_refused(encoder: FakeEncoder) -> None:
    with pytest.raises(QAError, match="unknown search mode"):
        retrieve(build(make_documents(2), encoder), "army", encoder=encoder, mode="fuzzy")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_k_larger_than_index_returns_everything(encoder: FakeEncoder, mode: str) -> None:
    index = build(make_documents(2), encoder)
    hits = retrieve(index, "defector", encoder=encoder, k=1000, mode=mode)  # type: ignore[arg-type]
    assert sorted(h.passage.passage_id for h in hits) == sorted(p.passage_id for p in index.passages)


def test_empty_question_is_refused(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    with pytest.raises(QAError, match="empty"):
        retrieve(index, "   ", encoder=encoder)


def test_searching_with_another_model_is_refused(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    other = FakeEncoder("other-model")
    with pytest.raises(IndexMismatchError, match="fake-encoder"):
        retrieve(index, "army", encoder=other)
    assert not other.calls


@pytest.mark.parametrize("mode", MODES)
def test_a_loaded_index_answers_as_the_built_one(tmp_path: Path, encoder: FakeEncoder, mode: str) -> None:
    index = build(make_documents(10), encoder)
    index.save(tmp_path)
    loaded = LocalIndex.load(tmp_path)
    for query in ("border regime", "river army"):
        found = retrieve(loaded, query, encoder=encoder, k=5, mode=mode)  # type: ignore[arg-type]
        assert found and found == retrieve(index, query, encoder=encoder, k=5, mode=mode)  # type: ignore[arg-type]
