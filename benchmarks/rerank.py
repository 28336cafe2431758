"""Choose how hybrid search re-ranks its candidates by their best sentence (tune on train, never on test).

    .venv/bin/python benchmarks/rerank.py ../shared/benchmarks/scifact --split train

Prints nDCG@10 and MRR@10 for re-ranking the best ``depth`` fused candidates by
``(1 - w) * fused + w * best sentence`` at several depths and weights (w = 0 is
plain hybrid search). ``RERANK_DEPTH`` and ``SENTENCE_WEIGHT`` in ``qa.search.rerank``
come from this table on SciFact's train split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qa.embed.encoder import SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL
from qa.evaluation.beir import beir_index, load_beir
from qa.evaluation.metrics import evaluate, mean_metrics
from qa.evaluation.results import EVAL_DEPTH
from qa.index.build import settings_for
from qa.index.store import PassageStore
from qa.records import Hit
from qa.search.duplicates import fold_duplicates
from qa.search.evidence import SentenceMemory, attach_evidence
from qa.search.query import embed_query
from qa.search.rerank import rerank_by_evidence
from qa.search.retrieval import candidate_hits

DEPTHS = (10, 20, 30)
WEIGHTS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)


def candidates(
    store: PassageStore, queries: dict[str, str], encoder: SentenceTransformerEncoder, depth: int
) -> dict[str, list[Hit]]:
    """Every query's ``depth`` best fused hits (before re-ranking), each with its evidence sentence."""
    pool = {}
    memory = SentenceMemory()
    for query_id, text in queries.items():
        vector = embed_query(encoder, text)
        hits = fold_duplicates(candidate_hits(store, vector, text, mode="hybrid", where=None), limit=depth)
        pool[query_id] = attach_evidence(hits, vector, lambda sentences: memory.embed(sentences, encoder))
    return pool


def scores(pool: dict[str, list[Hit]], qrels: dict[str, dict[str, int]], depth: int, weight: float) -> dict[str, float]:
    run = {}
    for query_id, hits in pool.items():
        reranked = rerank_by_evidence(hits[:depth], weight=weight) + hits[depth:]
        run[query_id] = {hit.passage.doc_id: -float(rank) for rank, hit in enumerate(reranked[:EVAL_DEPTH], start=1)}
    return mean_metrics(evaluate(qrels, run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--cache", type=Path, default=Path("index/beir"))
    args = parser.parse_args()
    dataset = load_beir(args.dataset, split=args.split)
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    index = beir_index(dataset, args.cache, encoder=encoder, settings=settings_for(encoder)[0])
    queries = {q: dataset.queries[q] for q in dataset.qrels if q in dataset.queries}
    qrels = {q: dataset.qrels[q] for q in queries}
    pool = candidates(index, queries, encoder, max(DEPTHS))
    print(f"{dataset.name} {args.split}, {len(queries)} queries: nDCG@10 / MRR@10")
    print("depth | " + " | ".join(f"w={w}" for w in WEIGHTS))
    for depth in DEPTHS:
        cells = []
        for weight in WEIGHTS:
            metrics = scores(pool, qrels, depth, weight)
            cells.append(f"{metrics['ndcg@10']:.4f} / {metrics['mrr@10']:.4f}")
        print(f"{depth} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
