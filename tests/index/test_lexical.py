"""LexicalIndex and tokenize: BM25 scores against an independent reference, tokens, save/load."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import bm25s
import numpy as np
import pytest
import Stemmer
from bm25s.stopwords import STOPWORDS_EN
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_loaded_arrays_are_memory_mapped(tmp_path: Path) -> None:
    LexicalIndex.build(["river bank", "money bank", "river fish"]).save(tmp_path)
    mapped = LexicalIndex.load(tmp_path)
    assert isinstance(mapped._rows.base, np.memmap)
    assert not isinstance(LexicalIndex.load(tmp_path, mmap=False)._rows.base, np.memmap)


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


def test_a_query_is_tokenized_once_for_its_best_rows_and_the_scores_of_other_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qa.index import lexical

    index = LexicalIndex.build(corpus_paragraphs())
    asked: Counter[str] = Counter()
    tokens = lexical.query_tokens
    monkeypatch.setattr(lexical, "query_tokens", lambda query: asked.update([query]) or tokens(query))
    query = "Why do defectors return?"
    index.top(query, depth=10, allowed=None)
    index.scores_of(query, np.arange(index.size))
    assert asked[query] == 1


def test_more_queries_than_an_index_keeps_the_terms_of_still_score_exactly() -> None:
    from qa.index.lexical import RECENT_QUERIES

    index = LexicalIndex.build(corpus_paragraphs())
    rows = np.arange(index.size)
    words = ["defectors", "return", "Pyongyang", "families", "money", "China", "broker", "prison"]
    queries = [f"{words[i % 8]} {words[(i * 3 + 1) % 8]} {i}" for i in range(3 * RECENT_QUERIES)]
    for query in [*queries, *reversed(queries)]:  # kept, forgotten and worked out again
        assert np.array_equal(index.scores_of(query, rows), index.scores(query)), query


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


def test_top_prunes_exactly_on_a_corpus_large_enough_to_prune() -> None:
    # Thousands of rows made of the real corpus's sentences: common and rare words, long and short rows,
    # so the threshold, the essential split and the row pruning all come into play.
    rng = np.random.default_rng(5)
    sentences = [s for p in corpus_paragraphs() for s in re.split(r"(?<=[.!?])\s+", p) if s]
    texts = [" ".join(rng.choice(sentences, size=int(rng.integers(1, 5)))) for _ in range(3000)]
    index = LexicalIndex.build(texts)
    queries = [str(rng.choice(sentences)) for _ in range(25)] + ["Kim Kim Jong Un defectors", "the", "zebra north"]
    for query in queries:
        full = index.scores(query)
        for allowed in [None, rng.random(len(texts)) < 0.3, rng.random(len(texts)) < 0.01]:
            for depth in (1, 10, 100):
                rows, scores = index.top(query, depth=depth, allowed=allowed)
                assert np.array_equal(rows, top_rows(full, depth, allowed)[0]), (query, depth)
                assert np.array_equal(scores, full[rows])


# ---------------------------------------------------------------- bm25s as the reference


def bm25s_scores(texts: list[str], query: str, *, k1: float, b: float) -> np.ndarray:
    """Scores of bm25s's "lucene" BM25 (the implementation qa used before), with the same tokens."""
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(tokenize(texts), show_progress=False)
    ids = [retriever.vocab_dict[token] for token in tokenize([query])[0] if token in retriever.vocab_dict]
    return np.asarray(retriever.get_scores(ids), dtype=np.float32) if ids else np.zeros(len(texts), dtype=np.float32)


WORDS = st.sampled_from(CONTENT_WORDS + STOP_WORDS)
TEXTS = st.lists(st.lists(WORDS, max_size=20).map(" ".join), min_size=1, max_size=30)
QUERIES = st.lists(st.sampled_from(CONTENT_WORDS + STOP_WORDS + UNKNOWN_WORDS), max_size=6).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(texts=TEXTS, queries=st.lists(QUERIES, min_size=1, max_size=5), k1=st.floats(0.3, 2.5), b=st.floats(0, 1))
def test_scores_equal_bm25s_on_random_corpora(texts: list[str], queries: list[str], k1: float, b: float) -> None:
    index = LexicalIndex.build(texts, k1=k1, b=b)
    if not index.vocabulary():
        return  # bm25s cannot index texts without a token; the zero cases are tested on their own
    for query in queries:
        np.testing.assert_allclose(index.scores(query), bm25s_scores(texts, query, k1=k1, b=b), rtol=1e-5, atol=1e-7)


def test_scores_equal_bm25s_on_the_real_corpus() -> None:
    texts = corpus_paragraphs()
    index = LexicalIndex.build(texts)
    for query in ["Why do North Korean defectors flee back?", "Kim Kim Kim Jong Un", "press conference Pyongyang"]:
        expected = bm25s_scores(texts, query, k1=DEFAULT_K1, b=DEFAULT_B)
        assert expected.any()
        np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(texts=TEXTS, query=QUERIES, depth=st.integers(0, 35), data=st.data())
def test_top_equals_exhaustive_scoring_on_random_corpora(
    texts: list[str], query: str, depth: int, data: st.DataObject
) -> None:
    texts = texts + texts[: len(texts) // 2]  # repeated texts: ties
    index = LexicalIndex.build(texts)
    full = index.scores(query)
    allowed = data.draw(st.none() | st.lists(st.booleans(), min_size=len(texts), max_size=len(texts)).map(np.array))
    rows, scores = index.top(query, depth=depth, allowed=allowed)
    assert rows.tolist() == brute_force_top(full, depth, allowed)
    assert np.array_equal(scores, full[rows])


# ---------------------------------------------------------------- updates


def assert_same_index(updated: LexicalIndex, built: LexicalIndex, queries: list[str], tmp_path: Path) -> None:
    """Same size, vocabulary and scores, and the very same files once saved."""
    assert updated.size == built.size
    assert updated.vocabulary() == built.vocabulary()
    for query in queries:
        assert np.array_equal(updated.scores(query), built.scores(query)), query
    updated.save(tmp_path / "updated")
    built.save(tmp_path / "built")
    for path in sorted((tmp_path / "built").iterdir()):
        assert (tmp_path / "updated" / path.name).read_bytes() == path.read_bytes(), path.name


def apply_update(old_texts: list[str], sources: np.ndarray, fresh: list[str]) -> list[str]:
    fresh_iter = iter(fresh)
    return [old_texts[source] if source >= 0 else next(fresh_iter) for source in sources.tolist()]


@settings(max_examples=60, deadline=None)
@given(old=TEXTS, fresh_pool=TEXTS, data=st.data())
def test_updated_equals_a_build_of_the_new_texts(old: list[str], fresh_pool: list[str], data: st.DataObject) -> None:
    # Sources in any order, with repeats (an old row serving several new ones) and fresh rows anywhere.
    size = data.draw(st.integers(0, 40))
    sources = np.array(data.draw(st.lists(st.integers(-1, len(old) - 1), min_size=size, max_size=size)), dtype=np.int64)
    fresh = [fresh_pool[i % len(fresh_pool)] for i in range(int((sources < 0).sum()))]
    updated = LexicalIndex.build(old, k1=1.2, b=0.6).updated(sources, fresh)
    built = LexicalIndex.build(apply_update(old, sources, fresh), k1=1.2, b=0.6)
    assert updated.size == built.size == size
    assert updated.vocabulary() == built.vocabulary()
    for query in ["river family defectors", "border border money", "zebra", ""]:
        assert np.array_equal(updated.scores(query), built.scores(query)), query
        assert np.array_equal(updated.top(query, depth=5, allowed=None)[0], built.top(query, depth=5, allowed=None)[0])


@pytest.mark.parametrize("seed", range(4))
def test_updated_keeps_order_removes_and_appends_like_a_build(tmp_path: Path, seed: int) -> None:
    old = random_texts(seed, count=60) + corpus_paragraphs()
    rng = np.random.default_rng(seed)
    kept = np.sort(rng.choice(len(old), size=len(old) - 10, replace=False))
    sources = np.concatenate([kept[:20], [-1, -1], kept[20:], [-1] * 5])  # kept rows stay in order
    fresh = random_texts(seed + 50, count=7)
    updated = LexicalIndex.build(old).updated(sources, fresh)
    assert_same_index(
        updated, LexicalIndex.build(apply_update(old, sources, fresh)), random_queries(seed, 20), tmp_path
    )


def test_updated_drops_a_token_whose_rows_are_all_removed(tmp_path: Path) -> None:
    old = ["river bridge", "zebra crossing", "money river", "a zebra and a zebra", "bridge"]
    index = LexicalIndex.build(old)
    assert "zebra" in index.vocabulary()
    sources = np.array([0, 2, -1, 4])
    updated = index.updated(sources, ["army market"])
    assert "zebra" not in updated.vocabulary() and "cross" not in updated.vocabulary()
    assert {"armi", "market"} <= updated.vocabulary()
    assert not updated.scores("zebra").any()
    assert_same_index(
        updated, LexicalIndex.build(apply_update(old, sources, ["army market"])), ["zebra river"], tmp_path
    )
    assert index.vocabulary() >= {"zebra", "cross"}  # the old index is left as it was


def test_updated_reorders_and_repeats_rows(tmp_path: Path) -> None:
    old = random_texts(9, count=30)
    sources = np.array([5, 3, 3, -1, 29, 0, 5, -1, 12, 12, 12])
    fresh = ["river river defectors", "the and"]
    updated = LexicalIndex.build(old).updated(sources, fresh)
    assert_same_index(updated, LexicalIndex.build(apply_update(old, sources, fresh)), random_queries(9, 15), tmp_path)


@pytest.mark.parametrize(
    ("old", "sources", "fresh"),
    [
        ([], [], []),
        ([], [-1, -1], ["river", "the"]),
        (["river bank", "money"], [], []),
        (["river bank", "money"], [-1], ["and the of"]),
        (["the", "and"], [1, 0, -1], ["river"]),
    ],
    ids=["empty to empty", "empty to new", "all removed", "to stop words only", "from stop words only"],
)
def test_updated_from_and_to_empty_indexes(
    tmp_path: Path, old: list[str], sources: list[int], fresh: list[str]
) -> None:
    source_array = np.array(sources, dtype=np.int64)
    updated = LexicalIndex.build(old).updated(source_array, fresh)
    assert_same_index(updated, LexicalIndex.build(apply_update(old, source_array, fresh)), ["river", "the"], tmp_path)


@pytest.mark.parametrize(("sources", "fresh"), [([0, -1], []), ([0, 1], ["river"]), ([0, 2], [])])
def test_updated_refuses_sources_that_do_not_fit(sources: list[int], fresh: list[str]) -> None:
    with pytest.raises(ValueError, match="fresh text"):
        LexicalIndex.build(["river", "bank"]).updated(np.array(sources), fresh)


def test_updated_tokenizes_only_the_fresh_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    index = LexicalIndex.build(random_texts(4, count=20))
    seen: list[str] = []
    original = bm25s.tokenize

    def spy(texts: list[str], **options: object) -> object:
        seen.extend(texts)
        return original(texts, **options)

    monkeypatch.setattr(bm25s, "tokenize", spy)
    index.updated(np.array([3, -1, 7]), ["river money"])
    assert seen == ["river money"]


# ---------------------------------------------------------------- files


def test_saved_header_is_readable_json(tmp_path: Path) -> None:
    texts = ["river bridge river", "the", "money"]
    LexicalIndex.build(texts, k1=1.2, b=0.5).save(tmp_path)
    header = json.loads((tmp_path / "header.json").read_text(encoding="utf-8"))
    assert header == {
        "format": "qa-bm25",
        "version": 1,
        "k1": 1.2,
        "b": 0.5,
        "rows": 3,
        "tokens": 3,
        "postings": 3,
        "total_length": 4,
    }
    assert json.loads((tmp_path / "vocabulary.json").read_text(encoding="utf-8")) == ["bridg", "money", "river"]
    assert np.load(tmp_path / "offsets.npy").tolist() == [0, 1, 2, 3]
    assert np.load(tmp_path / "rows.npy").tolist() == [0, 2, 0]
    assert np.load(tmp_path / "frequencies.npy").tolist() == [1, 1, 2]
    assert np.load(tmp_path / "lengths.npy").tolist() == [3, 0, 1]


def damage(directory: Path, how: str) -> None:
    header = directory / "header.json"
    if how == "missing array":
        (directory / "rows.npy").unlink()
    elif how == "missing header":
        header.unlink()
    elif how == "truncated array":
        data = (directory / "rows.npy").read_bytes()
        (directory / "rows.npy").write_bytes(data[: len(data) - 4])
    elif how == "garbage array":
        (directory / "offsets.npy").write_bytes(b"not numpy at all")
    elif how == "wrong array type":
        np.save(directory / "lengths.npy", np.load(directory / "lengths.npy").astype(np.float64))
    elif how == "foreign header":
        header.write_text(json.dumps({"format": "bm25s", "version": 1}), encoding="utf-8")
    elif how == "newer version":
        header.write_text(header.read_text(encoding="utf-8").replace('"version": 1', '"version": 2'), encoding="utf-8")
    elif how == "header missing a field":
        fields = json.loads(header.read_text(encoding="utf-8"))
        del fields["postings"]
        header.write_text(json.dumps(fields), encoding="utf-8")
    elif how == "vocabulary of another index":
        (directory / "vocabulary.json").write_text(json.dumps(["zebra"]), encoding="utf-8")
    elif how == "unsorted vocabulary":
        vocabulary = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        (directory / "vocabulary.json").write_text(json.dumps(vocabulary[::-1]), encoding="utf-8")
    elif how == "row lengths changed":
        np.save(directory / "lengths.npy", np.load(directory / "lengths.npy") + 1)
    elif how == "bad json":
        header.write_text("{", encoding="utf-8")


DAMAGES = [
    "missing array",
    "missing header",
    "truncated array",
    "garbage array",
    "wrong array type",
    "foreign header",
    "newer version",
    "header missing a field",
    "vocabulary of another index",
    "unsorted vocabulary",
    "row lengths changed",
    "bad json",
]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("mmap", [False, True])
def test_a_damaged_or_foreign_index_is_refused(tmp_path: Path, how: str, mmap: bool) -> None:
    LexicalIndex.build(random_texts(2, count=20)).save(tmp_path)
    damage(tmp_path, how)
    with pytest.raises((ValueError, OSError, KeyError)):
        LexicalIndex.load(tmp_path, mmap=mmap)


def test_an_index_saved_by_bm25s_is_refused(tmp_path: Path) -> None:
    retriever = bm25s.BM25()
    retriever.index(tokenize(["river bank", "money bank"]), show_progress=False)
    retriever.save(str(tmp_path), allow_pickle=False, show_progress=False)
    with pytest.raises((ValueError, OSError, KeyError)):
        LexicalIndex.load(tmp_path)


# ---------------------------------------------------------------- nothing to find


@pytest.mark.parametrize("texts", [[], ["The", "and of it", ""]], ids=["no rows", "no tokens"])
def test_empty_indexes_answer_with_zeros_and_round_trip(tmp_path: Path, texts: list[str]) -> None:
    index = LexicalIndex.build(texts)
    index.save(tmp_path)
    for candidate in (index, LexicalIndex.load(tmp_path), LexicalIndex.load(tmp_path, mmap=False)):
        assert candidate.size == len(texts) and candidate.vocabulary() == set()
        assert not candidate.scores("river the").any() and candidate.scores("river").shape == (len(texts),)
        rows, scores = candidate.top("river", depth=2, allowed=None)
        assert rows.tolist() == list(range(min(2, len(texts)))) and not scores.any()


def test_a_query_without_a_known_token_gives_the_first_rows_with_zero_scores() -> None:
    index = LexicalIndex.build(["river bank", "money", "army"])
    for query in ["zebra", "", "the of"]:
        rows, scores = index.top(query, depth=2, allowed=np.array([False, True, True]))
        assert rows.tolist() == [1, 2] and scores.tolist() == [0.0, 0.0]
        assert not index.scores_of(query, np.array([0, 2])).any()
