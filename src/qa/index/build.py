"""Build or open an index: the one path every face, the evaluation and the benchmarks take.

A build runs under the index folder's lock: it reads the manifest, returns at
once when the index was built from the same corpus with the same settings and
its files are intact, and otherwise updates the previous index (or starts
afresh when it is unusable, saying why), embedding only what it lacks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from qa.embed.encoder import Encoder, SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL, model_from_environment
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from qa.index.files import remove_stale_files
from qa.index.lock import index_lock
from qa.index.manifest import IndexSettings, Manifest, check_files, read_manifest
from qa.index.prepare import IndexReport, check_unique, prepare_corpus
from qa.index.spec import StoreSpec
from qa.index.stamps import read_stamps, write_stamps
from qa.ingest.listing import CorpusListing, list_corpus
from qa.ingest.split import approximate_token_count

if TYPE_CHECKING:
    # Imported where a build updates or opens an index (numpy, FAISS, SQLite): a `qa index`
    # that finds nothing changed never needs them.
    from qa.index.local import LocalIndex
    from qa.index.store import PassageStore
    from qa.records import Document, DocumentMetadata, Passage

# Paragraphs shorter than this join a neighbour: alone they carry too little context.
MIN_WORDS = 12
# How files become passages (IndexSettings.pipeline_version); a new value re-splits every
# index on its next build, reusing its vectors (texts are unchanged, so nothing is embedded).
# 2: a document's id is its path with the suffix (story.txt and story.md were one id);
# text in any script, and without final punctuation, is kept as article text.
SPLIT_VERSION = 2
# Documents and passages for a build, given the index it updates; the third list holds
# the documents read afresh.
Prepare: TypeAlias = "Callable[[LocalIndex], tuple[list[Document], list[Passage], list[Document]]]"


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
    follow_links: bool = False,
    allow_mass_removal: bool = False,
    store: StoreSpec | None = None,
) -> IndexReport:
    """Build or update the index of ``corpus_dir`` in ``index_dir``.

    Unchanged files keep their passages; only new or changed passage texts are
    embedded; when nothing changed the encoder is never called (nor loaded). A
    damaged index is rebuilt, reusing the embedding cache, and the report says
    why. One build at a time per index folder: another one is waited for up to
    ``wait`` seconds (``on_wait`` gets a message saying so), then refused.
    Symbolic links leading out of ``corpus_dir`` are followed only with
    ``follow_links`` (see ``find_corpus_files``).

    With a Milvus ``store`` (``qa.index.spec``) the index is built there
    (``qa.index.milvus_build``); ``index_dir`` then holds only the embedding
    cache and the build lock.

    Raises:
        QAError: The corpus cannot be listed; or most of the index's documents
            (see ``MASS_REMOVAL_SHARE``) are gone from it and
            ``allow_mass_removal`` is not set. The index is left as it was.
        EmptyCorpusError: No file of the corpus holds article text; the
            index is left as it was (an empty index answers nothing).
    """
    if store is not None and not store.is_local:
        from qa.index.milvus_build import index_corpus_milvus

        return index_corpus_milvus(
            corpus_dir,
            store,
            index_dir,
            encoder=encoder,
            settings=settings,
            count_tokens=count_tokens,
            rebuild=rebuild,
            progress=progress,
            wait=wait,
            on_wait=on_wait,
            follow_links=follow_links,
            allow_mass_removal=allow_mass_removal,
        )
    with index_lock(index_dir, wait=wait, on_wait=on_wait):
        started = time.perf_counter()
        recorded = read_stamps(index_dir)
        listing = list_corpus(corpus_dir, follow_links=follow_links, stamps=recorded)

        def prepare(previous: LocalIndex) -> tuple[list[Document], list[Passage], list[Document]]:
            return prepare_corpus(
                listing.files(),
                corpus_dir,
                previous_documents=previous.documents_with_text,
                previous_passages=previous.passages,
                previous_settings=previous.manifest.settings,
                settings=settings,
                count_tokens=count_tokens,
                allow_mass_removal=allow_mass_removal,
            )

        report = _build_locked(
            index_dir,
            started=started,
            fingerprint=listing.fingerprint(),
            files=len(listing.sources),
            prepare=prepare,
            encoder=encoder,
            settings=settings,
            rebuild=rebuild,
            progress=progress,
        )
        _record_stamps(index_dir, listing)
        return report


def _record_stamps(index_dir: Path, listing: CorpusListing) -> None:
    """Keep the stamps of the files just indexed, unless those recorded already give every checksum."""
    if listing.from_stamps:
        return
    try:
        write_stamps(index_dir, listing.stamps)
    except OSError:  # a cache: without it the next build reads every file, as it did before stamps
        return


def index_documents(
    documents: list[Document],
    passages: list[Passage],
    index_dir: Path,
    *,
    fingerprint: str,
    encoder: Encoder,
    settings: IndexSettings,
    progress: bool = False,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> IndexReport:
    """Build or update an index of passages made elsewhere (a benchmark's documents), like ``index_corpus``.

    ``fingerprint`` identifies the collection: an index built from the same one
    with the same model and settings is reused as it is.
    """
    with index_lock(index_dir, wait=wait, on_wait=on_wait):
        return _build_locked(
            index_dir,
            started=time.perf_counter(),
            fingerprint=fingerprint,
            files=len(documents),
            prepare=lambda _previous: (documents, passages, []),
            encoder=encoder,
            settings=settings,
            rebuild=False,
            progress=progress,
        )


def open_index(index_dir: Path) -> LocalIndex:
    """The index in ``index_dir``; a missing, damaged or foreign one raises a ``QAError`` saying what to do."""
    from qa.index.local import LocalIndex

    return LocalIndex.load(index_dir)


def open_store(spec: StoreSpec) -> PassageStore:
    """The index ``spec`` names (``qa.index.spec``): the local one, or one in Milvus.

    Raises:
        QAError: Missing, damaged, foreign, or (Milvus) unreachable; the message says what to do.
    """
    if spec.is_local:
        assert spec.path is not None
        return open_index(spec.path)
    from qa.index.milvus import MilvusStore

    return MilvusStore.open(spec)


def _build_locked(
    index_dir: Path,
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
    manifest, reason = _reusable_manifest(index_dir, encoder.name, rebuild)
    if manifest and _is_current(manifest, fingerprint, settings):
        manifest, reason = _intact(index_dir, manifest)
        if manifest:
            remove_stale_files(index_dir, keep=set(manifest.files.values()))  # left by a killed build
            return _unchanged(manifest, files, started)
    from qa.index.embeddings import CACHE_NAME, EmbeddingCache

    previous, reason = _previous_index(index_dir, manifest, encoder.name, settings, reason)
    documents, passages, fresh = prepare(previous)
    check_unique(documents, passages)
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
    report = _report(previous.documents, built, files, started, reason, decoded=decoded)
    return dataclasses.replace(report, resplit=bool(previous.passages) and previous.manifest.settings != settings)


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
        return None, error.problem  # the build is the fix the error advises
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
        return None, error.problem
    return manifest, ""


def _previous_index(
    index_dir: Path, manifest: Manifest | None, model: str, settings: IndexSettings, reason: str
) -> tuple[LocalIndex, str]:
    """The index to update: the saved one, or an empty one when it cannot be used."""
    from qa.index.local import LocalIndex

    if manifest is not None:
        try:
            return LocalIndex.load(index_dir), reason
        except IndexCorruptError as error:
            reason = error.problem
    return LocalIndex.empty(model, settings), reason


def _report(
    old_documents: Sequence[DocumentMetadata],
    current: LocalIndex,
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
        sentences_embedded=current.embed_stats.sentences_embedded,
        seconds=time.perf_counter() - started,
        rebuilt_reason=reason,
        decoded=decoded,
    )


def encoder_for_corpus(
    index_dir: Path, *, model: str | None = None, backend: str | None = None, store: StoreSpec | None = None
) -> SentenceTransformerEncoder:
    """The encoder ``qa index`` uses: the one asked for, else the index's own, else the default.

    With a Milvus ``store``, the index's own model is the one its record names.

    Raises:
        StoreUnavailableError: Milvus, asked for its model, cannot be reached.
    """
    name = model_from_environment(model)
    if name is None and store is not None and not store.is_local:
        from qa.index.milvus_connect import store_model

        name = store_model(store)
    if name is None:
        try:
            name = read_manifest(index_dir).model
        except (IndexNotFoundError, IndexMismatchError, IndexCorruptError):
            name = DEFAULT_MODEL
    return SentenceTransformerEncoder(name, backend=backend)


def settings_for(encoder: SentenceTransformerEncoder) -> tuple[IndexSettings, Callable[[str], int]]:
    """Passage settings fitted to the model's window, and its token counter."""
    count_tokens = encoder.token_counter() or approximate_token_count
    settings = IndexSettings(max_tokens=encoder.max_tokens(), min_words=MIN_WORDS, pipeline_version=SPLIT_VERSION)
    return settings, count_tokens
