"""Compare ways of fusing dense and BM25 scores on a BEIR split (tune on train, never on test).

    .venv/bin/python benchmarks/fusion.py ../shared/benchmarks/scifact --split train

Prints nDCG@10 for weighted sums of min-max, z-score and max-scaled scores at
several dense weights, and for reciprocal rank fusion at several k. ``DENSE_WEIGHT`` and
the min-max choice in ``qa.index`` come from this table on SciFact's train split.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qa.embed.encoder import SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL
from qa.evaluation.beir import beir_index, load_beir
from qa.evaluation.metrics import evaluate, mean_metrics
from qa.index.build import settings_for
from qa.index.store import PassageStore
from qa.records import Hit
from qa.search.fusion import reciprocal_rank_fusion
from qa.search.query import embed_query
from qa.search.retrieval import candidate_hits

WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
RRF_KS = (10, 30, 60, 100)
Scale = Callable[[np.ndarray], np.ndarray]


def min_max(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def z_score(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def by_max(values: np.ndarray) -> np.ndarray:
    top = np.abs(values).max()
    return values / top if top > 0 else values


SCALES: dict[str, Scale] = {"min-max": min_max, "z-score": z_score, "max": by_max}


def candidates(store: PassageStore, queries: dict[str, str], encoder: SentenceTransformerEncoder) -> dict[str, list]:
    """Every query's whole candidate list, each hit carrying its dense and BM25 scores and ranks."""
    return {
        qid: candidate_hits(store, embed_query(encoder, text), text, mode="hybrid", where=None)
        for qid, text in queries.items()
    }


def ndcg(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> float:
    return mean_metrics(evaluate(qrels, run))["ndcg@10"]


def convex_run(pool: dict[str, list], scale: Scale, weight: float) -> dict[str, dict[str, float]]:
    run = {}
    for qid, hits in pool.items():
        dense = scale(np.array([h.dense_score for h in hits]))
        lexical = scale(np.array([h.bm25_score for h in hits]))
        fused = weight * dense + (1 - weight) * lexical
        run[qid] = {h.passage.doc_id: float(s) for h, s in zip(hits, fused, strict=True)}
    return run


def rrf_run(pool: dict[str, list], k: int) -> dict[str, dict[str, float]]:
    run = {}
    for qid, hits in pool.items():
        rankings = [_ranking(hits, "dense_rank"), _ranking(hits, "bm25_rank")]
        fused = reciprocal_rank_fusion(rankings, k=k)
        doc_of = {h.passage.passage_id: h.passage.doc_id for h in hits}
        run[qid] = {doc_of[passage_id]: score for passage_id, score in fused.items()}
    return run


def _ranking(hits: list[Hit], rank_field: str) -> list[str]:
    """One retriever's ranking: passage ids best first."""
    ranked = sorted((getattr(h, rank_field), h.passage.passage_id) for h in hits if getattr(h, rank_field))
    return [passage_id for _, passage_id in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--cache", type=Path, default=Path("index/beir"))
    args = parser.parse_args()
    dataset = load_beir(args.dataset, split=args.split)
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    settings, _ = settings_for(encoder)
    index = beir_index(dataset, args.cache, encoder=encoder, settings=settings, progress=True)
    pool = candidates(index, dataset.queries, encoder)
    qrels = {q: j for q, j in dataset.qrels.items() if q in dataset.queries}
    print(f"{dataset.name} {args.split}: {len(qrels)} queries, nDCG@10 by dense weight")
    print("fusion    " + "".join(f"{w:>8.2f}" for w in WEIGHTS))
    for name, scale in SCALES.items():
        print(f"{name:<10}" + "".join(f"{ndcg(qrels, convex_run(pool, scale, w)):>8.4f}" for w in WEIGHTS))
    print("reciprocal rank fusion, by k: " + ", ".join(f"{k}: {ndcg(qrels, rrf_run(pool, k)):.4f}" for k in RRF_KS))


if __name__ == "__main__":
    main()
