"""Draw qa and its peers against corpus size: query latency and memory, one line per system.

    .venv/bin/python benchmarks/chart.py [--out benchmarks/results/scale.png]

Reads ``benchmarks/results/bench.json`` (qa at seed, SciFact, 100k and 1M passages; the
``-mixture`` variants are left out), ``peer_txtai.json`` and ``peer_lancedb.json``, and draws two
panels against passages (log scale): search p50 (ms) and memory (MB). A system has a point only
where it was measured; a missing file or key just leaves points out.

Memory is the serving memory (a fresh process that opens the index and answers once) where it
was measured, else the peak of the whole run, index build included (hollow markers): qa at seed
and SciFact, LanceDB on SciFact. txtai's run recorded no memory.

qa's lines come from bench.py's run; crosses and pluses mark qa as measured in each peer's own run
(``peer_txtai.py``, ``peer_lancedb.py``: the two side by side, under the same load), which is
the figure to compare a peer's point with.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Point:
    passages: int
    value: float
    with_build: bool = False  # a run's peak memory, index build included, not serving memory


@dataclass
class Line:
    label: str
    color: str
    marker: str
    points: list[Point] = field(default_factory=list)
    connect: bool = True  # False: points from separate runs, no line between them

    def add(self, passages: Any, value: Any, *, with_build: bool = False) -> None:
        """A point, if both figures are there."""
        if isinstance(passages, (int, float)) and isinstance(value, (int, float)):
            self.points.append(Point(int(passages), float(value), with_build))


def read(name: str) -> Any:
    path = RESULTS / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def memory_of(row: dict[str, Any]) -> tuple[Any, bool]:
    """Serving memory if measured, else the run's peak (build included)."""
    if "serving_memory_mb" in row:
        return row["serving_memory_mb"], False
    return row.get("peak_memory_mb"), True


def qa_lines(bench: list[dict[str, Any]] | None) -> tuple[Line, Line, Line]:
    """The search and whole-answer latency of qa, and its memory (one process does both), from bench.json."""
    search = Line("qa search", "tab:blue", "o")
    answer = Line("qa whole answer (reader off)", "tab:blue", "s")
    memory = Line("qa", "tab:blue", "o")
    for row in bench or []:
        if "-" in str(row.get("scale", "")):  # 100k-mixture etc.: the same sizes with other synthetic vectors
            continue
        passages = row.get("passages")
        search.add(passages, row.get("search_p50_ms"))
        answer.add(passages, row.get("ask_p50_ms"))
        value, with_build = memory_of(row)
        memory.add(passages, value, with_build=with_build)
    return search, answer, memory


def txtai_line(report: dict[str, Any] | None) -> Line:
    line = Line("txtai hybrid", "tab:green", "^")
    if report:
        for system in report.get("systems", []):
            if str(system.get("system", "")).startswith("txtai"):
                line.add(report.get("documents"), system.get("query_p50_ms"))
                break
    return line


def qa_beside_peers(txtai: dict[str, Any] | None, lancedb: dict[str, Any] | None) -> tuple[Line, Line, Line]:
    """Qa's search latency (and memory) as measured in each peer's own run, under the same load as the peer."""
    in_txtai = Line("qa search, in txtai's run", "tab:blue", "x", connect=False)
    in_lancedb = Line("qa search, in LanceDB's run", "tab:blue", "P", connect=False)
    memory = Line("qa, in LanceDB's run", "tab:blue", "P", connect=False)
    for report, line in ((txtai, in_txtai), (lancedb, in_lancedb)):
        if not report:
            continue
        for system in report.get("systems", []):
            if system.get("system") == "qa hybrid, search only":
                line.add(report.get("documents"), system.get("query_p50_ms"))
                if line is in_lancedb:
                    memory.add(report.get("documents"), system.get("peak_memory_mb"), with_build=True)
    return in_txtai, in_lancedb, memory


def lancedb_lines(report: dict[str, Any] | None) -> tuple[Line, Line]:
    search = Line("LanceDB hybrid", "tab:orange", "D")
    memory = Line("LanceDB", "tab:orange", "D")
    scifact = (report or {}).get("scifact") or {}
    for system in scifact.get("systems", []):
        if str(system.get("system", "")).startswith("LanceDB"):
            search.add(scifact.get("documents"), system.get("query_p50_ms"))
            memory.add(scifact.get("documents"), system.get("peak_memory_mb"), with_build=True)
    for row in sorted(((report or {}).get("scales") or {}).values(), key=lambda r: r.get("passages", 0)):
        search.add(row.get("passages"), row.get("search_p50_ms"))
        value, with_build = memory_of(row)
        memory.add(row.get("passages"), value, with_build=with_build)
    return search, memory


def draw(axes: Any, lines: list[Line], *, dashed: tuple[str, ...] = ()) -> None:
    for line in lines:
        if not line.points:
            continue
        points = sorted(line.points, key=lambda p: p.passages)
        x = [p.passages for p in points]
        y = [p.value for p in points]
        style = ("--" if line.label in dashed else "-") if line.connect else "none"
        axes.plot(x, y, linestyle=style, marker=line.marker, color=line.color, label=line.label, markersize=7)
        for p in points:
            if p.with_build:
                axes.plot(p.passages, p.value, line.marker, color=line.color, markerfacecolor="white", markersize=7)


def chart(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    qa_search, qa_answer, qa_memory = qa_lines(read("bench.json"))
    lancedb, txtai_report = read("peer_lancedb.json"), read("peer_txtai.json")
    lance_search, lance_memory = lancedb_lines(lancedb)
    txtai = txtai_line(txtai_report)
    qa_in_txtai, qa_in_lancedb, qa_memory_there = qa_beside_peers(txtai_report, (lancedb or {}).get("scifact"))

    figure, (latency, memory) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    draw(latency, [qa_search, qa_answer, qa_in_txtai, txtai, qa_in_lancedb, lance_search], dashed=(qa_answer.label,))
    draw(memory, [qa_memory, qa_memory_there, lance_memory])

    sizes = sorted({p.passages for line in (qa_search, txtai, lance_search, qa_memory) for p in line.points})
    for axes in (latency, memory):
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(sizes)
        axes.set_xticklabels([f"{s:,}" if s < 100_000 else f"{s // 1000:,}k" if s < 10**6 else "1M" for s in sizes])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("corpus size (passages, log scale)")
        axes.grid(True, which="major", alpha=0.3)
    latency.set_ylabel("query latency, median (ms, log scale)")
    latency.set_title("Search p50: one query at a time, query encoding included")
    latency.legend(loc="best", fontsize=9)
    memory.set_ylabel("memory (MB, log scale)")
    memory.set_title("Memory: serving (filled) or run peak with build (hollow)")
    handles, labels = memory.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle=""))
    labels.append("peak of the run, build included")
    memory.legend(handles, labels, loc="best", fontsize=9)
    figure.suptitle("qa and its peers by corpus size (2-core CPU, all-MiniLM-L6-v2 for every system)")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"written: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.png")
    chart(parser.parse_args().out)


if __name__ == "__main__":
    main()
