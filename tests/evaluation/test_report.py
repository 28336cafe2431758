"""Reports of an evaluation: the terminal table, the failure list, Markdown and the PNG chart."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from qa.evaluation.report import format_failures, format_table, to_markdown, write_chart
from qa.evaluation.results import EvalReport, ModeResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RETRIEVAL_LABELS = ["R@1", "R@5", "R@10", "Rcap@5", "MRR@10", "nDCG@10"]
ABSTENTION_LABELS = ["abst. P", "abst. R", "false abst.", "missed abst."]
TEXTS = {
    "q2": "How high did the river rise?",
    "q3": "Who moved the cattle?",
    "q7": "When was the comet seen?",
    "q9": "What is the capital of Mars?",
}


def bm25_result(**changes: object) -> ModeResult:
    result = ModeResult(
        mode="bm25",
        metrics={
            "recall@1": 0.5,
            "recall@5": 0.75,
            "recall@10": 1.0,
            "recall_cap@5": 0.8,
            "mrr@10": 2 / 3,
            "ndcg@10": 0.71234,
            "recall_cap@1": 0.5,  # not a column of the table
        },
        per_question={},
        failed=["q2", "q7"],
        seconds=3.14,
    )
    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]


def dense_result(**changes: object) -> ModeResult:
    result = ModeResult(
        mode="dense",
        metrics={
            "recall@1": 1 / 3,
            "recall@5": 0.0,
            "recall@10": 0.9996,
            "recall_cap@5": 0.25,
            "mrr@10": 0.4,
            "ndcg@10": 0.1,
        },
        per_question={},
        failed=[],
        seconds=12.0,
    )
    return dataclasses.replace(result, **changes)  # type: ignore[arg-type]


ABSTENTION = {"precision": 0.25, "recall": 1.0, "false_abstention_rate": 0.125, "missed_abstention_rate": 0.0}


def report(*results: ModeResult) -> EvalReport:
    return EvalReport(dataset="questions", questions=4, results=list(results), texts=TEXTS)


def table_cells(line: str) -> list[str]:
    """Cells of a table line: right-aligned and separated by at least two spaces."""
    return re.split(r"\s{2,}", line.strip())


# ---------------------------------------------------------------- format_table


def test_table_has_a_row_per_mode_with_three_decimals() -> None:
    lines = format_table(report(bm25_result(), dense_result())).splitlines()
    assert "questions" in lines[0] and "4" in lines[0]
    assert table_cells(lines[1]) == ["mode", *RETRIEVAL_LABELS, "seconds"]
    assert set(lines[2]) == {"-", " "}
    assert [table_cells(line) for line in lines[3:]] == [
        ["bm25", "0.500", "0.750", "1.000", "0.800", "0.667", "0.712", "3.1"],
        ["dense", "0.333", "0.000", "1.000", "0.250", "0.400", "0.100", "12.0"],
    ]
    assert len({len(line) for line in lines[1:]}) == 1  # columns line up


def test_table_has_abstention_columns_when_a_mode_has_abstention_scores() -> None:
    lines = format_table(report(bm25_result(abstention=ABSTENTION), dense_result())).splitlines()
    assert table_cells(lines[1]) == ["mode", *RETRIEVAL_LABELS, *ABSTENTION_LABELS, "seconds"]
    bm25_row, dense_row = (table_cells(line) for line in lines[3:])
    assert bm25_row[7:] == ["0.250", "1.000", "0.125", "0.000", "3.1"]
    assert len(dense_row) == len(bm25_row)
    assert len({len(line) for line in lines[1:]}) == 1


def test_table_without_abstention_scores_has_no_abstention_columns() -> None:
    table = format_table(report(bm25_result(), dense_result()))
    assert not any(label in table for label in ABSTENTION_LABELS)


# ---------------------------------------------------------------- format_failures


def test_failures_list_each_modes_failed_ids_and_abstention_mistakes() -> None:
    text = format_failures(
        report(bm25_result(abstention=ABSTENTION, false_abstentions=["q3"], missed_abstentions=["q9"]), dense_result())
    )
    bm25_lines = [line for line in text.splitlines() if line.startswith("bm25:")]
    dense_lines = [line for line in text.splitlines() if line.startswith("dense:")]
    assert len(bm25_lines) == 2
    assert "q2, q7" in bm25_lines[0]
    assert "false abstentions: q3" in bm25_lines[1]
    assert "missed abstentions: q9" in bm25_lines[1]
    # dense failed nothing and has no abstention scores.
    assert len(dense_lines) == 1
    assert not re.search(r"\bq\d", dense_lines[0])


def test_failures_without_abstention_scores_say_nothing_about_abstention() -> None:
    assert "abstention" not in format_failures(report(bm25_result(), dense_result()))


# ---------------------------------------------------------------- to_markdown


def markdown_sections(markdown: str) -> dict[str, str]:
    """The text under each ``## heading``."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def failure_groups(section: str) -> dict[str, tuple[str, ...]]:
    """Each top-level list item of a section, with the question ids listed under it."""
    groups: dict[str, tuple[str, ...]] = {}
    heading = ""
    for line in section.splitlines():
        if line.startswith("- "):
            heading = line
            groups[heading] = ()
        elif item := re.match(r"\s+- `([^`]+)`", line):
            groups[heading] += (item[1],)
    return groups


def test_markdown_has_the_table_the_command_and_failed_questions() -> None:
    command = "qa eval --questions eval/questions.jsonl --modes bm25,dense"
    markdown = to_markdown(
        report(bm25_result(abstention=ABSTENTION, false_abstentions=["q3"], missed_abstentions=["q9"]), dense_result()),
        command=command,
    )
    lines = markdown.splitlines()
    assert f"`{command}`" in markdown
    header = "| mode | " + " | ".join([*RETRIEVAL_LABELS, *ABSTENTION_LABELS]) + " | seconds |"
    assert header in lines
    table = lines[lines.index(header) : lines.index(header) + 4]
    assert re.fullmatch(r"(\|---)+\|", table[1])
    assert {line.count("|") for line in table} == {header.count("|")}
    assert table[2].startswith("| bm25 | 0.500 | 0.750 |")
    assert table[3].startswith("| dense | 0.333 | 0.000 |")

    sections = markdown_sections(markdown)
    assert set(sections) == {"bm25: failed questions", "dense: failed questions"}
    bm25 = sections["bm25: failed questions"]
    for question_id in ("q2", "q7", "q3", "q9"):
        assert f"`{question_id}` {TEXTS[question_id]}" in bm25
    # Each kind of mistake has its own list, so a reader can tell them apart.
    groups = failure_groups(bm25)
    assert {ids for ids in groups.values() if ids} == {("q2", "q7"), ("q9",), ("q3",)}
    assert "answered" in next(heading for heading, ids in groups.items() if ids == ("q9",))
    assert "abstained" in next(heading for heading, ids in groups.items() if ids == ("q3",))
    # dense failed nothing and has no abstention scores: one list (retrieval failures), and it is empty.
    dense_groups = failure_groups(sections["dense: failed questions"])
    assert len(dense_groups) == 1
    assert list(dense_groups.values()) == [()]


def test_markdown_without_abstention_scores_has_no_abstention_columns() -> None:
    markdown = to_markdown(report(bm25_result(), dense_result()), command="qa eval")
    assert "| mode | " + " | ".join(RETRIEVAL_LABELS) + " | seconds |" in markdown.splitlines()
    assert not any(label in markdown for label in ABSTENTION_LABELS)


# ---------------------------------------------------------------- write_chart


@pytest.mark.parametrize("modes", [1, 2])
def test_chart_is_a_readable_png(tmp_path: Path, modes: int) -> None:
    import matplotlib.image
    import matplotlib.pyplot as plt

    path = tmp_path / "reports" / "chart.png"  # the folder does not exist yet
    figures_before = plt.get_fignums()
    write_chart(report(*[bm25_result(), dense_result()][:modes]), path)

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    height, width, channels = image.shape
    assert channels in (3, 4)
    assert 200 <= height < width <= 4000  # a wide bar chart, not a sliver nor a poster
    assert image[..., :3].std() > 0  # something was drawn
    assert plt.get_fignums() == figures_before  # the figure was closed
