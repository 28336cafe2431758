"""BM25 top-100 at 100k and 1M passages: qa's own index (qa.index.lexical) against bm25s as qa used it before.

    .venv/bin/python benchmarks/bm25_topk.py --sizes 100k,1m

The passages are those of bench.py's ``synthetic_corpus``: four SciFact sentences each,
drawn with the same seed (made here from ../shared/benchmarks/scifact/corpus.jsonl
directly, without opening a SciFact index or the embedding model; the texts are the same).
The queries are SciFact's test queries. Each (size, engine) runs in its own process, so
its peak memory is its own. For each engine:

    build_s          build from the texts (tokenizing included)
    build_peak_mb    peak resident memory while building (the texts, about the same for both, included)
    load_s           open the saved index (qa's: memory-mapped; bm25s's: memory-mapped, as qa loaded it)
    disk_mb          size of the saved index
    p50_ms, p95_ms   top-100 of one query (tokens already made; median of 3 runs per query)
    update_1pct_s    an index of the texts with the first 1% removed and 1% new ones appended
                     (bm25s: built again from every text, as qa did; qa: ``LexicalIndex.updated``)

qa's top-100 is checked against exhaustive scoring (``top_rows(index.scores(q), 100)``) for
every query, with and without a filter; at 100k the updated index is also checked against
one built from scratch. The machine is shared: latencies are medians of repeated runs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SCIFACT = REPO.parent / "shared" / "benchmarks" / "scifact"
RESULTS = REPO / "benchmarks" / "results" / "bm25_topk.json"
SIZES = {"100k": 100_000, "1m": 1_000_000}
DEPTH = 100
ROUNDS = 3


def synthetic_texts(size: int, seed: int = 0) -> list[str]:
    """bench.py's synthetic passages: four SciFact sentences each, recombined at random."""
    from qa.ingest.split import split_sentences

    sentences = []
    for line in (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        # As qa.evaluation.beir makes a SciFact passage: the title, then the abstract, spaces squeezed.
        parts = (re.sub(r"\s+", " ", row.get(key) or "").strip() for key in ("title", "text"))
        text = " ".join(part for part in parts if part) or "(empty)"
        sentences += [text[start:end] for start, end in split_sentences(text)]
    picks = np.random.default_rng(seed).integers(0, len(sentences), size=(size, 4))
    return [" ".join(sentences[i] for i in row) for row in picks]


def test_queries() -> list[str]:
    lines = (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    wanted = {line.split("\t")[0] for line in lines if line.strip()}
    rows = [json.loads(line) for line in (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    return [row["text"] for row in rows if row["_id"] in wanted]


def memory_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:"))
    return round(int(kilobytes) / 1024, 1)


def reset_peak_memory() -> None:
    Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")  # resets VmHWM to the current RSS


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def latencies(top: Callable[[str], Any], queries: list[str]) -> dict[str, float]:
    """p50 and p95 over the queries of each query's median time over ``ROUNDS`` runs."""
    from qa.index.lexical import query_tokens

    runs: list[list[float]] = [[] for _ in queries]
    for _ in range(ROUNDS):
        for times, query in zip(runs, queries, strict=True):
            query_tokens(query)  # tokenized beforehand, as a hybrid search has (cached)
            times.append(timed(lambda query=query: top(query))[0])
    medians = [float(np.median(times)) * 1000 for times in runs]
    return {
        "p50_ms": round(float(np.percentile(medians, 50)), 2),
        "p95_ms": round(float(np.percentile(medians, 95)), 2),
    }


def updated_texts(texts: list[str]) -> tuple[list[str], list[str]]:
    """The texts after a 1% update (the first 1% removed, 1% new appended), and the new ones."""
    changed = len(texts) // 100
    fresh = synthetic_texts(changed, seed=1)
    return texts[changed:] + fresh, fresh


def run_bm25s(size: int, workdir: Path) -> dict[str, Any]:
    """bm25s as qa's LexicalIndex used it: tokenize, index, save without pickle, load memory-mapped."""
    import bm25s

    from qa.index.lexical import DEFAULT_B, DEFAULT_K1, query_tokens, tokenize, top_rows

    def build(texts: list[str]) -> Any:
        retriever = bm25s.BM25(k1=DEFAULT_K1, b=DEFAULT_B)
        retriever.index(tokenize(texts), show_progress=False)
        return retriever

    texts, queries = synthetic_texts(size), test_queries()
    result: dict[str, Any] = {"rss_before_build_mb": memory_mb("VmRSS")}
    reset_peak_memory()
    build_s, retriever = timed(lambda: build(texts))
    result |= {"build_s": round(build_s, 1), "build_peak_mb": memory_mb("VmHWM")}
    retriever.save(str(workdir / "bm25s"), allow_pickle=False, show_progress=False)
    del retriever
    load_s, loaded = timed(lambda: bm25s.BM25.load(str(workdir / "bm25s"), mmap=True, show_progress=False))

    def top(query: str) -> Any:
        vocabulary = loaded.vocab_dict
        ids = [int(vocabulary[token]) for token in query_tokens(query) if token in vocabulary]
        scores = np.asarray(loaded.get_scores(ids), dtype=np.float32) if ids else np.zeros(size, dtype=np.float32)
        return top_rows(scores, DEPTH)

    result |= {"load_s": round(load_s, 3), "disk_mb": folder_mb(workdir / "bm25s"), **latencies(top, queries)}
    np.save(workdir / "bm25s-top.npy", np.array([top(query)[0] for query in queries]))
    new_texts, _ = updated_texts(texts)
    result["update_1pct_s"] = round(timed(lambda: build(new_texts))[0], 1)
    return result


def run_qa(size: int, workdir: Path) -> dict[str, Any]:
    from qa.index.lexical import LexicalIndex, top_rows

    texts, queries = synthetic_texts(size), test_queries()
    result: dict[str, Any] = {"rss_before_build_mb": memory_mb("VmRSS")}
    reset_peak_memory()
    build_s, index = timed(lambda: LexicalIndex.build(texts))
    result |= {"build_s": round(build_s, 1), "build_peak_mb": memory_mb("VmHWM")}
    index.save(workdir / "qa")
    del index
    load_s, loaded = timed(lambda: LexicalIndex.load(workdir / "qa"))
    result |= {"load_s": round(load_s, 3), "disk_mb": folder_mb(workdir / "qa")}
    result |= latencies(lambda query: loaded.top(query, depth=DEPTH, allowed=None), queries)
    tops = [loaded.top(query, depth=DEPTH, allowed=None) for query in queries]
    np.save(workdir / "qa-top.npy", np.array([rows for rows, _ in tops]))
    result["top_equals_exhaustive"] = all_exact(loaded, queries, tops, top_rows)
    new_texts, fresh = updated_texts(texts)
    changed = len(fresh)
    sources = np.concatenate([np.arange(changed, size), np.full(changed, -1)])
    update_s, updated = timed(lambda: loaded.updated(sources, fresh))
    result["update_1pct_s"] = round(update_s, 2)
    if size <= 100_000:  # building again at 1M would take a minute more
        result["updated_equals_built"] = same_index(updated, LexicalIndex.build(new_texts), queries)
    return result


def all_exact(index: Any, queries: list[str], tops: list[Any], top_rows: Callable[..., Any]) -> bool:
    """Whether each top-100 is exactly exhaustive scoring's (rows and scores), also under a random filter."""
    allowed = np.random.default_rng(0).random(index.size) < 0.1
    for query, (rows, scores) in zip(queries, tops, strict=True):
        full = index.scores(query)
        expected = top_rows(full, DEPTH)
        filtered = index.top(query, depth=DEPTH, allowed=allowed)
        expected_filtered = top_rows(full, DEPTH, allowed)
        for (got_rows, got_scores), (want_rows, want_scores) in (
            ((rows, scores), expected),
            (filtered, expected_filtered),
        ):
            if not (np.array_equal(got_rows, want_rows) and np.array_equal(got_scores, want_scores)):
                print(f"mismatch for {query!r}", file=sys.stderr)
                return False
    return True


def same_index(updated: Any, built: Any, queries: list[str]) -> bool:
    same_scores = all(np.array_equal(updated.scores(query), built.scores(query)) for query in queries)
    return bool(same_scores and updated.vocabulary() == built.vocabulary() and updated.size == built.size)


def folder_mb(folder: Path) -> float:
    return round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20, 1)


def run_child(engine: str, size: str) -> dict[str, Any]:
    """Run one engine at one size in a fresh process; its JSON result is its last line of output."""
    command = [sys.executable, __file__, "--child", engine, "--sizes", size]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    if run.returncode:
        raise RuntimeError(f"{engine} at {size} failed:\n{run.stderr[-3000:]}")
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def child(engine: str, size: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bm25-topk-"))
    try:
        run = run_qa if engine == "qa" else run_bm25s
        result = run(SIZES[size], workdir)
        if (workdir / "qa-top.npy").exists() or (workdir / "bm25s-top.npy").exists():
            name = "qa-top.npy" if engine == "qa" else "bm25s-top.npy"
            shutil.copy(workdir / name, Path(tempfile.gettempdir()) / f"bm25-topk-{size}-{name}")
        print(json.dumps(result))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def same_rows_as_bm25s(size: str) -> int:
    """Queries whose qa top-100 rows are bm25s's exactly (float32 rounding can swap near-ties)."""
    folder = Path(tempfile.gettempdir())
    ours, theirs = (np.load(folder / f"bm25-topk-{size}-{name}") for name in ("qa-top.npy", "bm25s-top.npy"))
    return int(sum(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1m")
    parser.add_argument("--child", choices=["qa", "bm25s"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.sizes)
        return
    results = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    for size in args.sizes.split(","):
        row = {"passages": SIZES[size], "queries": len(test_queries()), "depth": DEPTH}
        row |= {engine: run_child(engine, size) for engine in ("bm25s", "qa")}
        row["same_top_rows_as_bm25s"] = same_rows_as_bm25s(size)
        results[size] = row
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print_table(size, row)


def print_table(size: str, row: dict[str, Any]) -> None:
    print(f"\n{size} passages, {row['queries']} SciFact test queries, top-{row['depth']}")
    print(f"{'':22}{'bm25s':>12}{'qa':>12}")
    for key in ("p50_ms", "p95_ms", "build_s", "build_peak_mb", "rss_before_build_mb", "load_s", "disk_mb"):
        print(f"{key:22}{row['bm25s'][key]:>12}{row['qa'][key]:>12}")
    print(f"{'update_1pct_s':22}{row['bm25s']['update_1pct_s']:>12}{row['qa']['update_1pct_s']:>12}")
    checks = {key: value for key, value in row["qa"].items() if key.endswith(("exhaustive", "built"))}
    print(f"qa checks: {checks}; same top-100 rows as bm25s: {row['same_top_rows_as_bm25s']}/{row['queries']}")


if __name__ == "__main__":
    main()
