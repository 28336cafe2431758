"""What a qa index looks like in Milvus: names, schemas, the record, rows, and filter expressions.

A passage collection's fields::

    key           INT64 primary key: the first 8 bytes of SHA-256 of the passage id
    passage_id, doc_id, source, title, outlet, author, date, url, text   VARCHAR
    doc_key, outlet_key   INT64 hashes of the document id and outlet, for filters
    day           INT64 YYYYMMDD of the date (0: none), for date ranges
    paragraph, start_offset, end_offset   INT64
    lexical       VARCHAR: the BM25 text as qa's tokens, analysed by Milvus
    sparse        SPARSE_FLOAT_VECTOR: Milvus's BM25 function of ``lexical``
    vector        FLOAT_VECTOR: the passage's unit vector (inner product)
    embed_hash    VARCHAR: SHA-256 of the embedded text (what an update may reuse)
    row_hash      VARCHAR: SHA-256 of everything in the row but the vectors (what an update rewrites)
    sentences     VARCHAR: JSON of the sentences' spans, int8 codes (base64) and scales

A documents collection holds each document's JSON in parts (``part`` of ``parts``), its
``doc_key`` and its passage count, and a 2-dimensional zero vector Milvus requires.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.index.files import document_to_json
from qa.index.lexical import DEFAULT_B, DEFAULT_K1, query_tokens, tokenize
from qa.index.manifest import IndexSettings, settings_from_json
from qa.index.sentences import PassageSentences
from qa.index.spec import StoreSpec
from qa.index.store import SearchFilter
from qa.records import Document, Passage

if TYPE_CHECKING:
    from pymilvus import MilvusClient

MILVUS_FORMAT = 1
RECORD_PROPERTY = "qa_record"
DOCUMENTS_SUFFIX = "_documents"
GENERATION_INFIX = "_g"
# A VARCHAR holds at most this many bytes; a document's JSON is cut into parts of at most
# DOCUMENT_PART_CHARS characters (4 bytes each at most in UTF-8).
VARCHAR_BYTES = 65_535
DOCUMENT_PART_CHARS = 16_000
# Keys per query, and rows per page when reading every row.
FETCH_BATCH = 1_000
PAGE_ROWS = 4_000
# Documents whose passages are read at a time by iter_passages.
DOCUMENTS_PER_PAGE = 200
CONNECT_TIMEOUT_SECONDS = 10.0
# HNSW's search breadth on a server: at least this, and never below the depth asked for.
HNSW_SEARCH_EF = 256
# qa's tokens, split on spaces; a stop word no token can be, since Milvus Lite's analyser
# falls back to a default English stop list when given none.
ANALYZER = {"tokenizer": "standard", "filter": [{"type": "stop", "stop_words": ["_"]}]}
BM25_PARAMS = {"bm25_k1": DEFAULT_K1, "bm25_b": DEFAULT_B}  # qa's own
PASSAGE_FIELDS = (
    *("passage_id", "doc_id", "source", "paragraph", "start_offset", "end_offset", "text"),
    *("title", "outlet", "author", "date", "url"),
)


def key_of(text: str) -> int:
    """A stable signed 64-bit key for an id or name (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big", signed=True)


def day_number(date: str) -> int:
    """``2020-08-02`` (or a date-time starting so) as ``20200802``; 0 for no date."""
    day = date[:10]
    return int(day.replace("-", "")) if len(day) == 10 and day.replace("-", "").isdigit() else 0


def lexical_tokens(text: str) -> str:
    """The BM25 text Milvus is asked with: the query's tokens as qa makes them, space-separated."""
    return " ".join(query_tokens(text))


def lexical_texts(texts: list[str]) -> list[str]:
    """The BM25 texts Milvus stores: each text's tokens, space-separated (tokenized together, faster)."""
    return [" ".join(tokens) for tokens in tokenize(texts)]


@dataclass(frozen=True)
class MilvusRecord:
    """What a collection was built from and how; written last, it commits a build."""

    model: str
    dimension: int
    corpus_fingerprint: str
    settings: IndexSettings
    documents: int
    passages: int
    built_at: str
    vector_index: str
    format_version: int = MILVUS_FORMAT

    def to_json(self) -> str:
        """The record as the collection property holds it."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MilvusRecord:
        """A record from its property; ``ValueError``/``KeyError``/``TypeError`` if it is not one qa wrote."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("the record is not a JSON object")
        values = {**data, "settings": settings_from_json(data["settings"])}
        record = cls(**values)
        if not isinstance(record.dimension, int) or not isinstance(record.passages, int):
            raise TypeError("the record's counts are not whole numbers")
        return record


def passages_collection(alias: str, generation: str) -> str:
    """The name of one generation's passage collection."""
    return f"{alias}{GENERATION_INFIX}{generation}"


def documents_collection(collection: str) -> str:
    """The documents collection beside a passage collection."""
    return f"{collection}{DOCUMENTS_SUFFIX}"


def decode_sentences(blob: str, dimension: int) -> PassageSentences:
    """A passage's stored sentences; no sentences (evidence embeds them) when none were stored."""
    if not blob:
        return PassageSentences((), np.zeros((0, dimension), dtype=np.float32))
    data = json.loads(blob)
    spans = tuple((int(start), int(end)) for start, end in data["spans"])
    codes = np.frombuffer(base64.b64decode(data["codes"]), dtype=np.int8).reshape(len(spans), dimension)
    vectors = codes.astype(np.float32) * np.asarray(data["scales"], dtype=np.float32)[:, None]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # unit again after rounding
    return PassageSentences(spans, vectors)


def passage_of(row: dict[str, Any]) -> Passage:
    """A passage from its row."""
    return Passage(
        passage_id=row["passage_id"],
        doc_id=row["doc_id"],
        source=row["source"],
        paragraph=int(row["paragraph"]),
        start=int(row["start_offset"]),
        end=int(row["end_offset"]),
        text=row["text"],
        title=row["title"],
        outlet=row["outlet"],
        author=row["author"],
        date=row["date"],
        url=row["url"],
    )


def filter_expression(where: SearchFilter | None) -> tuple[str, dict[str, Any]]:
    """A Milvus expression template and its parameters for ``where`` (``""`` for no filter); integers only."""
    if where is None or where.is_empty:
        return "", {}
    parts: list[str] = []
    params: dict[str, Any] = {}
    if where.doc_ids:
        parts.append("doc_key in {documents}")
        params["documents"] = sorted(key_of(doc_id) for doc_id in where.doc_ids)
    if where.outlets:
        parts.append("outlet_key in {outlets}")
        params["outlets"] = sorted(key_of(outlet) for outlet in where.outlets)
    if where.date_from or where.date_to:
        parts.append("day > 0")  # no date: outside any date range
    if where.date_from:
        parts.append("day >= {day_from}")
        params["day_from"] = day_number(where.date_from)
    if where.date_to:
        parts.append("day <= {day_to}")
        params["day_to"] = day_number(where.date_to)
    return " and ".join(parts), params


def inline(expression: str, params: dict[str, Any]) -> str:
    """The template with its parameters written in, for Milvus Lite (which ignores ``filter_params``).

    Only integers and lists of integers are accepted: formatted by ``int``, they cannot change the expression.
    """
    values = {}
    for name, value in params.items():
        numbers = [int(v) for v in value] if isinstance(value, list) else [int(value)]
        values[name] = f"[{', '.join(map(str, numbers))}]" if isinstance(value, list) else str(numbers[0])
    return expression.format(**values)


def template_for(spec: StoreSpec, expression: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The expression and parameters to send: a template for a server, written in for Milvus Lite."""
    if spec.kind == "milvus-lite":
        return inline(expression, params), {}
    return expression, params


# ---------------------------------------------------------------------- collections


def vector_index_for(spec: StoreSpec) -> str:
    """The vector index type: exact (FLAT) in Milvus Lite, HNSW on a server (README: sizing)."""
    return "FLAT" if spec.kind == "milvus-lite" else "HNSW"


def create_collections(client: MilvusClient, name: str, *, dimension: int, vector_index: str) -> None:
    """Create an empty passage collection ``name`` of ``dimension`` and its documents collection, both loaded."""
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description="qa passages")
    schema.add_field("key", DataType.INT64, is_primary=True)
    for field in (*PASSAGE_FIELDS, "embed_hash", "row_hash", "sentences"):
        if field in {"paragraph", "start_offset", "end_offset"}:
            schema.add_field(field, DataType.INT64)
        else:
            schema.add_field(field, DataType.VARCHAR, max_length=VARCHAR_BYTES)
    for field in ("doc_key", "outlet_key", "day"):
        schema.add_field(field, DataType.INT64)
    schema.add_field(
        "lexical", DataType.VARCHAR, max_length=VARCHAR_BYTES, enable_analyzer=True, analyzer_params=ANALYZER
    )
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_function(
        Function(
            name="bm25", function_type=FunctionType.BM25, input_field_names=["lexical"], output_field_names=["sparse"]
        )
    )
    index = client.prepare_index_params()
    vector_params = {"M": 16, "efConstruction": 256} if vector_index == "HNSW" else {}
    index.add_index(field_name="vector", index_type=vector_index, metric_type="IP", params=vector_params)
    index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=BM25_PARAMS)
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    documents = client.create_schema(auto_id=False, enable_dynamic_field=False, description="qa documents")
    documents.add_field("key", DataType.VARCHAR, max_length=64, is_primary=True)
    for field in ("doc_key", "part", "parts", "passages"):
        documents.add_field(field, DataType.INT64)
    documents.add_field("body", DataType.VARCHAR, max_length=VARCHAR_BYTES)
    documents.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector in every collection
    document_index = client.prepare_index_params()
    document_index.add_index(field_name="unused", index_type="FLAT", metric_type="IP")
    client.create_collection(
        documents_collection(name), schema=documents, index_params=document_index, consistency_level="Strong"
    )


# ---------------------------------------------------------------------- rows


def row_hash(passage: Passage, embedded: str, lexical: str) -> str:
    """What an update compares to know whether a stored row is still right."""
    fields = [*dataclasses.astuple(passage), embedded, lexical]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode("utf-8")).hexdigest()


def passage_row(
    passage: Passage, *, vector: np.ndarray, embedded: str, lexical: str, tokens: str, sentences: str
) -> dict[str, Any]:
    """The row of one passage; ``tokens`` are ``lexical``'s (``lexical_texts``).

    Raises:
        ValueError: A text field is longer than Milvus holds (``VARCHAR_BYTES``).
    """
    texts = {field: getattr(passage, field) for field in ("passage_id", "doc_id", "source", "text")}
    texts |= {field: getattr(passage, field) for field in ("title", "outlet", "author", "date", "url")}
    for field, value in [*texts.items(), ("lexical", tokens)]:
        if len(value.encode("utf-8")) > VARCHAR_BYTES:
            raise ValueError(f"passage {passage.passage_id}: its {field} is over {VARCHAR_BYTES:,} bytes")
    return {
        "key": key_of(passage.passage_id),
        **texts,
        "paragraph": passage.paragraph,
        "start_offset": passage.start,
        "end_offset": passage.end,
        "doc_key": key_of(passage.doc_id),
        "outlet_key": key_of(passage.outlet),
        "day": day_number(passage.date),
        "lexical": tokens,
        "vector": np.asarray(vector, dtype=np.float32).tolist(),
        "embed_hash": hashlib.sha256(embedded.encode("utf-8")).hexdigest(),
        "row_hash": row_hash(passage, embedded, lexical),
        "sentences": sentences if len(sentences) <= VARCHAR_BYTES else "",
    }


def encode_sentences(spans: np.ndarray, codes: np.ndarray, scales: np.ndarray) -> str:
    """One passage's sentences as the row stores them (``decode_sentences`` reads them back)."""
    data = {
        "spans": np.asarray(spans).tolist(),
        "scales": np.asarray(scales, dtype=np.float32).tolist(),
        "codes": base64.b64encode(np.ascontiguousarray(codes, dtype=np.int8).tobytes()).decode("ascii"),
    }
    return json.dumps(data, separators=(",", ":"))


def document_rows(document: Document, passages: int) -> list[dict[str, Any]]:
    """The rows of one document: its JSON in parts small enough for a VARCHAR."""
    body = json.dumps(document_to_json(document), ensure_ascii=False)
    pieces = [body[i : i + DOCUMENT_PART_CHARS] for i in range(0, len(body), DOCUMENT_PART_CHARS)] or [""]
    doc_key = key_of(document.doc_id)
    return [
        {
            "key": f"{doc_key}:{part}",
            "doc_key": doc_key,
            "part": part,
            "parts": len(pieces),
            "passages": passages,
            "body": piece,
            "unused": [0.0, 0.0],
        }
        for part, piece in enumerate(pieces)
    ]
