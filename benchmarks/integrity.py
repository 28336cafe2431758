"""What checking an index's files costs: sizes against SHA-256, beside the load itself.

    .venv/bin/python benchmarks/integrity.py --passages 100000

Builds a synthetic index (passages of about 110 random words, random 384-dimension
unit vectors; no model), saves it, then times ``check_files`` with and without
checksums and ``open_index`` with and without them. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_index(size: int, seed: int = 0) -> Any:
    from qa.embed.encoder import normalize
    from qa.index.lexical import LexicalIndex
    from qa.index.local import LocalIndex
    from qa.index.manifest import IndexSettings, Manifest
    from qa.index.vectors import VectorIndex
    from qa.records import Passage

    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i}" for i in range(50_000)])
    # Zipf-like word frequencies, as in real text.
    weights = 1 / np.arange(1, len(vocabulary) + 1)
    words = rng.choice(vocabulary, size=(size, 110), p=weights / weights.sum())
    texts = [" ".join(row) + "." for row in words]
    passages = [Passage(f"s{i}#p1-0", f"s{i}", f"s{i}.txt", 1, 0, len(t), t) for i, t in enumerate(texts)]
    vectors = normalize(rng.normal(size=(size, 384)).astype(np.float32))
    manifest = Manifest("synthetic", 384, "", IndexSettings(254, 12), 0, size, {}, "")
    return LocalIndex([], passages, VectorIndex.build(vectors), LexicalIndex.build(texts), manifest)


def seconds(call: Callable[[], object], repeat: int = 3) -> float:
    """Best of ``repeat`` runs: the files are in the page cache after the first."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(min(times), 3)


def measure(size: int, folder: Path) -> dict[str, Any]:
    import qa.index.manifest
    from qa.index.build import open_index
    from qa.index.manifest import check_files, read_manifest

    index = synthetic_index(size)
    started = time.perf_counter()
    index.save(folder)
    save_seconds = time.perf_counter() - started
    manifest = read_manifest(folder)
    total = sum(check.size for check in manifest.file_checks.values())
    qa.index.manifest.CHECKSUM_LIMIT = 2**62
    with_checksums = seconds(lambda: check_files(folder, manifest))
    load_with = seconds(lambda: open_index(folder))
    qa.index.manifest.CHECKSUM_LIMIT = 0
    sizes_only = seconds(lambda: check_files(folder, manifest))
    load_without = seconds(lambda: open_index(folder))
    return {
        "passages": size,
        "index_mb": round(total / 2**20, 1),
        "save_s_including_checksums": round(save_seconds, 2),
        "check_sizes_s": sizes_only,
        "check_sha256_s": with_checksums,
        "sha256_gb_per_s": round(total / with_checksums / 1e9, 2),
        "load_s_sizes_only": load_without,
        "load_s_with_sha256": load_with,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qa-integrity-") as folder:
        print(json.dumps(measure(args.passages, Path(folder))))


if __name__ == "__main__":
    main()
