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
from qa.lexical import DEFAULT_B, DEFAULT_K1, LexicalIndex, tokenize

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
    monkeypatch.setattr("qa.lexical.MMAP_ROWS", 3)
    mapped = LexicalIndex.load(tmp_path)
    assert isinstance(mapped._retriever.scores["data"], np.memmap)  # type: ignore[union-attr]
    np.testing.assert_allclose(mapped.scores("river"), index.scores("river"))
