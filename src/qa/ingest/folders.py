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
from operator import attrgetter
from pathlib import Path

from qa.errors import QAError

_NAME = attrgetter("name")  # a listed entry's name, to sort by (no Python call per entry)
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
        # Every other visible name listed (a sidecar, say), by source: a file beside one of
        # the files found is looked up here, with no file system call.
        self.others: dict[str, os.DirEntry[str]] = {}

    def files(self) -> list[tuple[str, str, os.stat_result | None]]:
        """``(path, source, status)`` of each file with one of the suffixes, each file once, sorted by path.

        ``status`` is the file's ``os.stat`` (links followed), ``None`` if it could not be taken.
        Paths are strings: this runs for every file of the corpus (a hundred thousand at scale).
        """
        folders: deque[tuple[str, str]] = deque([(str(self.corpus_dir), "")])
        # Folders reached by a link wait until every real folder is read, so a file is
        # named by its own path rather than by a link's.
        linked: deque[tuple[str, str]] = deque()
        seen_folders: dict[tuple[int, int], str] = {}
        found: list[tuple[bool, str, str, str]] = []  # (a link, sort key, path, source)
        suffixes = self.suffixes
        while folders or linked:
            folder, prefix = folders.popleft() if folders else linked.popleft()
            identity = _identity(folder)
            if identity is not None:
                if identity in seen_folders:
                    _skip(f"skipped {prefix}: the same folder as {seen_folders[identity] or 'the corpus folder'}")
                    continue
                seen_folders[identity] = prefix
            for entry in self._entries(folder, prefix):
                # This runs for every name of the corpus: the listing's own file types tell
                # files, folders and links apart (no system call), the commonest case first.
                source = prefix + entry.name
                if entry.is_symlink():
                    self._link(entry, source, linked=linked, found=found)
                elif _suffix(entry.name) in suffixes and is_file(entry):
                    found.append((False, source.replace("/", "\0"), entry.path, source))  # _path_order, inlined
                elif _is_dir(entry):
                    folders.append((entry.path, source + "/"))
                else:
                    self.others[source] = entry
        return self._once_each(found)

    def _link(
        self,
        entry: os.DirEntry[str],
        source: str,
        *,
        linked: deque[tuple[str, str]],
        found: list[tuple[bool, str, str, str]],
    ) -> None:
        """A symbolic link: a folder to list later, a file, something else, or skipped with a warning."""
        is_folder, supported = _is_dir(entry), _suffix(entry.name) in self.suffixes
        # A dangling link is named whatever its name: it may be a folder that is gone.
        if not (is_folder or supported or not os.path.exists(entry.path)):
            self.others[source] = entry
        elif not self.may_follow(Path(entry.path), source):
            return
        elif is_folder:
            linked.append((entry.path, source + "/"))
        elif supported and is_file(entry):
            found.append((True, _path_order(source), entry.path, source))

    def _entries(self, folder: str, prefix: str) -> list[os.DirEntry[str]]:
        """The visible entries of ``folder`` by name; a subfolder that cannot be listed is skipped with a warning.

        Raises:
            QAError: The corpus folder itself cannot be listed.
        """
        try:
            with os.scandir(folder) as entries:
                return sorted((e for e in entries if not e.name.startswith(".")), key=_NAME)
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

    def _once_each(self, found: list[tuple[bool, str, str, str]]) -> list[tuple[str, str, os.stat_result | None]]:
        """Each file once, by its own name where it has one (not a link's), sorted by path."""
        found.sort()  # files by their own names first, each group by path
        # A file has another name only if it has several (hard links), or if a link was found:
        # only then is it looked up among those kept (a dictionary entry per file saved).
        any_link = bool(found) and found[-1][0]
        kept: dict[tuple[int, int], str] = {}
        files = []
        for _link, _order, path, source in found:
            status = _status(path)
            if status is not None and status.st_ino and (any_link or status.st_nlink > 1):
                identity = (status.st_dev, status.st_ino)
                if identity in kept:
                    _skip(f"skipped {source}: the same file as {kept[identity]}")
                    continue
                kept[identity] = source
            files.append((path, source, status))
        if any_link:  # a file found by a link: its place is among the others'
            files.sort(key=lambda file: _path_order(file[1]))
        return files


def _path_order(source: str) -> str:
    """A key that sorts sources as lists of their parts ("a/b.txt" before "a.txt"), as ``Path`` sorts them.

    NUL sorts before every character a name may hold, and no name holds it.
    """
    return source.replace("/", "\0")


def _identity(path: str) -> tuple[int, int] | None:
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


def is_file(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is a regular file (links followed); ``False`` when that cannot be told."""
    try:
        return entry.is_file()  # a regular file: never a pipe or a device, which reading would hang on
    except OSError:
        return False


def _link_text(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "a missing file"
