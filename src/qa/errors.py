"""Errors whose message is meant for the person running ``qa``."""

from __future__ import annotations

import errno
from pathlib import Path

REBUILD = "run `qa index --rebuild` to build it again"


class QAError(Exception):
    """A failure the user can act on: what happened (``problem``) and what to do about it (``fix``).

    The two travel apart so that code which applies the fix itself (a build that
    rebuilds a damaged index) can report the problem alone.
    """

    def __init__(self, problem: str, *, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}" if self.fix else self.problem


class IndexNotFoundError(QAError):
    """There is no index at the given place yet."""


class IndexMismatchError(QAError):
    """The index on disk was built differently from what was asked (model, format)."""


class IndexCorruptError(QAError):
    """The index on disk is damaged or incomplete."""


class StoreUnavailableError(QAError):
    """The index's server (Milvus) cannot be reached, or failed while answering."""


class IndexBusyError(QAError):
    """Another ``qa index`` is updating the same index folder."""


def os_error_fix(error: OSError) -> str:
    """What to do about a file operation that failed: make room, or use a folder this user may write."""
    if error.errno in {errno.ENOSPC, errno.EDQUOT}:
        return "free some disk space, or give --index a folder on another disk"
    if error.errno in {errno.EROFS, errno.EACCES, errno.EPERM}:
        return "give --index a folder you may write to (qa makes it if it is missing)"
    return "give --index another folder"


def cannot_use(index_dir: Path, error: OSError) -> QAError:
    """The error for an index folder qa cannot list, make or write: what the system said, and the fix."""
    reason = error.strerror or str(error) or type(error).__name__
    return QAError(f"cannot use {index_dir} as the index folder ({reason})", fix=os_error_fix(error))


class LLMError(QAError):
    """The language model behind ``--llm`` could not write an answer: the extractive answer stands."""


class LLMUnavailableError(LLMError):
    """Nothing answers at the language model's address, or it stopped answering (a timeout)."""


class LLMResponseError(LLMError):
    """The language model's server answered with an error, or with something that is not an answer."""
