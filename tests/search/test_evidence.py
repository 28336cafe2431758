"""SentenceMemory: evidence-sentence vectors remembered per model, the least recently used forgotten."""

from __future__ import annotations

import threading
import time

import numpy as np

from conftest import WORDS, FakeEncoder
from qa.embed.encoder import normalize
from qa.search.evidence import SENTENCE_MEMORY, SentenceMemory


def unit(encoder: FakeEncoder, sentences: list[str]) -> np.ndarray:
    return normalize(FakeEncoder(encoder.name, encoder.dimension).encode(sentences))


def test_vectors_are_the_encoders_unit_vectors(encoder: FakeEncoder) -> None:
    sentences = ["Rivers rose.", "Bridges closed.", "The army came."]
    vectors = SentenceMemory().embed(sentences, encoder)
    np.testing.assert_allclose(vectors, unit(encoder, sentences), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_remembered_sentences_are_not_encoded_again(encoder: FakeEncoder) -> None:
    memory = SentenceMemory()
    first = memory.embed(["Rivers rose.", "Bridges closed."], encoder)
    again = memory.embed(["Bridges closed.", "Rivers rose."], encoder)
    assert encoder.calls == [["Rivers rose.", "Bridges closed."]]
    np.testing.assert_array_equal(again, first[::-1])
    # Only the sentence it has not seen is encoded, and a repeat within one call once.
    mixed = memory.embed(["Rivers rose.", "Schools shut.", "Schools shut."], encoder)
    assert encoder.calls[1:] == [["Schools shut."]]
    np.testing.assert_allclose(mixed, unit(encoder, ["Rivers rose.", "Schools shut.", "Schools shut."]), rtol=1e-6)
    assert len(memory) == 3


def test_the_least_recently_used_sentence_is_forgotten_beyond_the_capacity(encoder: FakeEncoder) -> None:
    assert SentenceMemory().capacity == SENTENCE_MEMORY
    memory = SentenceMemory(capacity=2)
    for sentence in ["A river.", "A bridge.", "A river.", "A court."]:  # "A bridge." is now the oldest
        memory.embed([sentence], encoder)
    assert len(memory) == 2
    encoder.calls.clear()
    memory.embed(["A river.", "A court."], encoder)
    assert encoder.calls == []
    memory.embed(["A bridge."], encoder)  # forgotten, so encoded again; it evicts "A river."
    assert encoder.calls == [["A bridge."]]
    memory.embed(["A court."], encoder)
    memory.embed(["A river."], encoder)
    assert encoder.calls == [["A bridge."], ["A river."]]
    assert len(memory) == 2


def test_two_models_never_share_vectors() -> None:
    memory = SentenceMemory()
    first, second = FakeEncoder(name="a"), FakeEncoder(name="b", dimension=64)
    sentences = ["Rivers rose.", "Bridges closed."]
    from_first = memory.embed(sentences, first)
    from_second = memory.embed(sentences, second)
    assert first.calls == second.calls == [sentences]
    assert from_first.shape == (2, 256) and from_second.shape == (2, 64)
    np.testing.assert_allclose(from_second, unit(second, sentences), rtol=1e-6)
    # Each model's vectors are still remembered apart.
    np.testing.assert_array_equal(memory.embed(sentences, first), from_first)
    np.testing.assert_array_equal(memory.embed(sentences, second), from_second)
    assert len(first.calls) == len(second.calls) == 1
    assert len(memory) == 4


class SlowEncoder(FakeEncoder):
    """Pauses inside ``encode``, as a real model does, so other threads run meanwhile."""

    def encode(self, texts: list[str]) -> np.ndarray:
        time.sleep(0.002)
        return super().encode(texts)


def test_sentence_memory_is_safe_under_concurrent_questions() -> None:
    encoder = SlowEncoder()
    # A small memory makes threads evict each other's sentences while they embed.
    memory = SentenceMemory(capacity=8)
    pool = [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 5 + 3) % len(WORDS)]} number {i}." for i in range(30)]
    failures: list[BaseException] = []

    def ask_many(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(40):
                sentences = [pool[i] for i in rng.choice(len(pool), size=6, replace=False)]
                vectors = memory.embed(sentences, encoder)
                np.testing.assert_allclose(vectors, unit(encoder, sentences), rtol=1e-6)
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=ask_many, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures[:3]
    assert len(memory) <= 8
