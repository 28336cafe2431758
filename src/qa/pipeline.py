"""Bring an index up to date with a corpus folder, doing only the work that changed."""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qa.encoder import DEFAULT_MODEL, Encoder, SentenceTransformerEncoder, model_from_environment
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from qa.index import (
    CACHE_NAME,
    REBUILD_HINT,
    EmbeddingCache,
    IndexSettings,
    Manifest,
    PassageIndex,
    check_files,
    read_manifest,
    remove_stale_files,
)
from qa.ingest import CorpusFile, SkippedFileWarning, find_corpus_files, load_document
from qa.lock import index_lock
from qa.records import Document, Passage
from qa.split import approximate_token_count, split_passages

# Paragraphs shorter than this join a neighbour: alone they carry too little context.
MIN_WORDS = 12


@dataclass(frozen=True)
class IndexReport:
    """What ``index_corpus`` did, for the person who ran it.

    ``decoded`` lists the ``(source, encoding)`` of files read in this run
    that were not UTF-8, so the person can check the guess; files that could
    not be read at all are counted in ``skipped`` and named in warnings.
    """

    documents: int
    passages: int
    added: int
    changed: int
    removed: int
    skipped: int
    embedded: int
    seconds: float
    rebuilt_reason: str = ""
    decoded: tuple[tuple[str, str], ...] = ()

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed or self.rebuilt_reason)


def corpus_fingerprint(files: list[CorpusFile]) -> str:
    """One hash for the corpus: every file's path and content."""
    digest = hashlib.sha256()
    for corpus_file in sorted(files, key=lambda f: f.source):
        digest.update(f"{corpus_file.source}\0{corpus_file.checksum}\n".encode())
    return digest.hexdigest()


def index_corpus(
    corpus_dir: Path,
    index_dir: Path,
    *,
    encoder: Encoder,
    settings: IndexSettings,
    count_tokens: Callable[[str], int] = approximate_token_count,
    rebuild: bool = False,
    progress: bool = False,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> IndexReport:
    """Build or update the index of ``corpus_dir`` in ``index_dir``.

    Unchanged files keep their passages; only new or changed passage texts are
    embedded; when nothing changed the encoder is never called (nor loaded). A
    damaged index is rebuilt, reusing the embedding cache, and the report says
    why. One build at a time per index folder: another one is waited for up to
    ``wait`` seconds (``on_wait`` gets a message saying so), then refused.
    """
    with index_lock(index_dir, wait=wait, on_wait=on_wait):
        return _index_locked(
            corpus_dir,
            index_dir,
            encoder=encoder,
            settings=settings,
            count_tokens=count_tokens,
            rebuild=rebuild,
            progress=progress,
        )


def _index_locked(
    corpus_dir: Path,
    index_dir: Path,
    *,
    encoder: Encoder,
    settings: IndexSettings,
    count_tokens: Callable[[str], int],
    rebuild: bool,
    progress: bool,
) -> IndexReport:
    started = time.perf_counter()
    files = find_corpus_files(corpus_dir)
    fingerprint = corpus_fingerprint(files)
    manifest, reason = _reusable_manifest(index_dir, encoder.name, rebuild)
    if manifest and _is_current(manifest, fingerprint, settings):
        manifest, reason = _intact(index_dir, manifest)
        if manifest:
            remove_stale_files(index_dir, keep=set(manifest.files.values()))  # left by a killed build
            return _unchanged(manifest, len(files), started)
    previous, reason = _previous_index(index_dir, manifest, encoder.name, settings, reason)
    reusable_documents = previous.documents if previous.manifest.settings.splits_like(settings) else []
    documents, passages, fresh = _prepare(files, reusable_documents, previous.passages, settings, count_tokens)
    cache = EmbeddingCache(index_dir / CACHE_NAME)
    try:
        if rebuild:
            cache.clear(encoder.name)
        built = previous.update(
            documents,
            passages,
            encoder=encoder,
            settings=settings,
            corpus_fingerprint=fingerprint,
            cache=cache,
            progress=progress,
        )
    finally:
        cache.close()
    built.save(index_dir)
    decoded = tuple((d.source, d.encoding) for d in fresh if d.encoding != "utf-8")
    return _report(previous.documents, built, len(files), started, reason, decoded=decoded)


def _unchanged(manifest: Manifest, files: int, started: float) -> IndexReport:
    return IndexReport(
        documents=manifest.documents,
        passages=manifest.passages,
        added=0,
        changed=0,
        removed=0,
        skipped=files - manifest.documents,
        embedded=0,
        seconds=time.perf_counter() - started,
    )


def _reusable_manifest(index_dir: Path, model: str, rebuild: bool) -> tuple[Manifest | None, str]:
    """The manifest of an index this build may update, or ``None`` with the reason to start afresh."""
    if rebuild:
        return None, "rebuild requested"
    try:
        manifest = read_manifest(index_dir)
    except IndexNotFoundError:
        return None, ""
    except (IndexMismatchError, IndexCorruptError) as error:
        return None, _without_advice(error)
    if manifest.model != model:
        return None, f"model changed from {manifest.model} to {model}"
    return manifest, ""


def _is_current(manifest: Manifest, fingerprint: str, settings: IndexSettings) -> bool:
    """Whether the index was built from this corpus with these settings, so there is nothing to do."""
    return manifest.corpus_fingerprint == fingerprint and manifest.settings == settings


def _intact(index_dir: Path, manifest: Manifest) -> tuple[Manifest | None, str]:
    """The manifest if its files are as written (see ``check_files``), else ``None`` and the damage found."""
    try:
        check_files(index_dir, manifest)
    except IndexCorruptError as error:
        return None, _without_advice(error)
    return manifest, ""


def _without_advice(error: Exception) -> str:
    # The build is the fix the message advises; the report keeps only what was found.
    return str(error).removesuffix(f": {REBUILD_HINT}")


def _previous_index(
    index_dir: Path, manifest: Manifest | None, model: str, settings: IndexSettings, reason: str
) -> tuple[PassageIndex, str]:
    """The index to update: the saved one, or an empty one when it cannot be used."""
    if manifest is not None:
        try:
            return PassageIndex.load(index_dir), reason
        except IndexCorruptError as error:
            reason = _without_advice(error)
    return PassageIndex.empty(model, settings), reason


def _prepare(
    files: list[CorpusFile],
    old_documents: list[Document],
    old_passages: list[Passage],
    settings: IndexSettings,
    count_tokens: Callable[[str], int],
) -> tuple[list[Document], list[Passage], list[Document]]:
    """Documents and passages for ``files``, reusing those of files whose content is unchanged.

    The third list holds the documents read afresh in this run.
    """
    unchanged = {d.source: d for d in old_documents}
    passages_of: dict[str, list[Passage]] = {}
    for passage in old_passages:
        passages_of.setdefault(passage.doc_id, []).append(passage)
    documents: list[Document] = []
    passages: list[Passage] = []
    fresh: list[Document] = []
    for corpus_file in files:
        document = unchanged.get(corpus_file.source)
        if document is not None and document.checksum == corpus_file.checksum:
            documents.append(document)
            passages.extend(passages_of.get(document.doc_id, []))
            continue
        read = _read_and_split(corpus_file, settings, count_tokens)
        if read is not None:
            documents.append(read[0])
            passages.extend(read[1])
            fresh.append(read[0])
    return documents, passages, fresh


def _read_and_split(
    corpus_file: CorpusFile, settings: IndexSettings, count_tokens: Callable[[str], int]
) -> tuple[Document, list[Passage]] | None:
    """One file's document and passages; ``None``, with a warning naming the file, if either step fails."""
    document = load_document(corpus_file)
    if document is None:
        return None
    try:
        passages = split_passages(
            document, max_tokens=settings.max_tokens, count_tokens=count_tokens, min_words=settings.min_words
        )
    except Exception as error:  # one file's bad luck in the splitter must not cost the others their index
        message = f"skipped {corpus_file.source}: unexpected {type(error).__name__} while splitting it: {error}"
        warnings.warn(message, SkippedFileWarning, stacklevel=2)
        return None
    return document, passages


def _report(
    old_documents: list[Document],
    current: PassageIndex,
    files: int,
    started: float,
    reason: str,
    *,
    decoded: tuple[tuple[str, str], ...],
) -> IndexReport:
    old = {d.source: d.checksum for d in old_documents}
    new = {d.source: d.checksum for d in current.documents}
    return IndexReport(
        documents=len(current.documents),
        passages=len(current.passages),
        added=sum(source not in old for source in new),
        changed=sum(source in old and old[source] != checksum for source, checksum in new.items()),
        removed=sum(source not in new for source in old),
        skipped=files - len(current.documents),
        embedded=current.embed_stats.embedded,
        seconds=time.perf_counter() - started,
        rebuilt_reason=reason,
        decoded=decoded,
    )


def open_index(
    index_dir: Path, *, model: str | None = None, backend: str | None = None
) -> tuple[PassageIndex, SentenceTransformerEncoder]:
    """Load the index and an encoder for its model (checked against ``model`` if one is asked for).

    ``backend`` runs the encoder (see ``qa.encoder.BACKENDS``; default ``$QA_BACKEND``).
    """
    index = PassageIndex.load(index_dir)
    name = model_from_environment(model) or index.manifest.model
    index.check_model(name)
    return index, SentenceTransformerEncoder(name, backend=backend)


def encoder_for_corpus(
    index_dir: Path, *, model: str | None = None, backend: str | None = None
) -> SentenceTransformerEncoder:
    """The encoder ``qa index`` uses: the one asked for, else the index's own, else the default."""
    name = model_from_environment(model)
    if name is None:
        try:
            name = read_manifest(index_dir).model
        except (IndexNotFoundError, IndexMismatchError, IndexCorruptError):
            name = DEFAULT_MODEL
    return SentenceTransformerEncoder(name, backend=backend)


def settings_for(encoder: SentenceTransformerEncoder) -> tuple[IndexSettings, Callable[[str], int]]:
    """Passage settings fitted to the model's window, and its token counter."""
    count_tokens = encoder.token_counter() or approximate_token_count
    return IndexSettings(max_tokens=encoder.max_tokens(), min_words=MIN_WORDS), count_tokens
