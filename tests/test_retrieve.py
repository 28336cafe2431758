"""Ranking pieces: top rows, fusion, near-duplicate folding and filters, against brute force."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import WORDS as BASE_WORDS
from qa.records import Hit, Passage
from qa.retrieve import (
    RRF_K,
    Ranking,
    SearchFilter,
    convex_fusion,
    fold_duplicates,
    reciprocal_rank_fusion,
    top_rows,
)

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
    ranking = top_rows(array, depth, mask)
    expected = brute_force_top([float(value) for value in array], depth, allowed)
    assert ranking.rows.tolist() == expected
    assert np.issubdtype(ranking.rows.dtype, np.integer)
    np.testing.assert_array_equal(ranking.scores, array[expected])


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
    assert top_rows(np.array([0.0, 0.0, 1.0, 1.0]), 1).rows.tolist() == [2]
    assert top_rows(np.array([5.0, 2.0, 2.0, 2.0, 2.0, 9.0]), 3).rows.tolist() == [5, 0, 1]


def test_top_rows_with_depth_beyond_the_rows_returns_every_allowed_row() -> None:
    scores = np.array([0.5, 2.0, -1.0, 2.0])
    assert top_rows(scores, 100).rows.tolist() == [1, 3, 0, 2]
    assert top_rows(scores, 100, np.array([True, False, True, True])).rows.tolist() == [3, 0, 2]


def test_top_rows_with_every_row_disallowed_is_empty() -> None:
    ranking = top_rows(np.array([1.0, 2.0, 3.0]), 2, np.zeros(3, dtype=bool))
    assert ranking.rows.size == 0 and ranking.scores.size == 0
    assert top_rows(np.zeros(0), 5).rows.size == 0
    assert top_rows(np.array([1.0, 2.0]), 0).rows.size == 0


def test_ranking_ranks_are_one_based_positions() -> None:
    ranking = Ranking(np.array([7, 2, 9]), np.array([3.0, 2.0, 1.0]))
    assert ranking.ranks() == {7: 1, 2: 2, 9: 3}


# ---------------------------------------------------------------- fusion


def ranking(rows: list[int]) -> Ranking:
    return Ranking(np.array(rows, dtype=np.int64), np.arange(len(rows), 0, -1, dtype=np.float32))


def test_reciprocal_rank_fusion_by_hand() -> None:
    fused = reciprocal_rank_fusion([ranking([3, 1, 2]), ranking([2, 5])])
    assert fused.keys() == {1, 2, 3, 5}
    assert fused[3] == pytest.approx(1 / 61)
    assert fused[1] == pytest.approx(1 / 62)
    assert fused[2] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[5] == pytest.approx(1 / 62)
    assert RRF_K == 60


def test_reciprocal_rank_fusion_uses_k() -> None:
    fused = reciprocal_rank_fusion([ranking([4, 8]), ranking([8])], k=1)
    assert fused == pytest.approx({4: 1 / 2, 8: 1 / 3 + 1 / 2})


distinct_rows = st.lists(st.integers(0, 30), unique=True, max_size=15)


@given(st.lists(distinct_rows, max_size=4), st.integers(1, 100))
def test_reciprocal_rank_fusion_agrees_with_a_sum_over_positions(lists: list[list[int]], k: int) -> None:
    fused = reciprocal_rank_fusion([ranking(rows) for rows in lists], k=k)
    expected: dict[int, float] = {}
    for rows in lists:
        for row in set(rows):
            expected[row] = expected.get(row, 0.0) + 1 / (k + rows.index(row) + 1)
    assert fused == pytest.approx(expected)


@given(distinct_rows)
def test_reciprocal_rank_fusion_of_one_ranking_keeps_its_order(rows: list[int]) -> None:
    fused = reciprocal_rank_fusion([ranking(rows)])
    assert sorted(fused, key=lambda row: -fused[row]) == rows


def test_convex_fusion_by_hand() -> None:
    # dense [0.2, 0.5, 0.8] scales to [0, 0.5, 1]; bm25 [3, 1, 2] scales to [1, 0, 0.5].
    fused = convex_fusion(
        np.array([10, 11, 12]), np.array([0.2, 0.5, 0.8]), np.array([3.0, 1.0, 2.0]), dense_weight=0.25
    )
    assert fused == pytest.approx({10: 0.75, 11: 0.125, 12: 0.625})


def min_max(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    return [(value - low) / (high - low) if high > low else 0.0 for value in values]


moderate = st.floats(-100, 100, allow_nan=False, allow_subnormal=False)


@given(
    st.integers(1, 20).flatmap(
        lambda n: st.tuples(st.lists(moderate, min_size=n, max_size=n), st.lists(moderate, min_size=n, max_size=n))
    ),
    st.floats(0, 1),
)
def test_convex_fusion_agrees_with_weighted_min_max_sum(
    columns: tuple[list[float], list[float]], weight: float
) -> None:
    dense, lexical = columns
    rows = list(range(100, 100 + len(dense)))
    fused = convex_fusion(np.array(rows), np.array(dense), np.array(lexical), dense_weight=weight)
    expected = {
        row: weight * d + (1 - weight) * b for row, d, b in zip(rows, min_max(dense), min_max(lexical), strict=True)
    }
    assert fused == pytest.approx(expected, abs=1e-9)
    assert all(-1e-12 <= score <= 1 + 1e-12 for score in fused.values())


def test_a_constant_score_list_contributes_nothing() -> None:
    rows = np.array([0, 1, 2])
    lexical = np.array([4.0, 0.0, 2.0])
    fused = convex_fusion(rows, np.full(3, 0.7), lexical, dense_weight=0.4)
    assert fused == pytest.approx({0: 0.6, 1: 0.0, 2: 0.3})
    assert convex_fusion(rows, np.full(3, 0.7), np.full(3, 2.0), dense_weight=0.4) == {0: 0.0, 1: 0.0, 2: 0.0}
    assert convex_fusion(np.array([5]), np.array([0.9]), np.array([3.0]), dense_weight=0.5) == {5: 0.0}


def test_convex_fusion_of_no_candidates_is_empty() -> None:
    assert convex_fusion(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), dense_weight=0.5) == {}


# ---------------------------------------------------------------- fold_duplicates

WORDS = [
    *BASE_WORDS,
    "soldier",
    "village",
    "train",
    "winter",
    "harvest",
    "radio",
    "smuggler",
    "broker",
    "factory",
    "police",
]


def words(seed: int, count: int = 100) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(word) for word in rng.choice(WORDS, size=count)]


def passage(text: str, source: str, number: int = 0) -> Passage:
    doc_id = source.removesuffix(".txt")
    return Passage(f"{doc_id}#{number}", doc_id, source, number + 1, 0, len(text), text, title=doc_id)


def hits_of(passages: list[Passage]) -> list[Hit]:
    return [
        Hit(rank=rank, score=1 / rank, passage=p, dense_rank=rank, bm25_rank=rank + 1)
        for rank, p in enumerate(passages, start=1)
    ]


def test_distinct_passages_are_untouched() -> None:
    passages = [passage(" ".join(words(seed)), f"doc{seed}.txt") for seed in range(6)]
    hits = hits_of(passages)
    assert fold_duplicates(hits) == hits


def test_an_exact_copy_from_another_source_folds_into_the_better_ranked() -> None:
    text = " ".join(words(1))
    passages = [passage(text, "a.txt"), passage(" ".join(words(2)), "b.txt"), passage(text, "c.txt")]
    hits = hits_of(passages)
    folded = fold_duplicates(hits)
    assert folded == [replace(hits[0], also_in=("c.txt",)), replace(hits[1], rank=2)]


def test_a_copy_differing_in_whitespace_case_and_punctuation_folds() -> None:
    original = words(3)
    reformatted = "\n\n".join(
        " ".join(word.upper() if i % 7 == 0 else word for i, word in enumerate(original[start : start + 20])) + ","
        for start in range(0, 100, 20)
    )
    passages = [
        passage(" ".join(words(4)), "x.txt"),
        passage(" ".join(original), "a.txt"),
        passage(reformatted, "b.txt"),
    ]
    folded = fold_duplicates(hits_of(passages))
    assert [(hit.rank, hit.passage.source, hit.also_in) for hit in folded] == [
        (1, "x.txt", ()),
        (2, "a.txt", ("b.txt",)),
    ]


def test_a_copy_with_one_word_changed_folds() -> None:
    # 100 words give 96 five-word shingles; changing word 50 changes the 5 shingles that hold it,
    # so Jaccard = 91 / 101 ≈ 0.90, above the 0.8 threshold.
    original = words(5)
    edited = [*original[:50], "zebra", *original[51:]]
    passages = [passage(" ".join(edited), "edited.txt"), passage(" ".join(original), "original.txt")]
    folded = fold_duplicates(hits_of(passages))
    assert [(hit.passage.source, hit.also_in) for hit in folded] == [("edited.txt", ("original.txt",))]


def test_passages_sharing_only_half_their_text_stay_apart() -> None:
    # First 50 words shared, last 50 different: 46 shared shingles of 96 + 96 - 46 = 146, Jaccard ≈ 0.32.
    shared = words(6, 50)
    passages = [passage(" ".join(shared + words(7, 50)), "a.txt"), passage(" ".join(shared + words(8, 50)), "b.txt")]
    hits = hits_of(passages)
    assert fold_duplicates(hits) == hits


def test_folding_keeps_order_and_renumbers_ranks() -> None:
    # Groups by seed; the hit list interleaves copies of three passages with two unique ones.
    layout = [(10, "a1.txt"), (11, "b1.txt"), (10, "a2.txt"), (12, "c1.txt"), (11, "b2.txt"), (13, "d1.txt")]
    layout += [(10, "a3.txt"), (14, "e1.txt"), (12, "c2.txt")]
    passages = [passage(" ".join(words(seed)), source) for seed, source in layout]
    hits = hits_of(passages)
    folded = fold_duplicates(hits)

    first_of: dict[int, int] = {}
    others: dict[int, list[str]] = {}
    for position, (seed, source) in enumerate(layout):
        if seed in first_of:
            others[seed].append(source)
        else:
            first_of[seed] = position
            others[seed] = []
    expected = [
        replace(hits[position], rank=rank, also_in=tuple(others[seed]))
        for rank, (seed, position) in enumerate(first_of.items(), start=1)
    ]
    assert folded == expected
    assert [hit.rank for hit in folded] == [1, 2, 3, 4, 5]


def test_also_in_names_each_other_source_once() -> None:
    text = " ".join(words(20))
    passages = [
        passage(text, "a.txt", 0),
        passage(text, "a.txt", 1),
        passage(text, "b.txt", 0),
        passage(text, "b.txt", 1),
    ]
    [hit] = fold_duplicates(hits_of(passages))
    assert (hit.passage.source, hit.also_in) == ("a.txt", ("b.txt",))


def test_folding_nothing_gives_nothing() -> None:
    assert fold_duplicates([]) == []
    assert fold_duplicates([], limit=3) == []


class CountingHits(list[Hit]):
    """A hit list that counts how many hits were drawn from it by iteration."""

    drawn = 0

    def __iter__(self) -> Iterator[Hit]:
        for hit in super().__iter__():
            self.drawn += 1
            yield hit


@given(st.lists(st.integers(0, 5), max_size=25), st.integers(1, 6))
def test_a_limit_keeps_the_first_distinct_hits_of_the_unlimited_fold(groups: list[int], limit: int) -> None:
    # Hits whose passage text is one of six distinct texts; equal group numbers are copies.
    hits = hits_of([passage(" ".join(words(100 + group)), f"s{position}.txt") for position, group in enumerate(groups)])
    unlimited = fold_duplicates(hits)
    limited = fold_duplicates(hits, limit=limit)
    assert len(limited) == min(limit, len(unlimited))
    assert [replace(hit, also_in=()) for hit in limited] == [replace(hit, also_in=()) for hit in unlimited[:limit]]
    for short, full in zip(limited, unlimited, strict=False):
        assert set(short.also_in) <= set(full.also_in)
    # Copies among the first 2 * limit hits are always looked at, so always noted.
    looked_at = {hit.passage.source for hit in hits[: 2 * limit]}
    for short, full in zip(limited, unlimited, strict=False):
        assert set(full.also_in) & looked_at <= set(short.also_in)


def test_a_limit_notes_copies_seen_before_the_scan_stops() -> None:
    a, b, c, d = (" ".join(words(seed)) for seed in (30, 31, 32, 33))
    # limit 2: after A and B are kept the scan goes on to the 4th hit, which is a copy of A.
    hits = hits_of([passage(a, "a.txt"), passage(b, "b.txt"), passage(c, "c.txt"), passage(a, "a-copy.txt")])
    assert [(hit.passage.source, hit.also_in) for hit in fold_duplicates(hits, limit=2)] == [
        ("a.txt", ("a-copy.txt",)),
        ("b.txt", ()),
    ]
    # A copy at position 2 * limit (the 5th hit) lies past the scan.
    hits = hits_of([passage(text, f"{n}.txt") for n, text in enumerate([a, b, c, d, a])])
    assert [(hit.passage.source, hit.also_in) for hit in fold_duplicates(hits, limit=2)] == [
        ("0.txt", ()),
        ("1.txt", ()),
    ]


def test_a_limit_bounds_how_many_hits_are_scanned() -> None:
    hits = CountingHits(hits_of([passage(" ".join(words(200 + seed)), f"{seed}.txt") for seed in range(50)]))
    folded = fold_duplicates(hits, limit=3)
    assert [hit.passage.source for hit in folded] == ["0.txt", "1.txt", "2.txt"]
    assert hits.drawn <= 2 * 3 + 1  # looked at 2 * limit hits, and at most drew one more to stop


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
