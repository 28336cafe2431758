"""Speed and size of qa at several corpus sizes; prints a table and writes JSON.

    .venv/bin/python benchmarks/bench.py --scales seed,scifact,100k,1m

Scales (a synthetic one may end in "-mixture", e.g. 1m-mixture, for the other kind of vectors):
    seed     the bundled corpus/ (5 articles), built from scratch
    scifact  SciFact's 5,183 abstracts (../shared/benchmarks/scifact), built from scratch
    100k,1m  synthetic: passages made of SciFact sentences recombined, vectors made
             of SciFact abstract vectors plus noise (embedding a million passages on
             2 cores would take hours); the real model still encodes every query

Each scale runs in its own process, so peak memory (max RSS) is that scale's alone.
Latency is per query, one at a time, the model already loaded: "search" is
retrieval alone (query encoding included), "ask" adds evidence and the answer.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SCIFACT = REPO.parent / "shared" / "benchmarks" / "scifact"
QUESTIONS = REPO / "eval" / "questions.jsonl"
SCALES = {"seed": 0, "scifact": 0, "100k": 100_000, "1m": 1_000_000}
QUERY_RUNS = 100


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1000, 2)


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def folder_size_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def resident_memory_mb() -> float:
    """This process's resident memory now (VmRSS)."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(int(kilobytes) / 1024, 1)


def resident_split_mb() -> tuple[float, float]:
    """This process's resident memory now: its own (anonymous) pages, and pages of files it has mapped.

    Shared libraries are files too: their few tens of MB count as mapped.
    """
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return round(int(fields["RssAnon"].split()[0]) / 1024, 1), round(int(fields["RssFile"].split()[0]) / 1024, 1)


def peak_memory_mb() -> float:
    """This process's peak resident memory (VmHWM).

    Not ``ru_maxrss``: Linux carries it across ``exec``, so a child started from a big
    process would report its parent's peak.
    """
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(kilobytes) / 1024, 1)


def latencies(index: Any, encoder: Any, questions: list[str], later: Sequence[str] = ()) -> dict[str, float]:
    """Search (the fused first stage: question embedded, both retrievers, fusion, folding) and whole answer.

    The first questions after the index is opened touch its memory-mapped pages for the
    first time. ``later``: questions not asked before, searched once the process has served
    ``questions`` (twice: search, then whole answer), as a running app would be asked them.
    """
    from qa.search.abstention import NEVER_ABSTAIN
    from qa.search.ask import ask
    from qa.search.duplicates import fold_duplicates
    from qa.search.evidence import SentenceMemory
    from qa.search.retrieval import first_stage

    def search(question: str) -> object:
        hits, _ = first_stage(index, question, encoder=encoder)
        return fold_duplicates(hits, limit=5)

    sentences = SentenceMemory()  # as the app and `qa eval` keep it across questions
    runs = (questions * (QUERY_RUNS // len(questions) + 1))[:QUERY_RUNS]
    search(runs[0])  # warm-up: first call pays lazy set-up
    searched = [timed(lambda q=q: search(q)) for q in runs]
    answer = [
        timed(lambda q=q: ask(index, q, encoder=encoder, k=5, abstention=NEVER_ABSTAIN, sentences=sentences))
        for q in runs
    ]
    serving = [timed(lambda q=q: search(q)) for q in later]
    return {
        "search_p50_ms": percentile_ms(searched, 50),
        "search_p95_ms": percentile_ms(searched, 95),
        "ask_p50_ms": percentile_ms(answer, 50),
        "ask_p95_ms": percentile_ms(answer, 95),
    } | (
        {"search_serving_p50_ms": percentile_ms(serving, 50), "search_serving_p95_ms": percentile_ms(serving, 95)}
        if serving
        else {}
    )


def corpus_questions() -> list[str]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["question"] for row in rows]


def scifact_questions(start: int = 0, count: int = 200) -> list[str]:
    rows = [json.loads(line) for line in (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    return [row["text"] for row in rows[start : start + count]]


def run_seed(workdir: Path) -> dict[str, Any]:
    from qa.index.build import index_corpus, open_index, settings_for

    index_dir = workdir / "index"
    _, encoder = open_or_default(index_dir)
    settings, count_tokens = settings_for(encoder)
    encoder.encode(["warm up"])  # throughput is embedding, not model loading
    report = index_corpus(REPO / "corpus", index_dir, encoder=encoder, settings=settings, count_tokens=count_tokens)
    index = open_index(index_dir)
    return {
        "passages": report.passages,
        "build_seconds": round(report.seconds, 2),
        "build_passages_per_s": round(report.passages / report.seconds, 1),
        "index_mb": folder_size_mb(index_dir),
        **latencies(index, encoder, corpus_questions()),
        **cold_start(index_dir),
        "index_unchanged_s": index_unchanged_seconds(index_dir),
        "app_ready_s": min(app_ready_seconds(index_dir) for _ in range(3)),  # one start varies by half a second
    }


def index_unchanged_seconds(index_dir: Path) -> float:
    """Wall time of a whole `qa index` process when no file changed (imports included)."""
    command = [
        str(Path(sys.executable).parent / "qa"),
        "index",
        "--corpus",
        str(REPO / "corpus"),
        "--index",
        str(index_dir),
    ]
    return round(min(timed(lambda: subprocess.run(command, capture_output=True, check=True)) for _ in range(3)), 2)


def app_ready_seconds(index_dir: Path, corpus: Path = REPO / "corpus") -> float:
    """Seconds from starting app.py on an existing, up-to-date index of ``corpus`` until it answers HTTP 200."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(REPO / "app.py"), "--corpus", str(corpus), "--index", str(index_dir)]
    command += ["--port", str(port)]
    started = time.perf_counter()
    app = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while app.poll() is None and time.perf_counter() - started < 120:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                return round(time.perf_counter() - started, 2)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("app.py did not answer within 120 s")
    finally:
        app.terminate()
        app.wait()


def open_or_default(index_dir: Path) -> tuple[None, Any]:
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.embed.models import DEFAULT_MODEL

    return None, SentenceTransformerEncoder(DEFAULT_MODEL)


def cold_start(index_dir: Path) -> dict[str, float]:
    """Seconds from a new process to its first answer: imports, index, model, one question."""
    code = (
        "import time; t = time.perf_counter(); from pathlib import Path; import qa;"
        f"index = qa.open_index(Path({str(index_dir)!r})); encoder = qa.SentenceTransformerEncoder(index.model);"
        "qa.ask(index, 'Why do defectors return?', encoder=encoder); print(time.perf_counter() - t)"
    )
    started = time.perf_counter()
    inner = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {
        "cold_start_to_first_answer_s": round(time.perf_counter() - started, 2),
        "in_process_s": round(float(inner), 2),
    }


def run_scifact(workdir: Path) -> dict[str, Any]:
    from qa.evaluation.beir import beir_index, load_beir
    from qa.index.build import settings_for

    dataset = load_beir(SCIFACT, split="test")
    _, encoder = open_or_default(workdir)
    settings, _ = settings_for(encoder)
    encoder.encode(["warm up"])
    started = time.perf_counter()
    index = beir_index(dataset, workdir / "beir", encoder=encoder, settings=settings)
    seconds = time.perf_counter() - started
    return {
        "passages": len(index.passages),
        "build_seconds": round(seconds, 1),
        "build_passages_per_s": round(len(index.passages) / seconds, 1),
        "index_mb": folder_size_mb(workdir / "beir"),
        **latencies(index, encoder, scifact_questions(), later=scifact_questions(start=200, count=QUERY_RUNS)),
    }


def synthetic_corpus(size: int, seed: int = 0, vectors: str = "copies") -> tuple[list[str], np.ndarray]:
    """``size`` passages of recombined SciFact sentences, and vectors made from SciFact abstracts' vectors.

    ``vectors="copies"``: each a noisy copy of one abstract's vector (about 200 near-ties per
    abstract at a million: hard for approximate search). ``"mixture"``: each the normalised sum
    of four abstracts' vectors plus a little noise, as the text mixes four abstracts' sentences.
    """
    base = scifact_base()
    base_vectors = base._vectors.vectors_of(np.arange(len(base.passages)))
    sentences = list(scifact_sentence_vectors())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sentences), size=(size, 4))
    texts = [" ".join(sentences[i] for i in row) for row in picks]
    if vectors == "mixture":
        mixed = sum(base_vectors[rng.integers(0, len(base_vectors), size=size)] for _ in range(4))
        return texts, mixed + rng.normal(0, 0.01, size=mixed.shape).astype(np.float32)
    origin = rng.integers(0, len(base_vectors), size=size)
    return texts, base_vectors[origin] + rng.normal(0, 0.03, size=(size, base_vectors.shape[1])).astype(np.float32)


def scifact_base() -> Any:
    """The index of SciFact's abstracts (built once under index/beir): the source of the synthetic corpus."""
    from qa.evaluation.beir import beir_index, load_beir
    from qa.index.build import settings_for

    dataset = load_beir(SCIFACT, split="test")
    _, encoder = open_or_default(Path("."))
    settings, _ = settings_for(encoder)
    return beir_index(dataset, REPO / "index" / "beir", encoder=encoder, settings=settings)


def scifact_sentence_vectors() -> dict[str, np.ndarray]:
    """Every sentence of SciFact's abstracts and the vector the SciFact index stored for it."""
    base = scifact_base()
    passages = list(base.passages)
    found = base.sentences_of([p.passage_id for p in passages])
    return {
        text: vector
        for passage, sentences in zip(passages, found, strict=True)
        for text, vector in zip(sentences.texts(passage.text), sentences.vectors, strict=True)
    }


class StoredVectors:
    """An encoder with vectors made beforehand: the synthetic passages' own, and the SciFact sentences' real ones.

    Embedding a million passages and their four million sentences on 2 cores would take a day;
    a text it was not given (a sentence split where SciFact's was not) gets a fixed random vector.
    """

    def __init__(self, name: str, vectors: dict[str, np.ndarray]) -> None:
        self.name = name
        self.vectors = vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[text] if text in self.vectors else _random(text) for text in texts])


def _random(text: str) -> np.ndarray:
    import hashlib

    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=384).astype(np.float32)


def synthetic_documents(texts: list[str], prefix: str) -> list[Any]:
    """The articles of ``synthetic_passages``: ten passages each, with the metadata an article has.

    An index of a real corpus holds its documents' text too (some 700 MB for a million passages):
    the synthetic scales measure loading and serving with it.
    """
    from qa.records import Document

    return [
        Document(
            f"{prefix}{number}",
            f"{prefix}{number}.txt",
            tuple(texts[start : start + 10]),
            title=f"Synthetic article {number}",
            outlet=("Science Daily", "Lab Notes", "")[number % 3],
            date=f"20{10 + number % 15}-{number % 12 + 1:02d}-{number % 28 + 1:02d}",
            checksum=f"{number:064x}",
        )
        for number, start in enumerate(range(0, len(texts), 10))
    ]


def synthetic_passages(texts: list[str], prefix: str) -> list[Any]:
    from qa.records import Passage

    # One document per ten passages, as a corpus of articles has.
    return [
        Passage(
            f"{prefix}{i // 10}#p{i % 10 + 1}-0",
            f"{prefix}{i // 10}",
            f"{prefix}{i // 10}.txt",
            i % 10 + 1,
            0,
            len(t),
            t,
        )
        for i, t in enumerate(texts)
    ]


def run_synthetic(size: int, workdir: Path, *, kind: str) -> dict[str, Any]:
    build = subprocess.run(
        [sys.executable, __file__, "--build", f"{size}-{kind}", "--index", str(workdir / "index")],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        raise RuntimeError(build.stderr[-3000:])
    built = json.loads(build.stdout.strip().splitlines()[-1])
    from qa.embed.encoder import normalize
    from qa.index.build import open_index

    started = time.perf_counter()
    loaded = open_index(workdir / "index")
    load_seconds = time.perf_counter() - started
    _, encoder = open_or_default(workdir)
    texts, vectors = synthetic_corpus(size, vectors=kind)
    scan = corpus_scan_seconds(texts, workdir)
    del texts
    return {
        "passages": size,
        "vector_index": type(loaded._vectors._index).__name__,
        **built,
        "index_mb": folder_size_mb(workdir / "index"),
        "index_load_seconds_in_process": round(load_seconds, 2),
        **serving(workdir / "index"),
        **latencies(loaded, encoder, scifact_questions(), later=scifact_questions(start=200, count=QUERY_RUNS)),
        **vector_search_against_exact(loaded, normalize(vectors), encoder),
        **update_seconds(loaded, size),
        **scan,
        **app_ready(workdir),
    }


def app_ready(workdir: Path) -> dict[str, Any]:
    """The fastest of three app starts on the synthetic index and the corpus the scan adopted; or why none came up."""
    try:
        return {"app_ready_s": min(app_ready_seconds(workdir / "index", workdir / "corpus") for _ in range(3))}
    except RuntimeError as error:  # the other figures of the scale still count
        return {"app_ready_s": None, "app_ready_error": str(error)}


def corpus_scan_seconds(texts: list[str], folder: Path) -> dict[str, Any]:
    """What an unchanged `qa index` does before it finds nothing to do, at this scale: list and hash every file.

    The passages are written ten to a file (an article each), then the corpus is scanned as
    ``qa index`` scans it (``find_corpus_files`` and the corpus fingerprint), the files in the
    page cache as after a first build; with the manifest's checks and the start of Python,
    this is the whole of an unchanged `qa index`.
    """
    from qa.index.manifest import check_files, read_manifest
    from qa.ingest.listing import corpus_fingerprint, find_corpus_files

    for start in range(0, len(texts), 10):
        path = folder / "corpus" / f"{start // 10000:03d}" / f"article{start // 10}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(texts[start : start + 10]), encoding="utf-8")
    started = time.perf_counter()
    files = find_corpus_files(folder / "corpus")
    corpus_fingerprint(files)
    scanned = time.perf_counter() - started
    started = time.perf_counter()
    check_files(folder / "index", read_manifest(folder / "index"))
    checked = time.perf_counter() - started
    adopt_corpus(folder / "index", corpus_fingerprint(files))
    command = [str(Path(sys.executable).parent / "qa"), "index", "--corpus", str(folder / "corpus")]
    command += ["--index", str(folder / "index")]
    first = timed(lambda: subprocess.run(command, capture_output=True, check=True))  # no stamps yet: reads every file
    unchanged = [timed(lambda: subprocess.run(command, capture_output=True, check=True)) for _ in range(3)]
    report = subprocess.run(command, capture_output=True, check=True, text=True).stdout.strip()
    assert "up to date" in report, report  # nothing was rebuilt: the timings are of the unchanged path
    return {
        "corpus_files": len(files),
        "corpus_scan_seconds": round(scanned, 2),
        "index_check_seconds": round(checked, 3),
        "qa_index_unchanged_first_s": round(first, 2),
        "qa_index_unchanged_s": round(min(unchanged), 2),
    }


def adopt_corpus(index_dir: Path, fingerprint: str) -> None:
    """Declare the synthetic index built from the corpus folder its passages were written to.

    The index was built from the passages, not by `qa index` from the folder (embedding a
    million passages with the real model takes hours here). With the folder's fingerprint
    and the settings `qa index` uses in the manifest, a `qa index` of that folder finds
    nothing to do, as it would after building it, and the whole process can be timed.
    """
    import dataclasses

    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.index.build import settings_for
    from qa.index.manifest import MANIFEST_NAME, manifest_text, read_manifest

    settings, _ = settings_for(SentenceTransformerEncoder(DEFAULT_NAME))
    manifest = dataclasses.replace(read_manifest(index_dir), corpus_fingerprint=fingerprint, settings=settings)
    (index_dir / MANIFEST_NAME).write_text(manifest_text(manifest), encoding="utf-8")


def build_synthetic(scale: str, index_dir: Path) -> dict[str, Any]:
    """Build the synthetic index as `qa index` builds one (``LocalIndex.update``, then ``save``), in this process.

    The corpus is made first; ``corpus_memory_mb`` is what this process holds when the build
    starts (the passages, and the vectors the stand-in encoder hands out), and ``build_peak_mb``
    the peak from there on (the peak is reset, ``/proc/self/clear_refs``): the build's own share
    is the difference.
    """
    from qa.index.local import LocalIndex
    from qa.index.manifest import IndexSettings

    size, _, kind = scale.partition("-")
    texts, vectors = synthetic_corpus(int(size), vectors=kind)
    known = scifact_sentence_vectors()
    known.update(zip(texts, vectors, strict=True))
    passages = synthetic_passages(texts, "s")
    documents = synthetic_documents(texts, "s")  # their paragraphs are the passages' own strings
    del texts, vectors
    gc.collect()
    corpus_memory = resident_memory_mb()
    Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")  # VmHWM from here: the build's peak
    encoder = StoredVectors(DEFAULT_NAME, known)
    settings = IndexSettings(254, 12, title_in_bm25=False)
    started = time.perf_counter()
    index = LocalIndex.empty(DEFAULT_NAME, settings).update(documents, passages, encoder=encoder, settings=settings)
    built = time.perf_counter() - started
    index.save(index_dir)
    return {
        "build_seconds_without_embedding": round(built, 1),
        "save_seconds": round(time.perf_counter() - started - built, 1),
        "sentences": index._sentences.sentences,
        "corpus_memory_mb": corpus_memory,
        "build_peak_mb": peak_memory_mb(),
    }


def serving(index_dir: Path) -> dict[str, float]:
    """A fresh process that loads the index and the model and answers: load time and memory.

    ``serving_memory_mb`` is its peak resident memory after one answer. Part of it is pages
    of the index's memory-mapped files (the FAISS codes above all): page cache, shared and
    given back under pressure, mapped as far as the kernel's fault-around finds them cached
    (so more right after a build). ``serving_private_mb`` and ``serving_mapped_mb`` split
    the resident memory after that answer into what the process holds itself and those
    mapped pages; ``serving_memory_after_100_mb`` is the peak after 100 more answers to
    SciFact questions of every length, ``serving_private_after_100_mb`` the process's own
    part of it.
    """
    code = (
        "import sys, time, json; from pathlib import Path; import qa;"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); from bench import peak_memory_mb, resident_split_mb;"
        f"t = time.perf_counter(); index = qa.open_index(Path({str(index_dir)!r}));"
        "encoder = qa.SentenceTransformerEncoder(index.model); t = time.perf_counter() - t;"
        "qa.ask(index, 'cell growth', encoder=encoder); one = peak_memory_mb(); split = resident_split_mb();"
        f"[qa.ask(index, q, encoder=encoder) for q in {scifact_questions(start=300, count=100)!r}];"
        "print(json.dumps([t, one, *split, peak_memory_mb(), resident_split_mb()[0]]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, memory, private, mapped, after, private_after = json.loads(run.stdout.strip().splitlines()[-1])
    return {
        "index_load_seconds": round(seconds, 1),
        "serving_memory_mb": round(memory),
        "serving_private_mb": round(private),
        "serving_mapped_mb": round(mapped),
        "serving_memory_after_100_mb": round(after),
        "serving_private_after_100_mb": round(private_after),
    }


def update_seconds(index: Any, size: int) -> dict[str, Any]:
    """Time of an update that removes 1% of the passages and adds 1% new ones (vectors given, not embedded)."""
    changed = size // 100
    texts, vectors = synthetic_corpus(changed, seed=1)
    added = synthetic_passages(texts, "n")
    known = scifact_sentence_vectors()
    known.update(zip(texts, vectors, strict=True))
    encoder = StoredVectors(index.manifest.model, known)
    passages = index.passages[changed:] + added
    documents = index.documents_with_text[changed // 10 :] + synthetic_documents(texts, "n")
    started = time.perf_counter()
    updated = index.update(documents, passages, encoder=encoder, settings=index.manifest.settings)
    return {
        "update_1pct_seconds": round(time.perf_counter() - started, 1),
        "update_grew_in_place": bool(updated._vectors.total > len(updated.passages)),
    }


def vector_search_against_exact(index: Any, vectors: np.ndarray, encoder: Any) -> dict[str, float]:
    """Exact and HNSW vector search side by side: HNSW's recall@10 against exact search, and latencies.

    Below ``EXACT_SEARCH_LIMIT`` the index is exact, so an HNSW graph is built here to compare:
    the figures that place the limit.
    """
    import faiss

    import qa.index.vectors
    from qa.embed.encoder import normalize

    queries = normalize(encoder.encode(scifact_questions()[:100]))
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    graph, graph_seconds = index._vectors._index, None
    if not isinstance(graph, faiss.IndexHNSW):
        limit, qa.index.vectors.EXACT_SEARCH_LIMIT = qa.index.vectors.EXACT_SEARCH_LIMIT, 0
        started = time.perf_counter()
        graph = qa.index.vectors.build_vector_index(vectors)
        graph_seconds = round(time.perf_counter() - started, 1)
        qa.index.vectors.EXACT_SEARCH_LIMIT = limit
    exact_seconds = [timed(lambda q=q: exact.search(q[None, :], 10)) for q in queries]
    graph_seconds_each = [timed(lambda q=q: graph.search(q[None, :], 10)) for q in queries]
    _, truth = exact.search(queries, 10)
    _, found = graph.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    return {
        "hnsw_recall_at_10_vs_exact": round(float(recall), 4),
        "hnsw_search_p50_ms": percentile_ms(graph_seconds_each, 50),
        "exact_search_p50_ms": percentile_ms(exact_seconds, 50),
        **({"hnsw_build_seconds": graph_seconds} if graph_seconds is not None else {}),
    }


DEFAULT_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def run_scale(scale: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"qa-bench-{scale}-") as folder:
        workdir = Path(folder)
        if scale == "seed":
            result = run_seed(workdir)
        elif scale == "scifact":
            result = run_scifact(workdir)
        else:  # "1m", or "1m-mixture" for the other kind of synthetic vectors
            size, _, kind = scale.partition("-")
            result = run_synthetic(SCALES.get(size) or int(size), workdir, kind=kind or "copies")
    return {"scale": scale, **result, "peak_memory_mb": peak_memory_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="seed,scifact,100k,1m")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "bench.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one scale in this process
    parser.add_argument("--build", help=argparse.SUPPRESS)  # internal: build one synthetic index in this process
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        print(json.dumps(build_synthetic(args.build, args.index)))
        return
    if args.one:
        print(json.dumps(run_scale(args.one)))
        return
    results = []
    for scale in args.scales.split(","):
        child = subprocess.run([sys.executable, __file__, "--one", scale], capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(f"{scale}: failed\n{child.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    keys = sorted({key for row in results for key in row if key != "scale"})
    print("metric".ljust(34) + "".join(row["scale"].rjust(12) for row in results))
    for key in keys:
        print(key.ljust(34) + "".join(str(row.get(key, "-")).rjust(12) for row in results))


if __name__ == "__main__":
    main()
