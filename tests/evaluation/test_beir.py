"""BEIR datasets: loading, the index cache built once per dataset and model, and scoring each mode."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from conftest import FakeEncoder, RefusingEncoder, json_lines, write_lines
from qa.errors import IndexBusyError, QAError
from qa.evaluation.beir import BeirDataset, beir_index, evaluate_beir, load_beir
from qa.evaluation.metrics import evaluate, mean_metrics
from qa.index.lexical import tokenize
from qa.index.local import LocalIndex
from qa.index.lock import index_lock
from qa.index.manifest import IndexSettings
from qa.search.modes import MODES, Mode
from qa.search.retrieval import retrieve

SETTINGS = IndexSettings(max_tokens=128, min_words=1)


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
    hits = retrieve(second, "Magma vents", encoder=RefusingEncoder(), k=1, mode="bm25")
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
    assert holding.wait(timeout=30), "the other build never took the lock"
    messages: list[str] = []
    second = beir_index(
        dataset, cache_dir, encoder=RefusingEncoder(), settings=SETTINGS, wait=30, on_wait=messages.append
    )
    other.join(timeout=30)
    assert not other.is_alive()
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
    index: LocalIndex, dataset: BeirDataset, encoder: FakeEncoder, mode: Mode
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
