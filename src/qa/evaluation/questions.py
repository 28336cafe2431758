"""The project's labelled questions: relevance marked by text anchors, so labels survive re-chunking.

An anchor is a verbatim piece of the answering paragraph: a passage is relevant
when its text contains one. A question without anchors is one the corpus cannot
answer, and scores the abstention.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.embed.encoder import Encoder
from qa.errors import QAError
from qa.evaluation.metrics import Qrels, abstention_scores
from qa.evaluation.results import (
    EVAL_DEPTH,
    ModeResult,
    progress_bar,
    read_json_lines,
    retrieval_result,
    run_name,
    runs_of,
)
from qa.index.store import PassageStore
from qa.reader.model import PassageReader
from qa.records import Passage
from qa.search.abstention import Abstention
from qa.search.ask import ask
from qa.search.evidence import SentenceMemory
from qa.search.modes import Mode


@dataclass(frozen=True)
class Anchor:
    """A verbatim piece of a relevant paragraph of one corpus file."""

    source: str
    text: str


@dataclass(frozen=True)
class AnswerPoint:
    """One point a full answer makes, stated in any of its anchors ("avoiding criminal charges")."""

    label: str
    anchors: tuple[Anchor, ...]


@dataclass(frozen=True)
class LabelledQuestion:
    """A question with its relevant paragraphs; no anchors means the corpus cannot answer it.

    ``points`` are the distinct points a full answer makes, for questions that ask for several.
    """

    question_id: str
    question: str
    kind: str
    anchors: tuple[Anchor, ...]
    history: tuple[str, ...] = ()
    points: tuple[AnswerPoint, ...] = ()

    @property
    def answerable(self) -> bool:
        """Whether the corpus answers the question (it has anchors)."""
        return bool(self.anchors)


def load_questions(path: Path) -> list[LabelledQuestion]:
    """Read labelled questions (JSON Lines); a conversation's ``turns`` become history and question."""
    questions = []
    for number, row in read_json_lines(path):
        try:
            turns = row.get("turns") or [row["question"]]
            anchors = tuple(Anchor(a["source"], a["anchor"]) for a in row.get("relevant", []))
            points = tuple(_answer_point(point) for point in row.get("points", []))
            questions.append(
                LabelledQuestion(
                    question_id=str(row["id"]),
                    question=turns[-1],
                    kind=row.get("kind", "conversation" if "turns" in row else "single"),
                    anchors=anchors,
                    history=tuple(turns[:-1]),
                    points=points,
                )
            )
        except (KeyError, TypeError, IndexError) as error:
            raise QAError(f"{path}, line {number}: not a labelled question ({error!r})") from error
    return questions


def _answer_point(row: dict[str, Any]) -> AnswerPoint:
    """A point: ``{"point": label, "anchors": [{"source", "anchor"}, ...]}``, or one ``{"source", "anchor"}``."""
    anchors = row.get("anchors", [row])
    return AnswerPoint(
        label=str(row.get("point", anchors[0]["anchor"])),
        anchors=tuple(Anchor(a["source"], a["anchor"]) for a in anchors),
    )


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def judge(questions: Sequence[LabelledQuestion], passages: Sequence[Passage]) -> Qrels:
    """Relevance of passages to questions: passages containing one of the question's anchors.

    An anchor found in no passage means the labels no longer fit the corpus,
    which is an error rather than a silent zero.
    """
    texts = [(p.source, p.passage_id, _squeeze(p.text)) for p in passages]
    qrels: dict[str, dict[str, int]] = {}
    for question in questions:
        judged: dict[str, int] = {}
        for anchor in question.anchors:
            wanted = _squeeze(anchor.text)
            matches = [pid for source, pid, text in texts if source == anchor.source and wanted in text]
            if not matches:
                raise QAError(f"question {question.question_id}: anchor not found in {anchor.source}: {anchor.text!r}")
            judged.update(dict.fromkeys(matches, 1))
        for point in question.points:
            for anchor in point.anchors:
                wanted = _squeeze(anchor.text)
                if not any(source == anchor.source and wanted in text for source, _, text in texts):
                    raise QAError(
                        f"question {question.question_id}: point anchor not found in {anchor.source}: {anchor.text!r}"
                    )
        qrels[question.question_id] = judged
    return qrels


def points_covered(answer: str, points: Sequence[AnswerPoint]) -> dict[str, float]:
    """How many of ``points`` an answer makes, and how many of its cited sentences only repeat one already made.

    A point is made by a cited sentence (the text before each ``[n]``) holding
    one of the point's anchors. A sentence that makes only points made before
    it is a repeat; a sentence that makes none is neither.

    Returns:
        ``covered`` and ``points`` (counts), ``fraction`` (covered / points) and ``repeats``.
    """
    units = [_squeeze(unit) for unit in re.split(r"\[\d+\]", answer)]
    made: set[int] = set()
    repeats = 0
    for unit in units:
        found = {i for i, point in enumerate(points) if any(_squeeze(a.text) in unit for a in point.anchors)}
        if found and found <= made:
            repeats += 1
        made |= found
    total = len(points)
    return {"covered": len(made), "points": total, "fraction": len(made) / total if total else 0.0, "repeats": repeats}


def evaluate_questions(
    store: PassageStore,
    questions: Sequence[LabelledQuestion],
    *,
    encoder: Encoder,
    modes: Sequence[Mode],
    abstention: Abstention | None = None,
    use_history: bool = True,
    reader: PassageReader | None = None,
    progress: bool = False,
) -> list[ModeResult]:
    """Ask every question in every mode; score retrieval and abstention.

    ``abstention`` defaults to the thresholds calibrated for the encoder's model (and the
    reader), as users get them. With a ``reader``, hybrid search is scored twice: without it
    and with it (``hybrid+reader``).
    """
    qrels = judge(questions, list(store.iter_passages()))
    sentences = SentenceMemory()
    results = []
    for mode, with_reader in runs_of(modes, reader):
        name = run_name(mode, with_reader)
        started = time.perf_counter()
        run: dict[str, dict[str, float]] = {}
        abstained: dict[str, bool] = {}
        covered: dict[str, dict[str, float]] = {}
        for question in progress_bar(questions, f"{name} questions", progress):
            history = question.history if use_history else ()
            answer = ask(
                store,
                question.question,
                encoder=encoder,
                k=EVAL_DEPTH,
                mode=mode,
                history=history,
                abstention=abstention,
                sentences=sentences,
                reader=reader if with_reader else None,
            )
            run[question.question_id] = {hit.passage.passage_id: -hit.rank for hit in answer.hits}
            abstained[question.question_id] = not answer.answerable
            if question.points:
                covered[question.question_id] = points_covered(
                    answer.answer if answer.answerable else "", question.points
                )
        result = retrieval_result(name, qrels, run, time.perf_counter() - started)
        _score_abstention(result, abstained, questions)
        _score_points(result, covered)
        results.append(result)
    return results


def _score_abstention(result: ModeResult, abstained: dict[str, bool], questions: Sequence[LabelledQuestion]) -> None:
    should_abstain = {q.question_id: not q.answerable for q in questions}
    result.abstention = abstention_scores(should_abstain, abstained)
    result.false_abstentions = [q for q, a in abstained.items() if a and not should_abstain[q]]
    result.missed_abstentions = [q for q, a in abstained.items() if not a and should_abstain[q]]


def _score_points(result: ModeResult, covered: dict[str, dict[str, float]]) -> None:
    """The answers' points: the mean fraction covered per question, all points covered, and repeats."""
    if not covered:
        return
    result.points_per_question = covered
    result.points = {
        "points_covered": sum(c["fraction"] for c in covered.values()) / len(covered),
        "points_made": sum(c["covered"] for c in covered.values()),
        "points_total": sum(c["points"] for c in covered.values()),
        "point_repeats": sum(c["repeats"] for c in covered.values()),
    }
