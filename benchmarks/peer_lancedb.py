"""Measure a second peer, LanceDB, beside qa: same model, same texts, hybrid search, same machine.

    .venv/bin/pip install -e '.[bench]'
    nice -n 10 .venv/bin/python benchmarks/peer_lancedb.py [../shared/benchmarks/scifact] [--reader]
    nice -n 10 .venv/bin/python benchmarks/peer_lancedb.py --scale 100k    # or --scale 1m

**SciFact** (the default): LanceDB and qa each index title + text of every document (BEIR's
document, qa's ``load_beir``) into a fresh temporary folder, then answer every judged query of
the split with 10 hits, taking turns query by query (the order swapping every query) as in
``peer_txtai.py``. qa is asked two ways: its retrieval alone (``qa hybrid, search only``, what
LanceDB's hybrid query does) and the whole answer a user gets (``ask``, reader off);
``--reader`` adds the whole answer with the reader. Each system lives in its own process, so
its peak memory (VmHWM: index build included) is its own; the reader-on system builds its own
index in a third process (sharing a folder, two processes would write its sentence vectors at
once). Latency is timed inside each process, query encoding included, and the table gives
nDCG@10, Recall@10, MRR@10 (``qa.evaluation.metrics``), index seconds, documents per second,
median and 95th percentile query latency and peak memory.

LanceDB is given the vectors of qa's own ``SentenceTransformerEncoder`` (the bundled
all-MiniLM-L6-v2, 256 word pieces, its default backend) for documents and queries, unit length,
so the model is identical; its index time covers embedding, writing the table and the
full-text index. It then runs with its defaults:

* full-text index ``create_fts_index("text")``: Lance's native BM25 index, the ``simple``
  tokenizer (split on whitespace and punctuation), lower-cased, ASCII folding, English stemming
  and stop words removed, no positions (no phrase queries); the query is a plain match query;
* vector search: at 5,183 rows no ANN index is built (LanceDB's docs: unnecessary below about
  100k rows), so the vector leg is an exact flat scan, L2 distance (on unit vectors the same
  order as cosine, qa's measure);
* hybrid: ``search(query_type="hybrid").vector(v).text(q).limit(10)``: each leg fetches 10
  rows and the default reranker, reciprocal rank fusion (``RRFReranker(K=60)``), fuses them.

**Synthetic scales** (``--scale 100k``, ``--scale 1m``): the corpus ``bench.synthetic_corpus``
gives qa in ``bench.py`` (texts and vectors), in a LanceDB table with an ANN vector index
(``--vector-index``, default ``IVF_HNSW_SQ``, LanceDB's graph index for high recall, with its
default parameters; its recall@10 against an exact scan is recorded) and the same full-text
index. One process builds it (index seconds: table, vector index, full-text index; its peak
memory includes making the corpus, as qa's ``peak_memory_mb`` in bench.json does); a fresh one
opens the table, loads the model and answers one query (load seconds, serving memory, as
``bench.serving``), then times ``bench.QUERY_RUNS`` hybrid queries (SciFact test questions,
embedded by the real encoder, as ``bench.latencies``). No quality figure: the corpus is
synthetic. (``bench.synthetic_corpus`` embeds SciFact with qa once, caching qa's index; here
that cache lives in a temporary folder of its own, ``CORPUS_CACHE``, so the repository's is not
rebuilt by a working tree of another index format.)

Results go to ``benchmarks/results/peer_lancedb.json``: ``scifact`` for the first kind of run,
``scales``, keyed by scale, for the second; a run replaces only its own part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import bench
import numpy as np
from bench import QUERY_RUNS, folder_size_mb, peak_memory_mb, percentile_ms, scifact_questions
from peer_txtai import COLUMNS as TXTAI_COLUMNS
from peer_txtai import DEFAULT_DATASET, DEPTH, REPO, WARM_UP_QUERY, Search, System, machine, qa_commit, quality

from qa.embed.encoder import SentenceTransformerEncoder, normalize
from qa.embed.models import DEFAULT_MODEL
from qa.evaluation.beir import BeirDataset, beir_index, load_beir
from qa.index.build import settings_for
from qa.search.query import embed_query

os.environ.setdefault("LANCEDB_LOG", "error")  # Lance warns of a future change on every query otherwise
DEFAULT_JSON = REPO / "benchmarks" / "results" / "peer_lancedb.json"
SCALES = {"100k": 100_000, "1m": 1_000_000}
TABLE = "passages"
RECALL_QUERIES = 100
# bench.synthetic_corpus keeps SciFact's qa index under <REPO>/index/beir; here it gets its own folder.
CORPUS_CACHE = Path(tempfile.gettempdir()) / "peer_lancedb-corpus"


# ---------------------------------------------------------------- LanceDB


def lancedb_table(folder: Path, ids: list[str], texts: list[str], vectors: np.ndarray) -> Any:
    """A new LanceDB table of (doc_id, text, vector) rows in ``folder``."""
    import lancedb
    import pyarrow as pa

    data = pa.table(
        {
            "doc_id": pa.array(ids),
            "text": pa.array(texts),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
        }
    )
    return lancedb.connect(folder).create_table(TABLE, data=data)


def add_fts_index(table: Any) -> None:
    """LanceDB's full-text index on ``text``, with its defaults."""
    with warnings.catch_warnings():  # create_fts_index is deprecated for create_index(config=FTS()), same index
        warnings.simplefilter("ignore")
        table.create_fts_index("text")


def hybrid_search(table: Any, encoder: SentenceTransformerEncoder) -> Search:
    """LanceDB's default hybrid query (RRF over a vector and a full-text leg), the query embedded by qa's encoder."""

    def search(text: str) -> list[str]:
        vector = embed_query(encoder, text)
        query = table.search(query_type="hybrid").vector(vector).text(text).select(["doc_id"]).limit(DEPTH)
        return [str(doc_id) for doc_id in query.to_arrow().column("doc_id").to_pylist()]

    return search


def index_config(table: Any) -> list[dict[str, Any]]:
    """The table's indexes as LanceDB reports them (type, column, settings)."""
    return [
        {"name": i.name, "type": i.index_type, "columns": i.columns, "details": i.index_details}
        for i in table.list_indices()
    ]


def build_lancedb(dataset: BeirDataset, workdir: Path) -> list[System]:
    """LanceDB's table of the dataset: vectors from qa's encoder, a full-text index, no ANN index."""
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    encoder.encode(["load the model"])  # loaded before the clock starts
    ids = [d.doc_id for d in dataset.documents]
    texts = [d.paragraphs[0] for d in dataset.documents]
    load = os.getloadavg()
    started = time.perf_counter()
    vectors = normalize(encoder.encode(texts))
    embedded = time.perf_counter()
    table = lancedb_table(workdir / "lancedb", ids, texts, vectors)
    written = time.perf_counter()
    add_fts_index(table)
    index_seconds = time.perf_counter() - started
    config = {
        "lancedb": version("lancedb"),
        "pyarrow": version("pyarrow"),
        "model": encoder.location,
        "encoder_backend": encoder.active_backend,
        "indexes": index_config(table),
        "vector_search": "exact flat scan (no ANN index), L2 on unit vectors",
        "hybrid": "query_type='hybrid', default reranker RRFReranker(K=60), each leg limit 10",
        "embed_seconds": embedded - started,
        "table_seconds": written - embedded,
        "fts_index_seconds": index_seconds - (written - started),
        "load_average_before_build": load,
    }
    return [System(f"LanceDB {version('lancedb')} hybrid", hybrid_search(table, encoder), index_seconds, config)]


# ---------------------------------------------------------------- qa


def build_qa(dataset: BeirDataset, workdir: Path, *, reader: bool = False) -> list[System]:
    """The qa index of the dataset, built in a new folder, asked as peer_txtai asks.

    Without ``reader``: retrieval alone (candidates, fusion, folding) and the whole answer
    (``ask``: re-ranking by best sentence, the extractive answer) with the reader off. With it:
    only the whole answer with the reader on.
    """
    from qa.reader.model import Reader
    from qa.search.ask import ask
    from qa.search.duplicates import fold_duplicates
    from qa.search.evidence import SentenceMemory
    from qa.search.retrieval import candidate_hits

    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    encoder.encode(["load the model"])
    settings, _ = settings_for(encoder)
    load = os.getloadavg()
    started = time.perf_counter()
    index = beir_index(dataset, workdir / ("qa-reader" if reader else "qa"), encoder=encoder, settings=settings)
    index_seconds = time.perf_counter() - started
    config = {
        "model": encoder.location,
        "encoder_backend": encoder.active_backend,
        "mode": "hybrid",
        "settings": repr(index.manifest.settings),
        "load_average_before_build": load,
    }
    sentences = SentenceMemory()
    if reader:
        model = Reader()
        model.read("load the model", ["load the model"])  # exported and compiled before any query

        def answer_read(text: str) -> list[str]:
            result = ask(index, text, encoder=encoder, k=DEPTH, sentences=sentences, reader=model)
            return [hit.passage.doc_id for hit in result.hits]

        return [System("qa whole answer, reader on", answer_read, index_seconds, {**config, "reader": model.name})]

    def search(text: str) -> list[str]:
        hits = candidate_hits(index, embed_query(encoder, text), text, mode="hybrid", where=None)
        return [hit.passage.doc_id for hit in fold_duplicates(hits, limit=DEPTH)]

    def answer(text: str) -> list[str]:
        return [hit.passage.doc_id for hit in ask(index, text, encoder=encoder, k=DEPTH, sentences=sentences).hits]

    return [
        System("qa hybrid, search only", search, index_seconds, config),
        System("qa whole answer, reader off", answer, index_seconds, config),
    ]


# ---------------------------------------------------------------- one process per system


def protocol_stream() -> IO[str]:
    """This worker's channel to the parent: the real stdout; anything a library prints goes to stderr."""
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def send(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message, default=str) + "\n")


def serve_systems(systems: list[System], stream: IO[str]) -> None:
    """Answer the parent's queries one line at a time, timing each; report peak memory at the end."""
    for system in systems:
        system.search(WARM_UP_QUERY)  # first-call costs are not a query's latency
    described = [{"name": s.name, "index_seconds": s.index_seconds, "config": s.config} for s in systems]
    send(stream, {"systems": described})
    by_name = {s.name: s for s in systems}
    for line in sys.stdin:
        request = json.loads(line)
        if "query" not in request:
            break
        started = time.perf_counter()
        doc_ids = by_name[request["system"]].search(request["query"])
        send(stream, {"doc_ids": doc_ids, "ms": (time.perf_counter() - started) * 1000})
    send(stream, {"peak_memory_mb": peak_memory_mb()})


@dataclass
class Worker:
    """A child process holding one or more systems, answering queries over a pipe."""

    process: subprocess.Popen[str]
    systems: list[dict[str, Any]]

    @classmethod
    def start(cls, arguments: list[str]) -> Worker:
        command = [sys.executable, __file__, *arguments]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return cls(process, read_message(process)["systems"])

    def ask(self, system: str, query: str) -> tuple[list[str], float]:
        reply = self.call({"system": system, "query": query})
        return reply["doc_ids"], reply["ms"]

    def finish(self) -> float:
        """The process's peak memory (MB); it exits."""
        memory = float(self.call({})["peak_memory_mb"])
        self.process.wait()
        return memory

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return read_message(self.process)


def read_message(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"worker {process.args!r} ended without answering (exit code {process.wait()})")
    message: dict[str, Any] = json.loads(line)
    return message


def run_scifact(dataset_path: Path, split: str, *, reader: bool) -> dict[str, Any]:
    """Each system in its own process, the queries asked in turn; results as written to JSON."""
    dataset = load_beir(dataset_path, split=split)
    print(f"{dataset.name} {split}: {len(dataset.documents)} documents, {len(dataset.queries)} queries", flush=True)
    with tempfile.TemporaryDirectory(prefix="peer_lancedb-") as folder:
        common = [str(dataset_path), "--split", split, "--workdir", folder, "--worker"]
        workers = [Worker.start([*common, "lancedb"]), Worker.start([*common, "qa"])]
        if reader:
            workers.append(Worker.start([*common, "qa-reader"]))
        turns = [(worker, system["name"]) for worker in workers for system in worker.systems]
        runs: dict[str, dict[str, dict[str, float]]] = {name: {} for _, name in turns}
        latencies: dict[str, list[float]] = {name: [] for _, name in turns}
        for number, (query_id, text) in enumerate(dataset.queries.items()):
            for worker, name in turns if number % 2 == 0 else turns[::-1]:
                doc_ids, ms = worker.ask(name, text)
                latencies[name].append(ms)
                runs[name][query_id] = {doc_id: -float(rank) for rank, doc_id in enumerate(doc_ids, start=1)}
        memory = {id(worker): worker.finish() for worker in workers}
    systems = []
    for worker in workers:
        for system in worker.systems:
            name = system["name"]
            metrics = quality(dataset, runs[name])
            seconds = system["index_seconds"]
            systems.append(
                {
                    "system": name,
                    "ndcg@10": metrics["ndcg@10"],
                    "recall@10": metrics["recall@10"],
                    "mrr@10": metrics["mrr@10"],
                    "index_seconds": seconds,
                    "docs_per_second": len(dataset.documents) / seconds,
                    "query_p50_ms": float(np.percentile(latencies[name], 50)),
                    "query_p95_ms": float(np.percentile(latencies[name], 95)),
                    "peak_memory_mb": memory[id(worker)],
                    "all_metrics": metrics,
                    "config": system["config"],
                }
            )
    return {
        "dataset": dataset.name,
        "split": split,
        "qa_commit": qa_commit(),
        "documents": len(dataset.documents),
        "queries": len(dataset.queries),
        "machine": machine(),
        "systems": systems,
    }


# ---------------------------------------------------------------- synthetic scales


def synthetic_corpus(size: int) -> tuple[list[str], np.ndarray]:
    """``bench.synthetic_corpus(size)``, its SciFact index cached in ``CORPUS_CACHE`` instead of the repository's.

    The shared cache is left as it is: a qa whose index format differs from the cache's would
    otherwise rebuild it in place (and a qa of the other format could then not read it).
    """
    bench.REPO = CORPUS_CACHE  # read by synthetic_corpus only for <REPO>/index/beir
    return bench.synthetic_corpus(size)


def build_scale(size: int, folder: Path, vector_index: str) -> dict[str, Any]:
    """LanceDB over bench.py's synthetic corpus: table, ANN vector index, full-text index; timed and measured."""
    texts, vectors = synthetic_corpus(size)
    vectors = normalize(vectors)
    load = os.getloadavg()
    started = time.perf_counter()
    table = lancedb_table(folder, [f"s{i}" for i in range(size)], texts, vectors)
    written = time.perf_counter()
    with warnings.catch_warnings():  # the keyword form is deprecated for config=IvfHnswSq(...), same index
        warnings.simplefilter("ignore")
        table.create_index(index_type=vector_index)
    vector_indexed = time.perf_counter()
    add_fts_index(table)
    done = time.perf_counter()
    return {
        "passages": size,
        "lancedb": version("lancedb"),
        "index_seconds": round(done - started, 1),
        "table_seconds": round(written - started, 1),
        "vector_index_seconds": round(vector_indexed - written, 1),
        "fts_index_seconds": round(done - vector_indexed, 1),
        "index_mb": folder_size_mb(folder),
        "indexes": index_config(table),
        "load_average_before_build": load,
        "build_peak_memory_mb": peak_memory_mb(),
    }


def serve_scale(folder: Path) -> dict[str, Any]:
    """A fresh process: open the table and the model, answer once (serving memory), then time queries and recall."""
    import lancedb

    started = time.perf_counter()
    table = lancedb.connect(folder).open_table(TABLE)
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    load_seconds = time.perf_counter() - started
    search = hybrid_search(table, encoder)
    first = time.perf_counter()
    search("cell growth")  # LanceDB reads its indexes, and the model loads, on the first query
    first_query_seconds = time.perf_counter() - first
    serving_memory = peak_memory_mb()
    questions = scifact_questions()
    runs = (questions * (QUERY_RUNS // len(questions) + 1))[:QUERY_RUNS]
    seconds = []
    for question in runs:
        started = time.perf_counter()
        search(question)
        seconds.append(time.perf_counter() - started)
    after_queries = peak_memory_mb()  # before the exact scans below, which read every vector
    return {
        "index_load_seconds": round(load_seconds, 2),
        "first_query_seconds": round(first_query_seconds, 2),
        "serving_memory_mb": round(serving_memory),
        "search_p50_ms": percentile_ms(seconds, 50),
        "search_p95_ms": percentile_ms(seconds, 95),
        "memory_after_queries_mb": round(after_queries),
        **ann_against_exact(table, encoder, questions[:RECALL_QUERIES]),
    }


def ann_against_exact(table: Any, encoder: SentenceTransformerEncoder, questions: list[str]) -> dict[str, float]:
    """The ANN index's vector search beside an exact scan (``bypass_vector_index``): recall@10 and latencies."""
    vectors = normalize(encoder.encode(questions))

    def top(vector: np.ndarray, exact: bool) -> tuple[set[str], float]:
        query = table.search(vector).select(["doc_id"]).limit(DEPTH)
        if exact:
            query = query.bypass_vector_index()
        started = time.perf_counter()
        rows = query.to_arrow()
        return set(rows.column("doc_id").to_pylist()), time.perf_counter() - started

    ann = [top(v, exact=False) for v in vectors]
    exact = [top(v, exact=True) for v in vectors]
    recall = np.mean([len(found & truth) / DEPTH for (found, _), (truth, _) in zip(ann, exact, strict=True)])
    return {
        "ann_recall_at_10_vs_exact": round(float(recall), 4),
        "ann_vector_search_p50_ms": percentile_ms([s for _, s in ann], 50),
        "exact_vector_search_p50_ms": percentile_ms([s for _, s in exact], 50),
    }


def run_scale(scale: str, vector_index: str) -> dict[str, Any]:
    """Build in one process, serve in another; the results of both."""
    with tempfile.TemporaryDirectory(prefix=f"peer_lancedb-{scale}-") as folder:
        common = ["--scale", scale, "--vector-index", vector_index, "--workdir", folder, "--worker"]
        built = one_shot([*common, "scale-build"])
        print(json.dumps(built), flush=True)
        served = one_shot([*common, "scale-serve"])
    return {"scale": scale, **built, **served, "machine": machine()}


def one_shot(arguments: list[str]) -> dict[str, Any]:
    process = subprocess.Popen([sys.executable, __file__, *arguments], stdout=subprocess.PIPE, text=True)
    message = read_message(process)
    process.wait()
    return message


# ---------------------------------------------------------------- report


COLUMNS = (*TXTAI_COLUMNS, ("peak_memory_mb", "{:.0f}"))  # peer_txtai's table, with each process's peak
SCALE_ROWS = (
    "index_seconds",
    "table_seconds",
    "vector_index_seconds",
    "fts_index_seconds",
    "index_mb",
    "build_peak_memory_mb",
    "index_load_seconds",
    "first_query_seconds",
    "serving_memory_mb",
    "search_p50_ms",
    "search_p95_ms",
    "memory_after_queries_mb",
    "ann_recall_at_10_vs_exact",
    "ann_vector_search_p50_ms",
    "exact_vector_search_p50_ms",
)


def table(systems: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per system."""
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(form.format(s[name]) for name, form in COLUMNS) + " |" for s in systems]
    return "\n".join(lines)


def scale_table(result: dict[str, Any]) -> str:
    lines = [f"| LanceDB at {result['scale']} ({result['passages']:,} passages) | |", "|---|---|"]
    lines += [f"| {key} | {result.get(key, '-')} |" for key in SCALE_ROWS]
    return "\n".join(lines)


def update_json(path: Path, key: str, value: dict[str, Any], scale: str | None = None) -> None:
    """Replace one part of the results file (``scifact``, or one scale under ``scales``), keeping the rest."""
    report = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if scale is None:
        report[key] = value
    else:
        report.setdefault(key, {})[scale] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


def worker(args: argparse.Namespace) -> None:
    """One child process's part (``--worker``): build, then answer or report, over the protocol stream."""
    stream = protocol_stream()
    workdir = Path(args.workdir)
    if args.worker == "scale-build":
        send(stream, build_scale(SCALES[args.scale], workdir, args.vector_index))
    elif args.worker == "scale-serve":
        send(stream, serve_scale(workdir))
    else:
        dataset = load_beir(args.dataset, split=args.split)
        if args.worker == "lancedb":
            systems = build_lancedb(dataset, workdir)
        else:
            systems = build_qa(dataset, workdir, reader=args.worker == "qa-reader")
        serve_systems(systems, stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--split", default="test")
    parser.add_argument("--reader", action="store_true", help="also time qa's whole answer with the reader")
    parser.add_argument("--scale", choices=sorted(SCALES), help="LanceDB over bench.py's synthetic corpus instead")
    parser.add_argument("--vector-index", default="IVF_HNSW_SQ", help="LanceDB's ANN index at --scale")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one system's process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"  # the model comes from the bundled folder
    if args.worker:
        worker(args)
    elif args.scale:
        result = run_scale(args.scale, args.vector_index)
        print(scale_table(result))
        update_json(args.json, "scales", result, scale=args.scale)
        print(f"written: {args.json}")
    else:
        report = run_scifact(args.dataset, args.split, reader=args.reader)
        print(table(report["systems"]))
        update_json(args.json, "scifact", report)
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
