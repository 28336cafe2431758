"""AnswerService: answering while a rebuild runs, and one rebuild at a time.

Many questions at once, one rebuild at a time (across processes too), repair at start, documents by id.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DAMAGES, EMPTY_QUESTIONS, ODD_QUESTIONS, REPO, FakeModelEncoder, IndexWorker, damage_index
from qa.errors import IndexBusyError, QAError
from qa.index.prepare import IndexReport
from qa.records import SearchResult
from qa.search.evidence import SentenceMemory
from qa.search.modes import MODES, Mode
from qa.search.question import MAX_QUESTION_CHARS, EmptyQuestionError, normalize_question
from qa.web.service import REBUILD_BATCH, REBUILD_PASSAGES_PER_SECOND, AnswerService, BackgroundEncoder, Questions

# How long a test waits for a thread before failing, rather than hanging, if it never finishes.
THREAD_SECONDS = 60


def finish(*threads: threading.Thread, timeout: float = THREAD_SECONDS) -> None:
    """Join ``threads`` within one shared ``timeout``; a thread still running fails the test."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    running = [thread.name for thread in threads if thread.is_alive()]
    assert not running, f"still running after {timeout} s: {running}"


NEW_ARTICLE = "Lighthouse keepers\n\nThe lighthouse keepers of the northern coast went on strike over pay on Monday.\n"


def open_service(corpus: Path, tmp_path: Path, encoder: FakeModelEncoder | None = None) -> AnswerService:
    service = AnswerService(corpus, tmp_path / "index", encoder=encoder or FakeModelEncoder())  # type: ignore[arg-type]
    service.refresh()
    return service


class GatedEncoder(FakeModelEncoder):
    """Blocks inside ``encode`` while a rebuild embeds, until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.block_texts_containing = "went on strike over pay"

    def encode(self, texts: list[str]) -> np.ndarray:
        if any(self.block_texts_containing in text for text in texts):
            self.waiting.set()
            assert self.gate.wait(timeout=30)
        return super().encode(texts)


def test_status_documents_and_lookup(corpus_copy: Path, tmp_path: Path) -> None:
    service = open_service(corpus_copy, tmp_path)
    status = service.status()
    assert (status.documents, status.model, status.rebuilding) == (5, "fake-encoder", False)
    counts = {document.source: count for document, count in service.documents()}
    assert sum(counts.values()) == status.passages
    some_id = service.documents()[0][0].doc_id
    assert service.document(some_id) is not None
    for outside in ("../corpus/x", "/etc/passwd", "missing"):
        assert service.document(outside) is None


def test_an_update_drops_most_documents_only_after_a_removal_on_purpose(corpus_copy: Path, tmp_path: Path) -> None:
    service = open_service(corpus_copy, tmp_path)
    for path in sorted(corpus_copy.glob("*.txt"))[:3]:
        path.unlink()
    with pytest.raises(QAError, match="3 of the 5 documents"):
        service.refresh()  # a drive that is not mounted looks like this
    assert service.status().documents == 5
    assert service.refresh(removing=True).removed == 3  # the Corpus tab's Remove
    assert service.status().documents == 2


def test_a_rebuild_is_estimated_from_the_passages_it_embeds(corpus_copy: Path, tmp_path: Path) -> None:
    service = open_service(corpus_copy, tmp_path)
    assert service.rebuild_seconds() == service.status().passages / REBUILD_PASSAGES_PER_SECOND


def test_questions_are_answered_from_the_old_index_during_a_rebuild(corpus_copy: Path, tmp_path: Path) -> None:
    encoder = GatedEncoder()
    service = open_service(corpus_copy, tmp_path, encoder)
    (corpus_copy / "lighthouse.txt").write_text(NEW_ARTICLE)
    errors: list[BaseException] = []

    def rebuild() -> None:
        try:
            service.refresh()
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    worker = threading.Thread(target=rebuild)
    worker.start()
    assert encoder.waiting.wait(timeout=30)  # the rebuild is embedding the new article now
    assert service.rebuilding
    with pytest.raises(QAError, match="already being rebuilt"):
        service.refresh()
    during = service.ask("lighthouse keepers strike")
    assert during.hits and all(hit.passage.source != "lighthouse.txt" for hit in during.hits)
    encoder.gate.set()
    finish(worker)
    assert not errors and not service.rebuilding
    after = service.ask("lighthouse keepers strike")
    assert after.hits[0].passage.source == "lighthouse.txt"
    assert service.status().documents == 6


def test_asking_before_the_index_is_loaded_is_a_clear_error(corpus_copy: Path, tmp_path: Path) -> None:
    service = AnswerService(corpus_copy, tmp_path / "index", encoder=FakeModelEncoder())  # type: ignore[arg-type]
    with pytest.raises(QAError, match="not loaded"):
        service.ask("anything")


@pytest.mark.parametrize("damage", ["truncated vectors", "passages missing", "manifest not JSON"])
def test_a_damaged_index_is_rebuilt_when_the_service_starts(corpus_copy: Path, tmp_path: Path, damage: str) -> None:
    open_service(corpus_copy, tmp_path)
    damage_index(tmp_path / "index", damage)
    service = open_service(corpus_copy, tmp_path)
    assert service.report is not None
    assert "is damaged" in service.report.rebuilt_reason and DAMAGES[damage] in service.report.rebuilt_reason
    assert service.report.embedded == 0  # rebuilt from the embedding cache
    assert service.ask("Why do defectors return?").hits


def test_refresh_refuses_while_another_process_builds_the_same_index(corpus_copy: Path, tmp_path: Path) -> None:
    service = open_service(corpus_copy, tmp_path)
    before = service.ask("Why do defectors return?")
    other = IndexWorker(corpus_copy, tmp_path / "index", pause="embedding", options=("--rebuild",))
    other.wait_for("PAUSED embedding")
    with pytest.raises(IndexBusyError, match=rf"another qa index \(pid {other.process.pid}\) is updating"):
        service.refresh(rebuild=True)
    assert service.ask("Why do defectors return?") == before and not service.rebuilding
    other.let_go()
    assert other.finish() == 0
    assert service.refresh(rebuild=True).passages == len(service.index.passages)


def test_another_process_is_refused_while_the_service_rebuilds(corpus_copy: Path, tmp_path: Path) -> None:
    encoder = GatedEncoder()
    service = open_service(corpus_copy, tmp_path, encoder)
    (corpus_copy / "lighthouse.txt").write_text(NEW_ARTICLE)
    worker = threading.Thread(target=service.refresh)
    worker.start()
    assert encoder.waiting.wait(timeout=30)
    other = IndexWorker(corpus_copy, tmp_path / "index", options=("--wait", "0"))
    assert other.finish() == 1
    assert f"qa: error: another qa index (pid {os.getpid()}) is updating" in "".join(other.output)
    encoder.gate.set()
    finish(worker)
    assert service.status().documents == 6


class PacedEncoder(FakeModelEncoder):
    """Pauses in every call, as a real model does; the rebuild's first batch waits at a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.rebuild_waiting = threading.Event()
        self.rebuild_call_sizes: list[int] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        if threading.current_thread().name == "rebuild":
            self.rebuild_call_sizes.append(len(texts))
            if not self.gate.is_set():
                self.rebuild_waiting.set()
                assert self.gate.wait(timeout=30)
        time.sleep(0.002)
        return super().encode(texts)


def test_many_concurrent_questions_are_all_answered_across_a_full_rebuild(
    corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = PacedEncoder()
    service = open_service(corpus_copy, tmp_path, encoder)
    before = service.index
    # A small sentence memory makes threads evict each other's two-sentence points.
    memory = SentenceMemory(capacity=24)
    monkeypatch.setattr(service, "_sentences", memory)
    lines = (REPO / "eval" / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines][:50]
    reports: list[IndexReport] = []
    answers: list[SearchResult] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def rebuild() -> None:
        reports.append(service.refresh(rebuild=True))

    def ask(batch: list[str]) -> None:
        for question in batch:
            try:
                result = service.ask(question, k=3)
            except BaseException as error:  # reported by the assertion below
                failures.append(error)
                continue
            with lock:
                answers.append(result)
                if len(answers) == 10:  # the rebuild goes on while the other 40 are asked
                    encoder.gate.set()

    builder = threading.Thread(target=rebuild, name="rebuild")
    builder.start()
    assert encoder.rebuild_waiting.wait(timeout=30)  # the rebuild is re-embedding every passage
    askers = [threading.Thread(target=ask, args=(questions[i::10],)) for i in range(10)]
    for thread in askers:
        thread.start()
    finish(*askers, builder, timeout=120)
    assert not failures, failures[:3]
    assert len(answers) == 50 and all(result.hits for result in answers)
    assert reports and reports[0].embedded == reports[0].passages  # a real re-embedding, not the cache
    assert service.index is not before and not service.rebuilding
    # Stored sentences are not embedded again: only points of two sentences reach the shared memory.
    assert 0 < len(memory) <= memory.capacity
    # Questions wait for at most one small batch of the rebuild's at the model.
    assert max(encoder.rebuild_call_sizes) <= REBUILD_BATCH < reports[0].passages


def test_a_rebuild_embeds_only_when_questions_pause() -> None:
    encoder = FakeModelEncoder()
    questions = Questions()
    background = BackgroundEncoder(encoder, questions, batch=2, patience=30)
    worker = threading.Thread(target=background.encode, args=(["a", "b", "c"],), daemon=True)
    with questions:  # a question is being answered
        worker.start()
        time.sleep(0.2)
        assert encoder.calls == []  # the rebuild waits for it
    finish(worker, timeout=10)
    assert encoder.calls == [["a", "b"], ["c"]]


def test_a_rebuild_is_not_starved_by_an_endless_stream_of_questions() -> None:
    encoder = FakeModelEncoder()
    questions = Questions()
    background = BackgroundEncoder(encoder, questions, batch=2, patience=0.05)
    vectors: list[np.ndarray] = []
    # The rebuild runs in a thread of its own, so that waiting for a pause that never comes fails the test
    # instead of hanging it.
    worker = threading.Thread(target=lambda: vectors.append(background.encode(["a", "b", "c"])), daemon=True)
    with questions:  # a question is being answered the whole time
        worker.start()
        finish(worker, timeout=10)
    assert encoder.calls == [["a", "b"], ["c"]]
    np.testing.assert_array_equal(vectors[0], FakeModelEncoder().encode(["a", "b", "c"]))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> AnswerService:
    import shutil

    from conftest import CORPUS

    workdir = tmp_path_factory.mktemp("service")
    shutil.copytree(CORPUS, workdir / "corpus")
    return open_service(workdir / "corpus", workdir)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(ODD_QUESTIONS))
def test_odd_questions_get_an_answer(service: AnswerService, kind: str, mode: Mode) -> None:
    typed = ODD_QUESTIONS[kind]
    result = service.ask(typed, mode=mode, history=[typed, "\x00"])
    assert result.query == normalize_question(typed).text
    assert len(result.query) <= MAX_QUESTION_CHARS and result.hits and result.answer


@pytest.mark.parametrize("typed", EMPTY_QUESTIONS)
def test_empty_questions_are_refused_with_one_clear_error(service: AnswerService, typed: str) -> None:
    with pytest.raises(EmptyQuestionError, match="the question is empty"):
        service.ask(typed)


def test_an_empty_corpus_is_served_empty_until_articles_are_added(tmp_path: Path) -> None:
    from qa.search.abstention import EMPTY_INDEX

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "menu.txt").write_text("Home\nNews\nContact\n", encoding="utf-8")  # no article text
    service = open_service(corpus, tmp_path)
    report = service.refresh()  # `qa index` refuses this corpus; the app serves on, to take uploads
    assert "nothing to index" in report.empty_corpus and report.documents == 0
    assert service.status().documents == 0 and not (tmp_path / "index" / "manifest.json").exists()
    answer = service.ask("Why do defectors return?")
    assert answer.answer == EMPTY_INDEX and not answer.hits and not answer.answerable
    (corpus / "story.txt").write_text((REPO / "corpus" / sorted(os.listdir(REPO / "corpus"))[0]).read_text())
    report = service.refresh()
    assert report.documents == 1 and not report.empty_corpus
    assert service.ask("Why do defectors return?").hits


def test_a_milvus_store_is_served_named_and_its_failures_are_one_error(
    corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("milvus_lite")
    from pymilvus.exceptions import MilvusException

    from qa.errors import StoreUnavailableError
    from qa.index.spec import parse_store

    store = parse_store(f"milvus-lite:{tmp_path / 'qa.db'}")
    service = AnswerService(corpus_copy, tmp_path / "work", encoder=FakeModelEncoder(), store=store)
    report = service.refresh()
    assert (report.documents, report.added) == (5, 5)
    assert service.status().backend == f"Milvus Lite in {tmp_path / 'qa.db'}, collection qa_passages"
    answered = service.ask("Why do defectors return?")
    assert answered.hits
    client = service.index.client  # type: ignore[attr-defined]

    def gone(*arguments: object, **options: object) -> None:
        raise MilvusException(message="server unavailable")

    monkeypatch.setattr(client, "search", gone)
    with pytest.raises(StoreUnavailableError, match=r"collection qa_passages: failed while searching \(server"):
        service.ask("Why do defectors return?")
    assert len(service.documents()) == 5  # what was read at open keeps serving
    monkeypatch.undo()
    assert service.ask("Why do defectors return?").hits == answered.hits
    (corpus_copy / "north-must-leave-the-defectors-alone.txt").unlink()
    assert service.refresh().removed == 1
    assert service.status().documents == 4
