"""Points covered: labelled points of multi-point questions, and how many of them the answers make."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FakeEncoder, json_lines
from qa.errors import QAError
from qa.evaluation.questions import (
    Anchor,
    AnswerPoint,
    evaluate_questions,
    judge,
    load_questions,
    points_covered,
)
from qa.evaluation.report import format_failures, format_table, to_markdown
from qa.evaluation.results import EvalReport
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.ingest.split import split_passages
from qa.records import Document
from qa.search.abstention import NEVER_ABSTAIN

SETTINGS = IndexSettings(max_tokens=128, min_words=1)
DOCUMENTS = [
    Document(
        "reasons",
        "reasons.txt",
        (
            "Firstly, some defectors return to avoid criminal charges. And there are others who face blackmail "
            "through family members. Lastly, some defectors return because they fail to adjust.",
            "Rice prices rose at the market.",
        ),
    ),
]
POINTS = [
    {"point": "crime", "anchors": [{"source": "reasons.txt", "anchor": "avoid criminal charges"}]},
    {"point": "family", "anchors": [{"source": "reasons.txt", "anchor": "blackmail through family"}]},
    {"source": "reasons.txt", "anchor": "fail to adjust"},  # a point given as one anchor
]


def _point(label: str, *anchors: str) -> AnswerPoint:
    return AnswerPoint(label, tuple(Anchor("a.txt", anchor) for anchor in anchors))


def test_points_covered_counts_points_made_and_sentences_that_only_repeat() -> None:
    points = [_point("crime", "criminal charges", "criminal penalties"), _point("family", "family members")]
    answer = (
        "- They avoid criminal charges. [1]\n- They avoid  criminal\npenalties too. [2]\n"
        "- Prices rose. [3]\n- Their family members call. [4]"
    )
    assert points_covered(answer, points) == {"covered": 2, "points": 2, "fraction": 1.0, "repeats": 1}
    assert points_covered("Prices rose. [1]", points) == {"covered": 0, "points": 2, "fraction": 0.0, "repeats": 0}
    # An anchor split by a citation does not count: each cited sentence must make the point itself.
    assert points_covered("They avoid criminal [1] charges.", points)["covered"] == 0


def test_points_are_loaded_and_their_anchors_checked(tmp_path: Path, encoder: FakeEncoder) -> None:
    row = {"id": "m1", "question": "Why do defectors return?", "relevant": POINTS[2:], "points": POINTS}
    [question] = load_questions(json_lines(tmp_path / "q.jsonl", [row]))
    assert [point.label for point in question.points] == ["crime", "family", "fail to adjust"]
    assert question.points[2].anchors == (Anchor("reasons.txt", "fail to adjust"),)
    index = _index(encoder)
    judge([question], list(index.iter_passages()))
    wrong = {**row, "points": [{"source": "reasons.txt", "anchor": "not in the article"}]}
    with pytest.raises(QAError, match="point anchor not found"):
        judge(load_questions(json_lines(tmp_path / "w.jsonl", [wrong])), list(index.iter_passages()))


def _index(encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in DOCUMENTS for p in split_passages(d, max_tokens=128, min_words=1)]
    return LocalIndex.empty(encoder.name, SETTINGS).update(DOCUMENTS, passages, encoder=encoder, settings=SETTINGS)


def test_evaluation_reports_the_points_the_answers_make(tmp_path: Path, encoder: FakeEncoder) -> None:
    rows = [
        {"id": "m1", "question": "Why do defectors return?", "relevant": POINTS[2:], "points": POINTS},
        {"id": "s1", "question": "What rose?", "relevant": [{"source": "reasons.txt", "anchor": "Rice prices"}]},
    ]
    questions = load_questions(json_lines(tmp_path / "q.jsonl", rows))
    [result] = evaluate_questions(
        _index(encoder), questions, encoder=encoder, modes=["hybrid"], abstention=NEVER_ABSTAIN
    )
    assert result.points_per_question["m1"] == {"covered": 3, "points": 3, "fraction": 1.0, "repeats": 0}
    assert "s1" not in result.points_per_question
    assert result.points == {"points_covered": 1.0, "points_made": 3, "points_total": 3, "point_repeats": 0}
    report = EvalReport("q.jsonl", 2, [result], {q.question_id: q.question for q in questions})
    assert "points" in format_table(report).splitlines()[1]
    assert "answers make 3 of 3 labelled points (m1 3/3)" in format_failures(report)
    assert "| points | repeats |" in to_markdown(report, command="qa eval")
    assert report.to_json()["modes"]["hybrid"]["points"]["points_covered"] == 1.0
