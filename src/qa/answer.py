"""From retrieved passages to an answer: evidence sentences, an extractive answer, or an honest abstention.

No language model writes anything: the answer is made of sentences from the
articles, each followed by ``[n]``, the rank of the passage it came from.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.encoder import Encoder
from qa.index import PassageIndex, embed_query
from qa.lexical import tokenize
from qa.question import EmptyQuestionError, normalize_question
from qa.records import Evidence, Hit, SearchResult
from qa.retrieve import Mode, SearchFilter, min_max
from qa.split import split_sentences

NOT_IN_CORPUS = "These articles do not answer that question. The nearest passages are listed below."
# A second sentence joins the evidence when it scores nearly as well as the best one.
EVIDENCE_PAIR_MARGIN = 0.05
# Answer sentences: evidence within this margin of the best evidence.
ANSWER_MARGIN = 0.25
ANSWER_SENTENCES = 3
# Hybrid search re-ranks its best candidates by their best sentence as well as
# the passage (as "MaxP" does), so a paragraph that answers in one sentence among
# others on the same subject can rise. Depth and weight were chosen on SciFact's
# train split (benchmarks/rerank.py); the corpus questions played no part.
RERANK_DEPTH = 20
SENTENCE_WEIGHT = 0.5


@dataclass(frozen=True)
class Abstention:
    """When to say the corpus has no answer; calibrated on labelled questions (``qa eval``).

    A question is answered when its best evidence sentence is at least
    ``min_evidence`` similar to it and, with ``require_specific_terms``, every
    number and name it asks about ("2023", "Hanawon") occurs somewhere in the
    corpus: a question about something the articles never mention can still
    sound close to them.
    """

    min_evidence: float = 0.0
    require_specific_terms: bool = False


DEFAULT_ABSTENTION = Abstention()


def ask(
    index: PassageIndex,
    question: str,
    *,
    encoder: Encoder,
    k: int = 5,
    mode: Mode = "hybrid",
    history: Sequence[str] = (),
    where: SearchFilter | None = None,
    abstention: Abstention = DEFAULT_ABSTENTION,
) -> SearchResult:
    """Search, pick the evidence in each hit, and answer (or abstain) from it.

    The question and the earlier ones are normalised first (``normalize_question``:
    control characters out, whitespace collapsed, cut at ``MAX_QUESTION_CHARS``),
    so every front end asks the same question for the same text.

    Raises:
        EmptyQuestionError: Nothing is left of the question to ask.
    """
    question = normalize_question(question).text
    history = _normalized_history(history)
    query_vector = embed_query(encoder, question, history)
    hits = retrieve(
        index, question, encoder=encoder, k=k, mode=mode, history=history, where=where, query_vector=query_vector
    )
    if not hits:
        return SearchResult(query=question, hits=(), answerable=False, answer=NOT_IN_CORPUS)
    if mode != "hybrid":
        hits = attach_evidence(hits, query_vector, functools.partial(index.embed_sentences, encoder=encoder))
    if not is_answerable(index, question, hits, abstention):
        return SearchResult(query=question, hits=tuple(hits), answerable=False, answer=NOT_IN_CORPUS)
    return SearchResult(query=question, hits=tuple(hits), answerable=True, answer=compose_answer(hits))


def retrieve(
    index: PassageIndex,
    question: str,
    *,
    encoder: Encoder,
    k: int = 5,
    mode: Mode = "hybrid",
    history: Sequence[str] = (),
    where: SearchFilter | None = None,
    query_vector: np.ndarray | None = None,
) -> list[Hit]:
    """The index's ``k`` best passages; in hybrid mode, re-ranked by their best sentence.

    Hybrid search takes ``RERANK_DEPTH`` candidates, gives each its evidence
    sentence and orders them by ``rerank_by_evidence``. The other modes are the
    plain retrievers, without evidence, so they can be compared with it.
    """
    if mode == "hybrid" and query_vector is None:
        query_vector = embed_query(encoder, question, history)  # the evidence needs it too
    hits = index.search(
        question,
        encoder=encoder,
        k=max(k, RERANK_DEPTH) if mode == "hybrid" else k,
        mode=mode,
        history=history,
        where=where,
        query_vector=query_vector,
    )
    if mode != "hybrid" or query_vector is None:
        return hits
    embed = functools.partial(index.embed_sentences, encoder=encoder)
    return rerank_by_evidence(attach_evidence(hits, query_vector, embed))[:k]


def rerank_by_evidence(hits: Sequence[Hit], *, weight: float = SENTENCE_WEIGHT) -> list[Hit]:
    """Hits ordered by ``(1 - weight) * fused score + weight * evidence score``, ranks and scores renewed.

    Both scores are min-max scaled over ``hits``, as in the fusion of the two
    retrievers; a hit without evidence counts as the least similar. Ties keep
    the earlier hit first.
    """
    if not hits:
        return []
    fused = min_max(np.array([hit.score for hit in hits], dtype=np.float64))
    sentence = min_max(np.array([_evidence_score(hit) for hit in hits], dtype=np.float64))
    scores = (1 - weight) * fused + weight * sentence
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    return [dataclasses.replace(hits[i], rank=rank, score=float(scores[i])) for rank, i in enumerate(order, start=1)]


def _normalized_history(history: Sequence[str]) -> list[str]:
    """Earlier questions, normalised like the question; empty ones carry nothing and are left out."""
    turns = []
    for turn in history:
        try:
            turns.append(normalize_question(turn).text)
        except EmptyQuestionError:
            continue
    return turns


def is_answerable(index: PassageIndex, question: str, hits: Sequence[Hit], abstention: Abstention) -> bool:
    """Whether the hits answer the question, by ``abstention``'s rules."""
    if max(_evidence_score(hit) for hit in hits) < abstention.min_evidence:
        return False
    if abstention.require_specific_terms:
        vocabulary = index.vocabulary()
        return all(term in vocabulary for term in specific_terms(question))
    return True


def specific_terms(question: str) -> list[str]:
    """The numbers and capitalised names of a question, as BM25 tokens ("2023", "hanawon").

    The first word is left out: it is capitalised because it starts the sentence.
    """
    words = re.findall(r"[\w'’-]+", question)[1:]
    wanted = [word for word in words if word[0].isdigit() or word[0].isupper()]
    return [token for tokens in tokenize(wanted) for token in tokens] if wanted else []


def _evidence_score(hit: Hit) -> float:
    return hit.evidence.score if hit.evidence else -1.0


def attach_evidence(
    hits: Sequence[Hit], query_vector: np.ndarray, embed: Callable[[list[str]], np.ndarray]
) -> list[Hit]:
    """Give each hit the sentence (or two adjacent ones) of its passage closest to the question.

    ``embed`` turns sentences into unit vectors with the index's model.
    """
    spans = [split_sentences(hit.passage.text) for hit in hits]
    sentences = [hit.passage.text[s:e] for hit, hit_spans in zip(hits, spans, strict=True) for s, e in hit_spans]
    if not sentences:
        return list(hits)
    scores = embed(sentences) @ query_vector
    with_evidence = []
    offset = 0
    for hit, hit_spans in zip(hits, spans, strict=True):
        hit_scores = scores[offset : offset + len(hit_spans)]
        offset += len(hit_spans)
        evidence = best_evidence(hit.passage.text, hit_spans, hit_scores) if hit_spans else None
        with_evidence.append(dataclasses.replace(hit, evidence=evidence))
    return with_evidence


def best_evidence(text: str, spans: Sequence[tuple[int, int]], scores: np.ndarray) -> Evidence:
    """The best-scoring sentence, joined by a neighbour that scores within ``EVIDENCE_PAIR_MARGIN``."""
    best = int(np.argmax(scores))
    start, end = spans[best]
    neighbours = [i for i in (best - 1, best + 1) if 0 <= i < len(spans)]
    close = [i for i in neighbours if scores[i] >= scores[best] - EVIDENCE_PAIR_MARGIN]
    if close:
        partner = max(close, key=lambda i: scores[i])
        start, end = min(start, spans[partner][0]), max(end, spans[partner][1])
    return Evidence(text=text[start:end], start=start, end=end, score=float(scores[best]))


def compose_answer(hits: Sequence[Hit]) -> str:
    """Evidence sentences of up to three passages, in rank order, each cited as ``[rank]``.

    Rank order follows both retrievers' agreement, which is steadier than one
    sentence's similarity; a passage whose evidence falls more than
    ``ANSWER_MARGIN`` below the best evidence is left out of the answer.
    """
    with_evidence = [hit for hit in hits if hit.evidence]
    if not with_evidence:
        return ""
    floor = max(_evidence_score(hit) for hit in with_evidence) - ANSWER_MARGIN
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


# Thresholds fitted by `qa eval --questions eval/questions.jsonl` on the bundled
# corpus (see README, "Abstention"); other models get none until calibrated.
CALIBRATED = {
    "sentence-transformers/all-MiniLM-L6-v2": Abstention(min_evidence=0.28, require_specific_terms=True),
}


def calibrated_abstention(model: str) -> Abstention:
    """The abstention thresholds measured for ``model``, or never abstaining if there are none."""
    return CALIBRATED.get(model, DEFAULT_ABSTENTION)
