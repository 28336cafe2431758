"""The command line through ``main(argv)``, with a fake encoder in place of the model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import (
    DAMAGES,
    EMPTY_QUESTIONS,
    ODD_QUESTIONS,
    REPO,
    TERMINAL_CONTROLS,
    WRONG_MANIFESTS,
    FakeModelEncoder,
    IndexWorker,
    damage_index,
    rewrite_manifest,
    write_lines,
)
from qa.cli import main
from qa.index.build import open_index
from qa.index.manifest import FORMAT_VERSION, read_manifest
from qa.search.question import MAX_QUESTION_CHARS, normalize_question

# A manifest rewritten with a matching checksum is only caught when the files are parsed, which
# the unchanged-corpus fast path of `qa index` does not do (see the test after the next).
FOUND_BY_QA_INDEX = [damage for damage in DAMAGES if damage != "manifest and checksum edited"]

KOREA_TIMES = "koreatimes-why-do-nk-defectors-flee-to-destitute-north.txt"
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
    "url",
    "paragraph",
    "text",
    "evidence",
    "dense_rank",
    "dense_score",
    "bm25_rank",
    "bm25_score",
    "also_in",
    "reader_score",
    "span",
}


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # `qa index` makes its encoder in qa.index.build; search and eval import it from qa.embed.encoder when run.
    monkeypatch.setattr("qa.index.build.SentenceTransformerEncoder", FakeModelEncoder)
    monkeypatch.setattr("qa.embed.encoder.SentenceTransformerEncoder", FakeModelEncoder)
    monkeypatch.delenv("QA_MODEL", raising=False)
    # The trained reader is tried with the real one where it matters (test_search_with_the_reader_...).
    monkeypatch.setenv("QA_READER", "off")


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


@pytest.mark.parametrize("command", ["index", "search"])
def test_backend_option_reaches_the_encoder(index_dir: Path, corpus_copy: Path, command: str) -> None:
    FakeModelEncoder.made.clear()
    arguments = ["--corpus", str(corpus_copy)] if command == "index" else ["Why do defectors return?"]
    assert main([command, *arguments, "--index", str(index_dir), "--backend", "torch"]) == 0
    assert [encoder.backend for encoder in FakeModelEncoder.made] == ["torch"]


def test_unknown_backend_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["search", "question", "--backend", "onnx-int4"])
    assert "openvino-bf16" in capsys.readouterr().err


def test_search_json_has_the_documented_shape(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", "Why do defectors return?", "--k", "3", "--json", "--index", str(index_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"query", "answerable", "answer", "suggestion", "short_answer", "hits"}
    assert (result["query"], result["answerable"]) == ("Why do defectors return?", True)
    assert [hit["rank"] for hit in result["hits"]] == [1, 2, 3]
    assert all(set(hit) == HIT_FIELDS for hit in result["hits"])
    for hit in result["hits"]:
        evidence = hit["evidence"]
        assert hit["text"][evidence["start"] : evidence["end"]] == evidence["text"]
        assert f"{evidence['text']} [{hit['rank']}]" in result["answer"] or evidence["score"] < 1
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
    assert "Sources:" in out
    assert "1. [" in out and "The Korea Times, 2020-08-02, paragraph 5" in out


def test_batch_answers_each_line_in_order(index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text("Why do defectors return?\n\nWho is Kim Yo Jong?\n")
    capsys.readouterr()
    assert main(["search", "--batch", str(questions), "--k", "2", "--index", str(index_dir)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["query"] for row in rows] == ["Why do defectors return?", "", "Who is Kim Yo Jong?"]
    assert len(rows[0]["hits"]) == 2 and "error" in rows[1]


@pytest.mark.parametrize("kind", sorted(ODD_QUESTIONS))
def test_odd_questions_get_an_answer(index_dir: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    typed = ODD_QUESTIONS[kind]
    capsys.readouterr()
    assert main(["search", typed, "--json", "--index", str(index_dir)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["query"] == normalize_question(typed).text and result["hits"]
    if kind == "long":
        assert len(result["query"]) <= MAX_QUESTION_CHARS
        assert captured.err.startswith(f"qa: warning: Your question was {len(typed):,} characters long; only")
    else:
        assert captured.err == ""
    assert main(["search", typed, "--index", str(index_dir)]) == 0
    assert "Sources:" in capsys.readouterr().out


@pytest.mark.parametrize("typed", EMPTY_QUESTIONS)
def test_empty_questions_are_one_clear_error(index_dir: Path, typed: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", typed, "--index", str(index_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qa: error: the question is empty: ask something") and err.count("\n") == 1


def test_batch_normalises_each_line_like_a_single_question(
    index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [ODD_QUESTIONS["controls"].replace("\r", "").replace("\n", ""), "\x00\u200b", ODD_QUESTIONS["long"]]
    questions = tmp_path / "questions.txt"
    questions.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8", newline="")
    capsys.readouterr()
    assert main(["search", "--batch", str(questions), "--k", "2", "--index", str(index_dir)]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [row["query"] for row in rows] == [normalize_question(lines[0]).text, "", normalize_question(lines[2]).text]
    assert rows[1] == {"query": "", "error": "the question is empty"}
    assert captured.err.startswith("qa: warning: line 3: Your question was")


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


@pytest.mark.parametrize("command", ["search", "eval"])
def test_another_model_than_the_index_is_refused_naming_both(
    command: str, index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"id": "q1", "question": "Why do defectors return?", "relevant": []}) + "\n")
    asked = ["Why do defectors return?"] if command == "search" else ["--questions", str(questions)]
    built_with = read_manifest(index_dir).model  # the fake encoder under the default model's name
    FakeModelEncoder.made.clear()
    capsys.readouterr()
    assert main([command, *asked, "--model", "other-model", "--index", str(index_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"qa: error: the index was built with model {built_with!r}, not 'other-model'")
    assert "qa index --model other-model" in line  # the fix names the model asked for
    assert FakeModelEncoder.made == []  # refused before any model was loaded


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


def test_index_says_which_files_were_not_utf8_and_which_were_skipped(
    corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    article = "재입북 탈북민 올해 늘어\n\n통일부는 올해 들어 북한으로 다시 돌아간 탈북민이 지난해보다 늘었다고 밝혔다."
    (corpus_copy / "korean.txt").write_bytes(article.encode("cp949"))
    (corpus_copy / "empty.txt").write_bytes(b"")
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(tmp_path / "i")]) == 0
    captured = capsys.readouterr()
    assert "Decoded korean.txt as cp949 (not UTF-8)." in captured.out.splitlines()
    assert "6 documents" in captured.out
    assert "qa: warning: skipped empty.txt: the file is empty" in captured.err


def test_search_modes_and_filters(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = "dailynk-kim-yo-jong-orders-encouragement-for-defector-families.txt"  # ids keep the suffix
    for argv in (["--mode", "bm25"], ["--doc", doc], ["--outlet", "Daily NK"]):
        capsys.readouterr()
        assert main(["search", "families of defectors", "--json", "--index", str(index_dir), *argv]) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        assert hits
        if argv[0] != "--mode":
            assert {hit["doc_id"] for hit in hits} == {doc}
        else:
            assert all(hit["dense_rank"] is None and hit["bm25_rank"] for hit in hits)


def test_follow_up_question_uses_earlier_turns(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    argv = ["search", "What did she say?", "--k", "1", "--json", "--index", str(index_dir)]
    assert main([*argv, "--after", "Lim Ji-hyun video Uriminzokkiri Jeon Hye-sung"]) == 0
    assert "Lim" in json.loads(capsys.readouterr().out)["hits"][0]["text"]


def test_eval_writes_table_json_report_and_chart(
    index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "id": "a",
            "question": "three broad groups of reasons",
            "kind": "single",
            "relevant": [{"source": KOREA_TIMES, "anchor": "could be classified into three broad groups"}],
        },
        {"id": "b", "question": "sourdough bread recipe", "kind": "unanswerable", "relevant": []},
    ]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report, chart = tmp_path / "out" / "report.md", tmp_path / "out" / "chart.png"
    argv = ["eval", "--questions", str(questions), "--index", str(index_dir), "--modes", "bm25,hybrid"]
    capsys.readouterr()
    assert main([*argv, "--report", str(report), "--chart", str(chart)]) == 0
    table = capsys.readouterr().out
    assert "bm25" in table and "hybrid" in table and "MRR@10" in table and "dense " not in table
    assert "# Retrieval evaluation" in report.read_text() and chart.read_bytes()[:4] == b"\x89PNG"
    assert main([*argv, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results["modes"]) == {"bm25", "hybrid"}
    assert results["modes"]["bm25"]["metrics"]["recall@10"] == 1.0


def test_eval_rejects_unknown_mode(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--questions", "x.jsonl", "--index", str(index_dir), "--modes", "bm25,magic"]) == 1
    assert "magic" in capsys.readouterr().err


@pytest.mark.parametrize("damage", FOUND_BY_QA_INDEX)
def test_a_damaged_index_is_one_line_naming_the_fix_and_qa_index_repairs_it(
    damage: str, index_dir: Path, corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage_index(index_dir, damage)
    for command in (["search", "Why do defectors return?"], ["passages"]):
        capsys.readouterr()
        assert main([*command, "--index", str(index_dir)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("qa: error: the index in")
        assert DAMAGES[damage] in err and "run `qa index --rebuild`" in err
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 0
    out = capsys.readouterr().out
    assert f"Rebuilt from scratch: the index in {index_dir} is damaged (" in out and DAMAGES[damage] in out
    assert "0 passages and 0 sentences embedded" in out  # the embedding cache survives the damage
    assert main(["search", "Why do defectors return?", "--index", str(index_dir)]) == 0


def test_a_consistently_rewritten_manifest_is_caught_on_loading_and_fixed_by_rebuild(
    index_dir: Path, corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage_index(index_dir, "manifest and checksum edited")
    capsys.readouterr()
    assert main(["search", "Why do defectors return?", "--index", str(index_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the manifest says" in err and "run `qa index --rebuild`" in err
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir), "--rebuild"]) == 0
    assert main(["search", "Why do defectors return?", "--index", str(index_dir)]) == 0


def test_an_index_of_an_older_format_is_rebuilt_by_qa_index(
    index_dir: Path, corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((index_dir / "manifest.json").read_text())
    (index_dir / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    capsys.readouterr()
    assert main(["search", "Why do defectors return?", "--index", str(index_dir)]) == 1
    expected = f"format version 2; this qa reads version {FORMAT_VERSION}: run `qa index --rebuild`"
    assert expected in capsys.readouterr().err
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 0
    assert "Rebuilt from scratch: the index in" in capsys.readouterr().out
    assert main(["search", "Why do defectors return?", "--index", str(index_dir)]) == 0


def test_a_second_qa_index_waits_for_the_first_then_finds_its_work_done(corpus_copy: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    first = IndexWorker(corpus_copy, index, pause="embedding")
    first.wait_for("PAUSED embedding")  # holds the lock, part-way through embedding
    second = IndexWorker(corpus_copy, index)
    second.wait_for(f"qa: waiting up to 600 s for another qa index (pid {first.process.pid}) to finish")
    assert second.process.poll() is None
    first.let_go()
    assert first.finish() == 0 and second.finish() == 0, "".join(first.output + second.output)
    assert any("Index updated: 5 documents" in line for line in first.output)
    assert any("Index up to date: 5 documents" in line for line in second.output)
    index_files = {p.name for p in index.iterdir()}
    ours = {"manifest.json", "embeddings.sqlite", "qa-index.lock", "corpus-stamps.json"}
    assert index_files == {*ours, *read_manifest(index).files.values()}
    assert len(open_index(index).documents) == 5


def test_a_second_qa_index_gives_up_after_wait_seconds_with_one_line(corpus_copy: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    first = IndexWorker(corpus_copy, index, pause="manifest-before-rename")
    first.wait_for("PAUSED manifest-before-rename")
    second = IndexWorker(corpus_copy, index, options=("--wait", "0.5"))
    assert second.finish() == 1
    errors = [line for line in second.output if line.startswith("qa: ")]
    assert errors[-1].startswith(f"qa: error: another qa index (pid {first.process.pid}) is updating {index}")
    assert "after waiting 0.5 s: try again when it has finished" in errors[-1]
    first.let_go()
    assert first.finish() == 0
    assert len(open_index(index).documents) == 5


def test_search_does_not_import_the_web_app_or_torch(index_dir: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import REPO

    # A fresh process: the fake encoder stands in for the model, everything else is the real command.
    code = (
        "import sys; import conftest; import qa.embed.encoder; import qa.index.build;"
        "qa.index.build.SentenceTransformerEncoder = conftest.FakeModelEncoder;"
        "qa.embed.encoder.SentenceTransformerEncoder = conftest.FakeModelEncoder;"
        "from qa.cli import main;"
        f"status = main(['search', 'Why do defectors return?', '--index', {str(index_dir)!r}]);"
        "print(status, sorted(m for m in ('gradio', 'torch', 'sentence_transformers') if m in sys.modules))"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    environment.pop("QA_MODEL", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert run.stdout.strip().splitlines()[-1] == "0 []"


def test_an_unchanged_qa_index_loads_no_model_tokenizer_numpy_or_faiss(corpus_copy: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO, FakeEncoder
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.embed.models import DEFAULT_MODEL
    from qa.index.build import index_corpus, settings_for

    index = tmp_path / "index"
    # Built as `qa index` builds (the bundled model's settings and tokenizer), vectors from the fake.
    settings, count_tokens = settings_for(SentenceTransformerEncoder(DEFAULT_MODEL))
    encoder = FakeEncoder(DEFAULT_MODEL)
    index_corpus(corpus_copy, index, encoder=encoder, settings=settings, count_tokens=count_tokens)
    heavy = ("numpy", "faiss", "tokenizers", "torch", "sentence_transformers", "openvino", "sqlite3", "gradio")
    code = (
        "import sys; from qa.cli import main;"
        f"status = main(['index', '--corpus', {str(corpus_copy)!r}, '--index', {str(index)!r}]);"
        f"print(status, sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    environment.pop("QA_MODEL", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert "Index up to date" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "0 []"


# --- the index folder: only qa's files, one line for every way it cannot be used ---------------


def test_qa_index_refuses_a_folder_of_other_files_and_deletes_none_of_them(
    corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "documents"
    names = ["bm25-draft.txt", "documents-2020.jsonl", "passages-old.jsonl", "vectors-a.faiss", ".notes.tmp"]
    for name in names:
        write_lines(folder / name, [f"kept: {name}"])
    capsys.readouterr()
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(folder)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"qa: error: {folder} is not an index folder of qa and holds other files (")
    assert line.endswith("give --index an empty or new folder, or the folder of an index")
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    assert all((folder / name).read_text() == f"kept: {name}\n" for name in names)


def test_qa_index_never_deletes_files_it_did_not_write_in_its_own_index_folder(
    index_dir: Path, corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["bm25-draft.txt", "documents-2020.jsonl", "passages-0abc.jsonl", "slots-1.npy", ".notes.tmp"]
    for name in names:
        write_lines(index_dir / name, [f"kept: {name}"])
    (corpus_copy / KOREA_TIMES).unlink()  # a change, so the build writes a new generation
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 0
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir), "--rebuild"]) == 0
    assert all((index_dir / name).read_text() == f"kept: {name}\n" for name in names)
    qa_files = {"manifest.json", "embeddings.sqlite", "qa-index.lock", "corpus-stamps.json"}
    qa_files |= set(read_manifest(index_dir).files.values())
    assert {p.name for p in index_dir.iterdir()} == qa_files | set(names)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "--corpus", "{corpus}", "--index", "{file}"], "is a file, not a folder: give --index a folder"),
        (["search", "q", "--index", "{file}"], "is a file, not an index folder: give --index the index's folder"),
        (["passages", "--index", "{file}"], "is a file, not an index folder"),
        (["index", "--corpus", "{corpus}", "--index", "/proc/self"], "is not an index folder of qa"),
        (["index", "--corpus", "{corpus}", "--index", "/proc/self/qa-index"], "cannot use /proc/self/qa-index as"),
        (["index", "--corpus", "{corpus}", "--index", "{file}/index"], "index folder (Not a directory): give --index"),
    ],
)
def test_an_index_folder_that_cannot_be_used_is_one_clear_line(
    argv: list[str], message: str, corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_lines(tmp_path / "a-file.txt", ["not an index"])
    assert main([part.format(corpus=corpus_copy, file=file) for part in argv]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("qa: error: ") and message in line
    assert file.read_text() == "not an index\n"


def test_a_lock_file_that_is_a_symlink_is_one_clear_line_and_its_target_is_untouched(
    index_dir: Path, corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = write_lines(tmp_path / "precious.txt", ["a file qa did not write"])
    (index_dir / "qa-index.lock").unlink()
    (index_dir / "qa-index.lock").symlink_to(victim)
    capsys.readouterr()
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "qa-index.lock is a symbolic link" in line and line.endswith(": remove the link")
    assert victim.read_text() == "a file qa did not write\n"


def test_a_full_disk_at_the_lock_is_one_clear_line(
    index_dir: Path, corpus_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import os

    def full(*_: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before = open_index(index_dir).passages
    monkeypatch.setattr(os, "pwrite", full)
    capsys.readouterr()
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 1
    monkeypatch.undo()
    [line] = capsys.readouterr().err.splitlines()
    assert "(No space left on device): free some disk space" in line
    assert open_index(index_dir).passages == before


def test_an_index_on_a_read_only_file_system_is_one_clear_line(
    index_dir: Path, corpus_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    real_open = os.open

    def read_only(path: str | os.PathLike[str], flags: int, *args: object) -> int:
        if Path(path).is_relative_to(index_dir) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    before = open_index(index_dir).passages
    monkeypatch.setattr(os, "open", read_only)
    capsys.readouterr()
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 1
    monkeypatch.undo()
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"qa: error: cannot use {index_dir} as the index folder (Read-only file system): "
        "give --index a folder you may write to (qa makes it if it is missing)"
    )
    assert open_index(index_dir).passages == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_index_folder_is_one_clear_line(
    index_dir: Path, corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (corpus_copy / KOREA_TIMES).unlink()  # a change: the build must write
    before = open_index(index_dir).passages
    index_dir.chmod(0o555)
    try:
        capsys.readouterr()
        assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 1
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("qa: error: ") and "give --index a folder you may write to" in line
        fresh = index_dir.parent / "fresh"
        fresh.mkdir(mode=0o555)
        assert main(["index", "--corpus", str(corpus_copy), "--index", str(fresh)]) == 1
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"qa: error: cannot use {fresh} as the index folder (Permission denied)")
    finally:
        index_dir.chmod(0o755)
    assert open_index(index_dir).passages == before


@pytest.mark.parametrize("wrong", WRONG_MANIFESTS)
def test_a_manifest_of_wrong_types_is_one_line_and_qa_index_repairs_it(
    wrong: str, index_dir: Path, corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, named = WRONG_MANIFESTS[wrong]
    rewrite_manifest(index_dir, edit)
    for command in (["search", "Why do defectors return?"], ["passages"]):
        capsys.readouterr()
        assert main([*command, "--index", str(index_dir)]) == 1
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("qa: error: the index in") and named in line and "run `qa index --rebuild`" in line
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 0
    assert "Rebuilt from scratch: the index in" in capsys.readouterr().out
    assert main(["search", "Why do defectors return?", "--index", str(index_dir)]) == 0


@pytest.mark.parametrize("seconds", ["-5", "-0.5", "nan", "inf", "soon", ""])
def test_wait_must_be_a_number_of_seconds(seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["index", "--wait", seconds])
    assert exited.value.code == 2
    assert f"argument --wait: {seconds!r} is not a number of seconds, 0 or more" in capsys.readouterr().err


# --- what the corpus says reaches the terminal cleaned, and JSON escaped ------------------------

EVIL_TITLE = "Title \u202eevil\u202c \x1b[31mred\x1b[0m\x07 \x9b2J end"
EVIL_SOURCE = "evil\x1b]0;pwned\x07\x1b[2J\r.txt"


@pytest.fixture
def evil_index(tmp_path: Path) -> Path:
    from qa.index.build import index_documents
    from qa.index.manifest import IndexSettings
    from qa.ingest.split import split_passages
    from qa.records import Document

    document = Document(
        doc_id="evil",
        source=EVIL_SOURCE,
        paragraphs=("Why do defectors return \x1b[5mhome\x1b[0m? Family,\r money \u2066and\u2069 fear\x00.",),
        title=EVIL_TITLE,
        outlet="Out\x1blet\x7f",
        date="2020-01-01\x1b[8m",
    )
    passages = split_passages(document, max_tokens=128, min_words=1)
    index = tmp_path / "evil-index"
    encoder = FakeModelEncoder("sentence-transformers/all-MiniLM-L6-v2")
    settings = IndexSettings(max_tokens=128, min_words=1)
    index_documents([document], passages, index, fingerprint="evil", encoder=encoder, settings=settings)
    return index


@pytest.mark.parametrize("command", [["search", "Why do defectors return?"], ["passages"]])
def test_control_characters_from_the_corpus_never_reach_the_terminal(
    command: list[str], evil_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main([*command, "--index", str(evil_index)]) == 0
    out = capsys.readouterr().out
    assert not TERMINAL_CONTROLS.search(out), repr(out)
    assert "Title evil red 2J end" in out and "(evil .txt)" in out and "Outlet" in out


@pytest.mark.parametrize("command", [["search", "Why do defectors return?"], ["passages"]])
def test_json_keeps_every_character_of_the_corpus_and_escapes_those_that_drive_a_terminal(
    command: list[str], evil_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main([*command, "--json", "--index", str(evil_index)]) == 0
    out = capsys.readouterr().out
    assert not TERMINAL_CONTROLS.search(out), repr(out)
    rows = [json.loads(out)["hits"][0]] if command[0] == "search" else [json.loads(line) for line in out.splitlines()]
    assert rows[0]["title"] == EVIL_TITLE and rows[0]["source"] == EVIL_SOURCE


def test_file_names_in_index_messages_are_cleaned(
    corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    article = "재입북 탈북민 올해 늘어\n\n통일부는 올해 들어 북한으로 다시 돌아간 탈북민이 지난해보다 늘었다고 밝혔다."
    (corpus_copy / "kor\x1b[2Jean\x07.txt").write_bytes(article.encode("cp949"))
    (corpus_copy / "em\x1b]0;x\x07pty.txt").write_bytes(b"")
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(tmp_path / "i")]) == 0
    captured = capsys.readouterr()
    assert not TERMINAL_CONTROLS.search(captured.out + captured.err), repr(captured)
    assert "korean.txt" in captured.out + captured.err and "empty.txt" in captured.err


# --- issue 13: filters named as the app shows them, and errors that list what exists ---------------

DAILY_NK = "dailynk-kim-yo-jong-orders-encouragement-for-defector-families.txt"
RFA = "rfa-kim-jong-un-orders-state-organs-to-repatriate-defectors.txt"


def _search_json(index_dir: Path, capsys: pytest.CaptureFixture[str], *options: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(["search", "families of defectors", "--json", "--index", str(index_dir), *options]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


@pytest.mark.parametrize(
    ("options", "doc_ids"),
    [
        (["--doc", "koreatimes-why-do-nk-defectors-flee-to-destitute-north"], {KOREA_TIMES}),  # no extension
        (["--doc", "WHY DO NK DEFECTORS FLEE TO DESTITUTE NORTH?"], {KOREA_TIMES}),  # the title the app shows
        (["--doc", "North Korea's Kim Jong Un Orders State Organs to Repatriate Defectors"], {RFA}),  # ’ typed as '
        (["--outlet", "korea times"], {KOREA_TIMES}),  # The Korea Times
        (["--outlet", "daily nk", "--outlet", "The RFA"], {DAILY_NK, RFA}),
        (["--from", "2020-08-02", "--to", "2020-08-02"], {KOREA_TIMES}),  # the only dated article
    ],
)
def test_filters_take_names_as_people_write_them(
    index_dir: Path, capsys: pytest.CaptureFixture[str], options: list[str], doc_ids: set[str]
) -> None:
    hits = _search_json(index_dir, capsys, *options)["hits"]
    assert isinstance(hits, list) and hits
    assert {hit["doc_id"] for hit in hits} <= doc_ids
    if len(doc_ids) == 1:
        assert {hit["doc_id"] for hit in hits} == doc_ids


@pytest.mark.parametrize(
    ("options", "starts", "lists"),
    [
        (["--doc", "koreatimes"], "no document 'koreatimes' in the index: its 5 documents are ", [DAILY_NK, RFA]),
        (
            ["--outlet", "Yonhap"],
            "no outlet 'Yonhap' in the index: its outlets are ",
            ["Daily NK, RFA, The Korea Times"],
        ),
        (["--from", "2020-13-01"], "dates look like 2020-08-02 (a real day), not '2020-13-01'", ["is from 2020-08-02"]),
        (["--from", "2021-01-01", "--to", "2020-01-01"], "the date range ends before it starts", ["4 of the 5"]),
    ],
)
def test_a_filter_naming_nothing_is_one_error_listing_what_exists(
    index_dir: Path, capsys: pytest.CaptureFixture[str], options: list[str], starts: str, lists: list[str]
) -> None:
    FakeModelEncoder.made.clear()
    capsys.readouterr()
    assert main(["search", "families of defectors", "--index", str(index_dir), *options]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # never "No passages found."
    [line] = captured.err.splitlines()
    assert line.startswith(f"qa: error: {starts}")
    assert all(text in line for text in lists), line
    assert FakeModelEncoder.made == []  # refused before the model loads


def test_a_filter_that_leaves_nothing_says_no_article_matches(
    index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qa.search.filters import NO_ARTICLE_MATCHES

    capsys.readouterr()
    argv = ["search", "families of defectors", "--outlet", "RFA", "--from", "2020-01-01", "--index", str(index_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{NO_ARTICLE_MATCHES} (outlets: RFA; dates: from 2020-01-01).")
    assert "Articles without a date are outside any date range" in out and "4 of the 5 have no date" in out
    assert "do not answer" not in out and "No passages found" not in out
    result = _search_json(index_dir, capsys, "--outlet", "RFA", "--from", "2020-01-01")
    assert result["hits"] == [] and str(result["answer"]).startswith(NO_ARTICLE_MATCHES)


# --- issue 13: an empty corpus or index, and mistyped command lines ---------------------------------


def test_qa_index_of_an_empty_corpus_is_an_error_and_makes_no_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "notes.pdf").write_bytes(b"%PDF-1.4")
    capsys.readouterr()
    assert main(["index", "--corpus", str(tmp_path / "corpus"), "--index", str(tmp_path / "index")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"qa: error: nothing to index: {tmp_path / 'corpus'} holds no .txt, .md, .markdown, .html")
    assert "the index was left as it was" in line
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_qa_index_of_a_boilerplate_only_corpus_says_why_and_keeps_the_index(
    index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "menus"
    write_lines(corpus / "menu.txt", ["Home", "News", "Login", "Subscribe"])
    write_lines(corpus / "footer.txt", ["Copyright 2020", "Privacy | Terms"])
    before = read_manifest(index_dir)
    capsys.readouterr()
    # --rebuild: the five documents may go, but not for nothing.
    assert main(["index", "--corpus", str(corpus), "--index", str(index_dir), "--rebuild"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":", 3)[2].strip() for line in lines[:-1]] == ["skipped footer.txt", "skipped menu.txt"]
    assert lines[-1].startswith(f"qa: error: nothing to index: none of the 2 files in {corpus} holds article text")
    assert read_manifest(index_dir) == before
    assert len(open_index(index_dir).documents) == 5


def test_qa_search_of_an_empty_index_says_it_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import FakeEncoder
    from qa.index.build import index_documents
    from qa.index.manifest import IndexSettings

    encoder = FakeEncoder("sentence-transformers/all-MiniLM-L6-v2")
    settings = IndexSettings(max_tokens=254, min_words=12)
    index_documents([], [], tmp_path / "index", fingerprint="none", encoder=encoder, settings=settings)
    capsys.readouterr()
    assert main(["search", "Why do defectors return?", "--index", str(tmp_path / "index")]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"qa: error: the index in {tmp_path / 'index'} is empty: it holds no passages to search")


@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (["search", "q", "--kk", "3"], "usage: qa search", "unrecognized arguments: --kk 3 (did you mean --k?)"),
        (["search", "q", "--outlett=RFA"], "usage: qa search", "(did you mean --outlet?)"),
        (["index", "--corpsu", "x"], "usage: qa index", "unrecognized arguments: --corpsu x (did you mean --corpus?)"),
        (["eval", "--questions", "q.jsonl", "--mdoes", "bm25"], "usage: qa eval", "(did you mean --modes?)"),
        (["search"], "usage: qa search", 'say what to ask: a question (qa search "Why do defectors return?")'),
        (["search", "q", "--batch", "-"], "usage: qa search", "give a question or --batch FILE, not both"),
    ],
)
def test_a_mistyped_command_line_shows_the_commands_usage(
    argv: list[str], usage: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and message in err.splitlines()[-1]


def test_a_mistyped_option_exits_2_with_the_usage_from_the_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO

    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-c", "from qa.cli import entry_point; entry_point()", "search", "q", "--doc-id", "x"]
    run = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path, check=False)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("usage: qa search [-h]") and "--doc DOC" in run.stderr
    assert run.stderr.splitlines()[-1] == ("qa search: error: unrecognized arguments: --doc-id x (did you mean --doc?)")


def test_a_list_answer_keeps_one_point_a_line_and_a_suggestion_is_shown_first() -> None:
    from qa.cli.output import format_result
    from qa.records import Hit, Passage, SearchResult

    passage = Passage("a.txt#p1-0", "a.txt", "a.txt", 1, 0, 5, "Text.")
    point = "- Firstly, there are people who return to avoid criminal penalties after crimes here. [1]"
    result = SearchResult(
        query="why do defecters return",
        hits=(Hit(rank=1, score=1.0, passage=passage),),
        answer=f"{point}\n- Lastly, some fail to adjust. [1]",
        suggestion="why do defectors return",
    )
    lines = format_result(result, width=60).splitlines()
    assert lines[0] == "Did you mean: why do defectors return?"
    points = [line for line in lines if line.startswith("- ")]
    assert [p.split()[1] for p in points] == ["Firstly,", "Lastly,"]  # not run together into one paragraph
    continuation = lines[lines.index(points[0]) + 1]
    assert continuation.startswith("  ") and not continuation.startswith("   ")


def test_emphasized_bolds_a_span_even_where_wrapping_broke_it() -> None:
    from qa.cli.output import BOLD, PLAIN, emphasized

    text = "Answer: June 10 [1]\n\nthe order came on the morning of June\n   10, the source said."
    marked = emphasized(text, "June 10")
    assert marked.count(BOLD) == 2 and marked.count(PLAIN) == 2
    assert f"{BOLD}June\n   10{PLAIN}" in marked
    assert emphasized(text, "") == text


@pytest.mark.slow
def test_search_with_the_reader_reads_and_without_it_does_not(
    index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    question = "On what date did Kim Yo Jong send her instruction to the provinces?"
    capsys.readouterr()
    assert main(["search", question, "--json", "--reader", "on", "--index", str(index_dir)]) == 0
    read = json.loads(capsys.readouterr().out)
    assert all(hit["reader_score"] is not None for hit in read["hits"])
    for hit in read["hits"]:
        if hit["span"]:
            assert hit["text"][hit["span"]["start"] : hit["span"]["end"]] == hit["span"]["text"]
    if read["short_answer"]:
        assert read["short_answer"]["rank"] in [hit["rank"] for hit in read["hits"]]
    assert main(["search", question, "--json", "--reader", "off", "--index", str(index_dir)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["short_answer"] is None
    assert all(hit["reader_score"] is None and hit["span"] is None for hit in plain["hits"])


@pytest.mark.slow
def test_eval_scores_hybrid_with_and_without_the_reader_in_one_run(
    index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = REPO / "eval" / "questions.jsonl"
    capsys.readouterr()
    args = ["eval", "--questions", str(questions), "--modes", "hybrid", "--json", "--index", str(index_dir)]
    assert main([*args, "--reader", "on"]) == 0
    assert set(json.loads(capsys.readouterr().out)["modes"]) == {"hybrid", "hybrid+reader"}
    assert main([*args, "--reader", "off"]) == 0
    assert set(json.loads(capsys.readouterr().out)["modes"]) == {"hybrid"}


def test_a_reader_setting_that_is_neither_on_nor_off_is_one_clear_error(
    index_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QA_READER", "maybe")
    capsys.readouterr()
    assert main(["search", "Why do defectors return?", "--index", str(index_dir)]) == 1
    assert capsys.readouterr().err.strip() == "qa: error: unknown reader setting 'maybe': use on or off"


def test_a_milvus_lite_store_is_indexed_searched_and_listed_like_the_local_index(
    corpus_copy: Path, tmp_path: Path, index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("milvus_lite")
    store = f"milvus-lite:{tmp_path / 'qa.db'}"
    work = ["--index", str(tmp_path / "work")]
    capsys.readouterr()
    assert main(["index", "--corpus", str(corpus_copy), "--store", store, *work]) == 0
    out = capsys.readouterr().out
    assert "added 5, changed 0, removed 0" in out
    assert out.rstrip().endswith(f"-> Milvus Lite in {tmp_path / 'qa.db'}, collection qa_passages")
    answers = []
    for where in (["--store", store], ["--index", str(index_dir)]):
        assert main(["search", "Why do defectors return?", "--k", "3", "--json", *where]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    # The same answer from either backend, BM25 scores to float32 rounding.
    milvus_bm25 = [hit.pop("bm25_score") for hit in answers[0]["hits"]]
    local_bm25 = [hit.pop("bm25_score") for hit in answers[1]["hits"]]
    assert answers[0] == answers[1]
    assert milvus_bm25 == pytest.approx(local_bm25, rel=1e-5)
    assert main(["passages", "--json", "--store", store]) == 0
    from_milvus = capsys.readouterr().out
    assert main(["passages", "--json", "--index", str(index_dir)]) == 0
    assert from_milvus == capsys.readouterr().out
    os.environ["QA_STORE"] = store  # as --store
    try:
        assert main(["index", "--corpus", str(corpus_copy), *work]) == 0
    finally:
        del os.environ["QA_STORE"]
    assert "up to date" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("milvus-lite:{tmp}/none.db", "qa: error: no index in Milvus Lite in {tmp}/none.db, collection qa_passages: "),
        ("milvus://127.0.0.1:9/news", "qa: error: Milvus at 127.0.0.1:9, collection news: failed while connecting"),
        ("milvus://me:secret@host:1", "qa: error: a Milvus address takes no user or password"),
    ],
)
def test_store_errors_are_one_line(
    store: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("milvus_lite")
    monkeypatch.setenv("QA_MILVUS_TOKEN", "token-never-shown")
    assert main(["search", "Why?", "--store", store.format(tmp=tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected.format(tmp=tmp_path)) and err.count("\n") == 1
    assert "token-never-shown" not in err and "secret" not in err.split(":", 2)[2]


def test_a_local_index_is_copied_into_milvus_without_embedding_and_stays_current(
    corpus_copy: Path, tmp_path: Path, index_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("milvus_lite")
    store = f"milvus-lite:{tmp_path / 'qa.db'}"
    FakeModelEncoder.made.clear()
    capsys.readouterr()
    assert main(["index", "--store", store, "--from-index", str(index_dir)]) == 0
    assert "added 5, changed 0, removed 0; 0 passages and 0 sentences embedded" in capsys.readouterr().out
    assert all(not encoder.calls for encoder in FakeModelEncoder.made)
    assert main(["index", "--store", store, "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 0
    assert "Index up to date" in capsys.readouterr().out
    assert main(["passages", "--json", "--store", store]) == 0
    from_milvus = capsys.readouterr().out
    assert main(["passages", "--json", "--index", str(index_dir)]) == 0
    assert from_milvus == capsys.readouterr().out
    assert main(["index", "--from-index", str(index_dir), "--index", str(tmp_path / "other")]) == 1
    assert "--from-index copies a local index into Milvus" in capsys.readouterr().err


def test_qa_index_of_a_milvus_store_keeps_the_model_its_record_names(
    corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("milvus_lite")
    store = ["--store", f"milvus-lite:{tmp_path / 'qa.db'}", "--index", str(tmp_path / "work")]
    assert main(["index", "--corpus", str(corpus_copy), "--model", "another-model", *store]) == 0
    capsys.readouterr()
    assert main(["index", "--corpus", str(corpus_copy), *store]) == 0
    assert "Index up to date" in capsys.readouterr().out
    assert FakeModelEncoder.made[-1].name == "another-model"
