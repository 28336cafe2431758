"""Spans from logits and SQuAD's scores, against brute force and the official script's rules."""

from __future__ import annotations

import numpy as np
import pytest

from qa.reader.spans import best_span, normalize_answer, squad_em_f1


def brute_force(start: np.ndarray, end: np.ndarray, allowed: np.ndarray, max_tokens: int) -> tuple[int, int] | None:
    best, score = None, -np.inf
    for i in range(len(start)):
        for j in range(i, min(len(end), i + max_tokens)):
            if allowed[i] and allowed[j] and start[i] + end[j] > score:
                best, score = (i, j), start[i] + end[j]
    return best


@pytest.mark.parametrize("seed", range(20))
def test_best_span_agrees_with_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tokens = int(rng.integers(1, 60))
    start, end = rng.normal(size=tokens), rng.normal(size=tokens)
    allowed = rng.random(tokens) < 0.7
    max_tokens = int(rng.integers(1, 12))
    assert best_span(start, end, allowed, max_tokens=max_tokens) == brute_force(start, end, allowed, max_tokens)


def test_no_allowed_token_is_no_span() -> None:
    assert best_span(np.zeros(4), np.zeros(4), np.zeros(4, dtype=bool)) is None


def test_squad_normalisation_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("The  Normans, of  Normandy!") == "normans of normandy"


def test_exact_match_and_f1_take_the_best_reference() -> None:
    assert squad_em_f1("the Normans", ["Normans", "Vikings"]) == (1.0, 1.0)
    em, f1 = squad_em_f1("Norman knights", ["the Normans", "Norman knights of Italy"])
    assert em == 0.0
    assert f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # 2 of 2 predicted words, 2 of 4 reference words


def test_no_answer_is_right_only_for_unanswerable_questions() -> None:
    assert squad_em_f1("", [""]) == (1.0, 1.0)
    assert squad_em_f1("", ["Normans"]) == (0.0, 0.0)
    assert squad_em_f1("Normans", [""]) == (0.0, 0.0)
