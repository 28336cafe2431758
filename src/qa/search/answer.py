"""The extractive answer: evidence sentences of the best passages, each cited as ``[rank]``.

No language model writes anything: the answer is made of sentences from the articles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qa.records import Hit
from qa.search.evidence import evidence_score

# Answer sentences: evidence within this margin of the best evidence.
ANSWER_MARGIN = 0.25
ANSWER_SENTENCES = 3


def compose_answer(hits: Sequence[Hit]) -> str:
    """Evidence sentences of up to three passages, in rank order, each cited as ``[rank]``.

    Rank order follows both retrievers' agreement, which is steadier than one
    sentence's similarity; a passage whose evidence falls more than
    ``ANSWER_MARGIN`` below the best evidence is left out of the answer.
    """
    with_evidence = [hit for hit in hits if hit.evidence]
    if not with_evidence:
        return ""
    floor = max(evidence_score(hit) for hit in with_evidence) - ANSWER_MARGIN
    parts: list[str] = []
    seen: list[set[str]] = []
    for hit in with_evidence:
        assert hit.evidence is not None
        words = set(re.findall(r"\w+", hit.evidence.text.lower()))
        if hit.evidence.score < floor or any(len(words & other) >= 0.8 * len(words) for other in seen):
            continue  # too weak, or the same sentence from a copy of the article
        seen.append(words)
        parts.append(f"{hit.evidence.text} [{hit.rank}]")
        if len(parts) == ANSWER_SENTENCES:
            break
    return " ".join(parts)
