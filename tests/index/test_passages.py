"""The passage table: what goes in comes out, by row and by id, and filters agree with ``SearchFilter.allows``."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from qa.index.passages import PassageTable
from qa.index.store import SearchFilter
from qa.records import Passage

DATES = ["", "2020-01-05", "2020-03-01T09:30:00Z", "2021-07-19", "2020-03-01"]
OUTLETS = ["", "NK News", "Daily NK", "NK News"]


def made_up_passages(count: int) -> list[Passage]:
    """Passages of ``count // 3 + 1`` documents with assorted outlets and dates (some without), texts in any script."""
    passages = []
    for row in range(count):
        document = row // 3
        passages.append(
            Passage(
                passage_id=f"doc{document}.txt#p{row % 3 + 1}-{row}",
                doc_id=f"doc{document}.txt",
                source=f"doc{document}.txt",
                paragraph=row % 3 + 1,
                start=row * 10,
                end=row * 10 + 9,
                text=f"passage {row} — 탈북민 «quoted» 'text'",
                title=f"Title {document}",
                outlet=OUTLETS[document % len(OUTLETS)],
                author="",
                date=DATES[document % len(DATES)],
                url=f"https://example.com/{document}",
            )
        )
    return passages


@pytest.fixture(params=["ids in memory", "ids looked up"])
def ids_kept(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Either way of turning rows into ids: a small table's ids all in memory, or looked up in SQLite."""
    monkeypatch.setattr("qa.index.passages._IDS_IN_MEMORY_UP_TO", 10**9 if request.param == "ids in memory" else 0)
    return str(request.param)


def test_a_saved_table_gives_back_every_passage_by_row_and_by_id(tmp_path: Path, ids_kept: str) -> None:
    passages = made_up_passages(40)
    PassageTable.build(passages).save(tmp_path / "passages.sqlite")
    table = PassageTable.open(tmp_path / "passages.sqlite")
    assert len(table) == 40
    assert list(table) == passages and table == passages
    assert table[0] == passages[0] and table[-1] == passages[-1] and table[5:9] == passages[5:9]
    assert table[::7] == passages[::7]
    ids = [passages[i].passage_id for i in (17, 3, 3, 39)]
    assert table.by_ids(ids) == [passages[i] for i in (17, 3, 3, 39)]
    assert table.rows_of(ids).tolist() == [17, 3, 3, 39]
    assert table.ids_at([39, 0, 17]) == [passages[i].passage_id for i in (39, 0, 17)]
    # Ids just given as rows are fetched by row; with one never given, by id: the same passages.
    for rows in ((17, 39, 0, 17), (17, 5, 39)):
        assert table.by_ids([passages[i].passage_id for i in rows]) == [passages[i] for i in rows]
    counts = table.counts_by_document()
    assert counts == {f"doc{d}.txt": 3 for d in range(13)} | {"doc13.txt": 1}
    counts["doc0.txt"] = 99  # the caller's own copy: the next answer is the table's
    assert table.counts_by_document() == {f"doc{d}.txt": 3 for d in range(13)} | {"doc13.txt": 1}
    with pytest.raises(KeyError):
        table.by_ids(["no such id"])
    for row in (40, -1):
        with pytest.raises(KeyError):
            table.ids_at([3, row])
    with pytest.raises(IndexError):
        table[40]


def test_more_ids_than_sqlite_takes_in_one_statement_are_asked_in_chunks() -> None:
    passages = made_up_passages(2500)
    table = PassageTable.build(passages)
    ids = [p.passage_id for p in reversed(passages)]
    assert table.by_ids(ids) == passages[::-1]
    assert table.rows_of(ids).tolist() == list(range(2499, -1, -1))


@pytest.mark.parametrize(
    "where",
    [
        SearchFilter.of(doc_ids=["doc1.txt", "doc4.txt"]),
        SearchFilter.of(outlets=["NK News"]),
        SearchFilter.of(date_from="2020-03-01"),
        SearchFilter.of(date_to="2020-03-01"),
        SearchFilter.of(date_from="2020-01-06", date_to="2021-01-01", outlets=["NK News", "Daily NK"]),
        SearchFilter.of(doc_ids=["doc2.txt"], date_from="2030-01-01"),
        SearchFilter.of(doc_ids=["doc'); DROP TABLE passages; --"]),  # values are parameters, never SQL
    ],
)
def test_filters_allow_exactly_the_passages_search_filter_allows(where: SearchFilter) -> None:
    passages = made_up_passages(60)
    table = PassageTable.build(passages)
    expected = np.array([where.allows(p) for p in passages])
    assert table.allowed_rows(where).tolist() == expected.tolist()
    assert len(table) == 60


def test_an_empty_table_answers_nothing(tmp_path: Path) -> None:
    for table in (PassageTable.empty(), PassageTable.build([])):
        assert len(table) == 0 and list(table) == [] and table.counts_by_document() == {}
        assert not table.allowed_rows(SearchFilter.of(outlets=["x"])).any()
    PassageTable.empty().save(tmp_path / "empty.sqlite")
    assert len(PassageTable.open(tmp_path / "empty.sqlite")) == 0


def test_a_file_of_another_kind_or_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "text.sqlite").write_text("not a database at all, but long enough to be read as one" * 20)
    with pytest.raises(sqlite3.DatabaseError):
        PassageTable.open(tmp_path / "text.sqlite")
    PassageTable.build(made_up_passages(3)).save(tmp_path / "newer.sqlite")
    with sqlite3.connect(tmp_path / "newer.sqlite") as database:
        database.execute("UPDATE qa_format SET version = 99")
    database.close()
    with pytest.raises(ValueError, match="format 99"):
        PassageTable.open(tmp_path / "newer.sqlite")


def test_threads_share_one_table(tmp_path: Path) -> None:
    passages = made_up_passages(300)
    PassageTable.build(passages).save(tmp_path / "passages.sqlite")
    table = PassageTable.open(tmp_path / "passages.sqlite")
    failures: list[str] = []

    def ask(offset: int) -> None:
        for start in range(offset, 300, 7):
            ids = [p.passage_id for p in passages[start : start + 20]]
            if table.by_ids(ids) != passages[start : start + 20]:
                failures.append(f"rows from {start}")

    threads = [threading.Thread(target=ask, args=(offset,)) for offset in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_rows_looked_up_by_id_agree_with_the_table_before_and_after_its_memory_is_cleared(
    monkeypatch: pytest.MonkeyPatch, ids_kept: str
) -> None:
    import qa.index.passages as passages_module

    monkeypatch.setattr(passages_module, "_REMEMBERED_ROWS", 5)
    passages = made_up_passages(40)
    table = PassageTable.build(passages)
    truth = {passage.passage_id: row for row, passage in enumerate(passages)}
    for rows in ([3, 1, 2], list(range(10, 30)), [39, 0]):  # the second overflows the memory, which starts over
        ids = table.ids_at(rows)
        assert ids == [passages[row].passage_id for row in rows]
        some = [*ids[::-1], passages[5].passage_id]  # remembered and not
        assert table.rows_of(some).tolist() == [truth[passage_id] for passage_id in some]
    with pytest.raises(KeyError):
        table.rows_of(["no such id"])
