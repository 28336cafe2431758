"""Follow-up questions: the new aspect leads; questions on another subject are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import FakeEncoder
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.ingest.split import split_passages
from qa.records import Document, Evidence, Hit, Passage
from qa.search.abstention import CALIBRATED, NEVER_ABSTAIN, Abstention, unfamiliar_share
from qa.search.ask import ask
from qa.search.rerank import rerank_follow_up

SETTINGS = IndexSettings(max_tokens=200, min_words=1)
DOCUMENTS = [
    Document(
        "lim",
        "lim.txt",
        (
            "Lim Ji-hyun happened to be a television star in the South. Lim Ji-hyun went back to the North. "
            "What happened to Lim Ji-hyun after that is not known.",
            "Lim Ji-hyun had money problems in Seoul.",
            "Lim was pressured: her family members pleaded with her and threatened her.",
        ),
        title="Lim",
    ),
    Document(
        "gifts",
        "gifts.txt",
        ("Families of soldiers receive gifts of pork and candy from the party in the provinces.",),
        title="Gifts",
    ),
]
HISTORY = ["Who is Lim Ji-hyun?", "What happened to Lim Ji-hyun?"]
FOLLOW_UP = "What about her family?"


def build(encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in DOCUMENTS for p in split_passages(d, max_tokens=200, min_words=1)]
    return LocalIndex.empty(encoder.name, SETTINGS).update(DOCUMENTS, passages, encoder=encoder, settings=SETTINGS)


def test_the_new_aspect_of_a_follow_up_leads(encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    index = build(encoder)
    result = ask(index, FOLLOW_UP, encoder=encoder, history=HISTORY, abstention=NEVER_ABSTAIN)
    assert "family members pleaded" in result.hits[0].passage.text
    assert [hit.rank for hit in result.hits] == list(range(1, len(result.hits) + 1))
    # Without the re-ordering, the passage that answered the previous question led.
    monkeypatch.setattr("qa.search.ask.FOLLOW_UP_WEIGHT", 0.0)
    before = ask(index, FOLLOW_UP, encoder=encoder, history=HISTORY, abstention=NEVER_ABSTAIN)
    assert "television star" in before.hits[0].passage.text
    # A question asked on its own is not re-ordered.
    alone = ask(index, FOLLOW_UP, encoder=encoder, abstention=NEVER_ABSTAIN)
    assert alone.hits == ask(index, FOLLOW_UP, encoder=encoder, abstention=NEVER_ABSTAIN, history=[" "]).hits


def _hit(rank: int, doc: str, score: float, evidence: float) -> Hit:
    passage = Passage(f"{doc}{rank}", doc, f"{doc}.txt", rank, 0, 4, "text")
    return Hit(rank, score, passage, evidence=Evidence("text", 0, 4, evidence))


def test_rerank_follow_up_weighs_aspect_previous_answer_and_article() -> None:
    hits = [_hit(1, "a", 1.0, 0.9), _hit(2, "b", 0.8, 0.5), _hit(3, "a", 0.6, 0.5), _hit(4, "c", 0.1, 0.1)]
    aspect = [
        dataclasses.replace(h, evidence=Evidence("t", 0, 1, s)) for h, s in zip(hits, [0.2, 0.9, 0.6, 0.1], strict=True)
    ]
    answered = [
        dataclasses.replace(h, evidence=Evidence("t", 0, 1, s)) for h, s in zip(hits, [0.9, 0.1, 0.2, 0.3], strict=True)
    ]
    weight, penalty, bonus = 0.5, 0.3, 0.5
    reranked = rerank_follow_up(
        hits, aspect, answered, depth=3, weight=weight, answered_penalty=penalty, same_article=bonus
    )
    score = np.array([1.0, 0.5, 0.0])  # min-max over the three re-ordered hits
    own = np.array([0.0, 1.0, 4 / 7])
    expected = (1 - weight) * score + weight * own - penalty * np.array([1, 0, 0]) + bonus * np.array([1, 0, 1])
    order = [int(i) for i in np.argsort(-expected, kind="stable")]
    assert [h.passage.passage_id for h in reranked] == [hits[i].passage.passage_id for i in order] + ["c4"]
    assert [h.rank for h in reranked] == [1, 2, 3, 4]
    assert [h.evidence for h in reranked[:3]] == [hits[i].evidence for i in order]  # evidence stays
    assert rerank_follow_up([], [], []) == []


HARBOUR = [
    Document(
        "harbour",
        "harbour.txt",
        ("Repairs to the harbour wall will cost four million euros, the council said.",),
        title="Harbour",
    )
]


def test_a_question_mostly_of_words_the_corpus_lacks_needs_closer_evidence(encoder: FakeEncoder) -> None:
    passages = [p for d in HARBOUR for p in split_passages(d, max_tokens=200, min_words=1)]
    index = LocalIndex.empty(encoder.name, SETTINGS).update(HARBOUR, passages, encoder=encoder, settings=SETTINGS)
    off_topic = "Will sunny weather reach the harbour tomorrow?"
    on_topic = "How much will the harbour wall repairs cost?"
    assert unfamiliar_share(index, [off_topic]) >= 0.5  # sunny, weather, tomorrow
    assert unfamiliar_share(index, [on_topic]) == 0.0
    assert unfamiliar_share(index, ["the"]) == 0.0  # stop words only: nothing to judge
    assert unfamiliar_share(index, ["Why, when and how?"]) == 0.0  # question words say nothing of the subject
    plain = Abstention(min_evidence=0.1)
    strict = dataclasses.replace(plain, unfamiliar_share=1 / 3, min_evidence_unfamiliar=0.6)
    assert ask(index, off_topic, encoder=encoder, abstention=plain).answerable  # close enough by similarity
    assert not ask(index, off_topic, encoder=encoder, abstention=strict).answerable
    assert ask(index, on_topic, encoder=encoder, abstention=strict).answerable
    # Earlier turns count: a follow-up in the corpus's words is on its subject.
    assert ask(index, off_topic, encoder=encoder, abstention=strict, history=[on_topic, on_topic]).answerable


def test_the_calibrated_model_refuses_unfamiliar_questions_unless_close() -> None:
    calibrated = CALIBRATED["sentence-transformers/all-MiniLM-L6-v2"]
    assert calibrated.min_evidence < calibrated.min_evidence_unfamiliar
    assert 0 < calibrated.unfamiliar_share < 1
