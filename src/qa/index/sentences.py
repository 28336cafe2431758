"""The vectors of every passage's sentences, made once when indexing: evidence without embedding at question time.

Each passage's sentences (``split_sentences``) are embedded with the index's model and kept
as int8 codes with one float32 scale a sentence: a quarter of float32's size, and cosines
within 0.01 of float32's (``tests/index/test_sentences.py`` measures it). An update copies
the sentences of every passage whose text it already holds and embeds only the others.

On disk (``sentences-<generation>/``, NumPy files without pickle, memory-mapped when loaded)::

    qa-sentences.json   format version, passages, sentences, dimension
    offsets.npy         int64 (passages + 1): passage r's sentences are offsets[r]:offsets[r + 1]
    spans.npy           int32 (sentences, 2): each sentence's start and end in its passage's text
    codes.npy           int8 (sentences, dimension): the vector divided by its scale, rounded
    scales.npy          float32 (sentences): the largest absolute component / 127
    text_hashes.npy     uint8 (passages, 16): the first 16 bytes of SHA-256 of each passage's text
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from qa.index.scratch import scratch_failure, scratch_file
from qa.ingest.split import split_sentences

SENTENCES_FORMAT = 1
HEADER_FILE = "qa-sentences.json"
# Sentences embedded per call of ``embed`` while building: bounds the float32 vectors held at once.
EMBED_CHUNK = 8192
# Passages whose sentences are made (copied or embedded) at a time while building.
ROW_CHUNK = 4096
COPY_BUFFER = 16 * 2**20
Embed = Callable[[list[str]], np.ndarray]
"""Sentences to unit vectors with the index's model."""


@dataclass(frozen=True)
class PassageSentences:
    """One passage's sentences: their spans in its text and their unit vectors (float32)."""

    spans: tuple[tuple[int, int], ...]
    vectors: np.ndarray

    def texts(self, text: str) -> list[str]:
        """The sentences, cut from the passage's ``text``."""
        return [text[start:end] for start, end in self.spans]


def passage_text_hash(text: str) -> bytes:
    """The key under which a passage's sentences are reused: its text's hash."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and one scale per row, so that ``codes * scale`` is within half a step of ``vectors``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    largest = np.abs(vectors).max(axis=1) if len(vectors) else np.zeros(0, dtype=np.float32)
    scales = np.where(largest > 0, largest / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales


class SentenceVectors:
    """The sentence vectors of an index's passages, in row order."""

    def __init__(
        self,
        offsets: np.ndarray,
        spans: np.ndarray,
        codes: np.ndarray,
        scales: np.ndarray,
        text_hashes: np.ndarray,
        *,
        scratch: IO[bytes] | None = None,
    ) -> None:
        self.offsets = offsets
        self.spans = spans
        self.codes = codes
        self.scales = scales
        self.text_hashes = text_hashes
        # The temporary file an update wrote the codes to (``codes`` maps it, with a handle of its
        # own), closed, and so deleted, with the table.
        self._scratch = scratch
        if scratch is not None:
            weakref.finalize(self, scratch.close)

    @property
    def size(self) -> int:
        """How many passages."""
        return len(self.offsets) - 1

    @property
    def sentences(self) -> int:
        """How many sentences, over all passages."""
        return len(self.spans)

    @classmethod
    def build(cls, texts: Sequence[str], embed: Embed, *, dimension: int) -> SentenceVectors:
        """The sentence vectors of passages with these ``texts``, every sentence embedded (``embed``)."""
        return cls.empty(dimension).updated(np.full(len(texts), -1, dtype=np.int64), texts, embed, dimension=dimension)

    @classmethod
    def empty(cls, dimension: int) -> SentenceVectors:
        """No passages."""
        return cls(
            np.zeros(1, dtype=np.int64),
            np.zeros((0, 2), dtype=np.int32),
            np.zeros((0, dimension), dtype=np.int8),
            np.zeros(0, dtype=np.float32),
            np.zeros((0, 16), dtype=np.uint8),
        )

    def updated(
        self, sources: np.ndarray, fresh_texts: Sequence[str], embed: Embed, *, dimension: int | None = None
    ) -> SentenceVectors:
        """A new table whose row ``i`` copies old row ``sources[i]``, or, where that is -1, holds the next fresh text.

        Only the fresh texts' sentences are embedded, ``EMBED_CHUNK`` at a time. ``dimension``
        is the vectors' (this table's when not given: an empty table has none yet). Rows are
        made ``ROW_CHUNK`` at a time and their codes written to a scratch file as they come, so
        a million passages never hold their four million sentences in memory at once.
        """
        sources = np.asarray(sources, dtype=np.int64)
        fresh_rows = np.flatnonzero(sources < 0)
        if len(fresh_rows) != len(fresh_texts):
            raise ValueError(f"{len(fresh_rows)} rows are fresh but {len(fresh_texts)} fresh texts were given")
        width = dimension or self.codes.shape[1]
        fresh_of_row = np.full(len(sources), -1, dtype=np.int64)
        fresh_of_row[fresh_rows] = np.arange(len(fresh_rows))
        scratch = scratch_file()  # kept open: the table's codes live in it
        counts, spans, scales = [], [], []
        for start in range(0, len(sources), ROW_CHUNK):
            block = self._block(
                sources[start : start + ROW_CHUNK],
                [fresh_texts[i] for i in fresh_of_row[start : start + ROW_CHUNK] if i >= 0],
                embed,
                width,
            )
            counts.append(block.counts)
            spans.append(block.spans)
            scales.append(block.scales)
            _write_scratch(scratch, block.codes.tobytes())
        hashes = np.zeros((len(sources), 16), dtype=np.uint8)  # not NumPy's "S16": it drops trailing zero bytes
        kept = sources >= 0
        hashes[kept] = self.text_hashes[sources[kept]]
        if len(fresh_rows):
            digests = b"".join(passage_text_hash(text) for text in fresh_texts)
            hashes[fresh_rows] = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16)
        all_counts = np.concatenate([np.zeros(0, dtype=np.int64), *counts])
        offsets = np.concatenate([[0], np.cumsum(all_counts)]).astype(np.int64)
        total = int(offsets[-1])
        codes = _scratch_codes(scratch, total, width)
        all_spans = np.concatenate([np.zeros((0, 2), dtype=np.int32), *spans])
        all_scales = np.concatenate([np.zeros(0, dtype=np.float32), *scales])
        return SentenceVectors(offsets, all_spans, codes, all_scales, hashes, scratch=scratch)

    def _block(self, sources: np.ndarray, fresh_texts: list[str], embed: Embed, width: int) -> _Block:
        """The sentences of consecutive rows: copied where ``sources`` names an old row, else split and embedded."""
        kept = sources >= 0
        fresh_spans = [split_sentences(text) for text in fresh_texts]
        counts = np.zeros(len(sources), dtype=np.int64)
        counts[kept] = np.diff(self.offsets)[sources[kept]]
        counts[~kept] = [len(found) for found in fresh_spans]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        total = int(counts.sum())
        spans = np.zeros((total, 2), dtype=np.int32)
        codes = np.zeros((total, width), dtype=np.int8)
        scales = np.zeros(total, dtype=np.float32)
        old_positions = _positions(self.offsets[sources[kept]], counts[kept])
        if len(old_positions):
            new_positions = _positions(starts[kept], counts[kept])
            spans[new_positions] = self.spans[old_positions]
            codes[new_positions] = self.codes[old_positions]
            scales[new_positions] = self.scales[old_positions]
        fresh_positions = _positions(starts[~kept], counts[~kept])
        if len(fresh_positions):
            spans[fresh_positions] = np.array([span for found in fresh_spans for span in found], dtype=np.int32)
        sentences = [text[s:e] for text, found in zip(fresh_texts, fresh_spans, strict=True) for s, e in found]
        for first in range(0, len(sentences), EMBED_CHUNK):
            chunk = fresh_positions[first : first + EMBED_CHUNK]
            codes[chunk], scales[chunk] = quantize(embed(sentences[first : first + EMBED_CHUNK]))
        return _Block(counts, spans, codes, scales)

    def sources_for(self, texts: Sequence[str]) -> np.ndarray:
        """For each passage text, a row of this table holding the same text, else -1."""
        return self.sources_of([passage_text_hash(text) for text in texts])

    def sources_of(self, text_hashes: Sequence[bytes]) -> np.ndarray:
        """For each passage text's hash (``passage_text_hash``), a row of this table holding that text, else -1."""
        row_of = {bytes(key): row for row, key in enumerate(np.asarray(self.text_hashes))}
        return np.fromiter((row_of.get(key, -1) for key in text_hashes), dtype=np.int64, count=len(text_hashes))

    def of_rows(self, rows: Sequence[int]) -> list[PassageSentences]:
        """The sentences of the passages at these rows, with their vectors back in float32."""
        starts = np.asarray(self.offsets[rows], dtype=np.int64)  # fancy indexing copies from the mapped file
        counts = np.asarray(self.offsets[np.asarray(rows, dtype=np.int64) + 1], dtype=np.int64) - starts
        positions = _positions(starts, counts)
        # One gather and one normalisation for all the rows: per-row slicing costs more than the arithmetic.
        vectors = np.asarray(self.codes[positions], dtype=np.float32) * self.scales[positions, None]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # unit again after rounding
        spans = np.asarray(self.spans[positions]).tolist()
        found = []
        for start, end in itertools.pairwise(np.concatenate(([0], np.cumsum(counts))).tolist()):
            found.append(PassageSentences(tuple((s, e) for s, e in spans[start:end]), vectors[start:end]))
        return found

    def save(self, directory: Path) -> None:
        """Write the table into ``directory`` (NumPy files without pickle, and a JSON header)."""
        directory.mkdir(parents=True, exist_ok=True)
        header = {
            "format": SENTENCES_FORMAT,
            "passages": self.size,
            "sentences": self.sentences,
            "dimension": int(self.codes.shape[1]),
        }
        (directory / HEADER_FILE).write_text(json.dumps(header) + "\n", encoding="utf-8")
        for name in ("offsets", "spans", "scales", "text_hashes"):
            np.save(directory / f"{name}.npy", getattr(self, name), allow_pickle=False)
        with (directory / "codes.npy").open("wb") as target:
            if self._scratch is None:
                np.save(target, np.asarray(self.codes), allow_pickle=False)
            else:  # copied file to file: the codes are never read into memory
                np.lib.format.write_array_header_1_0(target, np.lib.format.header_data_from_array_1_0(self.codes))
                self._scratch.seek(0)
                shutil.copyfileobj(self._scratch, target, COPY_BUFFER)

    @classmethod
    def load(cls, directory: Path) -> SentenceVectors:
        """The table saved in ``directory``, memory-mapped.

        Raises:
            ValueError: The files are not a table of this format, or do not agree with each other.
        """
        header = json.loads((directory / HEADER_FILE).read_text(encoding="utf-8"))
        if header.get("format") != SENTENCES_FORMAT:
            raise ValueError(f"sentence vectors of format {header.get('format')}, not {SENTENCES_FORMAT}")
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in ("offsets", "spans", "codes", "scales", "text_hashes")
        }
        table = cls(**arrays)
        sentences, passages = int(header["sentences"]), int(header["passages"])
        shapes_agree = (
            table.size == passages == len(table.text_hashes)
            and len(table.codes) == len(table.scales) == sentences
            and (passages == 0 or int(table.offsets[-1]) == sentences)
        )
        if not shapes_agree:
            raise ValueError(f"sentence vector files disagree with their header ({passages} passages, {sentences})")
        return table


@dataclass(frozen=True)
class _Block:
    """The sentences of some consecutive rows: how many each row has, and their spans, codes and scales."""

    counts: np.ndarray
    spans: np.ndarray
    codes: np.ndarray
    scales: np.ndarray


def _write_scratch(scratch: IO[bytes], data: bytes) -> None:
    """Write ``data`` and flush; a full disk closes (deletes) the scratch file and says where it was."""
    try:
        scratch.write(data)
        scratch.flush()
    except OSError as error:
        scratch.close()
        raise scratch_failure(error) from error


def _scratch_codes(scratch: IO[bytes], sentences: int, width: int) -> np.ndarray:
    """The codes written to ``scratch``, mapped read-only: they stay on disk, out of the process's memory."""
    scratch.flush()
    if sentences == 0 or width == 0:
        return np.zeros((sentences, width), dtype=np.int8)
    return np.memmap(scratch, dtype=np.int8, mode="r", shape=(sentences, width))


def _positions(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Every position ``start + i`` for ``i < count``, for each pair, in order: the rows of several blocks."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    block_starts = np.repeat(np.asarray(starts, dtype=np.int64) - np.cumsum(counts) + counts, counts)
    return block_starts + np.arange(total, dtype=np.int64)
