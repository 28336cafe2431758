"""The document table: what goes in comes out, metadata at once and text when asked, and other files are refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qa.index.documents import DocumentTable
from qa.records import Document


def made_up_documents(count: int) -> list[Document]:
    """Documents with assorted metadata (some missing) and paragraphs in any script, quotes and breaks included."""
    return [
        Document(
            doc_id=f"doc{n}.txt",
            source=f"folder/doc{n}.txt",
            paragraphs=tuple(f'paragraph {p} of {n}: 탈북민 «quoted» "text"\nline' for p in range(n % 4 + 1)),
            title=f"Title {n}" if n % 3 else "",
            outlet=["", "NK News", "Daily NK"][n % 3],
            author="Kim" if n % 2 else "",
            date=f"2024-03-0{n % 9 + 1}" if n % 5 else "",
            url=f"https://example.com/{n}",
            checksum=f"{n:064x}",
            encoding="cp949" if n == 3 else "utf-8",
        )
        for n in range(count)
    ]


def test_a_saved_table_gives_back_every_document_and_holds_only_their_metadata(tmp_path: Path) -> None:
    documents = made_up_documents(2_345)  # more than one page of reading
    DocumentTable.of(documents).save(tmp_path / "documents.sqlite")
    table = DocumentTable.open(tmp_path / "documents.sqlite")
    assert table.metadata == [d.metadata for d in documents]
    assert [m.with_paragraphs(d.paragraphs) for m, d in zip(table.metadata, documents, strict=True)] == documents
    assert len(table) == len(documents) and list(table) == documents and table == documents
    assert table[0] == documents[0] and table[-1] == documents[-1] and table[5:9] == documents[5:9]
    assert table[::400] == documents[::400]
    assert table.by_id("doc1234.txt") == documents[1234] and table.by_id("folder/doc1.txt") is None
    with pytest.raises(IndexError):
        table[len(documents)]
    table.close()


def test_a_table_not_yet_saved_answers_alike(tmp_path: Path) -> None:
    documents = made_up_documents(7)
    table = DocumentTable.of(documents)
    assert table == documents and table.metadata == [d.metadata for d in documents]
    assert table.by_id("doc6.txt") == documents[6] and table[-2:] == documents[-2:]


def test_an_empty_table_saves_and_opens(tmp_path: Path) -> None:
    DocumentTable.of([]).save(tmp_path / "documents.sqlite")
    table = DocumentTable.open(tmp_path / "documents.sqlite")
    assert len(table) == 0 and list(table) == [] and table.metadata == [] and table.by_id("a") is None


def test_a_file_of_another_kind_or_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "documents.sqlite"
    DocumentTable.of(made_up_documents(3)).save(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE qa_format SET version = 99")
    with pytest.raises(ValueError, match="format 99"):
        DocumentTable.open(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE qa_format SET version = 1")
        connection.execute("DELETE FROM documents WHERE row = 1")
    with pytest.raises(ValueError, match="without gaps"):
        DocumentTable.open(path)
    (tmp_path / "other.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(sqlite3.Error):
        DocumentTable.open(tmp_path / "other.sqlite")
