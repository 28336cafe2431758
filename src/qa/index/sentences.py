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
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.ingest.split import split_sentences

SENTENCES_FORMAT = 1
HEADER_FILE = "qa-sentences.json"
# Sentences embedded per call of ``embed`` while building: bounds the float32 vectors held at once.
EMBED_CHUNK = 8192
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
        self, offsets: np.ndarray, spans: np.ndarray, codes: np.ndarray, scales: np.ndarray, text_hashes: np.ndarray
    ) -> None:
        self.offsets = offsets
        self.spans = spans
        self.codes = codes
        self.scales = scales
        self.text_hashes = text_hashes

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
        is the vectors' (this table's when not given: an empty table has none yet).
        """
        sources = np.asarray(sources, dtype=np.int64)
        fresh_rows = np.flatnonzero(sources < 0)
        if len(fresh_rows) != len(fresh_texts):
            raise ValueError(f"{len(fresh_rows)} rows are fresh but {len(fresh_texts)} fresh texts were given")
        fresh_spans = [split_sentences(text) for text in fresh_texts]
        counts = np.zeros(len(sources), dtype=np.int64)
        kept = sources >= 0
        counts[kept] = np.diff(self.offsets)[sources[kept]]
        counts[fresh_rows] = [len(spans) for spans in fresh_spans]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(offsets[-1])
        spans = np.zeros((total, 2), dtype=np.int32)
        codes = np.zeros((total, dimension or self.codes.shape[1]), dtype=np.int8)
        scales = np.zeros(total, dtype=np.float32)
        # Not NumPy's "S16": it drops trailing zero bytes, and a hash may end in one.
        hashes = np.zeros((len(sources), 16), dtype=np.uint8)
        # Kept passages: one gather of all their sentences (old and new positions, sentence by sentence).
        old_positions = _positions(self.offsets[sources[kept]], counts[kept])
        new_positions = _positions(offsets[:-1][kept], counts[kept])
        if len(old_positions):
            spans[new_positions] = self.spans[old_positions]
            codes[new_positions] = self.codes[old_positions]
            scales[new_positions] = self.scales[old_positions]
        hashes[kept] = self.text_hashes[sources[kept]]
        if len(fresh_rows):
            hashes[fresh_rows] = np.frombuffer(
                b"".join(passage_text_hash(text) for text in fresh_texts), dtype=np.uint8
            ).reshape(-1, 16)
        fresh_positions = _positions(offsets[:-1][fresh_rows], counts[fresh_rows])
        if len(fresh_positions):
            spans[fresh_positions] = np.array([span for row in fresh_spans for span in row], dtype=np.int32)
        sentences = [text[s:e] for text, row in zip(fresh_texts, fresh_spans, strict=True) for s, e in row]
        for start in range(0, len(sentences), EMBED_CHUNK):
            chunk = fresh_positions[start : start + EMBED_CHUNK]
            codes[chunk], scales[chunk] = quantize(embed(sentences[start : start + EMBED_CHUNK]))
        return SentenceVectors(offsets, spans, codes, scales, hashes)

    def sources_for(self, texts: Sequence[str]) -> np.ndarray:
        """For each passage text, a row of this table holding the same text, else -1."""
        row_of = {bytes(key): row for row, key in enumerate(np.asarray(self.text_hashes))}
        return np.fromiter(
            (row_of.get(passage_text_hash(text), -1) for text in texts), dtype=np.int64, count=len(texts)
        )

    def of_rows(self, rows: Sequence[int]) -> list[PassageSentences]:
        """The sentences of the passages at these rows, with their vectors back in float32."""
        found = []
        for row in rows:
            start, end = int(self.offsets[row]), int(self.offsets[row + 1])
            vectors = np.asarray(self.codes[start:end], dtype=np.float32) * self.scales[start:end, None]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # unit again after rounding
            spans = tuple((int(s), int(e)) for s, e in np.asarray(self.spans[start:end]).tolist())
            found.append(PassageSentences(spans, vectors))
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
        for name in ("offsets", "spans", "codes", "scales", "text_hashes"):
            np.save(directory / f"{name}.npy", getattr(self, name), allow_pickle=False)

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


def _positions(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Every position ``start + i`` for ``i < count``, for each pair, in order: the rows of several blocks."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    block_starts = np.repeat(np.asarray(starts, dtype=np.int64) - np.cumsum(counts) + counts, counts)
    return block_starts + np.arange(total, dtype=np.int64)
