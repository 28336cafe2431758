"""BEIR-format benchmarks (SciFact and the like): loading, indexing once per dataset and model, scoring.

The index is built by ``qa.index.build.index_documents``, the same path as
``qa index``, under ``--cache``; retrieval is scored as users get it (``retrieve``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from qa.embed.encoder import Encoder
from qa.errors import QAError
from qa.evaluation.results import (
    EVAL_DEPTH,
    ModeResult,
    progress_bar,
    read_json_lines,
    retrieval_result,
    run_name,
    runs_of,
)
from qa.index.build import index_documents, open_index
from qa.index.lock import DEFAULT_WAIT_SECONDS
from qa.index.manifest import IndexSettings, file_sha256
from qa.index.spec import DEFAULT_COLLECTION, StoreSpec
from qa.index.store import PassageStore
from qa.reader.model import PassageReader
from qa.records import Document, Passage
from qa.search.evidence import SentenceMemory
from qa.search.modes import Mode
from qa.search.retrieval import retrieve

T = TypeVar("T")


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR-format dataset: documents, the split's queries and their judgments."""

    name: str
    documents: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    fingerprint: str


def load_beir(directory: Path, *, split: str = "test") -> BeirDataset:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/SPLIT.tsv``; only judged queries are kept."""
    for required in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (directory / required).is_file():
            raise QAError(f"{directory} is not a BEIR dataset: {required} is missing")
    qrels = _read_qrels(directory / "qrels" / f"{split}.tsv")
    queries = dict(query for _, query in _beir_rows(directory / "queries.jsonl", _beir_query))
    documents = [document for _, document in _beir_rows(directory / "corpus.jsonl", _beir_document)]
    return BeirDataset(
        name=directory.resolve().name,
        documents=documents,
        queries={q: queries[q] for q in qrels if q in queries},
        qrels=qrels,
        fingerprint=file_sha256(directory / "corpus.jsonl"),
    )


def _beir_rows(path: Path, parse: Callable[[dict[str, Any]], T]) -> Iterator[tuple[int, T]]:
    for number, row in read_json_lines(path):
        try:
            yield number, parse(row)
        except (KeyError, TypeError) as error:
            raise QAError(f"{path}, line {number}: missing field {error}") from error


def _beir_query(row: dict[str, Any]) -> tuple[str, str]:
    return str(row["_id"]), str(row["text"])


def _beir_document(row: dict[str, Any]) -> Document:
    # BEIR scores title + text as the document, so both go into its one paragraph.
    doc_id = str(row["_id"])
    title = _squeeze(row.get("title") or "")
    text = " ".join(part for part in (title, _squeeze(row.get("text") or "")) if part) or "(empty)"
    return Document(doc_id=doc_id, source=doc_id, paragraphs=(text,), title=title)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise QAError(f"cannot read {path}: {error}") from error
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split("\t") if "\t" in line else line.split()
        if not parts or (number == 1 and parts[-1].strip() == "score"):
            continue
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
        except (IndexError, ValueError) as error:
            raise QAError(f"{path}, line {number}: expected query-id, corpus-id, score ({error})") from error
    return qrels


def beir_index(
    dataset: BeirDataset,
    cache_dir: Path,
    *,
    encoder: Encoder,
    settings: IndexSettings,
    progress: bool = False,
    wait: float = DEFAULT_WAIT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
    store: StoreSpec | None = None,
) -> PassageStore:
    """The dataset's index, built once per dataset and model under ``cache_dir`` and reused after.

    With a Milvus ``store`` the index is built there instead, in a collection of the
    dataset and model's own (unless the spec names one); ``cache_dir`` then keeps the
    embedding cache.

    A second run started while the first builds waits for its build lock (up to
    ``wait`` seconds, telling ``on_wait``) and then reuses the first run's
    vectors instead of writing the same folder at once.

    Raises:
        IndexBusyError: Another process still builds this cache after ``wait`` seconds.
    """
    # The title is already in each document's text.
    settings = dataclasses.replace(settings, title_in_dense=False, title_in_bm25=False)
    index_dir = cache_dir / f"{dataset.name}-{dataset.fingerprint[:12]}" / _slug(encoder.name)
    # One passage per document; the model reads its first window, as in BEIR's published runs.
    passages = [_whole_document_passage(d) for d in dataset.documents]
    if store is not None and not store.is_local:
        from qa.index.milvus import MilvusStore
        from qa.index.milvus_build import index_documents_milvus

        if store.collection == DEFAULT_COLLECTION:
            name = f"qa_beir_{dataset.name}_{dataset.fingerprint[:12]}_{encoder.name}"
            store = store.with_collection(re.sub(r"[^A-Za-z0-9_]+", "_", name))
        index_documents_milvus(
            dataset.documents,
            passages,
            store,
            index_dir,
            fingerprint=dataset.fingerprint,
            encoder=encoder,
            settings=settings,
            progress=progress,
            wait=wait,
            on_wait=on_wait,
        )
        return MilvusStore.open(store)
    index_documents(
        dataset.documents,
        passages,
        index_dir,
        fingerprint=dataset.fingerprint,
        encoder=encoder,
        settings=settings,
        progress=progress,
        wait=wait,
        on_wait=on_wait,
    )
    return open_index(index_dir)


def _whole_document_passage(document: Document) -> Passage:
    text = document.paragraphs[0]
    return Passage(
        passage_id=document.doc_id,
        doc_id=document.doc_id,
        source=document.source,
        paragraph=1,
        start=0,
        end=len(text),
        text=text,
        title=document.title,
    )


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def evaluate_beir(
    store: PassageStore,
    dataset: BeirDataset,
    *,
    encoder: Encoder,
    modes: Sequence[Mode],
    reader: PassageReader | None = None,
    progress: bool = False,
) -> list[ModeResult]:
    """Retrieval metrics of every mode on the dataset's judged queries (document ids as in its qrels).

    With a ``reader``, hybrid search is scored twice: without it and with it (``hybrid+reader``).
    """
    sentences = SentenceMemory()
    results = []
    for mode, with_reader in runs_of(modes, reader):
        name = run_name(mode, with_reader)
        started = time.perf_counter()
        run = {}
        for query_id in progress_bar(list(dataset.queries), f"{name} queries", progress):
            query = dataset.queries[query_id]
            hits = retrieve(
                store,
                query,
                encoder=encoder,
                k=EVAL_DEPTH,
                mode=mode,
                sentences=sentences,
                reader=reader if with_reader else None,
            )
            run[query_id] = {hit.passage.doc_id: -float(hit.rank) for hit in hits}
        qrels = {q: j for q, j in dataset.qrels.items() if q in dataset.queries}
        results.append(retrieval_result(name, qrels, run, time.perf_counter() - started))
    return results
