"""The passage index: FAISS vectors, a passage store and a manifest, saved atomically.

On disk (``index/``)::

    manifest.json               format version, model, dimension, normalisation,
                                corpus fingerprint, chunking, build time, file names
    documents-<generation>.jsonl  cleaned documents with their metadata
    passages-<generation>.jsonl   passages in document and paragraph order
    vectors-<generation>.faiss    one unit vector per passage, same order
    embeddings.sqlite           embedding cache keyed by (model, text hash)

Every build writes a new generation of files beside the old one and then
replaces ``manifest.json`` in one rename, so an interrupted build leaves the
previous index whole. Nothing is pickled: JSON, SQLite and FAISS's own format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.encoder import Encoder
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, QAError
from qa.records import Document, Hit, Passage

if TYPE_CHECKING:
    import faiss

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CACHE_NAME = "embeddings.sqlite"
REBUILD_HINT = "run `qa index --rebuild` to build it again"
EMBED_BATCH_SIZE = 32


@dataclass(frozen=True)
class Chunking:
    """Settings that decide how documents become passages; a change re-splits every document."""

    max_tokens: int
    min_words: int
    pipeline_version: int = 1


@dataclass(frozen=True)
class Manifest:
    """What an index was built from and how; written last, it commits a build."""

    model: str
    dimension: int
    corpus_fingerprint: str
    chunking: Chunking
    documents: int
    passages: int
    files: dict[str, str]
    built_at: str
    normalized: bool = True
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(**{**data, "chunking": Chunking(**data["chunking"])})


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_text(passage: Passage) -> str:
    """The text the encoder sees for a passage."""
    return passage.text


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows (zero rows stay zero), so inner product is cosine similarity."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class EmbeddingCache:
    """Vectors already computed, keyed by model and text hash, in SQLite.

    Batches are committed as they are embedded, so a build that is stopped
    part-way resumes without embedding the same passages again.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_hash TEXT NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (model, text_hash))"
        )

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


@dataclass(frozen=True)
class EmbedStats:
    """How the vectors of a build were obtained."""

    reused: int = 0
    cached: int = 0
    embedded: int = 0


class PassageIndex:
    """Passages, their documents and their vectors, searchable by a query text."""

    def __init__(self, documents: list[Document], passages: list[Passage], vectors: faiss.Index, manifest: Manifest):
        self.documents = documents
        self.passages = passages
        self.manifest = manifest
        self.embed_stats = EmbedStats()
        self._vectors = vectors

    @classmethod
    def empty(cls, model: str, chunking: Chunking) -> PassageIndex:
        """An index with nothing in it, to build from."""
        manifest = Manifest(
            model=model,
            dimension=0,
            corpus_fingerprint="",
            chunking=chunking,
            documents=0,
            passages=0,
            files={},
            built_at="",
        )
        return cls([], [], _flat_index(np.zeros((0, 0), dtype=np.float32)), manifest)

    @classmethod
    def build(
        cls,
        documents: list[Document],
        passages: list[Passage],
        *,
        encoder: Encoder,
        chunking: Chunking,
        corpus_fingerprint: str = "",
        cache: EmbeddingCache | None = None,
        progress: bool = False,
    ) -> PassageIndex:
        """Embed ``passages`` (using ``cache`` where it can) and index them."""
        return cls.empty(encoder.name, chunking).update(
            documents,
            passages,
            encoder=encoder,
            chunking=chunking,
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
        chunking: Chunking,
        corpus_fingerprint: str = "",
        cache: EmbeddingCache | None = None,
        progress: bool = False,
    ) -> PassageIndex:
        """A new index holding ``passages``; only texts this index and ``cache`` lack are embedded.

        ``self`` is left as it was, so it can keep answering until the new index replaces it.
        """
        self.check_model(encoder.name)
        known = self._vectors_by_hash()
        vectors, stats = embed_passages(passages, encoder, known=known, cache=cache, progress=progress)
        manifest = dataclasses.replace(
            self.manifest,
            dimension=int(vectors.shape[1]),
            chunking=chunking,
            corpus_fingerprint=corpus_fingerprint,
            documents=len(documents),
            passages=len(passages),
            files={},
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        index = PassageIndex(documents, passages, _flat_index(vectors), manifest)
        index.embed_stats = stats
        return index

    def _vectors_by_hash(self) -> dict[str, np.ndarray]:
        if not self.passages:
            return {}
        matrix = self._vectors.reconstruct_n(0, len(self.passages))
        return {text_hash(embedding_text(p)): matrix[i] for i, p in enumerate(self.passages)}

    def check_model(self, model: str) -> None:
        """Refuse to mix vectors of two models."""
        if model != self.manifest.model:
            raise IndexMismatchError(
                f"the index was built with model {self.manifest.model!r}, not {model!r}: "
                f"search without --model, or run `qa index --model {model}` to rebuild it"
            )

    def search(self, query: str, *, encoder: Encoder, k: int = 5) -> list[Hit]:
        """The ``k`` passages most similar to ``query`` (cosine similarity), best first."""
        if not query.strip():
            raise QAError("the question is empty")
        self.check_model(encoder.name)
        if not self.passages or k <= 0:
            return []
        query_vector = normalize(encoder.encode([query]))
        scores, rows = self._vectors.search(query_vector, min(k, len(self.passages)))
        return [
            Hit(rank=rank, score=float(score), passage=self.passages[row])
            for rank, (score, row) in enumerate(zip(scores[0], rows[0], strict=True), start=1)
            if row >= 0
        ]

    def save(self, index_dir: Path) -> None:
        """Write this index as a new generation, then switch the manifest to it in one rename."""
        index_dir.mkdir(parents=True, exist_ok=True)
        generation = f"{time.time_ns():x}"
        files = {
            "documents": f"documents-{generation}.jsonl",
            "passages": f"passages-{generation}.jsonl",
            "vectors": f"vectors-{generation}.faiss",
        }
        try:
            self._write_generation(index_dir, files)
        except BaseException:
            # Interrupted (even by Ctrl-C): the old manifest still rules; drop the new files.
            for name in files.values():
                (index_dir / name).unlink(missing_ok=True)
            raise
        self.manifest = dataclasses.replace(self.manifest, files=files)
        with _written(index_dir / MANIFEST_NAME) as path:
            path.write_text(json.dumps(self.manifest.to_json(), indent=2) + "\n", encoding="utf-8")
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

    @classmethod
    def load(cls, index_dir: Path) -> PassageIndex:
        """Load the index in ``index_dir``; a missing or damaged index raises a clear error."""
        manifest = read_manifest(index_dir)
        try:
            documents = [document_from_json(d) for d in _read_jsonl(index_dir / manifest.files["documents"])]
            passages = [Passage(**p) for p in _read_jsonl(index_dir / manifest.files["passages"])]
            vectors = _read_faiss(index_dir / manifest.files["vectors"])
        except (OSError, KeyError, TypeError, ValueError, RuntimeError) as error:
            raise IndexCorruptError(f"the index in {index_dir} is damaged ({error}): {REBUILD_HINT}") from error
        if vectors.ntotal != len(passages) or (passages and vectors.d != manifest.dimension):
            raise IndexCorruptError(
                f"the index in {index_dir} is inconsistent ({vectors.ntotal} vectors for {len(passages)} passages): "
                f"{REBUILD_HINT}"
            )
        return cls(documents, passages, vectors, manifest)


def read_manifest(index_dir: Path) -> Manifest:
    """The manifest of the index in ``index_dir``, checked for format version."""
    path = index_dir / MANIFEST_NAME
    if not path.is_file():
        raise IndexNotFoundError(f"no index in {index_dir}: run `qa index` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version = data.get("format_version")
    except (OSError, ValueError, AttributeError) as error:
        raise IndexCorruptError(f"the index manifest {path} is unreadable ({error}): {REBUILD_HINT}") from error
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index in {index_dir} has format version {version}; this qa reads version {FORMAT_VERSION}: "
            f"{REBUILD_HINT}"
        )
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError) as error:
        raise IndexCorruptError(f"the index manifest {path} is incomplete ({error}): {REBUILD_HINT}") from error


def embed_passages(
    passages: list[Passage],
    encoder: Encoder,
    *,
    known: dict[str, np.ndarray],
    cache: EmbeddingCache | None,
    progress: bool,
) -> tuple[np.ndarray, EmbedStats]:
    """Unit vectors for ``passages``, embedding only texts found neither in ``known`` nor in ``cache``."""
    hashes = [text_hash(embedding_text(p)) for p in passages]
    vectors = dict(known)
    reused = sum(h in vectors for h in set(hashes))
    missing = [h for h in dict.fromkeys(hashes) if h not in vectors]
    cached = cache.get_many(encoder.name, missing) if cache else {}
    vectors.update(cached)
    texts = {h: embedding_text(p) for h, p in zip(hashes, passages, strict=True) if h not in vectors}
    vectors.update(_encode_in_batches(texts, encoder, cache, progress))
    stats = EmbedStats(reused=reused, cached=len(cached), embedded=len(texts))
    if not passages:
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


def _flat_index(vectors: np.ndarray) -> faiss.Index:
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1] if vectors.size else 1)
    if vectors.size:
        index.add(vectors)
    return index


def _read_faiss(path: Path) -> faiss.Index:
    import faiss

    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing")
    return faiss.read_index(str(path))


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
    patterns = ("documents-*.jsonl", "passages-*.jsonl", "vectors-*.faiss", ".*.tmp")
    for pattern in patterns:
        for path in index_dir.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)
