"""Errors whose message is meant for the person running ``qa``."""

from __future__ import annotations

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


class IndexBusyError(QAError):
    """Another ``qa index`` is updating the same index folder."""
