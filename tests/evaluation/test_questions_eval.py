"""Evaluation on labelled questions: loading them, judging anchors, and scoring each mode."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from conftest import FakeEncoder, json_lines, write_lines
from qa.errors import QAError
from qa.evaluation.questions import Anchor, LabelledQuestion, evaluate_questions, judge, load_questions
from qa.evaluation.results import EvalReport, ModeResult
from qa.index.lexical import tokenize
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.ingest.split import split_passages
from qa.records import Document, Passage
from qa.search.abstention import Abstention
from qa.search.modes import MODES

SETTINGS = IndexSettings(max_tokens=128, min_words=1)


def passages_of(documents: Sequence[Document], *, min_words: int = 1) -> list[Passage]:
    return [p for d in documents for p in split_passages(d, max_tokens=128, min_words=min_words)]


def build_index(documents: list[Document], encoder: FakeEncoder) -> LocalIndex:
    return LocalIndex.empty(encoder.name, SETTINGS).update(
        documents, passages_of(documents), encoder=encoder, settings=SETTINGS
    )


# ---------------------------------------------------------------- load_questions


def test_load_questions_reads_every_kind_of_row(tmp_path: Path) -> None:
    path = json_lines(
        tmp_path / "questions.jsonl",
        [
            {
                "id": "q1",
                "question": "How high did the river rise?",
                "kind": "single",
                "relevant": [{"source": "a.txt", "anchor": "river rose overnight"}],
                "note": "extra fields are ignored",
            },
            {
                "id": 2,
                "question": "What did the farmers do?",
                "kind": "multi",
                "relevant": [
                    {"source": "a.txt", "anchor": "moved their cattle"},
                    {"source": "b.txt", "anchor": "before dawn"},
                ],
            },
            {"id": "q3", "question": "Who won the 1954 World Cup?", "kind": "unanswerable", "relevant": []},
            {"id": "q4", "question": "What is the capital of Mars?"},
            {
                "id": "c1",
                "turns": ["Tell me about the flood.", "Which bridge?", "And what happened to it?"],
                "relevant": [{"source": "a.txt", "anchor": "covered the old bridge"}],
            },
        ],
    )
    # A blank line between rows is not a question.
    path.write_text(path.read_text(encoding="utf-8").replace("\n", "\n\n", 1), encoding="utf-8")

    questions = load_questions(path)

    assert questions == [
        LabelledQuestion("q1", "How high did the river rise?", "single", (Anchor("a.txt", "river rose overnight"),)),
        LabelledQuestion(
            "2",
            "What did the farmers do?",
            "multi",
            (Anchor("a.txt", "moved their cattle"), Anchor("b.txt", "before dawn")),
        ),
        LabelledQuestion("q3", "Who won the 1954 World Cup?", "unanswerable", ()),
        LabelledQuestion("q4", "What is the capital of Mars?", "single", ()),
        LabelledQuestion(
            "c1",
            "And what happened to it?",
            "conversation",
            (Anchor("a.txt", "covered the old bridge"),),
            history=("Tell me about the flood.", "Which bridge?"),
        ),
    ]
    assert [q.answerable for q in questions] == [True, True, False, False, True]


GOOD_ROW = json.dumps({"id": "q1", "question": "Where?", "relevant": []})


@pytest.mark.parametrize(
    ("bad_row", "why"),
    [
        ('{"id": "q2", "question": "Where?"', "invalid JSON"),
        (json.dumps({"question": "Where?"}), "not a labelled question"),
        (json.dumps({"id": "q2"}), "not a labelled question"),
        (json.dumps({"id": "q2", "question": "Where?", "relevant": [{"source": "a.txt"}]}), "not a labelled question"),
        (json.dumps({"id": "q2", "question": "Where?", "relevant": ["a.txt"]}), "not a labelled question"),
    ],
    ids=["truncated-json", "no-id", "no-question", "anchor-without-text", "anchor-not-an-object"],
)
def test_load_questions_names_the_bad_line(tmp_path: Path, bad_row: str, why: str) -> None:
    path = write_lines(tmp_path / "questions.jsonl", [GOOD_ROW, bad_row, GOOD_ROW])
    with pytest.raises(QAError, match=rf"questions\.jsonl, line 2: {why}"):
        load_questions(path)


def test_load_questions_counts_blank_lines_when_naming_a_bad_row(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "questions.jsonl", [GOOD_ROW, "", json.dumps({"question": "no id"})])
    with pytest.raises(QAError, match="line 3"):
        load_questions(path)


def test_load_questions_refuses_a_row_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "questions.jsonl", [GOOD_ROW, '["q2", "Where?"]'])
    with pytest.raises(QAError, match="line 2"):
        load_questions(path)


def test_load_questions_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QAError, match="cannot read"):
        load_questions(tmp_path / "absent.jsonl")


# ---------------------------------------------------------------- judge

FLOOD = Document(
    doc_id="a",
    source="a.txt",
    paragraphs=(
        "Flood warning",  # a heading: too short, so it joins the paragraph after it
        "The river rose overnight and covered the old bridge.",
        "Farmers moved their cattle to higher ground before the river rose again.",
    ),
)
# The same sentence in another article, as a syndicated copy would have it.
COPY = Document(doc_id="b", source="b.txt", paragraphs=("The river rose overnight and covered the old bridge.",))


@pytest.fixture
def flood_passages() -> list[Passage]:
    passages = passages_of([FLOOD, COPY], min_words=5)
    # Precondition: the heading was merged into the first body paragraph.
    assert [p.text for p in passages] == [
        "Flood warning\n\nThe river rose overnight and covered the old bridge.",
        FLOOD.paragraphs[2],
        COPY.paragraphs[0],
    ]
    return passages


def question(question_id: str, *anchors: tuple[str, str]) -> LabelledQuestion:
    return LabelledQuestion(question_id, f"question {question_id}", "single", tuple(Anchor(*a) for a in anchors))


def test_judge_finds_anchors_across_whitespace_and_merged_paragraphs(flood_passages: list[Passage]) -> None:
    merged, farmers, copy = flood_passages
    questions = [
        # Spans the heading and the paragraph it was merged with; the blank line reads as one space.
        question("across", ("a.txt", "warning The river rose")),
        question("spaced", ("a.txt", "  covered   the\n old\tbridge ")),
        question("copy", ("b.txt", "covered the old bridge")),
        question("two", ("a.txt", "moved their cattle"), ("b.txt", "The river rose")),
        question("none"),
    ]
    assert judge(questions, flood_passages) == {
        "across": {merged.passage_id: 1},
        "spaced": {merged.passage_id: 1},  # the same words in b.txt belong to another source
        "copy": {copy.passage_id: 1},
        "two": {farmers.passage_id: 1, copy.passage_id: 1},
        "none": {},
    }


def test_judge_marks_every_passage_holding_the_anchor(flood_passages: list[Passage]) -> None:
    merged, farmers, _ = flood_passages
    assert judge([question("q", ("a.txt", "river rose"))], flood_passages) == {
        "q": {merged.passage_id: 1, farmers.passage_id: 1}
    }


@pytest.mark.parametrize(
    "anchor",
    [("a.txt", "the river froze"), ("c.txt", "The river rose"), ("b.txt", "Farmers moved their cattle")],
    ids=["text-nowhere", "unknown-source", "text-only-in-another-source"],
)
def test_judge_refuses_an_anchor_found_nowhere(flood_passages: list[Passage], anchor: tuple[str, str]) -> None:
    questions = [question("fine", ("a.txt", "old bridge")), question("q-lost", anchor)]
    with pytest.raises(QAError, match="question q-lost: anchor not found"):
        judge(questions, flood_passages)


# ---------------------------------------------------------------- evaluate_questions

# One sentence per passage and no content word (BM25 token) shared between passages, so a
# question repeating a passage's words scores above 0 in BM25 on that passage alone, and
# its bag of words equals that passage's: cosine 1, which no other passage can reach.
TOPICS = [
    Document(
        doc_id="river",
        source="river.txt",
        paragraphs=(
            "The river rose overnight and covered the old bridge.",
            "Farmers moved their cattle to higher ground before dawn.",
        ),
    ),
    Document(
        doc_id="bakery", source="bakery.txt", paragraphs=("A baker on Mill Street sells rye loaves every Sunday.",)
    ),
    Document(doc_id="sky", source="sky.txt", paragraphs=("Astronomers spotted a faint comet near Jupiter last week.",)),
]
ANSWERABLE = [
    LabelledQuestion(
        "q-bridge",
        "the river rose overnight and covered the old bridge",
        "single",
        (Anchor("river.txt", "covered the old bridge"),),
    ),
    LabelledQuestion(
        "q-cattle",
        "Farmers moved their cattle to higher ground before dawn?",
        "single",
        (Anchor("river.txt", "moved their cattle"),),
    ),
    LabelledQuestion(
        "q-comet",
        "astronomers spotted a faint comet near jupiter last week",
        "single",
        (Anchor("sky.txt", "faint comet"),),
    ),
]
OFF_TOPIC = LabelledQuestion("q-gluons", "gluon lattice gauge symmetry", "unanswerable", ())
QUESTIONS = [*ANSWERABLE, OFF_TOPIC]


def test_topics_fit_the_reasoning_of_the_evaluation_tests() -> None:
    """Preconditions of the tests below, checked rather than assumed."""
    passages = passages_of(TOPICS)
    tokens = [set(row) for row in tokenize([p.text for p in passages])]
    assert sum(len(row) for row in tokens) == len(set().union(*tokens))  # no BM25 token in two passages
    # The off-topic question shares no hashed dimension with any sentence: its similarity to each is 0.
    encoder = FakeEncoder()
    off_topic = set(np.flatnonzero(encoder.encode([OFF_TOPIC.question])[0]))
    for vector in encoder.encode([p.text for p in passages]):
        assert not off_topic & set(np.flatnonzero(vector))


def test_matching_questions_rank_their_passage_first_and_off_topic_ones_abstain(encoder: FakeEncoder) -> None:
    index = build_index(TOPICS, encoder)
    started = time.perf_counter()
    results = evaluate_questions(
        index, QUESTIONS, encoder=encoder, modes=MODES, abstention=Abstention(min_evidence=0.5)
    )
    wall = time.perf_counter() - started

    assert [r.mode for r in results] == list(MODES)
    answerable_ids = {q.question_id for q in ANSWERABLE}
    for result in results:
        assert set(result.per_question) == answerable_ids  # nothing to find for the off-topic question
        assert {q: m["mrr@10"] for q, m in result.per_question.items()} == dict.fromkeys(answerable_ids, 1.0)
        assert result.metrics["mrr@10"] == result.metrics["recall@1"] == result.metrics["ndcg@10"] == 1.0
        assert result.failed == []
        # The one question to decline was declined, and only it.
        assert result.abstention == {
            "precision": 1.0,
            "recall": 1.0,
            "false_abstention_rate": 0.0,
            "missed_abstention_rate": 0.0,
        }
        assert result.false_abstentions == result.missed_abstentions == []
        assert result.seconds > 0
    # Each mode's time is its own share of the run, measured inside the call.
    assert sum(result.seconds for result in results) <= wall


def test_an_answerable_question_forced_to_abstain_is_a_false_abstention(encoder: FakeEncoder) -> None:
    index = build_index(TOPICS, encoder)
    # Cosine similarity never exceeds 1, so every question abstains.
    [result] = evaluate_questions(
        index, QUESTIONS, encoder=encoder, modes=["dense"], abstention=Abstention(min_evidence=1.5)
    )
    assert result.false_abstentions == ["q-bridge", "q-cattle", "q-comet"]
    assert result.missed_abstentions == []
    assert result.abstention == {
        "precision": 1 / 4,  # 4 abstentions, 1 of them right
        "recall": 1.0,
        "false_abstention_rate": 1.0,
        "missed_abstention_rate": 0.0,
    }
    # Abstaining keeps the hits, so retrieval is scored as before.
    assert result.metrics["mrr@10"] == 1.0


def test_a_question_answering_nothing_it_should_is_missed(encoder: FakeEncoder) -> None:
    index = build_index(TOPICS, encoder)
    [result] = evaluate_questions(index, QUESTIONS, encoder=encoder, modes=["bm25"], abstention=Abstention())
    assert result.missed_abstentions == ["q-gluons"]
    assert result.false_abstentions == []
    assert result.abstention["missed_abstention_rate"] == 1.0
    assert result.abstention["recall"] == 0.0


def test_a_follow_up_finds_its_subject_in_the_earlier_turns(encoder: FakeEncoder) -> None:
    index = build_index(TOPICS, encoder)
    follow_up = LabelledQuestion(
        "c-comet",
        "When was it?",  # only stop words: BM25 cannot tell the passages apart without the first turn
        "conversation",
        (Anchor("sky.txt", "faint comet"),),
        history=("Which comet did astronomers spot near Jupiter?",),
    )
    [with_history] = evaluate_questions(index, [follow_up], encoder=encoder, modes=["bm25"], abstention=Abstention())
    [without_history] = evaluate_questions(
        index, [follow_up], encoder=encoder, modes=["bm25"], abstention=Abstention(), use_history=False
    )
    assert with_history.metrics["mrr@10"] == 1.0
    assert without_history.metrics["mrr@10"] < 1.0


def test_relevant_passage_below_the_top_five_is_a_failure(encoder: FakeEncoder) -> None:
    harbours = ["Dover", "Calais", "Brest", "Bergen", "Gdansk", "Lisbon"]
    documents = [
        Document(doc_id=name, source=f"{name}.txt", paragraphs=(f"The lighthouse stood beside {name} harbour.",))
        for name in harbours
    ]
    documents.append(Document(doc_id="keeper", source="keeper.txt", paragraphs=("Keepers trimmed wicks nightly.",)))
    index = build_index(documents, encoder)
    # Six passages hold the question's only word and score above 0 in BM25; the relevant one scores 0.
    lighthouse = LabelledQuestion("q-light", "lighthouse", "single", (Anchor("keeper.txt", "trimmed wicks"),))
    [result] = evaluate_questions(index, [lighthouse], encoder=encoder, modes=["bm25"], abstention=Abstention())
    assert result.failed == ["q-light"]
    assert result.per_question["q-light"]["recall_cap@5"] == 0.0


def test_evaluate_questions_refuses_labels_that_no_longer_fit(encoder: FakeEncoder) -> None:
    index = build_index(TOPICS, encoder)
    stale = LabelledQuestion("q-stale", "bridge", "single", (Anchor("river.txt", "covered the new bridge"),))
    with pytest.raises(QAError, match="q-stale"):
        evaluate_questions(index, [stale], encoder=encoder, modes=["bm25"], abstention=Abstention())


def test_report_json_has_every_mode_and_is_serialisable() -> None:
    result = ModeResult("bm25", {"mrr@10": 0.5}, {"q1": {"mrr@10": 0.5}}, ["q1"], 0.25, {"recall": 1.0}, [], ["q9"])
    data = json.loads(json.dumps(EvalReport("questions", 2, [result], {"q1": "Where?"}).to_json()))
    assert data == {
        "dataset": "questions",
        "questions": 2,
        "modes": {
            "bm25": {
                "metrics": {"mrr@10": 0.5},
                "per_question": {"q1": {"mrr@10": 0.5}},
                "failed": ["q1"],
                "seconds": 0.25,
                "abstention": {"recall": 1.0},
                "false_abstentions": [],
                "missed_abstentions": ["q9"],
            }
        },
    }
