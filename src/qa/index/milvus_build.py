"""Build or update a qa index in Milvus from a corpus folder (or from passages made elsewhere).

The same steps as the local index (``qa.index.prepare``): only changed files are read
again, only passage texts neither Milvus nor the local embedding cache holds are
embedded. Builds from this machine take the lock of the local folder that holds the
embedding cache (``--index``, default ``index/``).

An interrupted build leaves the collection answering:

- A first build, a rebuild, or one replacing an unusable collection fills a new
  collection beside the old one, writes its record, and only then switches the alias
  to it (dropping the old one). Until the switch, questions get the old collection;
  collections a killed build left half-filled are dropped by the next build.
- An update writes into the live collection: upserts of new and changed passages (by
  passage id, safe to repeat), deletes of removed ones, then the documents, then the
  record last. Cut short, the collection answers from a mix of old and new passages,
  and since the record still holds the old corpus fingerprint, the next ``qa index``
  finds the same changes and writes them again.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.embed.encoder import Encoder
from qa.errors import IndexCorruptError, IndexMismatchError, QAError
from qa.index.embeddings import CACHE_NAME, EmbeddingCache, embed_texts
from qa.index.local import LocalIndex
from qa.index.lock import index_lock
from qa.index.manifest import IndexSettings
from qa.index.milvus import MilvusStore
from qa.index.milvus_connect import all_rows, connect, live_collection, read_record, talking_to
from qa.index.milvus_schema import (
    GENERATION_INFIX,
    RECORD_PROPERTY,
    MilvusRecord,
    create_collections,
    document_rows,
    documents_collection,
    encode_sentences,
    key_of,
    lexical_texts,
    passage_row,
    passages_collection,
    row_hash,
    template_for,
    vector_index_for,
)
from qa.index.prepare import (
    EmptyCorpusError,
    IndexReport,
    check_unique,
    prepare_corpus,
)
from qa.index.sentences import SentenceVectors
from qa.index.spec import StoreSpec
from qa.index.texts import embedding_text, lexical_text
from qa.ingest.listing import corpus_fingerprint, find_corpus_files
from qa.ingest.split import approximate_token_count
from qa.records import Document, DocumentMetadata, Passage

if TYPE_CHECKING:
    from pymilvus import MilvusClient

# Passages embedded and written per Milvus call: bounds the rows held at once.
WRITE_BATCH = 512
# Documents, given the previous ones, their passages and settings (None: no usable index).
Prepare = Callable[
    [list[Document], Iterable[Passage], IndexSettings | None], tuple[list[Document], list[Passage], list[Document]]
]


def index_corpus_milvus(
    corpus_dir: Path,
    spec: StoreSpec,
    work_dir: Path,
    *,
    encoder: Encoder,
    settings: IndexSettings,
    count_tokens: Callable[[str], int] = approximate_token_count,
    rebuild: bool = False,
    progress: bool = False,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    follow_links: bool = False,
    allow_mass_removal: bool = False,
) -> IndexReport:
    """Build or update the Milvus index ``spec`` of ``corpus_dir``, like ``qa.index.build.index_corpus``.

    ``work_dir`` holds the embedding cache and the build lock.

    Raises:
        StoreUnavailableError: Milvus cannot be reached, or fails during the build.
        EmptyCorpusError, QAError: As ``index_corpus``; the collection is left as it was.
    """
    with index_lock(work_dir, wait=wait, on_wait=on_wait):
        started = time.perf_counter()
        files = find_corpus_files(corpus_dir, follow_links=follow_links)

        def prepare(
            documents: list[Document], passages: Iterable[Passage], previous: IndexSettings | None
        ) -> tuple[list[Document], list[Passage], list[Document]]:
            return prepare_corpus(
                files,
                corpus_dir,
                previous_documents=documents,
                previous_passages=passages,
                previous_settings=previous,
                settings=settings,
                count_tokens=count_tokens,
                allow_mass_removal=allow_mass_removal,
            )

        return _build(
            spec,
            work_dir,
            started=started,
            fingerprint=corpus_fingerprint(files),
            files=len(files),
            prepare=prepare,
            encoder=encoder,
            settings=settings,
            rebuild=rebuild,
            progress=progress,
        )


def index_documents_milvus(
    documents: list[Document],
    passages: list[Passage],
    spec: StoreSpec,
    work_dir: Path,
    *,
    fingerprint: str,
    encoder: Encoder,
    settings: IndexSettings,
    progress: bool = False,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> IndexReport:
    """Build or update a Milvus index of passages made elsewhere (a benchmark's), like ``index_documents``."""
    if not passages:
        raise EmptyCorpusError("nothing to index: no passages were given")
    with index_lock(work_dir, wait=wait, on_wait=on_wait):
        return _build(
            spec,
            work_dir,
            started=time.perf_counter(),
            fingerprint=fingerprint,
            files=len(documents),
            prepare=lambda _documents, _passages, _settings: (documents, passages, []),
            encoder=encoder,
            settings=settings,
            rebuild=False,
            progress=progress,
        )


def _build(
    spec: StoreSpec,
    work_dir: Path,
    *,
    started: float,
    fingerprint: str,
    files: int,
    prepare: Prepare,
    encoder: Encoder,
    settings: IndexSettings,
    rebuild: bool,
    progress: bool,
) -> IndexReport:
    client = connect(spec)
    live = live_collection(client, spec)
    record, reason = _usable_record(client, spec, live, encoder.name, rebuild)
    if record is not None and record.corpus_fingerprint == fingerprint and record.settings == settings:
        return _report([], [], files, started, record=record)
    previous = None
    if record is not None:
        try:
            previous = MilvusStore.open(spec, client)
        except (IndexCorruptError, IndexMismatchError) as error:
            reason = error.problem
    if previous is not None:
        documents, passages, fresh = prepare(
            previous.documents_with_text, previous.iter_passages(), previous.record.settings
        )
    else:
        documents, passages, fresh = prepare([], [], None)
    check_unique(documents, passages)
    _check_keys(passages)
    cache = EmbeddingCache(work_dir / CACHE_NAME)
    try:
        if rebuild:
            cache.clear(encoder.name)
        writer = _Writer(client, spec, encoder=encoder, settings=settings, cache=cache, progress=progress)
        if previous is None:
            target = writer.staged(passages, documents)
        else:
            target = writer.updated(previous, passages, documents, fresh)
    finally:
        cache.close()
    built = MilvusRecord(
        model=encoder.name,
        dimension=writer.dimension,
        corpus_fingerprint=fingerprint,
        settings=settings,
        documents=len(documents),
        passages=len(passages),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        vector_index=vector_index_for(spec),
    )
    with talking_to(spec, "writing the index's record"):
        # Sealed before the record commits the build: BM25's statistics then cover every row.
        client.flush(target)
        client.flush(documents_collection(target))
        client.alter_collection_properties(target, properties={RECORD_PROPERTY: built.to_json()})
    if previous is None:
        _switch_alias(client, spec, target, old=live)
    old_documents = previous.documents if previous is not None else []
    decoded = tuple((d.source, d.encoding) for d in fresh if d.encoding != "utf-8")
    report = _report(old_documents, documents, files, started, record=built, reason=reason, decoded=decoded)
    resplit = previous is not None and previous.record.settings != settings
    return dataclasses.replace(report, embedded=writer.embedded, sentences_embedded=writer.sentences, resplit=resplit)


def _usable_record(
    client: MilvusClient, spec: StoreSpec, live: str | None, model: str, rebuild: bool
) -> tuple[MilvusRecord | None, str]:
    """The record of the live collection if this build may update it, else ``None`` and why to start afresh."""
    if live is None:
        return None, ""
    if rebuild:
        return None, "rebuild requested"
    try:
        record = read_record(client, spec, live)
    except (IndexCorruptError, IndexMismatchError) as error:
        return None, error.problem
    if record.model != model:
        return None, f"model changed from {record.model} to {model}"
    return record, ""


def _check_keys(passages: Sequence[Passage]) -> None:
    """Refuse two passage ids with one 64-bit key (never seen; the index would lose one of them)."""
    keys = {key_of(p.passage_id) for p in passages}
    if len(keys) != len(passages):
        raise QAError("not saved: two passage ids share a Milvus key", fix="please report it: a bug in qa")


class _Writer:
    """Writes passages (embedding what it must) and documents into a collection."""

    def __init__(
        self,
        client: MilvusClient,
        spec: StoreSpec,
        *,
        encoder: Encoder,
        settings: IndexSettings,
        cache: EmbeddingCache,
        progress: bool,
    ) -> None:
        self.client = client
        self.spec = spec
        self.encoder = encoder
        self.settings = settings
        self.cache = cache
        self.progress = progress
        self.dimension = 0
        self.embedded = 0
        self.sentences = 0

    def staged(self, passages: list[Passage], documents: list[Document]) -> str:
        """A new collection holding everything (not yet under the alias); its name."""
        _drop_leftovers(self.client, self.spec, keep=set())
        name = passages_collection(self.spec.collection, f"{time.time_ns():x}")
        self._write(name, passages, create=True)
        self._write_documents(name, documents, _counts(passages), fresh=True)
        return name

    def updated(
        self, previous: MilvusStore, passages: list[Passage], documents: list[Document], fresh: list[Document]
    ) -> str:
        """The live collection, with what changed upserted and what is gone deleted; its name."""
        name = previous.collection
        self.dimension = previous.record.dimension
        stored = {
            row["passage_id"]: row["row_hash"]
            for row in all_rows(self.client, self.spec, name, "", {}, fields=["passage_id", "row_hash"])
        }
        wanted = {p.passage_id for p in passages}
        changed = [p for p in passages if stored.get(p.passage_id) != row_hash(p, *self._texts(p))]
        self._write(name, changed, create=False)
        self._delete(name, "key", [key_of(passage_id) for passage_id in stored if passage_id not in wanted])
        counts = _counts(passages)
        old_counts = previous.passage_counts()
        rewritten = {d.doc_id for d in fresh} | {d for d, n in counts.items() if old_counts.get(d) != n}
        self._write_documents(name, [d for d in documents if d.doc_id in rewritten], counts, fresh=False)
        gone = {d.doc_id for d in previous.documents} - {d.doc_id for d in documents}
        self._delete(documents_collection(name), "doc_key", [key_of(doc_id) for doc_id in gone])
        return name

    def _texts(self, passage: Passage) -> tuple[str, str]:
        return embedding_text(passage, self.settings), lexical_text(passage, self.settings)

    def _write(self, name: str, passages: list[Passage], *, create: bool) -> None:
        from tqdm import tqdm

        with tqdm(
            total=len(passages), unit=" passages", desc="writing", disable=not (self.progress and passages)
        ) as bar:
            for first in range(0, len(passages), WRITE_BATCH):
                batch = passages[first : first + WRITE_BATCH]
                rows = self._rows(name, batch, create=create and first == 0)
                with talking_to(self.spec, "writing passages"):
                    self.client.upsert(name, rows)
                bar.update(len(batch))

    def _rows(self, name: str, batch: list[Passage], *, create: bool) -> list[dict[str, Any]]:
        texts = [self._texts(p) for p in batch]
        vectors, stats = embed_texts(
            [embedded for embedded, _ in texts], self.encoder, known={}, cache=self.cache, progress=False
        )
        self.embedded += stats.embedded
        if create:
            self.dimension = int(vectors.shape[1])
            with talking_to(self.spec, "creating the collection"):
                create_collections(
                    self.client, name, dimension=self.dimension, vector_index=vector_index_for(self.spec)
                )
        sentences = SentenceVectors.build([p.text for p in batch], self._embed_sentences, dimension=self.dimension)
        tokens = lexical_texts([lexical for _, lexical in texts])
        rows = []
        for row, (passage, (embedded, lexical)) in enumerate(zip(batch, texts, strict=True)):
            start, end = int(sentences.offsets[row]), int(sentences.offsets[row + 1])
            blob = encode_sentences(sentences.spans[start:end], sentences.codes[start:end], sentences.scales[start:end])
            try:
                rows.append(
                    passage_row(
                        passage,
                        vector=vectors[row],
                        embedded=embedded,
                        lexical=lexical,
                        tokens=tokens[row],
                        sentences=blob,
                    )
                )
            except ValueError as error:
                raise QAError(
                    f"not indexed: {error}", fix="split that document; the index was left as it was"
                ) from error
        return rows

    def _embed_sentences(self, sentences: list[str]) -> np.ndarray:
        vectors, stats = embed_texts(sentences, self.encoder, known={}, cache=self.cache, progress=False)
        self.sentences += stats.embedded
        if not sentences:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return vectors

    def _write_documents(self, name: str, documents: list[Document], counts: dict[str, int], *, fresh: bool) -> None:
        """Write the documents' rows; in a live collection, then drop parts a longer old version had."""
        target = documents_collection(name)
        for first in range(0, len(documents), WRITE_BATCH):
            batch = documents[first : first + WRITE_BATCH]
            rows = [row for document in batch for row in document_rows(document, counts.get(document.doc_id, 0))]
            with talking_to(self.spec, "writing documents"):
                self.client.upsert(target, rows)
            if fresh:
                continue
            # Readers ignore parts beyond part 0's count meanwhile; one delete per count in the batch.
            by_parts: dict[int, list[int]] = {}
            for row in rows:
                if row["part"] == 0:
                    by_parts.setdefault(row["parts"], []).append(row["doc_key"])
            for parts, keys in by_parts.items():
                expression, params = template_for(
                    self.spec, "doc_key in {keys} and part >= {parts}", {"keys": keys, "parts": parts}
                )
                with talking_to(self.spec, "writing documents"):
                    self.client.delete(target, filter=expression, filter_params=params)

    def _delete(self, name: str, field: str, keys: list[int]) -> None:
        for first in range(0, len(keys), WRITE_BATCH):
            expression, params = template_for(
                self.spec, f"{field} in {{keys}}", {"keys": keys[first : first + WRITE_BATCH]}
            )
            with talking_to(self.spec, "deleting removed passages"):
                self.client.delete(name, filter=expression, filter_params=params)


def _counts(passages: list[Passage]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for passage in passages:
        counts[passage.doc_id] = counts.get(passage.doc_id, 0) + 1
    return counts


def _switch_alias(client: MilvusClient, spec: StoreSpec, target: str, *, old: str | None) -> None:
    """Point the alias at ``target`` (one call: questions see the old collection or the new), then drop the old."""
    with talking_to(spec, "switching to the new collection"):
        if old is None:
            client.create_alias(target, spec.collection)
        else:
            client.alter_alias(target, spec.collection)
    _drop_leftovers(client, spec, keep={target})


def _drop_leftovers(client: MilvusClient, spec: StoreSpec, *, keep: set[str]) -> None:
    """Drop this alias's collections no alias points to: replaced ones, and those of killed builds.

    Only names of exactly the shape qa gives them (``<alias>_g<hex>`` and its documents) are touched.
    """
    shape = re.compile(rf"{re.escape(spec.collection)}{GENERATION_INFIX}[0-9a-f]{{1,32}}")
    with talking_to(spec, "removing replaced collections"):
        live = client.describe_alias(spec.collection)["collection_name"] if spec.collection in _aliases(client) else ""
        for name in client.list_collections():
            passages_name = name.removesuffix("_documents")
            if shape.fullmatch(passages_name) and passages_name not in keep and passages_name != live:
                client.drop_collection(name)


def _aliases(client: MilvusClient) -> list[str]:
    return list(client.list_aliases().get("aliases", []))


def _report(
    old_documents: Sequence[DocumentMetadata],
    documents: Sequence[Document],
    files: int,
    started: float,
    *,
    record: MilvusRecord,
    reason: str = "",
    decoded: tuple[tuple[str, str], ...] = (),
) -> IndexReport:
    old = {d.source: d.checksum for d in old_documents}
    new = {d.source: d.checksum for d in documents}
    return IndexReport(
        documents=record.documents,
        passages=record.passages,
        added=sum(source not in old for source in new),
        changed=sum(source in old and old[source] != checksum for source, checksum in new.items()),
        removed=sum(source not in new for source in old),
        skipped=files - record.documents,
        embedded=0,
        seconds=time.perf_counter() - started,
        rebuilt_reason=reason,
        decoded=decoded,
    )


def index_from_local(
    index_dir: Path,
    spec: StoreSpec,
    *,
    encoder: Encoder,
    progress: bool = False,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> IndexReport:
    """Copy the local index in ``index_dir`` into Milvus (``qa index --store ... --from-index DIR``).

    Its documents, passages, settings and corpus fingerprint are taken as they are, and
    its vectors from its embedding cache, so nothing is read from the corpus and nothing
    embedded unless the cache lacks it; a later ``qa index --store ...`` of the same
    corpus finds the collection up to date.

    Raises:
        QAError: No usable local index there, or ``encoder`` is not its model.
    """
    local = LocalIndex.load(index_dir)
    local.check_model(encoder.name)
    return index_documents_milvus(
        list(local.documents_with_text),
        list(local.passages),
        spec,
        index_dir,
        fingerprint=local.manifest.corpus_fingerprint,
        encoder=encoder,
        settings=local.manifest.settings,
        progress=progress,
        wait=wait,
        on_wait=on_wait,
    )
