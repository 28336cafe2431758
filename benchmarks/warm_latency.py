"""``bench.py``'s search and whole-answer latency on a built index, timed twice in one process.

``bench.py`` asks its 100 questions once, right after opening the index, so at a million
passages part of what it times is the first touch of the index's pages. The second pass
here asks the same questions again: the latency of a process that has been serving a while.
Run it with another checkout's ``src`` on ``PYTHONPATH``, in turns, to compare code:

    PYTHONPATH=src .venv/bin/python benchmarks/warm_latency.py INDEX_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench


def main() -> None:
    from qa.index.build import open_index

    index_dir = Path(sys.argv[1])
    index = open_index(index_dir)
    _, encoder = bench.open_or_default(index_dir)
    for name in ("first_pass", "second_pass"):
        print(json.dumps({name: bench.latencies(index, encoder, bench.scifact_questions())}))


if __name__ == "__main__":
    main()
