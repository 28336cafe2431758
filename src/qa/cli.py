"""The ``qa`` command line: parse, call the library, print; errors become one line on stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qa.errors import QAError
from qa.records import Hit, Passage, SearchResult, result_to_dict

if TYPE_CHECKING:
    from qa.encoder import Encoder
    from qa.index import PassageIndex

DEFAULT_CORPUS = Path("corpus")
DEFAULT_INDEX = Path("index")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa", description="Ask questions of a folder of articles.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--index", type=Path, default=DEFAULT_INDEX, metavar="DIR", help="index folder (default: index/)"
    )

    index = commands.add_parser("index", parents=[common], help="build or update the index of the corpus")
    index.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, metavar="DIR", help="corpus folder (default: corpus/)"
    )
    index.add_argument(
        "--model",
        help="sentence-transformers model name or folder "
        "(default: $QA_MODEL, else the index's model, else all-MiniLM-L6-v2)",
    )
    index.add_argument("--rebuild", action="store_true", help="re-read and re-embed everything")

    search = commands.add_parser("search", parents=[common], help="find the passages that answer a question")
    search.add_argument("question", nargs="?", help="the question")
    search.add_argument(
        "--batch", type=Path, metavar="FILE", help="one question per line ('-' for stdin), JSON Lines out"
    )
    search.add_argument("--k", type=int, default=5, help="number of passages (default: 5)")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.add_argument("--model", help="model to embed the question with (must be the index's model)")

    passages = commands.add_parser("passages", parents=[common], help="list every indexed passage in order")
    passages.add_argument("--json", action="store_true", help="JSON Lines, one passage per line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = COMMANDS[args.command](args)
        for warning in caught:
            print(f"qa: warning: {warning.message}", file=sys.stderr)
        return status
    except QAError as error:
        print(f"qa: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("qa: interrupted; the index is as it was before this run", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader stopped early (``qa passages | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def run_index(args: argparse.Namespace) -> int:
    from qa.pipeline import chunking_for, encoder_for_corpus, index_corpus

    encoder = encoder_for_corpus(args.index, model=args.model)
    chunking, count_tokens = chunking_for(encoder)
    report = index_corpus(
        args.corpus,
        args.index,
        encoder=encoder,
        chunking=chunking,
        count_tokens=count_tokens,
        rebuild=args.rebuild,
        progress=sys.stderr.isatty(),
    )
    if report.rebuilt_reason:
        print(f"Rebuilt from scratch: {report.rebuilt_reason}.")
    state = "up to date" if report.unchanged else "updated"
    print(
        f"Index {state}: {report.documents} documents, {report.passages} passages "
        f"(added {report.added}, changed {report.changed}, removed {report.removed}; "
        f"{report.embedded} passages embedded) in {report.seconds:.2f} s -> {args.index}/"
    )
    return 0


def run_search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise QAError("--k must be at least 1")
    if (args.question is None) == (args.batch is None):
        raise QAError("give a question, or --batch FILE (not both)")
    from qa.pipeline import open_index

    index, encoder = open_index(args.index, model=args.model)
    if args.batch is not None:
        for question in _read_questions(args.batch):
            print(json.dumps(_batch_row(index, encoder, question, args.k), ensure_ascii=False), flush=True)
        return 0
    question = args.question.strip()
    if not question:
        raise QAError('the question is empty: ask something, e.g. qa search "Why do defectors return?"')
    result = SearchResult(query=question, hits=tuple(index.search(question, encoder=encoder, k=args.k)))
    print(json.dumps(result_to_dict(result), ensure_ascii=False, indent=2) if args.json else format_result(result))
    return 0


def _read_questions(path: Path) -> Iterator[str]:
    if str(path) == "-":
        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    try:
        with path.open(encoding="utf-8") as file:
            yield from (line.rstrip("\n") for line in file)
    except (OSError, UnicodeDecodeError) as error:
        raise QAError(f"cannot read questions from {path}: {error}") from error


def _batch_row(index: PassageIndex, encoder: Encoder, question: str, k: int) -> dict[str, object]:
    # One output line per input line, so answers stay aligned with questions;
    # a blank line gets an error object rather than shifting everything after it.
    question = question.strip()
    if not question:
        return {"query": question, "error": "the question is empty"}
    hits = index.search(question, encoder=encoder, k=k)
    return result_to_dict(SearchResult(query=question, hits=tuple(hits)))


def run_passages(args: argparse.Namespace) -> int:
    from qa.index import PassageIndex

    index = PassageIndex.load(args.index)
    for passage in index.passages:
        print(json.dumps(passage_to_dict(passage), ensure_ascii=False) if args.json else format_passage(passage))
    return 0


def passage_to_dict(passage: Passage) -> dict[str, object]:
    import dataclasses

    return dataclasses.asdict(passage)


def format_attribution(passage: Passage) -> str:
    """``Title — Outlet, date, paragraph N (source)``, leaving out what is unknown."""
    details = [part for part in (passage.outlet, passage.date) if part]
    details.append(f"paragraph {passage.paragraph}")
    return f"{passage.title or passage.source} — {', '.join(details)} ({passage.source})"


def _indented(text: str, width: int) -> str:
    paragraphs = text.split("\n\n")
    return "\n\n".join(textwrap.fill(p, width=width, initial_indent="   ", subsequent_indent="   ") for p in paragraphs)


def format_hit(hit: Hit, width: int = 88) -> str:
    return f"{hit.rank}. [{hit.score:.3f}] {format_attribution(hit.passage)}\n{_indented(hit.passage.text, width)}"


def format_result(result: SearchResult) -> str:
    if not result.hits:
        return "No passages found: the index is empty."
    return "\n\n".join(format_hit(hit) for hit in result.hits)


def format_passage(passage: Passage, width: int = 88) -> str:
    return f"{passage.passage_id}  {format_attribution(passage)}\n{_indented(passage.text, width)}\n"


COMMANDS = {"index": run_index, "search": run_search, "passages": run_passages}


def entry_point() -> None:
    """Console-script entry: exit with ``main``'s status."""
    raise SystemExit(main())
