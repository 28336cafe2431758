"""The app's `search` API, through gradio_client, against the library's own JSON."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import EMPTY_QUESTIONS, ODD_QUESTIONS, FakeModelEncoder
from qa.present import EMPTY_QUESTION_REPLY, as_markdown_text
from qa.question import normalize_question
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


@pytest.mark.parametrize("kind", sorted(ODD_QUESTIONS))
def test_search_api_answers_odd_questions_like_the_library(served: tuple[AnswerService, str], kind: str) -> None:
    from gradio_client import Client

    service, url = served
    typed = ODD_QUESTIONS[kind]
    answer = Client(url, verbose=False).predict(typed, 3, "hybrid", api_name="/search")
    assert answer == result_to_dict(service.ask(typed, k=3))
    assert answer["query"] == normalize_question(typed).text and answer["hits"]


@pytest.mark.parametrize("typed", EMPTY_QUESTIONS)
def test_search_api_refuses_empty_questions(served: tuple[AnswerService, str], typed: str) -> None:
    from gradio_client import Client

    with pytest.raises(Exception, match="the question is empty"):
        Client(served[1], verbose=False).predict(typed, 3, "hybrid", api_name="/search")


# The chat handler, called as Gradio calls it: one dict of every field's value.
FIELDS = ("question", "chat", "history", "k", "mode", "documents", "outlets", "from", "to")


def chat(service: AnswerService, question: str, history: list[str]) -> tuple[Any, ...]:
    from qa.web import _responder

    respond = _responder(service, {name: name for name in FIELDS})
    values = {"question": question, "chat": [], "history": history, "k": 3, "mode": "hybrid"}
    return respond({name: values.get(name) for name in FIELDS})  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", sorted(ODD_QUESTIONS))
def test_chat_answers_odd_questions(served: tuple[AnswerService, str], kind: str) -> None:
    typed = ODD_QUESTIONS[kind]
    asked = normalize_question(typed).text
    messages, history, sources, *_ = chat(served[0], typed, ["earlier question"])
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == as_markdown_text(asked)  # markup shows as text
    assert history == ["earlier question", asked]
    assert "qa-source" in sources
    assert ("Your question was" in messages[1]["content"]) == (kind == "long")


@pytest.mark.parametrize("typed", EMPTY_QUESTIONS)
def test_chat_asks_for_a_question_when_there_is_none(served: tuple[AnswerService, str], typed: str) -> None:
    messages, history, *_ = chat(served[0], typed, ["earlier question"])
    assert messages == [{"role": "assistant", "content": EMPTY_QUESTION_REPLY}]
    assert history == ["earlier question"]
