"""qa: ask questions of a folder of articles, answered with cited passages.

The library in a few names::

    from pathlib import Path
    import qa

    encoder = qa.SentenceTransformerEncoder()  # the bundled all-MiniLM-L6-v2
    settings, count_tokens = qa.settings_for(encoder)
    qa.index_corpus(Path("corpus"), Path("index"), encoder=encoder, settings=settings, count_tokens=count_tokens)
    index = qa.open_index(Path("index"))
    result = qa.ask(index, "Why do defectors return?", encoder=encoder)
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "Document",
    "Encoder",
    "Evidence",
    "Hit",
    "IndexReport",
    "LocalIndex",
    "Passage",
    "PassageStore",
    "QAError",
    "SearchFilter",
    "SearchResult",
    "SentenceMemory",
    "SentenceTransformerEncoder",
    "ask",
    "index_corpus",
    "open_index",
    "retrieve",
    "settings_for",
]
