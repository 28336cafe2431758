"""The compiled MaxScore kernel against brute force: the same rows and float32 scores as ``top_rows(scores(...))``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.index.lexical import LexicalIndex, top_rows
from qa.index.maxscore import TopRows

# Few distinct words and short texts: many rows with the very same score (float32 ties).
WORDS = ["river", "army", "border", "school", "money", "court", "bridge", "the"]


def kernel_top(index: LexicalIndex, query: str, depth: int, allowed: np.ndarray | None) -> TopRows:
    return index._best_rows(query, depth=depth, allowed=allowed)


def assert_exact(index: LexicalIndex, query: str, depth: int, allowed: np.ndarray | None) -> TopRows:
    """The kernel's rows are brute force's rows of positive score; ``top`` adds the zero-score ones."""
    full = index.scores(query)
    want_rows, want_scores = top_rows(full, depth, allowed)
    found = kernel_top(index, query, depth, allowed)
    positive = want_scores > 0
    assert found.rows.tolist() == want_rows[positive].tolist(), (query, depth)
    assert np.array_equal(found.scores, want_scores[positive])
    rows, scores = index.top(query, depth=depth, allowed=allowed)
    assert np.array_equal(rows, want_rows) and np.array_equal(scores, want_scores)
    return found


def masks(size: int) -> st.SearchStrategy[np.ndarray | None]:
    booleans = st.lists(st.booleans(), min_size=size, max_size=size).map(lambda values: np.array(values, dtype=bool))
    sparse = st.integers(0, 2**32 - 1).map(lambda seed: np.random.default_rng(seed).random(size) < 0.03)
    return st.none() | st.just(np.zeros(size, dtype=bool)) | st.just(np.ones(size, dtype=bool)) | booleans | sparse


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join), min_size=1, max_size=60),
    query=st.lists(st.sampled_from([*WORDS, "zebra"]), min_size=1, max_size=6).map(" ".join),
    depth=st.integers(1, 80),
    data=st.data(),
)
def test_kernel_equals_brute_force_on_random_corpora(
    texts: list[str], query: str, depth: int, data: st.DataObject
) -> None:
    index = LexicalIndex.build(texts + texts)  # every text twice: ties between rows at least
    allowed = data.draw(masks(index.size))
    depth = min(depth, index.size if allowed is None else int(allowed.sum())) or 1
    assert_exact(index, query, depth, allowed)


def test_single_term_repeated_words_and_depth_beyond_the_matching_rows() -> None:
    index = LexicalIndex.build(["river", "river river", "army", "", "river army", "the"] * 30)
    for query in ["river", "river river river", "army river army", "zebra", "the"]:
        for depth in (1, 5, 61, 150, index.size):
            for allowed in (None, np.arange(index.size) % 7 == 0, np.zeros(index.size, dtype=bool)):
                if allowed is not None and not allowed.any():
                    assert kernel_top(index, query, depth, allowed).rows.size == 0
                    continue
                assert_exact(index, query, min(depth, index.size if allowed is None else int(allowed.sum())), allowed)


def test_the_kernel_prunes_on_a_corpus_large_enough_and_stays_exact() -> None:
    # Zipf-distributed words over 20,000 rows: common words with long postings beside rare ones,
    # more postings than the seed walk takes, so the main walk probes the common words.
    rng = np.random.default_rng(7)
    vocabulary = [f"w{i}" for i in range(300)]
    weights = 1 / np.arange(1, 301)
    texts = [
        " ".join(rng.choice(vocabulary, size=int(rng.integers(3, 30)), p=weights / weights.sum()))
        for _ in range(20_000)
    ]
    index = LexicalIndex.build(texts)
    queries = [" ".join(rng.choice(vocabulary[:40], size=int(rng.integers(2, 7)))) for _ in range(20)]
    queries += ["w0 w1 w2 w150", "w0 w0 w299"]
    pruned = 0
    for query in queries:
        for allowed in (None, rng.random(index.size) < 0.05):
            found = assert_exact(index, query, 100, allowed)
            holding = int(np.count_nonzero(index.scores(query) > 0))
            pruned += allowed is None and found.fully_scored < holding
    # Most unfiltered searches score fewer rows than hold a query word. (Under this filter the allowed
    # postings are fewer than the first walk takes: it scores them all.)
    assert pruned >= 3 * len(queries) // 4, pruned
