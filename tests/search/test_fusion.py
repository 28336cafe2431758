"""Fusing two retrievers: min-max convex fusion and reciprocal rank fusion, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qa.search.fusion import DENSE_WEIGHT, RRF_K, convex_fusion, min_max, reciprocal_rank_fusion

# ---------------------------------------------------------------- reciprocal rank fusion


def test_reciprocal_rank_fusion_by_hand() -> None:
    fused = reciprocal_rank_fusion([["c", "a", "b"], ["b", "e"]])
    assert fused.keys() == {"a", "b", "c", "e"}
    assert fused["c"] == pytest.approx(1 / 61)
    assert fused["a"] == pytest.approx(1 / 62)
    assert fused["b"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["e"] == pytest.approx(1 / 62)
    assert RRF_K == 60


def test_reciprocal_rank_fusion_uses_k() -> None:
    fused = reciprocal_rank_fusion([["d", "h"], ["h"]], k=1)
    assert fused == pytest.approx({"d": 1 / 2, "h": 1 / 3 + 1 / 2})


distinct_ids = st.lists(st.integers(0, 30).map(lambda n: f"p{n}"), unique=True, max_size=15)


@given(st.lists(distinct_ids, max_size=4), st.integers(1, 100))
def test_reciprocal_rank_fusion_agrees_with_a_sum_over_positions(lists: list[list[str]], k: int) -> None:
    fused = reciprocal_rank_fusion(lists, k=k)
    expected: dict[str, float] = {}
    for ids in lists:
        for passage_id in set(ids):
            expected[passage_id] = expected.get(passage_id, 0.0) + 1 / (k + ids.index(passage_id) + 1)
    assert fused == pytest.approx(expected)


@given(distinct_ids)
def test_reciprocal_rank_fusion_of_one_ranking_keeps_its_order(ids: list[str]) -> None:
    fused = reciprocal_rank_fusion([ids])
    assert sorted(fused, key=lambda passage_id: -fused[passage_id]) == ids


def test_reciprocal_rank_fusion_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([]) == {}
    assert reciprocal_rank_fusion([[], []]) == {}


# ---------------------------------------------------------------- convex fusion


def test_convex_fusion_by_hand() -> None:
    # dense [0.2, 0.5, 0.8] scales to [0, 0.5, 1]; bm25 [3, 1, 2] scales to [1, 0, 0.5].
    fused = convex_fusion(np.array([0.2, 0.5, 0.8]), np.array([3.0, 1.0, 2.0]), dense_weight=0.25)
    assert fused.tolist() == pytest.approx([0.75, 0.125, 0.625])
    assert DENSE_WEIGHT == 0.5
    assert convex_fusion(np.array([0.2, 0.5, 0.8]), np.array([3.0, 1.0, 2.0])).tolist() == pytest.approx(
        [0.5, 0.25, 0.75]
    )


def brute_min_max(values: list[float]) -> list[float]:
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
    fused = convex_fusion(np.array(dense), np.array(lexical), dense_weight=weight)
    expected = [
        weight * d + (1 - weight) * b for d, b in zip(brute_min_max(dense), brute_min_max(lexical), strict=True)
    ]
    assert fused.shape == (len(dense),)
    assert fused.tolist() == pytest.approx(expected, abs=1e-9)
    assert all(-1e-12 <= score <= 1 + 1e-12 for score in fused.tolist())


def test_a_constant_score_list_contributes_nothing() -> None:
    lexical = np.array([4.0, 0.0, 2.0])
    assert convex_fusion(np.full(3, 0.7), lexical, dense_weight=0.4).tolist() == pytest.approx([0.6, 0.0, 0.3])
    assert convex_fusion(np.full(3, 0.7), np.full(3, 2.0), dense_weight=0.4).tolist() == [0.0, 0.0, 0.0]
    assert convex_fusion(np.array([0.9]), np.array([3.0]), dense_weight=0.5).tolist() == [0.0]


def test_convex_fusion_of_no_candidates_is_empty() -> None:
    assert convex_fusion(np.zeros(0), np.zeros(0), dense_weight=0.5).size == 0


def test_min_max_scales_to_the_unit_interval() -> None:
    assert min_max(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(np.array([-1.0, -1.0])).tolist() == [0.0, 0.0]
    assert min_max(np.zeros(0)).size == 0
