"""The reader at question time, with a fake reader: re-ranking, spans, evidence, short answers and abstention."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
import pytest

from conftest import FakeEncoder
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.ingest.split import split_passages, split_sentences
from qa.reader.model import Reading
from qa.records import Document, Evidence, Hit, Passage, result_to_dict
from qa.search.abstention import NOT_IN_CORPUS, Abstention
from qa.search.ask import ask
from qa.search.fusion import min_max
from qa.search.reading import SPAN_MIN_SCORE, best_answer, read_hits, rerank_by_reader

SETTINGS = IndexSettings(max_tokens=200, min_words=1)
DOCUMENTS = [
    Document(
        "harbour",
        "harbour.txt",
        (
            "The storm reached the coast on Monday. Fishermen pulled their boats onto the beach before the waves "
            "came. The lighthouse keeper said the harbour wall cracked in two places.",
            "The council met on Friday. Repairs to the harbour wall will cost four million euros, it said. "
            "Work starts in spring.",
        ),
        title="Storm damages harbour",
    ),
    Document(
        "orchard",
        "orchard.txt",
        ("Apple growers in the valley expect a record harvest. Cider makers are hiring extra workers for autumn.",),
        title="Record apple harvest",
    ),
]


class FakeReader:
    """Answers with ``answer`` where a passage holds it (score ``found``), else scores ``missing`` with no span."""

    name = "fake-reader"

    def __init__(self, answer: str, *, found: float = 4.0, missing: float = -3.0) -> None:
        self.answer = answer
        self.found = found
        self.missing = missing
        self.calls: list[tuple[str, list[str]]] = []

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        self.calls.append((question, list(passages)))
        readings = []
        for passage in passages:
            at = passage.find(self.answer)
            if at >= 0:
                readings.append(Reading(score=self.found, span=(at, at + len(self.answer))))
            else:
                readings.append(Reading(score=self.missing, span=(0, min(5, len(passage)))))
        return readings


def build(encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in DOCUMENTS for p in split_passages(d, max_tokens=200, min_words=1)]
    return LocalIndex.empty(encoder.name, SETTINGS).update(DOCUMENTS, passages, encoder=encoder, settings=SETTINGS)


def hit(rank: int, text: str, score: float, evidence: tuple[int, int] | None = None) -> Hit:
    passage = Passage(f"p{rank}", "doc", "doc.txt", 1, 0, len(text), text)
    found = None if evidence is None else Evidence(text[evidence[0] : evidence[1]], *evidence, score=0.5)
    return Hit(rank=rank, score=score, passage=passage, evidence=found)


def unit_embed(sentences: list[str]) -> np.ndarray:
    return np.ones((len(sentences), 2), dtype=np.float32) / np.sqrt(2)


QUERY = np.array([1.0, 0.0], dtype=np.float32)


def test_read_hits_reads_only_the_first_depth_hits() -> None:
    hits = [hit(rank, f"passage {rank} says nothing.", 1.0 / rank) for rank in range(1, 6)]
    reader = FakeReader("four million")
    read = read_hits(hits, "q", reader=reader, query_vector=QUERY, embed=unit_embed, depth=3)
    assert [h.reader_score for h in read] == [-3.0, -3.0, -3.0, None, None]
    assert reader.calls == [("q", [h.passage.text for h in hits[:3]])]


def test_a_span_moves_the_evidence_to_the_sentence_that_holds_it() -> None:
    text = "The council met on Friday. Repairs will cost four million euros, it said. Work starts in spring."
    first = split_sentences(text)[0]
    read = read_hits(
        [hit(1, text, 1.0, first)],
        "cost?",
        reader=FakeReader("four million euros"),
        query_vector=QUERY,
        embed=unit_embed,
    )[0]
    assert read.span is not None and read.span.text == "four million euros"
    assert text[read.span.start : read.span.end] == "four million euros"
    assert read.evidence is not None
    assert read.evidence.text == "Repairs will cost four million euros, it said."
    assert read.evidence.start <= read.span.start < read.span.end <= read.evidence.end
    assert read.evidence.score == pytest.approx(float(unit_embed(["x"])[0] @ QUERY))


def test_no_span_where_the_reader_thinks_the_passage_does_not_answer() -> None:
    text = "The council met on Friday."
    read = read_hits(
        [hit(1, text, 1.0, (0, len(text)))],
        "q",
        reader=FakeReader("absent", missing=SPAN_MIN_SCORE - 0.1),
        query_vector=QUERY,
        embed=unit_embed,
    )[0]
    assert read.span is None
    assert read.evidence == Evidence(text, 0, len(text), 0.5)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 1.0])
def test_rerank_by_reader_agrees_with_brute_force(weight: float) -> None:
    rng = np.random.default_rng(7)
    hits = [
        dataclasses.replace(hit(r, f"text {r}", float(rng.random())), reader_score=float(rng.normal()))
        for r in range(1, 9)
    ]
    hits.append(hit(9, "never read", 0.01))
    ranked = rerank_by_reader(hits, weight=weight)
    read = hits[:8]
    combined = (1 - weight) * min_max(np.array([h.score for h in read])) + weight * min_max(
        np.array([h.reader_score for h in read])
    )
    expected = [read[i].passage.passage_id for i in sorted(range(8), key=lambda i: (-combined[i], i))]
    assert [h.passage.passage_id for h in ranked] == [*expected, "p9"]
    assert [h.rank for h in ranked] == list(range(1, 10))


def test_best_answer_is_the_surest_span_above_the_threshold() -> None:
    from qa.records import Span

    hits = [
        dataclasses.replace(hit(1, "a", 0.9), reader_score=1.0, span=Span("a", 0, 1)),
        dataclasses.replace(hit(2, "b", 0.8), reader_score=2.5, span=Span("b", 0, 1)),
        dataclasses.replace(hit(3, "c", 0.7), reader_score=9.0),  # no span
    ]
    best = best_answer(hits, threshold=0.0)
    assert best is not None and best.rank == 2
    assert best_answer(hits, threshold=3.0) is None


def test_ask_with_the_reader_leads_with_the_short_answer(encoder: FakeEncoder) -> None:
    index = build(encoder)
    result = ask(
        index,
        "How much will the harbour wall repairs cost?",
        encoder=encoder,
        k=3,
        reader=FakeReader("four million euros"),
    )
    assert result.answerable
    assert result.short_answer == "four million euros"
    lead = next(h for h in result.hits if h.rank == result.short_answer_rank)
    assert lead.span is not None and lead.span.text == "four million euros"
    assert lead.evidence is not None
    assert result.answer.startswith(f"{lead.evidence.text} [{lead.rank}]")
    assert "four million euros" in lead.evidence.text
    as_json = result_to_dict(result)
    assert as_json["short_answer"] == {"text": "four million euros", "rank": lead.rank}
    json_hit = next(h for h in as_json["hits"] if h["rank"] == lead.rank)  # type: ignore[attr-defined]
    assert json_hit["reader_score"] == 4.0
    assert json_hit["span"]["text"] == "four million euros"


def test_a_question_asking_for_several_points_keeps_its_evidence_and_gets_no_short_answer(
    encoder: FakeEncoder,
) -> None:
    index = build(encoder)
    question = "Why did the harbour wall crack?"
    without = ask(index, question, encoder=encoder, k=3, abstention=Abstention())
    with_reader = ask(index, question, encoder=encoder, k=3, reader=FakeReader("Work starts in spring"))
    assert with_reader.short_answer == ""
    evidence = {h.passage.passage_id: h.evidence for h in without.hits}
    assert all(h.evidence == evidence[h.passage.passage_id] for h in with_reader.hits)
    assert any(h.span is not None for h in with_reader.hits)  # the span is still data on its hit


def test_the_readers_no_answer_abstains(encoder: FakeEncoder) -> None:
    index = build(encoder)
    question = "How much will the harbour wall repairs cost?"
    assert ask(index, question, encoder=encoder, k=3, abstention=Abstention()).answerable
    result = ask(
        index, question, encoder=encoder, k=3, reader=FakeReader("nowhere"), abstention=Abstention(min_reader_score=0.0)
    )
    assert not result.answerable
    assert result.answer == NOT_IN_CORPUS
    assert result.short_answer == ""
    assert result.hits


def test_with_the_reader_an_unknown_name_is_not_refused(encoder: FakeEncoder) -> None:
    index = build(encoder)
    question = "What did Napoleon say the harbour wall repairs cost?"
    strict = Abstention(require_specific_terms=True)
    assert not ask(index, question, encoder=encoder, k=3, abstention=strict).answerable
    # The abstention calibrated for the trained reader: its no-answer, not the rule on unknown names.
    reader = FakeReader("four million euros")
    reader.name = "qa-reader-minilm-l6-squad"
    result = ask(index, question, encoder=encoder, k=3, reader=reader)
    assert result.answerable
    assert result.short_answer == "four million euros"
    reader.found = -5.0
    assert not ask(index, question, encoder=encoder, k=3, reader=reader).answerable


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_single_retriever_modes_do_not_read(encoder: FakeEncoder, mode: str) -> None:
    reader = FakeReader("four million euros")
    result = ask(build(encoder), "harbour wall cost", encoder=encoder, k=3, mode=mode, reader=reader)  # type: ignore[arg-type]
    assert reader.calls == []
    assert all(h.reader_score is None for h in result.hits)
    assert result.short_answer == ""


def test_reader_answers_cite_only_given_ranks(encoder: FakeEncoder) -> None:
    result = ask(build(encoder), "How much will the repairs cost?", encoder=encoder, k=2, reader=FakeReader("four"))
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
    assert cited <= {h.rank for h in result.hits}


def test_a_follow_up_is_read_after_the_question_before_it(encoder: FakeEncoder) -> None:
    reader = FakeReader("four million euros")
    history = ["What happened at the harbour?", "Who repairs the harbour wall?"]
    ask(build(encoder), "And how much will it cost?", encoder=encoder, k=3, history=history, reader=reader)
    assert reader.calls and reader.calls[0][0] == "Who repairs the harbour wall? And how much will it cost?"
