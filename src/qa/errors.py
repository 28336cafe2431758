"""Errors whose message is meant for the person running ``qa``."""

from __future__ import annotations


class QAError(Exception):
    """A failure the user can act on; the message says what happened and what to do."""


class IndexNotFoundError(QAError):
    """There is no index at the given place yet."""


class IndexMismatchError(QAError):
    """The index on disk was built differently from what was asked (model, format)."""


class IndexCorruptError(QAError):
    """The index on disk is damaged or incomplete."""


class IndexBusyError(QAError):
    """Another ``qa index`` is updating the same index folder."""
