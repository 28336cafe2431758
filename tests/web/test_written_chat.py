"""Written answers in the app: the chat streams the model's answer after the extractive one; the API's JSON.

The model is reached through a real local chat-completions server (tests/llm_server.py).
"""

from __future__ import annotations

import itertools
import shutil
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import gradio as gr
import pytest

from conftest import CORPUS, FakeModelEncoder
from llm_server import UNSUPPORTED
from qa.llm.client import ChatModel, LLMConfig
from qa.reader.model import Reading
from qa.web.chat import Conversation, _responder
from qa.web.present import UNSUPPORTED_MARK, as_markdown_text
from qa.web.service import AnswerService

FIELDS = (
    "question",
    "chat",
    "history",
    "turns",
    "conversation",
    "k",
    "mode",
    "reader",
    "documents",
    "outlets",
    "from",
    "to",
)
QUESTION = "Why do defectors return?"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> AnswerService:
    workdir = tmp_path_factory.mktemp("web-written")
    shutil.copytree(CORPUS, workdir / "corpus")
    service = AnswerService(workdir / "corpus", workdir / "index", encoder=FakeModelEncoder())  # type: ignore[arg-type]
    service.refresh()
    return service


class NoAnswerReader:
    """The trained reader's name, and "no answer" for every passage."""

    name = "qa-reader-minilm-l6-squad"

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        return [Reading(score=-10.0, span=None) for _ in passages]


def _with_model(
    service: AnswerService, server: Any, name: str, timeout: float = 10.0, reader: Any = None
) -> AnswerService:
    with_model = AnswerService(
        service.corpus_dir,
        service.index_dir,
        encoder=service.encoder,
        reader=reader,
        llm=ChatModel(LLMConfig(server.url, name, timeout=timeout)),
    )
    with_model._index = service.index
    return with_model


def _ask(service: AnswerService, question: str = QUESTION) -> Any:
    respond = _responder(service, {name: name for name in FIELDS})
    values = {
        "question": question,
        "chat": [],
        "history": ["What happened?"],
        "conversation": Conversation(),
        "k": 3,
        "mode": "hybrid",
        "reader": True,
    }
    updates = list(respond({name: values.get(name) for name in FIELDS}))
    # The last changes nothing: Gradio ends a run by sending every output's last value again.
    assert updates[-1] == (gr.skip(),) * len(updates[0])
    return updates[:-1]


def test_the_extractive_answer_comes_first_then_the_written_one_streams_and_is_checked(
    service: AnswerService, llm_server: Any
) -> None:
    updates = _ask(_with_model(service, llm_server, "mixed"))
    first = updates[0]
    assert [m["role"] for m in first[0]] == ["user", "assistant"] and "qa-source" in first[3]  # sources at once
    streaming = [update[0][-1]["content"] for update in updates[1:-1]]
    assert len(streaming) >= 2 and all("citations are checked when it ends" in text for text in streaming)
    assert all(len(a) < len(b) for a, b in itertools.pairwise(streaming))  # the answer grows as it is written
    final = updates[-1][0]
    assert [m["role"] for m in final] == ["user", "assistant", "assistant"] and final[1] == first[0][1]
    reply = final[-1]["content"]
    assert reply.startswith("**Written by mixed** · citations checked: not supported, 1 of ")
    assert f"{UNSUPPORTED_MARK} \\(unsupported: passage " in reply and "(#qa-source-1-1 " in reply
    assert updates[-1][3] == updates[1][3]  # later updates leave the sources as they are
    sent = llm_server.bodies[-1]
    assert sent["stream"] is True and "What happened?" in sent["messages"][1]["content"]


@pytest.mark.parametrize("name", ["error-500", "hangup", "slow", "unknown-model"])
def test_a_failing_model_is_a_notice_below_the_extractive_answer(
    service: AnswerService, llm_server: Any, name: str
) -> None:
    llm_server.slow_seconds = 3.0
    updates = _ask(_with_model(service, llm_server, name, timeout=1.0))
    final = updates[-1][0]
    assert [m["role"] for m in final] == ["user", "assistant", "assistant"]
    assert final[1] == updates[0][0][1]  # the extractive answer stays
    notice = final[-1]["content"]
    assert notice.startswith(as_markdown_text(f"{UNSUPPORTED_MARK} {name.capitalize()} could not answer"))
    assert "\n" not in notice


def test_when_qa_abstains_the_model_is_not_asked(service: AnswerService, llm_server: Any) -> None:
    asked = len(llm_server.requests)
    updates = _ask(_with_model(service, llm_server, "good", reader=NoAnswerReader()))
    assert len(updates) == 1 and len(updates[0][0]) == 2
    assert "do not answer" in updates[0][0][-1]["content"]
    assert len(llm_server.requests) == asked


def test_without_a_model_the_chat_handler_answers_at_once(service: AnswerService) -> None:
    respond = _responder(service, {name: name for name in FIELDS})
    values = {"question": QUESTION, "chat": [], "history": [], "k": 3, "mode": "hybrid"}
    outputs = respond({name: values.get(name) for name in FIELDS})
    assert isinstance(outputs, tuple) and len(outputs[0]) == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served_with_model(service: AnswerService, llm_server: Any) -> Iterator[str]:
    from qa.web.ui import launch

    port = _free_port()
    app = launch(_with_model(service, llm_server, "mixed"), host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def test_the_search_api_gains_the_checked_answer(served_with_model: str, llm_server: Any) -> None:
    from gradio_client import Client

    result = Client(served_with_model, verbose=False).predict(QUESTION, 3, "hybrid", api_name="/search")
    assert result["generated_by"] == "mixed" and result["generated_answer"].endswith(
        f"{UNSUPPORTED} (unsupported: passage [1] does not say this)"
    )
    assert [entry["reason"] for entry in result["unsupported"]] == ["passage [1] does not say this"]
    assert llm_server.bodies[-1]["stream"] is False
