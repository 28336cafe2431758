"""How a hybrid search's first stage is arranged on two cores, compared question by question.

Two comparisons, each run interleaved (each question asked both ways, the order alternating),
first stage and folding as `bench.py` times them, p50 and p95 ms over 200 SciFact questions,
twice over:

- ``schedule``: the question embedded first, then BM25 here while the vectors are searched
  beside it (`both_candidates`, as qa runs it) against the arrangement before it (BM25 beside
  the question's embedding and vector search, BM25 on the calling thread above 450,000
  passages, in the second thread below).
- ``threads``: the question's model on every thread (as qa runs it) against one thread.

    .venv/bin/python benchmarks/search_schedule.py INDEX_DIR schedule|threads
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

# Where the arrangement before placed BM25 on the calling thread.
BM25_ON_CALLER_ABOVE = 450_000


def interleaved(ways: dict[str, Callable[[str], object]], questions: list[str]) -> dict[str, list[float]]:
    """p50 and p95 ms of each way, asked question by question in alternating order, two passes."""
    for question in questions[:30]:
        for way in ways.values():
            way(question)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for round_number in range(2):
        for number, question in enumerate(questions):
            names = list(ways) if (number + round_number) % 2 == 0 else list(reversed(ways))
            for name in names:
                started = time.perf_counter()
                ways[name](question)
                seconds[name].append(time.perf_counter() - started)
    return {
        name: [round(statistics.median(times) * 1000, 2), round(sorted(times)[int(len(times) * 0.95)] * 1000, 2)]
        for name, times in seconds.items()
    }


def schedules(index: Any, encoder: Any) -> dict[str, Callable[[str], object]]:
    from qa.search.duplicates import fold_duplicates
    from qa.search.query import embed_query, lexical_query
    from qa.search.retrieval import CANDIDATE_DEPTH, at_once, first_stage, nearest, ranked_hits

    def before(question: str) -> object:
        text = lexical_query(question, ())

        def bm25() -> Any:
            return index.bm25_candidates(text, depth=CANDIDATE_DEPTH, where=None)

        def embedded_and_nearest() -> Any:
            vector = embed_query(encoder, question, ())
            return vector, nearest(index, vector, where=None)

        if len(index.passages) > BM25_ON_CALLER_ABOVE:
            lexical, (vector, dense) = at_once(here=bm25, beside=embedded_and_nearest)
        else:
            (vector, dense), lexical = at_once(here=embedded_and_nearest, beside=bm25)
        hits = ranked_hits(index, vector, text, mode="hybrid", where=None, dense=dense, lexical=lexical)
        return fold_duplicates(hits, limit=5)

    def now(question: str) -> object:
        return fold_duplicates(first_stage(index, question, encoder=encoder)[0], limit=5)

    return {"embedded_first_then_both": now, "bm25_beside_embedding_and_vectors": before}


def question_threads(index: Any, encoder: Any) -> dict[str, Callable[[str], object]]:
    """Searching with the question's model on every thread, and with it compiled again for one."""
    from qa.search.duplicates import fold_duplicates
    from qa.search.retrieval import first_stage

    runner = encoder._exported.runner  # the StreamedRunner of openvino-bf16-streams
    every = (runner._question, dict(runner._compiled), dict(runner._idle))
    one = ({**runner._question, "INFERENCE_NUM_THREADS": 1}, {None: runner._compiled[None]}, {None: runner._idle[None]})

    def searching_with(state: tuple[Any, Any, Any]) -> Callable[[str], object]:
        def search(question: str) -> object:
            runner._question, runner._compiled, runner._idle = state
            # The runner compiles a new question width into the dictionaries it is given: each
            # setting keeps its own models.
            return fold_duplicates(first_stage(index, question, encoder=encoder)[0], limit=5)

        return search

    return {"every_thread": searching_with(every), "one_thread": searching_with(one)}


def main() -> None:
    from qa.index.build import open_index

    index_dir, comparison = Path(sys.argv[1]), sys.argv[2]
    index = open_index(index_dir)
    _, encoder = bench.open_or_default(index_dir)
    encoder.encode(["warm up"])
    ways = schedules(index, encoder) if comparison == "schedule" else question_threads(index, encoder)
    print(json.dumps(interleaved(ways, bench.scifact_questions())))


if __name__ == "__main__":
    main()
