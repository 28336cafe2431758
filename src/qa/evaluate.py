"""Measure retrieval: the project's labelled questions, or any BEIR-format benchmark.

Labelled questions mark relevance with text anchors (a verbatim piece of the
answering paragraph), so the labels survive re-chunking: a passage is
relevant when its text contains an anchor.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qa.answer import Abstention, ask, retrieve
from qa.encoder import Encoder
from qa.errors import QAError
from qa.index import CACHE_NAME, EmbeddingCache, IndexSettings, PassageIndex, file_sha256, read_manifest
from qa.lock import DEFAULT_WAIT_SECONDS, index_lock
from qa.metrics import Qrels, Run, abstention_scores, evaluate, mean_metrics
from qa.records import Document, Passage
from qa.retrieve import Mode

T = TypeVar("T")
# Hits kept per question: enough for Recall@10, MRR@10 and nDCG@10.
EVAL_DEPTH = 10
# A question counts as failed when no relevant passage is in this many hits.
FAILURE_DEPTH = 5


@dataclass(frozen=True)
class Anchor:
    source: str
    text: str


@dataclass(frozen=True)
class LabelledQuestion:
    """A question with its relevant paragraphs; no anchors means the corpus cannot answer it."""

    question_id: str
    question: str
    kind: str
    anchors: tuple[Anchor, ...]
    history: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.anchors)


@dataclass
class ModeResult:
    """One retrieval mode's scores over a question set."""

    mode: str
    metrics: dict[str, float]
    per_question: dict[str, dict[str, float]]
    failed: list[str]
    seconds: float
    abstention: dict[str, float] = field(default_factory=dict)
    false_abstentions: list[str] = field(default_factory=list)
    missed_abstentions: list[str] = field(default_factory=list)


@dataclass
class EvalReport:
    """Every mode's results on one question set."""

    dataset: str
    questions: int
    results: list[ModeResult]
    texts: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "questions": self.questions,
            "modes": {r.mode: {k: v for k, v in vars(r).items() if k != "mode"} for r in self.results},
        }


def load_questions(path: Path) -> list[LabelledQuestion]:
    """Read labelled questions (JSON Lines); a conversation's ``turns`` become history and question."""
    questions = []
    for number, row in _read_json_lines(path):
        try:
            turns = row.get("turns") or [row["question"]]
            anchors = tuple(Anchor(a["source"], a["anchor"]) for a in row.get("relevant", []))
            questions.append(
                LabelledQuestion(
                    question_id=str(row["id"]),
                    question=turns[-1],
                    kind=row.get("kind", "conversation" if "turns" in row else "single"),
                    anchors=anchors,
                    history=tuple(turns[:-1]),
                )
            )
        except (KeyError, TypeError, IndexError) as error:
            raise QAError(f"{path}, line {number}: not a labelled question ({error!r})") from error
    return questions


def _read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; anything but a JSON object is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise QAError(f"cannot read {path}: {error}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise QAError(f"{path}, line {number}: invalid JSON ({error})") from error
        if not isinstance(row, dict):
            raise QAError(f"{path}, line {number}: expected a JSON object")
        yield number, row


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def judge(questions: Sequence[LabelledQuestion], passages: Sequence[Passage]) -> Qrels:
    """Relevance of passages to questions: passages containing one of the question's anchors.

    An anchor found in no passage means the labels no longer fit the corpus,
    which is an error rather than a silent zero.
    """
    texts = [(p.source, p.passage_id, _squeeze(p.text)) for p in passages]
    qrels: dict[str, dict[str, int]] = {}
    for question in questions:
        judged: dict[str, int] = {}
        for anchor in question.anchors:
            wanted = _squeeze(anchor.text)
            matches = [pid for source, pid, text in texts if source == anchor.source and wanted in text]
            if not matches:
                raise QAError(f"question {question.question_id}: anchor not found in {anchor.source}: {anchor.text!r}")
            judged.update(dict.fromkeys(matches, 1))
        qrels[question.question_id] = judged
    return qrels


def evaluate_questions(
    index: PassageIndex,
    questions: Sequence[LabelledQuestion],
    *,
    encoder: Encoder,
    modes: Sequence[Mode],
    abstention: Abstention,
    use_history: bool = True,
    progress: bool = False,
) -> list[ModeResult]:
    """Ask every question in every mode; score retrieval and abstention."""
    qrels = judge(questions, index.passages)
    results = []
    for mode in modes:
        started = time.perf_counter()
        run: dict[str, dict[str, float]] = {}
        abstained: dict[str, bool] = {}
        for question in _progress(questions, f"{mode} questions", progress):
            history = question.history if use_history else ()
            answer = ask(
                index,
                question.question,
                encoder=encoder,
                k=EVAL_DEPTH,
                mode=mode,
                history=history,
                abstention=abstention,
            )
            run[question.question_id] = {hit.passage.passage_id: -hit.rank for hit in answer.hits}
            abstained[question.question_id] = not answer.answerable
        result = _retrieval_result(mode, qrels, run, time.perf_counter() - started)
        _score_abstention(result, abstained, questions)
        results.append(result)
    return results


def _score_abstention(result: ModeResult, abstained: dict[str, bool], questions: Sequence[LabelledQuestion]) -> None:
    should_abstain = {q.question_id: not q.answerable for q in questions}
    result.abstention = abstention_scores(should_abstain, abstained)
    result.false_abstentions = [q for q, a in abstained.items() if a and not should_abstain[q]]
    result.missed_abstentions = [q for q, a in abstained.items() if not a and should_abstain[q]]


def _retrieval_result(mode: str, qrels: Qrels, run: Run, seconds: float) -> ModeResult:
    per_question = evaluate(qrels, run)
    failed = [q for q, m in per_question.items() if m[f"recall_cap@{FAILURE_DEPTH}"] == 0]
    return ModeResult(mode, mean_metrics(per_question), per_question, failed, seconds)


def _progress(items: Sequence[Any], label: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=label, unit=" questions", disable=not enabled, leave=False)


# ---------------------------------------------------------------- BEIR


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR-format dataset: documents, the split's queries and their judgments."""

    name: str
    documents: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    fingerprint: str


def load_beir(directory: Path, *, split: str = "test") -> BeirDataset:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/SPLIT.tsv``; only judged queries are kept."""
    for required in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (directory / required).is_file():
            raise QAError(f"{directory} is not a BEIR dataset: {required} is missing")
    qrels = _read_qrels(directory / "qrels" / f"{split}.tsv")
    queries = dict(query for _, query in _beir_rows(directory / "queries.jsonl", _beir_query))
    documents = [document for _, document in _beir_rows(directory / "corpus.jsonl", _beir_document)]
    return BeirDataset(
        name=directory.resolve().name,
        documents=documents,
        queries={q: queries[q] for q in qrels if q in queries},
        qrels=qrels,
        fingerprint=file_sha256(directory / "corpus.jsonl"),
    )


def _beir_rows(path: Path, parse: Callable[[dict[str, Any]], T]) -> Iterator[tuple[int, T]]:
    for number, row in _read_json_lines(path):
        try:
            yield number, parse(row)
        except (KeyError, TypeError) as error:
            raise QAError(f"{path}, line {number}: missing field {error}") from error


def _beir_query(row: dict[str, Any]) -> tuple[str, str]:
    return str(row["_id"]), str(row["text"])


def _beir_document(row: dict[str, Any]) -> Document:
    # BEIR scores title + text as the document, so both go into its one paragraph.
    doc_id = str(row["_id"])
    title = _squeeze(row.get("title") or "")
    text = " ".join(part for part in (title, _squeeze(row.get("text") or "")) if part) or "(empty)"
    return Document(doc_id=doc_id, source=doc_id, paragraphs=(text,), title=title)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise QAError(f"cannot read {path}: {error}") from error
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split("\t") if "\t" in line else line.split()
        if not parts or (number == 1 and parts[-1].strip() == "score"):
            continue
        try:
            qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
        except (IndexError, ValueError) as error:
            raise QAError(f"{path}, line {number}: expected query-id, corpus-id, score ({error})") from error
    return qrels


def beir_index(
    dataset: BeirDataset,
    cache_dir: Path,
    *,
    encoder: Encoder,
    settings: IndexSettings,
    progress: bool = False,
    wait: float = DEFAULT_WAIT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
) -> PassageIndex:
    """The dataset's index, built once per dataset and model under ``cache_dir`` and reused after.

    The build lock of the cached index is held throughout, so a second run
    started meanwhile waits (up to ``wait`` seconds, telling ``on_wait``) and
    then reuses the first run's vectors instead of writing the same folder at once.

    Raises:
        IndexBusyError: Another process still builds this cache after ``wait`` seconds.
    """
    # The title is already in each document's text.
    settings = dataclasses.replace(settings, title_in_dense=False, title_in_bm25=False)
    index_dir = cache_dir / f"{dataset.name}-{dataset.fingerprint[:12]}" / _slug(encoder.name)
    with index_lock(index_dir, wait=wait, on_wait=on_wait):
        cached = _cached_beir_index(index_dir, dataset, encoder.name, settings)
        return cached or _build_beir_index(index_dir, dataset, encoder=encoder, settings=settings, progress=progress)


def _cached_beir_index(
    index_dir: Path, dataset: BeirDataset, model: str, settings: IndexSettings
) -> PassageIndex | None:
    try:
        manifest = read_manifest(index_dir)
        if (manifest.corpus_fingerprint, manifest.settings, manifest.model) == (dataset.fingerprint, settings, model):
            return PassageIndex.load(index_dir)
    except QAError:
        pass  # no usable cache: build it
    return None


def _build_beir_index(
    index_dir: Path, dataset: BeirDataset, *, encoder: Encoder, settings: IndexSettings, progress: bool
) -> PassageIndex:
    # One passage per document; the model reads its first window, as in BEIR's published runs.
    passages = [_whole_document_passage(d) for d in dataset.documents]
    cache = EmbeddingCache(index_dir / CACHE_NAME)
    try:
        index = PassageIndex.build(
            dataset.documents,
            passages,
            encoder=encoder,
            settings=settings,
            corpus_fingerprint=dataset.fingerprint,
            cache=cache,
            progress=progress,
        )
    finally:
        cache.close()
    index.save(index_dir)
    return index


def _whole_document_passage(document: Document) -> Passage:
    text = document.paragraphs[0]
    return Passage(
        passage_id=document.doc_id,
        doc_id=document.doc_id,
        source=document.source,
        paragraph=1,
        start=0,
        end=len(text),
        text=text,
        title=document.title,
    )


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def evaluate_beir(
    index: PassageIndex,
    dataset: BeirDataset,
    *,
    encoder: Encoder,
    modes: Sequence[Mode],
    progress: bool = False,
) -> list[ModeResult]:
    """Retrieval metrics of every mode on the dataset's judged queries (document ids as in its qrels)."""
    results = []
    for mode in modes:
        started = time.perf_counter()
        run = {}
        for query_id in _progress(list(dataset.queries), f"{mode} queries", progress):
            hits = retrieve(index, dataset.queries[query_id], encoder=encoder, k=EVAL_DEPTH, mode=mode)
            run[query_id] = {hit.passage.doc_id: -float(hit.rank) for hit in hits}
        qrels = {q: j for q, j in dataset.qrels.items() if q in dataset.queries}
        results.append(_retrieval_result(mode, qrels, run, time.perf_counter() - started))
    return results
