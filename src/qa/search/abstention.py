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
from qa.search.spelling import ready_vocabulary

NOT_IN_CORPUS = "These articles do not answer that question. The nearest passages are listed below."
EMPTY_INDEX = "The index holds no articles yet: add some, then ask again."


@dataclass(frozen=True)
class Abstention:
    """When to say the corpus has no answer.

    A question is answered when its best evidence sentence is at least
    ``min_evidence`` similar to it and, with ``require_specific_terms``, every
    number and name it asks about ("2023", "Hanawon") occurs somewhere in the
    corpus: a question about something the articles never mention can still
    sound close to them. A question with at least ``unfamiliar_share`` of its
    content words (with its earlier turns') nowhere in the corpus ("the
    weather in Seoul tomorrow") is on another subject unless its evidence is
    at least ``min_evidence_unfamiliar`` similar: a passage on Seoul is near it,
    but does not answer it. When the reader has read the hits, one of them must
    also score at least ``min_reader_score`` (the reader's "no answer", calibrated
    on held-out SQuAD articles).
    """

    min_evidence: float = 0.0
    require_specific_terms: bool = False
    unfamiliar_share: float = 1.0
    min_evidence_unfamiliar: float = 0.0
    min_reader_score: float = float("-inf")


NEVER_ABSTAIN = Abstention()
# Thresholds fitted by `qa eval --questions eval/questions.jsonl` on the bundled
# corpus (see README, "Abstention"); other models get none until calibrated.
CALIBRATED = {
    "sentence-transformers/all-MiniLM-L6-v2": Abstention(
        min_evidence=0.28, require_specific_terms=True, unfamiliar_share=1 / 3, min_evidence_unfamiliar=0.40
    ),
}


# With the reader, its "no answer" replaces the similarity threshold and the rule on unknown
# names (which refused "Loas" and "Moosan"); the rule on questions about another subject stays.
# min_reader_score: the highest threshold at which at most 5% of the answerable questions of the
# held-out SQuAD dev articles abstain (4.3%; benchmarks/reader.py, README "The reader").
READER_CALIBRATED = {
    "qa-reader-minilm-l6-squad": Abstention(
        unfamiliar_share=1 / 3, min_evidence_unfamiliar=0.40, min_reader_score=-2.5
    ),
}


def calibrated_abstention(model: str, *, reader: str | None = None) -> Abstention:
    """The abstention thresholds measured for ``model`` (and ``reader``, if one reads), else never abstaining."""
    if reader is not None:
        return READER_CALIBRATED.get(reader, NEVER_ABSTAIN)
    return CALIBRATED.get(model, NEVER_ABSTAIN)


def is_answerable(
    store: PassageStore, question: str, hits: Sequence[Hit], abstention: Abstention, *, history: Sequence[str] = ()
) -> bool:
    """Whether the hits answer the question (asked after ``history``), by ``abstention``'s rules."""
    if not is_close_enough(hits, abstention):
        return False
    read = [hit.reader_score for hit in hits if hit.reader_score is not None]
    if read and max(read) < abstention.min_reader_score:
        return False
    best = max(evidence_score(hit) for hit in hits)
    if best < abstention.min_evidence_unfamiliar and unfamiliar_share(store, [*history, question]) >= (
        abstention.unfamiliar_share
    ):
        return False
    if abstention.require_specific_terms:
        return not unknown_names(store, question)
    return True


# Words of a question that say nothing of its subject, though BM25 keeps them.
QUESTION_WORDS = "what how why who whom whose which when where much many"


def unfamiliar_share(store: PassageStore, texts: Sequence[str]) -> float:
    """The share of the content words (BM25 tokens) of ``texts`` that occur nowhere in the corpus; 0 with none.

    Question words ("what", "how", "much") are left out: they say nothing of the subject.
    """
    asking = set(tokenize([QUESTION_WORDS])[0])
    tokens = [token for tokens in tokenize(list(texts)) for token in tokens if token not in asking]
    if not tokens:
        return 0.0
    known = store.known_terms(tokens)
    return sum(token not in known for token in tokens) / len(tokens)


def is_close_enough(hits: Sequence[Hit], abstention: Abstention) -> bool:
    """Whether the best evidence sentence is at least ``abstention.min_evidence`` similar to the question."""
    return bool(hits) and max(evidence_score(hit) for hit in hits) >= abstention.min_evidence


def unknown_names(store: PassageStore, question: str) -> list[str]:
    """The numbers and names of ``question`` that occur nowhere in the corpus, in any spelling.

    A name counts as known when its BM25 tokens all occur in the corpus or its
    metadata, or when it is a spelling variant of a corpus word
    (``qa.search.spelling``: "Jihyun" for "Ji-hyun", "Yojong" for "Yo Jong",
    "Nroth" for "North"); numbers must match exactly.
    """
    unknown = []
    for word in specific_words(question):
        tokens = [token for tokens in tokenize([word]) for token in tokens]
        if store.known_terms(tokens) == frozenset(tokens):
            continue
        # A large index's spelling may not be read yet (``ready_vocabulary``): then only BM25's words count.
        vocabulary = ready_vocabulary(store)
        if vocabulary is not None and (word in vocabulary or vocabulary.closest(word) is not None):
            continue
        unknown.append(word)
    return unknown


def specific_words(question: str) -> list[str]:
    """The numbers and capitalised words of a question after its first word ("2023", "Hanawon")."""
    return [word for word in re.findall(r"[\w'’-]+", question)[1:] if word[0].isdigit() or word[0].isupper()]


def specific_terms(question: str) -> list[str]:
    """The numbers and capitalised names of a question, as BM25 tokens ("2023", "hanawon").

    The first word is left out: it is capitalised because it starts the sentence.
    """
    wanted = specific_words(question)
    return [token for tokens in tokenize(wanted) for token in tokens] if wanted else []
