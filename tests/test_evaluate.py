"""Evaluation: labelled questions, anchor judging, scoring each mode, and BEIR datasets with their cache."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from conftest import FakeEncoder, RefusingEncoder
from qa.answer import Abstention, retrieve
from qa.errors import IndexBusyError, QAError
from qa.evaluate import (
    Anchor,
    BeirDataset,
    EvalReport,
    LabelledQuestion,
    ModeResult,
    beir_index,
    evaluate_beir,
    evaluate_questions,
    judge,
    load_beir,
    load_questions,
)
from qa.index import IndexSettings, PassageIndex
from qa.lexical import tokenize
from qa.lock import index_lock
from qa.metrics import evaluate, mean_metrics
from qa.records import Document, Passage
from qa.retrieve import MODES, Mode
from qa.split import split_passages

SETTINGS = IndexSettings(max_tokens=128, min_words=1)


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def json_lines(path: Path, rows: Sequence[object]) -> Path:
    return write_lines(path, [json.dumps(row) for row in rows])


def passages_of(documents: Sequence[Document], *, min_words: int = 1) -> list[Passage]:
    return [p for d in documents for p in split_passages(d, max_tokens=128, min_words=min_words)]


def build_index(documents: list[Document], encoder: FakeEncoder) -> PassageIndex:
    return PassageIndex.build(documents, passages_of(documents), encoder=encoder, settings=SETTINGS)


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
    results = evaluate_questions(
        index, QUESTIONS, encoder=encoder, modes=MODES, abstention=Abstention(min_evidence=0.5)
    )

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
        assert result.seconds >= 0


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


# ---------------------------------------------------------------- BEIR

# (id, title, text): twelve topics without a shared content word, more than the ten hits kept.
CORPUS = [
    ("d1", "Arctic foxes", "They grow thick white fur during winter."),
    ("d2", "Honeybees", "Workers perform a waggle dance to signal nectar."),
    ("d3", "Volcanoes", "Magma erupts through vents in the crust."),
    ("d4", "Glaciers", "Compacted snow slowly carves valleys."),
    ("d5", "Coral reefs", "Polyps secrete calcium skeletons underwater."),
    ("d6", "Tides", "Lunar gravity pulls oceans twice daily."),
    ("d7", "Bread", "Yeast ferments\n  dough so   loaves rise."),
    ("d8", "Chess", "Bishops move diagonally across squares."),
    ("d9", "Violins", "Luthiers shape spruce tops and maple backs."),
    ("d10", "Comets", "Icy nuclei sprout tails near perihelion."),
    ("d11", "Typhoons", "Warm seas feed rotating storms."),
    ("d12", "", "Gutenberg cast movable metal type."),
]
# Document text as BEIR scores it: title, then text, whitespace squeezed.
DOCUMENT_TEXT = {
    "d1": "Arctic foxes They grow thick white fur during winter.",
    "d7": "Bread Yeast ferments dough so loaves rise.",
    "d10": "Comets Icy nuclei sprout tails near perihelion.",
    "d12": "Gutenberg cast movable metal type.",
}
QUERIES = {
    "q1": DOCUMENT_TEXT["d1"],
    "q2": DOCUMENT_TEXT["d7"],
    "q3": DOCUMENT_TEXT["d10"],
    "q4": "A query nobody judged.",
    "q5": "Judged, but nothing relevant.",
    "q6": f"{DOCUMENT_TEXT['d1']} {DOCUMENT_TEXT['d7']}",  # two relevant documents: one can be first
}
QRELS = [
    "query-id\tcorpus-id\tscore",
    "q1\td1\t1",
    "q2\td7\t1",
    "q3\td10\t2",
    "q3\td11\t0",
    "q5\td3\t0",
    "q6\td1\t1",
    "q6\td7\t1",
    "q9\td2\t1",  # a judged query missing from queries.jsonl
]


def write_beir(directory: Path, corpus: Sequence[tuple[str, str, str]] = CORPUS) -> Path:
    json_lines(directory / "corpus.jsonl", [{"_id": i, "title": title, "text": text} for i, title, text in corpus])
    json_lines(directory / "queries.jsonl", [{"_id": q, "text": text} for q, text in QUERIES.items()])
    write_lines(directory / "qrels" / "test.tsv", QRELS)
    return directory


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tinybeir")


def test_load_beir_keeps_judged_queries_and_joins_title_and_text(beir_dir: Path) -> None:
    dataset = load_beir(beir_dir)
    assert dataset.name == "tinybeir"
    assert dataset.queries == {q: QUERIES[q] for q in ("q1", "q2", "q3", "q5", "q6")}
    assert dataset.qrels == {
        "q1": {"d1": 1},
        "q2": {"d7": 1},
        "q3": {"d10": 2, "d11": 0},
        "q5": {"d3": 0},
        "q6": {"d1": 1, "d7": 1},
        "q9": {"d2": 1},
    }
    assert [d.doc_id for d in dataset.documents] == [doc_id for doc_id, _, _ in CORPUS]
    documents = {d.doc_id: d for d in dataset.documents}
    for doc_id, text in DOCUMENT_TEXT.items():
        assert documents[doc_id].paragraphs == (text,)
        assert documents[doc_id].source == doc_id
    assert documents["d1"].title == "Arctic foxes"
    assert documents["d12"].title == ""


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_load_beir_names_a_missing_file(beir_dir: Path, missing: str) -> None:
    (beir_dir / missing).unlink()
    with pytest.raises(QAError, match=f"not a BEIR dataset: {re.escape(missing)} is missing"):
        load_beir(beir_dir)


def test_load_beir_other_split_must_exist(beir_dir: Path) -> None:
    with pytest.raises(QAError, match=r"qrels/dev\.tsv is missing"):
        load_beir(beir_dir, split="dev")


def test_beir_index_is_built_once_then_loaded_from_the_cache(beir_dir: Path, tmp_path: Path) -> None:
    dataset = load_beir(beir_dir)
    cache_dir = tmp_path / "cache"
    encoder = FakeEncoder()
    first = beir_index(dataset, cache_dir, encoder=encoder, settings=SETTINGS)
    # One passage per document, its whole text, embedded once.
    assert [p.passage_id for p in first.passages] == [d.doc_id for d in dataset.documents]
    assert sorted(encoder.encoded) == sorted(d.paragraphs[0] for d in dataset.documents)

    second = beir_index(dataset, cache_dir, encoder=RefusingEncoder(), settings=SETTINGS)
    assert second.passages == first.passages
    assert second.manifest == first.manifest  # the same saved files, not a rebuild from cached vectors
    hits = second.search("Magma vents", encoder=RefusingEncoder(), k=1, mode="bm25")
    assert [h.passage.doc_id for h in hits] == ["d3"]


def test_a_second_run_waits_for_the_cache_build_then_reuses_it(beir_dir: Path, tmp_path: Path) -> None:
    dataset = load_beir(beir_dir)
    cache_dir = tmp_path / "cache"
    first = beir_index(dataset, cache_dir, encoder=FakeEncoder(), settings=SETTINGS)
    [index_dir] = [manifest.parent for manifest in cache_dir.rglob("manifest.json")]
    with index_lock(index_dir), pytest.raises(IndexBusyError, match="another qa index"):
        beir_index(dataset, cache_dir, encoder=RefusingEncoder(), settings=SETTINGS, wait=0)

    holding = threading.Event()

    def build_elsewhere() -> None:
        with index_lock(index_dir):
            holding.set()
            time.sleep(0.5)

    other = threading.Thread(target=build_elsewhere)
    other.start()
    holding.wait()
    messages: list[str] = []
    second = beir_index(
        dataset, cache_dir, encoder=RefusingEncoder(), settings=SETTINGS, wait=30, on_wait=messages.append
    )
    other.join()
    assert len(messages) == 1 and "waiting up to 30 s" in messages[0]
    assert second.passages == first.passages


def test_a_changed_corpus_gets_its_own_cache(beir_dir: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    original = load_beir(beir_dir)
    beir_index(original, cache_dir, encoder=FakeEncoder(), settings=SETTINGS)

    changed_corpus = [("d1", "Arctic foxes", "They hunt lemmings under the snow."), *CORPUS[1:]]
    changed = load_beir(write_beir(beir_dir, changed_corpus))
    assert changed.fingerprint != original.fingerprint
    with pytest.raises(AssertionError, match="asked to embed"):  # the old vectors are not served
        beir_index(changed, cache_dir, encoder=RefusingEncoder(), settings=SETTINGS)
    encoder = FakeEncoder()
    index = beir_index(changed, cache_dir, encoder=encoder, settings=SETTINGS)
    assert "Arctic foxes They hunt lemmings under the snow." in encoder.encoded
    assert index.passages[0].text == "Arctic foxes They hunt lemmings under the snow."
    assert len(list(cache_dir.iterdir())) == 2

    # The original corpus still finds its own index.
    assert (
        beir_index(original, cache_dir, encoder=RefusingEncoder(), settings=SETTINGS).passages[0].text
        == (DOCUMENT_TEXT["d1"])
    )


def reference_run(
    index: PassageIndex, dataset: BeirDataset, encoder: FakeEncoder, mode: Mode
) -> dict[str, dict[str, float]]:
    """Each query's ten hits as users get them, scored so that the first ranks highest."""
    runs = {}
    for query_id, text in dataset.queries.items():
        hits = retrieve(index, text, encoder=encoder, k=10, mode=mode)
        runs[query_id] = {hit.passage.doc_id: -float(hit.rank) for hit in hits}
    return runs


def test_evaluate_beir_finds_each_document_by_its_own_text(beir_dir: Path, tmp_path: Path) -> None:
    dataset = load_beir(beir_dir)
    # Precondition: no BM25 token in two documents, so only a query's own documents score above 0 in BM25.
    tokens = [set(row) for row in tokenize([d.paragraphs[0] for d in dataset.documents])]
    assert sum(len(row) for row in tokens) == len(set().union(*tokens))
    encoder = FakeEncoder()
    index = beir_index(dataset, tmp_path / "cache", encoder=encoder, settings=SETTINGS)
    results = evaluate_beir(index, dataset, encoder=encoder, modes=MODES)

    assert [r.mode for r in results] == list(MODES)
    judged_queries = {q: j for q, j in dataset.qrels.items() if q in dataset.queries}
    for mode, result in zip(MODES, results, strict=True):
        # q5 has no relevant document and q9 no text: neither is scored.
        assert set(result.per_question) == {"q1", "q2", "q3", "q6"}
        assert result.metrics["recall@10"] == 1.0
        assert result.per_question["q6"]["recall@1"] == 0.5
        assert result.failed == []
        assert result.abstention == {}
        expected = evaluate(judged_queries, reference_run(index, dataset, encoder, mode))
        assert result.per_question == expected
        assert result.metrics == mean_metrics(expected)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("corpus.jsonl", '{"title": "no id"}\n', "missing field"),
        ("queries.jsonl", '{"_id": "q1"}\n', "missing field"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\trelevant\n", "expected query-id"),
    ],
)
def test_malformed_beir_files_are_clear_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "words"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "words"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / name).write_text(content)
    with pytest.raises(QAError, match=message):
        load_beir(tmp_path)
