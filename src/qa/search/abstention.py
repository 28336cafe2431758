"""When to say the corpus has no answer, rather than quote the nearest passage.

The thresholds are calibrated on labelled questions (``qa eval``, README "Abstention").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qa.index.lexical import tokenize
from qa.index.store import PassageStore
from qa.records import Hit
from qa.search.evidence import evidence_score

NOT_IN_CORPUS = "These articles do not answer that question. The nearest passages are listed below."


@dataclass(frozen=True)
class Abstention:
    """When to say the corpus has no answer.

    A question is answered when its best evidence sentence is at least
    ``min_evidence`` similar to it and, with ``require_specific_terms``, every
    number and name it asks about ("2023", "Hanawon") occurs somewhere in the
    corpus: a question about something the articles never mention can still
    sound close to them.
    """

    min_evidence: float = 0.0
    require_specific_terms: bool = False


NEVER_ABSTAIN = Abstention()
# Thresholds fitted by `qa eval --questions eval/questions.jsonl` on the bundled
# corpus (see README, "Abstention"); other models get none until calibrated.
CALIBRATED = {
    "sentence-transformers/all-MiniLM-L6-v2": Abstention(min_evidence=0.28, require_specific_terms=True),
}


def calibrated_abstention(model: str) -> Abstention:
    """The abstention thresholds measured for ``model``, or never abstaining if there are none."""
    return CALIBRATED.get(model, NEVER_ABSTAIN)


def is_answerable(store: PassageStore, question: str, hits: Sequence[Hit], abstention: Abstention) -> bool:
    """Whether the hits answer the question, by ``abstention``'s rules."""
    if max(evidence_score(hit) for hit in hits) < abstention.min_evidence:
        return False
    if abstention.require_specific_terms:
        terms = specific_terms(question)
        return store.known_terms(terms) == frozenset(terms)
    return True


def specific_terms(question: str) -> list[str]:
    """The numbers and capitalised names of a question, as BM25 tokens ("2023", "hanawon").

    The first word is left out: it is capitalised because it starts the sentence.
    """
    words = re.findall(r"[\w'’-]+", question)[1:]
    wanted = [word for word in words if word[0].isdigit() or word[0].isupper()]
    return [token for tokens in tokenize(wanted) for token in tokens] if wanted else []
