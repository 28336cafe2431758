"""Build or open an index: the one path every face, the evaluation and the benchmarks take.

A build runs under the index folder's lock: it reads the manifest, returns at
once when the index was built from the same corpus with the same settings and
its files are intact, and otherwise updates the previous index (or starts
afresh when it is unusable, saying why), embedding only what it lacks.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from qa.embed.encoder import Encoder, SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL, model_from_environment
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, QAError
from qa.index.embeddings import CACHE_NAME, EmbeddingCache
from qa.index.files import remove_stale_files
from qa.index.local import LocalIndex
from qa.index.lock import index_lock
from qa.index.manifest import IndexSettings, Manifest, check_files, read_manifest
from qa.index.stamps import read_stamps, write_stamps
from qa.ingest.corpus import (
    SUPPORTED_SUFFIXES,
    CorpusFile,
    CorpusStamps,
    corpus_fingerprint,
    corpus_stamps,
    find_corpus_files,
    load_document,
)
from qa.ingest.folders import SkippedFileWarning
from qa.ingest.split import approximate_token_count, split_passages
from qa.records import Document, Passage

# Paragraphs shorter than this join a neighbour: alone they carry too little context.
MIN_WORDS = 12
# How files become passages (IndexSettings.pipeline_version); a new value re-splits every
# index on its next build, reusing its vectors (texts are unchanged, so nothing is embedded).
# 2: a document's id is its path with the suffix (story.txt and story.md were one id);
# text in any script, and without final punctuation, is kept as article text.
SPLIT_VERSION = 2
# A build that would drop more than this share of the index's documents, and at least
# MASS_REMOVAL_MIN of them, because their files are gone, is refused unless asked for:
# a corpus on a drive that is not mounted, or the wrong folder, looks like one whose
# files were all deleted, and the index would be emptied without a word.
MASS_REMOVAL_SHARE = 0.5
MASS_REMOVAL_MIN = 3
# Documents and passages for a build, given the index it updates; the third list holds
# the documents read afresh.
Prepare = Callable[[LocalIndex], tuple[list[Document], list[Passage], list[Document]]]


class EmptyCorpusError(QAError):
    """The corpus holds no article to index: no supported file, or none with article text."""


@dataclass(frozen=True)
class IndexReport:
    """What a build did, for the person who ran it.

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
    # Sentences embedded for the evidence (the sentences of new and changed passages).
    sentences_embedded: int = 0
    rebuilt_reason: str = ""
    decoded: tuple[tuple[str, str], ...] = ()
    # The settings changed since the last build, so every document was split (not embedded) again.
    resplit: bool = False
    # Why there is nothing to index, when a front end chose to serve an empty index instead of failing.
    empty_corpus: str = ""

    @property
    def unchanged(self) -> bool:
        """Whether the build found nothing to do."""
        return not (self.added or self.changed or self.removed or self.rebuilt_reason or self.resplit)


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
) -> IndexReport:
    """Build or update the index of ``corpus_dir`` in ``index_dir``.

    Unchanged files keep their passages; only new or changed passage texts are
    embedded; when nothing changed the encoder is never called (nor loaded). A
    damaged index is rebuilt, reusing the embedding cache, and the report says
    why. One build at a time per index folder: another one is waited for up to
    ``wait`` seconds (``on_wait`` gets a message saying so), then refused.
    Symbolic links leading out of ``corpus_dir`` are followed only with
    ``follow_links`` (see ``find_corpus_files``).

    Raises:
        QAError: The corpus cannot be listed; or most of the index's documents
            (see ``MASS_REMOVAL_SHARE``) are gone from it and
            ``allow_mass_removal`` is not set. The index is left as it was.
        EmptyCorpusError: No file of the corpus holds article text; the
            index is left as it was (an empty index answers nothing).
    """
    with index_lock(index_dir, wait=wait, on_wait=on_wait):
        started, listed_ns = time.perf_counter(), time.time_ns()
        recorded = read_stamps(index_dir)
        files = find_corpus_files(corpus_dir, follow_links=follow_links, stamps=recorded)

        def prepare(previous: LocalIndex) -> tuple[list[Document], list[Passage], list[Document]]:
            if not allow_mass_removal:
                check_removals(previous.documents, files, corpus_dir)
            reusable = previous.documents if previous.manifest.settings.splits_like(settings) else []
            prepared = _prepare(files, reusable, previous.passages, settings, count_tokens)
            if not prepared[1]:
                raise empty_corpus_error(corpus_dir, files)
            return prepared

        report = _build_locked(
            index_dir,
            started=started,
            fingerprint=corpus_fingerprint(files),
            files=len(files),
            prepare=prepare,
            encoder=encoder,
            settings=settings,
            rebuild=rebuild,
            progress=progress,
        )
        _record_stamps(index_dir, corpus_stamps(corpus_dir, files, taken_ns=listed_ns), recorded)
        return report


def _record_stamps(index_dir: Path, stamps: CorpusStamps, recorded: CorpusStamps | None) -> None:
    """Keep the stamps of the files just indexed, unless those recorded already give every checksum."""
    if recorded is not None and recorded.serve_for(stamps):
        return
    try:
        write_stamps(index_dir, stamps)
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
    return LocalIndex.load(index_dir)


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


def empty_corpus_error(corpus_dir: Path, files: list[CorpusFile]) -> EmptyCorpusError:
    """The error for a corpus with nothing to index: no supported file, or none with article text."""
    fix = "put the articles in it, or give --corpus the folder that holds them; the index was left as it was"
    if not files:
        kinds = ", ".join(SUPPORTED_SUFFIXES[:-1]) + f" or {SUPPORTED_SUFFIXES[-1]}"
        return EmptyCorpusError(f"nothing to index: {corpus_dir} holds no {kinds} file", fix=fix)
    if len(files) == 1:
        problem = f"nothing to index: the only file in {corpus_dir} holds no article text"
    else:
        problem = f"nothing to index: none of the {len(files):,} files in {corpus_dir} holds article text"
    return EmptyCorpusError(f"{problem} (the warnings above say why)", fix=fix)


def check_removals(documents: list[Document], files: list[CorpusFile], corpus_dir: Path) -> None:
    """Refuse a build that would remove most of ``documents`` because their files are gone from ``files``.

    Raises:
        QAError: More than ``MASS_REMOVAL_SHARE`` of the documents, and at least
            ``MASS_REMOVAL_MIN``, have no file any more.
    """
    present = {corpus_file.source for corpus_file in files}
    gone = [document.source for document in documents if document.source not in present]
    if len(gone) < MASS_REMOVAL_MIN or len(gone) <= MASS_REMOVAL_SHARE * len(documents):
        return
    named = ", ".join(gone[:3]) + (f" and {len(gone) - 3:,} more" if len(gone) > 3 else "")
    raise QAError(
        f"not updated: {len(gone):,} of the {len(documents):,} documents in the index are gone from "
        f"{corpus_dir} ({named}), and the update would remove them",
        fix="check that this is the right corpus folder and that its drive is mounted; "
        "if the files were removed on purpose, run `qa index --rebuild`",
    )


def check_unique(documents: list[Document], passages: list[Passage]) -> None:
    """Refuse to save an index that would hold a document or a passage twice.

    Ids made from a corpus are unique by construction (a document's is its
    path), so a repeat is a bug, and saving it would double it at every build.

    Raises:
        QAError: Two documents, or two passages, share an id; nothing is saved.
    """
    for kind, ids in (("document", [d.doc_id for d in documents]), ("passage", [p.passage_id for p in passages])):
        repeated = [(item, count) for item, count in Counter(ids).items() if count > 1]
        if repeated:
            first, count = repeated[0]
            others = f" (and {len(repeated) - 1:,} other {kind} ids)" if len(repeated) > 1 else ""
            raise QAError(
                f"not saved: the index would hold {kind} {first!r} {count} times{others}",
                fix="the index was left as it was; ids must be unique, and from a corpus folder a repeat is "
                "a bug in qa: please report it",
            )


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
    if manifest is not None:
        try:
            return LocalIndex.load(index_dir), reason
        except IndexCorruptError as error:
            reason = error.problem
    return LocalIndex.empty(model, settings), reason


def _prepare(
    files: list[CorpusFile],
    old_documents: list[Document],
    old_passages: Iterable[Passage],
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
        # Reused only under the id it has now: an index from before ids kept the suffix reads it again.
        if document is not None and (document.checksum, document.doc_id) == (corpus_file.checksum, corpus_file.doc_id):
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
    settings = IndexSettings(max_tokens=encoder.max_tokens(), min_words=MIN_WORDS, pipeline_version=SPLIT_VERSION)
    return settings, count_tokens
