"""Two or more checkouts of qa timed in turns on one index: search and whole-answer p50, one process each.

Each round starts every checkout's process once, one after another, so that a machine whose
speed drifts slows them alike. A process opens the index, asks 30 questions to warm up, then
times the first stage and folding (as `bench.py`'s search) over 200 SciFact questions and the
whole answer without the reader over 100 of them:

    .venv/bin/python benchmarks/search_in_turns.py INDEX_DIR OLD_CHECKOUT NEW_CHECKOUT [--rounds 3]

A checkout needs its BM25 kernel built (`pip install -e .` there, or copy `src/qa/index/*.so`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench


def measure(index_dir: Path) -> dict[str, float]:
    """Search and whole-answer p50 ms in this process, with whichever qa is on the import path."""
    from qa.index.build import open_index
    from qa.search.abstention import NEVER_ABSTAIN
    from qa.search.ask import ask
    from qa.search.duplicates import fold_duplicates
    from qa.search.evidence import SentenceMemory
    from qa.search.retrieval import first_stage

    index = open_index(index_dir)
    _, encoder = bench.open_or_default(index_dir)
    questions = bench.scifact_questions()
    for question in questions[:30]:
        fold_duplicates(first_stage(index, question, encoder=encoder)[0], limit=5)
    searched = []
    for question in questions:
        started = time.perf_counter()
        fold_duplicates(first_stage(index, question, encoder=encoder)[0], limit=5)
        searched.append(time.perf_counter() - started)
    sentences, answered = SentenceMemory(), []
    for question in questions[:100]:
        started = time.perf_counter()
        ask(index, question, encoder=encoder, k=5, abstention=NEVER_ABSTAIN, sentences=sentences)
        answered.append(time.perf_counter() - started)
    return {
        "search_p50_ms": round(statistics.median(searched) * 1000, 2),
        "ask_p50_ms": round(statistics.median(answered) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("index", type=Path)
    parser.add_argument("checkouts", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # internal: one process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.index)))
        return
    for round_number in range(1, args.rounds + 1):
        for checkout in args.checkouts:
            environment = {**os.environ, "PYTHONPATH": str(checkout.resolve() / "src")}
            command = [sys.executable, __file__, str(args.index), str(checkout), "--measure"]
            run = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
            figures = json.loads(run.stdout.strip().splitlines()[-1])
            print(json.dumps({"round": round_number, "checkout": str(checkout), **figures}), flush=True)


if __name__ == "__main__":
    main()
