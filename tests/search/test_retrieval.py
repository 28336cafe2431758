"""Retrieval against brute force: BM25 and dense rankings, hybrid fusion of the candidates, top rows and filters."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import WORDS, FakeEncoder, RefusingEncoder
from qa.embed.encoder import normalize
from qa.errors import QAError
from qa.index.lexical import LexicalIndex, top_rows
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.index.store import Candidates, SearchFilter
from qa.index.texts import embedding_text, lexical_text
from qa.ingest.split import split_passages, split_sentences
from qa.records import Document, Hit, Passage
from qa.search.ask import ask
from qa.search.duplicates import fold_duplicates
from qa.search.modes import Mode
from qa.search.query import embed_query, lexical_query
from qa.search.retrieval import (
    CANDIDATE_DEPTH,
    PASSAGES_AT_A_TIME,
    both_candidates,
    candidate_hits,
    ranked_hits,
    retrieve,
)

# ---------------------------------------------------------------- retrieval over a small index

SETTINGS = IndexSettings(max_tokens=200, min_words=1)
OUTLETS = ["Gazette", "Herald", "Courier"]
QUESTIONS = [
    "army border",
    "Why did the defector cross the river bridge?",
    "money money school",  # a repeated word counts twice
    "market court prison phone letter",
    "weather forecast",  # no word of the corpus: every score is 0
]
FILTERS = [
    None,
    SearchFilter(outlets=frozenset({"Herald"})),
    SearchFilter(doc_ids=frozenset({f"doc{n}" for n in range(0, 40, 3)}), date_from="2020-01-05"),
]


def random_documents(seed: int, count: int = 40, *, with_ties: bool = False) -> list[Document]:
    """Made-up one-paragraph articles; ``with_ties`` makes every fifth a reshuffle of the one before.

    A reshuffle has the same words, so the same BM25 score for any question, without being a copy.
    """
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for n in range(count):
        if with_ties and n % 5 == 4:
            words = texts[-1].removesuffix(".").split()
            texts.append(" ".join(str(word) for word in rng.permutation(words)) + ".")
        else:
            texts.append(" ".join(str(word) for word in rng.choice(WORDS, size=int(rng.integers(6, 30)))) + ".")
    return [
        Document(
            f"doc{n}",
            f"doc{n}.txt",
            (text,),
            outlet=OUTLETS[n % len(OUTLETS)],
            date=f"2020-01-{n % 28 + 1:02d}",
        )
        for n, text in enumerate(texts)
    ]


def build(documents: list[Document], encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in documents for p in split_passages(d, max_tokens=200, min_words=1)]
    index = LocalIndex.empty(encoder.name, SETTINGS).update(documents, passages, encoder=encoder, settings=SETTINGS)
    # Precondition: no two passages are copies, so folding leaves every hit alone.
    hits = [Hit(rank=rank, score=0.0, passage=p) for rank, p in enumerate(index.passages, start=1)]
    assert len(fold_duplicates(hits)) == len(index.passages)
    return index


def allowed_rows(index: LocalIndex, where: SearchFilter | None) -> list[int]:
    return [row for row, p in enumerate(index.passages) if where is None or where.allows(p)]


def full_bm25(index: LocalIndex, question: str) -> np.ndarray:
    """Every passage's BM25 score, from a BM25 index of its own over the passages' BM25 texts."""
    texts = [lexical_text(p, SETTINGS) for p in index.passages]
    return LexicalIndex.build(texts).scores(lexical_query(question))


def full_dense(index: LocalIndex, question: str) -> np.ndarray:
    """Every passage's cosine similarity to the question, in float64."""
    encoder = FakeEncoder(index.model)
    passages = encoder.encode([embedding_text(p, SETTINGS) for p in index.passages]).astype(np.float64)
    query = encoder.encode([question])[0].astype(np.float64)
    return (passages / np.linalg.norm(passages, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))


def by_score(scores: np.ndarray, rows: Iterable[int]) -> list[int]:
    """``rows`` best score first, ties by row."""
    return sorted(rows, key=lambda row: (-float(scores[row]), row))


def scaled(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def tie_groups(ids: Sequence[str], scores: Sequence[float]) -> list[set[str]]:
    """``ids`` (best score first) cut into runs of equal scores; float32 rounding counts as equal."""
    groups: list[set[str]] = []
    for position, (passage_id, score) in enumerate(zip(ids, scores, strict=True)):
        if position and scores[position - 1] - score <= 1e-6:
            groups[-1].add(passage_id)
        else:
            groups.append({passage_id})
    return groups


def assert_ranked_as(hits: Sequence[Hit], expected_ids: Sequence[str], expected_scores: Sequence[float]) -> None:
    """The hits are the expected passages in the expected order; tied passages may come in any order."""
    assert len(hits) == len(expected_ids)
    groups = tie_groups(expected_ids, expected_scores)
    got = iter(h.passage.passage_id for h in hits)
    assert [{next(got) for _ in group} for group in groups] == groups
    assert sum(len(group) > 1 for group in groups) < len(groups) / 2  # precondition: mostly distinct scores


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("where", FILTERS)
def test_bm25_retrieve_is_the_brute_force_bm25_ranking(seed: int, where: SearchFilter | None) -> None:
    encoder = FakeEncoder()
    index = build(random_documents(seed, with_ties=True), encoder)
    refusing = RefusingEncoder(index.model)  # BM25 search embeds nothing
    rows = allowed_rows(index, where)
    for question in QUESTIONS:
        full = full_bm25(index, question)
        for k in (1, 7, len(index.passages) + 5):
            expected = by_score(full, rows)[:k]
            hits = retrieve(index, question, encoder=refusing, k=k, mode="bm25", where=where)
            assert [h.passage.passage_id for h in hits] == [index.passages[row].passage_id for row in expected]
            assert [h.score for h in hits] == [h.bm25_score for h in hits] == [float(full[row]) for row in expected]
            assert [(h.rank, h.bm25_rank) for h in hits] == [(rank, rank) for rank in range(1, len(hits) + 1)]
            assert all(h.dense_score is None and h.dense_rank is None and h.evidence is None for h in hits)


def test_bm25_ties_really_occur_in_the_brute_force_test() -> None:
    # The reshuffled articles tie with the ones they reshuffle, so the tie rule (by row) is exercised.
    index = build(random_documents(1, with_ties=True), FakeEncoder())
    full = full_bm25(index, QUESTIONS[0])
    assert full[4] > 0 and full[3] == full[4]


@pytest.mark.parametrize("seed", [4, 5])
@pytest.mark.parametrize("where", FILTERS)
def test_dense_retrieve_is_the_brute_force_cosine_ranking(seed: int, where: SearchFilter | None) -> None:
    encoder = FakeEncoder()
    index = build(random_documents(seed), encoder)
    rows = allowed_rows(index, where)
    for question in QUESTIONS[:4]:
        full = full_dense(index, question)
        expected = by_score(full, rows)
        hits = retrieve(index, question, encoder=encoder, k=len(rows), mode="dense", where=where)
        assert_ranked_as(hits, [index.passages[row].passage_id for row in expected], [full[r] for r in expected])
        by_id = {p.passage_id: row for row, p in enumerate(index.passages)}
        assert [h.score for h in hits] == pytest.approx([full[by_id[h.passage.passage_id]] for h in hits], abs=1e-5)
        assert [h.dense_score for h in hits] == [h.score for h in hits]
        assert [h.dense_rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(h.bm25_score is None and h.bm25_rank is None and h.evidence is None for h in hits)


@pytest.mark.parametrize("depth", [6, 100])
@pytest.mark.parametrize("seed", [6, 7])
@pytest.mark.parametrize("where", FILTERS)
def test_hybrid_candidates_are_ranked_by_brute_force_convex_fusion(
    seed: int, depth: int, where: SearchFilter | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A depth below the corpus size makes the union of the two candidate lists a part of the corpus.
    monkeypatch.setattr("qa.search.retrieval.CANDIDATE_DEPTH", depth)
    encoder = FakeEncoder()
    index = build(random_documents(seed), encoder)
    rows = allowed_rows(index, where)
    for question in QUESTIONS[:4]:
        dense, bm25 = full_dense(index, question), full_bm25(index, question)
        dense_order, bm25_order = by_score(dense, rows)[:depth], by_score(bm25, rows)[:depth]
        if depth < len(rows):
            # Precondition: the dense cut-off is not a tie (BM25 ties at the cut-off go by row, as brute force does).
            ranked = by_score(dense, rows)
            assert dense[ranked[depth - 1]] - dense[ranked[depth]] > 1e-5
        union = sorted(set(dense_order) | set(bm25_order))
        fused = 0.5 * scaled(dense[union]) + 0.5 * scaled(bm25[union].astype(np.float64))
        order = np.argsort(-fused, kind="stable")
        expected_ids = [index.passages[union[i]].passage_id for i in order]
        hits = candidate_hits(
            index, embed_query(encoder, question), lexical_query(question), mode="hybrid", where=where
        )
        assert_ranked_as(hits, expected_ids, fused[order].tolist())
        row_of = {p.passage_id: row for row, p in enumerate(index.passages)}
        got = [row_of[h.passage.passage_id] for h in hits]
        fused_of = dict(zip(union, fused.tolist(), strict=True))
        assert [h.score for h in hits] == pytest.approx([fused_of[row] for row in got], abs=1e-5)
        assert [h.dense_score for h in hits] == pytest.approx([dense[row] for row in got], abs=1e-5)
        assert [h.bm25_score for h in hits] == [float(bm25[row]) for row in got]
        # Each hit keeps its place in each retriever's candidates (none if that retriever did not propose it);
        # passages with equal dense scores may take each other's dense places.
        for hit, row in zip(hits, got, strict=True):
            assert hit.bm25_rank == (bm25_order.index(row) + 1 if row in bm25_order else None)
            if row not in dense_order:
                assert hit.dense_rank is None
            else:
                assert hit.dense_rank is not None
                assert dense[dense_order[hit.dense_rank - 1]] == pytest.approx(dense[row], abs=1e-6)


class ScriptedStore:
    """A store whose candidates and scores are given, to pin down how candidate_hits orders ties."""

    model = "fake-encoder"

    def __init__(self, dense: dict[str, float], bm25: dict[str, float], dense_ids: list[str], bm25_ids: list[str]):
        self.dense, self.bm25 = dense, bm25
        self.dense_ids, self.bm25_ids = dense_ids, bm25_ids

    def dense_candidates(self, vector: np.ndarray, *, depth: int, where: SearchFilter | None) -> Candidates:
        return Candidates(tuple(self.dense_ids), np.array([self.dense[i] for i in self.dense_ids], np.float32))

    def bm25_candidates(self, text: str, *, depth: int, where: SearchFilter | None) -> Candidates:
        return Candidates(tuple(self.bm25_ids), np.array([self.bm25[i] for i in self.bm25_ids], np.float32))

    def dense_scores(self, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        return np.array([self.dense[i] for i in ids], dtype=np.float32)

    def bm25_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        return np.array([self.bm25[i] for i in ids], dtype=np.float32)

    def passages_by_id(self, ids: Sequence[str]) -> list[Passage]:
        return [Passage(i, i, f"{i}.txt", 1, 0, len(i), i) for i in ids]


def test_fused_ties_keep_the_order_the_retrievers_proposed_them() -> None:
    # Scaled dense p3 1, p1 0.5, p2 0; scaled BM25 p3 0, p1 0.5, p2 1: every fused score is 0.5.
    store = ScriptedStore(
        dense={"p1": 0.5, "p2": 0.0, "p3": 1.0},
        bm25={"p1": 1.0, "p2": 2.0, "p3": 0.0},
        dense_ids=["p3", "p1"],
        bm25_ids=["p2", "p1"],
    )
    hits = candidate_hits(store, np.ones(2, np.float32), "q", mode="hybrid", where=None)  # type: ignore[arg-type]
    assert [h.score for h in hits] == [0.5, 0.5, 0.5]
    # Dense candidates first, then BM25's new ones; not by id or row.
    assert [h.passage.passage_id for h in hits] == ["p3", "p1", "p2"]
    assert [(h.dense_rank, h.bm25_rank) for h in hits] == [(1, None), (2, 2), (None, 1)]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_a_filter_allowing_nothing_finds_nothing(mode: Mode) -> None:
    encoder = FakeEncoder()
    index = build(random_documents(8, count=10), encoder)
    nobody = SearchFilter(outlets=frozenset({"Nobody"}))
    assert retrieve(index, "army border", encoder=encoder, mode=mode, where=nobody) == []
    assert retrieve(index, "army border", encoder=encoder, mode=mode, k=0) == []


# ---------------------------------------------------------------- top_rows


def brute_force_top(scores: list[float], depth: int, allowed: list[bool] | None = None) -> list[int]:
    """Allowed rows sorted by score descending, then row ascending; the first ``depth``."""
    rows = [row for row in range(len(scores)) if allowed is None or allowed[row]]
    rows.sort(key=lambda row: (-scores[row], row))
    return rows[: max(depth, 0)]


# Few distinct values, so ties (also across the depth cut-off) are common.
tied_scores = st.lists(st.sampled_from([-1.5, 0.0, 0.25, 1.0, 3.0]), max_size=40)
spread_scores = st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), max_size=40)


@st.composite
def scores_depth_allowed(draw: st.DrawFn) -> tuple[list[float], int, list[bool] | None]:
    scores = draw(st.one_of(tied_scores, spread_scores))
    depth = draw(st.integers(0, len(scores) + 5))
    allowed = draw(st.none() | st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    return scores, depth, allowed


def check_top_rows(scores: list[float], depth: int, allowed: list[bool] | None, dtype: type = np.float64) -> None:
    array: np.ndarray = np.array(scores, dtype=dtype)
    mask = None if allowed is None else np.array(allowed, dtype=bool)
    rows, scores_of_rows = top_rows(array, depth, mask)
    expected = brute_force_top([float(value) for value in array], depth, allowed)
    assert rows.tolist() == expected
    assert np.issubdtype(rows.dtype, np.integer)
    np.testing.assert_array_equal(scores_of_rows, array[expected])


@settings(max_examples=500)
@given(scores_depth_allowed())
def test_top_rows_agrees_with_brute_force_sort(case: tuple[list[float], int, list[bool] | None]) -> None:
    check_top_rows(*case)


@pytest.mark.parametrize("seed", range(20))
def test_top_rows_agrees_with_brute_force_on_larger_float32_arrays(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 400))
    scores = rng.integers(0, 4, size=size).astype(np.float32) / 4  # many ties
    if seed % 2:
        scores += rng.random(size).astype(np.float32)  # mostly distinct
    allowed = (rng.random(size) < 0.7).tolist() if seed % 3 else None
    for depth in (1, 5, size // 2, size, size + 10):
        check_top_rows(scores.tolist(), depth, allowed, dtype=np.float32)


def test_ties_at_the_cut_off_go_to_the_earlier_rows() -> None:
    assert top_rows(np.array([0.0, 0.0, 1.0, 1.0]), 1)[0].tolist() == [2]
    rows, scores = top_rows(np.array([5.0, 2.0, 2.0, 2.0, 2.0, 9.0]), 3)
    assert (rows.tolist(), scores.tolist()) == ([5, 0, 1], [9.0, 5.0, 2.0])


def test_top_rows_with_depth_beyond_the_rows_returns_every_allowed_row() -> None:
    scores = np.array([0.5, 2.0, -1.0, 2.0])
    assert top_rows(scores, 100)[0].tolist() == [1, 3, 0, 2]
    assert top_rows(scores, 100, np.array([True, False, True, True]))[0].tolist() == [3, 0, 2]


def test_top_rows_with_every_row_disallowed_is_empty() -> None:
    rows, scores = top_rows(np.array([1.0, 2.0, 3.0]), 2, np.zeros(3, dtype=bool))
    assert rows.size == 0 and scores.size == 0
    assert top_rows(np.zeros(0), 5)[0].size == 0
    assert top_rows(np.array([1.0, 2.0]), 0)[0].size == 0


# ---------------------------------------------------------------- SearchFilter


def dated(date: str = "", doc_id: str = "doc", outlet: str = "Daily NK") -> Passage:
    return Passage(f"{doc_id}#0", doc_id, f"{doc_id}.txt", 1, 0, 4, "text", outlet=outlet, date=date)


def test_doc_ids_restrict() -> None:
    where = SearchFilter(doc_ids=frozenset({"a", "b"}))
    assert where.allows(dated(doc_id="a")) and where.allows(dated(doc_id="b"))
    assert not where.allows(dated(doc_id="c"))


def test_outlets_restrict() -> None:
    where = SearchFilter(outlets=frozenset({"Daily NK"}))
    assert where.allows(dated(outlet="Daily NK"))
    assert not where.allows(dated(outlet="Korea Times"))
    assert not where.allows(dated(outlet=""))


def test_doc_ids_and_outlets_must_both_match() -> None:
    where = SearchFilter(doc_ids=frozenset({"a"}), outlets=frozenset({"RFA"}))
    assert where.allows(dated(doc_id="a", outlet="RFA"))
    assert not where.allows(dated(doc_id="a", outlet="Daily NK"))
    assert not where.allows(dated(doc_id="b", outlet="RFA"))


def test_date_range_is_inclusive_at_both_ends() -> None:
    where = SearchFilter(date_from="2023-03-01", date_to="2023-03-31")
    assert where.allows(dated("2023-03-01"))
    assert where.allows(dated("2023-03-15"))
    assert where.allows(dated("2023-03-31"))
    assert not where.allows(dated("2023-02-28"))
    assert not where.allows(dated("2023-04-01"))


optional_date = st.none() | st.dates(min_value=datetime.date(1990, 1, 1), max_value=datetime.date(2030, 12, 31))


@given(optional_date, optional_date, optional_date)
def test_date_bounds_agree_with_date_comparison(
    date: datetime.date | None, low: datetime.date | None, high: datetime.date | None
) -> None:
    where = SearchFilter(date_from=low.isoformat() if low else "", date_to=high.isoformat() if high else "")
    p = dated(date.isoformat() if date else "")
    if low is None and high is None:
        expected = True
    elif date is None:
        expected = False  # a passage with no date is outside any date range
    else:
        expected = (low is None or low <= date) and (high is None or date <= high)
    assert where.allows(p) is expected


def test_undated_passages_are_excluded_only_by_a_date_bound() -> None:
    undated = dated("")
    assert SearchFilter(date_from="2020-01-01").allows(undated) is False
    assert SearchFilter(date_to="2030-01-01").allows(undated) is False
    assert SearchFilter(doc_ids=frozenset({"doc"}), outlets=frozenset({"Daily NK"})).allows(undated) is True


passages_strategy = st.builds(
    Passage,
    passage_id=st.text(max_size=5),
    doc_id=st.text(max_size=5),
    source=st.text(max_size=5),
    paragraph=st.integers(1, 9),
    start=st.integers(0, 9),
    end=st.integers(0, 9),
    text=st.text(max_size=20),
    outlet=st.text(max_size=5),
    date=st.text(max_size=12),
)


@given(passages_strategy)
def test_an_empty_filter_allows_everything(p: Passage) -> None:
    assert SearchFilter().is_empty
    assert SearchFilter().allows(p)


@pytest.mark.parametrize(
    "where",
    [
        SearchFilter(doc_ids=frozenset({"a"})),
        SearchFilter(outlets=frozenset({"RFA"})),
        SearchFilter(date_from="2020-01-01"),
        SearchFilter(date_to="2020-01-01"),
    ],
)
def test_a_filter_with_any_field_set_is_not_empty(where: SearchFilter) -> None:
    assert not where.is_empty


@pytest.mark.parametrize("day", ["2020-99-99", "2021-02-30", "2020-13-01"])
def test_a_date_that_is_no_real_day_is_refused(day: str) -> None:
    with pytest.raises(QAError, match="a real day"):
        SearchFilter.of(date_from=day)
    with pytest.raises(QAError, match="a real day"):
        SearchFilter.of(date_to=day)


def test_hybrid_search_embeds_only_the_question_and_takes_evidence_from_stored_sentence_vectors() -> None:
    rng = np.random.default_rng(7)
    documents = [
        Document(
            f"doc{n}",
            f"doc{n}.txt",
            (" ".join(" ".join(rng.choice(WORDS, size=6)).capitalize() + "." for _ in range(int(rng.integers(2, 5)))),),
        )
        for n in range(30)
    ]
    encoder = FakeEncoder()
    index = build(documents, encoder)
    encoder.calls.clear()
    question = "Why did the defector cross the river bridge?"
    hits = retrieve(index, question, encoder=encoder, k=5)
    assert len(encoder.calls) == 1  # the question; every sentence's vector was stored when indexing
    query = embed_query(FakeEncoder(), question)
    for hit in hits:
        assert hit.evidence is not None
        sentences = [hit.passage.text[s:e] for s, e in split_sentences(hit.passage.text)]
        exact = normalize(FakeEncoder().encode(sentences)) @ query  # embedded now, in float32
        assert hit.evidence.score == pytest.approx(float(exact.max()), abs=0.01)
        best = sentences[int(np.argmax(exact))]
        assert best in hit.evidence.text or np.sort(exact)[-2] > exact.max() - 0.02  # int8 may swap a near tie


class CountingStore:
    """A store that passes every call to ``index`` and records the ids of the passages fetched."""

    def __init__(self, index: LocalIndex) -> None:
        self.index = index
        self.fetched: list[str] = []
        self.model = index.model

    def __getattr__(self, name: str) -> object:
        return getattr(self.index, name)

    def passages_by_id(self, ids: Sequence[str]) -> list[Passage]:
        self.fetched.extend(ids)
        return self.index.passages_by_id(ids)


def test_ranked_hits_fetch_passages_only_as_far_as_they_are_drawn() -> None:
    encoder = FakeEncoder()
    index = build(random_documents(11, count=120), encoder)
    question = "Why did the defector cross the river bridge?"
    vector, text = embed_query(encoder, question), lexical_query(question)
    every = candidate_hits(index, vector, text, mode="hybrid", where=None)
    assert len(every) > PASSAGES_AT_A_TIME  # more candidates than one fetch
    store = CountingStore(index)
    folded = fold_duplicates(ranked_hits(store, vector, text, mode="hybrid", where=None), limit=5)  # type: ignore[arg-type]
    assert folded == fold_duplicates(every, limit=5)
    assert store.fetched == [hit.passage.passage_id for hit in every[:PASSAGES_AT_A_TIME]]
    store.fetched.clear()
    assert list(ranked_hits(store, vector, text, mode="hybrid", where=None)) == every  # type: ignore[arg-type]
    assert store.fetched == [hit.passage.passage_id for hit in every]


def test_both_candidates_are_the_stores_own_answers() -> None:
    encoder = FakeEncoder()
    index = build(random_documents(12), encoder)
    where = FILTERS[1]
    vector = embed_query(encoder, "army border")
    lexical, dense = both_candidates(index, "army border", vector, where=where)
    direct = index.bm25_candidates("army border", depth=CANDIDATE_DEPTH, where=where)
    assert lexical.ids == direct.ids
    np.testing.assert_array_equal(lexical.scores, direct.scores)
    nearest = index.dense_candidates(vector, depth=CANDIDATE_DEPTH, where=where)
    assert dense.ids == nearest.ids
    np.testing.assert_array_equal(dense.scores, nearest.scores)
    assert retrieve(index, "army border", encoder=encoder, where=where) == retrieve(
        index, "army border", encoder=encoder, where=where, query_vector=vector
    )


class ThreadRecordingStore(CountingStore):
    """Records the thread each retriever ran on, and whether the question was embedded before either."""

    def __init__(self, index: LocalIndex, encoder: FakeEncoder) -> None:
        super().__init__(index)
        self.encoder = encoder
        self.embedded_before: dict[str, bool] = {}
        self.on_caller: dict[str, bool] = {}
        self.failing = ""

    def _record(self, retriever: str) -> None:
        self.on_caller[retriever] = threading.current_thread() is threading.main_thread()
        self.embedded_before[retriever] = bool(self.encoder.calls)
        if retriever == self.failing:
            raise QAError(f"the {retriever} files are unreadable")

    def bm25_candidates(self, text: str, *, depth: int, where: SearchFilter | None) -> Candidates:
        self._record("bm25")
        return self.index.bm25_candidates(text, depth=depth, where=where)

    def dense_candidates(self, vector: np.ndarray, *, depth: int, where: SearchFilter | None) -> Candidates:
        self._record("dense")
        return self.index.dense_candidates(vector, depth=depth, where=where)


def test_the_question_is_embedded_first_then_bm25_runs_here_and_the_vectors_in_a_second_thread() -> None:
    encoder = FakeEncoder()
    index = build(random_documents(12), encoder)
    encoder.calls.clear()
    store = ThreadRecordingStore(index, encoder)
    hits = retrieve(store, "army border", encoder=encoder, where=FILTERS[1])  # type: ignore[arg-type]
    assert store.embedded_before == {"bm25": True, "dense": True}
    assert store.on_caller == {"bm25": True, "dense": False}
    assert hits == retrieve(index, "army border", encoder=encoder, where=FILTERS[1])


@pytest.mark.parametrize("failing", ["bm25", "dense"])
def test_an_error_in_either_retriever_reaches_the_caller_after_both_ran(failing: str) -> None:
    encoder = FakeEncoder()
    store = ThreadRecordingStore(build(random_documents(13, count=10), encoder), encoder)
    store.failing = failing
    with pytest.raises(QAError, match=f"the {failing} files are unreadable"):
        retrieve(store, "army border", encoder=encoder)  # type: ignore[arg-type]
    assert set(store.on_caller) == {"bm25", "dense"}


class ScoreCountingStore(CountingStore):
    """Records the ids each retriever was asked to score."""

    def __init__(self, index: LocalIndex) -> None:
        super().__init__(index)
        self.scored: dict[str, list[str]] = {"dense": [], "bm25": []}

    def dense_scores(self, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        self.scored["dense"].extend(ids)
        return self.index.dense_scores(vector, ids)

    def bm25_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        self.scored["bm25"].extend(ids)
        return self.index.bm25_scores(text, ids)


def test_each_retriever_scores_again_only_what_the_other_alone_proposed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("qa.search.retrieval.CANDIDATE_DEPTH", 15)  # of 120 passages: the lists part overlap
    encoder = FakeEncoder()
    store = ScoreCountingStore(build(random_documents(14, count=120), encoder))
    question = "Why did the defector cross the river bridge?"
    vector, text = embed_query(encoder, question), lexical_query(question)
    dense = store.dense_candidates(vector, depth=15, where=None)
    lexical = store.bm25_candidates(text, depth=15, where=None)
    assert set(dense.ids) - set(lexical.ids) and set(lexical.ids) - set(dense.ids)
    hits = list(ranked_hits(store, vector, text, mode="hybrid", where=None))  # type: ignore[arg-type]
    assert sorted(store.scored["dense"]) == sorted(set(lexical.ids) - set(dense.ids))
    assert sorted(store.scored["bm25"]) == sorted(set(dense.ids) - set(lexical.ids))
    ids = [hit.passage.passage_id for hit in hits]
    assert sorted(ids) == sorted(set(dense.ids) | set(lexical.ids))
    # The scores are those of scoring every candidate again.
    np.testing.assert_allclose([hit.dense_score for hit in hits], store.index.dense_scores(vector, ids), atol=1e-6)
    np.testing.assert_array_equal([hit.bm25_score for hit in hits], store.index.bm25_scores(text, ids))


class OverlapStore(CountingStore):
    """Records whether BM25 was asked while the nearest vectors were being searched, and how often each ran."""

    def __init__(self, index: LocalIndex) -> None:
        super().__init__(index)
        self.dense_searched = threading.Event()
        self.dense_calls = 0
        self.bm25_saw_dense: list[bool] = []

    def dense_candidates(self, vector: np.ndarray, *, depth: int, where: SearchFilter | None) -> Candidates:
        self.dense_calls += 1
        self.dense_searched.set()
        return self.index.dense_candidates(vector, depth=depth, where=where)

    def bm25_candidates(self, text: str, *, depth: int, where: SearchFilter | None) -> Candidates:
        # Waits for the vector search: were it done only after BM25, this would time out.
        self.bm25_saw_dense.append(self.dense_searched.wait(timeout=10))
        return self.index.bm25_candidates(text, depth=depth, where=where)


@pytest.mark.parametrize("history", [(), ("Who crossed the river?",)])
def test_ask_searches_the_vectors_once_while_bm25_runs_beside_it(history: tuple[str, ...]) -> None:
    encoder = FakeEncoder()
    index = build(random_documents(14), encoder)
    store = OverlapStore(index)
    question = "Why did the defector cross the river bridge?"
    answered = ask(store, question, encoder=encoder, history=history, where=FILTERS[1])  # type: ignore[arg-type]
    assert store.bm25_saw_dense == [True]
    assert store.dense_calls == 1
    assert answered == ask(index, question, encoder=encoder, history=history, where=FILTERS[1])


def test_evidence_takes_the_stored_sentence_spans_without_splitting_passages_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = FakeEncoder()
    index = build(random_documents(14), encoder)
    expected = retrieve(index, "army border river", encoder=encoder, k=5)
    import qa.search.evidence as evidence_module

    def refuse(text: str) -> list[tuple[int, int]]:
        raise AssertionError("a passage was split into sentences at question time")

    monkeypatch.setattr(evidence_module, "split_sentences", refuse)
    assert retrieve(index, "army border river", encoder=encoder, k=5) == expected
