"""The ``qa`` command line: parse, call the library, print; errors become one line on stderr."""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qa.cli_format import emphasized, format_passage, format_result
from qa.cli_format import say as _say
from qa.cli_format import tell as _tell
from qa.cli_written import chat_model, stream_written, writer, written
from qa.embed.encoder import BACKENDS
from qa.errors import QAError
from qa.index.lock import DEFAULT_WAIT_SECONDS
from qa.reader.choice import READER_CHOICES
from qa.records import Passage, SearchResult, result_to_dict
from qa.safe_text import json_text, terminal_text
from qa.search.modes import MODES, Mode, parse_modes
from qa.search.question import EmptyQuestionError, Question, clipped_notice, normalize_question

if TYPE_CHECKING:
    from qa.embed.encoder import Encoder
    from qa.evaluation.results import EvalReport
    from qa.index.prepare import IndexReport
    from qa.index.spec import StoreSpec
    from qa.index.store import PassageStore, SearchFilter
    from qa.reader.model import PassageReader
    from qa.search.evidence import SentenceMemory
    from qa.search.written import Writing

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``qa`` with ``argv``; a ``QAError`` becomes one line on stderr and status 1.

    A mistake in the arguments exits with status 2 and the usage of the command it was made in.
    """
    args = parse_arguments(build_parser(), argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return COMMANDS[args.command](args)
            finally:
                # Also when the command fails: the skipped files may be why (nothing left to index).
                for warning in caught:
                    if issubclass(warning.category, UserWarning):
                        _tell(f"qa: warning: {warning.message}")
    except QAError as error:
        _tell(f"qa: error: {error}")
        return 1
    except KeyboardInterrupt:
        _tell("qa: interrupted; the index is as it was before this run")
        return 130
    except BrokenPipeError:
        # The reader stopped early (``qa passages | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        # A file the library does not turn into a QAError itself (a --report path, say): still one line.
        where = f": {error.filename}" if error.filename else ""
        _tell(f"qa: error: {error.strerror or error}{where}")
        return 1


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


def run_index(args: argparse.Namespace) -> int:
    """``qa index``: build or update the index and say what changed."""
    from qa.index.build import encoder_for_corpus, index_corpus, settings_for

    store = _store(args)
    index_dir = store.path if store.is_local and store.path is not None else args.index
    encoder = encoder_for_corpus(index_dir, model=args.model, backend=args.backend, store=store)
    settings, count_tokens = settings_for(encoder)
    if args.from_index is not None:
        report = _copy_local_index(args, store)
    else:
        report = index_corpus(
            args.corpus,
            index_dir,
            encoder=encoder,
            settings=settings,
            count_tokens=count_tokens,
            rebuild=args.rebuild,
            progress=sys.stderr.isatty(),
            wait=args.wait,
            follow_links=args.follow_links,
            allow_mass_removal=args.rebuild,
            on_wait=lambda message: _tell(f"qa: {message}"),
            store=store,
        )
    if report.rebuilt_reason:
        _say(f"Rebuilt from scratch: {report.rebuilt_reason}.")
    for source, encoding in report.decoded:
        _say(f"Decoded {source} as {encoding} (not UTF-8).")
    state = "up to date" if report.unchanged else "updated"
    _say(
        f"Index {state}: {report.documents} documents, {report.passages} passages "
        f"(added {report.added}, changed {report.changed}, removed {report.removed}; "
        f"{report.embedded} passages and {report.sentences_embedded} sentences embedded) "
        f"in {report.seconds:.2f} s -> {store.describe()}"
    )
    return 0


def _copy_local_index(args: argparse.Namespace, store: StoreSpec) -> IndexReport:
    """``qa index --store MILVUS --from-index DIR``: the local index copied into Milvus."""
    from qa.index.build import encoder_for_corpus

    if store.is_local:
        raise QAError(
            "--from-index copies a local index into Milvus", fix="give --store milvus-lite:... or milvus://..."
        )
    from qa.index.milvus_build import index_from_local

    encoder = encoder_for_corpus(args.from_index, model=args.model, backend=args.backend)
    return index_from_local(
        args.from_index,
        store,
        encoder=encoder,
        progress=sys.stderr.isatty(),
        wait=args.wait,
        on_wait=lambda message: _tell(f"qa: {message}"),
    )


def _store(args: argparse.Namespace) -> StoreSpec:
    """The index the command uses: ``--store``, else ``$QA_STORE``, else the local index in ``--index``."""
    from qa.index.spec import store_spec

    return store_spec(args.store, args.index)


def run_search(args: argparse.Namespace) -> int:
    """``qa search``: answer one question, or a batch of them as JSON Lines."""
    if args.k < 1:
        raise QAError("--k must be at least 1")
    from qa.index.build import open_store
    from qa.reader.model import reader_for
    from qa.search.evidence import SentenceMemory
    from qa.search.filters import resolve_filter

    model = chat_model(args.llm, args.llm_model)  # before anything slow: a wrong --llm is refused at once
    if args.batch is None:
        try:
            question = normalize_question(args.question)
        except EmptyQuestionError as error:
            raise QAError(f'{error}: ask something, e.g. qa search "Why do defectors return?"') from error
    store = _store(args)
    index = open_store(store)
    if not index.summary().passages:
        raise QAError(
            f"the index in {store.path if store.is_local else store.describe()} is empty: "
            "it holds no passages to search",
            fix="put articles in the corpus folder and run `qa index`",
        )
    # Checked before the model loads: a mistyped --doc or --outlet is an error listing what exists.
    where = resolve_filter(
        index, documents=args.doc, outlets=args.outlet, date_from=args.date_from, date_to=args.date_to
    )
    encoder = _encoder_for(index.model, args)
    sentences = SentenceMemory()  # a batch of questions shares them
    ask_one = _asker(index, encoder, args, where, reader_for(args.reader), sentences=sentences)
    write = writer(model, index, encoder, sentences, args.after) if model else None
    if args.batch is not None:
        for number, line in enumerate(_read_questions(args.batch), 1):
            print(json_text(_batch_row(ask_one, line, number, write)), flush=True)
        return 0
    _warn_if_clipped(question)
    result = ask_one(question.text)
    if args.json:
        if write is not None:
            result = written(write(result, stream=False))
        print(json_text(result_to_dict(result), indent=2))
        return 0
    if result.short_answer and sys.stdout.isatty():
        print(emphasized(terminal_text(format_result(result)), terminal_text(result.short_answer)))
    else:
        _say(format_result(result))
    if write is not None:
        stream_written(write(result, stream=True))
    return 0


def _batch_row(
    ask_one: Callable[[str], SearchResult], line: str, number: int, write: Callable[..., Writing] | None
) -> dict[str, object]:
    """One line of ``--batch`` output: the result, or the error for an empty line (one line out per line in)."""
    try:
        question = normalize_question(line)
    except EmptyQuestionError as error:
        return {"query": "", "error": str(error)}
    _warn_if_clipped(question, f"line {number}: ")
    result = ask_one(question.text)
    if write is not None:
        result = written(write(result, stream=False), f"line {number}: ")
    return result_to_dict(result)


def _warn_if_clipped(question: Question, where: str = "") -> None:
    if question.clipped:
        _tell(f"qa: warning: {where}{clipped_notice(question)}")


def _encoder_for(index_model: str, args: argparse.Namespace) -> Encoder:
    """The encoder asked for (``--model``, ``$QA_MODEL``), else the index's own; another model is refused."""
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.embed.models import model_from_environment
    from qa.index.store import check_model

    name = model_from_environment(args.model) or index_model
    check_model(index_model, name)
    return SentenceTransformerEncoder(name, backend=args.backend)


def _asker(
    store: PassageStore,
    encoder: Encoder,
    args: argparse.Namespace,
    where: SearchFilter,
    reader: PassageReader | None,
    *,
    sentences: SentenceMemory,
) -> Callable[[str], SearchResult]:
    from qa.search.ask import ask

    def ask_one(question: str) -> SearchResult:
        return ask(
            store,
            question,
            encoder=encoder,
            k=args.k,
            mode=args.mode,
            history=args.after,
            where=where,
            sentences=sentences,
            reader=reader,
        )

    return ask_one


def _read_questions(path: Path) -> Iterator[str]:
    try:
        if str(path) == "-":
            yield from (line.rstrip("\n") for line in sys.stdin)
            return
        with path.open(encoding="utf-8") as file:
            yield from (line.rstrip("\n") for line in file)
    except (OSError, UnicodeDecodeError) as error:
        source = "standard input" if str(path) == "-" else path
        raise QAError(f"cannot read questions from {source}: {error}") from error


def run_passages(args: argparse.Namespace) -> int:
    """``qa passages``: every indexed passage, in order."""
    from qa.index.build import open_store

    for passage in open_store(_store(args)).iter_passages():
        if args.json:
            print(json_text(passage_to_dict(passage)))
        else:
            _say(format_passage(passage))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``qa eval``: score the modes on labelled questions or a BEIR dataset."""
    modes = parse_modes(args.modes)
    report = _beir_report(args, modes) if args.beir else _questions_report(args, modes)
    from qa.evaluation.report import format_failures, format_table, to_markdown, write_chart

    if args.json:
        print(json.dumps(report.to_json(), indent=2))  # ASCII: every other character escaped
    else:
        _say(f"{format_table(report)}\n\n{format_failures(report)}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(to_markdown(report, command="qa " + " ".join(sys.argv[1:])), encoding="utf-8")
    if args.chart:
        write_chart(report, args.chart)
    return 0


def _questions_report(args: argparse.Namespace, modes: list[Mode]) -> EvalReport:
    from qa.evaluation.questions import evaluate_questions, load_questions
    from qa.evaluation.results import EvalReport
    from qa.index.build import open_store
    from qa.reader.model import reader_for

    questions = load_questions(args.questions)
    index = open_store(_store(args))
    results = evaluate_questions(
        index,
        questions,
        encoder=_encoder_for(index.model, args),
        modes=modes,
        use_history=not args.no_history,
        reader=reader_for(args.reader),
        progress=sys.stderr.isatty(),
    )
    texts = {q.question_id: " / ".join([*q.history, q.question]) for q in questions}
    return EvalReport(args.questions.name, len(questions), results, texts)


def _beir_report(args: argparse.Namespace, modes: list[Mode]) -> EvalReport:
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.embed.models import DEFAULT_MODEL, model_from_environment
    from qa.evaluation.beir import beir_index, evaluate_beir, load_beir
    from qa.evaluation.results import EvalReport
    from qa.index.build import settings_for
    from qa.reader.model import reader_for

    dataset = load_beir(args.beir, split=args.split)
    encoder = SentenceTransformerEncoder(model_from_environment(args.model) or DEFAULT_MODEL, backend=args.backend)
    settings, _ = settings_for(encoder)
    index = beir_index(
        dataset,
        args.cache,
        store=None if (store := _store(args)).is_local else store,
        encoder=encoder,
        settings=settings,
        progress=sys.stderr.isatty(),
        on_wait=lambda message: _tell(f"qa: {message}"),
    )
    reader = reader_for(args.reader)
    results = evaluate_beir(index, dataset, encoder=encoder, modes=modes, reader=reader, progress=sys.stderr.isatty())
    return EvalReport(f"{dataset.name} ({args.split})", len(dataset.queries), results, dict(dataset.queries))


def passage_to_dict(passage: Passage) -> dict[str, object]:
    """A passage as the JSON object of ``qa passages --json``."""
    import dataclasses

    return dataclasses.asdict(passage)


COMMANDS = {"index": run_index, "search": run_search, "passages": run_passages, "eval": run_eval}


def entry_point() -> None:
    """Console-script entry: exit with ``main``'s status."""
    raise SystemExit(main())
