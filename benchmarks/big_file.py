"""Reading, cleaning and splitting one very large corpus file: seconds and peak memory per shape.

    .venv/bin/python benchmarks/big_file.py [--mb 50] [--shapes articles,one-line,...] [--approximate]

Each shape is written to a temporary folder as one file of about ``--mb`` megabytes, then a
fresh Python process reads it as ``qa index`` does (``qa.ingest.corpus.load_document``: decode, clean
or extract) and splits it into passages (``qa.ingest.split.split_passages`` with the bundled model's
tokenizer, or the approximate counter with ``--approximate``). Embedding is not included: at
the measured passages per second it is the part that grows with the file, and it shows a
progress bar. Peak memory is the child process's high-water resident set (``VmHWM``).

Shapes: ``articles`` (paragraphs of prose between menu lines, UTF-8), ``korean-cp949``
(Korean prose in CP949, so the encoding detector runs), ``one-line`` (one paragraph with no
line break), ``wrapped`` (one paragraph hard-wrapped at 72 columns), ``short-lines`` (a list
of short distinct lines, no prose), ``no-spaces`` (one word, as Markdown so it is not
dropped as boilerplate), ``html`` (an HTML page of ``<p>`` paragraphs, through trafilatura).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

WORDS = [
    "defector", "family", "border", "regime", "money", "school", "river", "bridge", "army", "letter",
    "phone", "market", "court", "prison", "village", "soldier", "trader", "report", "winter", "patrol",
]  # fmt: skip
KOREAN = (
    "탈북민들이 북한으로 다시 돌아가는 이유는 여러 가지가 있다고 전문가들은 말했다. "
    "남한 사회에 적응하지 못하거나 북에 남은 가족이 걱정되어 돌아가는 경우가 많다고 한다."
)


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 25))).capitalize() + "."


def _until(size: int, make: Callable[[int], str]) -> str:
    parts, total, i = [], 0, 0
    while total < size:
        part = make(i)
        parts.append(part)
        total += len(part.encode())
        i += 1
    return "".join(parts)


def articles(size: int, rng: random.Random) -> bytes:
    def block(i: int) -> str:
        if i % 7 == 0:
            return "Home\nNews\nLogin\nShare\n\n"
        return " ".join(_sentence(rng) for _ in range(rng.randint(1, 6))) + "\n\n"

    return _until(size, block).encode()


def korean_cp949(size: int, rng: random.Random) -> bytes:
    return _until(size * 2 // 3, lambda i: f"({i}) {KOREAN}\n\n").encode("cp949")


def one_line(size: int, rng: random.Random) -> bytes:
    return _until(size, lambda i: _sentence(rng) + " ").encode()


def wrapped(size: int, rng: random.Random) -> bytes:
    return textwrap.fill(one_line(size, rng).decode().lower(), 72).encode()


def short_lines(size: int, rng: random.Random) -> bytes:
    return _until(size, lambda i: f"item {i} {rng.choice(WORDS)}\n").encode()


def no_spaces(size: int, rng: random.Random) -> bytes:
    return b"abcdefghij" * (size // 10) + b"."


def html(size: int, rng: random.Random) -> bytes:
    body = _until(size, lambda i: f"<p>{' '.join(_sentence(rng) for _ in range(3))}</p>\n")
    return f"<html><head><title>A long page</title></head><body><article>{body}</article></body></html>".encode()


SHAPES = {
    "articles": (articles, ".txt"),
    "korean-cp949": (korean_cp949, ".txt"),
    "one-line": (one_line, ".txt"),
    "wrapped": (wrapped, ".txt"),
    "short-lines": (short_lines, ".txt"),
    "no-spaces": (no_spaces, ".md"),
    "html": (html, ".html"),
}

CHILD = """
import json, sys, time, warnings
from pathlib import Path
from qa.ingest.corpus import CorpusFile, file_checksum, load_document
from qa.ingest.split import approximate_token_count, split_passages

def peak_mb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) parent across exec.
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
    return round(int(line.split()[1]) / 1024)

path, approximate = Path(sys.argv[1]), sys.argv[2] == "1"
count = approximate_token_count
if not approximate:
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.embed.models import DEFAULT_MODEL
    count = SentenceTransformerEncoder(DEFAULT_MODEL).token_counter() or approximate_token_count
started = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    document = load_document(CorpusFile(path, path.name, file_checksum(path)))
read = time.perf_counter()
passages = split_passages(document, max_tokens=254, count_tokens=count) if document else []
done = time.perf_counter()
print(json.dumps({
    "read_s": round(read - started, 2), "split_s": round(done - read, 2),
    "paragraphs": len(document.paragraphs) if document else 0, "passages": len(passages),
    "encoding": document.encoding if document else None,
    "warnings": [str(w.message)[:120] for w in caught],
    "peak_mb": peak_mb(),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of each file in megabytes (default: 50)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated (default: all)")
    parser.add_argument("--approximate", action="store_true", help="count tokens without the model's tokenizer")
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    with tempfile.TemporaryDirectory() as folder:
        for shape in args.shapes.split(","):
            make, suffix = SHAPES[shape]
            path = Path(folder) / f"{shape}{suffix}"
            path.write_bytes(make(size, random.Random(0)))
            child = [sys.executable, "-c", CHILD, str(path), "1" if args.approximate else "0"]
            result = subprocess.run(child, capture_output=True, text=True, check=False)
            row = json.loads(result.stdout) if result.returncode == 0 else {"error": result.stderr[-500:]}
            print(json.dumps({"shape": shape, "mb": round(path.stat().st_size / 1e6, 1), **row}), flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
