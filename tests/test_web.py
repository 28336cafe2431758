"""The app: its `search` API through gradio_client; the Rebuild button and a damaged index at start."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import FakeModelEncoder, IndexWorker, damage_index
from qa.records import result_to_dict
from qa.service import AnswerService


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AnswerService, str]]:
    import shutil

    from conftest import CORPUS
    from qa.web import build_app

    workdir = tmp_path_factory.mktemp("web")
    shutil.copytree(CORPUS, workdir / "corpus")
    service = AnswerService(workdir / "corpus", workdir / "index", encoder=FakeModelEncoder())  # type: ignore[arg-type]
    service.refresh()
    app = build_app(service)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield service, f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def test_search_api_returns_the_cli_json(served: tuple[AnswerService, str]) -> None:
    from gradio_client import Client

    service, url = served
    client = Client(url, verbose=False)
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/search"}
    answer = client.predict("Why do defectors return?", 3, "bm25", api_name="/search")
    assert answer == result_to_dict(service.ask("Why do defectors return?", k=3, mode="bm25"))
    assert len(answer["hits"]) == 3


@pytest.mark.parametrize(("question", "mode", "message"), [("   ", "hybrid", "empty"), ("q", "fuzzy", "unknown mode")])
def test_search_api_refuses_bad_input_clearly(
    served: tuple[AnswerService, str], question: str, mode: str, message: str
) -> None:
    from gradio_client import Client

    client = Client(served[1], verbose=False)
    with pytest.raises(Exception, match=message):
        client.predict(question, 3, mode, api_name="/search")


def _service(corpus: Path, index: Path) -> AnswerService:
    service = AnswerService(corpus, index, encoder=FakeModelEncoder())  # type: ignore[arg-type]
    service.refresh()
    return service


def test_rebuild_button_refuses_while_a_cli_qa_index_runs_then_rebuilds(corpus_copy: Path, tmp_path: Path) -> None:
    from qa.web import rebuilder

    service = _service(corpus_copy, tmp_path / "index")
    other = IndexWorker(corpus_copy, tmp_path / "index", pause="embedding", options=("--rebuild",))
    other.wait_for("PAUSED embedding")
    status, rows, message, *_ = rebuilder(service)()
    assert message.startswith(f"Not rebuilt: another qa index \\(pid {other.process.pid}\\) is updating")
    assert "**5** documents" in status and len(rows) == 5  # the page still shows the index it answers from
    other.let_go()
    assert other.finish() == 0
    assert rebuilder(service)()[2].startswith("Rebuilt: 5 documents")


def test_a_damaged_index_is_rebuilt_at_start_and_the_corpus_tab_says_so(corpus_copy: Path, tmp_path: Path) -> None:
    from qa.web import build_app

    _service(corpus_copy, tmp_path / "index")
    damage_index(tmp_path / "index", "truncated vectors")
    service = _service(corpus_copy, tmp_path / "index")
    app = build_app(service)
    [notice] = [block for block in app.blocks.values() if getattr(block, "elem_id", None) == "qa-rebuild-message"]
    assert str(notice.value).startswith("Rebuilt from scratch when the app started: the index in")
    assert "is damaged" in str(notice.value) and "bytes; the manifest says" in str(notice.value)


def test_app_starts_on_a_damaged_index_after_rebuilding_it(
    corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from conftest import REPO

    _service(corpus_copy, tmp_path / "index")
    damage_index(tmp_path / "index", "manifest not JSON")
    monkeypatch.setattr("qa.pipeline.SentenceTransformerEncoder", FakeModelEncoder)
    monkeypatch.setenv("QA_MODEL", "fake-encoder")
    launched: list[AnswerService] = []

    class NotServed:
        def __init__(self, service: AnswerService) -> None:
            launched.append(service)

        def launch(self, **_: object) -> None:
            pass

    monkeypatch.setattr("qa.web.build_app", NotServed)
    spec = importlib.util.spec_from_file_location("app", REPO / "app.py")
    assert spec and spec.loader
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    capsys.readouterr()
    assert app.main(["--corpus", str(corpus_copy), "--index", str(tmp_path / "index")]) == 0
    out = capsys.readouterr().out
    assert "Rebuilt from scratch: the index in" in out and "manifest.json is unreadable" in out
    assert launched and launched[0].ask("Why do defectors return?").hits
