"""Filters as people write them: names resolved against the index, unknown ones listed, empty results explained."""

from __future__ import annotations

import pytest

from conftest import FakeEncoder
from qa.errors import QAError
from qa.index.local import LocalIndex
from qa.index.manifest import IndexSettings
from qa.index.store import SearchFilter
from qa.ingest.split import split_passages
from qa.records import Document
from qa.search.filters import (
    LISTED,
    NO_ARTICLE_MATCHES,
    check_filter,
    date_summary,
    nothing_matches,
    resolve_filter,
)

SETTINGS = IndexSettings(max_tokens=128, min_words=1)
KOREA_TIMES = "koreatimes-why-do-nk-defectors-flee.txt"
DAILY_NK = "dailynk/kim-yo-jong-orders-encouragement.txt"
RFA = "rfa-kim-jong-un-orders-state-organs.txt"
RFA_TITLE = "North Korea’s Kim Jong Un Orders State Organs to Repatriate Defectors"


def document(doc_id: str, *, title: str = "", outlet: str = "", date: str = "") -> Document:
    text = f"Defectors and their families near the border, as told in {doc_id}."
    return Document(doc_id=doc_id, source=doc_id, paragraphs=(text,), title=title, outlet=outlet, date=date)


DOCUMENTS = [
    document(
        KOREA_TIMES, title="Why do NK defectors flee to destitute North?", outlet="The Korea Times", date="2020-08-02"
    ),
    document(DAILY_NK, outlet="Daily NK"),
    document(RFA, title=RFA_TITLE, outlet="RFA", date="2021-03-01T09:30:00+09:00"),
    document("story.txt"),
    document("story.md", title="Notes on the border"),
]


def build(documents: list[Document], encoder: FakeEncoder) -> LocalIndex:
    passages = [p for d in documents for p in split_passages(d, max_tokens=128, min_words=1)]
    return LocalIndex.empty(encoder.name, SETTINGS).update(documents, passages, encoder=encoder, settings=SETTINGS)


@pytest.fixture
def store(encoder: FakeEncoder) -> LocalIndex:
    return build(DOCUMENTS, encoder)


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (KOREA_TIMES, {KOREA_TIMES}),  # the id, as qa passages and --json show it
        (KOREA_TIMES.upper(), {KOREA_TIMES}),
        ("koreatimes-why-do-nk-defectors-flee", {KOREA_TIMES}),  # without the extension
        ("kim-yo-jong-orders-encouragement.txt", {DAILY_NK}),  # the file name of a file in a folder
        ("dailynk/kim-yo-jong-orders-encouragement", {DAILY_NK}),
        ("why do nk defectors  flee to destitute north?", {KOREA_TIMES}),  # the title the app shows
        ("North Korea's Kim Jong Un Orders State Organs to Repatriate Defectors", {RFA}),  # a straight quote
        ("  notes on the border ", {"story.md"}),
        ("story", {"story.txt", "story.md"}),  # both files of that name
        ("story.md", {"story.md"}),
    ],
)
def test_a_document_is_found_by_id_file_name_or_title(store: LocalIndex, typed: str, meant: set[str]) -> None:
    assert resolve_filter(store, documents=[typed]).doc_ids == meant


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("The Korea Times", "The Korea Times"),
        ("korea times", "The Korea Times"),
        ("THE  KOREA TIMES", "The Korea Times"),
        ("rfa", "RFA"),
        ("daily nk", "Daily NK"),
    ],
)
def test_an_outlet_is_found_in_any_case_with_or_without_the(store: LocalIndex, typed: str, meant: str) -> None:
    where = resolve_filter(store, outlets=[typed])
    assert where.outlets == {meant}
    # The resolved filter is one the store applies as it is: the outlet's passages, no others.
    assert {p.doc_id for p in store.passages if where.allows(p)} == {d.doc_id for d in DOCUMENTS if d.outlet == meant}


def test_an_unknown_document_is_one_error_listing_every_document(store: LocalIndex) -> None:
    with pytest.raises(QAError) as caught:
        resolve_filter(store, documents=[KOREA_TIMES, "koreatimes"])
    message = str(caught.value)
    assert message.startswith("no document 'koreatimes' in the index: its 5 documents are ")
    for held in DOCUMENTS:
        assert held.doc_id in message
    assert f"{KOREA_TIMES} ('Why do NK defectors flee to destitute North?')" in message
    assert "\n" not in message and "outlets" not in message


def test_unknown_documents_and_outlets_are_one_error_naming_each_and_listing_both(store: LocalIndex) -> None:
    with pytest.raises(QAError) as caught:
        resolve_filter(store, documents=["nowhere.txt"], outlets=["Yonhap", "korea times"])
    message = str(caught.value)
    assert message.startswith("no document 'nowhere.txt' and no outlet 'Yonhap' in the index: ")
    assert message.endswith("; its outlets are Daily NK, RFA, The Korea Times")


def test_a_long_listing_names_the_closest_documents_first(encoder: FakeEncoder) -> None:
    documents = [document(f"article-{number:02d}.txt") for number in range(30)]
    with pytest.raises(QAError) as caught:
        resolve_filter(build(documents, encoder), documents=["artcle-27"])
    message = str(caught.value)
    assert "its 30 documents are article-27.txt, " in message
    assert message.endswith(f"and {30 - LISTED} more") and message.count("article-") == LISTED


@pytest.mark.parametrize(
    ("date_from", "date_to", "problem"),
    [
        ("2020-13-01", "", "dates look like 2020-08-02 (a real day), not '2020-13-01'"),
        ("", "2021-02-29", "not '2021-02-29'"),
        ("2021-01-01", "2020-01-01", "the date range ends before it starts: from 2021-01-01 to 2020-01-01"),
    ],
)
def test_an_impossible_day_or_a_backwards_range_is_an_error_giving_the_articles_dates(
    store: LocalIndex, date_from: str, date_to: str, problem: str
) -> None:
    with pytest.raises(QAError) as caught:
        resolve_filter(store, date_from=date_from, date_to=date_to)
    assert problem in caught.value.problem
    assert caught.value.fix == "the articles are dated 2020-08-02 to 2021-03-01; 3 of the 5 have no date"


def test_date_summary_covers_no_dates_one_date_and_no_articles() -> None:
    assert date_summary([]) == "the index holds no articles"
    assert date_summary([document("a.txt")]) == "none of the 1 articles has a date"
    one = [document("a.txt", date="2020-08-02"), document("b.txt")]
    assert date_summary(one) == "the only dated article is from 2020-08-02; 1 of the 2 have no date"


def test_check_filter_lets_a_filter_of_what_the_store_holds_pass(store: LocalIndex) -> None:
    check_filter(store, None)
    check_filter(store, SearchFilter(doc_ids=frozenset({RFA}), outlets=frozenset({"RFA"}), date_from="2021-01-01"))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (SearchFilter(doc_ids=frozenset({"rfa"})), "no document 'rfa' in the index: its 5 documents are"),
        (SearchFilter(outlets=frozenset({"rfa"})), "no outlet 'rfa' in the index: its outlets are"),  # not as spelt
        (SearchFilter(date_from="2021-01-02", date_to="2021-01-01"), "ends before it starts"),
        (SearchFilter(date_to="2020-02-30"), "not '2020-02-30'"),
    ],
)
def test_check_filter_refuses_what_the_store_does_not_hold(
    store: LocalIndex, where: SearchFilter, message: str
) -> None:
    with pytest.raises(QAError, match=message):
        check_filter(store, where)


def test_nothing_matches_says_so_and_that_undated_articles_are_outside_any_range(store: LocalIndex) -> None:
    where = resolve_filter(store, outlets=["RFA"], date_to="2020-12-31")
    assert not any(where.allows(p) for p in store.passages)  # the reference: no passage passes
    assert nothing_matches(store, where) == (
        f"{NO_ARTICLE_MATCHES} (outlets: RFA; dates: to 2020-12-31). Articles without a date are outside any "
        "date range; the articles are dated 2020-08-02 to 2021-03-01; 3 of the 5 have no date."
    )
    only_story = resolve_filter(store, documents=["story.md"], date_from="2020-01-01")
    assert nothing_matches(store, only_story).startswith(
        f"{NO_ARTICLE_MATCHES} (articles: Notes on the border; dates: from 2020-01-01). Articles without a date"
    )


def test_nothing_matches_is_empty_when_some_passage_passes(store: LocalIndex) -> None:
    for where in (
        None,
        SearchFilter(),
        resolve_filter(store, outlets=["rfa"], date_from="2021-03-01", date_to="2021-03-01"),  # a date-time's day
        resolve_filter(store, documents=["story"]),
    ):
        assert nothing_matches(store, where) == ""
    without_dates = resolve_filter(store, documents=["story.txt"], outlets=["Daily NK"])
    reply = nothing_matches(store, without_dates)
    assert reply == f"{NO_ARTICLE_MATCHES} (articles: story.txt; outlets: Daily NK)."  # no word about dates


def test_nothing_matches_exactly_when_no_passage_passes(store: LocalIndex) -> None:
    doc_ids = sorted({p.doc_id for p in store.passages})
    outlets = sorted({p.outlet for p in store.passages if p.outlet})
    days = ["", "2020-01-01", "2020-08-02", "2021-03-01", "2022-01-01"]
    for picked_docs in ((), doc_ids[:1], doc_ids[1:3]):
        for picked_outlets in ((), outlets[:1], outlets[1:]):
            for date_from in days:
                for date_to in days:
                    where = SearchFilter(frozenset(picked_docs), frozenset(picked_outlets), date_from, date_to)
                    passes = any(where.allows(p) for p in store.passages)  # the reference, passage by passage
                    assert (nothing_matches(store, where) == "") == (passes or where.is_empty), where


def test_ask_answers_a_filter_that_leaves_nothing_with_no_article_matches(
    store: LocalIndex, encoder: FakeEncoder
) -> None:
    from qa.search.ask import ask

    result = ask(store, "families at the border", encoder=encoder, where=resolve_filter(store, date_from="2030-01-01"))
    assert (result.hits, result.answerable) == ((), False)
    assert result.answer.startswith(NO_ARTICLE_MATCHES) and "Articles without a date are outside" in result.answer
    with pytest.raises(QAError, match="no outlet 'Yonhap' in the index"):
        ask(store, "families at the border", encoder=encoder, where=SearchFilter(outlets=frozenset({"Yonhap"})))
