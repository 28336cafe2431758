"""The shipped reader on the bundled corpus, with the real model: short answers, typos, refusals, lists."""

from __future__ import annotations

import re

import pytest

from qa.records import result_to_dict
from qa.search.answer import POINT_PREFIX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def asked(real_index):  # type: ignore[no-untyped-def]
    from qa.reader.model import Reader
    from qa.search.ask import ask
    from qa.search.evidence import SentenceMemory

    store, encoder = real_index
    memory = SentenceMemory()
    reader = Reader()

    def ask_one(question: str, history: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        return ask(store, question, encoder=encoder, k=5, history=history, sentences=memory, reader=reader)

    return ask_one


def test_a_fact_is_answered_first_with_its_span_inside_the_cited_sentence(asked) -> None:  # type: ignore[no-untyped-def]
    result = asked("On what date did Kim Yo Jong send her instruction to the provinces?")
    assert result.answerable
    assert "June 10" in result.short_answer
    lead = next(hit for hit in result.hits if hit.rank == result.short_answer_rank)
    assert lead.span is not None and lead.evidence is not None and lead.reader_score is not None
    assert lead.passage.text[lead.span.start : lead.span.end] == lead.span.text == result.short_answer
    assert lead.evidence.start <= lead.span.start < lead.span.end <= lead.evidence.end
    assert result.answer.startswith(f"{lead.evidence.text} [{lead.rank}]")
    as_json = result_to_dict(result)
    assert as_json["short_answer"] == {"text": result.short_answer, "rank": lead.rank}


@pytest.mark.parametrize(
    "question",
    ["what hapened to Lim Jihyun", "What did Kim Yojong order?", "Why do defecters retrun to Nroth Korea?"],
)
def test_typos_and_name_variants_are_not_refused(asked, question: str) -> None:  # type: ignore[no-untyped-def]
    assert asked(question).answerable


@pytest.mark.parametrize(
    "question",
    ["Who directed the film Parasite?", "How do I bake sourdough bread?", "What's the capital of Australia?"],
)
def test_off_topic_questions_are_refused(asked, question: str) -> None:  # type: ignore[no-untyped-def]
    result = asked(question)
    assert not result.answerable and result.short_answer == ""
    assert all(hit.reader_score is not None for hit in result.hits)


def test_the_headline_question_still_lists_the_kinds_of_reason(asked) -> None:  # type: ignore[no-untyped-def]
    result = asked("Why do defectors return to North Korea?")
    assert result.short_answer == ""  # one span is one reason: the points answer it
    lines = result.answer.split("\n")
    assert all(line.startswith(POINT_PREFIX) and re.search(r"\[\d\]$", line) for line in lines)
    for point in ("avoid criminal", "coaxing or blackmailing", "failed to adjust"):
        assert sum(point in line for line in lines) == 1, point


def test_reader_scores_put_the_answering_passage_above_one_that_does_not(asked) -> None:  # type: ignore[no-untyped-def]
    result = asked("How many North Koreans arrived in South Korea in 2016?")
    answering = [hit for hit in result.hits if "1,418" in hit.passage.text]
    assert answering and answering[0].reader_score is not None
    others = [hit.reader_score for hit in result.hits if "1,418" not in hit.passage.text and hit.reader_score]
    assert answering[0].reader_score > max(others)
