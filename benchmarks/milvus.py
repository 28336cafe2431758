"""The Milvus backend beside the local index on SciFact: same model, same passages, one run.

    .venv/bin/pip install -e '.[milvus]'
    nice -n 10 .venv/bin/python benchmarks/milvus.py [../shared/benchmarks/scifact] [--split test]

Each step runs in a process of its own, so that its peak memory (VmHWM) is its own:

1. ``local-cold``: the local index built from nothing (every document and sentence embedded
   with the bundled model, filling an embedding cache);
2. ``local-warm`` and ``milvus-warm``: each store built again from a copy of that cache, so
   the index time is the store's own work (splitting, BM25, writing, Milvus's BM25 function and
   index) without the embedding both share;
3. ``search-local`` and ``search-milvus``: the store opened, the model loaded, then BEIR's
   evaluation of bm25, dense and hybrid (``qa.evaluation.beir.evaluate_beir``, no reader; nDCG@10
   as ``qa eval`` reports it), then every judged query asked again in hybrid mode (k = 10, query
   embedding, evidence and re-ranking included) for the latency percentiles. Memory: the peak
   of the process, and its resident memory added by opening the store.

Milvus is Milvus Lite (``milvus-lite:``), in-process, so its memory is counted in the search
process like the local index's. Results go to ``benchmarks/results/milvus.json``.

``--work DIR`` (default ``$TMPDIR/qa-milvus-bench``) keeps the cold build and its cache: a second
run reuses them (and says so instead of giving a cold figure); the warm builds start afresh.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "milvus.json"
DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "scifact"
MODES = ("bm25", "dense", "hybrid")


def _memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _dataset_and_encoder(dataset_dir: Path, split: str) -> tuple[Any, Any, Any]:
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.embed.models import DEFAULT_MODEL
    from qa.evaluation.beir import load_beir
    from qa.index.build import settings_for

    dataset = load_beir(dataset_dir, split=split)
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    settings, _ = settings_for(encoder)
    return dataset, encoder, settings


def _store_spec(kind: str, work: Path) -> Any:
    from qa.index.spec import parse_store

    if kind == "local":
        return None
    return parse_store(f"milvus-lite:{work / 'milvus.db'}").with_collection("scifact")


def phase_build(kind: str, work: Path, dataset_dir: Path, split: str) -> dict[str, Any]:
    from qa.evaluation.beir import beir_index

    dataset, encoder, settings = _dataset_and_encoder(dataset_dir, split)
    started = time.perf_counter()
    store = beir_index(dataset, work, encoder=encoder, settings=settings, store=_store_spec(kind, work))
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "passages": store.summary().passages, "peak_mb": round(_memory_mb("VmHWM"))}


def phase_search(kind: str, work: Path, dataset_dir: Path, split: str) -> dict[str, Any]:
    from qa.evaluation.beir import beir_index, evaluate_beir
    from qa.search.evidence import SentenceMemory
    from qa.search.retrieval import retrieve

    dataset, encoder, settings = _dataset_and_encoder(dataset_dir, split)
    encoder.encode(["warm up"])
    before = _memory_mb("VmRSS")
    started = time.perf_counter()
    store = beir_index(dataset, work, encoder=encoder, settings=settings, store=_store_spec(kind, work))
    open_seconds = time.perf_counter() - started
    opened = _memory_mb("VmRSS") - before
    results = evaluate_beir(store, dataset, encoder=encoder, modes=list(MODES))
    ndcg = {result.mode: round(result.metrics["ndcg@10"], 4) for result in results}
    sentences = SentenceMemory()
    latencies = []
    for query in dataset.queries.values():
        started = time.perf_counter()
        retrieve(store, query, encoder=encoder, k=10, mode="hybrid", sentences=sentences)
        latencies.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(latencies, n=20)
    return {
        "ndcg@10": ndcg,
        "open_seconds": round(open_seconds, 2),
        "queries": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(cuts[18], 1),
        "store_rss_mb": round(opened),
        "peak_mb": round(_memory_mb("VmHWM")),
    }


def _run(phase: str, kind: str, work: Path, dataset: Path, split: str) -> dict[str, Any]:
    command = [sys.executable, __file__, str(dataset), "--split", split, "--phase", phase, kind, str(work)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{phase} {kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{phase} {kind}: {result}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--split", default="test")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "qa-milvus-bench")
    parser.add_argument("--phase", nargs=3, metavar=("PHASE", "KIND", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase, kind, work = args.phase
        run = phase_build if phase == "build" else phase_search
        print(json.dumps(run(kind, Path(work), args.dataset, args.split)))
        return
    # The cold build is kept (its embedding cache is ten minutes of work); the warm ones start afresh.
    root = args.work
    reused = any((root / "cold").rglob("manifest.json"))
    cold = _run("build", "local", root / "cold", args.dataset, args.split)
    caches = sorted((root / "cold").rglob("embeddings.sqlite"))
    results: dict[str, Any] = {"dataset": f"{args.dataset.name} ({args.split})", "local_cold_build": cold}
    if reused:  # the cold figure of the run that made the cache, if this file has it
        earlier = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
        cold = earlier.get("local_cold_build", "reused from an earlier run (no cold figure)")
        results["local_cold_build"] = (
            cold if isinstance(cold, str) else {**cold, "note": "from the run that made the cache"}
        )
    for kind in ("local", "milvus"):
        work = root / kind
        shutil.rmtree(work, ignore_errors=True)
        for cache in caches:  # the same relative place, with the lock that marks the folder as qa's
            target = work / cache.relative_to(root / "cold")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(cache, target)
            shutil.copy(cache.with_name("qa-index.lock"), target.with_name("qa-index.lock"))
        results[kind] = {"build": _run("build", kind, work, args.dataset, args.split)}
        results[kind]["search"] = _run("search", kind, work, args.dataset, args.split)
    results["command"] = "nice -n 10 .venv/bin/python benchmarks/milvus.py " + " ".join(sys.argv[1:])
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
