"""Loading the documents of a million-passage corpus: version 4's JSON Lines against the SQLite table, side by side.

The 100,000 synthetic articles of ``bench.py``'s 1M scale (ten passages each, their text in
the index as ``qa index`` stores it) are written both ways; each is then loaded in a fresh
process, as an index opens, timing the load and the memory it holds:

    .venv/bin/python benchmarks/documents_load.py [--passages 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

LOAD = {
    # How format 4 opened its documents (qa.index.local before DocumentTable): every line parsed.
    "jsonl": (
        "from qa.records import Document; import json;"
        "documents = [Document(**{**row, 'paragraphs': tuple(row['paragraphs'])})"
        " for row in map(json.loads, open(PATH, encoding='utf-8'))]"
    ),
    "sqlite": "from qa.index.documents import DocumentTable; documents = DocumentTable.open(Path(PATH))",
}


def load_in_fresh_process(kind: str, path: Path) -> dict[str, float]:
    code = (
        "import sys, time; from pathlib import Path;"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench; PATH = {str(path)!r};"
        "import qa.records, qa.index.documents; before = bench.resident_memory_mb(); t = time.perf_counter();"
        f"{LOAD[kind]}; t = time.perf_counter() - t;"
        "print(t, bench.resident_memory_mb() - before, len(documents))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, held, count = run.stdout.split()
    return {"documents": int(count), "load_seconds": round(float(seconds), 2), "memory_held_mb": round(float(held))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=1_000_000)
    args = parser.parse_args()
    from qa.index.documents import DocumentTable
    from qa.index.files import document_to_json

    texts, _ = bench.synthetic_corpus(args.passages)
    documents = bench.synthetic_documents(texts, "s")
    del texts
    with tempfile.TemporaryDirectory(prefix="qa-documents-") as folder:
        jsonl, sqlite = Path(folder) / "documents.jsonl", Path(folder) / "documents.sqlite"
        with jsonl.open("w", encoding="utf-8") as file:
            for document in documents:  # as format 4 wrote them
                file.write(json.dumps(document_to_json(document), ensure_ascii=False) + "\n")
        DocumentTable.of(documents).save(sqlite)
        del documents
        for kind, path in (("jsonl", jsonl), ("sqlite", sqlite)):
            size = round(path.stat().st_size / 2**20)
            print(json.dumps({"format": kind, "file_mb": size, **load_in_fresh_process(kind, path)}), flush=True)


if __name__ == "__main__":
    main()
