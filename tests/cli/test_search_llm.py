"""``qa search --llm``: the written answer from a real local chat-completions server (tests/llm_server.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import TERMINAL_CONTROLS, FakeModelEncoder
from llm_server import UNSUPPORTED, closed_port_url
from qa.cli import main

QUESTION = "Why do defectors return?"
SECRET = "sk-cli-secret-456"


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("qa.index.build.SentenceTransformerEncoder", FakeModelEncoder)
    monkeypatch.setattr("qa.embed.encoder.SentenceTransformerEncoder", FakeModelEncoder)
    for name in ("QA_MODEL", "QA_LLM_URL", "QA_LLM_MODEL", "QA_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QA_READER", "off")


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import CORPUS

    index = tmp_path_factory.mktemp("cli-llm") / "index"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("qa.index.build.SentenceTransformerEncoder", FakeModelEncoder)
        assert main(["index", "--corpus", str(CORPUS), "--index", str(index)]) == 0
    return index


def _search(index_dir: Path, *options: str) -> list[str]:
    return ["search", QUESTION, "--k", "3", "--index", str(index_dir), *options]


def test_the_written_answer_streams_after_the_extractive_one_and_is_checked(
    index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_search(index_dir, "--llm", llm_server.url, "--llm-model", "mixed")) == 0
    out, err = capsys.readouterr()
    sources = out.index("Sources:")
    written = out.index("Written by mixed (citations checked below):")
    assert sources < written and UNSUPPORTED in out[written:]
    assert "Citations checked: not supported, 1 of" in out and "(unsupported: passage [1] does not say this)" in out
    assert err == ""
    sent = llm_server.bodies[-1]
    assert sent["stream"] is True and sent["model"] == "mixed"
    assert QUESTION in sent["messages"][1]["content"]


def test_the_options_come_from_the_environment_and_the_key_only_from_there(
    index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QA_LLM_URL", llm_server.url)
    monkeypatch.setenv("QA_LLM_MODEL", "good")
    monkeypatch.setenv("QA_LLM_API_KEY", SECRET)
    assert main(_search(index_dir)) == 0
    assert "Citations checked: all" in capsys.readouterr().out
    headers = {name.lower(): value for name, value in llm_server.requests[-1]["headers"].items()}
    assert headers["authorization"] == f"Bearer {SECRET}"


def test_json_gains_the_checked_answer(index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_search(index_dir, "--json", "--llm", llm_server.url, "--llm-model", "mixed")) == 0
    result = json.loads(capsys.readouterr().out)
    assert llm_server.bodies[-1]["stream"] is False
    assert result["generated_by"] == "mixed" and result["generated_notice"] is None
    assert result["generated_answer"].endswith(f"{UNSUPPORTED} (unsupported: passage [1] does not say this)")
    assert [entry["reason"] for entry in result["unsupported"]] == ["passage [1] does not say this"]
    ranks = {hit["rank"]: hit["passage_id"] for hit in result["hits"]}
    assert result["citations"] and all(ranks[c["rank"]] == c["passage_id"] for c in result["citations"])


def test_without_a_model_nothing_changes(index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    asked = len(llm_server.requests)
    assert main(_search(index_dir, "--json")) == 0
    assert set(json.loads(capsys.readouterr().out)) == {
        "query",
        "answerable",
        "answer",
        "suggestion",
        "short_answer",
        "hits",
    }
    assert len(llm_server.requests) == asked


def test_when_qa_abstains_the_model_is_not_asked(
    index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    asked = len(llm_server.requests)
    argv = ["search", "sourdough bread recipe with rye flour", "--index", str(index_dir), "--json"]
    assert main([*argv, "--llm", llm_server.url, "--llm-model", "good"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answerable"] is False and result["generated_answer"] is None
    assert len(llm_server.requests) == asked


@pytest.mark.parametrize("json_output", [False, True])
@pytest.mark.parametrize("name", ["error-500", "hangup", "malformed", "slow", "unknown-model", "down"])
def test_a_fault_is_one_warning_line_and_the_extractive_answer_stands(
    index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str], name: str, json_output: bool
) -> None:
    llm_server.slow_seconds = 3.0
    url = closed_port_url() if name == "down" else llm_server.url
    options = ["--json"] if json_output else []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QA_LLM_TIMEOUT", "1")  # 60 s by default
        assert main(_search(index_dir, *options, "--llm", url, "--llm-model", name)) == 0
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert line.startswith(f"qa: warning: {name} could not answer (") and "Traceback" not in err
    if json_output:
        result = json.loads(out)
        assert result["answer"] and result["generated_answer"] is None and result["generated_notice"] in line
    else:
        assert "Sources:" in out and "Citations checked" not in out


def test_the_key_never_shows(
    index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QA_LLM_API_KEY", SECRET)
    assert main(_search(index_dir, "--json", "--llm", llm_server.url, "--llm-model", "echo-key")) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err and "HTTP 401" in err


def test_batch_rows_each_get_a_written_answer(
    index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text(f"{QUESTION}\n\nWho is Lim Ji-hyun?\n", encoding="utf-8")
    argv = ["search", "--batch", str(questions), "--index", str(index_dir), "--llm", llm_server.url]
    assert main([*argv, "--llm-model", "good"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [bool(row.get("generated_answer")) for row in rows] == [True, False, True]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--llm", "http://127.0.0.1:9/v1"], "--llm needs the model's name too"),
        (["--llm-model", "good"], "--llm-model needs the model's server too"),
        (["--llm", "localhost:11434", "--llm-model", "good"], "is not an http(s) address"),
        (["--llm", "http://127.0.0.1:9/v1", "--llm-model", "good", "--timeout=x"], "not a number of seconds"),
    ],
)
def test_incomplete_settings_are_refused_at_once(
    index_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, options: list[str], words: str
) -> None:
    FakeModelEncoder.made.clear()
    if "--timeout=x" in options:
        monkeypatch.setenv("QA_LLM_TIMEOUT", "x")
        options = options[:-1]
    assert main(_search(index_dir, *options)) == 1
    err = capsys.readouterr().err
    assert err.startswith("qa: error: ") and words in err and len(err.splitlines()) == 1
    assert FakeModelEncoder.made == []  # refused before the model loads


def test_what_the_model_writes_cannot_drive_the_terminal(
    index_dir: Path, llm_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_search(index_dir, "--llm", llm_server.url, "--llm-model", "good")) == 0
    assert not TERMINAL_CONTROLS.search(capsys.readouterr().out.replace("\n", ""))
