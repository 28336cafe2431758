"""Re-ranking hybrid search's best candidates by their best sentence as well as the passage ("MaxP").

A paragraph that answers in one sentence among others on the same subject can
rise. Depth and weight were chosen on SciFact's train split
(benchmarks/rerank.py); the corpus questions played no part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from qa.records import Hit
from qa.search.evidence import evidence_score
from qa.search.fusion import min_max

RERANK_DEPTH = 20
SENTENCE_WEIGHT = 0.5


def rerank_by_evidence(hits: Sequence[Hit], *, weight: float = SENTENCE_WEIGHT) -> list[Hit]:
    """Hits ordered by ``(1 - weight) * fused score + weight * evidence score``, ranks and scores renewed.

    Both scores are min-max scaled over ``hits``, as in the fusion of the two
    retrievers; a hit without evidence counts as the least similar. Ties keep
    the earlier hit first.
    """
    if not hits:
        return []
    fused = min_max(np.array([hit.score for hit in hits], dtype=np.float64))
    sentence = min_max(np.array([evidence_score(hit) for hit in hits], dtype=np.float64))
    scores = (1 - weight) * fused + weight * sentence
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    return [dataclasses.replace(hits[i], rank=rank, score=float(scores[i])) for rank, i in enumerate(order, start=1)]
