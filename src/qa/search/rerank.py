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


# A follow-up's best hits (ranked with its earlier turns) are re-ordered so that its new aspect
# leads: how well their best sentence answers the follow-up alone counts for, being the passage
# that best answers the previous question (what the reader has just seen) against, and staying in
# the article the conversation is about for. Chosen on eval/conversations.jsonl (README, "Follow-ups").
FOLLOW_UP_DEPTH = 10
FOLLOW_UP_WEIGHT = 0.5
ANSWERED_PENALTY = 0.3
SAME_ARTICLE_BONUS = 0.5


def rerank_follow_up(
    hits: Sequence[Hit],
    aspect: Sequence[Hit],
    answered: Sequence[Hit],
    *,
    depth: int = FOLLOW_UP_DEPTH,
    weight: float = FOLLOW_UP_WEIGHT,
    answered_penalty: float = ANSWERED_PENALTY,
    same_article: float = SAME_ARTICLE_BONUS,
) -> list[Hit]:
    """A follow-up's hits with the best ``depth`` re-ordered so that the one answering its new aspect leads.

    ``hits`` are ranked with the earlier turns, which give the follow-up its
    subject ("Lim Ji-hyun") and so favour the passage that answered them;
    ``aspect`` are the same hits with evidence scored against the follow-up
    alone ("And what about their families?"), ``answered`` against the
    previous question alone. The ``depth`` best hits are re-ordered by
    ``(1 - weight) * score + weight * aspect evidence`` (both min-max scaled
    over them), less ``answered_penalty`` for the hit whose evidence best
    answers the previous question, plus ``same_article`` for a passage of the
    best hit's article, the one the conversation is about; below them the
    order stays. Each hit keeps its evidence for the whole conversation.
    """
    top, rest = list(hits[:depth]), list(hits[depth:])
    if not top:
        return []
    score = min_max(np.array([hit.score for hit in top], dtype=np.float64))
    own = min_max(np.array([evidence_score(hit) for hit in aspect[: len(top)]], dtype=np.float64))
    previous = np.array([evidence_score(hit) for hit in answered[: len(top)]], dtype=np.float64)
    led = np.arange(len(top)) == int(np.argmax(previous))
    article = np.array([hit.passage.doc_id == top[0].passage.doc_id for hit in top])
    scores = (1 - weight) * score + weight * own - answered_penalty * led + same_article * article
    order = sorted(range(len(top)), key=lambda i: (-scores[i], i))
    ranked = [top[i] for i in order] + rest
    return [dataclasses.replace(hit, rank=rank) for rank, hit in enumerate(ranked, start=1)]
