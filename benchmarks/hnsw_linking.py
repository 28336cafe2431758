"""HNSW graphs linked with more or fewer candidates (efConstruction): recall@10 and latency by efSearch.

Builds each graph as `qa.index.vectors` does (float16 codes, 32 links, blocks of 65,536 on every
core) over `bench.py`'s synthetic million vectors, then searches it on one thread for the top
100 of 200 SciFact questions: recall@10 against exact search and p50 ms at each efSearch. The
figures behind `HNSW_EF_CONSTRUCTION` and `HNSW_EF_SEARCH`. About 15 minutes for two graphs:

    .venv/bin/python benchmarks/hnsw_linking.py 160 320
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

BREADTHS = (192, 256, 384, 512, 768)


def main() -> None:
    import faiss

    from qa.embed.encoder import normalize
    from qa.index.vectors import ADD_BLOCK, HNSW_NEIGHBOURS

    _, encoder = bench.open_or_default(Path("."))
    queries = normalize(encoder.encode(bench.scifact_questions()[:200]))
    _, vectors = bench.synthetic_corpus(1_000_000, vectors="copies")
    vectors = normalize(vectors).astype(np.float32)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    del exact
    for candidates in map(int, sys.argv[1:]):
        faiss.omp_set_num_threads(2)
        graph = faiss.IndexHNSWSQ(
            vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT
        )
        graph.hnsw.efConstruction = candidates
        graph.train(vectors[:ADD_BLOCK])
        started = time.perf_counter()
        for start in range(0, len(vectors), ADD_BLOCK):
            graph.add(vectors[start : start + ADD_BLOCK])
        result: dict[str, object] = {"ef_construction": candidates, "build_s": round(time.perf_counter() - started, 1)}
        faiss.omp_set_num_threads(1)
        for breadth in BREADTHS:
            graph.hnsw.efSearch = breadth
            recalls, seconds = [], []
            for query, expected in zip(queries, truth, strict=True):
                started = time.perf_counter()
                _, found = graph.search(query[None], 100)
                seconds.append(time.perf_counter() - started)
                recalls.append(len(set(found[0, :10].tolist()) & set(expected.tolist())) / 10)
            result[f"ef_search_{breadth}"] = [
                round(float(np.mean(recalls)), 4),
                round(float(np.median(seconds)) * 1000, 2),
            ]
        print(json.dumps(result), flush=True)
        del graph


if __name__ == "__main__":
    main()
