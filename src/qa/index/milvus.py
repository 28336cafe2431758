"""The Milvus backend: passages, vectors and BM25 in a Milvus collection (Milvus Lite, a server or a cluster).

One collection per index, reached by an alias (the name ``--store`` gives); each build
that starts afresh fills a new collection ``<alias>_g<hex>`` and switches the alias
to it when it is complete, so questions never see half an index. Beside it,
``<alias>_g<hex>_documents`` holds the documents (their JSON in parts of at most a
VARCHAR's size) with each one's passage count. The record (model, dimension, corpus
fingerprint, settings, counts, format) is a property of the passage collection,
written last by every build, and checked on open like the local index's manifest.

A passage row holds the passage's fields, its unit vector, its BM25 text and the
sparse vector Milvus's BM25 function computes from it, and its sentences' spans and
int8 vectors (``qa.index.sentences``), so evidence needs no embedding at question time.

The BM25 text is qa's own tokens (``qa.index.lexical.tokenize``: bm25s's tokenizer,
its English stop words, Snowball stems) joined by spaces; Milvus's analyser only
splits it again. So BM25 sees exactly the tokens the local index sees, on Milvus Lite
(whose analyser has no stemmer) and on a server alike; Milvus then scores them with
Lucene's BM25 (k1 = 1.5, b = 0.75, like qa's) times ``k1 + 1``, which qa divides out: the
local index's scores.

Filters become expressions over integers only (hashes of document ids and outlets, days
as ``YYYYMMDD``) passed as expression templates (``filter_params``); Milvus Lite does
not read templates, so for it qa writes the same integers into the expression itself:
no text a person typed ever enters one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.errors import IndexNotFoundError
from qa.index.files import document_from_json
from qa.index.lexical import tokenize
from qa.index.milvus_connect import (
    all_rows,
    connect,
    ensure_loaded,
    live_collection,
    milvus_damaged,
    read_record,
    talking_to,
)
from qa.index.milvus_schema import (
    BM25_PARAMS,
    DOCUMENTS_PER_PAGE,
    FETCH_BATCH,
    GENERATION_INFIX,
    HNSW_SEARCH_EF,
    PASSAGE_FIELDS,
    MilvusRecord,
    decode_sentences,
    documents_collection,
    filter_expression,
    key_of,
    lexical_tokens,
    passage_of,
    template_for,
)
from qa.index.sentences import PassageSentences
from qa.index.spec import StoreSpec
from qa.index.store import Candidates, SearchFilter, StoreSummary, check_model
from qa.records import Document, Passage

if TYPE_CHECKING:
    from pymilvus import MilvusClient


class MilvusStore:
    """A qa index in a Milvus collection: what search asks (``PassageStore``), answered by Milvus."""

    def __init__(
        self,
        client: MilvusClient,
        spec: StoreSpec,
        *,
        collection: str,
        record: MilvusRecord,
        documents: list[Document],
        counts: dict[str, int],
    ) -> None:
        self.client = client
        self.spec = spec
        self.collection = collection
        self.record = record
        self.documents_with_text = documents
        self.documents = [document.metadata for document in documents]
        self._counts = counts
        self._metadata_terms: frozenset[str] | None = None

    @classmethod
    def open(cls, spec: StoreSpec, client: MilvusClient | None = None) -> MilvusStore:
        """The index the spec names.

        Raises:
            StoreUnavailableError: Milvus cannot be reached.
            IndexNotFoundError: No qa index under that name (the message lists those there are).
            IndexMismatchError, IndexCorruptError: Not one this qa can read.
        """
        if client is None and spec.kind == "milvus-lite" and spec.path is not None and not spec.path.exists():
            # Not made by asking: Milvus Lite would create the file (a folder) just to find it empty.
            raise IndexNotFoundError(f"no index in {spec.describe()}", fix="run `qa index --store ...` to build it")
        client = client or connect(spec)
        collection = live_collection(client, spec)
        if collection is None:
            raise IndexNotFoundError(f"no index in {spec.describe()}", fix=_known_indexes(client, spec))
        record = read_record(client, spec, collection)
        ensure_loaded(client, spec, collection)
        documents, counts = read_documents(client, spec, collection)
        if len(documents) != record.documents:
            raise milvus_damaged(spec, f"{len(documents)} documents; its record says {record.documents}")
        return cls(client, spec, collection=collection, record=record, documents=documents, counts=counts)

    # ------------------------------------------------------------------ what search asks

    @property
    def model(self) -> str:
        """The embedding model of the stored vectors."""
        return self.record.model

    def document(self, doc_id: str) -> Document | None:
        """The document with this id, text and all; ``None`` if the store has none."""
        return next((document for document in self.documents_with_text if document.doc_id == doc_id), None)

    def summary(self) -> StoreSummary:
        """Model, counts and build time, from the record."""
        record = self.record
        return StoreSummary(record.model, record.documents, record.passages, record.built_at)

    def check_model(self, model: str) -> None:
        """Refuse to mix vectors of two models."""
        check_model(self.record.model, model)

    def passage_counts(self) -> dict[str, int]:
        """Passages per document id."""
        return dict(self._counts)

    def passages_by_id(self, ids: Sequence[str]) -> list[Passage]:
        """The passages with these ids, in the same order."""
        rows = self._rows_by_id(ids, list(PASSAGE_FIELDS))
        return [passage_of(rows[passage_id]) for passage_id in ids]

    def sentences_of(self, ids: Sequence[str]) -> list[PassageSentences]:
        """The sentences of these passages with the vectors stored when they were indexed."""
        rows = self._rows_by_id(ids, ["passage_id", "sentences"])
        return [decode_sentences(rows[passage_id]["sentences"], self.record.dimension) for passage_id in ids]

    def iter_passages(self, where: SearchFilter | None = None) -> Iterator[Passage]:
        """Every passage (that ``where`` allows), in document and paragraph order, documents a page at a time."""
        documents = self.documents
        if where is not None and where.doc_ids:
            documents = [document for document in documents if document.doc_id in where.doc_ids]
        for first in range(0, len(documents), DOCUMENTS_PER_PAGE):
            page = documents[first : first + DOCUMENTS_PER_PAGE]
            order = {document.doc_id: position for position, document in enumerate(page)}
            base = where or SearchFilter()
            expression, params = filter_expression(dataclasses.replace(base, doc_ids=frozenset(order)))
            rows = self._all_rows(expression, params, list(PASSAGE_FIELDS))
            passages = [passage_of(row) for row in rows]
            yield from sorted(passages, key=lambda p: (order[p.doc_id], p.start, p.paragraph, p.passage_id))

    def dense_candidates(self, vector: np.ndarray, *, depth: int, where: SearchFilter | None) -> Candidates:
        """Up to ``depth`` passages nearest to ``vector`` (inner product) among those ``where`` allows."""
        data = [np.asarray(vector, dtype=np.float32).tolist()]
        return self._search(data, "vector", "IP", depth=depth, where=where)

    def bm25_candidates(self, text: str, *, depth: int, where: SearchFilter | None) -> Candidates:
        """Up to ``depth`` best BM25 passages for ``text`` among those ``where`` allows."""
        tokens = lexical_tokens(text)
        found = self._search([tokens], "sparse", "BM25", depth=depth, where=where) if tokens else _no_candidates()
        if len(found.ids) >= depth:
            return found
        # Like the local index: fewer passages hold a query word than were asked for, so the first others follow,
        # scoring 0 (in hybrid search their dense score may still count).
        others = self._first_passages(where, depth - len(found.ids), exclude=set(found.ids))
        return Candidates((*found.ids, *others), np.concatenate([found.scores, np.zeros(len(others), np.float32)]))

    def _first_passages(self, where: SearchFilter | None, count: int, *, exclude: set[str]) -> list[str]:
        """The ids of the first ``count`` passages in store order that ``where`` allows, but for ``exclude``."""
        chosen: list[str] = []
        for passage in self.iter_passages(where):
            if count <= len(chosen):
                break
            if passage.passage_id not in exclude:
                chosen.append(passage.passage_id)
        return chosen

    def dense_scores(self, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """Inner products of ``vector`` with these passages' stored vectors."""
        if not ids:
            return np.zeros(0, dtype=np.float32)
        # Milvus scores them (a search limited to these keys) rather than sending 1.5 kB of vector each;
        # any it leaves out (an approximate index may) are fetched and scored here.
        scored: dict[str, float] = {}
        data = [np.asarray(vector, dtype=np.float32).tolist()]
        for first in range(0, len(ids), FETCH_BATCH):
            chunk = list(ids[first : first + FETCH_BATCH])
            found = self._raw_search(
                data, "vector", "IP", limit=len(chunk), expression="key in {keys}", params=_keys(chunk)
            )
            scored.update(found)
        missing = [passage_id for passage_id in ids if passage_id not in scored]
        if missing:
            rows = self._rows_by_id(missing, ["passage_id", "vector"])
            for passage_id in missing:
                scored[passage_id] = float(np.dot(np.asarray(rows[passage_id]["vector"], dtype=np.float32), vector))
        return np.asarray([scored[passage_id] for passage_id in ids], dtype=np.float32)

    def bm25_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        """BM25 scores of these passages for ``text`` (0 for a passage sharing no token with it)."""
        scores = np.zeros(len(ids), dtype=np.float32)
        tokens = lexical_tokens(text)
        if not ids or not tokens:
            return scores
        position = {passage_id: i for i, passage_id in enumerate(ids)}
        expression = "key in {keys}"
        for first in range(0, len(ids), FETCH_BATCH):
            chunk = list(ids[first : first + FETCH_BATCH])
            found = self._raw_search(
                [tokens], "sparse", "BM25", limit=len(chunk), expression=expression, params=_keys(chunk)
            )
            for passage_id, score in found:
                scores[position[passage_id]] = score
        return scores

    def known_terms(self, terms: Iterable[str]) -> frozenset[str]:
        """Those BM25 ``terms`` found in the passages (asked of Milvus) or the documents' metadata."""
        wanted = list(dict.fromkeys(terms))
        known = {term for term in wanted if term in self._metadata()}
        probes = [term for term in wanted if term not in known and term.strip() and " " not in term]
        if probes:
            with talking_to(self.spec, "looking up words"):
                results = self.client.search(
                    self.collection,
                    data=probes,
                    anns_field="sparse",
                    limit=1,
                    output_fields=["passage_id"],
                    search_params={"metric_type": "BM25"},
                )
            known |= {term for term, hits in zip(probes, results, strict=True) if len(hits)}
        return frozenset(known)

    def close(self) -> None:
        """Close the client (Milvus Lite keeps serving other clients of the same file in this process)."""
        with contextlib.suppress(Exception):
            self.client.close()

    # ------------------------------------------------------------------ Milvus calls

    def _metadata(self) -> frozenset[str]:
        if self._metadata_terms is None:
            metadata = [" ".join((d.title, d.outlet, d.author, d.date)) for d in self.documents]
            self._metadata_terms = frozenset(token for tokens in tokenize(metadata) for token in tokens)
        return self._metadata_terms

    def _search(
        self, data: list[Any], field: str, metric: str, *, depth: int, where: SearchFilter | None
    ) -> Candidates:
        if self.record.passages == 0 or depth <= 0:
            return _no_candidates()
        expression, params = filter_expression(where)
        found = self._raw_search(data, field, metric, limit=depth, expression=expression, params=params)
        return Candidates(tuple(p for p, _ in found), np.asarray([s for _, s in found], dtype=np.float32))

    def _raw_search(
        self, data: list[Any], field: str, metric: str, *, limit: int, expression: str, params: dict[str, Any]
    ) -> list[tuple[str, float]]:
        """``(passage id, score)`` best first; BM25 scores as qa's local index gives them."""
        expression, params = self._template(expression, params)
        with talking_to(self.spec, "searching"):
            [hits] = self.client.search(
                self.collection,
                data=data,
                anns_field=field,
                limit=limit,
                filter=expression,
                filter_params=params,
                output_fields=["passage_id"],
                search_params=self._search_params(metric, limit),
            )
        found = [(hit["entity"]["passage_id"], float(hit["distance"])) for hit in hits]
        if metric != "BM25":
            return found
        # Milvus scores Lucene's BM25 times k1 + 1 (Milvus Lite gives its negative): qa's score is that / (k1 + 1).
        return [(p, abs(s) / (1.0 + BM25_PARAMS["bm25_k1"])) for p, s in found]

    def _search_params(self, metric: str, limit: int) -> dict[str, Any]:
        """The metric, and for HNSW a search breadth well above the depth asked (recall near exact)."""
        if metric == "IP" and self.record.vector_index == "HNSW":
            return {"metric_type": metric, "params": {"ef": max(limit, HNSW_SEARCH_EF)}}
        return {"metric_type": metric}

    def _rows_by_id(self, ids: Sequence[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        """Rows by passage id; a missing one is damage (an id the store itself gave)."""
        rows: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(ids))
        for first in range(0, len(wanted), FETCH_BATCH):
            chunk = wanted[first : first + FETCH_BATCH]
            expression, params = self._template("key in {keys}", _keys(chunk))
            with talking_to(self.spec, "fetching passages"):
                found = self.client.query(
                    self.collection, filter=expression, filter_params=params, output_fields=fields, limit=len(chunk)
                )
            rows.update((row["passage_id"], row) for row in found)
        missing = [passage_id for passage_id in wanted if passage_id not in rows]
        if missing:
            raise KeyError(f"no passage {missing[0]!r} in {self.spec.describe()}")
        return rows

    def _all_rows(self, expression: str, params: dict[str, Any], fields: list[str]) -> list[dict[str, Any]]:
        return all_rows(self.client, self.spec, self.collection, expression, params, fields=fields)

    def _template(self, expression: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return template_for(self.spec, expression, params)


def read_documents(client: MilvusClient, spec: StoreSpec, collection: str) -> tuple[list[Document], dict[str, int]]:
    """The documents of ``collection`` in corpus order (by source), and each one's passage count.

    Raises:
        IndexCorruptError: The documents collection is missing, or a document's parts are.
    """
    name = documents_collection(collection)
    with talking_to(spec, "reading the documents"):
        exists = client.has_collection(name)
    if not exists:
        raise milvus_damaged(spec, f"its documents collection {name} is missing")
    rows = all_rows(client, spec, name, "", {}, fields=["doc_key", "part", "parts", "passages", "body"])
    parts: dict[int, dict[int, dict[str, Any]]] = {}
    for row in rows:
        parts.setdefault(int(row["doc_key"]), {})[int(row["part"])] = row
    documents, counts = [], {}
    for doc_key, pieces in parts.items():
        # Part 0 says how many there are; an update cut short may leave a longer old version's extra parts.
        expected = int(pieces[0]["parts"]) if 0 in pieces else len(pieces) + 1
        if any(part not in pieces for part in range(expected)):
            raise milvus_damaged(spec, f"document {doc_key} has {len(pieces)} of its {expected} parts")
        try:
            document = document_from_json(json.loads("".join(pieces[i]["body"] for i in range(expected))))
        except (KeyError, TypeError, ValueError) as error:
            raise milvus_damaged(spec, f"a document is not as qa writes it: {error}") from error
        documents.append(document)
        counts[document.doc_id] = int(pieces[0]["passages"])
    documents.sort(key=lambda d: (d.source, d.doc_id))
    return documents, counts


def _keys(ids: Sequence[str]) -> dict[str, Any]:
    return {"keys": [key_of(passage_id) for passage_id in ids]}


def _no_candidates() -> Candidates:
    return Candidates((), np.zeros(0, dtype=np.float32))


def _known_indexes(client: MilvusClient, spec: StoreSpec) -> str:
    """The fix for a missing index: build it, and the qa indexes this Milvus does hold."""
    with talking_to(spec, "listing collections"):
        aliases = sorted(
            alias
            for alias in client.list_aliases().get("aliases", [])
            if re.fullmatch(
                rf"{re.escape(alias)}{GENERATION_INFIX}[0-9a-f]+", client.describe_alias(alias)["collection_name"]
            )
        )
    held = f"; this Milvus holds qa indexes {', '.join(aliases)}" if aliases else ""
    return f"run `qa index --store ...` to build it, or check the collection name{held}"
