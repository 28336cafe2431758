"""``qa``'s arguments: the four commands and their options; a mistake is shown with its command's usage."""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Sequence
from pathlib import Path

from qa.embed.encoder import BACKENDS
from qa.index.lock import DEFAULT_WAIT_SECONDS
from qa.reader.choice import READER_CHOICES
from qa.search.modes import MODES

DEFAULT_CORPUS = Path("corpus")
DEFAULT_INDEX = Path("index")
MODEL_HELP = (
    "sentence-transformers model name or folder (default: $QA_MODEL, else the index's model, else all-MiniLM-L6-v2)"
)
BACKEND_HELP = "how the encoder runs (default: $QA_BACKEND, else openvino-bf16-streams)"
STORE_HELP = (
    "where the index lives: milvus-lite:PATH.db (Milvus Lite), milvus://HOST:PORT[/COLLECTION] (a Milvus server; "
    "token from $QA_MILVUS_TOKEN), or a folder (the local index) (default: $QA_STORE, else --index)"
)


def wait_seconds(text: str) -> float:
    """``--wait``: a number of seconds, 0 or more (argparse type)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The ``qa`` argument parser with its four commands."""
    parser = argparse.ArgumentParser(prog="qa", description="Ask questions of a folder of articles.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--index", type=Path, default=DEFAULT_INDEX, metavar="DIR", help="index folder (default: index/)"
    )
    common.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    common.add_argument("--store", metavar="STORE", help=STORE_HELP)
    _add_index_parser(commands, common)
    _add_search_parser(commands, common)
    passages = commands.add_parser("passages", parents=[common], help="list every indexed passage in order")
    passages.add_argument("--json", action="store_true", help="JSON Lines, one passage per line")
    _add_eval_parser(commands, common)
    return parser


def _add_index_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    index = commands.add_parser("index", parents=[common], help="build or update the index of the corpus")
    index.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, metavar="DIR", help="corpus folder (default: corpus/)"
    )
    index.add_argument("--model", help=MODEL_HELP)
    index.add_argument(
        "--rebuild", action="store_true", help="re-read and re-embed everything (and allow most documents to go)"
    )
    index.add_argument(
        "--from-index",
        type=Path,
        metavar="DIR",
        help="with a Milvus --store: copy the local index in DIR into it (its passages, and vectors from its "
        "embedding cache) instead of reading --corpus",
    )
    index.add_argument(
        "--follow-links",
        action="store_true",
        help="also index files that symbolic links out of the corpus folder point to",
    )
    index.add_argument(
        "--wait",
        type=wait_seconds,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for another qa index of the same folder (default: {DEFAULT_WAIT_SECONDS:g}; 0: refuse)",
    )


READER_HELP = (
    "the trained reader re-ranks hybrid search, decides when the articles do not answer and finds the short answer"
    " (default: $QA_READER, else on)"
)


LLM_HELP = (
    "also have your own language model write the answer, citations checked: an OpenAI-compatible server's"
    " address, e.g. http://localhost:11434/v1 (default: $QA_LLM_URL; a key only from $QA_LLM_API_KEY)"
)


def _add_search_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    search = commands.add_parser("search", parents=[common], help="find the passages that answer a question")
    search.add_argument("question", nargs="?", help="the question")
    search.add_argument(
        "--batch", type=Path, metavar="FILE", help="one question per line ('-' for stdin), JSON Lines out"
    )
    search.add_argument("--k", type=int, default=5, help="number of passages (default: 5)")
    search.add_argument("--mode", choices=MODES, default="hybrid", help="retrieval (default: hybrid)")
    search.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="QUESTION",
        help="an earlier question of the conversation (repeat, oldest first)",
    )
    search.add_argument(
        "--doc",
        action="append",
        default=[],
        metavar="DOC",
        help="only this document: its id or file name (with or without the extension) or its title (repeatable)",
    )
    search.add_argument(
        "--outlet", action="append", default=[], help="only this outlet, in any case, 'The' optional (repeatable)"
    )
    search.add_argument(
        "--from", dest="date_from", default="", metavar="YYYY-MM-DD", help="only articles from this date"
    )
    search.add_argument("--to", dest="date_to", default="", metavar="YYYY-MM-DD", help="only articles up to this date")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.add_argument("--model", help="model to embed the question with (must be the index's model)")
    search.add_argument("--reader", choices=READER_CHOICES, help=READER_HELP)
    search.add_argument("--llm", metavar="URL", help=LLM_HELP)
    search.add_argument(
        "--llm-model", metavar="NAME", help="the language model's name on that server (default: $QA_LLM_MODEL)"
    )


def _add_eval_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    evaluation = commands.add_parser("eval", parents=[common], help="measure retrieval quality")
    source = evaluation.add_mutually_exclusive_group(required=True)
    source.add_argument("--questions", type=Path, metavar="FILE", help="labelled questions (JSON Lines) for the index")
    source.add_argument("--beir", type=Path, metavar="DIR", help="a BEIR-format dataset folder")
    evaluation.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    evaluation.add_argument(
        "--modes", default=",".join(reversed(MODES)), help="comma-separated (default: bm25,dense,hybrid)"
    )
    evaluation.add_argument(
        "--no-history", action="store_true", help="ask follow-up questions without their earlier turns"
    )
    evaluation.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_INDEX / "beir",
        metavar="DIR",
        help="where BEIR indexes are kept (default: index/beir)",
    )
    evaluation.add_argument("--model", help=MODEL_HELP)
    evaluation.add_argument(
        "--reader",
        choices=READER_CHOICES,
        help="score hybrid search with the reader too, as hybrid+reader (default: on)",
    )
    evaluation.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluation.add_argument("--report", type=Path, metavar="FILE", help="write a Markdown report")
    evaluation.add_argument("--chart", type=Path, metavar="FILE", help="write a PNG chart comparing the modes")


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``argv`` parsed; a mistake exits with status 2, showing the usage of the command it was made in.

    argparse reports an unknown option with the usage of ``qa`` itself, which
    does not show the options the command has; this shows the command's.
    """
    args, extras = parser.parse_known_args(argv)
    command = _subparser(parser, args.command)
    if extras:
        command.error(f"unrecognized arguments: {' '.join(extras)}{_did_you_mean(command, extras)}")
    if args.command == "search" and args.question is None and args.batch is None:
        command.error('say what to ask: a question (qa search "Why do defectors return?") or --batch FILE')
    if args.command == "search" and args.question is not None and args.batch is not None:
        command.error("give a question or --batch FILE, not both")
    return args


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    subparser: argparse.ArgumentParser = commands.choices[name]
    return subparser


def _did_you_mean(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """`` (did you mean --k?)`` for a mistyped option, from the command's own options."""
    options = [option for action in parser._actions for option in action.option_strings]
    guesses = [
        match
        for extra in extras
        if extra.startswith("-")
        for match in difflib.get_close_matches(extra.split("=", 1)[0], options, n=1, cutoff=0.6)
    ]
    return f" (did you mean {' or '.join(dict.fromkeys(guesses))}?)" if guesses else ""
