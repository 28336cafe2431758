"""Listing the corpus: which files it holds, and each file's checksum, read only when its stamp changed.

``qa index`` lists the corpus on every run to learn whether anything changed; with
nothing changed, that listing is most of the run. A file's stamp is its size,
modification time and inode, with its sidecar's size and time: while it holds, the
checksum recorded with it (``CorpusStamps``, kept beside the index by
``qa.index.stamps``) is taken as the file's, as ``git`` and ``make`` take it, and the
file is not read. So that a hundred thousand files are listed in a fraction of a
second, a listing does little per file: one ``stat`` (two with a sidecar), no
``pathlib`` object, stamps compared as tuples; the files' records (``CorpusFile``)
are made only when a build reads the corpus (``CorpusListing.files``).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TypeVar

from qa.errors import QAError
from qa.ingest.folders import CorpusWalk, SkippedFileWarning, is_file

TEXT_SUFFIXES = (".txt",)
MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES + HTML_SUFFIXES
SIDECAR_SUFFIX = ".meta.json"
# A file changed this close before its stamp was taken is read again on the next listing: its
# time stamp may not show a second change within the file system's resolution.
RACY_SECONDS = 2
# A file's stamp: (size, mtime_ns, inode, sidecar_size, sidecar_mtime_ns); sidecar_size is -1
# when the file has no sidecar.
Stamp = tuple[int, int, int, int, int]
_NO_SIDECAR: tuple[str | None, int, int] = (None, -1, 0)
_RACY_NS = RACY_SECONDS * 10**9
_AnyPath = TypeVar("_AnyPath", bound=PurePath)


@dataclass(frozen=True)
class CorpusFile:
    """A corpus file found on disk, before it is read and cleaned; ``sidecar`` is its metadata file, if any."""

    path: Path
    source: str
    checksum: str
    sidecar: Path | None = None

    @property
    def doc_id(self) -> str:
        """The document id: the source path, suffix included, so ``story.txt`` and ``story.md`` are two documents."""
        return self.source


@dataclass(frozen=True)
class FileStamps:
    """The stamps of a listing's files, as columns: one value per file, in the order of ``sources``.

    Columns, not a record per file: two listings of an unchanged corpus are compared a
    column at a time (``==``), at the speed of comparing two lists.
    """

    sources: list[str]
    sizes: list[int]
    mtimes_ns: list[int]
    inodes: list[int]
    sidecar_sizes: list[int]  # -1: no sidecar
    sidecar_mtimes_ns: list[int]

    def stamp(self, row: int) -> Stamp:
        """The stamp of the file in ``row``."""
        return (
            self.sizes[row],
            self.mtimes_ns[row],
            self.inodes[row],
            self.sidecar_sizes[row],
            self.sidecar_mtimes_ns[row],
        )

    def newest_ns(self) -> int:
        """The latest modification time of any file or sidecar (0 for none)."""
        return max(max(self.mtimes_ns, default=0), max(self.sidecar_mtimes_ns, default=0))

    def columns(self) -> tuple[list[str], list[int], list[int], list[int], list[int], list[int]]:
        """The columns, in the order of the fields (``dataclasses.astuple`` would copy every value)."""
        return (self.sources, self.sizes, self.mtimes_ns, self.inodes, self.sidecar_sizes, self.sidecar_mtimes_ns)

    def only(self, rows: list[int]) -> FileStamps:
        """The stamps of the files in ``rows``."""
        numbers = ([column[row] for row in rows] for column in self.columns()[1:])
        return FileStamps([self.sources[row] for row in rows], *numbers)

    @functools.cached_property
    def rows(self) -> dict[str, int]:
        """Each file's row, by source."""
        return {source: row for row, source in enumerate(self.sources)}


@dataclass(frozen=True)
class CorpusStamps:
    """The stamps of a corpus's files, taken by one listing that began at ``taken_ns``, with their checksums."""

    corpus: str  # the corpus folder, resolved: stamps of another folder say nothing of this one
    taken_ns: int  # time.time_ns()
    files: FileStamps
    checksums: list[str]  # one per file, in the order of files.sources

    def checksum(self, source: str, stamp: Stamp) -> str | None:
        """The recorded checksum of ``source`` if ``stamp`` shows it unchanged since, else ``None``.

        A file changed within ``RACY_SECONDS`` before the recording listing may have
        changed again within its time stamp's resolution after being read: it is read again.
        """
        row = self.files.rows.get(source)
        if row is None or self.files.stamp(row) != stamp or max(stamp[1], stamp[4]) >= self.taken_ns - _RACY_NS:
            return None
        return self.checksums[row]

    def hold_for(self, files: FileStamps) -> bool:
        """Whether these stamps give every checksum of ``files``: the same files, unchanged, none of them racy."""
        return self.files == files and files.newest_ns() < self.taken_ns - _RACY_NS


@dataclass(frozen=True)
class CorpusListing:
    """What one listing of a corpus found: each file's source, path, sidecar, stamp and checksum.

    ``stamps`` holds the files in order (sorted by path), and ``paths`` and
    ``sidecars`` run in parallel to them. ``from_stamps`` says that every checksum
    came from the stamps the listing was given, which hold no other file:
    recording ``stamps`` would add nothing to them.
    """

    stamps: CorpusStamps
    paths: list[str]
    sidecars: list[str | None]
    from_stamps: bool

    @property
    def sources(self) -> list[str]:
        """Each file's path in the corpus folder."""
        return self.stamps.files.sources

    def files(self) -> list[CorpusFile]:
        """A record of each file, for reading it."""
        rows = zip(self.paths, self.sources, self.stamps.checksums, self.sidecars, strict=True)
        return [
            CorpusFile(Path(path), source, checksum, Path(sidecar) if sidecar is not None else None)
            for path, source, checksum, sidecar in rows
        ]

    def fingerprint(self) -> str:
        """One hash for the corpus: every file's path and content (``corpus_fingerprint``)."""
        return _fingerprint(self.sources, self.stamps.checksums)


def find_corpus_files(
    corpus_dir: Path, *, follow_links: bool = False, stamps: CorpusStamps | None = None
) -> list[CorpusFile]:
    """List supported files under ``corpus_dir`` (see ``list_corpus``), sorted by path."""
    return list_corpus(corpus_dir, follow_links=follow_links, stamps=stamps).files()


def list_corpus(corpus_dir: Path, *, follow_links: bool = False, stamps: CorpusStamps | None = None) -> CorpusListing:
    """List supported files under ``corpus_dir`` (recursively, hidden ones skipped), sorted by path.

    A folder that cannot be listed, a file that cannot be read, a dangling
    symbolic link, and a link leading out of ``corpus_dir`` (unless
    ``follow_links``) are skipped with a ``SkippedFileWarning`` naming them.
    Links inside the corpus are followed; a file reached twice (by a link and
    by its own name, or as two hard links) is listed once, by its own name.
    A file whose stamp is unchanged since ``stamps`` were taken keeps its
    recorded checksum; the others are read and hashed.

    Raises:
        QAError: ``corpus_dir`` is not a folder, or cannot be listed: an
            unreadable corpus is never taken for an empty one.
    """
    if not corpus_dir.is_dir():
        raise QAError(f"corpus folder not found: {corpus_dir}")
    taken_ns, corpus = time.time_ns(), str(corpus_dir.resolve())
    if stamps is not None and stamps.corpus != corpus:
        stamps = None
    with no_cycle_collection():
        return _listing(corpus_dir, corpus, taken_ns, follow_links=follow_links, stamps=stamps)


def _listing(
    corpus_dir: Path, corpus: str, taken_ns: int, *, follow_links: bool, stamps: CorpusStamps | None
) -> CorpusListing:
    walk = CorpusWalk(corpus_dir, suffixes=SUPPORTED_SUFFIXES, follow_links=follow_links)
    paths, sidecars, files = _stamped(walk, walk.files())
    if stamps is not None and stamps.hold_for(files):
        return CorpusListing(CorpusStamps(corpus, taken_ns, files, stamps.checksums), paths, sidecars, from_stamps=True)
    checksums: list[str] = []
    kept: list[int] = []
    for row, (path, source, sidecar) in enumerate(zip(paths, files.sources, sidecars, strict=True)):
        checksum = stamps.checksum(source, files.stamp(row)) if stamps is not None else None
        if checksum is None:
            try:
                checksum = file_checksum(Path(path), Path(sidecar) if sidecar is not None else None)
            except OSError as error:  # no permission, or gone since the folder was listed
                warnings.warn(f"skipped {source}: {error.strerror or error}", SkippedFileWarning, stacklevel=3)
                continue
        checksums.append(checksum)
        kept.append(row)
    if len(kept) < len(paths):
        files, paths, sidecars = files.only(kept), [paths[row] for row in kept], [sidecars[row] for row in kept]
    return CorpusListing(CorpusStamps(corpus, taken_ns, files, checksums), paths, sidecars, from_stamps=False)


def _stamped(
    walk: CorpusWalk, found: list[tuple[str, str, os.stat_result | None]]
) -> tuple[list[str], list[str | None], FileStamps]:
    """The paths, sidecars and stamps of the files ``walk`` found; one whose status cannot be read is skipped."""
    if not walk.others and all(status is not None for _, _, status in found):
        # No sidecar to look for, every status taken while listing: a column at a time.
        statuses = [status for _, _, status in found if status is not None]
        files = FileStamps(
            [source for _, source, _ in found],
            [status.st_size for status in statuses],
            [status.st_mtime_ns for status in statuses],
            [status.st_ino for status in statuses],
            [-1] * len(found),
            [0] * len(found),
        )
        return [path for path, _, _ in found], [None] * len(found), files
    paths: list[str] = []
    sidecars: list[str | None] = []
    files = FileStamps([], [], [], [], [], [])
    for path, source, listed in found:
        try:
            sidecar, sidecar_size, sidecar_mtime_ns = _sidecar_of(walk, source) if walk.others else _NO_SIDECAR
            status = listed or os.stat(path)  # raises the reason it could not be taken while listing
        except OSError as error:  # no permission, or gone since the folder was listed
            warnings.warn(f"skipped {source}: {error.strerror or error}", SkippedFileWarning, stacklevel=4)
            continue
        paths.append(path)
        sidecars.append(sidecar)
        files.sources.append(source)
        files.sizes.append(status.st_size)
        files.mtimes_ns.append(status.st_mtime_ns)
        files.inodes.append(status.st_ino)
        files.sidecar_sizes.append(sidecar_size)
        files.sidecar_mtimes_ns.append(sidecar_mtime_ns)
    return paths, sidecars, files


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a listing or its stamps are made, then let it run again.

    They make a few small objects per file and no reference cycles, yet the collector would
    walk them all over and over as they pile up: 0.15 s of a 1 s listing of 100,000 files.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sidecar_of(walk: CorpusWalk, source: str) -> tuple[str | None, int, int]:
    """The file's sidecar (if one was listed beside it and may be read), and its size and time (-1, 0 if none).

    Raises:
        OSError: The sidecar's status cannot be read.
    """
    # The source without its suffix (every listed file's name has one), as sidecar_path without pathlib's cost.
    sidecar_source = source[: source.rfind(".")] + SIDECAR_SUFFIX
    entry = walk.others.get(sidecar_source)
    if entry is None:
        return _NO_SIDECAR
    # A sidecar that is a link is read on the terms of any other file.
    if entry.is_symlink() and not walk.may_follow(Path(entry.path), sidecar_source):
        return _NO_SIDECAR
    if not is_file(entry):
        return _NO_SIDECAR
    status = entry.stat()
    return entry.path, status.st_size, status.st_mtime_ns


def corpus_fingerprint(files: list[CorpusFile]) -> str:
    """One hash for the corpus: every file's path and content."""
    return _fingerprint([f.source for f in files], [f.checksum for f in files])


def _fingerprint(sources: list[str], checksums: list[str]) -> str:
    pairs: Iterable[tuple[str, str]] = zip(sources, checksums, strict=True)
    if sources != sorted(sources):  # a listing's order is by path, most often this order too
        pairs = sorted(pairs)
    # One hash of the whole text: the same as hashing it line by line, in a fraction of the time.
    text = "".join([f"{source}\0{checksum}\n" for source, checksum in pairs])
    return hashlib.sha256(text.encode()).hexdigest()


def sidecar_path(path: _AnyPath) -> _AnyPath:
    """The metadata sidecar of a corpus file: ``NAME.meta.json`` beside ``NAME.txt``."""
    return path.with_name(path.name[: -len(path.suffix)] + SIDECAR_SUFFIX)


def file_checksum(path: Path, sidecar: Path | None = None) -> str:
    """SHA-256 of a file and its sidecar, so editing either marks the document changed."""
    digest = hashlib.sha256(path.read_bytes())
    if sidecar is not None and sidecar.is_file():
        digest.update(b"\0sidecar\0" + sidecar.read_bytes())
    return digest.hexdigest()
