"""What the reader costs per question: whole-answer p50/p95 with it off and on at several depths.

    .venv/bin/python benchmarks/reader_cost.py

On the seed corpus (the project's 90 labelled questions) and SciFact (100 test claims), one
question at a time, models loaded and warmed up, 2 threads: ``qa.ask`` as the CLI and the chat
call it (k = 5), reader off, then on reading the best 5, 10 and 20 candidates. Writes
``benchmarks/results/reader_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from qa.embed.encoder import SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL
from qa.evaluation.beir import beir_index, load_beir
from qa.evaluation.metrics import evaluate, mean_metrics
from qa.evaluation.questions import judge, load_questions
from qa.evaluation.results import EVAL_DEPTH
from qa.index.build import index_corpus, open_index, settings_for
from qa.index.store import PassageStore
from qa.reader.model import Reader
from qa.search.ask import ask
from qa.search.evidence import SentenceMemory

REPO = Path(__file__).resolve().parent.parent
DEPTHS = (5, 10, 20)


def timings(
    store: PassageStore, questions: list[str], encoder: Any, reader: Reader | None, depth: int = 0
) -> dict[str, float]:
    """p50 and p95 of the whole answer, in milliseconds, after one warm-up pass."""
    sentences = SentenceMemory()
    for question in questions[:5]:
        ask(store, question, encoder=encoder, k=5, sentences=sentences, reader=reader, read_depth=depth)
    seconds = []
    for question in questions:
        started = time.perf_counter()
        ask(store, question, encoder=encoder, k=5, sentences=sentences, reader=reader, read_depth=depth)
        seconds.append(time.perf_counter() - started)
    return {
        "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 1),
        "p95_ms": round(float(np.percentile(seconds, 95)) * 1000, 1),
    }


def quality_by_depth(store: PassageStore, encoder: Any, reader: Reader) -> dict[str, dict[str, float]]:
    """MRR@10, Rcap@5 and nDCG@10 of the answerable single questions, reader off and at each depth."""
    labelled = [q for q in load_questions(REPO / "eval" / "questions.jsonl") if q.answerable and not q.history]
    qrels = judge(labelled, list(store.iter_passages()))
    sentences = SentenceMemory()
    results = {}
    for depth in (0, *DEPTHS, 30):
        run = {}
        for question in labelled:
            answer = ask(
                store,
                question.question,
                encoder=encoder,
                k=EVAL_DEPTH,
                sentences=sentences,
                reader=reader if depth else None,
                read_depth=depth or DEPTHS[-1],
            )
            run[question.question_id] = {hit.passage.passage_id: -float(hit.rank) for hit in answer.hits}
        metrics = mean_metrics(evaluate(qrels, run))
        results["reader off" if not depth else f"reader on, depth {depth}"] = {
            name: round(metrics[name], 3) for name in ("mrr@10", "recall_cap@5", "ndcg@10")
        }
    return results


def main() -> None:
    """Time every setting on both corpora and write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact", type=Path, default=REPO.parent / "shared" / "benchmarks" / "scifact")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "reader_cost.json")
    args = parser.parse_args()
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL, threads=2)
    reader = Reader(threads=2)
    reader.read("warm up", ["warm up"])
    seed_index = REPO / "index"
    settings, count_tokens = settings_for(encoder)
    index_corpus(REPO / "corpus", seed_index, encoder=encoder, settings=settings, count_tokens=count_tokens)
    labelled = [json.loads(line) for line in (REPO / "eval" / "questions.jsonl").read_text().splitlines()]
    scifact = load_beir(args.scifact, split="test")
    sets = {
        "seed": (open_index(seed_index), [row["question"] for row in labelled]),
        "scifact": (
            beir_index(scifact, REPO / "index" / "beir", encoder=encoder, settings=settings_for(encoder)[0]),
            list(scifact.queries.values())[:100],
        ),
    }
    results: dict[str, Any] = {}
    for name, (store, questions) in sets.items():
        results[name] = {"reader off": timings(store, questions, encoder, None)}
        for depth in DEPTHS:
            results[name][f"reader on, depth {depth}"] = timings(store, questions, encoder, reader, depth)
        print(name, json.dumps(results[name]), flush=True)
    results["quality on eval/questions.jsonl"] = quality_by_depth(sets["seed"][0], encoder, reader)
    print(json.dumps(results["quality on eval/questions.jsonl"]), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
