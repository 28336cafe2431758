"""BM25 over passages: qa's own inverted index, scored as bm25s's "lucene" method scores.

Tokens come from bm25s's tokenizer (English stop words removed, Snowball stems). The
index keeps what Lucene keeps: for each token the rows holding it, in ascending order,
with the token's frequency there, and the length of every row. idf and length
normalisation are computed when a query is scored, so an update copies the postings of
the rows it keeps and tokenizes only the new texts.

A score is, with N rows, avgdl their mean length, dl the row's length and, for each
distinct query token t (in the order the query first names it), tf its frequency in the
row and df the rows holding it::

    sum over t of  times_in_query(t) * ln(1 + (N - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * (1 - b + b * dl / avgdl))

added up in float64 and rounded to float32 once. That is Lucene's BM25Similarity as
bm25s computes it (no ``k1 + 1`` factor, a repeated query word counting each time);
bm25s adds float32 terms, so the two agree to float32 rounding.

On disk (one folder; NumPy arrays, memory-mapped when loaded, and JSON; no pickle)::

    header.json      format name and version, k1, b, rows, tokens, postings, total length
    vocabulary.json  the tokens, sorted: a token's id is its position
    offsets.npy      int64 [tokens + 1]: token t's postings are offsets[t] to offsets[t + 1]
    rows.npy         int32 [postings]: the rows holding each token, ascending per token
    frequencies.npy  uint16 or uint32 [postings]: how often the token occurs in that row
    lengths.npy      int32 [rows]: tokens in each row
    max_impacts.npy  float64 [tokens]: each token's largest tf / (tf + length norm), for pruning
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from qa.index.maxscore import QueryTerms, TopRows, best_rows, scores_at
from qa.index.postings import (
    Postings,
    assemble,
    compact,
    concatenated,
    first_copies,
    merge_postings,
    no_postings,
)

# Robertson/Lucene defaults; SciFact's train split measured no better setting worth the change.
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
STEMMER_LANGUAGE = "english"
STOPWORDS = "en"
FORMAT_NAME = "qa-bm25"
FORMAT_VERSION = 1
HEADER_FILE = "header.json"
VOCABULARY_FILE = "vocabulary.json"
ARRAY_FILES = ("offsets", "rows", "frequencies", "lengths", "max_impacts")
# Texts tokenized at a time: bounds the Python lists of tokens alive at once (build memory).
CHUNK_ROWS = 50_000
# Postings per step when computing each token's largest impact (bounds a float64 temporary).
IMPACT_BLOCK = 4_000_000
# Pruning keeps every row whose upper bound comes within this fraction of the threshold,
# far more than float32 rounding of the final scores (6e-8) and float64 error in the bounds.
SLACK = 1e-6
# Queries whose terms an index keeps (``LexicalIndex._query_terms``): the answers in flight at once, and more.
RECENT_QUERIES = 32


def _stemmer() -> object:
    import Stemmer

    return Stemmer.Stemmer(STEMMER_LANGUAGE)


def _bm25s_tokenize(texts: list[str], *, return_ids: bool) -> Any:
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=_stemmer(), return_ids=return_ids, show_progress=False)


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stop-word-free, stemmed tokens of each text, as BM25 sees them."""
    return [list(row) for row in _bm25s_tokenize(texts, return_ids=False)]


@functools.lru_cache(maxsize=16)  # the questions in flight, not a cache of past ones
def query_tokens(query: str) -> tuple[str, ...]:
    """The tokens of one query, remembered.

    A hybrid search asks BM25 twice about the same question (its candidates, then
    the scores of the dense candidates), and on a small index tokenizing costs
    more than scoring.
    """
    [tokens] = tokenize([query])
    return tuple(tokens)


class _Term(NamedTuple):
    """One distinct query token as this index scores it."""

    start: int  # its postings are start:end
    end: int
    weight: float  # idf times the times the query names it
    bound: float  # weight times its largest impact: no row gets more from it


class LexicalIndex:
    """A BM25 index whose rows are the passages of a ``LocalIndex``, in the same order."""

    def __init__(
        self,
        vocabulary: list[str],
        offsets: np.ndarray,
        rows: np.ndarray,
        frequencies: np.ndarray,
        lengths: np.ndarray,
        *,
        k1: float,
        b: float,
        max_impacts: np.ndarray | None = None,
    ) -> None:
        self.size = len(lengths)
        self.k1 = k1
        self.b = b
        self._vocabulary = vocabulary
        self._ids = {token: token_id for token_id, token in enumerate(vocabulary)}
        self.offsets_of = offsets
        self._rows = rows
        self._frequencies = frequencies
        self._lengths = lengths
        self._norms = length_norms(lengths, k1=k1, b=b)
        if max_impacts is None:
            max_impacts = largest_impacts(offsets, rows, frequencies, self._norms)
        self._max_impacts = max_impacts
        # The last few queries' terms: a hybrid search asks for a question's best rows, then for
        # the scores of the rows only the vectors found, and tokenizing again took 0.08 ms.
        self._recent_terms: dict[str, QueryTerms] = {}

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> LexicalIndex:
        """A BM25 index of ``texts``, one row each."""
        vocabulary: dict[str, int] = {}
        chunks, lengths = [], []
        for start in range(0, len(texts), CHUNK_ROWS):
            postings, chunk_lengths = tokenized_postings(list(texts[start : start + CHUNK_ROWS]), vocabulary, start)
            chunks.append(compact(postings))
            lengths.append(chunk_lengths)
        tokens, offsets, rows, frequencies = assemble(chunks, vocabulary)
        return cls(tokens, offsets, rows, frequencies, concatenated(lengths, np.int32), k1=k1, b=b)

    def updated(self, sources: np.ndarray, fresh_texts: Sequence[str]) -> LexicalIndex:
        """A new index whose row i holds old row ``sources[i]``, or where that is -1 the next of ``fresh_texts``.

        Only ``fresh_texts`` are tokenized; the postings of kept rows are copied (an old
        row may serve several new ones). The result equals ``build`` of the new list of
        texts. ``self`` is left as it was.
        """
        sources = np.asarray(sources, dtype=np.int64)
        fresh_rows = np.flatnonzero(sources < 0)
        if len(fresh_rows) != len(fresh_texts) or (sources >= self.size).any():
            raise ValueError(
                f"{len(fresh_rows)} new rows want a fresh text and {len(fresh_texts)} were given, "
                f"or a source row is not below {self.size}"
            )
        fresh = LexicalIndex.build(fresh_texts, k1=self.k1, b=self.b)
        if len(fresh_rows) == len(sources):  # nothing kept (a first build): the merge would only copy it
            return fresh
        lengths = np.empty(len(sources), dtype=np.int32)
        lengths[fresh_rows] = fresh._lengths
        kept = np.flatnonzero(sources >= 0)
        lengths[kept] = self._lengths[sources[kept]]
        new_of_old, copied_from, copied_to = first_copies(sources, self.size)
        kept_counts, rows, frequencies = self._moved_postings(new_of_old)
        vocabulary = sorted(set(itertools.compress(self._vocabulary, kept_counts.tolist())) | set(fresh._vocabulary))
        ids = {token: token_id for token_id, token in enumerate(vocabulary)}
        old_ids = np.array([ids.get(token, -1) for token in self._vocabulary], dtype=np.int64)
        counts = np.zeros(len(vocabulary), dtype=np.int64)
        counts[old_ids[kept_counts > 0]] = kept_counts[kept_counts > 0]  # both vocabularies sorted: same order
        fresh_postings = fresh._triples()
        fresh_ids = np.array([ids[token] for token in fresh._vocabulary], dtype=np.int64)
        added = [
            Postings(fresh_ids[fresh_postings.tokens], fresh_rows[fresh_postings.rows], fresh_postings.frequencies),
            self._copied_postings(copied_from, copied_to, old_ids),
        ]
        kept_rows = new_of_old[new_of_old >= 0]
        in_order = bool(np.all(kept_rows[1:] > kept_rows[:-1]))
        offsets, rows, frequencies = merge_postings(counts, rows, frequencies, added, in_order=in_order)
        return LexicalIndex(vocabulary, offsets, rows, frequencies, lengths, k1=self.k1, b=self.b)

    def _moved_postings(self, new_of_old: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Postings of the rows kept, renumbered: how many each token keeps, their new rows and frequencies."""
        new_rows = new_of_old.astype(np.int32)[self._rows]  # int32: a smaller table to look up in
        keep = new_rows >= 0
        if len(self._vocabulary) == 0:
            return np.zeros(0, dtype=np.int64), new_rows[keep], self._frequencies[keep]
        kept_counts = np.add.reduceat(keep, self.offsets_of[:-1], dtype=np.int64)
        return kept_counts, new_rows[keep], self._frequencies[keep]

    def _copied_postings(self, copied_from: np.ndarray, copied_to: np.ndarray, old_ids: np.ndarray) -> Postings:
        """Postings for new rows ``copied_to`` that repeat old rows ``copied_from`` (already copied once)."""
        if len(copied_from) == 0:
            return no_postings()
        wanted = np.zeros(self.size, dtype=bool)
        wanted[copied_from] = True
        hits = np.flatnonzero(wanted[self._rows])
        old_rows = self._rows[hits]
        order = np.argsort(copied_from, kind="stable")
        copied_from, copied_to = copied_from[order], copied_to[order]
        first = np.searchsorted(copied_from, old_rows, side="left")
        times = np.searchsorted(copied_from, old_rows, side="right") - first
        each = np.repeat(np.arange(len(hits)), times)
        nth = np.arange(len(each)) - np.repeat(np.cumsum(times) - times, times)
        tokens = np.searchsorted(self.offsets_of, hits, side="right") - 1
        return Postings(old_ids[tokens[each]], copied_to[first[each] + nth], self._frequencies[hits][each])

    def _triples(self) -> Postings:
        """Every posting as a (token, row, frequency) triple, sorted by token then row."""
        tokens = np.repeat(np.arange(len(self._vocabulary)), np.diff(self.offsets_of))
        return Postings(tokens, np.asarray(self._rows, dtype=np.int64), np.asarray(self._frequencies))

    # ------------------------------------------------------------------ scoring

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros where no query word occurs)."""
        totals = np.zeros(self.size, dtype=np.float64)
        for term in self._terms(query):
            rows, values = self._contributions(term, allowed=None)
            totals[rows] += values
        return totals.astype(np.float32)

    def scores_of(self, query: str, rows: np.ndarray) -> np.ndarray:
        """BM25 scores of ``rows`` alone for ``query``: ``scores(query)[rows]`` without scoring every row.

        Each query token's postings hold its rows in ascending order, so each row
        is found by bisection; contributions are added token by token in the same
        order as ``scores`` adds them, so the scores are the same to the bit.
        """
        return scores_at(
            self._query_terms(query), postings=self._rows, frequencies=self._frequencies, norms=self._norms, rows=rows
        )

    def top(self, query: str, *, depth: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` best rows for ``query`` (among ``allowed`` ones) and their scores, best first.

        Exactly the rows ``top_rows(self.scores(query), depth, allowed)`` gives, ties going to
        the earlier row, scoring only rows that may reach the top (MaxScore, ``qa.index.maxscore``).
        At every size: the compiled kernel matched scoring every row at SciFact's 5,183 (0.19 ms)
        and beat it at 100,000 (0.63 against 0.89 ms), and it releases the interpreter while the
        question is embedded beside it (a SciFact search 5.48-5.61 ms against 5.64-6.09).
        """
        depth = min(depth, self.size if allowed is None else int(np.count_nonzero(allowed)))
        if depth <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        found = self._best_rows(query, depth=depth, allowed=allowed)
        if len(found.rows) == depth:
            return found.rows, found.scores
        # Fewer rows hold a query word than were asked for: the first others follow, scoring 0.
        unscored = np.ones(self.size, dtype=bool) if allowed is None else np.array(allowed, dtype=bool)
        unscored[found.rows] = False
        rows = np.concatenate([found.rows, np.flatnonzero(unscored)[: depth - len(found.rows)]])
        return rows, np.concatenate([found.scores, np.zeros(len(rows) - len(found.rows), dtype=np.float32)])

    def _best_rows(self, query: str, *, depth: int, allowed: np.ndarray | None) -> TopRows:
        """The MaxScore kernel's answer: the best rows of positive score, without the zero-score ones."""
        return best_rows(
            self._query_terms(query),
            postings=self._rows,
            frequencies=self._frequencies,
            norms=self._norms,
            depth=depth,
            allowed=allowed,
            slack=SLACK,
        )

    def _query_terms(self, query: str) -> QueryTerms:
        """The query's terms as the MaxScore kernel takes them: arrays in query order (read-only)."""
        found = self._recent_terms.get(query)
        if found is not None:
            return found
        terms = self._terms(query)
        found = QueryTerms(
            starts=np.array([term.start for term in terms], dtype=np.int64),
            ends=np.array([term.end for term in terms], dtype=np.int64),
            weights=np.array([term.weight for term in terms], dtype=np.float64),
            bounds=np.array([term.bound for term in terms], dtype=np.float64),
        )
        for array in (found.starts, found.ends, found.weights, found.bounds):
            array.flags.writeable = False  # shared by the searches that ask the same query
        if len(self._recent_terms) >= RECENT_QUERIES:
            self._recent_terms.clear()
        self._recent_terms[query] = found
        return found

    def _terms(self, query: str) -> list[_Term]:
        """The query's known tokens, each once with its weight, in the order the query first names them."""
        counts: dict[int, int] = {}
        for token in query_tokens(query):
            token_id = self._ids.get(token)
            if token_id is not None:
                counts[token_id] = counts.get(token_id, 0) + 1
        terms = []
        for token_id, times in counts.items():
            start, end = int(self.offsets_of[token_id]), int(self.offsets_of[token_id + 1])
            weight = times * idf(end - start, self.size)
            terms.append(_Term(start, end, weight, weight * float(self._max_impacts[token_id])))
        return terms

    def _contributions(self, term: _Term, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The (allowed) rows holding ``term`` and what it adds to each one's score."""
        rows = self._rows[term.start : term.end]
        frequencies = self._frequencies[term.start : term.end]
        if allowed is not None:
            keep = allowed[rows]
            rows, frequencies = rows[keep], frequencies[keep]
        return rows, impacts(term.weight, frequencies, self._norms[rows])

    # ------------------------------------------------------------------ contents

    def vocabulary(self) -> set[str]:
        """The tokens that occur in at least one row."""
        return set(self._vocabulary)

    # ------------------------------------------------------------------ files

    def save(self, directory: Path) -> None:
        """Write the index into ``directory``: a JSON header and vocabulary, and NumPy arrays."""
        directory.mkdir(parents=True, exist_ok=True)
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "k1": self.k1,
            "b": self.b,
            "rows": self.size,
            "tokens": len(self._vocabulary),
            "postings": len(self._rows),
            "total_length": int(self._lengths.sum()),
        }
        (directory / HEADER_FILE).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
        (directory / VOCABULARY_FILE).write_text(json.dumps(self._vocabulary, ensure_ascii=False), encoding="utf-8")
        arrays = (self.offsets_of, self._rows, self._frequencies, self._lengths, self._max_impacts)
        for name, array in zip(ARRAY_FILES, arrays, strict=True):
            np.save(directory / f"{name}.npy", np.asarray(array), allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> LexicalIndex:
        """Open a saved index, its arrays memory-mapped unless ``mmap`` is false.

        A missing, damaged or foreign file raises ``OSError``, ``ValueError`` or ``KeyError``.
        """
        header = json.loads((directory / HEADER_FILE).read_text(encoding="utf-8"))
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory} holds no {FORMAT_NAME} index of version {FORMAT_VERSION}")
        vocabulary = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        # np.asarray: plain arrays over the mapped memory (np.memmap's slicing costs microseconds a call)
        arrays = {
            name: np.asarray(np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False))
            for name in ARRAY_FILES
        }
        check_saved(header, vocabulary, arrays)
        return cls(
            vocabulary,
            arrays["offsets"],
            arrays["rows"],
            arrays["frequencies"],
            arrays["lengths"],
            k1=float(header["k1"]),
            b=float(header["b"]),
            max_impacts=arrays["max_impacts"],
        )


def check_saved(header: dict[str, Any], vocabulary: object, arrays: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless the saved parts fit together (sizes, types, order); reads no postings."""
    offsets, lengths = arrays["offsets"], arrays["lengths"]
    tokens = len(vocabulary) if isinstance(vocabulary, list) else -1
    problems = {
        "the vocabulary is not a sorted list of distinct strings": not (
            isinstance(vocabulary, list)
            and all(isinstance(token, str) for token in vocabulary)
            and all(a < b for a, b in itertools.pairwise(vocabulary))
        ),
        "an array has the wrong type": (
            offsets.dtype != np.int64
            or arrays["rows"].dtype != np.int32
            or arrays["frequencies"].dtype not in (np.uint16, np.uint32)
            or lengths.dtype != np.int32
            or arrays["max_impacts"].dtype != np.float64
        ),
        "the array sizes disagree": (
            offsets.shape != (tokens + 1,)
            or arrays["max_impacts"].shape != (tokens,)
            or arrays["rows"].shape != (header["postings"],)
            or arrays["frequencies"].shape != (header["postings"],)
            or lengths.shape != (header["rows"],)
            or tokens != header["tokens"]
        ),
        "the offsets are not those of the postings": (
            len(offsets) == 0
            or offsets[0] != 0
            or offsets[-1] != header["postings"]
            or bool((np.diff(offsets) <= 0).any())
        ),
        "the row lengths do not add up": int(lengths.sum()) != header["total_length"],
    }
    for problem, found in problems.items():
        if found:
            raise ValueError(f"damaged BM25 index: {problem}")


# ---------------------------------------------------------------- scoring


def idf(document_frequency: int, rows: int) -> float:
    """Lucene's idf: ln(1 + (N - df + 0.5) / (df + 0.5)), always positive."""
    return math.log(1 + (rows - document_frequency + 0.5) / (document_frequency + 0.5))


def length_norms(lengths: np.ndarray, *, k1: float, b: float) -> np.ndarray:
    """k1 * (1 - b + b * dl / avgdl) of each row, in float64."""
    total = int(lengths.sum())
    average = total / len(lengths) if total else 1.0  # no tokens: no norm is ever used
    return k1 * (1 - b + b * np.asarray(lengths, dtype=np.float64) / average)


def impacts(weight: float, frequencies: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """The contributions ``weight * tf / (tf + norm)`` in float64: the one formula every path scores with."""
    tf = np.asarray(frequencies, dtype=np.float64)
    contributions: np.ndarray = weight * tf / (tf + norms)
    return contributions


def largest_impacts(offsets: np.ndarray, rows: np.ndarray, frequencies: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Each token's largest tf / (tf + norm), a few million postings at a time."""
    tokens = len(offsets) - 1
    largest = np.zeros(tokens, dtype=np.float64)
    first = 0
    while first < tokens:
        last = max(first + 1, int(np.searchsorted(offsets, offsets[first] + IMPACT_BLOCK, side="right")) - 1)
        start, end = int(offsets[first]), int(offsets[last])
        values = impacts(1.0, frequencies[start:end], norms[rows[start:end]])
        largest[first:last] = np.maximum.reduceat(values, np.asarray(offsets[first:last]) - start)
        first = last
    return largest


# ---------------------------------------------------------------- building


def tokenized_postings(texts: list[str], vocabulary: dict[str, int], first_row: int) -> tuple[Postings, np.ndarray]:
    """The postings of ``texts`` (rows from ``first_row``) and their lengths.

    Token ids are those of ``vocabulary``, which gains the tokens it lacked.
    """
    ids, local = _bm25s_tokenize(texts, return_ids=True)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    to_global = np.zeros(len(local), dtype=np.int64)
    for token, local_id in local.items():
        to_global[local_id] = vocabulary.setdefault(token, len(vocabulary))
    rows = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
    # One key per (token, row) pair: sorting them groups the postings and counts each frequency.
    width = max(len(ids), 1)
    keys, frequencies = np.unique(to_global[flat] * width + rows, return_counts=True)
    return Postings(keys // width, keys % width + first_row, frequencies), lengths.astype(np.int32)


def top_rows(scores: np.ndarray, depth: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best-scoring rows (among ``allowed`` ones) and their scores, best first.

    Ties go to the earlier row.
    """
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    depth = min(depth, int(np.isfinite(scores).sum()))
    if depth <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    # Partitioning is linear; only the rows tied at the cut-off need choosing by row order.
    cutoff = -np.partition(-scores, depth - 1)[depth - 1]
    above = np.flatnonzero(scores > cutoff)
    tied = np.flatnonzero(scores == cutoff)[: depth - len(above)]
    candidates = np.concatenate([above, tied])
    rows = candidates[np.lexsort((candidates, -scores[candidates]))]
    return rows, scores[rows]
