"""Retrieval and abstention metrics for the evaluation command.

The retrieval metrics reproduce trec_eval (and so pytrec_eval) exactly, so
numbers from ``qa`` can be compared with published ones:

* documents are ranked by score, highest first, and equal scores are ordered by
  doc id *descending* (trec_eval sorts on ``(score, docno)`` in reverse);
* a document is relevant when its grade is above 0; unjudged documents count
  as grade 0;
* nDCG uses the grade itself as gain (not ``2**grade - 1``), a ``log2(rank + 1)``
  discount, and an ideal ranking built from every judged document of the query,
  both cut at the same depth (trec_eval's ``ndcg_cut_k``).

Queries in the qrels with no relevant document are left out of the scores,
because recall and nDCG are undefined for them and counting them as 0 would
punish the system for the judges' gap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]
"""Query id -> doc id -> relevance grade; a grade above 0 means relevant."""
Run = Mapping[str, Mapping[str, float]]
"""Query id -> doc id -> retrieval score; higher is better."""

DEFAULT_KS = (1, 5, 10)
RANK_CUTOFF = 10
"""The depth of the ``mrr@`` and ``ndcg@`` scores that :func:`evaluate` reports."""


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Order doc ids the way trec_eval does.

    Higher scores come first; equal scores are broken by doc id in descending
    code-point order (so ``"d9"`` before ``"d2"`` before ``"d10"``), which is
    what trec_eval's ``strcmp`` on UTF-8 doc ids gives.

    Args:
        scores: Doc id -> retrieval score.

    Returns:
        The doc ids, best first.

    Raises:
        ValueError: If a score is NaN, which has no place in an ordering.
    """
    if any(math.isnan(score) for score in scores.values()):
        raise ValueError("a retrieval score is NaN")
    return sorted(scores, key=lambda doc_id: (scores[doc_id], doc_id), reverse=True)


def recall_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """The fraction of the query's relevant documents found in the top ``k``.

    Args:
        ranking: Doc ids, best first.
        relevant: The query's judgments, doc id -> grade; grades above 0 count.
        k: How many top documents to look at.

    Returns:
        Recall in ``[0, 1]``; 0.0 when the query has no relevant document
        (as trec_eval reports it; :func:`evaluate` skips such queries).
    """
    found, wanted = _found_in_top(ranking, relevant, k)
    return found / wanted if wanted else 0.0


def capped_recall_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Recall with the denominator capped at ``k`` (BEIR's ``R_cap@k``).

    A question with twelve relevant paragraphs can find at most five in the
    top five; capped recall scores that 1.0 where plain recall stops at 5/12.
    With a single relevant document it equals plain recall.
    """
    found, wanted = _found_in_top(ranking, relevant, k)
    return found / min(k, wanted) if wanted else 0.0


def _found_in_top(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> tuple[int, int]:
    """How many relevant documents are in the top ``k``, and how many there are."""
    _check_depth(k)
    wanted = _relevant_ids(relevant)
    return sum(1 for doc_id in ranking[:k] if doc_id in wanted), len(wanted)


def reciprocal_rank_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """``1 / rank`` of the first relevant document within the top ``k``, else 0.

    Args:
        ranking: Doc ids, best first.
        relevant: The query's judgments, doc id -> grade; grades above 0 count.
        k: How many top documents to look at.

    Returns:
        The reciprocal rank in ``[0, 1]``.
    """
    _check_depth(k)
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if relevant.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranking: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` (trec_eval ``ndcg_cut_k``).

    Args:
        ranking: Doc ids, best first.
        relevant: The query's judgments, doc id -> grade; the grade is the gain
            and grades of 0 or below gain nothing.
        k: How many top documents to look at.

    Returns:
        nDCG in ``[0, 1]``; 0.0 when the query has no relevant document.
    """
    _check_depth(k)
    ideal = _dcg(sorted(relevant.values(), reverse=True)[:k])
    if ideal == 0.0:
        return 0.0
    return _dcg(relevant.get(doc_id, 0) for doc_id in ranking[:k]) / ideal


def evaluate(qrels: Qrels, run: Run, *, ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict[str, float]]:
    """Score every judged query of a run.

    Args:
        qrels: The judgments. Queries without a relevant document are skipped.
        run: The system's scores. Judged queries it lacks score 0 everywhere;
            queries it has that were never judged are ignored.
        ks: The depths at which recall is reported.

    Returns:
        Query id -> metric name -> value, with the names ``recall@k`` and
        ``recall_cap@k`` for each ``k`` in ``ks``, ``mrr@10`` and ``ndcg@10``.
    """
    for k in ks:
        _check_depth(k)
    return {
        query_id: _query_metrics(rank_documents(run.get(query_id, {})), judgments, ks)
        for query_id, judgments in qrels.items()
        if _relevant_ids(judgments)
    }


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Average each metric over the queries (the macro average trec_eval reports).

    Args:
        per_query: Query id -> metric name -> value, as :func:`evaluate` returns.

    Returns:
        Metric name -> mean value; empty when there are no queries.

    Raises:
        ValueError: If the queries do not all report the same metrics, since a
            mean over a subset of queries would silently mean something else.
    """
    names = {frozenset(metrics) for metrics in per_query.values()}
    if len(names) > 1:
        raise ValueError("queries report different metrics; cannot average them")
    columns: dict[str, list[float]] = {}
    for metrics in per_query.values():
        for name, value in metrics.items():
            columns.setdefault(name, []).append(value)
    return {name: math.fsum(values) / len(values) for name, values in columns.items()}


def abstention_scores(should_abstain: Mapping[str, bool], abstained: Mapping[str, bool]) -> dict[str, float]:
    """How well the system declines the questions it cannot answer.

    Abstaining is the positive class. Every ratio whose denominator is 0 is
    reported as 0.0 (e.g. precision when the system never abstained), so the
    result is always a plain number that can be averaged and printed.

    Args:
        should_abstain: Question id -> whether the question is unanswerable.
        abstained: Question id -> whether the system declined to answer.

    Returns:
        ``precision`` and ``recall`` of abstention, ``false_abstention_rate``
        (answerable questions declined / answerable questions) and
        ``missed_abstention_rate`` (unanswerable questions answered /
        unanswerable questions).

    Raises:
        ValueError: If the two mappings cover different questions.
    """
    if should_abstain.keys() != abstained.keys():
        raise ValueError("should_abstain and abstained must cover the same question ids")
    pairs = [(should_abstain[question], abstained[question]) for question in should_abstain]
    true_abstentions = sum(1 for should, did in pairs if should and did)
    false_abstentions = sum(1 for should, did in pairs if not should and did)
    missed_abstentions = sum(1 for should, did in pairs if should and not did)
    unanswerable = true_abstentions + missed_abstentions
    answerable = len(pairs) - unanswerable
    return {
        "precision": _ratio(true_abstentions, true_abstentions + false_abstentions),
        "recall": _ratio(true_abstentions, unanswerable),
        "false_abstention_rate": _ratio(false_abstentions, answerable),
        "missed_abstention_rate": _ratio(missed_abstentions, unanswerable),
    }


def _query_metrics(ranking: Sequence[str], judgments: Mapping[str, int], ks: Sequence[int]) -> dict[str, float]:
    metrics = {f"recall@{k}": recall_at(ranking, judgments, k) for k in ks}
    metrics.update({f"recall_cap@{k}": capped_recall_at(ranking, judgments, k) for k in ks})
    metrics[f"mrr@{RANK_CUTOFF}"] = reciprocal_rank_at(ranking, judgments, RANK_CUTOFF)
    metrics[f"ndcg@{RANK_CUTOFF}"] = ndcg_at(ranking, judgments, RANK_CUTOFF)
    return metrics


def _dcg(gains: Iterable[int]) -> float:
    # trec_eval gives documents graded 0 or below no gain at all (not a negative one).
    return math.fsum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1) if gain > 0)


def _relevant_ids(judgments: Mapping[str, int]) -> frozenset[str]:
    return frozenset(doc_id for doc_id, grade in judgments.items() if grade > 0)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _check_depth(k: int) -> None:
    if k < 1:
        raise ValueError(f"a cutoff must be at least 1, got {k}")
