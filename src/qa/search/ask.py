"""Asking: a question in, cited passages and an extractive answer (or an honest abstention) out."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from qa.embed.encoder import Encoder
from qa.index.store import PassageStore, SearchFilter, check_model
from qa.reader.model import PassageReader
from qa.records import SearchResult
from qa.search.abstention import (
    EMPTY_INDEX,
    NOT_IN_CORPUS,
    Abstention,
    calibrated_abstention,
    is_answerable,
    is_close_enough,
)
from qa.search.answer import asks_for_several_points, compose_answer
from qa.search.evidence import SentenceMemory, attach_evidence, sentence_embedder
from qa.search.filters import check_filter, nothing_matches
from qa.search.modes import Mode, parse_mode
from qa.search.query import embed_turns, lexical_query
from qa.search.question import EmptyQuestionError, normalize_question
from qa.search.reading import READ_DEPTH, best_answer
from qa.search.rerank import FOLLOW_UP_DEPTH, FOLLOW_UP_WEIGHT, rerank_follow_up
from qa.search.retrieval import both_candidates, retrieve
from qa.search.spelling import dictionary, question_corrections, suggested_question


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
    reader: PassageReader | None = None,
    read_depth: int = READ_DEPTH,
) -> SearchResult:
    """Search, pick the evidence in each hit, and answer (or abstain) from it.

    The question and the earlier ones are normalised first (``normalize_question``:
    control characters out, whitespace collapsed, cut at ``MAX_QUESTION_CHARS``),
    so every front end asks the same question for the same text. ``abstention``
    defaults to the thresholds calibrated for the encoder's model; ``sentences``
    (see ``retrieve``) is worth passing when many questions are asked. ``reader``, in
    hybrid mode, re-ranks the best candidates, decides abstention with its "no answer"
    and gives the short answer the reply leads with; it reads the ``read_depth`` best.

    Raises:
        EmptyQuestionError: Nothing is left of the question to ask.
        QAError: The mode is unknown, the encoder is not the index's model, or the
            filter names what the index does not hold (``check_filter``).
    """
    asked = normalize_question(question).text
    mode = parse_mode(mode)
    check_model(store.model, encoder.name)
    check_filter(store, where)
    history = _normalized_history(history)
    if mode != "hybrid":
        reader = None
    if abstention is None:
        abstention = calibrated_abstention(encoder.name, reader=reader.name if reader else None)
    if sentences is None:
        sentences = SentenceMemory()
    # A misspelled or differently written name ("Kim Yojong") matches nothing in BM25 and little in
    # the vectors: the question is asked in the corpus's spelling, and the reply says so.
    corrected = question_corrections(store, asked, is_word=dictionary(encoder))
    question = suggested_question(asked, corrected) if corrected else asked
    query_vector, turn_vectors = embed_turns(encoder, question, history)
    lexical = dense = None
    if mode == "hybrid":
        lexical, dense = both_candidates(store, lexical_query(question, history), query_vector, where=where)
    follow_up = bool(history) and mode == "hybrid" and FOLLOW_UP_WEIGHT > 0
    hits = retrieve(
        store,
        question,
        encoder=encoder,
        k=max(k, FOLLOW_UP_DEPTH) if follow_up else k,
        mode=mode,
        history=history,
        where=where,
        query_vector=query_vector,
        sentences=sentences,
        reader=reader,
        read_depth=read_depth,
        lexical=lexical,
        dense=dense,
    )
    if not hits:
        return SearchResult(query=asked, hits=(), answerable=False, answer=_no_hits_reply(store, where))
    embed = sentence_embedder(store, hits, fallback=functools.partial(sentences.embed, encoder=encoder))
    if mode != "hybrid":
        hits = attach_evidence(hits, query_vector, embed, spans_of=embed.spans_of)
    if follow_up:
        # The new aspect leads among the passages on the conversation's subject.
        top = hits[:FOLLOW_UP_DEPTH]
        aspect, answered = (attach_evidence(top, vector, embed, spans_of=embed.spans_of) for vector in turn_vectors[:2])
        hits = rerank_follow_up(hits, aspect, answered, depth=FOLLOW_UP_DEPTH)[:k]
    # A question far from every passage gets no spelling advice: "bake" is one edit from "make".
    suggestion = question if corrected and is_close_enough(hits, abstention) else ""
    if not is_answerable(store, question, hits, abstention, history=history):
        return SearchResult(
            query=asked, hits=tuple(hits), answerable=False, answer=NOT_IN_CORPUS, suggestion=suggestion
        )
    # A short span answers one fact; a question asking for several points is answered by the points.
    several = asks_for_several_points(question)
    lead = best_answer(hits, threshold=abstention.min_reader_score) if reader and not several else None
    answer = compose_answer(hits, question=question, embed=embed, lead=lead)
    return SearchResult(
        query=asked,
        hits=tuple(hits),
        answerable=True,
        answer=answer,
        suggestion=suggestion,
        short_answer=lead.span.text if lead and lead.span else "",
        short_answer_rank=lead.rank if lead else 0,
    )


def _normalized_history(history: Sequence[str]) -> list[str]:
    """Earlier questions, normalised like the question; empty ones carry nothing and are left out."""
    turns = []
    for turn in history:
        try:
            turns.append(normalize_question(turn).text)
        except EmptyQuestionError:
            continue
    return turns


def _no_hits_reply(store: PassageStore, where: SearchFilter | None) -> str:
    """Why nothing was found: an empty index, filters that leave nothing, or no answer in the articles."""
    if store.summary().passages == 0:
        return EMPTY_INDEX
    return nothing_matches(store, where) or NOT_IN_CORPUS
