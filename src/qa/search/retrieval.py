"""Retrieval: the store's candidates, fused, folded and (in hybrid mode) re-ranked into hits.

Each retriever proposes its ``CANDIDATE_DEPTH`` best passages; the union is
scored by both and ranked by the mode (hybrid: ``convex_fusion``), ties keeping
the order in which the candidates were proposed. Near-duplicates are folded,
and hybrid search re-ranks its ``RERANK_DEPTH`` best by their evidence.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from qa.embed.encoder import Encoder
from qa.errors import QAError
from qa.index.store import Candidates, PassageStore, SearchFilter, check_model
from qa.reader.model import PassageReader
from qa.records import Hit
from qa.search.answer import asks_for_several_points
from qa.search.duplicates import fold_duplicates
from qa.search.evidence import SentenceMemory, attach_evidence, sentence_embedder
from qa.search.fusion import convex_fusion
from qa.search.modes import Mode, parse_mode
from qa.search.query import embed_query, lexical_query
from qa.search.reading import READ_DEPTH, read_hits, rerank_by_reader
from qa.search.rerank import RERANK_DEPTH, rerank_by_evidence

# How many candidates each retriever proposes before fusion.
CANDIDATE_DEPTH = 100
# Passages fetched from the store at a time as ranked hits are drawn: folding for re-ranking
# looks at 2 * RERANK_DEPTH of them, so one fetch usually does.
PASSAGES_AT_A_TIME = 50


def retrieve(
    store: PassageStore,
    question: str,
    *,
    encoder: Encoder,
    k: int = 5,
    mode: Mode = "hybrid",
    history: Sequence[str] = (),
    where: SearchFilter | None = None,
    query_vector: np.ndarray | None = None,
    sentences: SentenceMemory | None = None,
    reader: PassageReader | None = None,
    read_depth: int = READ_DEPTH,
    lexical: Candidates | None = None,
    dense: Candidates | None = None,
) -> list[Hit]:
    """The ``k`` passages of ``store`` that best match ``question``, best first.

    Args:
        store: The index to search.
        question: The question.
        encoder: Embeds the question (and, in hybrid mode, the candidates' sentences);
            must be the index's model.
        k: How many hits to return.
        mode: ``"hybrid"`` (dense and BM25 fused, then re-ranked by evidence),
            ``"dense"`` or ``"bm25"`` (the plain retrievers, without evidence).
        history: Earlier questions of the conversation, oldest first; they give a
            follow-up question its subject.
        where: Only passages this filter allows.
        query_vector: The question's unit vector if the caller already has it
            (from ``embed_query``), to avoid embedding it twice.
        sentences: Vectors of texts that are not stored sentences, remembered across
            questions (a new memory if not given).
        reader: In hybrid mode, reads the ``READ_DEPTH`` best and re-ranks them with its
            score (``qa.search.reading``); ``None`` leaves the order to fusion and evidence.
        read_depth: How many of the best candidates the reader reads.
        lexical: The BM25 candidates for ``lexical_query(question, history)`` under
            ``where``, if the caller found them already (``both_candidates``).
        dense: The nearest passages to ``query_vector`` under ``where``, if the caller
            found them already (``nearest``).

    Raises:
        QAError: The question is empty, the mode unknown or the encoder not the index's model.
    """
    if not question.strip():
        raise QAError("the question is empty")
    mode = parse_mode(mode)
    check_model(store.model, encoder.name)
    if k <= 0:
        return []
    ranked, query_vector = first_stage(
        store,
        question,
        encoder=encoder,
        mode=mode,
        history=history,
        where=where,
        query_vector=query_vector,
        lexical=lexical,
        dense=dense,
    )
    if mode != "hybrid":
        return fold_duplicates(ranked, limit=k)
    assert query_vector is not None
    hits = fold_duplicates(ranked, limit=max(k, RERANK_DEPTH, read_depth if reader else 0))
    if sentences is None:
        sentences = SentenceMemory()
    embed = sentence_embedder(store, hits, fallback=functools.partial(sentences.embed, encoder=encoder))
    hits = rerank_by_evidence(attach_evidence(hits, query_vector, embed, spans_of=embed.spans_of))
    if reader is not None:
        # A follow-up ("And what about their families?") is read after the question before it, its subject.
        asked = " ".join([*history[-1:], question])
        read = read_hits(
            hits,
            asked,
            reader=reader,
            query_vector=query_vector,
            embed=embed,
            depth=read_depth,
            move_evidence=not asks_for_several_points(question),
        )
        hits = rerank_by_reader(read)
    return hits[:k]


def first_stage(
    store: PassageStore,
    question: str,
    *,
    encoder: Encoder,
    mode: Mode = "hybrid",
    history: Sequence[str] = (),
    where: SearchFilter | None = None,
    query_vector: np.ndarray | None = None,
    lexical: Candidates | None = None,
    dense: Candidates | None = None,
) -> tuple[Iterator[Hit], np.ndarray | None]:
    """The question's ranked candidates (``ranked_hits``), and its vector (``None`` in BM25 mode).

    In hybrid mode the question is embedded, then BM25 and the vector search run at
    once (``both_candidates``). ``query_vector``, ``lexical`` and ``dense``: what the
    caller has already found.
    """
    query_text = lexical_query(question, history)
    if mode != "bm25" and query_vector is None:
        query_vector = embed_query(encoder, question, history)
    if mode == "hybrid" and lexical is None and dense is None:
        assert query_vector is not None
        lexical, dense = both_candidates(store, query_text, query_vector, where=where)
    ranked = ranked_hits(store, query_vector, query_text, mode=mode, where=where, dense=dense, lexical=lexical)
    return ranked, query_vector


def nearest(store: PassageStore, query_vector: np.ndarray, *, where: SearchFilter | None) -> Candidates:
    """The store's ``CANDIDATE_DEPTH`` passages nearest to ``query_vector`` among those ``where`` allows."""
    return store.dense_candidates(query_vector, depth=CANDIDATE_DEPTH, where=where)


def both_candidates(
    store: PassageStore, query_text: str, query_vector: np.ndarray, *, where: SearchFilter | None
) -> tuple[Candidates, Candidates]:
    """BM25's candidates for ``query_text`` and the passages nearest to ``query_vector``, searched at once.

    BM25 runs on this thread and the vector search in a second one, both with the
    interpreter released in their compiled code. The question is embedded before,
    alone: beside BM25's walk through its postings its embedding took half as long
    again (the two share the caches and the memory bus), and searching the vectors
    after it left one core idle. Against embedding and searching the vectors beside
    BM25, question by question (``benchmarks/search_schedule.py INDEX schedule``), first
    stage and folding: 11.6 / 13.3 / 14.3 against 12.9 / 15.0 / 15.6 ms p50 at a million
    passages, 6.7 / 7.3 / 7.4 against 7.3 / 7.9 / 7.7 at SciFact, on a busy machine. An
    error in either is raised here, after both are done.
    """
    return at_once(
        here=lambda: store.bm25_candidates(query_text, depth=CANDIDATE_DEPTH, where=where),
        beside=lambda: nearest(store, query_vector, where=where),
    )


_Here = TypeVar("_Here")
_Beside = TypeVar("_Beside")


def at_once(*, here: Callable[[], _Here], beside: Callable[[], _Beside]) -> tuple[_Here, _Beside]:
    """``here()`` on this thread while ``beside()`` runs in a second one; an error of either is raised after both."""
    found: list[_Beside] = []
    failed: list[BaseException] = []

    def run_beside() -> None:
        try:
            found.append(beside())
        except BaseException as error:  # handed to the caller's thread below
            failed.append(error)

    thread = threading.Thread(target=run_beside, name="qa-beside", daemon=True)
    thread.start()
    try:
        result = here()
    finally:
        thread.join()
    if failed:
        raise failed[0]
    return result, found[0]


def candidate_hits(
    store: PassageStore, query_vector: np.ndarray | None, query_text: str, *, mode: Mode, where: SearchFilter | None
) -> list[Hit]:
    """Hits over the candidates of the mode's retrievers, each scored by both where it can be, ranked by ``mode``.

    A candidate gets a dense score whenever there is a query vector, and a BM25
    score unless the mode is dense.
    """
    return list(ranked_hits(store, query_vector, query_text, mode=mode, where=where))


def ranked_hits(
    store: PassageStore,
    query_vector: np.ndarray | None,
    query_text: str,
    *,
    mode: Mode,
    where: SearchFilter | None,
    dense: Candidates | None = None,
    lexical: Candidates | None = None,
) -> Iterator[Hit]:
    """``candidate_hits`` one at a time, best first: passages are fetched only as far as the hits are drawn.

    Folding looks at the first few dozen of some two hundred candidates; the rest
    are never read from the store. ``dense`` and ``lexical``: the retrievers'
    candidates, if already found (``first_stage``).
    """
    if mode == "bm25":
        dense = None
    elif dense is None:
        assert query_vector is not None
        dense = nearest(store, query_vector, where=where)
    if mode != "dense" and lexical is None:
        lexical = store.bm25_candidates(query_text, depth=CANDIDATE_DEPTH, where=where)
    elif mode == "dense":
        lexical = None
    ids = list(dict.fromkeys(passage_id for found in (dense, lexical) if found for passage_id in found.ids))
    if not ids:
        return
    dense_scores = None
    if query_vector is not None:
        vector = query_vector
        dense_scores = _scores_of(ids, proposed=dense, score=lambda rest: store.dense_scores(vector, rest))
    bm25_scores = None
    if mode != "dense":
        bm25_scores = _scores_of(ids, proposed=lexical, score=lambda rest: store.bm25_scores(query_text, rest))
    fused = _ranked_by(mode, dense_scores, bm25_scores)
    order = np.argsort(-fused, kind="stable").tolist()  # best first, ties in the order found
    dense_ranks, bm25_ranks = _ranks(dense), _ranks(lexical)
    for first in range(0, len(order), PASSAGES_AT_A_TIME):
        chunk = order[first : first + PASSAGES_AT_A_TIME]
        passages = store.passages_by_id([ids[i] for i in chunk])
        for rank, (i, passage) in enumerate(zip(chunk, passages, strict=True), start=first + 1):
            yield Hit(
                rank=rank,
                score=float(fused[i]),
                passage=passage,
                dense_rank=dense_ranks.get(ids[i]),
                dense_score=_score_at(dense_scores, i),
                bm25_rank=bm25_ranks.get(ids[i]),
                bm25_score=_score_at(bm25_scores, i),
            )


def _scores_of(ids: list[str], *, proposed: Candidates | None, score: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Each id's score by one retriever: its own where it proposed the passage, ``score(rest)`` for the rest.

    The store scores a passage alike either way (its contract), so only the passages
    the other retriever alone proposed are scored again.
    """
    known = dict(zip(proposed.ids, proposed.scores.tolist(), strict=True)) if proposed is not None else {}
    rest = [passage_id for passage_id in ids if passage_id not in known]
    rest_scores = iter(score(rest).tolist() if rest else ())
    return np.array([known[i] if i in known else next(rest_scores) for i in ids], dtype=np.float32)


def _ranked_by(mode: Mode, dense: np.ndarray | None, bm25: np.ndarray | None) -> np.ndarray:
    """The score that orders the candidates in ``mode``."""
    if mode == "hybrid":
        assert dense is not None and bm25 is not None
        return convex_fusion(dense, bm25)
    own = bm25 if mode == "bm25" else dense
    assert own is not None
    return own


def _ranks(candidates: Candidates | None) -> dict[str, int]:
    if candidates is None:
        return {}
    return {passage_id: rank for rank, passage_id in enumerate(candidates.ids, start=1)}


def _score_at(scores: np.ndarray | None, position: int) -> float | None:
    return None if scores is None else float(scores[position])
