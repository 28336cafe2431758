"""A real ``qa index`` process for the crash and lock tests, with the fake encoder and a place to stop.

    python tests/index_worker.py POINT index --corpus DIR --index DIR [...]

runs ``qa.cli.main`` (the command's own code path: lock, build, save) with
``FakeModelEncoder`` in place of the model and batches of ``BATCH`` passages.
When the build reaches ``POINT`` (one of ``POINTS``, or ``none``) it prints
``PAUSED POINT`` and waits for a line on stdin: the test SIGKILLs it there, or
writes a line to let it finish. Only this process is patched; the library is not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from conftest import FakeModelEncoder

BATCH = 4
PAUSE_AT_CALL = 3  # the third batch: two are already embedded and committed to the cache
# Where a build can stop: embedding, inside the cache's SQLite transaction, half-way through
# writing the passage store, before each rename of the save, and just after the manifest's.
POINTS = (
    "embedding",
    "cache-transaction",
    "passages-half-written",
    "vectors-before-rename",
    "bm25-before-rename",
    "manifest-before-rename",
    "manifest-after-rename",
)


def pause(point: str) -> None:
    print(f"PAUSED {point}", flush=True)
    sys.stdin.readline()


class PausingEncoder(FakeModelEncoder):
    point = ""

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.point == "embedding" and len(self.calls) + 1 == PAUSE_AT_CALL:
            pause(self.point)
        return super().encode(texts)


def pause_inside_cache_transaction(cache_path: Path) -> None:
    """Stop the third batch's INSERT part-way, once SQLite has started its rollback journal."""
    import qa.index.embeddings

    real_put_many = qa.index.embeddings.EmbeddingCache.put_many
    journal = cache_path.with_name(f"{cache_path.name}-journal")
    calls: list[str] = []
    steps: list[bool] = []

    def step() -> int:
        steps.append(journal.exists())
        if sum(steps) == 20:  # well inside the transaction, pages already spilled to the file
            pause("cache-transaction")
        return 0

    def put_many(
        cache: qa.index.embeddings.EmbeddingCache, model: str, items: Iterable[tuple[str, np.ndarray]]
    ) -> None:
        calls.append(model)
        if len(calls) == PAUSE_AT_CALL:
            cache._db.execute("PRAGMA cache_size = 1")  # a tiny page cache spills writes before the commit
            cache._db.set_progress_handler(step, 1)
        real_put_many(cache, model, items)

    qa.index.embeddings.EmbeddingCache.put_many = put_many  # type: ignore[method-assign]


def pause_half_way_through_passages() -> None:
    from qa.index.passages import PassageTable

    real_save = PassageTable.save

    def save(table: PassageTable, path: Path) -> None:
        real_save(table, path)
        with path.open("r+b") as file:
            file.truncate(path.stat().st_size // 2)
        pause("passages-half-written")
        real_save(table, path)  # let go: write it whole after all

    PassageTable.save = save  # type: ignore[method-assign]


def pause_at_rename(point: str) -> None:
    prefix, when = point.removesuffix("-rename").rsplit("-", 1)
    real_replace = os.replace

    def replace(source: Any, target: Any) -> None:
        stops = Path(target).name.startswith(prefix)
        if stops and when == "before":
            pause(point)
        real_replace(source, target)
        if stops and when == "after":
            pause(point)

    os.replace = replace  # type: ignore[assignment]


def main(point: str, argv: list[str]) -> int:
    import qa.index.build
    import qa.index.embeddings
    from qa.cli import main as qa_main

    qa.index.embeddings.EMBED_BATCH_SIZE = BATCH
    PausingEncoder.point = point
    qa.index.build.SentenceTransformerEncoder = PausingEncoder  # type: ignore[misc,assignment]
    if point == "cache-transaction":
        pause_inside_cache_transaction(Path(argv[argv.index("--index") + 1]) / qa.index.embeddings.CACHE_NAME)
    elif point == "passages-half-written":
        pause_half_way_through_passages()
    elif point.endswith("-rename"):
        pause_at_rename(point)
    return qa_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2:]))
