"""Stored sentence vectors: every sentence once, int8 close to float32, updates that copy instead of embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FakeEncoder
from qa.embed.encoder import normalize
from qa.index.sentences import HEADER_FILE, SentenceVectors, passage_text_hash, quantize
from qa.ingest.split import split_sentences

TEXTS = [
    "Defectors return for family. Some fail to adjust! Others are lured back by money?",
    "One sentence only, without a final stop",
    "Kim Yo Jong gave the order on June 10. It reached the provinces a week later.",
    "",
    "탈북민이 돌아갔다. 통일부가 밝혔다.",
]


class CountingEmbed:
    """Sentences to unit vectors with the fake encoder, remembering every sentence it was given."""

    def __init__(self) -> None:
        self.encoder = FakeEncoder()
        self.seen: list[str] = []

    def __call__(self, sentences: list[str]) -> np.ndarray:
        self.seen.extend(sentences)
        return normalize(self.encoder.encode(sentences))


def test_every_sentence_of_every_passage_is_stored_with_its_span() -> None:
    embed = CountingEmbed()
    table = SentenceVectors.build(TEXTS, embed, dimension=256)
    assert table.size == len(TEXTS)
    expected = [[text[s:e] for s, e in split_sentences(text)] for text in TEXTS]
    assert embed.seen == [sentence for sentences in expected for sentence in sentences]
    for text, stored, sentences in zip(TEXTS, table.of_rows(range(len(TEXTS))), expected, strict=True):
        assert stored.texts(text) == sentences
        if sentences:
            exact = normalize(FakeEncoder().encode(sentences))
            assert np.abs(np.sum(stored.vectors * exact, axis=1) - 1).max() < 1e-3  # the same direction


def test_int8_codes_keep_cosines_within_a_hundredth_of_float32() -> None:
    rng = np.random.default_rng(0)
    vectors = normalize(rng.normal(size=(2000, 384)).astype(np.float32) + 0.3 * rng.normal(size=384))
    queries = normalize(rng.normal(size=(50, 384)).astype(np.float32) + 0.3 * vectors[:50])
    codes, scales = quantize(vectors)
    restored = codes.astype(np.float32) * scales[:, None]
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    assert np.abs(restored @ queries.T - vectors @ queries.T).max() < 0.01


def test_an_update_copies_the_sentences_of_passages_it_holds_and_embeds_only_new_ones(tmp_path: Path) -> None:
    old = SentenceVectors.build(TEXTS, CountingEmbed(), dimension=256)
    new_texts = [TEXTS[2], "A new passage. With two sentences.", TEXTS[0], TEXTS[0], TEXTS[4]]
    sources = old.sources_for(new_texts)
    assert sources.tolist() == [2, -1, 0, 0, 4]
    embed = CountingEmbed()
    new = old.updated(sources, ["A new passage. With two sentences."], embed, dimension=256)
    assert embed.seen == ["A new passage.", "With two sentences."]
    reference = SentenceVectors.build(new_texts, CountingEmbed(), dimension=256)
    for name in ("offsets", "spans", "codes", "scales", "text_hashes"):
        assert np.array_equal(getattr(new, name), getattr(reference, name)), name
    new.save(tmp_path / "sentences")
    loaded = SentenceVectors.load(tmp_path / "sentences")
    assert isinstance(loaded.codes, np.memmap)
    for row, (a, b) in enumerate(zip(loaded.of_rows(range(5)), new.of_rows(range(5)), strict=True)):
        assert a.spans == b.spans and np.array_equal(a.vectors, b.vectors), row


def test_a_text_whose_hash_ends_in_a_zero_byte_is_still_found() -> None:
    # NumPy's fixed bytes type would drop the zero and lose the passage's sentences at every update.
    text = next(f"passage {n}." for n in range(5000) if passage_text_hash(f"passage {n}.")[-1] == 0)
    table = SentenceVectors.build([text], CountingEmbed(), dimension=256)
    assert table.sources_for([text]).tolist() == [0]


def test_files_that_disagree_with_their_header_are_refused(tmp_path: Path) -> None:
    SentenceVectors.build(TEXTS, CountingEmbed(), dimension=256).save(tmp_path)
    header = json.loads((tmp_path / HEADER_FILE).read_text())
    (tmp_path / HEADER_FILE).write_text(json.dumps({**header, "sentences": header["sentences"] + 1}))
    with pytest.raises(ValueError, match="disagree"):
        SentenceVectors.load(tmp_path)
    (tmp_path / HEADER_FILE).write_text(json.dumps({**header, "format": 99}))
    with pytest.raises(ValueError, match="format 99"):
        SentenceVectors.load(tmp_path)


def test_an_update_given_the_wrong_number_of_fresh_texts_is_refused() -> None:
    table = SentenceVectors.build(TEXTS[:2], CountingEmbed(), dimension=256)
    with pytest.raises(ValueError, match="fresh"):
        table.updated(np.array([0, -1]), [], CountingEmbed())


def test_rows_made_a_few_at_a_time_give_the_same_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    texts = [*TEXTS, *(f"Passage {n} speaks. Of item {n}!" for n in range(9))]
    whole = SentenceVectors.build(texts, CountingEmbed(), dimension=256)
    monkeypatch.setattr("qa.index.sentences.ROW_CHUNK", 2)
    monkeypatch.setattr("qa.index.sentences.EMBED_CHUNK", 3)
    old = SentenceVectors.build(texts[:7], CountingEmbed(), dimension=256)
    pieces = old.updated(np.array([*range(7), *[-1] * (len(texts) - 7)]), texts[7:], CountingEmbed())
    pieces.save(tmp_path)
    for table in (pieces, SentenceVectors.load(tmp_path)):
        for name in ("offsets", "spans", "codes", "scales", "text_hashes"):
            assert np.array_equal(getattr(table, name), getattr(whole, name)), name


def test_sentences_of_rows_in_any_order_with_repeats_match_each_row_read_alone() -> None:
    table = SentenceVectors.build(TEXTS, CountingEmbed(), dimension=256)
    rows = [4, 0, 3, 2, 0, 1]  # an empty passage, repeats, out of order
    together = table.of_rows(rows)
    for row, found in zip(rows, together, strict=True):
        start, end = int(table.offsets[row]), int(table.offsets[row + 1])
        alone = np.asarray(table.codes[start:end], dtype=np.float32) * table.scales[start:end, None]
        alone /= np.maximum(np.linalg.norm(alone, axis=1, keepdims=True), 1e-12)
        assert found.spans == tuple(split_sentences(TEXTS[row]))
        np.testing.assert_allclose(found.vectors, alone, rtol=0, atol=1e-6)
    assert table.of_rows([]) == []
