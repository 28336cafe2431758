"""The passage index: FAISS vectors, a passage store and a manifest, saved atomically.

On disk (``index/``)::

    manifest.json               format version, model, dimension, normalisation,
                                corpus fingerprint, settings, build time, file names
    documents-<generation>.jsonl  cleaned documents with their metadata
    passages-<generation>.jsonl   passages in document and paragraph order
    vectors-<generation>.faiss    one unit vector per passage
    slots-<generation>.npy        each passage's vector id in the FAISS index (NumPy, no pickle)
    bm25-<generation>/            the BM25 index in bm25s's format
    embeddings.sqlite           embedding cache keyed by (model, text hash)

Every build writes a new generation of files beside the old one and then
replaces ``manifest.json`` in one rename, so an interrupted build (even by
SIGKILL) leaves the previous index whole. The manifest records each file's size
and SHA-256 and a checksum of its own content, so a truncated, edited or
missing file is reported as damage before anything is parsed. Nothing is
pickled: JSON, SQLite, NumPy arrays and FAISS's own format.

Vector ids ("slots") are mapped to passages rather than equal to their position.
A small index is rebuilt from its stored vectors at every update, so its slots
are simply 0..n-1. A large (HNSW) index is updated in place instead: new
passages get new slots appended to the graph, removed passages leave their slots
behind as tombstones that searches skip, and once tombstones pass
``MAX_DEAD_FRACTION`` of the slots the graph is rebuilt without them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.encoder import Encoder, usable_cpus
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, QAError
from qa.lexical import LexicalIndex, tokenize
from qa.records import Document, Hit, Passage
from qa.retrieve import (
    CANDIDATE_DEPTH,
    MODES,
    Mode,
    Ranking,
    SearchFilter,
    convex_fusion,
    fold_duplicates,
    top_rows,
)

if TYPE_CHECKING:
    import faiss

# 3: vector ids mapped to passages (slots-*.npy); the manifest records each file's
# size and SHA-256, and its own checksum.
FORMAT_VERSION = 3
MANIFEST_NAME = "manifest.json"
MANIFEST_CHECKSUM = "manifest_sha256"
CACHE_NAME = "embeddings.sqlite"
REBUILD_HINT = "run `qa index --rebuild` to build it again"
EMBED_BATCH_SIZE = 32
# Up to this many bytes of index files, loading (and an unchanged `qa index`) checks every
# file's SHA-256; above it, sizes only (see check_files). SHA-256 runs at 1.4 GB/s here
# (benchmarks/integrity.py): at most 0.2 s below the limit; at 100k passages (281 MB) it
# took a load from 1.0 to 1.3 s, and at 1M (about 2 GB) it would add some 1.5 s to every
# load and to every unchanged `qa index` (0.2 s otherwise).
CHECKSUM_LIMIT = 256 * 2**20
# Hybrid score = w * dense + (1 - w) * BM25, each min-max scaled over the candidates.
# Chosen on SciFact's train split by benchmarks/fusion.py (nDCG@10): min-max 0.7352
# at w = 0.5, z-score 0.7349, max-scaling 0.7357: a tie; min-max is flat from 0.4 to
# 0.6 (within 0.005). Reciprocal rank fusion peaked at 0.7232 (k = 10).
DENSE_WEIGHT = 0.5
# Exact search up to this many passages, HNSW above: see benchmarks/bench.py.
EXACT_SEARCH_LIMIT = 100_000
# The graph: float16 codes, 32 links a node, 160 candidates while linking. At a million
# synthetic passages (benchmarks/bench.py) recall@10 against exact search at efSearch 256 / 512 is
# 0.980 / 0.993 (0.8 / 1.2 ms a query). 8-bit codes with 80 candidates while linking, at 0.4 GB
# less, reached only 0.92 / 0.94: the 8-bit codes alone cap it at 0.97.
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 160
HNSW_EF_SEARCH = 512
# An HNSW graph with more dead slots than this is rebuilt: tombstones cost search time and memory.
MAX_DEAD_FRACTION = 0.2
# Evidence-sentence vectors kept in memory (about 1.5 kB each at 384 dimensions).
SENTENCE_MEMORY = 20_000
# Earlier turns used for a follow-up question, and the weight of each turn back.
HISTORY_TURNS = 2
HISTORY_DECAY = 0.5


@dataclass(frozen=True)
class IndexSettings:
    """How documents become passages and what each retriever reads of a passage.

    A change of ``max_tokens``, ``min_words`` or ``pipeline_version`` re-splits
    every document; a change of the title flags only re-indexes.
    """

    max_tokens: int
    min_words: int
    # Measured on eval/questions.jsonl: the headline in the BM25 text helps a
    # little; in the embedded text it hurts (every paragraph of an article
    # then resembles any question about the article's subject).
    title_in_dense: bool = False
    title_in_bm25: bool = True
    pipeline_version: int = 1

    def splits_like(self, other: IndexSettings) -> bool:
        return (self.max_tokens, self.min_words, self.pipeline_version) == (
            other.max_tokens,
            other.min_words,
            other.pipeline_version,
        )


@dataclass(frozen=True)
class FileCheck:
    """Size and SHA-256 of one index file as it was written."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What an index was built from and how; written last, it commits a build."""

    model: str
    dimension: int
    corpus_fingerprint: str
    settings: IndexSettings
    documents: int
    passages: int
    files: dict[str, str]
    built_at: str
    normalized: bool = True
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION
    # Every file of the generation, by path relative to the index folder (bm25's inner files too).
    file_checks: dict[str, FileCheck] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        checks = {name: FileCheck(**check) for name, check in data["file_checks"].items()}
        return cls(**{**data, "settings": IndexSettings(**data["settings"]), "file_checks": checks})


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_text(passage: Passage, settings: IndexSettings) -> str:
    """The text the encoder sees: the headline gives a paragraph the context it lacks alone."""
    return _with_title(passage, settings.title_in_dense)


def lexical_text(passage: Passage, settings: IndexSettings) -> str:
    """The text BM25 sees."""
    return _with_title(passage, settings.title_in_bm25)


def _with_title(passage: Passage, title: bool) -> str:
    return f"{passage.title}\n{passage.text}" if title and passage.title else passage.text


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows (zero rows stay zero), so inner product is cosine similarity."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class EmbeddingCache:
    """Vectors already computed, keyed by model and text hash, in SQLite.

    Batches are committed as they are embedded, so a build that is stopped
    part-way resumes without embedding the same passages again. SQLite's
    rollback journal undoes a batch cut off mid-commit (even by SIGKILL).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = _open_cache(path)
        except sqlite3.DatabaseError as error:
            # Only a cache: replacing a damaged one costs embedding again, not a failed build.
            warnings.warn(f"the embedding cache {path} is damaged ({error}); starting a new one", stacklevel=2)
            for stale in (path, path.with_name(f"{path.name}-journal")):
                stale.unlink(missing_ok=True)
            self._db = _open_cache(path)

    def get_many(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):  # stay under SQLite's variable limit
            chunk = list(hashes[start : start + 500])
            rows = self._db.execute(
                "SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN "
                f"({','.join('?' * len(chunk))})",
                [model, *chunk],
            )
            found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    def put_many(self, model: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [(model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items],
            )

    def clear(self, model: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM embeddings WHERE model = ?", [model])

    def close(self) -> None:
        self._db.close()


def _open_cache(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_hash TEXT NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (model, text_hash))"
        )
    except sqlite3.DatabaseError:
        connection.close()
        raise
    return connection


@dataclass(frozen=True)
class EmbedStats:
    """How the vectors of a build were obtained."""

    reused: int = 0
    cached: int = 0
    embedded: int = 0


class PassageIndex:
    """Passages, their documents, their vectors and a BM25 index, searchable by a question."""

    def __init__(
        self,
        documents: list[Document],
        passages: list[Passage],
        vectors: faiss.Index,
        lexical: LexicalIndex,
        manifest: Manifest,
        *,
        slots: np.ndarray | None = None,
    ) -> None:
        """``slots[row]`` is passage ``row``'s vector id in ``vectors`` (default: its row)."""
        self.documents = documents
        self.passages = passages
        self.manifest = manifest
        self.embed_stats = EmbedStats()
        self._vectors = vectors
        self._slots = np.arange(len(passages), dtype=np.int64) if slots is None else slots.astype(np.int64)
        self._rows = _rows_of_slots(self._slots, vectors.ntotal)
        self._live: Any = None  # FAISS selector skipping dead slots, made on first use
        self._lexical = lexical
        self._vocabulary: frozenset[str] | None = None
        self._sentence_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentence_lock = threading.Lock()  # questions run in parallel threads

    @classmethod
    def empty(cls, model: str, settings: IndexSettings) -> PassageIndex:
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
        return cls([], [], build_vector_index(np.zeros((0, 0), dtype=np.float32)), LexicalIndex.build([]), manifest)

    @classmethod
    def build(
        cls,
        documents: list[Document],
        passages: list[Passage],
        *,
        encoder: Encoder,
        settings: IndexSettings,
        corpus_fingerprint: str = "",
        cache: EmbeddingCache | None = None,
        progress: bool = False,
    ) -> PassageIndex:
        """Embed ``passages`` (using ``cache`` where it can) and index them."""
        return cls.empty(encoder.name, settings).update(
            documents,
            passages,
            encoder=encoder,
            settings=settings,
            corpus_fingerprint=corpus_fingerprint,
            cache=cache,
            progress=progress,
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
    ) -> PassageIndex:
        """A new index holding ``passages``; only texts this index and ``cache`` lack are embedded.

        ``self`` is left as it was, so it can keep answering until the new index replaces it.
        """
        self.check_model(encoder.name)
        texts = [embedding_text(p, settings) for p in passages]
        hashes = [text_hash(text) for text in texts]
        old_hashes = self._hashes()
        slots = self._reusable_slots(old_hashes, hashes)
        fresh = np.flatnonzero(slots < 0)
        fresh_vectors, stats = embed_texts(
            [texts[row] for row in fresh],
            encoder,
            known=self._stored_vectors(old_hashes, {hashes[row] for row in fresh}),
            cache=cache,
            progress=progress,
        )
        stats = dataclasses.replace(stats, reused=stats.reused + len(set(hashes)) - len({hashes[r] for r in fresh}))
        vectors, slots = self._vectors_with(slots, fresh, fresh_vectors)
        lexical = LexicalIndex.build([lexical_text(p, settings) for p in passages])
        manifest = dataclasses.replace(
            self.manifest,
            dimension=int(vectors.d) if passages else 0,
            settings=settings,
            corpus_fingerprint=corpus_fingerprint,
            documents=len(documents),
            passages=len(passages),
            files={},
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        index = PassageIndex(documents, passages, vectors, lexical, manifest, slots=slots)
        index.embed_stats = stats
        return index

    def _hashes(self) -> list[str]:
        settings = self.manifest.settings
        return [text_hash(embedding_text(p, settings)) for p in self.passages]

    def _reusable_slots(self, old_hashes: list[str], hashes: list[str]) -> np.ndarray:
        """For each new passage, the slot of an old passage with the same embedded text, else -1.

        Each old slot goes to one new passage at most, so every passage keeps a vector of its own.
        """
        free: dict[str, list[int]] = {}
        for slot, old_hash in zip(self._slots.tolist(), old_hashes, strict=True):
            free.setdefault(old_hash, []).append(slot)
        slots = np.full(len(hashes), -1, dtype=np.int64)
        for row, new_hash in enumerate(hashes):
            if free.get(new_hash):
                slots[row] = free[new_hash].pop()
        return slots

    def _stored_vectors(self, old_hashes: list[str], wanted: set[str]) -> dict[str, np.ndarray]:
        """Vectors this index holds for texts with these hashes (a repeated text needs a second slot)."""
        rows = {h: row for row, h in enumerate(old_hashes) if h in wanted}
        if not rows:
            return {}
        matrix = self._vectors.reconstruct_batch(self._slots[list(rows.values())])
        return dict(zip(rows, matrix, strict=True))

    def _vectors_with(
        self, slots: np.ndarray, fresh: np.ndarray, fresh_vectors: np.ndarray
    ) -> tuple[faiss.Index, np.ndarray]:
        """The vector index for the new passages: this one extended in place if that is worth it, else rebuilt."""
        dead = self._vectors.ntotal - int((slots >= 0).sum())
        if _extends_in_place(self._vectors, passages=len(slots), dead=dead, total=self._vectors.ntotal + len(fresh)):
            import faiss

            vectors = faiss.clone_index(self._vectors)  # ``self`` keeps answering from the original
            slots[fresh] = np.arange(vectors.ntotal, vectors.ntotal + len(fresh))
            if len(fresh):
                with _openmp_threads(usable_cpus()):
                    vectors.add(fresh_vectors)
            _tune_for_queries(vectors)
            return vectors, slots
        kept = np.flatnonzero(slots >= 0)
        dimension = fresh_vectors.shape[1] if len(fresh) else self._vectors.d
        matrix = np.zeros((len(slots), dimension), dtype=np.float32)
        if len(kept):
            matrix[kept] = self._vectors.reconstruct_batch(slots[kept])
        if len(fresh):
            matrix[fresh] = fresh_vectors
        return build_vector_index(matrix), np.arange(len(slots), dtype=np.int64)

    def vocabulary(self) -> frozenset[str]:
        """Every BM25 token of the passages and of the documents' metadata (dates, outlets, names)."""
        # Two concurrent first questions may both compute it; they get the same set, assigned atomically.
        if self._vocabulary is None:
            metadata = [" ".join((d.title, d.outlet, d.author, d.date)) for d in self.documents]
            from_metadata = {token for tokens in tokenize(metadata) for token in tokens}
            self._vocabulary = frozenset(self._lexical.vocabulary() | from_metadata)
        return self._vocabulary

    def embed_sentences(self, sentences: Sequence[str], encoder: Encoder) -> np.ndarray:
        """Unit vectors of evidence sentences, remembered: the same passages come back for many questions.

        Safe for concurrent questions: the memory is only touched under a lock,
        and the answer is built from this call's own copy of the vectors, so
        another thread evicting a sentence meanwhile cannot lose it. Encoding
        runs outside the lock, so questions still embed in parallel.
        """
        self.check_model(encoder.name)
        with self._sentence_lock:
            found = {s: self._sentence_vectors[s] for s in sentences if s in self._sentence_vectors}
        missing = [s for s in dict.fromkeys(sentences) if s not in found]
        if missing:
            found.update(zip(missing, normalize(encoder.encode(missing)), strict=True))
        with self._sentence_lock:
            self._remember_sentences(sentences, found)
        return np.stack([found[s] for s in sentences])

    def _remember_sentences(self, sentences: Sequence[str], vectors: dict[str, np.ndarray]) -> None:
        """Mark ``sentences`` most recently used, then forget the least recently used beyond the limit."""
        for sentence in sentences:
            self._sentence_vectors[sentence] = vectors[sentence]
            self._sentence_vectors.move_to_end(sentence)
        while len(self._sentence_vectors) > SENTENCE_MEMORY:
            self._sentence_vectors.popitem(last=False)

    def check_model(self, model: str) -> None:
        """Refuse to mix vectors of two models."""
        if model != self.manifest.model:
            raise IndexMismatchError(
                f"the index was built with model {self.manifest.model!r}, not {model!r}: "
                f"search without --model, or run `qa index --model {model}` to rebuild it"
            )

    def search(
        self,
        query: str,
        *,
        encoder: Encoder,
        k: int = 5,
        mode: Mode = "hybrid",
        history: Sequence[str] = (),
        where: SearchFilter | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The ``k`` passages that best match ``query``, best first.

        Args:
            query: The question.
            encoder: Embeds the question; must be the index's model.
            k: How many hits to return.
            mode: ``"hybrid"`` (dense and BM25 fused), ``"dense"`` or ``"bm25"``.
            history: Earlier questions of the conversation, oldest first; they
                give a follow-up question its subject.
            where: Only passages this filter allows.
            query_vector: The question's unit vector if the caller already has it
                (from ``embed_query``), to avoid embedding it twice.
        """
        if not query.strip():
            raise QAError("the question is empty")
        if mode not in MODES:
            raise QAError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        self.check_model(encoder.name)
        allowed = self._allowed_rows(where)
        if not self.passages or k <= 0 or (allowed is not None and not allowed.any()):
            return []
        if mode != "bm25" and query_vector is None:
            query_vector = embed_query(encoder, query, history)
        dense = self._dense_ranking(query_vector, allowed) if mode != "bm25" else None
        lexical_scores = self._lexical.scores(lexical_query(query, history)) if mode != "dense" else None
        lexical = top_rows(lexical_scores, CANDIDATE_DEPTH, allowed) if lexical_scores is not None else None
        hits = self._fused_hits(dense, lexical, query_vector, lexical_scores, mode)
        return fold_duplicates(hits, limit=k)

    def _allowed_rows(self, where: SearchFilter | None) -> np.ndarray | None:
        if where is None or where.is_empty:
            return None
        return np.fromiter((where.allows(p) for p in self.passages), dtype=bool, count=len(self.passages))

    def _dense_ranking(self, query_vector: np.ndarray | None, allowed: np.ndarray | None) -> Ranking:
        import faiss

        assert query_vector is not None
        depth = min(CANDIDATE_DEPTH, len(self.passages))
        parameters = None
        if allowed is not None:
            # FAISS filters inside the search, so a narrow filter still gets ``depth`` candidates.
            parameters = faiss.SearchParameters()
            parameters.sel = faiss.IDSelectorBatch(self._slots[allowed])
        elif len(self.passages) < self._vectors.ntotal:
            parameters = faiss.SearchParameters()
            parameters.sel = self._live_selector()
        # One query: a second OpenMP thread only adds hand-off stalls on 2 cores. Set in every
        # call, since OpenMP keeps the setting per thread and the app searches from many.
        faiss.omp_set_num_threads(1)
        scores, slots = self._vectors.search(query_vector.reshape(1, -1), depth, params=parameters)
        rows = np.where(slots[0] >= 0, self._rows[slots[0]], -1)
        found = rows >= 0
        return Ranking(rows[found], scores[0][found])

    def _live_selector(self) -> Any:
        """A FAISS selector of every slot that still holds a passage (tombstones are left out)."""
        import faiss

        if self._live is None:
            dead = faiss.IDSelectorBatch(np.flatnonzero(self._rows < 0).astype(np.int64))
            self._live = faiss.IDSelectorNot(dead)
            self._live.referenced = dead  # IDSelectorNot holds a bare pointer: keep ``dead`` alive
        return self._live

    def _dense_scores(self, rows: np.ndarray, query_vector: np.ndarray) -> np.ndarray:
        vectors = self._vectors.reconstruct_batch(self._slots[rows.astype(np.int64)])
        return np.asarray(vectors @ query_vector, dtype=np.float32)

    def _fused_hits(
        self,
        dense: Ranking | None,
        lexical: Ranking | None,
        query_vector: np.ndarray | None,
        lexical_scores: np.ndarray | None,
        mode: Mode,
    ) -> list[Hit]:
        """Hits over the candidates of both retrievers, each scored by both and ranked by ``mode``."""
        rows = np.unique(np.concatenate([r.rows for r in (dense, lexical) if r is not None]))
        scored = _Candidates(
            rows=rows,
            dense=self._dense_scores(rows, query_vector) if query_vector is not None else None,
            bm25=lexical_scores[rows] if lexical_scores is not None else None,
        )
        if mode == "hybrid":
            assert scored.dense is not None and scored.bm25 is not None
            fused = convex_fusion(rows, scored.dense, scored.bm25, dense_weight=DENSE_WEIGHT)
        else:
            own = scored.dense if mode == "dense" else scored.bm25
            assert own is not None
            fused = {int(row): float(score) for row, score in zip(rows, own, strict=True)}
        return self._hits(fused, scored, dense, lexical)

    def _hits(
        self, fused: dict[int, float], scored: _Candidates, dense: Ranking | None, lexical: Ranking | None
    ) -> list[Hit]:
        position = {int(row): i for i, row in enumerate(scored.rows)}
        dense_ranks = dense.ranks() if dense else {}
        bm25_ranks = lexical.ranks() if lexical else {}
        ordered = sorted(fused, key=lambda row: (-fused[row], row))
        return [
            Hit(
                rank=rank,
                score=fused[row],
                passage=self.passages[row],
                dense_rank=dense_ranks.get(row),
                dense_score=_score_at(scored.dense, position[row]),
                bm25_rank=bm25_ranks.get(row),
                bm25_score=_score_at(scored.bm25, position[row]),
            )
            for rank, row in enumerate(ordered, start=1)
        ]

    def save(self, index_dir: Path) -> None:
        """Write this index as a new generation, then switch the manifest to it in one rename."""
        index_dir.mkdir(parents=True, exist_ok=True)
        generation = f"{time.time_ns():x}"
        files = {
            "documents": f"documents-{generation}.jsonl",
            "passages": f"passages-{generation}.jsonl",
            "vectors": f"vectors-{generation}.faiss",
            "slots": f"slots-{generation}.npy",
            "bm25": f"bm25-{generation}",
        }
        try:
            self._write_generation(index_dir, files)
            checks = file_checks(index_dir, files.values())
            _sync_directory(index_dir)  # the new files' names reach the disk before the manifest names them
        except BaseException as error:
            # Interrupted (even by Ctrl-C) or the disk is full: the old manifest still rules.
            for name in files.values():
                _remove(index_dir / name)
            if isinstance(error, OSError):
                raise _write_failure(index_dir, error) from error
            raise
        manifest = dataclasses.replace(self.manifest, files=files, file_checks=checks)
        try:
            with _written(index_dir / MANIFEST_NAME) as path:
                path.write_text(manifest_text(manifest), encoding="utf-8")
        except OSError as error:
            # Not committed; the next build removes this generation's files.
            raise _write_failure(index_dir, error) from error
        self.manifest = manifest
        _sync_directory(index_dir)
        remove_stale_files(index_dir, keep=set(files.values()))

    def _write_generation(self, index_dir: Path, files: dict[str, str]) -> None:
        import faiss

        with _written(index_dir / files["documents"]) as path:
            _write_jsonl(path, (document_to_json(d) for d in self.documents))
        with _written(index_dir / files["passages"]) as path:
            _write_jsonl(path, (dataclasses.asdict(p) for p in self.passages))
        with _written(index_dir / files["vectors"]) as path:
            faiss.write_index(self._vectors, str(path))
        with _written(index_dir / files["slots"]) as path, path.open("wb") as stream:
            np.save(stream, self._slots, allow_pickle=False)
        with _written_directory(index_dir / files["bm25"]) as path:
            self._lexical.save(path)

    @classmethod
    def load(cls, index_dir: Path) -> PassageIndex:
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
    def _load_files(cls, index_dir: Path, manifest: Manifest) -> PassageIndex:
        check_files(index_dir, manifest)
        try:
            documents = [document_from_json(d) for d in _read_jsonl(index_dir / manifest.files["documents"])]
            passages = [passage_from_json(p) for p in _read_jsonl(index_dir / manifest.files["passages"])]
            vectors = _read_faiss(index_dir / manifest.files["vectors"])
            slots = np.load(index_dir / manifest.files["slots"], allow_pickle=False)
            lexical = LexicalIndex.load(index_dir / manifest.files["bm25"])
        except (OSError, KeyError, TypeError, ValueError, RuntimeError) as error:
            raise damaged(index_dir, str(error)) from error
        counts = (len(documents), len(passages), len(slots), lexical.size)
        expected = (manifest.documents, manifest.passages, manifest.passages, manifest.passages)
        if counts != expected or (passages and vectors.d != manifest.dimension):
            raise damaged(
                index_dir,
                f"{len(documents)} documents, {len(passages)} passages, {len(slots)} vector ids, {vectors.ntotal} "
                f"vectors of dimension {vectors.d}, {lexical.size} BM25 rows; the manifest says "
                f"{manifest.documents} documents and {manifest.passages} passages of dimension {manifest.dimension}",
            )
        if not _valid_slots(slots, vectors.ntotal):
            raise damaged(index_dir, f"its vector ids do not map one to one onto its {vectors.ntotal} vectors")
        return cls(documents, passages, vectors, lexical, manifest, slots=slots)


@dataclass(frozen=True)
class _Candidates:
    """Candidate rows with each retriever's score for them (``None`` where it was not run)."""

    rows: np.ndarray
    dense: np.ndarray | None
    bm25: np.ndarray | None


def _valid_slots(slots: np.ndarray, total: int) -> bool:
    """Whether ``slots`` gives each passage its own existing vector id."""
    if slots.ndim != 1 or len(slots) > total:
        return False
    if len(slots) == 0:
        return True
    in_range = slots.dtype.kind == "i" and slots.min() >= 0 and slots.max() < total
    return bool(in_range and len(np.unique(slots)) == len(slots))


def _rows_of_slots(slots: np.ndarray, total: int) -> np.ndarray:
    """The inverse of ``slots``: each vector id's passage row, -1 for a tombstone."""
    rows = np.full(total, -1, dtype=np.int64)
    rows[slots] = np.arange(len(slots), dtype=np.int64)
    return rows


def _extends_in_place(vectors: faiss.Index, *, passages: int, dead: int, total: int) -> bool:
    """Whether to add to ``vectors`` rather than rebuild: a big HNSW graph with few tombstones.

    Rebuilding an exact index is a copy; rebuilding a million-vector graph takes minutes.
    """
    import faiss

    if not isinstance(vectors, faiss.IndexHNSW) or passages <= EXACT_SEARCH_LIMIT:
        return False
    return dead <= MAX_DEAD_FRACTION * total


def _score_at(scores: np.ndarray | None, position: int) -> float | None:
    return None if scores is None else float(scores[position])


def embed_query(encoder: Encoder, query: str, history: Sequence[str] = ()) -> np.ndarray:
    """The unit vector of a question, leaning on earlier turns when there are any.

    A follow-up ("And what happens to their families?") names its subject only
    in earlier turns, so their vectors are added with weights that halve with
    each turn back.
    """
    turns = [query, *reversed(history[-HISTORY_TURNS:])]
    vectors = normalize(encoder.encode(turns))
    weights = np.array([HISTORY_DECAY**i for i in range(len(turns))], dtype=np.float32)
    combined: np.ndarray = normalize((weights[:, None] * vectors).sum(axis=0, keepdims=True))[0]
    return combined


def lexical_query(query: str, history: Sequence[str] = ()) -> str:
    """The BM25 query: the question, then the words of earlier turns (which only add, never outweigh)."""
    return " ".join([query, *history[-HISTORY_TURNS:]])


def read_manifest(index_dir: Path) -> Manifest:
    """The manifest of the index in ``index_dir``, checked for format version and against its checksum."""
    path = index_dir / MANIFEST_NAME
    if not path.is_file():
        raise IndexNotFoundError(f"no index in {index_dir}: run `qa index` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("format_version")
    except (OSError, ValueError, AttributeError) as error:
        raise damaged(index_dir, f"{MANIFEST_NAME} is unreadable: {error}") from error
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index in {index_dir} has format version {version}; this qa reads version {FORMAT_VERSION}: "
            f"{REBUILD_HINT}"
        )
    if data.pop(MANIFEST_CHECKSUM, None) != _json_sha256(data):
        raise damaged(index_dir, f"{MANIFEST_NAME} was edited or damaged: it does not match its checksum")
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, AttributeError) as error:
        raise damaged(index_dir, f"{MANIFEST_NAME} is incomplete: {error}") from error


def manifest_text(manifest: Manifest) -> str:
    """The manifest file: its JSON with a checksum of that JSON, so that any edit shows."""
    data = manifest.to_json()
    return json.dumps({**data, MANIFEST_CHECKSUM: _json_sha256(data)}, indent=2) + "\n"


def _json_sha256(data: dict[str, Any]) -> str:
    # Key order and spacing do not count: only what the manifest says.
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def damaged(index_dir: Path, problem: str) -> IndexCorruptError:
    """The error for a damaged index: what was found, and the fix."""
    return IndexCorruptError(f"the index in {index_dir} is damaged ({problem}): {REBUILD_HINT}")


def file_checks(index_dir: Path, names: Iterable[str]) -> dict[str, FileCheck]:
    """Size and SHA-256 of each named file, and of every file inside each named folder."""
    paths = sorted(path for name in names for path in _files_under(index_dir / name))
    return {path.relative_to(index_dir).as_posix(): FileCheck(path.stat().st_size, file_sha256(path)) for path in paths}


def _files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(index_dir: Path, manifest: Manifest) -> None:
    """Raise ``IndexCorruptError`` unless every file of the index is as it was written.

    Sizes are always compared (a ``stat`` each, so an unchanged ``qa index``
    stays fast); contents too when the files total at most ``CHECKSUM_LIMIT``
    bytes. Above that, hashing would add about a second per 1.5 GB to every
    load, and a same-size change is left to the parsers and count checks.
    """
    for name in manifest.files.values():
        if not (index_dir / name).exists():
            raise damaged(index_dir, f"{name} is missing")
    try:
        _check_sizes(index_dir, manifest.file_checks)
        if sum(check.size for check in manifest.file_checks.values()) <= CHECKSUM_LIMIT:
            _check_contents(index_dir, manifest.file_checks)
    except FileNotFoundError as error:  # removed while being checked
        raise damaged(index_dir, f"{Path(str(error.filename)).name} is missing") from error
    except OSError as error:
        raise damaged(index_dir, str(error)) from error


def _check_sizes(index_dir: Path, checks: dict[str, FileCheck]) -> None:
    for name, check in checks.items():
        size = (index_dir / name).stat().st_size
        if size != check.size:
            raise damaged(index_dir, f"{name} has {size:,} bytes; the manifest says {check.size:,}")


def _check_contents(index_dir: Path, checks: dict[str, FileCheck]) -> None:
    for name, check in checks.items():
        if file_sha256(index_dir / name) != check.sha256:
            raise damaged(index_dir, f"{name} has changed since it was written: its SHA-256 does not match")


def embed_texts(
    texts: list[str],
    encoder: Encoder,
    *,
    known: dict[str, np.ndarray],
    cache: EmbeddingCache | None,
    progress: bool,
) -> tuple[np.ndarray, EmbedStats]:
    """Unit vectors for ``texts``, embedding only those found neither in ``known`` nor in ``cache``."""
    hashes = [text_hash(text) for text in texts]
    vectors = dict(known)
    reused = sum(h in vectors for h in set(hashes))
    missing = [h for h in dict.fromkeys(hashes) if h not in vectors]
    cached = cache.get_many(encoder.name, missing) if cache else {}
    vectors.update(cached)
    to_embed = {h: text for h, text in zip(hashes, texts, strict=True) if h not in vectors}
    vectors.update(_encode_in_batches(to_embed, encoder, cache, progress))
    stats = EmbedStats(reused=reused, cached=len(cached), embedded=len(to_embed))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), stats
    return normalize(np.stack([vectors[h] for h in hashes])), stats


def _encode_in_batches(
    texts: dict[str, str], encoder: Encoder, cache: EmbeddingCache | None, progress: bool
) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    items = list(texts.items())
    encoded: dict[str, np.ndarray] = {}
    # Shows passages/s; the first batch also pays for loading the model.
    with tqdm(total=len(items), unit=" passages", desc="embedding", disable=not (progress and items)) as bar:
        for start in range(0, len(items), EMBED_BATCH_SIZE):
            batch = items[start : start + EMBED_BATCH_SIZE]
            batch_vectors = normalize(encoder.encode([text for _, text in batch]))
            pairs = [(h, batch_vectors[i]) for i, (h, _) in enumerate(batch)]
            if cache is not None:
                cache.put_many(encoder.name, pairs)
            encoded.update(pairs)
            bar.update(len(batch))
    return encoded


def build_vector_index(vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product search for up to ``EXACT_SEARCH_LIMIT`` vectors, HNSW over float16 codes above.

    HNSW answers in about a millisecond at a million vectors where exact search
    takes a hundred; float16 codes keep its memory at half of float32.
    """
    import faiss

    dimension = vectors.shape[1] if vectors.size else 1
    index: faiss.Index
    if len(vectors) <= EXACT_SEARCH_LIMIT:
        index = faiss.IndexFlatIP(dimension)
    else:
        # FAISS's stubs type the quantizer argument as an object; the library takes the QT_* code.
        quantizer = faiss.ScalarQuantizer.QT_fp16
        hnsw = faiss.IndexHNSWSQ(dimension, quantizer, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.train(vectors)
        index = hnsw
    if vectors.size:
        with _openmp_threads(usable_cpus()):  # building a graph is batch work: every core helps
            index.add(vectors)
    _tune_for_queries(index)
    return index


def _tune_for_queries(index: faiss.Index) -> None:
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH


@contextmanager
def _openmp_threads(count: int) -> Iterator[None]:
    """FAISS's OpenMP thread count for the calling thread, for the duration of the block.

    OpenMP keeps the setting per thread: each thread that searches or builds sets its own.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _read_faiss(path: Path) -> faiss.Index:
    import faiss

    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing")
    index = faiss.read_index(str(path))
    _tune_for_queries(index)
    return index


# Fields every passage of a document repeats: one shared string each instead of one per passage.
_SHARED_FIELDS = ("doc_id", "source", "title", "outlet", "author", "date", "url")


def passage_from_json(data: dict[str, Any]) -> Passage:
    return Passage(**{**data, **{name: sys.intern(data[name]) for name in _SHARED_FIELDS}})


def document_to_json(document: Document) -> dict[str, Any]:
    data = dataclasses.asdict(document)
    data["paragraphs"] = list(document.paragraphs)
    return data


def document_from_json(data: dict[str, Any]) -> Document:
    return Document(**{**data, "paragraphs": tuple(data["paragraphs"])})


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


@contextmanager
def _written_directory(final: Path) -> Iterator[Path]:
    """Like ``_written`` for a folder: filled under a temporary name, flushed, renamed when complete."""
    temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    _remove(temporary)
    temporary.mkdir(parents=True)
    try:
        yield temporary
        for path in _files_under(temporary):
            with path.open("rb+") as file:
                os.fsync(file.fileno())
        _sync_directory(temporary)
        os.replace(temporary, final)
    finally:
        _remove(temporary)


def _write_failure(index_dir: Path, error: OSError) -> QAError:
    """A full disk or a read-only folder, said plainly."""
    return QAError(f"could not write the index in {index_dir} ({error}); the previous index is unchanged")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _written(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is flushed to disk and renamed to ``final``."""
    temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def _sync_directory(directory: Path) -> None:
    # The renames are durable only once the directory entry is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_files(index_dir: Path, *, keep: set[str]) -> None:
    """Delete files of earlier generations and temporary files of interrupted builds."""
    patterns = ("documents-*.jsonl", "passages-*.jsonl", "vectors-*.faiss", "slots-*.npy", "bm25-*", ".*.tmp")
    for pattern in patterns:
        for path in index_dir.glob(pattern):
            if path.name not in keep:
                _remove(path)
