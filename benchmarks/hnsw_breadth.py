"""HNSW's recall@10 against exact search, and its latency, at several search breadths (efSearch).

On the synthetic million of `bench.py` (build it with `bench.py --build 1000000-copies --index
DIR`), for 200 SciFact questions: the figures behind `qa.index.vectors.HNSW_EF_SEARCH`.

    .venv/bin/python benchmarks/hnsw_breadth.py DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench


def main() -> None:
    import faiss

    from qa.embed.encoder import normalize
    from qa.index.build import open_index

    index_dir = Path(sys.argv[1])
    index = open_index(index_dir)
    _, encoder = bench.open_or_default(index_dir)
    queries = normalize(encoder.encode(bench.scifact_questions()))
    _, vectors = bench.synthetic_corpus(len(index.passages), vectors="copies")
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(normalize(vectors))
    _, truth = exact.search(queries, 10)
    del exact, vectors
    results = {}
    for breadth in (384, 512, 768):
        index._vectors._index.hnsw.efSearch = breadth
        recalls, seconds = [], []
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            rows, _ = index._vectors.search(query, depth=10, allowed=None)
            seconds.append(time.perf_counter() - started)
            recalls.append(len(set(rows.tolist()) & set(expected.tolist())) / 10)
        results[breadth] = {
            "recall_at_10": round(float(np.mean(recalls)), 4),
            "p50_ms": round(float(np.median(seconds)) * 1000, 2),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
