"""The chat model's client against a real local chat-completions server (tests/llm_server.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from llm_server import closed_port_url
from qa.errors import LLMError, LLMResponseError, LLMUnavailableError, QAError
from qa.llm.client import ChatModel, LLMConfig, base_url, llm_config

PROMPT = (
    '<passages>\n<passage number="1" title="T">\nDefectors return for their families. More text.\n</passage>\n'
    '<passage number="2" title="U">\nThe regime punishes relatives. Other text.\n</passage>\n</passages>\n\n'
    "Question: Why do defectors return?"
)
MESSAGES = [{"role": "system", "content": "Answer from the passages."}, {"role": "user", "content": PROMPT}]
GOOD = "Defectors return for their families [1]. The regime punishes relatives [2]."
SECRET = "sk-test-secret-123"


def _model(server: Any, name: str, *, timeout: float = 10.0, key: str = "") -> ChatModel:
    return ChatModel(LLMConfig(server.url, name, api_key=key, timeout=timeout))


@pytest.mark.parametrize("streaming", [True, False])
def test_the_answer_comes_whole_or_piece_by_piece(llm_server: Any, streaming: bool) -> None:
    model = _model(llm_server, "good")
    if streaming:
        pieces = list(model.stream(MESSAGES))
        assert len(pieces) > 3 and "".join(pieces) == GOOD
    else:
        assert model.complete(MESSAGES) == GOOD
    sent = llm_server.bodies[-1]
    assert (sent["model"], sent["messages"], bool(sent.get("stream"))) == ("good", MESSAGES, streaming)


def test_the_key_goes_only_in_the_authorization_header(llm_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client library's own variables are not sent: the key comes from $QA_LLM_API_KEY alone.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-variable")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-leak")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-leak")
    _model(llm_server, "good", key=SECRET).complete(MESSAGES)
    headers = {name.lower(): value for name, value in llm_server.requests[-1]["headers"].items()}
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert "leak" not in str(headers) and "openai-variable" not in str(headers)
    _model(llm_server, "good").complete(MESSAGES)
    headers = {name.lower(): value for name, value in llm_server.requests[-1]["headers"].items()}
    assert "openai-variable" not in headers["authorization"]


FAULTS = {
    "error-500": (LLMResponseError, "answered HTTP 500: the model crashed"),
    "unknown-model": (LLMResponseError, "does not know the model 'unknown-model' (HTTP 404"),
    "malformed": (LLMResponseError, "not a chat-completions answer"),
    "hangup": (LLMResponseError, "before its"),
    "slow": (LLMUnavailableError, "did not answer within 0.5 s"),
}


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_is_one_line_naming_the_server(llm_server: Any, fault: str, streaming: bool) -> None:
    kind, words = FAULTS[fault]
    model = _model(llm_server, fault, timeout=0.5)
    with pytest.raises(kind) as caught:
        "".join(model.stream(MESSAGES)) if streaming else model.complete(MESSAGES)
    message = str(caught.value)
    assert words in message and llm_server.url in message and "\n" not in message


def test_a_server_that_is_down_is_named() -> None:
    url = closed_port_url()
    with pytest.raises(LLMUnavailableError, match=r"cannot reach the language model server at http://127\.0\.0\.1"):
        ChatModel(LLMConfig(url, "good", timeout=2)).complete(MESSAGES)


def test_the_key_never_shows_in_a_message_even_when_the_server_quotes_it(llm_server: Any) -> None:
    with pytest.raises(LLMResponseError) as caught:
        _model(llm_server, "echo-key", key=SECRET).complete(MESSAGES)
    assert SECRET not in str(caught.value) and "HTTP 401" in str(caught.value)
    assert "QA_LLM_API_KEY" in str(caught.value)
    assert SECRET not in repr(LLMConfig("http://x/v1", "m", api_key=SECRET))


def test_settings_come_from_the_options_else_the_environment() -> None:
    assert llm_config(None, None, {}) is None
    environ = {"QA_LLM_URL": "http://localhost:11434", "QA_LLM_MODEL": "llama3.2", "QA_LLM_API_KEY": SECRET}
    config = llm_config(None, None, environ)
    assert config == LLMConfig("http://localhost:11434/v1", "llama3.2", api_key=SECRET)
    config = llm_config("https://api.example.com/v1/chat/completions", "other", environ)
    assert config is not None and (config.url, config.model) == ("https://api.example.com/v1", "other")
    assert llm_config("http://h:1", "m", {"QA_LLM_TIMEOUT": "2.5"}).timeout == 2.5  # type: ignore[union-attr]
    assert llm_config("http://h:1", "m", {}).timeout == 60  # type: ignore[union-attr]
    with pytest.raises(QAError, match="not a number of seconds above 0"):
        llm_config("http://h:1", "m", {"QA_LLM_TIMEOUT": "0"})
    with pytest.raises(QAError, match="--llm needs the model's name"):
        llm_config("http://localhost:8080", None, {})
    with pytest.raises(QAError, match="--llm-model needs the model's server"):
        llm_config(None, "llama3.2", {})


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("http://localhost:8080", "http://localhost:8080/v1"),
        ("http://localhost:8080/", "http://localhost:8080/v1"),
        ("http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434/v1"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1"),
    ],
)
def test_the_base_url_is_what_the_server_serves_under(typed: str, expected: str) -> None:
    assert base_url(typed) == expected


@pytest.mark.parametrize("typed", ["localhost:8080", "ftp://host/v1", "http://", "llama3.2"])
def test_an_address_that_is_not_http_is_refused(typed: str) -> None:
    with pytest.raises(LLMError, match="is not an http"):
        base_url(typed)


def test_a_password_in_the_url_is_not_shown() -> None:
    assert LLMConfig("http://user:pw@host:8080/v1", "m").shown_url == "http://host:8080/v1"


def test_without_the_openai_package_only_a_configured_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(LLMError, match=r"needs the openai package.*pip install -e \"\.\[llm\]\""):
        ChatModel(LLMConfig("http://127.0.0.1:9/v1", "m"))


def test_qa_imports_the_client_library_only_when_a_model_is_configured() -> None:
    code = (
        "import sys, qa.cli, qa.web.service, qa.web.chat, qa.search.written, qa.llm.client;"
        "sys.exit('openai imported' if 'openai' in sys.modules else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_start_up_check_says_only_whether_anything_answers(llm_server: Any) -> None:
    assert _model(llm_server, "good").unreachable() == ""
    assert llm_server.requests[-1]["path"] == "/v1/models"
    assert _model(llm_server, "unknown-model").unreachable() == ""  # the first question will say
    down = ChatModel(LLMConfig(closed_port_url(), "good")).unreachable()
    assert down.startswith("cannot reach the language model server at http://127.0.0.1:")
