"""BM25 top-100 on a built index: the NumPy MaxScore of a git revision against the compiled kernel, side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/bm25_kernel.py INDEX_DIR [--old REVISION]

The old ``LexicalIndex`` is that revision's ``src/qa/index/lexical.py`` (``git show``), given
the same memory-mapped arrays. For each of 100 SciFact questions old and new run one after
the other (three rounds, the median kept), so a load on the machine hits both alike; each
answer is checked to be the same rows and scores. Then the same with a filter allowing 3% of
the rows. Prints p50 and p95 in ms as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 3
# The last commit whose lexical.py ran MaxScore in NumPy.
BEFORE_KERNEL = "ddb3dbc"


def old_lexical(revision: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{revision}:src/qa/index/lexical.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("old_lexical")
    sys.modules["old_lexical"] = module
    exec(compile(source, f"{revision}:lexical.py", "exec"), module.__dict__)
    return module


def side_by_side(old: object, new: object, questions: list[str], allowed: np.ndarray | None) -> dict[str, float]:
    times: dict[str, list[list[float]]] = {"old": [[] for _ in questions], "new": [[] for _ in questions]}
    for _ in range(ROUNDS):
        for number, question in enumerate(questions):
            answers = []
            for name, index in (("old", old), ("new", new)):
                started = time.perf_counter()
                answers.append(index.top(question, depth=100, allowed=allowed))  # type: ignore[attr-defined]
                times[name][number].append(time.perf_counter() - started)
            (old_rows, old_scores), (new_rows, new_scores) = answers
            assert np.array_equal(old_rows, new_rows) and np.array_equal(old_scores, new_scores), question
    result = {}
    for name, runs in times.items():
        medians = [float(np.median(run)) * 1000 for run in runs]
        result |= {f"{name}_p50_ms": round(float(np.percentile(medians, 50)), 2)}
        result |= {f"{name}_p95_ms": round(float(np.percentile(medians, 95)), 2)}
    return result


def main() -> None:
    from qa.index.lexical import LexicalIndex, query_tokens

    index_dir = Path(sys.argv[1])
    revision = sys.argv[sys.argv.index("--old") + 1] if "--old" in sys.argv else BEFORE_KERNEL
    [bm25_dir] = index_dir.glob("bm25-*")
    new = LexicalIndex.load(bm25_dir)
    arrays = (new._vocabulary, new.offsets_of, new._rows, new._frequencies, new._lengths)
    old = old_lexical(revision).LexicalIndex(*arrays, k1=new.k1, b=new.b, max_impacts=new._max_impacts)
    questions = bench.scifact_questions()[:100]
    for question in questions:
        query_tokens(question)  # tokenized beforehand, as a hybrid search has them
    few = np.random.default_rng(0).random(new.size) < 0.03
    print(json.dumps({"rows": new.size, "unfiltered": side_by_side(old, new, questions, None)}))
    print(json.dumps({"filter_3pct": side_by_side(old, new, questions, few)}))


if __name__ == "__main__":
    main()
