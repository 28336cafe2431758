"""The steps of a build that every backend takes: read the corpus's changed files, split them, check the result.

``qa.index.build`` (the local index) and ``qa.index.milvus_build`` (Milvus) both call
them, so that a corpus becomes the same documents and passages whichever store holds them.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.errors import QAError
from qa.index.manifest import IndexSettings
from qa.ingest.corpus import load_document
from qa.ingest.folders import SkippedFileWarning
from qa.ingest.listing import SUPPORTED_SUFFIXES, CorpusFile
from qa.ingest.split import split_passages
from qa.records import Document, Passage

# A build that would drop more than this share of the index's documents, and at least
# MASS_REMOVAL_MIN of them, because their files are gone, is refused unless asked for:
# a corpus on a drive that is not mounted, or the wrong folder, looks like one whose
# files were all deleted, and the index would be emptied without a word.
MASS_REMOVAL_SHARE = 0.5
MASS_REMOVAL_MIN = 3


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


def check_removals(documents: Sequence[Document], files: list[CorpusFile], corpus_dir: Path) -> None:
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


def prepare_corpus(
    files: list[CorpusFile],
    corpus_dir: Path,
    *,
    previous_documents: Sequence[Document],
    previous_passages: Iterable[Passage],
    previous_settings: IndexSettings | None,
    settings: IndexSettings,
    count_tokens: Callable[[str], int],
    allow_mass_removal: bool,
) -> tuple[list[Document], list[Passage], list[Document]]:
    """A build's documents and passages from the corpus listing, given what the index held (any backend).

    Documents are reused only when the previous settings split alike
    (``previous_settings`` ``None``: no usable index).

    Raises:
        QAError: Most of the index's documents are gone from the corpus (``check_removals``)
            and ``allow_mass_removal`` is not set.
        EmptyCorpusError: No file holds article text.
    """
    if not allow_mass_removal:
        check_removals(previous_documents, files, corpus_dir)
    splits_alike = previous_settings is not None and previous_settings.splits_like(settings)
    prepared = prepare_documents(
        files, previous_documents if splits_alike else [], previous_passages, settings, count_tokens
    )
    if not prepared[1]:
        raise empty_corpus_error(corpus_dir, files)
    return prepared


def prepare_documents(
    files: list[CorpusFile],
    old_documents: Sequence[Document],
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
        read = read_and_split(corpus_file, settings, count_tokens)
        if read is not None:
            documents.append(read[0])
            passages.extend(read[1])
            fresh.append(read[0])
    return documents, passages, fresh


def read_and_split(
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
