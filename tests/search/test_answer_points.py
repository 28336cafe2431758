"""Answers to why/how/what-are questions: the distinct points across the passages, one a line."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import FakeEncoder
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.ingest.split import split_passages
from qa.records import Document, Evidence, Hit, Passage
from qa.search.abstention import NEVER_ABSTAIN
from qa.search.answer import (
    POINT_PREFIX,
    asks_for_several_points,
    compose_answer,
    compose_sentences,
    enumerated_items,
)
from qa.search.ask import ask
from qa.search.evidence import SentenceMemory

ENUMERATING = (
    '"The reasons for defectors returning are diverse," he said. "Firstly, some return to avoid criminal '
    "penalties for crimes here. And there are others who face blackmail by the authorities through family "
    'members. Lastly, those who failed to adjust to the social system here choose to return."'
)


@pytest.mark.parametrize(
    ("question", "several"),
    [
        ("Why do defectors return to North Korea?", True),
        ("How does the regime lure defectors back?", True),
        ("What are the reasons defectors go back?", True),
        ("And why did they go?", True),
        ("How many defectors returned?", False),
        ("How much did the repairs cost?", False),
        ("Who is Lim Ji-hyun?", False),
        ("What did Kim Yo Jong order?", False),
        ("When did she go back?", False),
    ],
)
def test_why_how_and_what_are_questions_ask_for_several_points(question: str, several: bool) -> None:
    assert asks_for_several_points(question) is several


def test_an_enumerating_paragraph_gives_each_of_its_items() -> None:
    items = [text for _, text in enumerated_items(ENUMERATING)]
    assert [item.split()[0] for item in items] == ["Firstly,", "And", "Lastly,"]  # quotation marks left out
    assert all(ENUMERATING[start:].startswith(text) for start, text in enumerated_items(ENUMERATING))
    assert enumerated_items("Also, the river rose. Also, the bridge fell.") == []  # no ordinal: not a list
    assert enumerated_items("Firstly, the river rose.") == []  # one item: not a list


def _hit(rank: int, text: str, evidence: str, score: float) -> Hit:
    start = text.index(evidence)
    passage = Passage(f"p{rank}", f"d{rank}", f"d{rank}.txt", 1, 0, len(text), text)
    return Hit(rank, 1.0, passage, evidence=Evidence(evidence, start, start + len(evidence), score))


def _embedder(encoder: FakeEncoder):  # type: ignore[no-untyped-def]
    memory = SentenceMemory()
    return lambda sentences: memory.embed(sentences, encoder)


def _lines(answer: str) -> list[str]:
    return answer.split("\n")


def test_several_points_are_listed_with_their_citations_and_repeats_left_out(encoder: FakeEncoder) -> None:
    hits = [
        _hit(2, ENUMERATING, '"The reasons for defectors returning are diverse," he said.', 0.60),
        _hit(
            3,
            "Her family pleaded with her to come back. She sang on TV.",
            "Her family pleaded with her to come back.",
            0.55,
        ),
        _hit(
            4, "Her family pleaded with her to come back home.", "Her family pleaded with her to come back home.", 0.54
        ),
        _hit(
            5,
            "The regime promised money and no punishment to those who return.",
            "The regime promised money and no punishment to those who return.",
            0.5,
        ),
        _hit(6, "Rice prices rose.", "Rice prices rose.", 0.1),  # far below the best evidence
    ]
    answer = compose_answer(hits, question="Why do defectors return?", embed=_embedder(encoder))
    lines = _lines(answer)
    assert all(line.startswith(POINT_PREFIX) and re.search(r" \[\d\]$", line) for line in lines)
    cited = [int(re.search(r"\[(\d)\]$", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert cited == sorted(cited)  # in rank order
    text = "\n".join(lines)
    # The enumerating paragraph answers as a whole, item by item, instead of its opening sentence.
    assert "avoid criminal penalties" in text and "blackmail" in text and "failed to adjust" in text
    assert "are diverse" not in text
    assert text.count("pleaded with her") == 1  # the near-duplicate of [3] is left out
    assert "no punishment" in text and "Rice" not in text
    # A question for one fact keeps the sentences of old.
    assert compose_answer(hits, question="How many defectors returned?", embed=_embedder(encoder)) == (
        compose_sentences(hits)
    )


def test_one_point_is_answered_as_a_sentence_not_a_list(encoder: FakeEncoder) -> None:
    hits = [_hit(1, "The wall cracked in the storm.", "The wall cracked in the storm.", 0.7)]
    assert compose_answer(hits, question="Why did the wall fail?", embed=_embedder(encoder)) == (
        "The wall cracked in the storm. [1]"
    )


def test_ask_lists_the_points_of_a_why_question(encoder: FakeEncoder) -> None:
    documents = [
        Document("reasons", "reasons.txt", (ENUMERATING,), title="Why defectors return"),
        Document(
            "lures",
            "lures.txt",
            ("Defectors return for the money the regime promised them, and because there is no punishment.",),
        ),
    ]
    settings = IndexSettings(max_tokens=200, min_words=1)
    passages = [p for d in documents for p in split_passages(d, max_tokens=200, min_words=1)]
    index = LocalIndex.empty(encoder.name, settings).update(documents, passages, encoder=encoder, settings=settings)
    result = ask(index, "Why do defectors return?", encoder=encoder, abstention=NEVER_ABSTAIN)
    lines = _lines(result.answer)
    assert len(lines) == 4 and all(line.startswith(POINT_PREFIX) for line in lines)
    assert any("regime promised them" in line for line in lines)
    assert np.all([re.search(r"\[[12]\]$", line) for line in lines])
