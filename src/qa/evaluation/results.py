"""Runs and their scores: each mode's metrics over a question set, and reading JSON Lines input."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.evaluation.metrics import Qrels, Run, evaluate, mean_metrics
from qa.search.modes import Mode

# Hits kept per question: enough for Recall@10, MRR@10 and nDCG@10.
EVAL_DEPTH = 10
# A question counts as failed when no relevant passage is in this many hits.
FAILURE_DEPTH = 5


@dataclass
class ModeResult:
    """One retrieval mode's scores over a question set."""

    mode: str
    metrics: dict[str, float]
    per_question: dict[str, dict[str, float]]
    failed: list[str]
    seconds: float
    abstention: dict[str, float] = field(default_factory=dict)
    false_abstentions: list[str] = field(default_factory=list)
    missed_abstentions: list[str] = field(default_factory=list)
    points: dict[str, float] = field(default_factory=dict)
    points_per_question: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class EvalReport:
    """Every mode's results on one question set."""

    dataset: str
    questions: int
    results: list[ModeResult]
    texts: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The report as the JSON of ``qa eval --json``."""
        return {
            "dataset": self.dataset,
            "questions": self.questions,
            "modes": {r.mode: _mode_json(r) for r in self.results},
        }


def _mode_json(result: ModeResult) -> dict[str, Any]:
    """A mode's results as JSON; the points of answers only for questions that label them."""
    return {k: v for k, v in vars(result).items() if k != "mode" and not (k.startswith("points") and not v)}


def retrieval_result(mode: str, qrels: Qrels, run: Run, seconds: float) -> ModeResult:
    """A mode's metrics over ``run``, with the questions that found nothing relevant in the top five."""
    per_question = evaluate(qrels, run)
    failed = [q for q, m in per_question.items() if m[f"recall_cap@{FAILURE_DEPTH}"] == 0]
    return ModeResult(mode, mean_metrics(per_question), per_question, failed, seconds)


READER_SUFFIX = "+reader"


def runs_of(modes: Sequence[Mode], reader: object | None) -> list[tuple[Mode, bool]]:
    """The runs to score: each mode without the reader, and hybrid again with it when there is one."""
    runs: list[tuple[Mode, bool]] = [(mode, False) for mode in modes]
    if reader is not None and "hybrid" in modes:
        runs.append(("hybrid", True))
    return runs


def run_name(mode: str, with_reader: bool) -> str:
    """A run's name in reports: the mode, ``hybrid+reader`` with the reader."""
    return mode + READER_SUFFIX if with_reader else mode


def progress_bar(items: Sequence[Any], label: str, enabled: bool) -> Any:
    """``items`` with a progress bar on stderr when ``enabled``."""
    from tqdm import tqdm

    return tqdm(items, desc=label, unit=" questions", disable=not enabled, leave=False)


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; anything but a JSON object is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise QAError(f"cannot read {path}: {error}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise QAError(f"{path}, line {number}: invalid JSON ({error})") from error
        if not isinstance(row, dict):
            raise QAError(f"{path}, line {number}: expected a JSON object")
        yield number, row
