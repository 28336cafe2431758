"""LexicalIndex and tokenize: BM25 scores against an independent reference, tokens, save/load."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from conftest import CORPUS
from qa.index.lexical import DEFAULT_B, DEFAULT_K1, LexicalIndex, tokenize, top_rows

# Content words (some inflected, so stemming merges them), stop words, and words no text uses.
CONTENT_WORDS = [
    "defector",
    "defectors",
    "defected",
    "family",
    "families",
    "border",
    "borders",
    "regime",
    "money",
    "school",
    "schools",
    "river",
    "bridge",
    "army",
    "letter",
    "letters",
    "phone",
    "market",
    "court",
    "prison",
    "running",
    "runs",
    "smuggled",
    "smuggling",
]
STOP_WORDS = ["the", "and", "of", "to", "a", "in", "is", "was", "with", "they"]
UNKNOWN_WORDS = ["zebra", "quantum", "saxophone"]
PARAMETERS = [(DEFAULT_K1, DEFAULT_B), (1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (1.5, 0.0), (0.5, 0.3)]


def random_texts(seed: int, count: int) -> list[str]:
    """Short texts of content and stop words; a few hold only stop words or nothing at all."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.05:
            texts.append("")
        elif kind < 0.1:
            texts.append(" ".join(rng.choice(STOP_WORDS, size=int(rng.integers(1, 4)))))
        else:
            words = rng.choice(CONTENT_WORDS + STOP_WORDS, size=int(rng.integers(1, 25)))
            texts.append(" ".join(str(word).capitalize() if rng.random() < 0.2 else str(word) for word in words) + ".")
    return texts


def random_queries(seed: int, count: int) -> list[str]:
    """Queries with repeated words, stop words and unknown words mixed in."""
    rng = np.random.default_rng(seed + 1000)
    vocabulary = CONTENT_WORDS + STOP_WORDS + UNKNOWN_WORDS
    return [" ".join(rng.choice(vocabulary, size=int(rng.integers(1, 7)))) for _ in range(count)]


def corpus_paragraphs() -> list[str]:
    """The paragraphs (blank-line separated blocks) of the real corpus files."""
    paragraphs = []
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        paragraphs += [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]
    return paragraphs


def reference_bm25(documents: list[list[str]], query: list[str], *, k1: float, b: float) -> np.ndarray:
    """Lucene BM25, written out term by term in plain Python (float64).

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) and the term-frequency part is
    tf / (tf + k1 * (1 - b + b * dl / avgdl)). This is Lucene's BM25Similarity
    since Lucene 8 (LUCENE-8563), which bm25s's "lucene" method follows: the
    classic ``(k1 + 1)`` factor in the numerator is left out. It is a constant
    factor for given k1, so it changes no ranking and no min-max-scaled fusion.
    (Checked: bm25s's scores are exactly the classic ones divided by k1 + 1.)

    Query terms count with their multiplicity: a term written twice in the
    query adds its contribution twice. That is what bm25s does (checked
    empirically in ``test_a_repeated_query_word_counts_once_per_occurrence``).
    """
    count = len(documents)
    average_length = sum(len(document) for document in documents) / count
    document_frequency = Counter(term for document in documents for term in set(document))
    scores = np.zeros(count, dtype=np.float64)
    for row, document in enumerate(documents):
        frequencies = Counter(document)
        length_norm = k1 * (1 - b + b * len(document) / average_length)
        for term in query:
            tf = frequencies[term]
            if tf == 0:
                continue
            df = document_frequency[term]
            idf = math.log(1 + (count - df + 0.5) / (df + 0.5))
            scores[row] += idf * tf / (tf + length_norm)
    return scores


def assert_matches_reference(texts: list[str], queries: list[str], *, k1: float, b: float) -> None:
    index = LexicalIndex.build(texts, k1=k1, b=b)
    documents = tokenize(texts)
    for query in queries:
        [query_tokens] = tokenize([query])
        expected = reference_bm25(documents, query_tokens, k1=k1, b=b)
        actual = index.scores(query)
        assert actual.shape == (len(texts),)
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=0, err_msg=f"query {query!r}")


@pytest.mark.parametrize(("k1", "b"), PARAMETERS)
@pytest.mark.parametrize("seed", range(4))
def test_scores_agree_with_reference_bm25_on_random_corpora(seed: int, k1: float, b: float) -> None:
    texts = random_texts(seed, count=int(np.random.default_rng(seed).integers(5, 40)))
    queries = random_queries(seed, count=20)
    assert_matches_reference(texts, queries, k1=k1, b=b)


@pytest.mark.parametrize(("k1", "b"), PARAMETERS)
def test_scores_agree_with_reference_bm25_on_the_real_corpus(k1: float, b: float) -> None:
    texts = corpus_paragraphs()
    assert len(texts) > 20
    queries = [
        "Why do North Korean defectors flee back to the destitute North?",
        "Kim Yo Jong orders encouragement for defector families",
        "state organs repatriate defectors",
        "press conference in Pyongyang",
        "Kim Kim Kim Jong Un",
        "money money family",
    ]
    assert_matches_reference(texts, queries, k1=k1, b=b)


def test_default_parameters_are_lucene_defaults() -> None:
    texts = random_texts(7, count=20)
    queries = random_queries(7, count=10)
    default = LexicalIndex.build(texts)
    explicit = LexicalIndex.build(texts, k1=1.5, b=0.75)
    for query in queries:
        np.testing.assert_array_equal(default.scores(query), explicit.scores(query))
    assert_matches_reference(texts, queries, k1=1.5, b=0.75)


def test_a_hand_worked_example() -> None:
    # Tokens: [river, bridg, river], [bridg, armi], [money]; N = 3, avgdl = (3 + 2 + 1) / 3 = 2.
    # "river": df = 1, idf = ln(1 + 2.5 / 1.5) = ln(8 / 3); in row 0 tf = 2, dl = 3, so with k1 = 1.2, b = 0.75
    # the length norm is 1.2 * (0.25 + 0.75 * 3 / 2) = 1.65 and the score ln(8 / 3) * 2 / (2 + 1.65).
    # The textbook formula would multiply that by k1 + 1 = 2.2; Lucene >= 8 and bm25s do not.
    index = LexicalIndex.build(["river bridge river", "bridge army", "money"], k1=1.2, b=0.75)
    np.testing.assert_allclose(index.scores("river"), [math.log(8 / 3) * 2 / 3.65, 0, 0], rtol=1e-6)
    # "bridge": df = 2, idf = ln(1 + 1.5 / 2.5) = ln(1.6); row 1 has tf = 1, dl = 2: norm 1.2 * (0.25 + 0.75) = 1.2.
    np.testing.assert_allclose(
        index.scores("bridge"), [math.log(1.6) / (1 + 1.65), math.log(1.6) / (1 + 1.2), 0], rtol=1e-6
    )


def test_a_repeated_query_word_counts_once_per_occurrence() -> None:
    index = LexicalIndex.build(["river bridge", "river river army", "money market"])
    once = index.scores("river")
    assert once[0] > 0 and once[1] > 0
    np.testing.assert_allclose(index.scores("river river"), 2 * once, rtol=1e-6)
    np.testing.assert_allclose(index.scores("rivers river army"), 2 * once + index.scores("army"), rtol=1e-6)


def test_unknown_query_words_score_zero() -> None:
    texts = random_texts(3, count=15)
    index = LexicalIndex.build(texts)
    for query in ["zebra quantum saxophone", "", "the and of", "zebra the"]:
        scores = index.scores(query)
        assert scores.shape == (len(texts),)
        assert not scores.any()


def test_scores_are_zero_exactly_where_no_query_word_occurs() -> None:
    texts = ["river bridge", "army market", "the rivers flow", "nothing here matches"]
    scores = LexicalIndex.build(texts).scores("river zebra")
    assert [bool(score > 0) for score in scores] == [True, False, True, False]


def test_texts_without_any_token_still_build_an_index_that_scores_zero() -> None:
    texts = ["The", "and of it", ""]
    index = LexicalIndex.build(texts)
    assert index.size == 3
    assert index.vocabulary() == set()
    assert not index.scores("river the").any()


def test_empty_index_gives_empty_scores(tmp_path: Path) -> None:
    index = LexicalIndex.build([])
    assert index.size == 0
    assert index.scores("river").shape == (0,)
    assert index.vocabulary() == set()
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    assert loaded.size == 0
    assert loaded.scores("river").shape == (0,)


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip_gives_identical_scores(tmp_path: Path, mmap: bool) -> None:
    texts = random_texts(11, count=30) + corpus_paragraphs()
    index = LexicalIndex.build(texts, k1=1.2, b=0.6)
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25", mmap=mmap)
    assert loaded.size == index.size == len(texts)
    assert loaded.vocabulary() == index.vocabulary()
    for query in [*random_queries(11, count=15), "defectors return to Pyongyang", "zebra"]:
        np.testing.assert_array_equal(loaded.scores(query), index.scores(query))


def test_saved_files_hold_no_pickle(tmp_path: Path) -> None:
    directory = tmp_path / "bm25"
    LexicalIndex.build(random_texts(5, count=20)).save(directory)
    files = [path for path in directory.rglob("*") if path.is_file()]
    assert not [path for path in files if path.suffix in {".pkl", ".pickle", ".joblib"}]
    arrays = [path for path in files if path.suffix == ".npy"]
    assert arrays
    for path in arrays:
        array = np.load(path, allow_pickle=False)
        assert array.dtype != object
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        # A pickle stream (protocol 2+) starts with the PROTO opcode 0x80.
        assert not path.read_bytes().startswith(b"\x80"), path.name


@pytest.mark.parametrize("seed", range(3))
def test_vocabulary_holds_exactly_the_tokens_of_the_texts(seed: int) -> None:
    texts = random_texts(seed, count=25)
    expected = {token for tokens in tokenize(texts) for token in tokens}
    assert LexicalIndex.build(texts).vocabulary() == expected


def test_vocabulary_of_the_real_corpus() -> None:
    texts = corpus_paragraphs()
    assert LexicalIndex.build(texts).vocabulary() == {token for tokens in tokenize(texts) for token in tokens}


def test_tokenize_returns_one_list_per_text() -> None:
    tokens = tokenize(["river bridge", "", "the"])
    assert tokens == [tokens[0], [], []]
    assert len(tokens[0]) == 2


def test_tokenize_lower_cases() -> None:
    assert tokenize(["DEFECTOR River MARKET"]) == tokenize(["defector river market"])
    [tokens] = tokenize(["Pyongyang BORDER Guards"])
    assert tokens and all(token == token.lower() for token in tokens)


def test_tokenize_removes_english_stop_words() -> None:
    assert tokenize([" ".join(STOPWORDS_EN)]) == [[]]
    assert tokenize(["The river and the bridge of the army"]) == tokenize(["river bridge army"])


def test_tokenize_stems() -> None:
    assert tokenize(["defectors"]) == tokenize(["defector"])
    assert tokenize(["running"]) == [["run"]]
    assert tokenize(["families"]) == tokenize(["family"])


def test_tokenize_matches_snowball_stems_of_lower_cased_words() -> None:
    stemmer = Stemmer.Stemmer("english")
    words = ["Defectors", "RUNNING", "smuggled", "Families", "borders", "Regime", "letters"]
    assert tokenize([" ".join(words)]) == [[stemmer.stemWord(word.lower()) for word in words]]


def test_large_indexes_are_memory_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = LexicalIndex.build(["river bank", "money bank", "river fish"])
    index.save(tmp_path)
    assert not isinstance(LexicalIndex.load(tmp_path)._retriever.scores["data"], np.memmap)  # type: ignore[union-attr]
    monkeypatch.setattr("qa.index.lexical.MMAP_ROWS", 3)
    mapped = LexicalIndex.load(tmp_path)
    assert isinstance(mapped._retriever.scores["data"], np.memmap)  # type: ignore[union-attr]
    np.testing.assert_allclose(mapped.scores("river"), index.scores("river"))


# ---------------------------------------------------------------- scores of given rows


def row_subsets(rng: np.random.Generator, size: int) -> list[np.ndarray]:
    """Rows to score: every row, a shuffled subset, repeats, one row, and none."""
    subsets = [np.arange(size), np.zeros(0, dtype=np.int64)]
    if size:
        subsets += [
            rng.permutation(size)[: int(rng.integers(1, size + 1))],
            rng.integers(0, size, size=2 * size),  # repeated rows, in any order
            np.array([size - 1]),
            np.array([0, 0]),
        ]
    return subsets


def assert_scores_of_match(index: LexicalIndex, queries: list[str], rng: np.random.Generator) -> None:
    for query in queries:
        full = index.scores(query)
        for rows in row_subsets(rng, index.size):
            scored = index.scores_of(query, rows)
            assert scored.dtype == np.float32 and scored.shape == rows.shape
            assert np.array_equal(scored, full[rows]), f"query {query!r}, rows {rows.tolist()}"


# Repeated words, stop words and words no text holds, next to the random queries.
AWKWARD_QUERIES = ["river river river", "defectors defector", "zebra", "", "the and of", "zebra river the river"]


@pytest.mark.parametrize("seed", range(6))
def test_scores_of_rows_equal_the_full_scores_at_those_rows_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    texts = random_texts(seed, count=int(rng.integers(5, 60)))
    index = LexicalIndex.build(texts, k1=float(rng.uniform(0.5, 2.0)), b=float(rng.uniform(0, 1)))
    assert_scores_of_match(index, random_queries(seed, count=25) + AWKWARD_QUERIES, rng)


def test_scores_of_rows_on_the_real_corpus() -> None:
    index = LexicalIndex.build(corpus_paragraphs())
    queries = ["Why do North Korean defectors flee back to the destitute North?", "Kim Kim Kim Jong Un", "zebra"]
    assert_scores_of_match(index, queries, np.random.default_rng(0))


@pytest.mark.parametrize("mmap", [False, True])
def test_scores_of_rows_of_a_loaded_index_are_those_of_the_built_one(tmp_path: Path, mmap: bool) -> None:
    texts = random_texts(21, count=40)
    index = LexicalIndex.build(texts)
    index.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25", mmap=mmap)
    rng = np.random.default_rng(21)
    for query in [*random_queries(21, count=10), *AWKWARD_QUERIES]:
        for rows in row_subsets(rng, len(texts)):
            assert np.array_equal(loaded.scores_of(query, rows), index.scores(query)[rows])


@pytest.mark.parametrize("texts", [["The", "and of it", ""], []], ids=["no tokens", "no rows"])
def test_scores_of_rows_without_a_vocabulary_are_zero(texts: list[str]) -> None:
    index = LexicalIndex.build(texts)
    for query in ["river", "river river zebra", "the", ""]:
        for rows in row_subsets(np.random.default_rng(1), len(texts)):
            scored = index.scores_of(query, rows)
            assert scored.shape == rows.shape and not scored.any()
            assert np.array_equal(scored, index.scores(query)[rows])


# ---------------------------------------------------------------- best rows


def brute_force_top(scores: np.ndarray, depth: int, allowed: np.ndarray | None) -> list[int]:
    """The allowed rows sorted by score, best first, ties by row, cut at ``depth``."""
    rows = [row for row in range(len(scores)) if allowed is None or allowed[row]]
    return sorted(rows, key=lambda row: (-float(scores[row]), row))[: max(depth, 0)]


def allowed_masks(rng: np.random.Generator, size: int) -> list[np.ndarray | None]:
    return [None, rng.random(size) < 0.5, np.zeros(size, dtype=bool), np.ones(size, dtype=bool)]


@pytest.mark.parametrize("seed", range(5))
def test_top_agrees_with_a_brute_force_sort_ties_by_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    texts = random_texts(seed, count=int(rng.integers(5, 50)))
    texts += texts[:3]  # identical texts: ties with positive scores
    index = LexicalIndex.build(texts)
    for query in [*random_queries(seed, count=10), *AWKWARD_QUERIES]:
        full = index.scores(query)
        for allowed in allowed_masks(rng, len(texts)):
            for depth in (0, 1, 3, len(texts) // 2, len(texts), len(texts) + 5):
                rows, scores = index.top(query, depth=depth, allowed=allowed)
                assert rows.tolist() == brute_force_top(full, depth, allowed), (query, depth)
                assert np.array_equal(scores, full[rows])


def test_top_of_an_index_without_a_vocabulary_is_every_allowed_row_in_order() -> None:
    index = LexicalIndex.build(["The", "and of it", "", "with"])
    rows, scores = index.top("river", depth=3, allowed=None)
    assert rows.tolist() == [0, 1, 2] and not scores.any()
    rows, _ = index.top("river", depth=10, allowed=np.array([False, True, False, True]))
    assert rows.tolist() == [1, 3]
    assert LexicalIndex.build([]).top("river", depth=5, allowed=None)[0].size == 0


@pytest.mark.parametrize("seed", range(5))
def test_top_rows_agrees_with_a_brute_force_sort_on_tied_float32_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=int(rng.integers(1, 80))).astype(np.float32) / 4  # many ties
    for allowed in allowed_masks(rng, len(scores)):
        for depth in (0, 1, 2, 7, len(scores), len(scores) + 3):
            rows, found = top_rows(scores, depth, allowed)
            assert rows.tolist() == brute_force_top(scores, depth, allowed)
            assert np.array_equal(found, scores[rows])
