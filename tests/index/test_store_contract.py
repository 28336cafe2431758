"""The contract every index backend keeps: the local index and Milvus (Milvus Lite, a fresh file each test).

Each test builds the bundled corpus (or a changed copy) with the fake encoder into one
backend and checks it against references made without any store: the passages the
splitter makes, brute-force inner products over the encoder's vectors, and qa's BM25
scoring every passage (``LexicalIndex.build(...).scores``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import FakeEncoder
from qa.embed.encoder import normalize
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, QAError
from qa.index.build import MIN_WORDS, SPLIT_VERSION, index_corpus, open_store
from qa.index.lexical import LexicalIndex
from qa.index.manifest import IndexSettings
from qa.index.prepare import prepare_documents
from qa.index.spec import StoreSpec, parse_store
from qa.index.store import PassageStore, SearchFilter
from qa.index.texts import embedding_text, lexical_text
from qa.ingest.corpus import find_corpus_files
from qa.ingest.split import approximate_token_count, split_sentences
from qa.records import Passage
from qa.search.retrieval import retrieve

pytest.importorskip("milvus_lite")

SETTINGS = IndexSettings(max_tokens=254, min_words=MIN_WORDS, pipeline_version=SPLIT_VERSION)
QUESTIONS = ["Why do defectors return to the North?", "Kim Yo Jong families", "rice prices", "the"]


@pytest.fixture(params=["local", "milvus-lite"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "local":
        return StoreSpec("local", path=tmp_path / "index")
    return parse_store(f"milvus-lite:{tmp_path / 'milvus.db'}")


def build(corpus: Path, spec: StoreSpec, tmp_path: Path, encoder: Any, **options: Any) -> Any:
    work = spec.path if spec.is_local else tmp_path / "work"
    assert work is not None
    return index_corpus(corpus, work, encoder=encoder, settings=SETTINGS, store=spec, **options)


def reference_passages(corpus: Path) -> list[Passage]:
    _, passages, _ = prepare_documents(find_corpus_files(corpus), [], [], SETTINGS, approximate_token_count)
    return passages


def unit(encoder: FakeEncoder, texts: list[str]) -> np.ndarray:
    return normalize(FakeEncoder(encoder.name, encoder.dimension).encode(texts))


def test_a_build_holds_the_corpus_passages_in_order(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    report = build(corpus_copy, spec, tmp_path, encoder)
    store = open_store(spec)
    expected = reference_passages(corpus_copy)
    assert list(store.iter_passages()) == expected
    assert (report.documents, report.passages, report.added) == (5, len(expected), 5)
    summary = store.summary()
    assert (summary.model, summary.documents, summary.passages) == ("fake-encoder", 5, len(expected))
    assert [d.source for d in store.documents] == sorted(d.source for d in store.documents)
    documents, _, _ = prepare_documents(find_corpus_files(corpus_copy), [], [], SETTINGS, approximate_token_count)
    assert sorted(store.documents, key=lambda d: d.doc_id) == sorted(
        (d.metadata for d in documents), key=lambda d: d.doc_id
    )
    for document in documents:
        assert store.document(document.doc_id) == document
    assert store.document("no-such-article.txt") is None
    assert sum(store.passage_counts().values()) == len(expected)
    shuffled = [expected[7].passage_id, expected[0].passage_id, expected[30].passage_id]
    assert store.passages_by_id(shuffled) == [expected[7], expected[0], expected[30]]


def test_dense_and_bm25_candidates_match_brute_force(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(corpus_copy, spec, tmp_path, encoder)
    store = open_store(spec)
    passages = reference_passages(corpus_copy)
    ids = [p.passage_id for p in passages]
    vectors = unit(encoder, [embedding_text(p, SETTINGS) for p in passages])
    bm25 = LexicalIndex.build([lexical_text(p, SETTINGS) for p in passages])
    for question in QUESTIONS:
        query = unit(encoder, [question])[0]
        dense = store.dense_candidates(query, depth=10, where=None)
        expected = np.sort(vectors @ query)[::-1][:10]
        np.testing.assert_allclose(dense.scores, expected, atol=1e-5)
        np.testing.assert_allclose(store.dense_scores(query, dense.ids), dense.scores, atol=1e-5)
        lexical = store.bm25_candidates(question, depth=10, where=None)
        reference = bm25.scores(question)
        best = np.sort(reference)[::-1][:10]
        assert len(lexical.ids) == 10
        np.testing.assert_allclose(lexical.scores, best, rtol=1e-5)
        expected_scores = reference[[ids.index(i) for i in lexical.ids]]
        np.testing.assert_allclose(store.bm25_scores(question, lexical.ids), expected_scores, rtol=1e-5)
    assert store.known_terms(["defector", "korea", "zzzqqq"]) == {"defector", "korea"}


def test_filters_keep_only_what_they_allow(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    facts = [("Daily NK", "2020-01-05"), ("RFA", "2021-03-01T10:00:00"), ("RFA", ""), ('Korea "Times"', "2022-07-09")]
    for path, (outlet, date) in zip(sorted(corpus_copy.glob("*.txt")), facts, strict=False):
        path.with_name(path.stem + ".meta.json").write_text(json.dumps({"outlet": outlet, "date": date}), "utf-8")
    build(corpus_copy, spec, tmp_path, encoder)
    store = open_store(spec)
    passages = reference_passages(corpus_copy)
    documents = store.documents
    filters = [
        SearchFilter(doc_ids=frozenset({documents[1].doc_id, documents[3].doc_id})),
        SearchFilter(outlets=frozenset({"RFA", 'Korea "Times"'})),
        SearchFilter(date_from="2021-03-01", date_to="2022-07-09"),
        SearchFilter(date_to="2021-03-01"),
        SearchFilter(doc_ids=frozenset({documents[0].doc_id}), date_from="2020-01-05"),
        SearchFilter(doc_ids=frozenset({'x" or doc_id != "', documents[0].doc_id})),
        SearchFilter(outlets=frozenset({"nobody"})),
    ]
    query = unit(encoder, ["defectors return"])[0]
    for where in filters:
        allowed = [p for p in passages if where.allows(p)]
        dense = store.dense_candidates(query, depth=100, where=where)
        lexical = store.bm25_candidates("defectors return", depth=100, where=where)
        assert set(dense.ids) == {p.passage_id for p in allowed}
        assert set(lexical.ids) == {p.passage_id for p in allowed}
    assert len({len([p for p in passages if where.allows(p)]) for where in filters}) > 3  # filters that differ


def test_an_update_rereads_changed_files_embeds_only_new_texts_and_deletes_what_went(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(corpus_copy, spec, tmp_path, encoder)
    files = sorted(corpus_copy.glob("*.txt"))
    files[0].unlink()
    files[1].write_text(files[1].read_text(encoding="utf-8") + "\n\nA brand new closing paragraph about rice.\n")
    shutil.copy(files[2], corpus_copy / "copy-of-an-article.txt")
    again = FakeEncoder()
    report = build(corpus_copy, spec, tmp_path, again)
    assert (report.added, report.changed, report.removed) == (1, 1, 1)
    assert report.embedded <= 2 and "A brand new closing paragraph about rice." in " ".join(again.encoded)
    store = open_store(spec)
    assert list(store.iter_passages()) == reference_passages(corpus_copy)
    assert store.summary().documents == 5
    unchanged = build(corpus_copy, spec, tmp_path, FakeEncoder())
    assert unchanged.unchanged and unchanged.embedded == 0


def test_stored_sentences_serve_evidence_without_embedding(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(corpus_copy, spec, tmp_path, encoder)
    store = open_store(spec)
    passages = reference_passages(corpus_copy)[:6]
    for passage, sentences in zip(passages, store.sentences_of([p.passage_id for p in passages]), strict=True):
        assert sentences.spans == tuple(split_sentences(passage.text))
        expected = unit(encoder, sentences.texts(passage.text))
        np.testing.assert_allclose(np.sum(sentences.vectors * expected, axis=1), 1.0, atol=0.01)


def test_both_backends_give_the_same_answers(corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder) -> None:
    local = StoreSpec("local", path=tmp_path / "index")
    milvus = parse_store(f"milvus-lite:{tmp_path / 'milvus.db'}")
    stores: list[PassageStore] = []
    for spec in (local, milvus):
        build(corpus_copy, spec, tmp_path, encoder)
        stores.append(open_store(spec))
    for question in QUESTIONS[:2]:
        answers = [retrieve(store, question, encoder=encoder, k=5, mode="hybrid") for store in stores]
        assert [h.passage for h in answers[0]] == [h.passage for h in answers[1]]
        assert [h.evidence for h in answers[0]] == [h.evidence for h in answers[1]]
        np.testing.assert_allclose([h.score for h in answers[0]], [h.score for h in answers[1]], atol=1e-5)


def test_a_missing_index_says_how_to_build_it(spec: StoreSpec) -> None:
    with pytest.raises(IndexNotFoundError, match=r"no index in .*: run `qa index"):
        open_store(spec)


def test_searching_with_another_model_is_refused(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(corpus_copy, spec, tmp_path, encoder)
    with pytest.raises(IndexMismatchError, match="built with model 'fake-encoder', not 'other'"):
        retrieve(open_store(spec), "defectors", encoder=FakeEncoder("other"), mode="dense")


def test_a_build_with_another_model_starts_afresh_and_says_why(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(corpus_copy, spec, tmp_path, encoder)
    report = build(corpus_copy, spec, tmp_path, FakeEncoder("other"))
    assert report.rebuilt_reason == "model changed from fake-encoder to other"
    assert open_store(spec).model == "other"


class FailingEncoder(FakeEncoder):
    """Embeds ``allowed`` calls, then fails like a build cut short."""

    def __init__(self, allowed: int) -> None:
        super().__init__()
        self.allowed = allowed

    def encode(self, texts: list[str]) -> np.ndarray:
        if len(self.calls) >= self.allowed:
            raise KeyboardInterrupt
        return super().encode(texts)


@pytest.mark.parametrize("rebuild", [False, True])
def test_an_interrupted_build_leaves_the_index_answering(  # noqa: PLR0917 (fixtures)
    spec: StoreSpec,
    corpus_copy: Path,
    tmp_path: Path,
    encoder: FakeEncoder,
    rebuild: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("qa.index.milvus_build.WRITE_BATCH", 4)  # several writes before the failure
    build(corpus_copy, spec, tmp_path, encoder)
    before = list(open_store(spec).iter_passages())
    for number, path in enumerate(sorted(corpus_copy.glob("*.txt"))[:3]):
        text = path.read_text(encoding="utf-8").replace("\n\n", f"\n\nIn version {number}, ")
        (corpus_copy / f"new-{number}.txt").write_text(text, "utf-8")
    with pytest.raises(KeyboardInterrupt):
        # Milvus embeds 4 passages and their sentences a call each: 3 batches get written before the failure.
        build(corpus_copy, spec, tmp_path, FailingEncoder(allowed=1 if spec.is_local else 6), rebuild=rebuild)
    store = open_store(spec)
    assert store.summary().passages == len(before)
    assert retrieve(store, "defectors", encoder=encoder, k=3, mode="hybrid")
    # An update of Milvus cut short answers from old passages and the new ones already written;
    # everything else (a rebuild's staged collection, the local index's new generation) is unseen.
    partial = not spec.is_local and not rebuild
    searched = store.dense_candidates(unit(encoder, ["defectors"])[0], depth=1000, where=None)
    assert (len(searched.ids) > len(before)) == partial
    report = build(corpus_copy, spec, tmp_path, FakeEncoder())
    assert list(open_store(spec).iter_passages()) == reference_passages(corpus_copy)
    assert report.passages == len(reference_passages(corpus_copy))


def test_milvus_damage_and_wrong_names_are_one_clear_error(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    from qa.index.milvus import MilvusStore
    from qa.index.milvus_connect import connect, live_collection
    from qa.index.milvus_schema import RECORD_PROPERTY

    spec = parse_store(f"milvus-lite:{tmp_path / 'milvus.db'}")
    build(corpus_copy, spec, tmp_path, encoder)
    with pytest.raises(IndexNotFoundError, match="holds qa indexes qa_passages"):
        MilvusStore.open(spec.with_collection("elsewhere"))
    client = connect(spec)
    live = live_collection(client, spec)
    assert live is not None
    with pytest.raises(IndexMismatchError, match="a collection qa did not make"):
        MilvusStore.open(spec.with_collection(live))
    record = json.loads(client.describe_collection(live)["properties"][RECORD_PROPERTY])
    client.alter_collection_properties(live, properties={RECORD_PROPERTY: json.dumps({**record, "format_version": 99})})
    with pytest.raises(IndexMismatchError, match="format version 99; this qa reads version 1"):
        open_store(spec)
    client.alter_collection_properties(live, properties={RECORD_PROPERTY: "{not json"})
    with pytest.raises(IndexCorruptError, match=r"damaged .*record is unreadable.*--rebuild"):
        open_store(spec)
    report = build(corpus_copy, spec, tmp_path, FakeEncoder())
    assert "record is unreadable" in report.rebuilt_reason
    assert open_store(spec).summary().passages == len(reference_passages(corpus_copy))


def test_an_unreachable_milvus_is_one_clear_error_without_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_MILVUS_TOKEN", "secret-token-123")
    with pytest.raises(QAError) as caught:
        open_store(parse_store("milvus://127.0.0.1:9"))
    message = str(caught.value)
    assert message.startswith("Milvus at 127.0.0.1:9, collection qa_passages: failed while")
    assert "secret-token-123" not in message


def test_store_specs_parse_in_one_place(tmp_path: Path) -> None:
    assert parse_store("index/") == StoreSpec("local", path=Path("index/"))
    lite = parse_store("milvus-lite:data/qa.db")
    assert (lite.kind, lite.path, lite.collection) == ("milvus-lite", Path("data/qa.db"), "qa_passages")
    server = parse_store("milvus://milvus.example:19530/news")
    assert (server.kind, server.uri, server.collection) == ("milvus", "http://milvus.example:19530", "news")
    for bad, message in [
        ("milvus-lite:qa.sqlite", "does not name a .db file"),
        ("milvus://host", "is not HOST:PORT"),
        ("milvus://user:pw@host:19530", "takes no user or password"),
        ("milvus://host:19530/bad-name", "is not a Milvus collection name"),
        ("http://host:19530", "is not a store qa knows"),
    ]:
        with pytest.raises(QAError, match=message):
            parse_store(bad)
    assert dataclasses.replace(server, collection="x").describe() == "Milvus at milvus.example:19530, collection x"


def damage(spec: StoreSpec) -> None:
    """Make the index's record of what it holds unreadable: the manifest, or the collection's record."""
    if spec.is_local:
        assert spec.path is not None
        (spec.path / "manifest.json").write_text("{not json", encoding="utf-8")
        return
    from qa.index.milvus_connect import connect, live_collection
    from qa.index.milvus_schema import RECORD_PROPERTY

    client = connect(spec)
    live = live_collection(client, spec)
    assert live is not None
    client.alter_collection_properties(live, properties={RECORD_PROPERTY: "{not json"})


def test_a_damaged_index_is_reported_with_the_fix_and_the_next_build_repairs_it(
    spec: StoreSpec, corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(corpus_copy, spec, tmp_path, encoder)
    damage(spec)
    with pytest.raises(IndexCorruptError) as caught:
        open_store(spec)
    assert "is damaged" in caught.value.problem and "--rebuild" in caught.value.fix
    report = build(corpus_copy, spec, tmp_path, FakeEncoder())
    assert "unreadable" in report.rebuilt_reason and report.embedded == 0
    assert list(open_store(spec).iter_passages()) == reference_passages(corpus_copy)


def test_a_milvus_document_that_shrinks_loses_its_extra_parts(
    corpus_copy: Path, tmp_path: Path, encoder: FakeEncoder
) -> None:
    from qa.index.milvus_connect import all_rows, connect, live_collection
    from qa.index.milvus_schema import documents_collection

    spec = parse_store(f"milvus-lite:{tmp_path / 'milvus.db'}")
    article = sorted(corpus_copy.glob("*.txt"))[0]
    text = article.read_text(encoding="utf-8")
    article.write_text(
        text
        + "".join(
            f"\n\nIn village {n}, the farmers said the rice harvest had failed twice, so prices in the nearby "
            f"market towns rose by {n % 40 + 3} percent before the winter came."
            for n in range(300)
        )
    )
    build(corpus_copy, spec, tmp_path, encoder)
    client = connect(spec)
    live = live_collection(client, spec)
    assert live is not None
    rows = all_rows(client, spec, documents_collection(live), "", {}, fields=["doc_key", "part"])
    assert len(rows) > 5  # the long article is in several parts
    article.write_text(text, encoding="utf-8")
    build(corpus_copy, spec, tmp_path, FakeEncoder())
    rows = all_rows(client, spec, documents_collection(live), "", {}, fields=["doc_key", "part"])
    assert len(rows) == 5
    expected, _, _ = prepare_documents(find_corpus_files(corpus_copy), [], [], SETTINGS, approximate_token_count)
    assert open_store(spec).documents_with_text == expected
