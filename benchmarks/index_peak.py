"""The peak memory of a whole `qa index` build of a large corpus folder, in a fresh process.

`bench.py` builds its synthetic million from passages it already holds, so its peak includes
that corpus and the stand-in encoder's vectors. Here the build is `qa index`'s own path
(`index_corpus`: list, read, clean and split every file, embed, build FAISS, BM25, the sentence
vectors and the passage table, save) on a folder of files, with one stand-in: an encoder that
gives each text a fixed random vector (the real model would take hours here), so what is
measured is qa's memory, not a model's. Then a whole `qa index` process is timed on the
unchanged folder: once to record the files' stamps, then as every later run finds them.

    .venv/bin/python benchmarks/index_peak.py --files 100000 --folder /tmp/corpus100k
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import DEFAULT_NAME, _random, peak_memory_mb

WORDS = [
    f"{stem}{ending}" for stem in ("defect", "border", "river", "market", "famil", "soldier") for ending in "abcdefghij"
]


class RandomVectors:
    """A stand-in encoder: a fixed random vector per text (from its hash), nothing held."""

    name = DEFAULT_NAME

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([_random(text) for text in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


def write_corpus(folder: Path, files: int, *, paragraphs: int = 10, seed: int = 0) -> None:
    """``files`` articles of ``paragraphs`` paragraphs (three sentences of about 30 words each)."""
    rng = random.Random(seed)
    for number in range(files):
        path = folder / f"{number // 10_000:03d}" / f"article{number}.txt"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n\n".join(
            " ".join(" ".join(rng.choices(WORDS, k=30)).capitalize() + "." for _ in range(3)) for _ in range(paragraphs)
        )
        path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, required=True, help="the corpus folder (written if missing)")
    parser.add_argument("--index", type=Path, help="build the index here (kept) instead of in a temporary folder")
    parser.add_argument("--unchanged-only", action="store_true", help="only time `qa index` on --index, built before")
    args = parser.parse_args()
    if args.unchanged_only:
        print(json.dumps(unchanged_seconds(args.folder, args.index)))
        return
    write_corpus(args.folder, args.files)
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.index.build import index_corpus, settings_for

    settings, count_tokens = settings_for(SentenceTransformerEncoder(DEFAULT_NAME))  # as `qa index` splits
    with tempfile.TemporaryDirectory() as workdir:
        index_dir = args.index or Path(workdir) / "index"
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")  # VmHWM from here
        before = peak_memory_mb()
        started = time.perf_counter()
        report = index_corpus(
            args.folder, index_dir, encoder=RandomVectors(), settings=settings, count_tokens=count_tokens
        )
        built = {
            "files": args.files,
            "passages": report.passages,
            "sentences_embedded": report.sentences_embedded,
            "build_seconds": round(time.perf_counter() - started, 1),
            "memory_before_mb": before,
            "build_peak_mb": peak_memory_mb(),
        }
        print(json.dumps(built), flush=True)
        print(json.dumps(unchanged_seconds(args.folder, index_dir)))


def unchanged_seconds(folder: Path, index_dir: Path) -> dict[str, float]:
    """A whole `qa index` process on the folder just indexed: the first records the stamps, the next find them."""
    command = [str(Path(sys.executable).parent / "qa"), "index", "--corpus", str(folder), "--index", str(index_dir)]
    times = []
    for _ in range(4):
        started = time.perf_counter()
        # A build that were not unchanged would embed with the real model for hours: bounded, and checked.
        run = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
        times.append(time.perf_counter() - started)
        assert "up to date" in run.stdout, run.stdout + run.stderr
    return {"qa_index_unchanged_first_s": round(times[0], 2), "qa_index_unchanged_s": round(min(times[1:]), 2)}


if __name__ == "__main__":
    main()
