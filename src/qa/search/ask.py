"""Asking: a question in, cited passages and an extractive answer (or an honest abstention) out."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from qa.embed.encoder import Encoder
from qa.index.store import PassageStore, SearchFilter, check_model
from qa.records import SearchResult
from qa.search.abstention import NOT_IN_CORPUS, Abstention, calibrated_abstention, is_answerable
from qa.search.answer import compose_answer
from qa.search.evidence import SentenceMemory, attach_evidence
from qa.search.modes import Mode, parse_mode
from qa.search.query import embed_query
from qa.search.question import EmptyQuestionError, normalize_question
from qa.search.retrieval import retrieve


def ask(
    store: PassageStore,
    question: str,
    *,
    encoder: Encoder,
    k: int = 5,
    mode: Mode = "hybrid",
    history: Sequence[str] = (),
    where: SearchFilter | None = None,
    abstention: Abstention | None = None,
    sentences: SentenceMemory | None = None,
) -> SearchResult:
    """Search, pick the evidence in each hit, and answer (or abstain) from it.

    The question and the earlier ones are normalised first (``normalize_question``:
    control characters out, whitespace collapsed, cut at ``MAX_QUESTION_CHARS``),
    so every front end asks the same question for the same text. ``abstention``
    defaults to the thresholds calibrated for the encoder's model; ``sentences``
    (see ``retrieve``) is worth passing when many questions are asked.

    Raises:
        EmptyQuestionError: Nothing is left of the question to ask.
        QAError: The mode is unknown or the encoder is not the index's model.
    """
    question = normalize_question(question).text
    mode = parse_mode(mode)
    check_model(store.model, encoder.name)
    history = _normalized_history(history)
    if abstention is None:
        abstention = calibrated_abstention(encoder.name)
    if sentences is None:
        sentences = SentenceMemory()
    query_vector = embed_query(encoder, question, history)
    hits = retrieve(
        store,
        question,
        encoder=encoder,
        k=k,
        mode=mode,
        history=history,
        where=where,
        query_vector=query_vector,
        sentences=sentences,
    )
    if not hits:
        return SearchResult(query=question, hits=(), answerable=False, answer=NOT_IN_CORPUS)
    if mode != "hybrid":
        hits = attach_evidence(hits, query_vector, functools.partial(sentences.embed, encoder=encoder))
    if not is_answerable(store, question, hits, abstention):
        return SearchResult(query=question, hits=tuple(hits), answerable=False, answer=NOT_IN_CORPUS)
    return SearchResult(query=question, hits=tuple(hits), answerable=True, answer=compose_answer(hits))


def _normalized_history(history: Sequence[str]) -> list[str]:
    """Earlier questions, normalised like the question; empty ones carry nothing and are left out."""
    turns = []
    for turn in history:
        try:
            turns.append(normalize_question(turn).text)
        except EmptyQuestionError:
            continue
    return turns
