"""AnswerService: answering while a rebuild runs, one rebuild at a time, documents by id only."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import EMPTY_QUESTIONS, ODD_QUESTIONS, FakeModelEncoder
from qa.errors import QAError
from qa.question import MAX_QUESTION_CHARS, EmptyQuestionError, normalize_question
from qa.retrieve import MODES, Mode
from qa.service import AnswerService

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
    worker.join(timeout=30)
    assert not errors and not service.rebuilding
    after = service.ask("lighthouse keepers strike")
    assert after.hits[0].passage.source == "lighthouse.txt"
    assert service.status().documents == 6


def test_asking_before_the_index_is_loaded_is_a_clear_error(corpus_copy: Path, tmp_path: Path) -> None:
    service = AnswerService(corpus_copy, tmp_path / "index", encoder=FakeModelEncoder())  # type: ignore[arg-type]
    with pytest.raises(QAError, match="not loaded"):
        service.ask("anything")


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
