"""Evidence: the sentence (or two) of each hit's passage closest to the question.

Every passage's sentences were embedded when it was indexed (``PassageStore.sentences_of``);
``sentence_embedder`` serves their vectors, and embeds at question time only what is not a
stored sentence (two sentences joined as one point, an item stripped of its quotes), which
``SentenceMemory`` remembers, since the same passages come back for many questions.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from qa.embed.encoder import Encoder, normalize
from qa.index.store import PassageStore
from qa.ingest.split import split_sentences
from qa.records import Evidence, Hit, Passage

# A second sentence joins the evidence when it scores nearly as well as the best one.
EVIDENCE_PAIR_MARGIN = 0.05
# Evidence-sentence vectors kept in memory (about 1.5 kB each at 384 dimensions).
SENTENCE_MEMORY = 20_000


class SentenceMemory:
    """Unit vectors of evidence sentences, the least recently used forgotten beyond ``capacity``.

    Safe for concurrent questions: the memory is only touched under a lock, and
    each call answers from its own copy of the vectors, so another thread
    evicting a sentence meanwhile cannot lose it. Encoding runs outside the
    lock, so questions still embed in parallel.
    """

    def __init__(self, capacity: int = SENTENCE_MEMORY) -> None:
        self.capacity = capacity
        self._vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, sentences: Sequence[str], encoder: Encoder) -> np.ndarray:
        """One unit vector per sentence, embedding only those not remembered for ``encoder``'s model."""
        if not sentences:
            return normalize(encoder.encode([]))
        keys = [(encoder.name, sentence) for sentence in sentences]
        with self._lock:
            found = {key: self._vectors[key] for key in keys if key in self._vectors}
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        if missing:
            vectors = normalize(encoder.encode([sentence for _, sentence in missing]))
            found.update(zip(missing, vectors, strict=True))
        with self._lock:
            self._remember(keys, found)
        return np.stack([found[key] for key in keys])

    def _remember(self, keys: Sequence[tuple[str, str]], vectors: dict[tuple[str, str], np.ndarray]) -> None:
        """Mark ``keys`` most recently used, then forget the least recently used beyond the capacity."""
        for key in keys:
            self._vectors[key] = vectors[key]
            self._vectors.move_to_end(key)
        while len(self._vectors) > self.capacity:
            self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)


Embed = Callable[[list[str]], np.ndarray]
"""Sentences to unit vectors with the index's model."""
Spans = Sequence[tuple[int, int]]


class HitSentences:
    """The sentences of some hits' passages: their spans and unit vectors as stored when indexed.

    Called with texts, it gives their unit vectors (an ``Embed``): the stored ones,
    and ``fallback``'s for any text that is not a stored sentence.
    """

    def __init__(self, spans: dict[str, Spans], known: dict[str, np.ndarray], *, fallback: Embed) -> None:
        self._spans = spans
        self._known = known
        self._fallback = fallback

    def spans_of(self, passage: Passage) -> Spans:
        """The passage's sentence spans: stored ones, split afresh only for a passage not among the hits."""
        stored = self._spans.get(passage.passage_id)
        return split_sentences(passage.text) if stored is None else stored

    def __call__(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text: stored, remembered, or embedded now by ``fallback``."""
        missing = [text for text in dict.fromkeys(texts) if text not in self._known]
        if missing:
            self._known.update(zip(missing, self._fallback(missing), strict=True))
        return np.stack([self._known[text] for text in texts]) if texts else self._fallback([])


def sentence_embedder(store: PassageStore, hits: Sequence[Hit], *, fallback: Embed) -> HitSentences:
    """The hits' stored sentences; ``fallback`` embeds any other text."""
    spans: dict[str, Spans] = {}
    known: dict[str, np.ndarray] = {}
    found = store.sentences_of([hit.passage.passage_id for hit in hits])
    for hit, sentences in zip(hits, found, strict=True):
        spans[hit.passage.passage_id] = sentences.spans
        known.update(zip(sentences.texts(hit.passage.text), sentences.vectors, strict=True))
    return HitSentences(spans, known, fallback=fallback)


def _split(passage: Passage) -> Spans:
    return split_sentences(passage.text)


def attach_evidence(
    hits: Sequence[Hit],
    query_vector: np.ndarray,
    embed: Callable[[list[str]], np.ndarray],
    *,
    spans_of: Callable[[Passage], Spans] = _split,
) -> list[Hit]:
    """Give each hit the sentence (or two adjacent ones) of its passage closest to the question.

    ``embed`` turns sentences into unit vectors with the index's model; ``spans_of``
    gives a passage's sentences (``HitSentences.spans_of``: as stored, not split again).
    """
    spans = [spans_of(hit.passage) for hit in hits]
    sentences = [hit.passage.text[s:e] for hit, hit_spans in zip(hits, spans, strict=True) for s, e in hit_spans]
    if not sentences:
        return list(hits)
    scores = embed(sentences) @ query_vector
    with_evidence = []
    offset = 0
    for hit, hit_spans in zip(hits, spans, strict=True):
        hit_scores = scores[offset : offset + len(hit_spans)]
        offset += len(hit_spans)
        evidence = best_evidence(hit.passage.text, hit_spans, hit_scores) if hit_spans else None
        with_evidence.append(dataclasses.replace(hit, evidence=evidence))
    return with_evidence


def best_evidence(text: str, spans: Sequence[tuple[int, int]], scores: np.ndarray) -> Evidence:
    """The best-scoring sentence, joined by a neighbour that scores within ``EVIDENCE_PAIR_MARGIN``."""
    best = int(np.argmax(scores))
    start, end = spans[best]
    neighbours = [i for i in (best - 1, best + 1) if 0 <= i < len(spans)]
    close = [i for i in neighbours if scores[i] >= scores[best] - EVIDENCE_PAIR_MARGIN]
    if close:
        partner = max(close, key=lambda i: scores[i])
        start, end = min(start, spans[partner][0]), max(end, spans[partner][1])
    return Evidence(text=text[start:end], start=start, end=end, score=float(scores[best]))


def evidence_score(hit: Hit) -> float:
    """The similarity of a hit's evidence to the question; -1 for a hit without evidence."""
    return hit.evidence.score if hit.evidence else -1.0
