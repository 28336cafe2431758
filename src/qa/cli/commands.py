"""``qa``'s commands: each takes the parsed arguments, calls the library and prints what it found."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from qa.cli.output import emphasized, format_passage, format_result
from qa.cli.output import say as _say
from qa.cli.output import tell as _tell
from qa.cli.written import chat_model, stream_written, writer, written
from qa.errors import QAError
from qa.records import Passage, SearchResult, result_to_dict
from qa.safe_text import json_text, terminal_text
from qa.search.modes import Mode, parse_modes
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
