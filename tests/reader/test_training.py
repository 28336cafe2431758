"""The training script end to end on a tiny SQuAD-format sample: train, checkpoint, resume, package, read."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import REPO
from qa.errors import QAError
from qa.reader.model import Reader, reader_available, reader_export_dir

pytestmark = pytest.mark.slow

COLOURS = ["red", "blue", "green", "amber", "violet", "white", "black", "grey", "pink", "brown"]


def training_module(name: str = "reader") -> ModuleType:
    """``training/NAME.py``, imported as the script imports its neighbours (``training/`` on the path)."""
    if str(REPO / "training") not in sys.path:
        sys.path.insert(0, str(REPO / "training"))
    spec = importlib.util.spec_from_file_location(f"training_{name}", REPO / "training" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"training_{name}"] = module
    spec.loader.exec_module(module)
    return module


def write_squad(folder: Path) -> Path:
    """Ten articles of two paragraphs, each with two answerable questions and one unanswerable one."""
    folder.mkdir()
    rows = []
    for article, colour in enumerate(COLOURS):
        for paragraph in range(2):
            context = (
                f"The {colour} bridge of town {article} was built in {1900 + 10 * paragraph + article}. "
                f"Its engineer was Ada {colour.title()}son, who also designed the harbour."
            )
            year = str(1900 + 10 * paragraph + article)
            engineer = f"Ada {colour.title()}son"
            common = {"title": f"Town_{article}", "paragraph": paragraph, "context": context}
            rows.append(
                {
                    **common,
                    "id": f"{article}-{paragraph}-a",
                    "question": f"When was the {colour} bridge built?",
                    "answers": [{"text": year, "answer_start": context.index(year)}],
                    "is_impossible": False,
                }
            )
            rows.append(
                {
                    **common,
                    "id": f"{article}-{paragraph}-b",
                    "question": f"Who engineered the {colour} bridge?",
                    "answers": [{"text": engineer, "answer_start": context.index(engineer)}],
                    "is_impossible": False,
                }
            )
            rows.append(
                {
                    **common,
                    "id": f"{article}-{paragraph}-c",
                    "question": f"How long is the {colour} bridge?",
                    "answers": [],
                    "is_impossible": True,
                }
            )
    text = "".join(json.dumps(row) + "\n" for row in rows)
    (folder / "v2.0-dev.jsonl").write_text(text)
    (folder / "v1.1-dev.jsonl").write_text("")
    return folder


def test_training_runs_checkpoints_resumes_and_ships_a_reader_that_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QA_MODEL_CACHE", str(tmp_path / "cache"))
    training = training_module()
    squad = write_squad(tmp_path / "squad")
    run = tmp_path / "run"
    common = ["--squad", str(squad), "--out", str(run), "--batch-size", "4", "--log-every", "1", "--eval-limit", "6"]
    assert training.main([*common, "--max-steps", "2", "--checkpoint-every", "2"]) == 0
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2
    assert training.main([*common, "--max-steps", "3", "--resume"]) == 0
    log = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "step": 2}.items() <= next(r for r in log if r.get("event") == "resumed").items()
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == [1, 2, 3]  # the resumed run went on from step 2, repeating nothing
    start = next(r for r in log if r.get("event") == "start")
    assert set(start["dev_articles"]).isdisjoint(start["test_articles"])
    assert any(r.get("event") == "dev" and "f1" in r for r in log)
    run_record = json.loads((run / "run.json").read_text())
    assert run_record["steps"] == 3 and run_record["machine"]["cpus"] >= 1
    shipped = run / "model"
    assert reader_available(shipped)
    assert (shipped / "reader.safetensors").stat().st_size < 30_000_000
    context = "The red bridge of town 0 was built in 1900. Its engineer was Ada Redson."
    readings = Reader(shipped, precision="f32").read("When was the red bridge built?", [context, "Nothing here."])
    assert len(readings) == 2
    for reading, passage in zip(readings, [context, "Nothing here."], strict=True):
        assert reading.span is None or 0 <= reading.span[0] < reading.span[1] <= len(passage)
    # Exported once: a second reader of the same weights loads the cached export.
    export = reader_export_dir(shipped)
    made = (export / "reader.xml").stat().st_mtime_ns
    again = Reader(shipped, precision="f32").read("When was the red bridge built?", [context, "Nothing here."])
    assert (export / "reader.xml").stat().st_mtime_ns == made
    assert [r.span for r in again] == [r.span for r in readings]
    # Weights that do not fit the bundled word embeddings are refused with the way out.
    description = json.loads((shipped / "reader.json").read_text())
    (shipped / "reader.json").write_text(json.dumps({**description, "word_embeddings_sha256": "0" * 64}))
    with pytest.raises(QAError, match="word embeddings") as refused:
        Reader(shipped).read("q", ["p"])
    assert "--reader off" in str(refused.value)
    assert not list(export.parent.glob(".*"))  # no half-written export left behind


def test_the_split_holds_out_whole_articles(tmp_path: Path) -> None:
    training = training_module("squad")
    questions = training.load_questions(write_squad(tmp_path / "squad"))
    dev, test = training.held_out_articles(questions)
    assert len(dev) == len(test) == training.HELD_OUT_PER_SPLIT
    assert set(dev).isdisjoint(test)
    pairs = training.training_pairs([q for q in questions if q.title not in {*dev, *test}], seed=0)
    answered = [p for p in pairs if p.answer is not None]
    assert all(p.passage[p.answer[0] : p.answer[1]] in {"1900", "Ada"} or p.answer for p in answered)
    negatives = [p for p in pairs if p.answer is None]
    assert len(negatives) >= len(answered)  # a hard negative per answerable question, plus the unanswerable ones
