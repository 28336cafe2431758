"""Folding near-duplicate passages: copies of one article show once, with every source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from conftest import WORDS as BASE_WORDS
from qa.records import Hit, Passage
from qa.search.duplicates import fold_duplicates, words_of

WORDS = [
    *BASE_WORDS,
    "soldier",
    "village",
    "train",
    "winter",
    "harvest",
    "radio",
    "smuggler",
    "broker",
    "factory",
    "police",
]


def words(seed: int, count: int = 100) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(word) for word in rng.choice(WORDS, size=count)]


def passage(text: str, source: str, number: int = 0) -> Passage:
    doc_id = source.removesuffix(".txt")
    return Passage(f"{doc_id}#{number}", doc_id, source, number + 1, 0, len(text), text, title=doc_id)


def hits_of(passages: list[Passage]) -> list[Hit]:
    return [
        Hit(rank=rank, score=1 / rank, passage=p, dense_rank=rank, bm25_rank=rank + 1)
        for rank, p in enumerate(passages, start=1)
    ]


def test_distinct_passages_are_untouched() -> None:
    passages = [passage(" ".join(words(seed)), f"doc{seed}.txt") for seed in range(6)]
    hits = hits_of(passages)
    assert fold_duplicates(hits) == hits


def test_an_exact_copy_from_another_source_folds_into_the_better_ranked() -> None:
    text = " ".join(words(1))
    passages = [passage(text, "a.txt"), passage(" ".join(words(2)), "b.txt"), passage(text, "c.txt")]
    hits = hits_of(passages)
    folded = fold_duplicates(hits)
    assert folded == [replace(hits[0], also_in=("c.txt",)), replace(hits[1], rank=2)]


def test_a_copy_differing_in_whitespace_case_and_punctuation_folds() -> None:
    original = words(3)
    reformatted = "\n\n".join(
        " ".join(word.upper() if i % 7 == 0 else word for i, word in enumerate(original[start : start + 20])) + ","
        for start in range(0, 100, 20)
    )
    passages = [
        passage(" ".join(words(4)), "x.txt"),
        passage(" ".join(original), "a.txt"),
        passage(reformatted, "b.txt"),
    ]
    folded = fold_duplicates(hits_of(passages))
    assert [(hit.rank, hit.passage.source, hit.also_in) for hit in folded] == [
        (1, "x.txt", ()),
        (2, "a.txt", ("b.txt",)),
    ]


def test_a_copy_with_one_word_changed_folds() -> None:
    # 100 words give 96 five-word shingles; changing word 50 changes the 5 shingles that hold it,
    # so Jaccard = 91 / 101 ≈ 0.90, above the 0.8 threshold.
    original = words(5)
    edited = [*original[:50], "zebra", *original[51:]]
    passages = [passage(" ".join(edited), "edited.txt"), passage(" ".join(original), "original.txt")]
    folded = fold_duplicates(hits_of(passages))
    assert [(hit.passage.source, hit.also_in) for hit in folded] == [("edited.txt", ("original.txt",))]


def test_passages_sharing_only_half_their_text_stay_apart() -> None:
    # First 50 words shared, last 50 different: 46 shared shingles of 96 + 96 - 46 = 146, Jaccard ≈ 0.32.
    shared = words(6, 50)
    passages = [passage(" ".join(shared + words(7, 50)), "a.txt"), passage(" ".join(shared + words(8, 50)), "b.txt")]
    hits = hits_of(passages)
    assert fold_duplicates(hits) == hits


def test_folding_keeps_order_and_renumbers_ranks() -> None:
    # Groups by seed; the hit list interleaves copies of three passages with two unique ones.
    layout = [(10, "a1.txt"), (11, "b1.txt"), (10, "a2.txt"), (12, "c1.txt"), (11, "b2.txt"), (13, "d1.txt")]
    layout += [(10, "a3.txt"), (14, "e1.txt"), (12, "c2.txt")]
    passages = [passage(" ".join(words(seed)), source) for seed, source in layout]
    hits = hits_of(passages)
    folded = fold_duplicates(hits)

    first_of: dict[int, int] = {}
    others: dict[int, list[str]] = {}
    for position, (seed, source) in enumerate(layout):
        if seed in first_of:
            others[seed].append(source)
        else:
            first_of[seed] = position
            others[seed] = []
    expected = [
        replace(hits[position], rank=rank, also_in=tuple(others[seed]))
        for rank, (seed, position) in enumerate(first_of.items(), start=1)
    ]
    assert folded == expected
    assert [hit.rank for hit in folded] == [1, 2, 3, 4, 5]


def test_also_in_names_each_other_source_once() -> None:
    text = " ".join(words(20))
    passages = [
        passage(text, "a.txt", 0),
        passage(text, "a.txt", 1),
        passage(text, "b.txt", 0),
        passage(text, "b.txt", 1),
    ]
    [hit] = fold_duplicates(hits_of(passages))
    assert (hit.passage.source, hit.also_in) == ("a.txt", ("b.txt",))


def test_folding_nothing_gives_nothing() -> None:
    assert fold_duplicates([]) == []
    assert fold_duplicates([], limit=3) == []


class CountingHits(list[Hit]):
    """A hit list that counts how many hits were drawn from it by iteration."""

    drawn = 0

    def __iter__(self) -> Iterator[Hit]:
        for hit in super().__iter__():
            self.drawn += 1
            yield hit


@given(st.lists(st.integers(0, 5), max_size=25), st.integers(1, 6))
def test_a_limit_keeps_the_first_distinct_hits_of_the_unlimited_fold(groups: list[int], limit: int) -> None:
    # Hits whose passage text is one of six distinct texts; equal group numbers are copies.
    hits = hits_of([passage(" ".join(words(100 + group)), f"s{position}.txt") for position, group in enumerate(groups)])
    unlimited = fold_duplicates(hits)
    limited = fold_duplicates(hits, limit=limit)
    assert len(limited) == min(limit, len(unlimited))
    assert [replace(hit, also_in=()) for hit in limited] == [replace(hit, also_in=()) for hit in unlimited[:limit]]
    for short, full in zip(limited, unlimited, strict=False):
        assert set(short.also_in) <= set(full.also_in)
    # Copies among the first 2 * limit hits are always looked at, so always noted.
    looked_at = {hit.passage.source for hit in hits[: 2 * limit]}
    for short, full in zip(limited, unlimited, strict=False):
        assert set(full.also_in) & looked_at <= set(short.also_in)


def test_a_limit_notes_copies_seen_before_the_scan_stops() -> None:
    a, b, c, d = (" ".join(words(seed)) for seed in (30, 31, 32, 33))
    # limit 2: after A and B are kept the scan goes on to the 4th hit, which is a copy of A.
    hits = hits_of([passage(a, "a.txt"), passage(b, "b.txt"), passage(c, "c.txt"), passage(a, "a-copy.txt")])
    assert [(hit.passage.source, hit.also_in) for hit in fold_duplicates(hits, limit=2)] == [
        ("a.txt", ("a-copy.txt",)),
        ("b.txt", ()),
    ]
    # A copy at position 2 * limit (the 5th hit) lies past the scan.
    hits = hits_of([passage(text, f"{n}.txt") for n, text in enumerate([a, b, c, d, a])])
    assert [(hit.passage.source, hit.also_in) for hit in fold_duplicates(hits, limit=2)] == [
        ("0.txt", ()),
        ("1.txt", ()),
    ]


def test_a_limit_bounds_how_many_hits_are_scanned() -> None:
    hits = CountingHits(hits_of([passage(" ".join(words(200 + seed)), f"{seed}.txt") for seed in range(50)]))
    folded = fold_duplicates(hits, limit=3)
    assert [hit.passage.source for hit in folded] == ["0.txt", "1.txt", "2.txt"]
    assert hits.drawn <= 2 * 3 + 1  # looked at 2 * limit hits, and at most drew one more to stop


def reference_jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the word 5-gram sets, as the words themselves (no hashing, no shortcut)."""

    def grams(text: str) -> set[tuple[str, ...]]:
        found = re.findall(r"\w+", text.lower())
        return {tuple(found[i : i + 5]) for i in range(max(1, len(found) - 4))}

    first, second = grams(a), grams(b)
    return len(first & second) / len(first | second)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(20, 60), st.integers(0, 12)), min_size=1, max_size=12))
def test_folding_agrees_with_exact_jaccard_of_the_word_five_grams(layout: list[tuple[int, int, int]]) -> None:
    # Texts of four bases, cut to assorted lengths and with a few words changed: some pairs sit near 0.8.
    texts = []
    for base, length, edits in layout:
        text = words(300 + base, length)
        for position in range(0, edits * 3, 3):
            text[position % length] = "zebra"
        texts.append(" ".join(text))
    hits = hits_of([passage(text, f"s{n}.txt") for n, text in enumerate(texts)])
    kept: list[int] = []
    for n in range(len(texts)):
        if not any(reference_jaccard(texts[n], texts[m]) >= 0.8 for m in kept):
            kept.append(n)
    assert [hit.passage.source for hit in fold_duplicates(hits)] == [f"s{n}.txt" for n in kept]


@given(st.text() | st.text(alphabet=st.characters(max_codepoint=127)))
def test_words_are_the_runs_of_word_characters_lower_cased(text: str) -> None:
    assert words_of(text) == re.findall(r"\w+", text.lower())
