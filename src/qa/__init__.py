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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name's module, imported when the name is first used: importing any part of qa (the
# `qa` command, say) runs this file, and a `qa index` with nothing to do must not pay for
# numpy, FAISS and the search code.
_MODULES = {
    "Encoder": "qa.embed.encoder",
    "SentenceTransformerEncoder": "qa.embed.encoder",
    "QAError": "qa.errors",
    "index_corpus": "qa.index.build",
    "open_index": "qa.index.build",
    "settings_for": "qa.index.build",
    "LocalIndex": "qa.index.local",
    "IndexReport": "qa.index.prepare",
    "PassageStore": "qa.index.store",
    "SearchFilter": "qa.index.store",
    "Document": "qa.records",
    "Evidence": "qa.records",
    "Hit": "qa.records",
    "Passage": "qa.records",
    "SearchResult": "qa.records",
    "ask": "qa.search.ask",
    "SentenceMemory": "qa.search.evidence",
    "retrieve": "qa.search.retrieval",
}


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    if name not in _MODULES:
        raise AttributeError(f"module 'qa' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value
    return value


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
