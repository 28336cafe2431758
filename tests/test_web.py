"""The app's `search` API, through gradio_client, against the library's own JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from conftest import FakeModelEncoder
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
