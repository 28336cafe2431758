"""The package's own names: ``import qa`` gives the library's public names, each imported on first use."""

from __future__ import annotations

import pytest

import qa
from qa.embed.encoder import Encoder, SentenceTransformerEncoder
from qa.errors import QAError
from qa.index.build import index_corpus, open_index, settings_for
from qa.index.local import LocalIndex
from qa.index.prepare import IndexReport
from qa.index.store import PassageStore, SearchFilter
from qa.records import Document, Evidence, Hit, Passage, SearchResult
from qa.search.ask import ask
from qa.search.evidence import SentenceMemory
from qa.search.retrieval import retrieve

PUBLIC = {
    "Document": Document,
    "Encoder": Encoder,
    "Evidence": Evidence,
    "Hit": Hit,
    "IndexReport": IndexReport,
    "LocalIndex": LocalIndex,
    "Passage": Passage,
    "PassageStore": PassageStore,
    "QAError": QAError,
    "SearchFilter": SearchFilter,
    "SearchResult": SearchResult,
    "SentenceMemory": SentenceMemory,
    "SentenceTransformerEncoder": SentenceTransformerEncoder,
    "ask": ask,
    "index_corpus": index_corpus,
    "open_index": open_index,
    "retrieve": retrieve,
    "settings_for": settings_for,
}


def test_every_public_name_is_the_library_s_own_object() -> None:
    assert sorted(qa.__all__) == sorted(PUBLIC)
    for name, value in PUBLIC.items():
        assert getattr(qa, name) is value
    namespace: dict[str, object] = {}
    exec("from qa import *", namespace)
    assert {name: namespace[name] for name in PUBLIC} == PUBLIC


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'index_folder'"):
        _ = qa.index_folder
