"""Retrieval metrics against pytrec_eval, worked examples, and abstention scores."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.evaluation.metrics import (
    Qrels,
    Run,
    abstention_scores,
    capped_recall_at,
    evaluate,
    mean_metrics,
    ndcg_at,
    rank_documents,
    recall_at,
    reciprocal_rank_at,
)

TOLERANCE = 1e-6
TREC_MEASURES = {"recall_1", "recall_5", "recall_10", "ndcg_cut_10", "recip_rank"}
# Our name -> pytrec_eval's name, for the measures computed on the full run.
TREC_NAMES = {"recall@1": "recall_1", "recall@5": "recall_5", "recall@10": "recall_10", "ndcg@10": "ndcg_cut_10"}
# "d10" sorts before "d2" but after "d1", so ties exercise string, not numeric, order.
DOC_IDS = [f"d{number}" for number in range(25)]
QUERY_IDS = [f"q{number}" for number in range(6)]


# -- comparison with pytrec_eval ---------------------------------------------


def trec_scores(qrels: Qrels, run: Run) -> dict[str, dict[str, float]]:
    """pytrec_eval's per-query scores; it wants plain dicts, int grades and float scores."""
    trec_qrels = {query: {doc: int(grade) for doc, grade in docs.items()} for query, docs in qrels.items()}
    trec_run = {query: {doc: float(score) for doc, score in docs.items()} for query, docs in run.items()}
    result: dict[str, dict[str, float]] = pytrec_eval.RelevanceEvaluator(trec_qrels, TREC_MEASURES).evaluate(trec_run)
    return result


def truncated(run: Run, depth: int) -> dict[str, dict[str, float]]:
    """The run cut to its top ``depth`` documents, so pytrec_eval's uncut recip_rank becomes MRR@depth."""
    return {query: {doc: docs[doc] for doc in rank_documents(docs)[:depth]} for query, docs in run.items()}


def assert_matches_pytrec_eval(qrels: Qrels, run: Run) -> None:
    ours = evaluate(qrels, run)
    full = trec_scores(qrels, run)
    top_ten = trec_scores(qrels, truncated(run, 10))
    answerable = {query for query, docs in qrels.items() if any(grade > 0 for grade in docs.values())}
    assert set(ours) == answerable
    for query, metrics in ours.items():
        if query not in run:
            # pytrec_eval only scores queries the run has; we score the rest 0.
            assert query not in full
            assert all(value == 0.0 for value in metrics.values())
            continue
        for name, trec_name in TREC_NAMES.items():
            assert metrics[name] == pytest.approx(full[query][trec_name], abs=TOLERANCE), (query, name)
        assert metrics["mrr@10"] == pytest.approx(top_ten[query]["recip_rank"], abs=TOLERANCE), query
        # Independent of our own truncation: a first hit within 10 has reciprocal rank >= 1/10.
        uncut = full[query]["recip_rank"]
        assert metrics["mrr@10"] == pytest.approx(uncut if uncut >= 0.1 - 1e-12 else 0.0, abs=TOLERANCE)


@st.composite
def qrels_and_runs(draw: st.DrawFn) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """Graded qrels (0-2) and runs with tied scores, unjudged docs and missing or extra queries."""
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for query in QUERY_IDS:
        judged = draw(st.lists(st.sampled_from(DOC_IDS), unique=True, max_size=12))
        if judged or draw(st.booleans()):
            qrels[query] = {doc: draw(st.integers(0, 2)) for doc in judged}
        if draw(st.integers(0, 4)) > 0:  # about one query in five is missing from the run
            retrieved = draw(st.lists(st.sampled_from(DOC_IDS), unique=True, min_size=1, max_size=len(DOC_IDS)))
            # Few distinct score values, so ties are common.
            run[query] = {doc: draw(st.sampled_from([0.0, 0.5, 1.0, 1.5, -2.0])) for doc in retrieved}
    return qrels, run


@settings(max_examples=400, deadline=None)
@given(qrels_and_runs())
def test_evaluate_matches_pytrec_eval_on_generated_data(data: tuple[Qrels, Run]) -> None:
    qrels, run = data
    assert_matches_pytrec_eval(qrels, run)


@pytest.mark.parametrize("seed", range(20))
def test_evaluate_matches_pytrec_eval_on_long_random_runs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = [f"doc-{number}" for number in range(200)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for query in (f"query-{number}" for number in range(30)):
        judged = rng.choice(pool, size=int(rng.integers(1, 30)), replace=False)
        qrels[query] = {str(doc): int(rng.integers(0, 3)) for doc in judged}
        if rng.random() < 0.9:
            retrieved = rng.choice(pool, size=int(rng.integers(1, 100)), replace=False)
            # Rounding to one decimal makes ties; a few continuous scores keep them from dominating.
            scores = rng.normal(size=len(retrieved)).round(int(rng.integers(0, 3)))
            run[query] = {str(doc): float(score) for doc, score in zip(retrieved, scores, strict=True)}
    run["never-judged"] = {"doc-1": 1.0}
    assert_matches_pytrec_eval(qrels, run)


def test_ties_are_broken_like_pytrec_eval() -> None:
    docs = ["d10", "d9", "d2", "a", "B"]
    for relevant in docs:
        run = {"q": dict.fromkeys(docs, 1.0)}
        expected = 1.0 / (rank_documents(run["q"]).index(relevant) + 1)
        assert trec_scores({"q": {relevant: 1}}, run)["q"]["recip_rank"] == pytest.approx(expected)


# -- worked examples -----------------------------------------------------------


def test_rank_documents_orders_by_score_then_doc_id_descending() -> None:
    scores = {"d2": 1.0, "d10": 1.0, "d9": 1.0, "a": 2.0, "z": -1.0}
    assert rank_documents(scores) == ["a", "d9", "d2", "d10", "z"]


def test_rank_documents_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rank_documents({"a": math.nan})


def test_single_relevant_document_at_rank_three() -> None:
    ranking = ["x", "y", "hit", "z"]
    relevant = {"hit": 1, "x": 0}
    assert reciprocal_rank_at(ranking, relevant, 10) == pytest.approx(1 / 3)
    assert ndcg_at(ranking, relevant, 10) == pytest.approx(0.5)  # 1/log2(4) over an ideal of 1
    assert recall_at(ranking, relevant, 1) == 0.0
    assert recall_at(ranking, relevant, 3) == 1.0
    assert reciprocal_rank_at(ranking, relevant, 2) == 0.0
    assert ndcg_at(ranking, relevant, 2) == 0.0


def test_graded_ndcg_uses_linear_gain() -> None:
    # DCG = 1/log2(2) + 2/log2(4) = 2; ideal = 2/log2(2) + 1/log2(3).
    ranking = ["b", "x", "a"]
    assert ndcg_at(ranking, {"a": 2, "b": 1}, 10) == pytest.approx(2 / (2 + 1 / math.log2(3)))


def test_ideal_ranking_is_cut_at_the_same_depth() -> None:
    # Two relevant docs, k = 1: the ideal is one perfect hit, so a hit at rank 1 scores 1.
    assert ndcg_at(["a", "b"], {"a": 1, "b": 1}, 1) == 1.0
    assert recall_at(["a", "b"], {"a": 1, "b": 1}, 1) == 0.5


def test_unjudged_and_non_relevant_documents_gain_nothing() -> None:
    assert ndcg_at(["u", "n", "r"], {"n": 0, "r": 1}, 10) == pytest.approx(0.5)
    assert reciprocal_rank_at(["u", "n", "r"], {"n": 0, "r": 1}, 10) == pytest.approx(1 / 3)


def test_negative_grades_gain_nothing_like_pytrec_eval() -> None:
    qrels = {"q": {"a": -1, "b": 1, "c": 3}}
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    expected = (1 / math.log2(3) + 3 / 2) / (3 + 1 / math.log2(3))
    assert evaluate(qrels, run)["q"]["ndcg@10"] == pytest.approx(expected)
    assert trec_scores(qrels, run)["q"]["ndcg_cut_10"] == pytest.approx(expected)


def test_queries_without_relevant_documents_score_zero() -> None:
    assert recall_at(["a"], {"a": 0}, 5) == 0.0
    assert ndcg_at(["a"], {}, 5) == 0.0
    assert reciprocal_rank_at([], {"a": 1}, 5) == 0.0


@pytest.mark.parametrize("k", [0, -1])
def test_cutoffs_must_be_positive(k: int) -> None:
    with pytest.raises(ValueError, match="cutoff"):
        recall_at(["a"], {"a": 1}, k)
    with pytest.raises(ValueError, match="cutoff"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ks=(1, k))


def test_evaluate_skips_unanswerable_queries_and_zeroes_missing_ones() -> None:
    qrels = {"found": {"a": 1, "b": 0}, "missing": {"c": 2}, "no-relevant": {"d": 0}, "empty": {}}
    run = {"found": {"b": 3.0, "a": 2.0}, "no-relevant": {"d": 1.0}, "unjudged": {"a": 1.0}}
    per_query = evaluate(qrels, run, ks=(1, 2))
    assert set(per_query) == {"found", "missing"}
    assert per_query["found"] == pytest.approx(
        {
            "recall@1": 0.0,
            "recall@2": 1.0,
            "recall_cap@1": 0.0,
            "recall_cap@2": 1.0,
            "mrr@10": 0.5,
            "ndcg@10": 1 / math.log2(3),
        }
    )
    assert set(per_query["missing"].values()) == {0.0}


def test_capped_recall_counts_at_most_k_relevant() -> None:
    relevant = {f"d{i}": 1 for i in range(12)}
    ranking = ["d0", "x", "d1", "d2", "d3", "d4"]
    assert capped_recall_at(ranking, relevant, 5) == pytest.approx(4 / 5)
    assert recall_at(ranking, relevant, 5) == pytest.approx(4 / 12)
    assert capped_recall_at(["x", "d3"], {"d3": 1}, 2) == recall_at(["x", "d3"], {"d3": 1}, 2) == 1.0


def test_mean_metrics_averages_over_queries() -> None:
    per_query = {"q1": {"recall@1": 1.0, "mrr@10": 1.0}, "q2": {"recall@1": 0.0, "mrr@10": 0.5}}
    assert mean_metrics(per_query) == {"recall@1": 0.5, "mrr@10": 0.75}
    assert mean_metrics({}) == {}


def test_mean_metrics_refuses_mismatched_metrics() -> None:
    with pytest.raises(ValueError, match="different metrics"):
        mean_metrics({"q1": {"recall@1": 1.0}, "q2": {"mrr@10": 1.0}})


def test_mean_metrics_matches_pytrec_eval_aggregate() -> None:
    qrels = {"q1": {"a": 1, "b": 2}, "q2": {"c": 1}, "q3": {"d": 1}}
    run: Mapping[str, Mapping[str, float]] = {"q1": {"b": 1.0, "x": 2.0}, "q2": {"x": 1.0, "c": 0.5}, "q3": {"d": 9.0}}
    trec = trec_scores(qrels, run)
    means = mean_metrics(evaluate(qrels, run))
    for name, trec_name in TREC_NAMES.items():
        expected = pytrec_eval.compute_aggregated_measure(trec_name, [scores[trec_name] for scores in trec.values()])
        assert means[name] == pytest.approx(expected, abs=TOLERANCE)


# -- abstention ------------------------------------------------------------------


def test_abstention_scores_count_each_outcome() -> None:
    should = {"u1": True, "u2": True, "u3": True, "a1": False, "a2": False, "a3": False, "a4": False}
    did = {"u1": True, "u2": True, "u3": False, "a1": True, "a2": False, "a3": False, "a4": False}
    assert abstention_scores(should, did) == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "false_abstention_rate": 1 / 4, "missed_abstention_rate": 1 / 3}
    )


def test_abstention_scores_perfect_system() -> None:
    labels = {"u": True, "a": False}
    assert abstention_scores(labels, labels) == {
        "precision": 1.0,
        "recall": 1.0,
        "false_abstention_rate": 0.0,
        "missed_abstention_rate": 0.0,
    }


def test_abstention_zero_denominators_give_zero() -> None:
    # Never abstained and nothing was unanswerable: precision and recall are 0/0.
    answerable = {"a1": False, "a2": False}
    assert abstention_scores(answerable, answerable) == dict.fromkeys(
        ["precision", "recall", "false_abstention_rate", "missed_abstention_rate"], 0.0
    )
    assert abstention_scores({}, {})["precision"] == 0.0
    # All unanswerable, none abstained: false_abstention_rate has no answerable questions.
    assert abstention_scores({"u": True}, {"u": False}) == {
        "precision": 0.0,
        "recall": 0.0,
        "false_abstention_rate": 0.0,
        "missed_abstention_rate": 1.0,
    }


def test_abstention_scores_require_the_same_questions() -> None:
    with pytest.raises(ValueError, match="same question ids"):
        abstention_scores({"a": True}, {"b": True})
