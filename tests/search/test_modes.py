"""Search modes: the three names accepted, anything else refused with a clear error."""

from __future__ import annotations

import pytest

from qa.errors import QAError
from qa.search.modes import MODES, parse_mode, parse_modes


def test_the_three_modes() -> None:
    assert MODES == ("hybrid", "dense", "bm25")


@pytest.mark.parametrize("name", ["hybrid", "dense", "bm25"])
def test_parse_mode_accepts_each_mode(name: str) -> None:
    assert parse_mode(name) == name


@pytest.mark.parametrize("name", ["", "fuzzy", "Hybrid", "BM25", " dense", "bm25,dense"])
def test_parse_mode_refuses_anything_else_naming_the_modes(name: str) -> None:
    with pytest.raises(QAError, match="hybrid, dense, bm25") as raised:
        parse_mode(name)
    assert repr(name) in str(raised.value)


@pytest.mark.parametrize(
    ("text", "modes"),
    [
        ("hybrid", ["hybrid"]),
        ("bm25,dense", ["bm25", "dense"]),
        ("dense, hybrid ,bm25", ["dense", "hybrid", "bm25"]),
        ("bm25,bm25,dense,bm25", ["bm25", "dense"]),
        ("dense,,dense,", ["dense"]),
    ],
)
def test_parse_modes_keeps_the_order_and_drops_repeats(text: str, modes: list[str]) -> None:
    assert parse_modes(text) == modes


@pytest.mark.parametrize(
    ("text", "named"), [("bm25,fuzzy", "fuzzy"), ("Dense", "Dense"), ("", "(none)"), (" , ", "(none)")]
)
def test_parse_modes_refuses_unknown_or_missing_modes(text: str, named: str) -> None:
    with pytest.raises(QAError, match="hybrid, dense, bm25") as raised:
        parse_modes(text)
    assert named in str(raised.value)
