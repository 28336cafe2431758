"""A build a block at a time (vectors in a scratch file, FAISS fed in blocks) writes what one whole pass writes."""

from __future__ import annotations

import dataclasses
import errno
import io
from pathlib import Path

import numpy as np
import pytest

from conftest import FakeEncoder, make_documents
from qa.embed.encoder import normalize
from qa.errors import QAError
from qa.index.build import index_documents
from qa.index.embeddings import CACHE_NAME, EmbeddingCache, embed_texts, embed_to_scratch
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings, read_manifest
from qa.index.scratch import ScratchRows, ScratchRowsByKey
from qa.index.vectors import build_vector_index
from qa.ingest.split import split_passages
from qa.records import Document, Passage

SETTINGS = IndexSettings(max_tokens=128, min_words=1)
# Every size that splits a build into blocks, and the module that holds it.
BLOCK_SIZES = {
    "qa.index.vectors.ADD_BLOCK": 7,
    "qa.index.embeddings.UNIT_BLOCK": 5,
    "qa.index.lexical.CHUNK_ROWS": 6,
    "qa.index.sentences.ROW_CHUNK": 4,
    "qa.index.sentences.EMBED_CHUNK": 9,
}


def test_scratch_rows_read_back_the_rows_written_in_any_order() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 6)).astype(np.float32)
    with ScratchRows(60, 6) as rows:
        order = rng.permutation(50)
        for part in np.array_split(order, 7):  # scattered rows, some runs of neighbours
            rows.write(part, reference[part])
        assert rows.shape == (60, 6) and len(rows) == 60
        np.testing.assert_array_equal(rows[0:50], reference)
        np.testing.assert_array_equal(rows[13:29], reference[13:29])
        np.testing.assert_array_equal(rows[50:], np.zeros((10, 6), dtype=np.float32))  # never written
        by_key = ScratchRowsByKey(rows, ["a", "b", "a"])
        assert sorted(by_key) == ["a", "b"] and "c" not in by_key
        np.testing.assert_array_equal(by_key["a"], reference[2])  # a repeated key: its last row


TEXTS = ["river bridge", "army letter", "river bridge", "money", "court prison", "army letter", "phone", "school"]


def primed_cache(path: Path) -> EmbeddingCache:
    """An embedding cache holding the vectors of two of ``TEXTS``."""
    cache = EmbeddingCache(path)
    embed_texts(["money", "phone"], FakeEncoder(), known={}, cache=cache, progress=False)
    return cache


def test_embedding_to_scratch_gives_the_unit_rows_of_the_whole_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qa.index.embeddings.UNIT_BLOCK", 2)
    known = {"unused": np.ones(256, dtype=np.float32)}
    matrix = normalize(FakeEncoder().encode(TEXTS))  # the encoder's unit vectors, made unit again as one matrix
    reference = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    encoder = FakeEncoder()
    in_memory, stats = embed_texts(TEXTS, encoder, known=known, cache=primed_cache(tmp_path / "a"), progress=False)
    scratch, scratch_stats = embed_to_scratch(
        TEXTS, FakeEncoder(), known=known, cache=primed_cache(tmp_path / "b"), progress=False
    )
    with scratch:
        assert np.array_equal(in_memory, reference) and np.array_equal(scratch[0 : len(TEXTS)], reference)
    assert stats == scratch_stats and (stats.cached, stats.embedded) == (2, 4)
    assert sorted(encoder.encoded) == ["army letter", "court prison", "river bridge", "school"]  # each once
    with embed_to_scratch([], encoder, known={}, cache=None, progress=False)[0] as none:
        assert none.shape == (0, 0)


def documents_and_passages(documents: list[Document]) -> tuple[list[Document], list[Passage]]:
    passages = [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]
    return documents, passages


def saved_files(index: LocalIndex, folder: Path) -> dict[str, bytes]:
    """Every file the index saves, by its part's name (not the generation's), with its bytes."""
    index.save(folder)
    files = {}
    for part, name in read_manifest(folder).files.items():
        path = folder / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            files[f"{part}/{file.relative_to(path)}"] = file.read_bytes()
    return files


def build_and_update(folder: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The files of a first build and of an update that removes, changes and adds documents."""
    documents = [dataclasses.replace(d, title=f"Title {i % 3}") for i, d in enumerate(make_documents(40))]
    changed = [*documents[5:30], dataclasses.replace(documents[30], paragraphs=("A new paragraph.",)), *documents[31:]]
    encoder = FakeEncoder()
    settings = dataclasses.replace(SETTINGS, title_in_dense=True)
    first = LocalIndex.empty(encoder.name, settings).update(
        *documents_and_passages(documents), encoder=encoder, settings=settings
    )
    first_files = saved_files(first, folder / "first")
    update = first.update(*documents_and_passages(changed), encoder=encoder, settings=settings)
    return first_files, saved_files(update, folder / "update")


def test_a_build_in_small_blocks_saves_the_files_of_a_build_in_one_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as whole:
        for name in BLOCK_SIZES:
            whole.setattr(name, 10**9)
        reference = build_and_update(tmp_path / "whole")
    for name, size in BLOCK_SIZES.items():
        monkeypatch.setattr(name, size)
    in_blocks = build_and_update(tmp_path / "blocks")
    for whole_files, block_files in zip(reference, in_blocks, strict=True):
        assert whole_files.keys() == block_files.keys()
        for part, content in whole_files.items():
            if part != "manifest":
                assert block_files[part] == content, part


def test_a_graph_fed_in_blocks_finds_what_exact_search_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    rng = np.random.default_rng(7)
    centres = rng.normal(size=(40, 32))
    vectors = normalize((centres[rng.integers(0, 40, 3000)] + rng.normal(0, 0.3, (3000, 32))).astype(np.float32))
    monkeypatch.setattr("qa.index.vectors.EXACT_SEARCH_LIMIT", 1000)
    monkeypatch.setattr("qa.index.vectors.ADD_BLOCK", 256)
    with ScratchRows(len(vectors), 32) as rows:
        rows.write(np.arange(len(vectors)), vectors)
        index = build_vector_index(rows)
    assert isinstance(index, faiss.IndexHNSW) and index.ntotal == len(vectors)
    queries = normalize((centres[:20] + rng.normal(0, 0.3, (20, 32))).astype(np.float32))
    _, found = index.search(queries, 10)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95


@pytest.mark.parametrize("removed", [3, 25], ids=["grown in place", "rebuilt"])
def test_a_graph_updated_in_blocks_holds_every_passage_vector(monkeypatch: pytest.MonkeyPatch, removed: int) -> None:
    monkeypatch.setattr("qa.index.vectors.EXACT_SEARCH_LIMIT", 20)
    monkeypatch.setattr("qa.index.vectors.ADD_BLOCK", 4)
    encoder = FakeEncoder()
    documents = make_documents(60)
    first = LocalIndex.empty(encoder.name, SETTINGS).update(
        *documents_and_passages(documents[:50]), encoder=encoder, settings=SETTINGS
    )
    index = first.update(*documents_and_passages(documents[removed:]), encoder=encoder, settings=SETTINGS)
    grown = index._vectors.total > first._vectors.total
    assert grown == (removed == 3)
    expected = normalize(FakeEncoder().encode([p.text for p in index.passages]))
    stored = index._vectors.vectors_of(np.arange(len(index.passages)))
    np.testing.assert_allclose(stored, expected, atol=1e-3)  # float16 codes of the right vectors, row by row


@pytest.mark.parametrize("part", ["passage vectors", "sentence codes"])
def test_a_full_temporary_folder_stops_the_build_with_one_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part: str
) -> None:
    import tempfile

    encoder = FakeEncoder()
    documents = make_documents(12)
    index_documents(
        *documents_and_passages(documents[:6]), tmp_path, fingerprint="six", encoder=encoder, settings=SETTINGS
    )
    saved = index_files(tmp_path)

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if part == "passage vectors":
        monkeypatch.setattr("qa.index.scratch._write_all", full)  # not os.pwrite: the lock writes with it too
    else:
        monkeypatch.setattr("qa.index.sentences.scratch_file", FullFile)
    with pytest.raises(QAError) as raised:
        index_documents(
            *documents_and_passages(documents), tmp_path, fingerprint="twelve", encoder=encoder, settings=SETTINGS
        )
    assert f"temporary files in {tempfile.gettempdir()} (No space left on device)" in str(raised.value)
    assert "TMPDIR" in str(raised.value)
    assert index_files(tmp_path) == saved


def index_files(folder: Path) -> dict[str, bytes]:
    """The index's files and their bytes (not the embedding cache, which keeps what a stopped build embedded)."""
    return {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file() and path.name != CACHE_NAME}


class FullFile(io.BytesIO):
    """A temporary file on a full disk: nothing can be written to it."""

    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")
