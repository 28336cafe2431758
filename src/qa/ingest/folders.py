"""Listing a corpus folder: recursively, hidden names skipped, every problem named, links kept in bounds.

``pathlib``'s ``rglob`` passes over a folder it cannot list without a word,
so an unreadable corpus looked empty and a build emptied the index. Here the
corpus folder itself must be listed (else ``QAError``), and any other folder
that cannot be is skipped with a ``SkippedFileWarning`` naming it. Symbolic
links are followed while they stay inside the corpus folder: one leading out
of it (a link to ``/etc/passwd``) is followed only when asked, and a dangling
one is named. A file reached twice (by a link and by its own name, or as two
hard links) is listed once.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from pathlib import Path

from qa.errors import QAError

FOLLOW_LINKS_ADVICE = "links out of the corpus are followed only when asked (`qa index --follow-links`)"


class SkippedFileWarning(UserWarning):
    """A corpus file or folder could not be read, or may not be, and was left out of the index."""


def _skip(message: str) -> None:
    warnings.warn(message, SkippedFileWarning, stacklevel=3)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


class CorpusWalk:
    """The files of a corpus folder, found by listing it folder by folder.

    ``pathlib``'s ``rglob`` passes over a folder it cannot list without a
    word, so an unreadable corpus looked empty and emptied the index: here the
    top folder must be listed, and any other that cannot be is named.
    """

    def __init__(self, corpus_dir: Path, *, suffixes: tuple[str, ...], follow_links: bool) -> None:
        self.corpus_dir = corpus_dir
        self.root = corpus_dir.resolve()
        self.suffixes = suffixes
        self.follow_links = follow_links
        # The source of every visible name listed (files of any kind): a sidecar that is not
        # listed need not be looked for, one file system call saved per file.
        self.listed: set[str] = set()
        # Each found file's status (``os.stat``, links followed), taken once while listing.
        self.status: dict[str, os.stat_result] = {}

    def files(self) -> list[tuple[Path, str]]:
        """``(path, source)`` of each file with one of the suffixes, each file once, sorted by path."""
        folders: deque[tuple[Path, str]] = deque([(self.corpus_dir, "")])
        # Folders reached by a link wait until every real folder is read, so a file is
        # named by its own path rather than by a link's.
        linked: deque[tuple[Path, str]] = deque()
        seen_folders: dict[tuple[int, int], str] = {}
        found: list[tuple[Path, str, bool]] = []
        while folders or linked:
            folder, prefix = folders.popleft() if folders else linked.popleft()
            identity = _identity(folder)
            if identity is not None:
                if identity in seen_folders:
                    _skip(f"skipped {prefix}: the same folder as {seen_folders[identity] or 'the corpus folder'}")
                    continue
                seen_folders[identity] = prefix
            for entry in self._entries(folder, prefix):
                source = prefix + entry.name
                self.listed.add(source)
                is_folder, link = _is_dir(entry), entry.is_symlink()
                # os.path, not pathlib: this runs for every name of the corpus (a million at scale).
                supported = _suffix(entry.name) in self.suffixes
                # A dangling link is named whatever its name: it may be a folder that is gone.
                if not (is_folder or supported or (link and not os.path.exists(entry.path))):
                    continue
                path = folder / entry.name
                if link and not self.may_follow(path, source):
                    continue
                if is_folder:
                    (linked if link else folders).append((path, source + "/"))
                elif supported and _is_file(entry):
                    found.append((path, source, link))
        return self._once_each(found)

    def _entries(self, folder: Path, prefix: str) -> list[os.DirEntry[str]]:
        """The visible entries of ``folder`` by name; a subfolder that cannot be listed is skipped with a warning.

        Raises:
            QAError: The corpus folder itself cannot be listed.
        """
        try:
            with os.scandir(folder) as entries:
                return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as error:  # no permission, or an I/O error half-way through the listing
            if not prefix:
                raise QAError(
                    f"cannot list the corpus folder {self.corpus_dir} ({_reason(error)})",
                    fix="make it readable (chmod u+rx) or name another with --corpus; the index was left as it was",
                ) from error
            _skip(f"skipped folder {prefix}: cannot list it ({_reason(error)})")
            return []

    def may_follow(self, link: Path, source: str) -> bool:
        """Whether a symbolic link may be followed: its target exists, inside the corpus unless links may leave it."""
        try:
            target = link.resolve(strict=True)
        except RuntimeError:  # Python 3.11 reports a loop of links so
            _skip(f"skipped {source}: a symbolic link in a loop of links")
            return False
        except OSError:
            _skip(f"skipped {source}: a symbolic link to {_link_text(link)}, which does not exist")
            return False
        if self.follow_links or target.is_relative_to(self.root):
            return True
        _skip(f"skipped {source}: a symbolic link to {target}, outside the corpus folder; {FOLLOW_LINKS_ADVICE}")
        return False

    def may_read(self, path: Path, source: str) -> bool:
        """Whether a file beside those listed (a sidecar) may be read: not a link, or one ``may_follow`` allows."""
        return not path.is_symlink() or self.may_follow(path, source)

    def _once_each(self, found: list[tuple[Path, str, bool]]) -> list[tuple[Path, str]]:
        """Each file once, by its own name where it has one (not a link's), sorted by path."""
        kept: dict[tuple[int, int] | str, str] = {}
        files = []
        for path, source, _link in sorted(found, key=lambda item: (item[2], item[1].split("/"))):
            status = _status(str(path))
            if status is not None:
                self.status[source] = status
            identity = (status.st_dev, status.st_ino) if status is not None and status.st_ino else source
            if identity in kept:
                _skip(f"skipped {source}: the same file as {kept[identity]}")
                continue
            kept[identity] = source
            files.append((path, source))
        return sorted(files, key=lambda item: item[1].split("/"))


def _identity(path: Path) -> tuple[int, int] | None:
    """Device and inode of what ``path`` leads to; ``None`` when unknown (some file systems report inode 0)."""
    status = _status(path)
    return (status.st_dev, status.st_ino) if status is not None and status.st_ino else None


def _suffix(name: str) -> str:
    """The name's suffix in lower case, as ``Path(name).suffix`` gives it for a visible file name."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _status(path: Path | str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()  # a regular file: never a pipe or a device, which reading would hang on
    except OSError:
        return False


def _link_text(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "a missing file"
