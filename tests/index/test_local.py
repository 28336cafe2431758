"""LocalIndex: the store search asks (against brute force), save/load, errors, embedding reuse, FAISS graphs."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import inspect
import json
import pickle
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import qa.index.local
from conftest import (
    DAMAGES,
    WRONG_MANIFESTS,
    FakeEncoder,
    RefusingEncoder,
    damage_index,
    make_documents,
    rewrite_manifest,
)
from qa.embed.encoder import normalize
from qa.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError, QAError
from qa.index.embeddings import EmbeddingCache
from qa.index.lexical import LexicalIndex, tokenize
from qa.index.local import LocalIndex
from qa.index.lock import LOCK_NAME, recorded_generations
from qa.index.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    IndexSettings,
    Manifest,
    generation_of,
    read_manifest,
)
from qa.index.store import Candidates, PassageStore, SearchFilter, StoreSummary
from qa.index.texts import embedding_text, lexical_text
from qa.index.vectors import build_vector_index, valid_slots
from qa.ingest.split import split_passages
from qa.records import Document, Passage

SETTINGS = IndexSettings(max_tokens=128, min_words=1)
QUERIES = ["defector family", "river bridge army", "prison court letter phone", "money"]


def with_outlets_and_dates(documents: list[Document]) -> list[Document]:
    return [
        dataclasses.replace(d, outlet="Gazette" if i % 2 else "Herald", date=f"2020-01-{i + 1:02d}")
        for i, d in enumerate(documents)
    ]


def passages_of(documents: list[Document]) -> list[Passage]:
    return [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]


def build(documents: list[Document], encoder: FakeEncoder, cache: EmbeddingCache | None = None) -> LocalIndex:
    empty = LocalIndex.empty(encoder.name, SETTINGS)
    return empty.update(documents, passages_of(documents), encoder=encoder, settings=SETTINGS, cache=cache)


def updated(index: LocalIndex, documents: list[Document], encoder: FakeEncoder) -> LocalIndex:
    return index.update(documents, passages_of(documents), encoder=encoder, settings=SETTINGS)


def unit(text: str) -> np.ndarray:
    """The query vector search would ask with: the fake encoder's unit vector of ``text``."""
    vector: np.ndarray = normalize(FakeEncoder().encode([text]))[0]
    return vector


def stored_vectors(index: LocalIndex) -> np.ndarray:
    """The brute-force reference: the fake encoder's unit vector of each passage's embedded text."""
    return normalize(FakeEncoder().encode([embedding_text(p, SETTINGS) for p in index.passages]))


def full_bm25(index: LocalIndex, text: str) -> np.ndarray:
    """The brute-force reference: the BM25 score of every passage, from an index built afresh."""
    return LexicalIndex.build([lexical_text(p, SETTINGS) for p in index.passages]).scores(text)


def rows_of(index: LocalIndex, ids: tuple[str, ...] | list[str]) -> list[int]:
    row_of = {p.passage_id: row for row, p in enumerate(index.passages)}
    return [row_of[passage_id] for passage_id in ids]


def allowed_rows(index: LocalIndex, where: SearchFilter | None) -> np.ndarray:
    return np.array([where is None or where.allows(p) for p in index.passages], dtype=bool)


def assert_dense_top(
    index: LocalIndex, found: Candidates, reference: np.ndarray, *, depth: int, allowed: np.ndarray, atol: float
) -> None:
    """``found`` holds the ``depth`` best allowed rows of ``reference``, best first (ties at the cut-off either way)."""
    rows = rows_of(index, found.ids)
    assert len(rows) == len(set(rows)) == min(depth, int(allowed.sum()))
    assert all(allowed[row] for row in rows)
    np.testing.assert_allclose(found.scores, reference[rows], atol=atol)  # each candidate's score is its own
    np.testing.assert_allclose(found.scores, np.sort(reference[allowed])[::-1][:depth], atol=atol)


def brute_force_bm25_top(reference: np.ndarray, depth: int, allowed: np.ndarray) -> list[int]:
    rows = [row for row in range(len(reference)) if allowed[row]]
    return sorted(rows, key=lambda row: (-float(reference[row]), row))[:depth]


def answers(index: LocalIndex) -> list[tuple[tuple[str, ...], list[float]]]:
    """What the index answers for ``QUERIES``: dense and BM25 candidates, ids and scores."""
    found = []
    for query in QUERIES:
        for candidates in (
            index.dense_candidates(unit(query), depth=10, where=None),
            index.bm25_candidates(query, depth=10, where=None),
        ):
            found.append((candidates.ids, candidates.scores.tolist()))
    return found


# ---------------------------------------------------------------- the store search asks


FILTERS = {
    "none": None,
    "empty": SearchFilter(),
    "documents": SearchFilter(doc_ids=frozenset({"doc3", "doc4", "doc11"})),
    "outlet": SearchFilter(outlets=frozenset({"Gazette"})),
    "dates": SearchFilter(date_from="2020-01-03", date_to="2020-01-05"),
    "outlet and dates": SearchFilter(outlets=frozenset({"Herald"}), date_from="2020-01-10"),
    "nobody": SearchFilter(outlets=frozenset({"Nobody"})),
}


@pytest.mark.parametrize("where", FILTERS.values(), ids=FILTERS.keys())
@pytest.mark.parametrize("query", QUERIES)
def test_dense_candidates_are_the_brute_force_inner_product_top_k(
    encoder: FakeEncoder, query: str, where: SearchFilter | None
) -> None:
    index = build(with_outlets_and_dates(make_documents(30)), encoder)
    reference = stored_vectors(index) @ unit(query)
    allowed = allowed_rows(index, where)
    for depth in (1, 5, 10, len(index.passages) + 10):
        found = index.dense_candidates(unit(query), depth=depth, where=where)
        assert_dense_top(index, found, reference, depth=depth, allowed=allowed, atol=1e-5)


@pytest.mark.parametrize("where", FILTERS.values(), ids=FILTERS.keys())
@pytest.mark.parametrize("query", [*QUERIES, "zebra", "money money T3"])
def test_bm25_candidates_are_the_brute_force_top_k_of_the_allowed_passages(
    encoder: FakeEncoder, query: str, where: SearchFilter | None
) -> None:
    index = build(with_outlets_and_dates(make_documents(30)), encoder)
    reference = full_bm25(index, query)
    allowed = allowed_rows(index, where)
    for depth in (1, 5, 10, len(index.passages) + 10):
        found = index.bm25_candidates(query, depth=depth, where=where)
        rows = rows_of(index, found.ids)
        assert rows == brute_force_bm25_top(reference, depth, allowed)  # ties go to the earlier passage
        assert np.array_equal(found.scores, reference[rows])


def test_filters_leave_exactly_the_matching_passages(encoder: FakeEncoder) -> None:
    index = build(with_outlets_and_dates(make_documents(10)), encoder)
    everything = len(index.passages)

    def found(where: SearchFilter) -> list[set[str]]:
        dense = index.dense_candidates(unit("army"), depth=everything, where=where)
        lexical = index.bm25_candidates("army", depth=everything, where=where)
        return [set(candidates.ids) for candidates in (dense, lexical)]

    def passages(keep: object) -> set[str]:
        return {p.passage_id for p in index.passages if keep(p)}  # type: ignore[operator]

    only = SearchFilter(doc_ids=frozenset({"doc3", "doc4"}))
    assert found(only) == [passages(lambda p: p.doc_id in {"doc3", "doc4"})] * 2
    gazette = SearchFilter(outlets=frozenset({"Gazette"}))
    assert found(gazette) == [passages(lambda p: p.outlet == "Gazette")] * 2
    dated = SearchFilter(date_from="2020-01-03", date_to="2020-01-05")
    assert found(dated) == [passages(lambda p: "2020-01-03" <= p.date <= "2020-01-05")] * 2
    assert {index.passages_by_id([i])[0].date for i in found(dated)[0]} == {"2020-01-03", "2020-01-04", "2020-01-05"}
    assert found(SearchFilter(outlets=frozenset({"Nobody"}))) == [set(), set()]


def test_dense_and_bm25_scores_of_given_passages_equal_brute_force(encoder: FakeEncoder) -> None:
    index = build(make_documents(30), encoder)
    rng = np.random.default_rng(3)
    ids = [p.passage_id for p in index.passages]
    choices = [ids, [], [ids[-1]], list(rng.permutation(ids)[:20]), list(rng.choice(ids, size=40))]  # repeats too
    for query in [*QUERIES, "zebra"]:
        dense_reference = stored_vectors(index) @ unit(query)
        bm25_reference = full_bm25(index, query)
        for chosen in choices:
            rows = rows_of(index, chosen)
            dense = index.dense_scores(unit(query), chosen)
            np.testing.assert_allclose(dense, dense_reference[rows], rtol=1e-5, atol=1e-6)
            assert dense.shape == (len(chosen),)
            assert np.array_equal(index.bm25_scores(query, chosen), bm25_reference[rows])


def test_passages_by_id_returns_those_passages_in_the_order_asked(encoder: FakeEncoder) -> None:
    index = build(make_documents(10), encoder)
    ids = [p.passage_id for p in index.passages]
    assert index.passages_by_id(ids) == index.passages
    shuffled = [str(i) for i in np.random.default_rng(0).permutation(ids)]
    assert [p.passage_id for p in index.passages_by_id(shuffled)] == shuffled
    assert index.passages_by_id([ids[2], ids[2]]) == [index.passages[2]] * 2
    assert index.passages_by_id([]) == []
    assert list(index.iter_passages()) == index.passages


def test_passage_counts_and_summary_describe_the_index(tmp_path: Path, encoder: FakeEncoder) -> None:
    documents = make_documents(10)
    index = build(documents, encoder)
    counts = index.passage_counts()
    assert sum(counts.values()) == len(index.passages)
    assert counts == Counter(p.doc_id for p in passages_of(documents))
    index.save(tmp_path)
    loaded = LocalIndex.load(tmp_path)
    assert loaded.passage_counts() == counts
    assert loaded.summary() == StoreSummary(
        "fake-encoder", len(documents), len(index.passages), index.manifest.built_at
    )
    assert loaded.model == "fake-encoder"


def test_known_terms_are_the_bm25_tokens_of_the_passages_and_the_documents_metadata(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    text = "Soldiers guarded the river crossing."
    document = Document("a", "a.txt", (text,), title="Harvest", outlet="Gazette", author="Lee Min", date="2020-01-03")
    [passage_terms] = tokenize([text])
    [metadata_terms] = tokenize(["Harvest Gazette Lee Min 2020-01-03"])
    [unknown_terms] = tokenize(["zebra saxophone"])
    assert passage_terms and metadata_terms and unknown_terms
    index = build([document], encoder)
    index.save(tmp_path)
    for store in (index, LocalIndex.load(tmp_path)):
        assert store.known_terms([*passage_terms, *metadata_terms, *unknown_terms]) == {
            *passage_terms,
            *metadata_terms,
        }
        assert store.known_terms(unknown_terms) == frozenset()
        assert store.known_terms([]) == frozenset()


def test_local_index_has_every_member_of_the_passage_store_protocol(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    store: PassageStore = index  # and mypy checks the types
    members = [name for name in vars(PassageStore) if not name.startswith("_")]
    assert {"dense_candidates", "bm25_candidates", "dense_scores", "bm25_scores", "known_terms"} <= set(members)
    for name in members:
        wanted = getattr(PassageStore, name)
        if isinstance(wanted, property):
            assert hasattr(store, name) and not callable(getattr(store, name)), name
            continue
        have = inspect.signature(getattr(LocalIndex, name)).parameters
        assert [(p.name, p.kind) for p in have.values()] == [
            (p.name, p.kind) for p in inspect.signature(wanted).parameters.values()
        ], name


def test_an_empty_index_answers_nothing(encoder: FakeEncoder) -> None:
    index = LocalIndex.empty(encoder.name, SETTINGS)
    assert index.dense_candidates(unit("army"), depth=5, where=None).ids == ()
    assert index.bm25_candidates("army", depth=5, where=None).ids == ()
    assert index.passage_counts() == {} and index.known_terms(["armi"]) == frozenset()


# ---------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path: Path, encoder: FakeEncoder) -> None:
    index = build(make_documents(10), encoder)
    index.save(tmp_path)
    loaded = LocalIndex.load(tmp_path)
    assert loaded.passages == index.passages
    assert loaded.documents == index.documents == [d.metadata for d in index.documents_with_text]
    assert loaded.documents_with_text == index.documents_with_text
    assert loaded.manifest == index.manifest
    assert answers(loaded) == answers(index)


def test_manifest_is_readable_json_with_what_built_the_index(tmp_path: Path, encoder: FakeEncoder) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["model"] == "fake-encoder"
    assert manifest["dimension"] == 256
    assert manifest["normalized"] is True
    assert manifest["format_version"] == FORMAT_VERSION == 5
    assert set(manifest["files"]) == {"documents", "passages", "vectors", "slots", "bm25", "sentences"}
    assert {"corpus_fingerprint", "built_at", "settings", "manifest_sha256"} <= set(manifest)
    checks = manifest["file_checks"]
    assert {name.split("/")[0] for name in checks} == set(manifest["files"].values())
    for name, check in checks.items():
        assert check["size"] == (tmp_path / name).stat().st_size
        assert check["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_saving_again_replaces_the_previous_generation(tmp_path: Path, encoder: FakeEncoder) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    build(make_documents(4, seed=1), encoder).save(tmp_path)
    data_files = sorted(p.name for p in tmp_path.iterdir() if p.name not in {MANIFEST_NAME, LOCK_NAME})
    assert sorted(read_manifest(tmp_path).files.values()) == data_files
    assert [r.generation for r in recorded_generations(tmp_path)] == [generation_of(read_manifest(tmp_path).files)]


# Files a person or another program keeps in the folder, named like qa's own files (or exactly so).
FOREIGN_FILES = [
    "bm25-notes/data.txt",
    "documents-2020.jsonl",
    "passages-backup.jsonl",
    "vectors-old.faiss",
    "slots-1.npy",
    ".draft.tmp",
    "documents-abc123.jsonl",  # qa's exact pattern, but no build of qa wrote it
    "bm25-abc123/params.index.json",
    ".passages-abc123.jsonl.4242.tmp",
    ".manifest.json.4242.tmp",
    "notes.txt",
]


def test_saves_remove_earlier_generations_and_never_files_qa_did_not_write(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    first = set(read_manifest(tmp_path).files.values())
    for name in FOREIGN_FILES:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"kept: {name}")
    build(make_documents(4, seed=1), encoder).save(tmp_path)
    build(make_documents(5, seed=2), encoder).save(tmp_path)
    for name in FOREIGN_FILES:
        assert (tmp_path / name).read_text() == f"kept: {name}"
    assert not first & {p.name for p in tmp_path.iterdir()}  # the earlier generations are gone


def test_files_of_a_generation_a_build_recorded_are_removed_after_it_was_killed(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    from qa.index.lock import record_generation

    build(make_documents(3), encoder).save(tmp_path)
    # What a build killed half-way through its save leaves: its record, a file, a temporary file.
    record_generation(tmp_path, "abc123", pid=4242)
    left = ["documents-abc123.jsonl", ".passages-abc123.sqlite.4242.tmp", ".manifest.json.4242.tmp"]
    for name in left:
        (tmp_path / name).write_text("half")
    (tmp_path / ".passages-abc123.sqlite.4243.tmp").write_text("another process's name: not this build's")
    build(make_documents(4, seed=1), encoder).save(tmp_path)
    assert not any((tmp_path / name).exists() for name in left)
    assert (tmp_path / ".passages-abc123.sqlite.4243.tmp").exists()
    assert [r.generation for r in recorded_generations(tmp_path)] == [generation_of(read_manifest(tmp_path).files)]


def test_an_index_saved_before_the_journal_loses_its_old_generation_on_the_next_save(
    tmp_path: Path, encoder: FakeEncoder
) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    old = set(read_manifest(tmp_path).files.values())
    (tmp_path / LOCK_NAME).write_text("12345\n")  # the lock file of an earlier qa: a pid, no journal
    build(make_documents(4, seed=1), encoder).save(tmp_path)
    assert not old & {p.name for p in tmp_path.iterdir()}


def snapshot(folder: Path) -> dict[str, bytes]:
    # The lock file holds the journal of generations builds started: a failed save records and forgets its own.
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME
    }


def recorded(folder: Path) -> list[str]:
    return [record.generation for record in recorded_generations(folder)]


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
    journal = recorded(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        build(make_documents(5, seed=2), encoder).save(tmp_path)
    assert snapshot(tmp_path) == before
    assert recorded(tmp_path) == journal
    assert LocalIndex.load(tmp_path).passages == old.passages


def test_update_embeds_only_texts_it_does_not_hold(encoder: FakeEncoder) -> None:
    documents = make_documents(5)
    index = build(documents, encoder)
    encoder.calls.clear()
    new_document = Document(doc_id="new", source="new.txt", paragraphs=("A brand new paragraph about rivers.",))
    documents = [*documents[1:], new_document]
    new = updated(index, documents, encoder)
    assert encoder.encoded == ["A brand new paragraph about rivers."]
    assert new.embed_stats.embedded == 1
    assert {p.doc_id for p in new.passages} == {d.doc_id for d in documents}
    assert index.passages != new.passages  # the old index is left as it was
    reference = stored_vectors(new) @ unit("rivers army")
    found = new.dense_candidates(unit("rivers army"), depth=len(new.passages), where=None)
    everything = np.ones(len(new.passages), dtype=bool)
    assert_dense_top(new, found, reference, depth=len(new.passages), allowed=everything, atol=1e-5)


def test_cache_spares_re_embedding(tmp_path: Path, encoder: FakeEncoder) -> None:
    documents = make_documents(4)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = build(documents, encoder, cache=cache)
    second = build(documents, RefusingEncoder(), cache=cache)
    assert second.embed_stats.cached == len({p.text for p in first.passages})
    assert answers(second) == answers(first)


def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    documents = make_documents(2)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    build(documents, FakeEncoder("model-a"), cache=cache)
    other = FakeEncoder("model-b")
    build(documents, other, cache=cache)
    assert other.encoded  # vectors of model-a are never served for model-b


def test_updating_with_another_model_is_refused(encoder: FakeEncoder) -> None:
    index = build(make_documents(2), encoder)
    with pytest.raises(IndexMismatchError, match="fake-encoder"):
        index.check_model("other-model")
    other = FakeEncoder("other-model")
    with pytest.raises(IndexMismatchError, match="fake-encoder"):
        updated(index, make_documents(3), other)
    assert not other.calls


def test_load_missing_index(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="qa index"):
        LocalIndex.load(tmp_path)


def test_load_other_format_version(tmp_path: Path, encoder: FakeEncoder) -> None:
    build(make_documents(2), encoder).save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["format_version"] = 99
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        LocalIndex.load(tmp_path)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_index_says_what_is_wrong_and_names_the_fix(tmp_path: Path, encoder: FakeEncoder, damage: str) -> None:
    build(make_documents(4), encoder).save(tmp_path)
    damage_index(tmp_path, damage)
    with pytest.raises(IndexCorruptError, match="qa index --rebuild") as caught:
        LocalIndex.load(tmp_path)
    assert "is damaged" in caught.value.problem and DAMAGES[damage] in caught.value.problem
    assert "--rebuild" not in caught.value.problem and "--rebuild" in caught.value.fix


def test_checksums_are_left_to_parsing_above_the_limit(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(make_documents(4), encoder).save(tmp_path)
    damage_index(tmp_path, "vectors changed in place")
    monkeypatch.setattr("qa.index.manifest.CHECKSUM_LIMIT", 100)  # the files now count as large: sizes only
    assert len(LocalIndex.load(tmp_path).passages) > 0
    damage_index(tmp_path, "truncated vectors")
    with pytest.raises(IndexCorruptError, match="bytes; the manifest says"):
        LocalIndex.load(tmp_path)


def test_a_build_committed_while_loading_is_read_instead(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(make_documents(3), encoder).save(tmp_path)
    newer = build(make_documents(6, seed=4), encoder)
    real_check = qa.index.local.check_files

    def check_after_another_save(index_dir: Path, manifest: Manifest) -> None:
        monkeypatch.setattr("qa.index.local.check_files", real_check)  # only the first read races
        newer.save(tmp_path)  # commits a new generation and removes the one this load was about to read
        real_check(index_dir, manifest)

    monkeypatch.setattr("qa.index.local.check_files", check_after_another_save)
    assert LocalIndex.load(tmp_path).passages == newer.passages


def test_a_full_disk_leaves_the_previous_index_and_says_so(
    tmp_path: Path, encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = build(make_documents(3), encoder)
    old.save(tmp_path)
    before = snapshot(tmp_path)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_for_sqlite(*_: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    journal = recorded(tmp_path)
    for fill, said in ((full, "No space left"), (full_for_sqlite, "database or disk is full")):
        monkeypatch.setattr("qa.index.documents._fill", fill)  # the first file a save writes
        with pytest.raises(QAError, match=rf"could not write the index .*{said}.*previous index is unchanged"):
            build(make_documents(5, seed=2), encoder).save(tmp_path)
        assert snapshot(tmp_path) == before
        assert recorded(tmp_path) == journal


@pytest.mark.parametrize("wrong", WRONG_MANIFESTS)
def test_a_manifest_with_fields_of_the_wrong_type_is_damage_naming_the_field(
    tmp_path: Path, encoder: FakeEncoder, wrong: str
) -> None:
    build(make_documents(4), encoder).save(tmp_path)
    edit, named = WRONG_MANIFESTS[wrong]
    rewrite_manifest(tmp_path, edit)
    with pytest.raises(IndexCorruptError, match="qa index --rebuild") as caught:
        LocalIndex.load(tmp_path)
    assert "manifest.json" in caught.value.problem and named in caught.value.problem


def test_a_cache_that_cannot_be_opened_is_one_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    path.mkdir()  # SQLite cannot open it; it is not damage to replace
    (path / "keep.txt").write_text("kept")
    with pytest.raises(QAError, match=r"cannot use the embedding cache .*cache\.sqlite"):
        EmbeddingCache(path)
    assert (path / "keep.txt").read_text() == "kept"


def test_a_cache_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "cache.sqlite"
    EmbeddingCache(path).close()
    cache = EmbeddingCache(path)
    cache._db.close()
    cache._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # as in a read-only folder or file
    with pytest.raises(QAError, match=r"cannot use the embedding cache .*readonly.*index is unchanged: give --index"):
        cache.put_many("fake-encoder", [("h", np.ones(4, dtype=np.float32))])
    with pytest.raises(QAError, match="cannot use the embedding cache"):
        cache.clear("fake-encoder")


def test_a_damaged_embedding_cache_is_replaced_with_a_warning(tmp_path: Path, encoder: FakeEncoder) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.warns(UserWarning, match="embedding cache .* is damaged"):
        cache = EmbeddingCache(path)
    documents = make_documents(2)
    build(documents, encoder, cache=cache)
    assert build(documents, RefusingEncoder(), cache=cache).embed_stats.cached > 0


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
    loaded = LocalIndex.load(tmp_path)
    assert answers(loaded) == answers(index)
    bm25_dir = tmp_path / loaded.manifest.files["bm25"]
    for mmap in (False, True):  # large indexes memory-map the BM25 arrays
        assert np.array_equal(LexicalIndex.load(bm25_dir, mmap=mmap).scores("river"), loaded._lexical.scores("river"))


# ---------------------------------------------------------------- vectors: exact and HNSW


def test_large_indexes_use_hnsw_with_high_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    rng = np.random.default_rng(7)
    centres = rng.normal(size=(40, 32))
    vectors = normalize((centres[rng.integers(0, 40, 3000)] + rng.normal(0, 0.3, (3000, 32))).astype(np.float32))
    monkeypatch.setattr("qa.index.vectors.EXACT_SEARCH_LIMIT", 1000)
    index = build_vector_index(vectors)
    assert isinstance(index, faiss.IndexHNSW)
    queries = normalize((centres[:20] + rng.normal(0, 0.3, (20, 32))).astype(np.float32))
    _, found = index.search(queries, 10)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95
    assert isinstance(build_vector_index(vectors[:500]), faiss.IndexFlatIP)


def dense_ids(index: LocalIndex, query: str) -> tuple[str, ...]:
    return index.dense_candidates(unit(query), depth=len(index.passages), where=None).ids


@pytest.fixture
def graph_sized(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every index past 20 passages an HNSW graph, as a million-passage one is."""
    monkeypatch.setattr("qa.index.vectors.EXACT_SEARCH_LIMIT", 20)


@pytest.mark.usefixtures("graph_sized")
def test_a_large_index_grows_its_graph_and_skips_removed_passages(encoder: FakeEncoder) -> None:
    import faiss

    documents = make_documents(60)
    old = build(documents[:50], encoder)
    old_total, old_ids = old._vectors.total, dense_ids(old, "river army")
    removed = {p.passage_id for p in passages_of(documents[:3])}
    added = passages_of(documents[50:])
    encoder.calls.clear()
    new = updated(old, documents[3:], encoder)

    assert isinstance(new._vectors._index, faiss.IndexHNSW)
    assert new._vectors.total == old_total + len(added)  # appended to, not rebuilt
    sentences = new.sentences_of([p.passage_id for p in added])
    sentence_texts = {text for p, found in zip(added, sentences, strict=True) for text in found.texts(p.text)}
    assert sorted(encoder.encoded) == sorted({p.text for p in added} | sentence_texts)  # each once
    for query in ("river army", "defector family", "prison court letter phone"):
        found = dense_ids(new, query)
        assert not removed & set(found)
        assert len(found) == len(set(found))
    for passage in added:
        assert new.dense_candidates(unit(passage.text), depth=1, where=None).ids == (passage.passage_id,)
    assert dense_ids(old, "river army") == old_ids  # the old index still answers as before


@pytest.mark.usefixtures("graph_sized")
@pytest.mark.parametrize("file", ["kept", "gone"])
def test_a_loaded_graph_whose_vectors_stay_in_the_file_grows_in_place(
    tmp_path: Path, encoder: FakeEncoder, file: str
) -> None:
    import faiss

    documents = make_documents(60)
    build(documents[:50], encoder).save(tmp_path)
    loaded = LocalIndex.load(tmp_path)  # memory-mapped: FAISS cannot grow it, only a copy
    if file == "gone":  # the copy is made from the mapped pages instead of the file
        (tmp_path / loaded.manifest.files["vectors"]).unlink()
    new = updated(loaded, documents[3:], encoder)
    assert isinstance(new._vectors._index, faiss.IndexHNSW) and new._vectors.total > len(new.passages)
    for passage in passages_of(documents[50:]):
        assert new.dense_candidates(unit(passage.text), depth=1, where=None).ids == (passage.passage_id,)
    new.save(tmp_path)
    assert LocalIndex.load(tmp_path).passages == new.passages


@pytest.mark.usefixtures("graph_sized")
def test_asking_for_a_removed_passage_finds_the_best_remaining_ones(encoder: FakeEncoder) -> None:
    documents = make_documents(60)
    index = updated(build(documents, encoder), documents[3:], encoder)
    matrix = stored_vectors(index)
    everything = np.ones(len(index.passages), dtype=bool)
    for passage in passages_of(documents[:3]):  # removed passages must not take candidates' places
        found = index.dense_candidates(unit(passage.text), depth=3, where=None)
        assert_dense_top(index, found, matrix @ unit(passage.text), depth=3, allowed=everything, atol=0.02)


@pytest.mark.usefixtures("graph_sized")
def test_graph_scores_follow_the_brute_force_ranking_after_updates(encoder: FakeEncoder) -> None:
    documents = make_documents(60)
    index = updated(build(documents[:50], encoder), documents[3:], encoder)
    query = "defector family money"
    found = index.dense_candidates(unit(query), depth=10, where=None)
    exact = stored_vectors(index) @ unit(query)
    rows = rows_of(index, found.ids)
    # float16 codes: scores within rounding of the exact ones
    np.testing.assert_allclose(found.scores, exact[rows], atol=0.02)
    np.testing.assert_allclose(index.dense_scores(unit(query), found.ids), exact[rows], atol=0.02)
    assert len(set(np.argsort(-exact)[:10].tolist()) & set(rows)) >= 8


@pytest.mark.usefixtures("graph_sized")
def test_a_filter_on_a_graph_with_removed_passages_keeps_only_allowed_live_ones(encoder: FakeEncoder) -> None:
    documents = with_outlets_and_dates(make_documents(60))
    index = updated(build(documents[:50], encoder), documents[3:], encoder)
    assert index._vectors.total > len(index.passages)  # tombstones present
    where = SearchFilter(outlets=frozenset({"Gazette"}), date_from="2020-01-04")
    allowed = allowed_rows(index, where)
    exact = stored_vectors(index) @ unit("river army")
    for depth in (3, 10, int(allowed.sum())):
        found = index.dense_candidates(unit("river army"), depth=depth, where=where)
        rows = rows_of(index, found.ids)
        assert len(rows) == len(set(rows)) == depth and all(allowed[row] for row in rows)
        np.testing.assert_allclose(found.scores, exact[rows], atol=0.02)


@pytest.mark.usefixtures("graph_sized")
def test_too_many_removals_rebuild_the_graph_without_tombstones(encoder: FakeEncoder) -> None:
    documents = make_documents(60)
    index = updated(build(documents, encoder), documents[25:], encoder)
    assert index._vectors.total == len(index.passages)
    np.testing.assert_array_equal(index._vectors.slots, np.arange(len(index.passages)))


@pytest.mark.usefixtures("graph_sized")
def test_mapped_vector_ids_survive_save_and_load(tmp_path: Path, encoder: FakeEncoder) -> None:
    documents = make_documents(60)
    index = updated(build(documents[:50], encoder), documents[3:], encoder)
    assert index._vectors.total > len(index.passages)  # tombstones present
    index.save(tmp_path)
    loaded = LocalIndex.load(tmp_path)
    for query in ("river army", "defector family"):
        assert dense_ids(loaded, query) == dense_ids(index, query)


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
        LocalIndex.load(tmp_path)


def test_vector_ids_are_valid_exactly_when_they_are_distinct_existing_ids() -> None:
    rng = np.random.default_rng(0)
    cases = [np.array([], dtype=np.int64), np.array([0.0, 1.0]), np.array([[0, 1]]), np.array([-1, 0])]
    for _ in range(300):
        total = int(rng.integers(1, 30))
        cases.append(rng.integers(-2, total + 2, size=int(rng.integers(0, total + 3))).astype(np.int64))
        cases.append(rng.permutation(total)[: int(rng.integers(0, total + 1))].astype(np.int32))
    for slots in cases:
        total = max(len(slots), 5)
        in_range = slots.dtype.kind == "i" and slots.min() >= 0 and slots.max() < total if len(slots) else True
        expected = slots.ndim == 1 and in_range and len(np.unique(slots)) == len(slots)
        assert valid_slots(slots, total) == expected, (slots, total)


def test_each_searching_thread_uses_one_openmp_thread(encoder: FakeEncoder) -> None:
    import faiss

    index = build(make_documents(10), encoder)
    seen: list[int] = []

    def search_then_look() -> None:
        index.dense_candidates(unit("river army"), depth=3, where=None)
        seen.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=search_then_look)  # as the app's worker threads search
    worker.start()
    worker.join()
    assert seen == [1]


@pytest.mark.usefixtures("graph_sized")
def test_building_a_graph_leaves_the_thread_count_as_it_was() -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    build_vector_index(normalize(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)))
    assert faiss.omp_get_max_threads() == 1


@pytest.mark.parametrize("title_in_dense", [False, True])
def test_an_update_that_only_retitles_a_document_redoes_what_reads_the_title(
    encoder: FakeEncoder, title_in_dense: bool
) -> None:
    settings = IndexSettings(max_tokens=128, min_words=1, title_in_dense=title_in_dense, title_in_bm25=True)
    documents = [dataclasses.replace(d, title=f"Headline {n}") for n, d in enumerate(make_documents(4))]
    index = LocalIndex.empty(encoder.name, settings).update(
        documents, passages_of(documents), encoder=encoder, settings=settings
    )
    encoder.calls.clear()
    documents[2] = dataclasses.replace(documents[2], title="Zebra crossing")  # a sidecar's new title
    passages = passages_of(documents)
    new = index.update(documents, passages, encoder=encoder, settings=settings)
    retitled = {embedding_text(p, settings) for p in passages if p.doc_id == documents[2].doc_id}
    assert set(encoder.encoded) == (retitled if title_in_dense else set())
    fresh = LocalIndex.empty(encoder.name, settings)
    fresh = fresh.update(documents, passages, encoder=FakeEncoder(), settings=settings)
    for text in ("zebra crossing", "headline army"):
        np.testing.assert_array_equal(new._lexical.scores(text), fresh._lexical.scores(text))
    np.testing.assert_allclose(held_vectors(new), held_vectors(fresh), atol=1e-6)


def held_vectors(index: LocalIndex) -> np.ndarray:
    """The vectors the index holds, row by row."""
    return np.asarray(index._vectors.vectors_of(np.arange(len(index.passages))))
