"""Issue 13's answers on the bundled corpus with the real model: points, spelling, off-topic, follow-ups."""

from __future__ import annotations

import re

import pytest

from qa.search.answer import POINT_PREFIX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def asked(real_index):  # type: ignore[no-untyped-def]
    from qa.search.ask import ask
    from qa.search.evidence import SentenceMemory

    store, encoder = real_index
    memory = SentenceMemory()

    def ask_one(question: str, history: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
        return ask(store, question, encoder=encoder, k=5, history=history, sentences=memory)

    return ask_one


def test_why_defectors_return_is_answered_with_the_kinds_of_reason(asked) -> None:  # type: ignore[no-untyped-def]
    result = asked("Why do defectors return to North Korea?")
    lines = result.answer.split("\n")
    assert len(lines) >= 3 and all(line.startswith(POINT_PREFIX) and re.search(r"\[\d\]$", line) for line in lines)
    for point in ("avoid criminal", "coaxing or blackmailing", "failed to adjust"):
        assert sum(point in line for line in lines) == 1, point


@pytest.mark.parametrize(
    "question",
    ["what hapened to Lim Jihyun", "What did Kim Yojong order?", "Why do defecters retrun to Nroth Korea?"],
)
def test_typos_and_name_variants_are_answered(asked, question: str) -> None:  # type: ignore[no-untyped-def]
    result = asked(question)
    assert result.answerable and result.suggestion and result.suggestion != question


@pytest.mark.parametrize(
    "question",
    [
        "What will the weather be like in Seoul tomorrow?",
        "Who directed the film Parasite?",
        "What is 17 times 23?",
        "Can you recommend a good restaurant in Pyongyang?",
    ],
)
def test_off_topic_questions_are_refused(asked, question: str) -> None:  # type: ignore[no-untyped-def]
    assert not asked(question).answerable


def test_a_follow_up_leads_with_its_new_aspect(asked) -> None:  # type: ignore[no-untyped-def]
    first = asked("What happened to Lim Ji-hyun?")
    follow_up = asked("And what about their families?", ("What happened to Lim Ji-hyun?",))
    assert follow_up.hits[0].passage.passage_id != first.hits[0].passage.passage_id
    assert "pleading by her family members" in follow_up.hits[0].passage.text
