"""The vectors of an index: FAISS, exact up to ``EXACT_SEARCH_LIMIT`` passages and HNSW above.

Vector ids ("slots") are mapped to passages rather than equal to their position.
A small index is rebuilt from its stored vectors at every update, so its slots
are simply 0..n-1. A large (HNSW) index is updated in place instead: new
passages get new slots appended to the graph, removed passages leave their slots
behind as tombstones that searches skip, and once tombstones pass
``MAX_DEAD_FRACTION`` of the slots the graph is rebuilt without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.cpus import usable_cpus

if TYPE_CHECKING:
    import faiss

# Exact search up to this many passages, HNSW above: see benchmarks/bench.py.
EXACT_SEARCH_LIMIT = 50_000
# The graph: float16 codes, 32 links a node. At a million synthetic passages (benchmarks/bench.py)
# recall@10 against exact search, with each search's p50 on one thread, 200 questions, one run
# (benchmarks/hnsw_linking.py: graphs built both ways from the same vectors):
#   linked with 160 candidates: efSearch 384 / 512 / 768 gave 0.955 / 0.960 / 0.985 (2.42 ms at 768),
#   linked with 320 candidates: 0.984 / 0.990 / 0.990 (1.28 / 2.04 ms at 384 / 512),
# at 2.4 times the graph's build time (640 s against 272). Earlier graphs linked with 160 gave
# 0.982-0.993 at 512: graphs built in parallel differ. 8-bit codes with 80 candidates while
# linking, at 0.4 GB less, reached only 0.92 / 0.94: the 8-bit codes alone cap it at 0.97.
# The nodes an update adds (a few thousand at a time) are linked with 160 candidates, which keeps
# an update of 1% of a million within its 30 s; the whole graph is relinked at each rebuild.
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 320
HNSW_EF_CONSTRUCTION_ADDED = 160
HNSW_EF_SEARCH = 512
# An HNSW graph with more dead slots than this is rebuilt: tombstones cost search time and memory.
MAX_DEAD_FRACTION = 0.2
# Vectors added to FAISS at a time while building: bounds the float32 rows held beside the index.
# Added in blocks, an HNSW graph links each block's upper-level nodes before its lower ones, as an
# update does: at 100,000 clustered 384-wide vectors recall@10 against exact search was 0.990 from
# one add, 0.990 in blocks of 65,536 and 0.991 in blocks of 16,384.
ADD_BLOCK = 65_536


def valid_slots(slots: np.ndarray, total: int) -> bool:
    """Whether ``slots`` gives each passage its own existing vector id."""
    if slots.ndim != 1 or len(slots) > total:
        return False
    if len(slots) == 0:
        return True
    if slots.dtype.kind != "i" or slots.min() < 0 or slots.max() >= total:
        return False
    # Marks instead of np.unique: its sort took 0.74-1.07 s of a million-passage index's load,
    # the marks 11-14 ms.
    taken = np.zeros(total, dtype=bool)
    taken[slots] = True
    return int(np.count_nonzero(taken)) == len(slots)


def _rows_of_slots(slots: np.ndarray, total: int) -> np.ndarray:
    """The inverse of ``slots``: each vector id's passage row, -1 for a tombstone."""
    rows = np.full(total, -1, dtype=np.int64)
    rows[slots] = np.arange(len(slots), dtype=np.int64)
    return rows


def _extends_in_place(vectors: faiss.Index, *, passages: int, dead: int, total: int) -> bool:
    """Whether to add to ``vectors`` rather than rebuild: a big HNSW graph with few tombstones.

    Rebuilding an exact index is a copy; rebuilding a million-vector graph takes minutes.
    """
    import faiss

    if not isinstance(vectors, faiss.IndexHNSW) or passages <= EXACT_SEARCH_LIMIT:
        return False
    return dead <= MAX_DEAD_FRACTION * total


class Rows(Protocol):
    """Float32 vectors that a build reads a block of consecutive rows at a time: an array, or ``ScratchRows``."""

    @property
    def shape(self) -> tuple[int, ...]:
        """(rows, width)."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice, /) -> np.ndarray: ...


def build_vector_index(vectors: Rows) -> faiss.Index:
    """Exact inner-product search for up to ``EXACT_SEARCH_LIMIT`` vectors, HNSW over float16 codes above.

    HNSW answers in about a millisecond at a million vectors where exact search
    takes a hundred; float16 codes keep its memory at half of float32. The vectors
    are added ``ADD_BLOCK`` rows at a time, so that only those are held as float32
    beside the index (``vectors`` may be a file: ``qa.index.scratch``).
    """
    import faiss

    dimension = vectors.shape[1] if len(vectors) and vectors.shape[1] else 1
    index: faiss.Index
    if len(vectors) <= EXACT_SEARCH_LIMIT:
        index = faiss.IndexFlatIP(dimension)
    else:
        # FAISS's stubs type the quantizer argument as an object; the library takes the QT_* code.
        quantizer = faiss.ScalarQuantizer.QT_fp16
        hnsw = faiss.IndexHNSWSQ(dimension, quantizer, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.train(vectors[:ADD_BLOCK])  # float16 codes learn nothing from the data: any rows will do
        index = hnsw
    add_blocks(index, vectors)
    _tune_for_queries(index)
    return index


def add_blocks(index: faiss.Index, vectors: Rows) -> None:
    """Add ``vectors`` to ``index`` in order, ``ADD_BLOCK`` rows at a time, with every core."""
    with _openmp_threads(usable_cpus()):  # building a graph is batch work: every core helps
        for start in range(0, len(vectors) if vectors.shape[1] else 0, ADD_BLOCK):
            index.add(np.ascontiguousarray(vectors[start : start + ADD_BLOCK], dtype=np.float32))


def _link_added_nodes_quickly(index: faiss.Index) -> None:
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION_ADDED


def _tune_for_queries(index: faiss.Index) -> None:
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH


@contextmanager
def _openmp_threads(count: int) -> Iterator[None]:
    """FAISS's OpenMP thread count for the calling thread, for the duration of the block.

    OpenMP keeps the setting per thread: each thread that searches or builds sets its own.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def read_faiss(path: Path) -> faiss.Index:
    """A saved FAISS index, tuned for questions."""
    import faiss

    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing")
    # The vectors (codes) stay in the file, mapped: loading is instant and a search touches
    # only the pages it reads. The file of a generation never changes once written.
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    _tune_for_queries(index)
    return index


class VectorIndex:
    """One unit vector per passage row, searchable by inner product.

    ``slots[row]`` is row ``row``'s vector id in the FAISS index; ids no row
    holds are tombstones, skipped by every search.
    """

    def __init__(self, index: faiss.Index, slots: np.ndarray | None = None, *, source: Path | None = None) -> None:
        self._index = index
        self._source = source  # the file ``index`` is memory-mapped from, if it is
        self.slots = np.arange(index.ntotal, dtype=np.int64) if slots is None else slots.astype(np.int64)
        self._rows = _rows_of_slots(self.slots, index.ntotal)
        self._live: Any = None  # FAISS selector skipping dead slots, made on first use

    @classmethod
    def build(cls, vectors: Rows) -> VectorIndex:
        """An index of ``vectors``, row ``i`` in slot ``i``."""
        return cls(build_vector_index(vectors))

    @property
    def dimension(self) -> int:
        """The vectors' dimension."""
        return int(self._index.d)

    @property
    def total(self) -> int:
        """Vector ids in use, tombstones included."""
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return len(self.slots)

    def search(self, vector: np.ndarray, *, depth: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the ``depth`` nearest vectors (among ``allowed`` rows) and their scores, best first."""
        import faiss

        parameters = None
        if allowed is not None:
            # FAISS filters inside the search, so a narrow filter still gets ``depth`` candidates.
            parameters = faiss.SearchParameters()
            parameters.sel = faiss.IDSelectorBatch(self.slots[allowed])
        elif len(self.slots) < self._index.ntotal:
            parameters = faiss.SearchParameters()
            parameters.sel = self._live_selector()
        # One query: a second OpenMP thread only adds hand-off stalls on 2 cores. Set in every
        # call, since OpenMP keeps the setting per thread and the app searches from many.
        faiss.omp_set_num_threads(1)
        scores, slots = self._index.search(vector.reshape(1, -1), depth, params=parameters)
        rows = np.where(slots[0] >= 0, self._rows[slots[0]], -1)
        found = rows >= 0
        return rows[found], scores[0][found]

    def _live_selector(self) -> Any:
        """A FAISS selector of every slot that still holds a passage (tombstones are left out)."""
        import faiss

        if self._live is None:
            dead = faiss.IDSelectorBatch(np.flatnonzero(self._rows < 0).astype(np.int64))
            self._live = faiss.IDSelectorNot(dead)
            self._live.referenced = dead  # IDSelectorNot holds a bare pointer: keep ``dead`` alive
        return self._live

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows``."""
        return np.asarray(self._index.reconstruct_batch(self.slots[rows.astype(np.int64)]), dtype=np.float32)

    def updated(self, slots: np.ndarray, fresh: np.ndarray, fresh_vectors: Rows) -> VectorIndex:
        """The index for a new list of rows: this one extended in place if that is worth it, else rebuilt.

        ``slots[row]`` is the slot whose vector a new row keeps, or -1 for the
        rows in ``fresh`` (ascending), whose vectors are ``fresh_vectors``, in the
        same order. ``self`` is left as it was, so it can keep answering until the
        new index replaces it.
        """
        slots = slots.copy()
        dead = self._index.ntotal - int((slots >= 0).sum())
        if _extends_in_place(self._index, passages=len(slots), dead=dead, total=self._index.ntotal + len(fresh)):
            index = self._growable_copy()
            slots[fresh] = np.arange(index.ntotal, index.ntotal + len(fresh))
            _link_added_nodes_quickly(index)
            add_blocks(index, fresh_vectors)
            _tune_for_queries(index)
            return VectorIndex(index, slots)
        if not (slots >= 0).any() and np.array_equal(fresh, np.arange(len(slots))):
            return VectorIndex.build(fresh_vectors)  # every row new and in order
        return VectorIndex.build(_KeptAndFresh(self._index, slots, fresh, fresh_vectors))

    def _growable_copy(self) -> faiss.Index:
        """A copy of the FAISS index in memory, which may grow while ``self`` keeps answering.

        Not ``clone_index``: a copy of a memory-mapped index still views the file, and FAISS
        aborts the process (not an exception) when asked to grow a view. A mapped index is
        read again from its file (a generation's file never changes): one copy, where
        serialising would hold the whole index twice more.
        """
        import faiss

        if self._source is not None:
            try:
                copy = faiss.read_index(str(self._source))
            except (RuntimeError, OSError):  # the file is gone: copy what is mapped instead
                pass
            else:
                if copy.ntotal == self._index.ntotal:
                    return copy
        return faiss.deserialize_index(faiss.serialize_index(self._index))

    def save(self, vectors_path: Path, slots_path: Path) -> None:
        """Write the FAISS index and the slots (NumPy, no pickle) to these paths."""
        import faiss

        faiss.write_index(self._index, str(vectors_path))
        with slots_path.open("wb") as stream:
            np.save(stream, self.slots, allow_pickle=False)


class _KeptAndFresh:
    """The rows of a rebuilt index (``Rows``): kept ones from the old index's slots, fresh ones from their own rows."""

    def __init__(self, index: faiss.Index, slots: np.ndarray, fresh: np.ndarray, fresh_vectors: Rows) -> None:
        self._index = index
        self._slots = slots
        self._fresh = fresh
        self._fresh_vectors = fresh_vectors
        width = fresh_vectors.shape[1] if len(fresh) else index.d
        self.shape = (len(slots), width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice, /) -> np.ndarray:
        start, stop, _ = rows.indices(len(self))
        block = np.zeros((max(stop - start, 0), self.shape[1]), dtype=np.float32)
        kept = np.flatnonzero(self._slots[start:stop] >= 0)
        if len(kept):
            block[kept] = self._index.reconstruct_batch(self._slots[start:stop][kept])
        first, last = np.searchsorted(self._fresh, [start, stop])  # fresh rows ascend: theirs are a run
        if last > first:
            block[self._fresh[first:last] - start] = self._fresh_vectors[int(first) : int(last)]
        return block
