"""Float32 rows kept in a temporary file while an index is built: a million vectors off the heap.

A build embeds every new passage before it adds them to FAISS; held in memory, a million
384-wide vectors are 1.5 GB on top of the graph being built from them. Here they are
written to an unnamed temporary file as they come and read back a block at a time with
plain reads (``os.pread``), never mapped: the pages sit in the kernel's cache, which it may
drop, not in the process's resident memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO

import numpy as np

from qa.errors import QAError

# Rows read or written at a time by callers that go through every row.
BLOCK_ROWS = 65_536
_ITEM = np.dtype(np.float32).itemsize


class ScratchRows:
    """``rows`` float32 rows of ``width`` values in a temporary file, deleted when closed.

    Reads like a read-only matrix where a build needs one: ``len``, ``shape``, and a
    slice of consecutive rows (``rows[start:stop]``, a new array).
    """

    def __init__(self, rows: int, width: int) -> None:
        self.shape = (rows, width)
        self._file = scratch_file()
        try:
            self._file.truncate(rows * width * _ITEM)  # unwritten rows read as zeros, as in np.zeros
        except OSError as error:
            self._file.close()
            raise scratch_failure(error) from error

    def __len__(self) -> int:
        return self.shape[0]

    def __enter__(self) -> ScratchRows:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the file; the rows are gone."""
        self._file.close()

    def write(self, rows: np.ndarray, block: np.ndarray) -> None:
        """Put ``block[i]`` into row ``rows[i]`` (rows given in any order); runs of consecutive rows go in one write."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return
        order = np.argsort(rows, kind="stable")
        rows, block = rows[order], np.ascontiguousarray(block[order], dtype=np.float32)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        try:
            for start, stop in zip([0, *breaks.tolist()], [*breaks.tolist(), len(rows)], strict=True):
                _write_all(self._file.fileno(), block[start:stop].data.cast("B"), self._offset(int(rows[start])))
        except OSError as error:
            raise scratch_failure(error) from error

    def __getitem__(self, rows: slice) -> np.ndarray:
        """Consecutive rows, read from the file into a new array."""
        start, stop, step = rows.indices(len(self))
        if step != 1:
            raise ValueError("scratch rows are read in consecutive runs")
        block = np.empty((max(stop - start, 0), self.shape[1]), dtype=np.float32)
        _read_all(self._file.fileno(), block.data.cast("B"), self._offset(start))
        return block

    def _offset(self, row: int) -> int:
        return row * self.shape[1] * _ITEM


class ScratchRowsByKey(Mapping[str, np.ndarray]):
    """Rows of a ``ScratchRows`` by key (``keys[i]`` names row ``i``; a repeated key, its last row), read on demand."""

    def __init__(self, rows: ScratchRows, keys: list[str]) -> None:
        self._rows = rows
        self._row_of = {key: row for row, key in enumerate(keys)}

    def __getitem__(self, key: str) -> np.ndarray:
        row = self._row_of[key]
        return self._rows[row : row + 1].reshape(-1)

    def __contains__(self, key: object) -> bool:
        return key in self._row_of

    def __iter__(self) -> Iterator[str]:
        return iter(self._row_of)

    def __len__(self) -> int:
        return len(self._row_of)


def scratch_file() -> IO[bytes]:
    """A new unnamed temporary file (gone when closed, or when the process ends however it ends)."""
    try:
        return tempfile.TemporaryFile()
    except OSError as error:
        raise scratch_failure(error) from error


def scratch_failure(error: OSError) -> QAError:
    """The error for a build whose temporary files (these rows, the sentence codes) could not be written."""
    reason = error.strerror or str(error) or type(error).__name__
    return QAError(
        f"could not write the build's temporary files in {tempfile.gettempdir()} ({reason}); the index is unchanged",
        fix="free some disk space there, or set TMPDIR to a folder on a disk with room (a million passages "
        "take about 3 GB)",
    )


def _write_all(descriptor: int, data: memoryview, offset: int) -> None:
    while len(data):
        written = os.pwrite(descriptor, data, offset)
        data, offset = data[written:], offset + written


def _read_all(descriptor: int, target: memoryview, offset: int) -> None:
    while len(target):
        read = os.preadv(descriptor, [target], offset)
        if read == 0:
            raise OSError(f"scratch file ended {len(target)} bytes early")
        target, offset = target[read:], offset + read
