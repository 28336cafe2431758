"""Search filters as people write them, checked against the index they are meant for.

A document is named by its id (the file's path in the corpus, extension
included), by that id without the extension, by its file name, or by the title
the app shows; an outlet however it is capitalised, with or without a leading
"The". A name the index does not hold, a day that does not exist or a range
that ends before it starts is one error that lists what the index does hold:
a filter that silently matched nothing would read as "the articles say
nothing about it". A valid filter that leaves no passage to search gets
``nothing_matches``'s reply instead of an abstention.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath

from qa.errors import QAError
from qa.index.store import PassageStore, SearchFilter, is_iso_day
from qa.records import DocumentMetadata

NO_ARTICLE_MATCHES = "No article matches these filters"
# An error lists this many documents or outlets, the closest to what was typed first.
LISTED = 10
TITLE_CHARS = 60
_QUOTES = str.maketrans("‘’‚‛“”„‟", "''''\"\"\"\"")


def resolve_filter(
    store: PassageStore,
    *,
    documents: Iterable[str] = (),
    outlets: Iterable[str] = (),
    date_from: str = "",
    date_to: str = "",
) -> SearchFilter:
    """The filter a person means, in the index's own document ids and outlet names.

    Args:
        store: The index the filter is for.
        documents: Each an id, an id without its extension, a file name or a
            title (any case); one that names several documents keeps them all.
        outlets: Outlet names; case, spacing and a leading "The" do not matter.
        date_from: ``YYYY-MM-DD`` or empty.
        date_to: ``YYYY-MM-DD`` or empty.

    Raises:
        QAError: A document or outlet the index does not hold (the message
            lists those it holds), a day that does not exist, or a range that
            ends before it starts (the message gives the articles' dates).
    """
    try:
        dates = SearchFilter.of(date_from=date_from, date_to=date_to)
    except QAError as error:
        raise QAError(error.problem, fix=date_summary(store.documents)) from error
    held = store.documents
    doc_ids, unknown_documents = _resolve(documents, _document_names(held), _key)
    outlet_names, unknown_outlets = _resolve(outlets, _outlet_names(held), _outlet_key)
    if unknown_documents or unknown_outlets:
        raise _unknown(held, unknown_documents, unknown_outlets)
    return SearchFilter(frozenset(doc_ids), frozenset(outlet_names), dates.date_from, dates.date_to)


def check_filter(store: PassageStore, where: SearchFilter | None) -> None:
    """Refuse a filter that names what ``store`` does not hold, or dates no day can meet.

    For filters made in code or by a front end (``SearchFilter(...)``): they
    hold exact document ids and outlet names. What a person typed goes through
    ``resolve_filter``, which also accepts titles and file names.

    Raises:
        QAError: As ``resolve_filter`` does, listing what the index holds.
    """
    if where is None or where.is_empty:
        return
    held = store.documents
    bad_days = [day for day in (where.date_from, where.date_to) if day and not is_iso_day(day)]
    if bad_days or (where.date_from and where.date_to and where.date_from > where.date_to):
        # SearchFilter.of says what is wrong with the dates, in the words it uses for typed ones.
        try:
            SearchFilter.of(date_from=where.date_from, date_to=where.date_to)
        except QAError as error:
            raise QAError(error.problem, fix=date_summary(held)) from error
    unknown_documents = sorted(where.doc_ids - {document.doc_id for document in held})
    unknown_outlets = sorted(where.outlets - {document.outlet for document in held if document.outlet})
    if unknown_documents or unknown_outlets:
        raise _unknown(held, unknown_documents, unknown_outlets)


def nothing_matches(store: PassageStore, where: SearchFilter | None) -> str:
    """The reply when ``where`` leaves no passage of ``store`` to search; ``""`` when it leaves some.

    The reply names the filters, and when a date bound is set it says that
    articles without a date are outside any date range, and how many have none.
    """
    # Asked of the documents, whose metadata every passage carries: a million passages are
    # some 100,000 documents, already in memory.
    if where is None or where.is_empty or any(where.allows(document) for document in store.documents):
        return ""
    reply = f"{NO_ARTICLE_MATCHES} ({describe_filter(store.documents, where)})."
    if where.date_from or where.date_to:
        reply += f" Articles without a date are outside any date range; {date_summary(store.documents)}."
    return reply


def describe_filter(documents: Sequence[DocumentMetadata], where: SearchFilter) -> str:
    """``articles: T1, T2; outlets: RFA; dates: from 2020-01-01 to 2020-12-31``, for a reply or a chip."""
    titles = {document.doc_id: _shown_document(document, with_id=False) for document in documents}
    parts = []
    if where.doc_ids:
        parts.append("articles: " + ", ".join(sorted(titles.get(doc_id, doc_id) for doc_id in where.doc_ids)))
    if where.outlets:
        parts.append("outlets: " + ", ".join(sorted(where.outlets)))
    if where.date_from or where.date_to:
        span = " ".join(part for part in (_bound("from", where.date_from), _bound("to", where.date_to)) if part)
        parts.append(f"dates: {span}")
    return "; ".join(parts)


def date_summary(documents: Sequence[DocumentMetadata]) -> str:
    """What dates the articles have: ``the articles are dated 2020-08-02 to 2021-03-01; 4 of the 5 have no date``."""
    days = sorted(document.date[:10] for document in documents if document.date)
    if not documents:
        return "the index holds no articles"
    if not days:
        return f"none of the {len(documents)} articles has a date"
    span = days[0] if days[0] == days[-1] else f"{days[0]} to {days[-1]}"
    dated = "the only dated article is from" if len(days) == 1 else "the articles are dated"
    undated = len(documents) - len(days)
    return f"{dated} {span}" + (f"; {undated} of the {len(documents)} have no date" if undated else "")


def _bound(word: str, day: str) -> str:
    return f"{word} {day}" if day else ""


def _key(text: str) -> str:
    """What is compared: case, curly quotes and runs of spaces do not tell two names apart."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return " ".join(text.split())


def _outlet_key(text: str) -> str:
    """An outlet's key: "The Korea Times", "the korea times" and "Korea Times" are one outlet."""
    return re.sub(r"^the\s+", "", _key(text))


def _document_names(documents: Sequence[DocumentMetadata]) -> list[tuple[str, list[tuple[int, str]]]]:
    """Each document's id and the names it answers to by tier; a name of a lower tier wins over a higher one.

    Tier 0 is the id as it is; the others are compared as ``_key``s: the id, the
    id without its extension, the title, then the file name with or without it.
    """
    named = []
    for document in documents:
        path = PurePosixPath(document.doc_id)
        keys = [(0, document.doc_id), (1, _key(document.doc_id)), (2, _key(str(path.with_suffix(""))))]
        keys += [(3, _key(document.title))] if document.title else []
        keys += [(4, _key(path.name)), (4, _key(path.stem))]
        named.append((document.doc_id, keys))
    return named


def _outlet_names(documents: Sequence[DocumentMetadata]) -> list[tuple[str, list[tuple[int, str]]]]:
    outlets = sorted({document.outlet for document in documents if document.outlet})
    return [(outlet, [(0, outlet), (1, _outlet_key(outlet))]) for outlet in outlets]


def _resolve(
    typed: Iterable[str], named: list[tuple[str, list[tuple[int, str]]]], normal: Callable[[str], str]
) -> tuple[set[str], list[str]]:
    """What each typed name means (ids, or outlets as the index spells them), and the names that mean nothing.

    A name is looked up tier by tier (``_document_names``): as typed in tier 0,
    as ``normal(name)`` in the others; every value of the first tier holding it is kept.
    """
    tiers: dict[int, dict[str, set[str]]] = {}
    for value, keys in named:
        for tier, key in keys:
            tiers.setdefault(tier, {}).setdefault(key, set()).add(value)
    found: set[str] = set()
    unknown: list[str] = []
    for name in typed:
        wanted = {0: name.strip()}
        matches = [
            tiers[tier][key] for tier in sorted(tiers) if (key := wanted.get(tier) or normal(name)) in tiers[tier]
        ]
        if matches:
            found |= matches[0]
        else:
            unknown.append(name)
    return found, unknown


def _unknown(
    documents: Sequence[DocumentMetadata], unknown_documents: list[str], unknown_outlets: list[str]
) -> QAError:
    """One error for every unknown name, listing what the index holds of each kind named."""
    problems, held = [], []
    if unknown_documents:
        problems.append(_named("document", unknown_documents))
        shown = [(document.doc_id, _shown_document(document, with_id=True)) for document in documents]
        listing = _listing(shown, unknown_documents)
        held.append(f"its {len(documents)} documents are {listing}" if documents else "it holds no documents")
    if unknown_outlets:
        problems.append(_named("outlet", unknown_outlets))
        names = sorted({document.outlet for document in documents if document.outlet})
        listing = _listing([(name, name) for name in names], unknown_outlets)
        held.append(f"its outlets are {listing}" if names else "no article in it has an outlet")
    return QAError(" and ".join(problems) + " in the index", fix="; ".join(held))


def _named(kind: str, names: list[str]) -> str:
    return f"no {kind} " + " or ".join(repr(name) for name in names)


def _listing(named: list[tuple[str, str]], typed: list[str]) -> str:
    """Up to ``LISTED`` of the ``(name, shown)`` pairs, those whose name is closest to what was typed first."""
    if len(named) <= LISTED:
        return ", ".join(shown for _, shown in named)
    by_key = {_key(name): shown for name, shown in named}
    close = [
        by_key[key]
        for wanted in typed
        for key in difflib.get_close_matches(_key(wanted), list(by_key), n=3, cutoff=0.4)
    ]
    first = list(dict.fromkeys([*close, *(shown for _, shown in named)]))[:LISTED]
    return f"{', '.join(first)} and {len(named) - len(first):,} more"


def _shown_document(document: DocumentMetadata, *, with_id: bool) -> str:
    """A document as a list shows it: its id, and its title when it has one (clipped)."""
    title = document.title if len(document.title) <= TITLE_CHARS else document.title[: TITLE_CHARS - 3] + "..."
    if not with_id:
        return title or document.doc_id
    return f"{document.doc_id} ({title!r})" if title else document.doc_id
