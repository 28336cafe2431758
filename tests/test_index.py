"""PassageIndex: search against a brute-force reference, save/load, errors, embedding reuse."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import qa.index
from conftest import DAMAGES, WORDS, FakeEncoder, RefusingEncoder, damage_index
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, QAError
from qa.index import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    EmbeddingCache,
    IndexSettings,
    Manifest,
    PassageIndex,
    file_checks,
    lexical_text,
    manifest_text,
    normalize,
    read_manifest,
)
from qa.lexical import LexicalIndex
from qa.records import Document
from qa.retrieve import SearchFilter
from qa.split import split_passages

SETTINGS = IndexSettings(max_tokens=128, min_words=1)


def make_documents(count: int, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    documents = []
    for number in range(count):
        paragraphs = tuple(
            " ".join(rng.choice(WORDS, size=int(rng.integers(5, 15)))) + "." for _ in range(int(rng.integers(1, 5)))
        )
        documents.append(
            Document(doc_id=f"doc{number}", source=f"doc{number}.txt", paragraphs=paragraphs, title=f"T{number}")
        )
    return documents


def build(documents: list[Document], encoder: FakeEncoder, **options: object) -> PassageIndex:
    passages = [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]
    return PassageIndex.build(documents, passages, encoder=encoder, settings=SETTINGS, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["defector family", "river bridge army", "prison court letter phone", "money"])
def test_search_agrees_with_brute_force_numpy_ranking(encoder: FakeEncoder, query: str) -> None:
    index = build(make_documents(30), encoder)
    hits = index.search(query, encoder=encoder, k=10, mode="dense")

    matrix = normalize(encoder.encode([p.text for p in index.passages]))
    scores = matrix @ normalize(encoder.encode([query]))[0]
    expected = np.sort(scores)[::-1][:10]
    assert [h.rank for h in hits] == list(range(1, 11))
    np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-5, atol=1e-6)
    for hit in hits:  # ties may come in any order; each hit's score must be its own
        assert scores[index.passages.index(hit.passage)] == pytest.approx(hit.score, abs=1e-5)
        assert hit.dense_score == pytest.approx(hit.score, abs=1e-5)


def min_max(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return (values - values.min()) / spread if spread else np.zeros_like(values)


@pytest.mark.parametrize("query", ["defector family", "river bridge army", "prison court letter phone"])
def test_bm25_and_hybrid_agree_with_brute_force(encoder: FakeEncoder, query: str) -> None:
    index = build(make_documents(30), encoder)  # under CANDIDATE_DEPTH passages: every row is a candidate
    bm25 = LexicalIndex.build([lexical_text(p, SETTINGS) for p in index.passages]).scores(query)
    dense = normalize(encoder.encode([p.text for p in index.passages])) @ normalize(encoder.encode([query]))[0]
    fused = 0.5 * min_max(dense) + 0.5 * min_max(bm25)
    for mode, reference in (("bm25", bm25), ("hybrid", fused)):
        hits = index.search(query, encoder=encoder, k=8, mode=mode)  # type: ignore[arg-type]
        np.testing.assert_allclose([h.score for h in hits], np.sort(reference)[::-1][:8], rtol=1e-5, atol=1e-6)
    hybrid = index.search(query, encoder=encoder, k=3, mode="hybrid")
    assert all(h.dense_rank is not None and h.bm25_rank is not None for h in hybrid)
    top_bm25 = index.search(query, encoder=encoder, k=1, mode="bm25")[0]
    assert top_bm25.bm25_rank == 1 and top_bm25.bm25_score == pytest.approx(float(bm25.max()), rel=1e-5)


def test_filters_restrict_hits_to_matching_passages(encoder: FakeEncoder) -> None:
    documents = [
        dataclasses.replace(d, outlet="Gazette" if i % 2 else "Herald", date=f"2020-01-{i + 1:02d}")
        for i, d in enumerate(make_documents(10))
    ]
    index = build(documents, encoder)
    only = SearchFilter(doc_ids=frozenset({"doc3", "doc4"}))
    assert {h.passage.doc_id for h in index.search("army", encoder=encoder, k=50, where=only)} == {"doc3", "doc4"}
    gazette = index.search("army", encoder=encoder, k=50, where=SearchFilter(outlets=frozenset({"Gazette"})))
    assert gazette and {h.passage.outlet for h in gazette} == {"Gazette"}
    dated = index.search(
        "army", encoder=encoder, k=50, where=SearchFilter(date_from="2020-01-03", date_to="2020-01-05")
    )
    assert {h.passage.date for h in dated} == {"2020-01-03", "2020-01-04", "2020-01-05"}
    assert index.search("army", encoder=encoder, where=SearchFilter(outlets=frozenset({"Nobody"}))) == []


def test_history_gives_a_follow_up_its_subject(encoder: FakeEncoder) -> None:
    documents = [
        Document("baker", "baker.txt", ("Alice the baker opened a shop. Later she said bread prices rose.",)),
        Document("pilot", "pilot.txt", ("Bob the pilot flew north. Later she said nothing at all about it.",)),
    ]
    index = build(documents, encoder)
    follow_up = "what did she say later"
    with_history = index.search(
        follow_up, encoder=encoder, k=1, mode="dense", history=["Tell me about Alice the baker"]
    )
    with_other = index.search(follow_up, encoder=encoder, k=1, mode="dense", history=["Tell me about Bob the pilot"])
    assert with_history[0].passage.doc_id == "baker"
    assert with_other[0].passage.doc_id == "pilot"


def test_copies_of_a_passage_appear_once_with_the_other_source(encoder: FakeEncoder) -> None:
    text = "The council voted to rebuild the lighthouse after the storm damaged the harbour wall."
    documents = [
        Document("a", "a.txt", (text,)),
        Document("b", "copy/b.txt", (text.replace("voted", "voted  "),)),
        Document("c", "c.txt", ("Farmers in the valley expect a good harvest of apples this year.",)),
    ]
    hits = build(documents, encoder).search("lighthouse council storm", encoder=encoder, k=5)
    assert [h.rank for h in hits] == [1, 2]
    assert hits[0].also_in in (("copy/b.txt",), ("a.txt",))


def test_unknown_mode_is_refused(encoder: FakeEncoder) -> None:
    with pytest.raises(QAError, match="unknown search mode"):
        build(make_documents(2), encoder).search("army", encoder=encoder, mode="fuzzy")  # type: ignore[arg-type]


def test_k_larger_than_index_returns_everything(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    assert len(index.search("defector", encoder=encoder, k=1000)) == len(index.passages)


def test_empty_question_is_refused(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    with pytest.raises(QAError, match="empty"):
        index.search("   ", encoder=encoder)


def test_save_load_round_trip(tmp_path: Path, encoder: FakeEncoder) -> None:
    index = build(make_documents(10), encoder)
    index.save(tmp_path)
    loaded = PassageIndex.load(tmp_path)
    assert loaded.passages == index.passages
    assert loaded.documents == index.documents
    assert loaded.manifest == index.manifest
    assert loaded.search("border regime", encoder=encoder, k=5) == index.search("border regime", encoder=encoder, k=5)


def test_documents_saved_before_encodings_were_recorded_load_as_utf8(tmp_path: Path, encoder: FakeEncoder) -> None:
    documents = [dataclasses.replace(d, encoding="cp949") for d in make_documents(3)]
    build(documents, encoder).save(tmp_path)
    [path] = tmp_path.glob("documents-*.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(row.pop("encoding") == "cp949" for row in rows)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    manifest = read_manifest(tmp_path)  # as an older qa wrote it: its checks describe the file as it is
    checks = file_checks(tmp_path, manifest.files.values())
    (tmp_path / MANIFEST_NAME).write_text(manifest_text(dataclasses.replace(manifest, file_checks=checks)))

    loaded = PassageIndex.load(tmp_path)
    assert loaded.documents == [dataclasses.replace(d, encoding="utf-8") for d in documents]


def test_manifest_is_readable_json_with_what_built_the_index(tmp_path: Path, encoder: FakeEncoder) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["model"] == "fake-encoder"
    assert manifest["dimension"] == 256
    assert manifest["normalized"] is True
    assert manifest["format_version"] == FORMAT_VERSION == 3
    assert set(manifest["files"]) == {"documents", "passages", "vectors", "slots", "bm25"}
    assert {"corpus_fingerprint", "built_at", "settings", "manifest_sha256"} <= set(manifest)
    checks = manifest["file_checks"]
    assert {name.split("/")[0] for name in checks} == set(manifest["files"].values())
    for name, check in checks.items():
        assert check["size"] == (tmp_path / name).stat().st_size
        assert check["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_saving_again_replaces_the_previous_generation(tmp_path: Path, encoder: FakeEncoder) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    build(make_documents(4, seed=1), encoder).save(tmp_path)
    data_files = sorted(p.name for p in tmp_path.iterdir() if p.name not in {MANIFEST_NAME})
    assert sorted(read_manifest(tmp_path).files.values()) == data_files


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_interrupted_save_leaves_previous_index_whole(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    old = build(make_documents(3), encoder)
    old.save(tmp_path)
    before = snapshot(tmp_path)

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(faiss, "write_index", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(make_documents(5, seed=2), encoder).save(tmp_path)
    assert snapshot(tmp_path) == before
    assert PassageIndex.load(tmp_path).passages == old.passages


def test_update_embeds_only_texts_it_does_not_hold(encoder: FakeEncoder) -> None:
    documents = make_documents(5)
    index = build(documents, encoder)
    encoder.calls.clear()
    new_document = Document(doc_id="new", source="new.txt", paragraphs=("A brand new paragraph about rivers.",))
    documents = [*documents[1:], new_document]
    passages = [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]
    updated = index.update(documents, passages, encoder=encoder, settings=SETTINGS)
    assert encoder.encoded == ["A brand new paragraph about rivers."]
    assert updated.embed_stats.embedded == 1
    assert {p.doc_id for p in updated.passages} == {d.doc_id for d in documents}
    assert index.passages != updated.passages  # the old index is left as it was


def test_cache_spares_re_embedding(tmp_path: Path, encoder: FakeEncoder) -> None:
    documents = make_documents(4)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = build(documents, encoder, cache=cache)
    second = build(documents, RefusingEncoder(), cache=cache)
    assert second.embed_stats.cached == len({p.text for p in first.passages})
    assert second.search("army", encoder=encoder, k=3) == first.search("army", encoder=encoder, k=3)


def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    documents = make_documents(2)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    build(documents, FakeEncoder("model-a"), cache=cache)
    other = FakeEncoder("model-b")
    build(documents, other, cache=cache)
    assert other.encoded  # vectors of model-a are never served for model-b


def test_searching_with_another_model_is_refused(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    with pytest.raises(IndexMismatchError, match="fake-encoder"):
        index.search("army", encoder=FakeEncoder("other-model"))


def test_load_missing_index(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="qa index"):
        PassageIndex.load(tmp_path)


def test_load_other_format_version(tmp_path: Path, encoder: FakeEncoder) -> None:
    build(make_documents(2), encoder).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["format_version"] = 99
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        PassageIndex.load(tmp_path)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_index_says_what_is_wrong_and_names_the_fix(tmp_path: Path, encoder: FakeEncoder, damage: str) -> None:
    build(make_documents(4), encoder).save(tmp_path)
    damage_index(tmp_path, damage)
    with pytest.raises(IndexCorruptError, match="qa index --rebuild") as caught:
        PassageIndex.load(tmp_path)
    assert "is damaged" in str(caught.value) and DAMAGES[damage] in str(caught.value)


def test_checksums_are_left_to_parsing_above_the_limit(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(make_documents(4), encoder).save(tmp_path)
    damage_index(tmp_path, "vectors changed in place")
    monkeypatch.setattr("qa.index.CHECKSUM_LIMIT", 100)  # the files now count as large: sizes only
    assert len(PassageIndex.load(tmp_path).passages) > 0
    damage_index(tmp_path, "truncated vectors")
    with pytest.raises(IndexCorruptError, match="bytes; the manifest says"):
        PassageIndex.load(tmp_path)


def test_a_build_committed_while_loading_is_read_instead(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    newer = build(make_documents(6, seed=4), encoder)
    real_check = qa.index.check_files

    def check_after_another_save(index_dir: Path, manifest: Manifest) -> None:
        monkeypatch.setattr("qa.index.check_files", real_check)  # only the first read races
        newer.save(tmp_path)  # commits a new generation and removes the one this load was about to read
        real_check(index_dir, manifest)

    monkeypatch.setattr("qa.index.check_files", check_after_another_save)
    assert PassageIndex.load(tmp_path).passages == newer.passages


def test_a_full_disk_leaves_the_previous_index_and_says_so(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = build(make_documents(3), encoder)
    old.save(tmp_path)
    before = snapshot(tmp_path)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("qa.index._write_jsonl", full)
    with pytest.raises(QAError, match=r"could not write the index .*No space left.*previous index is unchanged"):
        build(make_documents(5, seed=2), encoder).save(tmp_path)
    assert snapshot(tmp_path) == before


def test_a_damaged_embedding_cache_is_replaced_with_a_warning(tmp_path: Path, encoder: FakeEncoder) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.warns(UserWarning, match="embedding cache .* is damaged"):
        cache = EmbeddingCache(path)
    documents = make_documents(2)
    build(documents, encoder, cache=cache)
    assert build(documents, RefusingEncoder(), cache=cache).embed_stats.cached > 0


def test_sentence_vectors_are_remembered(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    encoder.calls.clear()
    first = index.embed_sentences(["Rivers rose.", "Bridges closed."], encoder)
    again = index.embed_sentences(["Bridges closed.", "Rivers rose."], encoder)
    assert encoder.encoded == ["Rivers rose.", "Bridges closed."]
    np.testing.assert_allclose(again, first[::-1])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-6)


def test_large_indexes_use_hnsw_with_high_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    from qa.index import build_vector_index

    rng = np.random.default_rng(7)
    centres = rng.normal(size=(40, 32))
    vectors = normalize((centres[rng.integers(0, 40, 3000)] + rng.normal(0, 0.3, (3000, 32))).astype(np.float32))
    monkeypatch.setattr("qa.index.EXACT_SEARCH_LIMIT", 1000)
    index = build_vector_index(vectors)
    assert isinstance(index, faiss.IndexHNSW)
    queries = normalize((centres[:20] + rng.normal(0, 0.3, (20, 32))).astype(np.float32))
    _, found = index.search(queries, 10)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95
    assert isinstance(build_vector_index(vectors[:500]), faiss.IndexFlatIP)


def passages_of(documents: list[Document]) -> list:  # type: ignore[type-arg]
    return [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]


def updated(index: PassageIndex, documents: list[Document], encoder: FakeEncoder) -> PassageIndex:
    return index.update(documents, passages_of(documents), encoder=encoder, settings=SETTINGS)


def dense_ids(index: PassageIndex, query: str, encoder: FakeEncoder) -> list[str]:
    hits = index.search(query, encoder=encoder, k=len(index.passages), mode="dense")
    return [hit.passage.passage_id for hit in hits]


@pytest.fixture
def graph_sized(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every index past 20 passages an HNSW graph, as a million-passage one is."""
    monkeypatch.setattr("qa.index.EXACT_SEARCH_LIMIT", 20)


@pytest.mark.usefixtures("graph_sized")
def test_a_large_index_grows_its_graph_and_skips_removed_passages(encoder: FakeEncoder) -> None:
    import faiss

    documents = make_documents(60)
    old = build(documents[:50], encoder)
    old_total, old_ids = old._vectors.ntotal, dense_ids(old, "river army", encoder)
    removed = {p.passage_id for p in passages_of(documents[:3])}
    added = passages_of(documents[50:])
    encoder.calls.clear()
    new = updated(old, documents[3:], encoder)

    assert isinstance(new._vectors, faiss.IndexHNSW)
    assert new._vectors.ntotal == old_total + len(added)  # appended to, not rebuilt
    assert sorted(encoder.encoded) == sorted(p.text for p in added)
    for query in ("river army", "defector family", "prison court letter phone"):
        found = dense_ids(new, query, encoder)
        assert not removed & set(found)
        assert len(found) == len(set(found))
    for passage in added:
        assert new.search(passage.text, encoder=encoder, k=1, mode="dense")[0].passage == passage
    assert dense_ids(old, "river army", encoder) == old_ids  # the old index still answers as before


@pytest.mark.usefixtures("graph_sized")
def test_asking_for_a_removed_passage_finds_the_best_remaining_ones(
    encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = make_documents(60)
    index = updated(build(documents, encoder), documents[3:], encoder)
    matrix = normalize(encoder.encode([p.text for p in index.passages]))
    monkeypatch.setattr("qa.index.CANDIDATE_DEPTH", 3)  # removed passages must not take candidates' places
    for passage in passages_of(documents[:3]):
        hits = index.search(passage.text, encoder=encoder, k=3, mode="dense")
        exact = matrix @ normalize(encoder.encode([passage.text]))[0]
        assert all(hit.passage in index.passages for hit in hits)
        np.testing.assert_allclose([h.score for h in hits], np.sort(exact)[::-1][:3], atol=0.02)


@pytest.mark.usefixtures("graph_sized")
def test_graph_scores_follow_the_brute_force_ranking_after_updates(encoder: FakeEncoder) -> None:
    documents = make_documents(60)
    index = updated(build(documents[:50], encoder), documents[3:], encoder)
    query = "defector family money"
    hits = index.search(query, encoder=encoder, k=10, mode="dense")
    matrix = normalize(encoder.encode([p.text for p in index.passages]))
    exact = matrix @ normalize(encoder.encode([query]))[0]
    for hit in hits:  # float16 codes: scores within rounding of the exact ones
        assert hit.dense_score == pytest.approx(exact[index.passages.index(hit.passage)], abs=0.02)
    top = set(np.argsort(-exact)[:10])
    assert len(top & {index.passages.index(h.passage) for h in hits}) >= 8


@pytest.mark.usefixtures("graph_sized")
def test_too_many_removals_rebuild_the_graph_without_tombstones(encoder: FakeEncoder) -> None:
    documents = make_documents(60)
    index = updated(build(documents, encoder), documents[25:], encoder)
    assert index._vectors.ntotal == len(index.passages)
    np.testing.assert_array_equal(index._slots, np.arange(len(index.passages)))


@pytest.mark.usefixtures("graph_sized")
def test_mapped_vector_ids_survive_save_and_load(tmp_path: Path, encoder: FakeEncoder) -> None:
    documents = make_documents(60)
    index = updated(build(documents[:50], encoder), documents[3:], encoder)
    assert index._vectors.ntotal > len(index.passages)  # tombstones present
    index.save(tmp_path)
    loaded = PassageIndex.load(tmp_path)
    for query in ("river army", "defector family"):
        assert dense_ids(loaded, query, encoder) == dense_ids(index, query, encoder)


@pytest.mark.parametrize("damage", ["duplicate", "out_of_range", "short"])
def test_damaged_vector_ids_name_the_fix(tmp_path: Path, encoder: FakeEncoder, damage: str) -> None:
    build(make_documents(4), encoder).save(tmp_path)
    path = tmp_path / read_manifest(tmp_path).files["slots"]
    slots = np.load(path)
    if damage == "duplicate":
        slots[1] = slots[0]
    elif damage == "out_of_range":
        slots[-1] = len(slots) + 5
    else:
        slots = slots[:-1]
    np.save(path, slots)
    with pytest.raises(IndexCorruptError, match="qa index --rebuild"):
        PassageIndex.load(tmp_path)


def test_each_searching_thread_uses_one_openmp_thread(encoder: FakeEncoder) -> None:
    import threading

    import faiss

    index = build(make_documents(10), encoder)
    seen: list[int] = []

    def search_then_look() -> None:
        index.search("river army", encoder=encoder, k=3, mode="dense")
        seen.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=search_then_look)  # as the app's worker threads search
    worker.start()
    worker.join()
    assert seen == [1]


@pytest.mark.usefixtures("graph_sized")
def test_building_a_graph_leaves_the_thread_count_as_it_was() -> None:
    import faiss

    from qa.index import build_vector_index

    faiss.omp_set_num_threads(1)
    build_vector_index(normalize(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)))
    assert faiss.omp_get_max_threads() == 1


class SlowEncoder(FakeEncoder):
    """Pauses inside ``encode``, as a real model does, so other threads run meanwhile."""

    def encode(self, texts: list[str]) -> np.ndarray:
        time.sleep(0.002)
        return super().encode(texts)


def test_sentence_memory_is_safe_under_concurrent_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = SlowEncoder()
    index = build(make_documents(2), encoder)
    # A small memory makes threads evict each other's sentences while they embed.
    monkeypatch.setattr("qa.index.SENTENCE_MEMORY", 8)
    pool = [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 5 + 3) % len(WORDS)]} number {i}." for i in range(30)]
    failures: list[BaseException] = []

    def ask_many(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(40):
                sentences = [pool[i] for i in rng.choice(len(pool), size=6, replace=False)]
                vectors = index.embed_sentences(sentences, encoder)
                np.testing.assert_allclose(vectors, normalize(FakeEncoder().encode(sentences)), rtol=1e-6)
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=ask_many, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures[:3]
    assert len(index._sentence_vectors) <= 8


def test_loading_an_index_never_unpickles(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = build(make_documents(10), encoder)
    index.save(tmp_path)
    numpy_load = np.load

    def refuse(*arguments: object, **options: object) -> None:
        raise AssertionError("something was unpickled")

    def load_without_pickle(file: object, mmap_mode: str | None = None, allow_pickle: bool = False) -> object:
        if allow_pickle:
            raise AssertionError("numpy.load was allowed to unpickle")
        return numpy_load(file, mmap_mode=mmap_mode, allow_pickle=False)

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", load_without_pickle)
    loaded = PassageIndex.load(tmp_path)
    assert loaded.search("border regime", encoder=encoder, k=5) == index.search("border regime", encoder=encoder, k=5)
    bm25_dir = tmp_path / loaded.manifest.files["bm25"]
    for mmap in (False, True):  # large indexes memory-map the BM25 arrays
        assert np.array_equal(LexicalIndex.load(bm25_dir, mmap=mmap).scores("river"), loaded._lexical.scores("river"))
