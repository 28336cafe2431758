"""Where a hybrid search's time goes, part by part, on a built index (p50 over 100 SciFact questions).

Encoding the question, BM25's top 100, the vector index's top 100, the question embedded and
then BM25 beside the vector search (as `first_stage` runs them), BM25 beside both (as it ran
before), and what follows (scoring, fetching and
folding the candidates), then the whole first stage. Build the index first, for instance
with `bench.py --build 1000000-copies --index DIR`.

    .venv/bin/python benchmarks/search_parts.py DIR
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench


def p50_ms(call: Callable[[str], object], questions: list[str]) -> float:
    seconds = []
    for question in questions:
        started = time.perf_counter()
        call(question)
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds) * 1000, 2)


def main() -> None:
    from qa.index.build import open_index
    from qa.search.duplicates import fold_duplicates
    from qa.search.query import embed_query
    from qa.search.retrieval import CANDIDATE_DEPTH, at_once, both_candidates, first_stage, ranked_hits

    index_dir = Path(sys.argv[1])
    index = open_index(index_dir)
    _, encoder = bench.open_or_default(index_dir)
    questions = bench.scifact_questions()[:100]
    vectors = {q: embed_query(encoder, q) for q in questions}  # also the warm-up
    lexical = {q: index.bm25_candidates(q, depth=CANDIDATE_DEPTH, where=None) for q in questions}

    def bm25(question: str) -> object:
        return index.bm25_candidates(question, depth=CANDIDATE_DEPTH, where=None)

    def nearest(question: str) -> object:
        return index.dense_candidates(embed_query(encoder, question), depth=CANDIDATE_DEPTH, where=None)

    parts = {
        "encode": lambda q: embed_query(encoder, q),
        "bm25_top100": lambda q: index.bm25_candidates(q, depth=CANDIDATE_DEPTH, where=None),
        "vectors_top100": lambda q: index.dense_candidates(vectors[q], depth=CANDIDATE_DEPTH, where=None),
        "encode_vectors_then_bm25": lambda q: (
            nearest(q),
            index.bm25_candidates(q, depth=CANDIDATE_DEPTH, where=None),
        ),
        # As first_stage runs them: the question embedded alone, then BM25 here and the vectors beside.
        "encode_then_bm25_beside_vectors": lambda q: both_candidates(index, q, embed_query(encoder, q), where=None),
        # The way before: BM25 beside the question's embedding and vector search, on either thread.
        "bm25_in_thread_encode_vectors_here": lambda q: at_once(here=lambda: nearest(q), beside=lambda: bm25(q)),
        "bm25_here_encode_vectors_in_thread": lambda q: at_once(here=lambda: bm25(q), beside=lambda: nearest(q)),
        "candidates_scored_fetched_folded": lambda q: fold_duplicates(
            ranked_hits(index, vectors[q], q, mode="hybrid", where=None, lexical=lexical[q]), limit=5
        ),
        "first_stage_and_fold": lambda q: fold_duplicates(first_stage(index, q, encoder=encoder)[0], limit=5),
    }

    print(json.dumps({name: p50_ms(call, questions) for name, call in parts.items()}))


if __name__ == "__main__":
    main()
