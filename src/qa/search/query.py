"""The question as each retriever sees it, leaning on the conversation's earlier turns.

A follow-up ("And what happens to their families?") names its subject only in
earlier turns: the dense query adds their vectors with weights that halve with
each turn back, and the BM25 query adds their words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qa.embed.encoder import Encoder, normalize

# Earlier turns used for a follow-up question, and the weight of each turn back.
HISTORY_TURNS = 2
HISTORY_DECAY = 0.5


def embed_turns(encoder: Encoder, query: str, history: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The unit vector of the question with its earlier turns (``embed_query``), and those of each turn alone.

    The turns' own vectors are the question's first, then the earlier turns',
    latest first (at most ``HISTORY_TURNS``); all come from one call to the encoder.
    """
    turns = [query, *reversed(history[-HISTORY_TURNS:])]
    vectors = normalize(encoder.encode(turns))
    weights = np.array([HISTORY_DECAY**i for i in range(len(turns))], dtype=np.float32)
    combined: np.ndarray = normalize((weights[:, None] * vectors).sum(axis=0, keepdims=True))[0]
    return combined, vectors


def embed_query(encoder: Encoder, query: str, history: Sequence[str] = ()) -> np.ndarray:
    """The unit vector of a question, with the earlier turns' vectors added at decaying weights."""
    return embed_turns(encoder, query, history)[0]


def lexical_query(query: str, history: Sequence[str] = ()) -> str:
    """The BM25 query: the question, then the words of earlier turns (which only add, never outweigh)."""
    return " ".join([query, *history[-HISTORY_TURNS:]])
