"""The command line through ``main(argv)``, with a fake encoder in place of the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FakeEncoder
from qa.cli import main

HIT_FIELDS = {
    "rank",
    "score",
    "passage_id",
    "doc_id",
    "source",
    "title",
    "outlet",
    "author",
    "date",
    "paragraph",
    "text",
}


class FakeModelEncoder(FakeEncoder):
    """Stands in for SentenceTransformerEncoder: same constructor and chunking hooks."""

    def __init__(self, name: str) -> None:
        super().__init__(name)

    def max_tokens(self) -> int:
        return 254

    def token_counter(self) -> None:
        return None


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("qa.pipeline.SentenceTransformerEncoder", FakeModelEncoder)
    monkeypatch.delenv("QA_MODEL", raising=False)


@pytest.fixture
def index_dir(corpus_copy: Path, tmp_path: Path) -> Path:
    index = tmp_path / "index"
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index)]) == 0
    return index


def test_index_reports_counts(corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(tmp_path / "i")]) == 0
    out = capsys.readouterr().out
    assert "5 documents" in out and "added 5, changed 0, removed 0" in out and " s " in out
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(tmp_path / "i")]) == 0
    assert "up to date" in capsys.readouterr().out


def test_search_json_has_the_documented_shape(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", "Why do defectors return?", "--k", "3", "--json", "--index", str(index_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"query", "answerable", "answer", "hits"}
    assert (result["query"], result["answerable"], result["answer"]) == ("Why do defectors return?", True, "")
    assert [hit["rank"] for hit in result["hits"]] == [1, 2, 3]
    assert all(set(hit) == HIT_FIELDS for hit in result["hits"])
    scores = [hit["score"] for hit in result["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_readable_output_shows_attribution(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert (
        main(
            [
                "search",
                "reasons for defectors returning classified into three broad groups",
                "--k",
                "1",
                "--index",
                str(index_dir),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("1. [")
    assert "The Korea Times, 2020-08-02, paragraph 5" in out


def test_batch_answers_each_line_in_order(index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text("Why do defectors return?\n\nWho is Kim Yo Jong?\n")
    capsys.readouterr()
    assert main(["search", "--batch", str(questions), "--k", "2", "--index", str(index_dir)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["query"] for row in rows] == ["Why do defectors return?", "", "Who is Kim Yo Jong?"]
    assert len(rows[0]["hits"]) == 2 and "error" in rows[1]


def test_passages_lists_everything_in_order(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["passages", "--json", "--index", str(index_dir)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    order = [(row["source"], row["start"]) for row in rows]
    assert order == sorted(order)
    assert len({row["passage_id"] for row in rows}) == len(rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "--corpus", "{tmp}/missing"], "corpus folder not found"),
        (["search", "anything", "--index", "{tmp}/none"], "run `qa index` first"),
        (["passages", "--index", "{tmp}/none"], "run `qa index` first"),
        (["search", "   ", "--index", "{index}"], "question is empty"),
        (["search", "anything", "--model", "other/model", "--index", "{index}"], "built with model"),
        (["search", "--index", "{index}"], "give a question"),
        (["search", "q", "--k", "0", "--index", "{index}"], "--k must be at least 1"),
        (["search", "--batch", "{tmp}/missing.txt", "--index", "{index}"], "cannot read questions"),
    ],
)
def test_errors_are_one_clear_line(
    argv: list[str], message: str, index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    status = main([part.format(tmp=tmp_path, index=index_dir) for part in argv])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("qa: error:") and message in err


def test_model_from_environment_must_match_index(
    index_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QA_MODEL", "env/model")
    assert main(["search", "anything", "--index", str(index_dir)]) == 1
    assert "env/model" in capsys.readouterr().err


def test_skipped_file_is_a_warning_not_a_failure(
    corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (corpus_copy / "broken.txt").write_bytes(b"\xff\xfe\x81" * 20)
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(tmp_path / "i")]) == 0
    captured = capsys.readouterr()
    assert "qa: warning: skipped broken.txt" in captured.err
    assert "5 documents" in captured.out
