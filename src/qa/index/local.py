"""The local index: FAISS vectors, a BM25 index and the passages in one folder, saved atomically.

On disk (``index/``)::

    manifest.json                 format version, model, dimension, normalisation,
                                  corpus fingerprint, settings, build time, file names
    documents-<generation>.sqlite cleaned documents: metadata and paragraphs (qa.index.documents)
    passages-<generation>.sqlite  passages in document and paragraph order (qa.index.passages)
    vectors-<generation>.faiss    one unit vector per passage
    slots-<generation>.npy        each passage's vector id in the FAISS index (NumPy, no pickle)
    bm25-<generation>/            the BM25 index (qa.index.lexical)
    sentences-<generation>/       every passage's sentence vectors, int8 (qa.index.sentences)
    embeddings.sqlite             embedding cache keyed by (model, text hash)
    corpus-stamps.json            the corpus files' stamps and checksums (qa.index.stamps)
    qa-index.lock                 the build lock, and the journal of the generations builds started

``LocalIndex`` stores and fetches (``qa.index.store.PassageStore``); what to
ask of it and what to make of the answers is decided in ``qa.search``. How the
files are written safely is in ``qa.index.files``, and how they are checked in
``qa.index.manifest``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qa.embed.encoder import Encoder
from qa.errors import IndexCorruptError, QAError
from qa.index.documents import DocumentTable
from qa.index.embeddings import EmbeddingCache, EmbedStats, embed_texts, embed_to_scratch, text_hash
from qa.index.files import (
    remove,
    remove_stale_files,
    sync_directory,
    write_failure,
    written,
    written_directory,
)
from qa.index.lexical import LexicalIndex, tokenize
from qa.index.lock import check_index_folder, forget_generation, record_generation
from qa.index.manifest import (
    MANIFEST_NAME,
    IndexSettings,
    Manifest,
    check_files,
    committed_generation,
    damaged,
    file_checks,
    generation_files,
    manifest_text,
    read_manifest,
)
from qa.index.passages import PassageTable
from qa.index.scratch import ScratchRows, ScratchRowsByKey
from qa.index.sentences import PassageSentences, SentenceVectors, passage_text_hash
from qa.index.store import Candidates, SearchFilter, StoreSummary, check_model
from qa.index.texts import LexicalTexts, TextKey, embedding_text, keys_of, source_rows
from qa.index.vectors import VectorIndex, read_faiss, valid_slots
from qa.memory import release_free_memory
from qa.records import Document, DocumentMetadata, Passage


class LocalIndex:
    """Passages, their documents, their vectors and a BM25 index, in memory and in one folder."""

    def __init__(
        self,
        documents: DocumentTable,
        passages: PassageTable,
        *,
        vectors: VectorIndex,
        lexical: LexicalIndex,
        sentences: SentenceVectors,
        manifest: Manifest,
    ) -> None:
        self.documents_with_text = documents
        self.passages = passages
        self.manifest = manifest
        self.embed_stats = EmbedStats()
        self._vectors = vectors
        self._lexical = lexical
        self._sentences = sentences
        self._vocabulary: frozenset[str] | None = None

    # ------------------------------------------------------------------ what search asks

    @property
    def model(self) -> str:
        """The embedding model of the stored vectors."""
        return self.manifest.model

    @property
    def documents(self) -> list[DocumentMetadata]:
        """Every document's metadata, in corpus order (their text stays on disk: ``document``)."""
        return self.documents_with_text.metadata

    def document(self, doc_id: str) -> Document | None:
        """The document with this id, text and all; ``None`` if the index has none."""
        return self.documents_with_text.by_id(doc_id)

    def summary(self) -> StoreSummary:
        """Model, counts and build time, from the manifest."""
        manifest = self.manifest
        return StoreSummary(manifest.model, manifest.documents, manifest.passages, manifest.built_at)

    def passage_counts(self) -> dict[str, int]:
        """Passages per document id."""
        return self.passages.counts_by_document()

    def passages_by_id(self, ids: Sequence[str]) -> list[Passage]:
        """The passages with these ids, in the same order."""
        return self.passages.by_ids(ids)

    def sentences_of(self, ids: Sequence[str]) -> list[PassageSentences]:
        """The sentences of these passages with the vectors stored when they were indexed."""
        return self._sentences.of_rows(self._rows(ids).tolist())

    def iter_passages(self) -> Iterator[Passage]:
        """Every passage, in document and paragraph order."""
        return iter(self.passages)

    def dense_candidates(self, vector: np.ndarray, *, depth: int, where: SearchFilter | None) -> Candidates:
        """Up to ``depth`` passages nearest to ``vector`` among those ``where`` allows (FAISS filters as it goes)."""
        allowed = self._allowed_rows(where)
        if not self.passages or (allowed is not None and not allowed.any()):
            return self._candidates(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        rows, scores = self._vectors.search(vector, depth=min(depth, len(self.passages)), allowed=allowed)
        return self._candidates(rows, scores)

    def bm25_candidates(self, text: str, *, depth: int, where: SearchFilter | None) -> Candidates:
        """Up to ``depth`` best BM25 passages for ``text`` among those ``where`` allows; ties go to the earlier one."""
        allowed = self._allowed_rows(where)
        rows, scores = self._lexical.top(text, depth=depth, allowed=allowed)
        return self._candidates(rows, scores)

    def dense_scores(self, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """Inner products of ``vector`` with these passages' stored vectors."""
        return np.asarray(self._vectors.vectors_of(self._rows(ids)) @ vector, dtype=np.float32)

    def bm25_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        """BM25 scores of these passages for ``text``, without scoring the others."""
        return self._lexical.scores_of(text, self._rows(ids))

    def known_terms(self, terms: Iterable[str]) -> frozenset[str]:
        """Those of ``terms`` found among the BM25 tokens of the passages and of the documents' metadata."""
        return frozenset(terms) & self._terms()

    def _terms(self) -> frozenset[str]:
        """Every BM25 token of the passages and of the documents' metadata (dates, outlets, names)."""
        # Two concurrent first questions may both compute it; they get the same set, assigned atomically.
        if self._vocabulary is None:
            metadata = [" ".join((d.title, d.outlet, d.author, d.date)) for d in self.documents]
            from_metadata = {token for tokens in tokenize(metadata) for token in tokens}
            self._vocabulary = frozenset(self._lexical.vocabulary() | from_metadata)
        return self._vocabulary

    def _rows(self, ids: Sequence[str]) -> np.ndarray:
        return self.passages.rows_of(ids)

    def _candidates(self, rows: np.ndarray, scores: np.ndarray) -> Candidates:
        return Candidates(tuple(self.passages.ids_at(rows.tolist())), scores)

    def _allowed_rows(self, where: SearchFilter | None) -> np.ndarray | None:
        if where is None or where.is_empty:
            return None
        return self.passages.allowed_rows(where)

    # ------------------------------------------------------------------ building

    @classmethod
    def empty(cls, model: str, settings: IndexSettings) -> LocalIndex:
        """An index with nothing in it, to build from."""
        manifest = Manifest(
            model=model,
            dimension=0,
            corpus_fingerprint="",
            settings=settings,
            documents=0,
            passages=0,
            files={},
            built_at="",
        )
        empty_vectors = VectorIndex.build(np.zeros((0, 0), dtype=np.float32))
        return cls(
            DocumentTable.of([]),
            PassageTable.empty(),
            vectors=empty_vectors,
            lexical=LexicalIndex.build([]),
            sentences=SentenceVectors.empty(0),
            manifest=manifest,
        )

    def update(
        self,
        documents: list[Document],
        passages: list[Passage],
        *,
        encoder: Encoder,
        settings: IndexSettings,
        corpus_fingerprint: str = "",
        cache: EmbeddingCache | None = None,
        progress: bool = False,
    ) -> LocalIndex:
        """A new index holding ``passages``; only texts this index and ``cache`` lack are embedded.

        Passage vectors, BM25 rows and sentence vectors of a text this index already holds
        are copied, not computed again. ``self`` is left as it was, so it can keep answering
        until the new index replaces it.
        """
        self.check_model(encoder.name)
        old = self._keys()
        text_hashes = [passage_text_hash(p.text) for p in passages]  # once, for every use below
        titles = [p.title for p in passages]
        lexical_sources = source_rows(old.lexical, keys_of(text_hashes, titles, with_title=settings.title_in_bm25))
        keys = keys_of(text_hashes, titles, with_title=settings.title_in_dense)
        del titles
        slots = self._reusable_slots(old.embedded, keys)
        fresh = np.flatnonzero(slots < 0)
        fresh_vectors, known, stats = self._embedded(
            passages,
            fresh,
            old_keys=old.embedded,
            keys=keys,
            encoder=encoder,
            settings=settings,
            cache=cache,
            progress=progress,
        )
        stats = dataclasses.replace(stats, reused=stats.reused + len(set(keys)) - len({keys[r] for r in fresh}))
        del old, keys
        # One part at a time, each letting go of what it needed before the next (and the pages
        # freed given back): the sentences (while the passages' fresh vectors can serve
        # one-sentence passages), BM25, then the graph, from the fresh vectors' scratch file
        # a block at a time.
        with fresh_vectors:
            dimension = fresh_vectors.shape[1] if len(fresh) else self._vectors.dimension
            sentences, sentences_embedded = self._updated_sentences(
                passages, text_hashes, encoder=encoder, cache=cache, known=known, dimension=dimension
            )
            del known, text_hashes
            release_free_memory()
            lexical_texts = LexicalTexts(passages, np.flatnonzero(lexical_sources < 0), settings)
            lexical = self._lexical.updated(lexical_sources, lexical_texts)
            del lexical_texts
            release_free_memory()
            vectors = self._vectors.updated(slots, fresh, fresh_vectors)
        stats = dataclasses.replace(stats, sentences_embedded=sentences_embedded)
        manifest = dataclasses.replace(
            self.manifest,
            dimension=vectors.dimension if passages else 0,
            settings=settings,
            corpus_fingerprint=corpus_fingerprint,
            documents=len(documents),
            passages=len(passages),
            files={},
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        index = LocalIndex(
            DocumentTable.of(documents),
            PassageTable.build(passages),
            vectors=vectors,
            lexical=lexical,
            sentences=sentences,
            manifest=manifest,
        )
        index.embed_stats = stats
        return index

    def _embedded(
        self,
        passages: Sequence[Passage],
        fresh: np.ndarray,
        *,
        old_keys: list[TextKey],
        keys: list[TextKey],
        encoder: Encoder,
        settings: IndexSettings,
        cache: EmbeddingCache | None,
        progress: bool,
    ) -> tuple[ScratchRows, Mapping[str, np.ndarray], EmbedStats]:
        """The vectors of the ``fresh`` rows' texts, in a scratch file, and the same by embedding-cache hash."""
        fresh_texts = [embedding_text(passages[row], settings) for row in fresh]
        fresh_hashes = [text_hash(text) for text in fresh_texts]  # the embedding cache's keys
        wanted = {keys[row]: cache_key for row, cache_key in zip(fresh.tolist(), fresh_hashes, strict=True)}
        known = self._stored_vectors(old_keys, wanted)
        del wanted
        fresh_vectors, stats = embed_to_scratch(fresh_texts, encoder, known=known, cache=cache, progress=progress)
        return fresh_vectors, ScratchRowsByKey(fresh_vectors, fresh_hashes), stats

    def _updated_sentences(
        self,
        passages: list[Passage],
        text_hashes: list[bytes],
        *,
        encoder: Encoder,
        cache: EmbeddingCache | None,
        known: Mapping[str, np.ndarray],
        dimension: int,
    ) -> tuple[SentenceVectors, int]:
        """The sentence vectors of ``passages``, copying those of texts this index holds; and how many were embedded."""
        texts = [p.text for p in passages]
        sources = self._sentences.sources_of(text_hashes)
        embedded: list[int] = []

        def embed_sentences(sentences: list[str]) -> np.ndarray:
            vectors, stats = embed_texts(sentences, encoder, known=known, cache=cache, progress=False)
            embedded.append(stats.embedded)
            return vectors

        fresh_texts = [texts[row] for row in np.flatnonzero(sources < 0)]
        return self._sentences.updated(sources, fresh_texts, embed_sentences, dimension=dimension), sum(embedded)

    def _keys(self) -> _PassageKeys:
        """Keys of each stored passage's embedded and BM25 texts: what an update may reuse.

        A key is the passage text's hash, stored with its sentences (nothing to hash
        again), and its title where the settings put the title into that text.
        """
        settings = self.manifest.settings
        hashes = [bytes(row) for row in np.asarray(self._sentences.text_hashes)]
        titles = self.passages.titles()
        return _PassageKeys(
            keys_of(hashes, titles, with_title=settings.title_in_dense),
            keys_of(hashes, titles, with_title=settings.title_in_bm25),
        )

    def _reusable_slots(self, old_keys: list[TextKey], keys: list[TextKey]) -> np.ndarray:
        """For each new passage, the slot of an old passage with the same embedded text, else -1.

        Each old slot goes to one new passage at most, so every passage keeps a vector of its own.
        """
        free: dict[TextKey, list[int]] = {}
        for slot, old_key in zip(self._vectors.slots.tolist(), old_keys, strict=True):
            free.setdefault(old_key, []).append(slot)
        slots = np.full(len(keys), -1, dtype=np.int64)
        for row, key in enumerate(keys):
            if free.get(key):
                slots[row] = free[key].pop()
        return slots

    def _stored_vectors(self, old_keys: list[TextKey], wanted: dict[TextKey, str]) -> dict[str, np.ndarray]:
        """Vectors this index holds for the ``wanted`` texts, by their embedding-cache hash.

        A repeated text needs a second slot: its vector is copied, not embedded again.
        """
        rows = {wanted[key]: row for row, key in enumerate(old_keys) if key in wanted}
        if not rows:
            return {}
        matrix = self._vectors.vectors_of(np.fromiter(rows.values(), dtype=np.int64, count=len(rows)))
        return dict(zip(rows, matrix, strict=True))

    def check_model(self, model: str) -> None:
        """Refuse to mix vectors of two models."""
        check_model(self.manifest.model, model)

    # ------------------------------------------------------------------ files

    def save(self, index_dir: Path) -> None:
        """Write this index as a new generation, then switch the manifest to it in one rename.

        Both generations are recorded in the lock file's journal first (the one replaced and
        the new one), so that whatever a crash leaves of either is known to be qa's and removed
        by the next build (``remove_stale_files``), and nothing else ever is.
        """
        check_index_folder(index_dir)  # a build checked it before taking the lock; a library call may not have
        generation = f"{time.time_ns():x}"
        files = generation_files(generation)
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
            replaced = committed_generation(index_dir)
            if replaced is not None:
                record_generation(index_dir, replaced, pid=None)
            record_generation(index_dir, generation, pid=os.getpid())
        except OSError as error:
            raise write_failure(index_dir, error) from error
        try:
            self._write_generation(index_dir, files)
            checks = file_checks(index_dir, files.values())
            sync_directory(index_dir)  # the new files' names reach the disk before the manifest names them
        except BaseException as error:
            # Interrupted (even by Ctrl-C) or the disk is full: the old manifest still rules.
            if all([remove(index_dir / name) for name in files.values()]):
                with contextlib.suppress(QAError):  # the error that stopped the save is the one to tell
                    forget_generation(index_dir, generation)
            if isinstance(error, OSError):
                raise write_failure(index_dir, error) from error
            if isinstance(error, sqlite3.OperationalError):  # SQLite's own "database or disk is full"
                raise write_failure(index_dir, OSError(str(error))) from error
            raise
        manifest = dataclasses.replace(self.manifest, files=files, file_checks=checks)
        try:
            with written(index_dir / MANIFEST_NAME) as path:
                path.write_text(manifest_text(manifest), encoding="utf-8")
            sync_directory(index_dir)
        except OSError as error:
            # Not committed; the next build removes this generation's files.
            raise write_failure(index_dir, error) from error
        self.manifest = manifest
        remove_stale_files(index_dir, keep=set(files.values()))

    def _write_generation(self, index_dir: Path, files: dict[str, str]) -> None:
        with written(index_dir / files["documents"]) as path:
            self.documents_with_text.save(path)
        with written(index_dir / files["passages"]) as path:
            self.passages.save(path)
        with written(index_dir / files["vectors"]) as vectors_path, written(index_dir / files["slots"]) as slots_path:
            self._vectors.save(vectors_path, slots_path)
        with written_directory(index_dir / files["bm25"]) as path:
            self._lexical.save(path)
        with written_directory(index_dir / files["sentences"]) as path:
            self._sentences.save(path)

    @classmethod
    def load(cls, index_dir: Path) -> LocalIndex:
        """Load the index in ``index_dir``; a missing or damaged index raises a clear error."""
        manifest = read_manifest(index_dir)
        try:
            return cls._load_files(index_dir, manifest)
        except IndexCorruptError:
            # A build may have committed a new generation, and removed this one, while it was read.
            latest = read_manifest(index_dir)
            if latest == manifest:
                raise
            return cls._load_files(index_dir, latest)

    @classmethod
    def _load_files(cls, index_dir: Path, manifest: Manifest) -> LocalIndex:
        check_files(index_dir, manifest)
        try:
            documents = DocumentTable.open(index_dir / manifest.files["documents"])
            passages = PassageTable.open(index_dir / manifest.files["passages"])
            vectors = read_faiss(index_dir / manifest.files["vectors"])
            slots = np.load(index_dir / manifest.files["slots"], allow_pickle=False)
            lexical = LexicalIndex.load(index_dir / manifest.files["bm25"])
            sentences = SentenceVectors.load(index_dir / manifest.files["sentences"])
        except (OSError, KeyError, TypeError, ValueError, RuntimeError, sqlite3.Error) as error:
            raise damaged(index_dir, str(error)) from error
        counts = (len(documents), len(passages), len(slots), lexical.size, sentences.size)
        expected = (manifest.documents, manifest.passages, manifest.passages, manifest.passages, manifest.passages)
        if counts != expected or (passages and vectors.d != manifest.dimension):
            raise damaged(
                index_dir,
                f"{len(documents)} documents, {len(passages)} passages, {len(slots)} vector ids, {vectors.ntotal} "
                f"vectors of dimension {vectors.d}, {lexical.size} BM25 rows, sentences of {sentences.size} passages; "
                f"the manifest says "
                f"{manifest.documents} documents and {manifest.passages} passages of dimension {manifest.dimension}",
            )
        if not valid_slots(slots, vectors.ntotal):
            raise damaged(index_dir, f"its vector ids do not map one to one onto its {vectors.ntotal} vectors")
        return cls(
            documents,
            passages,
            vectors=VectorIndex(vectors, slots, source=index_dir / manifest.files["vectors"]),
            lexical=lexical,
            sentences=sentences,
            manifest=manifest,
        )


@dataclasses.dataclass(frozen=True)
class _PassageKeys:
    """Keys of each stored passage's texts, row by row: the embedded text and the BM25 text."""

    embedded: list[TextKey]
    lexical: list[TextKey]
