"""Milvus filter expressions hold only integers qa formats itself; rows round-trip what they store."""

from __future__ import annotations

import numpy as np
import pytest

from qa.index.milvus_schema import (
    day_number,
    decode_sentences,
    document_rows,
    encode_sentences,
    filter_expression,
    inline,
    key_of,
)
from qa.index.sentences import quantize
from qa.index.store import SearchFilter
from qa.records import Document


def test_a_filter_becomes_a_template_over_integers_and_user_text_never_enters_it() -> None:
    hostile = 'x" or doc_id != "'
    where = SearchFilter.of(doc_ids=[hostile], outlets=["RFA"], date_from="2020-01-02", date_to="2021-12-31")
    expression, params = filter_expression(where)
    assert expression == (
        "doc_key in {documents} and outlet_key in {outlets} and day > 0 and day >= {day_from} and day <= {day_to}"
    )
    assert params == {
        "documents": [key_of(hostile)],
        "outlets": [key_of("RFA")],
        "day_from": 20200102,
        "day_to": 20211231,
    }
    written = inline(expression, params)
    assert hostile not in written and "RFA" not in written
    assert written.endswith("day >= 20200102 and day <= 20211231")
    with pytest.raises(ValueError):
        inline("doc_key in {documents}", {"documents": ["1] or [1"]})
    assert filter_expression(None) == ("", {}) == filter_expression(SearchFilter())


def test_days_keys_sentences_and_long_documents_round_trip() -> None:
    assert (day_number("2020-08-02"), day_number("2020-08-02T10:00:00Z"), day_number(""), day_number("Aug 2")) == (
        20200802,
        20200802,
        0,
        0,
    )
    assert key_of("a") != key_of("b") and -(2**63) <= key_of("a") < 2**63
    vectors = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes, scales = quantize(vectors)
    stored = decode_sentences(encode_sentences(np.array([[0, 5], [6, 9], [10, 20]]), codes, scales), 8)
    assert stored.spans == ((0, 5), (6, 9), (10, 20))
    np.testing.assert_allclose(np.sum(stored.vectors * vectors, axis=1), 1.0, atol=0.01)
    assert decode_sentences("", 8).vectors.shape == (0, 8)
    long = Document(doc_id="a.txt", source="a.txt", paragraphs=("ü" * 40_000, "x"))
    rows = document_rows(long, passages=3)
    assert len(rows) > 1 and all(len(row["body"].encode("utf-8")) <= 65_535 for row in rows)
    assert {row["parts"] for row in rows} == {len(rows)} and [row["part"] for row in rows] == list(range(len(rows)))
