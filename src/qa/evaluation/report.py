"""Evaluation results as a terminal table, a Markdown report and a PNG chart."""

from __future__ import annotations

from pathlib import Path

from qa.evaluation.results import EvalReport, ModeResult

COLUMNS = {
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "recall_cap@5": "Rcap@5",
    "mrr@10": "MRR@10",
    "ndcg@10": "nDCG@10",
}
ABSTENTION_COLUMNS = {
    "precision": "abst. P",
    "recall": "abst. R",
    "false_abstention_rate": "false abst.",
    "missed_abstention_rate": "missed abst.",
}


POINT_COLUMNS = {"points_covered": "points", "point_repeats": "repeats"}


def _columns(report: EvalReport) -> dict[str, str]:
    with_abstention = any(result.abstention for result in report.results)
    with_points = any(result.points for result in report.results)
    return {
        **COLUMNS,
        **(ABSTENTION_COLUMNS if with_abstention else {}),
        **(POINT_COLUMNS if with_points else {}),
    }


def _value(result: ModeResult, key: str) -> float:
    return result.metrics.get(key, result.abstention.get(key, result.points.get(key, 0.0)))


def _cell(result: ModeResult, key: str) -> str:
    """A metric as printed: repeats are a count, the rest fractions."""
    value = _value(result, key)
    return f"{value:.0f}" if key == "point_repeats" else f"{value:.3f}"


def format_table(report: EvalReport) -> str:
    """A plain-text table: one row per mode, one column per metric."""
    columns = _columns(report)
    header = ["mode", *columns.values(), "seconds"]
    rows = [[r.mode, *(_cell(r, key) for key in columns), f"{r.seconds:.1f}"] for r in report.results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]]
    title = f"{report.dataset}: {report.questions} questions"
    return "\n".join([title, *lines[:1], "  ".join("-" * w for w in widths), *lines[1:]])


def format_failures(report: EvalReport) -> str:
    """Which questions each mode failed, by id."""
    lines = []
    for result in report.results:
        lines.append(
            f"{result.mode}: no relevant passage in the top 5 for {len(result.failed)}: "
            f"{', '.join(result.failed) or '-'}"
        )
        if result.abstention:
            lines.append(
                f"{result.mode}: false abstentions: {', '.join(result.false_abstentions) or '-'}; "
                f"missed abstentions: {', '.join(result.missed_abstentions) or '-'}"
            )
        if result.points:
            lines.append(f"{result.mode}: {_points_line(result)}")
    return "\n".join(lines)


def _points_line(result: ModeResult) -> str:
    """Points made by the answers, in all and per question ("q35 3/4")."""
    each = ", ".join(f"{q} {c['covered']:.0f}/{c['points']:.0f}" for q, c in result.points_per_question.items())
    made, total = result.points["points_made"], result.points["points_total"]
    return f"answers make {made:.0f} of {total:.0f} labelled points ({each})"


def to_markdown(report: EvalReport, *, command: str) -> str:
    """A Markdown report: the table, then each mode's failed questions with their text."""
    columns = _columns(report)
    lines = [
        f"# Retrieval evaluation: {report.dataset}",
        "",
        f"Command: `{command}`",
        "",
        f"{report.questions} questions.",
        "",
        "| mode | " + " | ".join(columns.values()) + " | seconds |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for result in report.results:
        cells = [_cell(result, key) for key in columns]
        lines.append(f"| {result.mode} | " + " | ".join(cells) + f" | {result.seconds:.1f} |")
    for result in report.results:
        lines += ["", f"## {result.mode}: failed questions", ""]
        lines += _failure_lines("no relevant passage in the top 5", result.failed, report)
        if result.abstention:
            lines += _failure_lines("answered although the corpus has no answer", result.missed_abstentions, report)
            lines += _failure_lines("abstained although the corpus answers", result.false_abstentions, report)
        if result.points:
            lines.append(f"- {_points_line(result)}")
    return "\n".join(lines) + "\n"


def _failure_lines(heading: str, ids: list[str], report: EvalReport) -> list[str]:
    if not ids:
        return [f"- {heading}: none"]
    return [f"- {heading}:", *(f"  - `{i}` {report.texts.get(i, '')}" for i in ids)]


def write_chart(report: EvalReport, path: Path) -> None:
    """A grouped bar chart comparing the modes on each retrieval metric."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display here
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(COLUMNS)
    positions = np.arange(len(keys))
    width = 0.8 / max(1, len(report.results))
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for offset, result in enumerate(report.results):
        values = [result.metrics.get(key, 0.0) for key in keys]
        bars = axes.bar(positions + offset * width, values, width, label=result.mode)
        axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    axes.set_xticks(positions + width * (len(report.results) - 1) / 2, [COLUMNS[k] for k in keys])
    axes.set_ylim(0, 1.08)
    axes.set_title(f"{report.dataset}: {report.questions} questions")
    axes.legend(loc="upper left", ncols=len(report.results), fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
