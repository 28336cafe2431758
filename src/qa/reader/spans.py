"""Spans from start/end logits, and SQuAD's exact match and F1 (the official normalisation).

Pure NumPy and the standard library: shared by training and by answering questions.
"""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

# Longest answer span, in tokens: SQuAD's answers are short (95% under 15 tokens).
MAX_SPAN_TOKENS = 30


def best_span(
    start_logits: np.ndarray, end_logits: np.ndarray, allowed: np.ndarray, *, max_tokens: int = MAX_SPAN_TOKENS
) -> tuple[int, int] | None:
    """The (first, last) token pair with the highest start + end logit, both in ``allowed``.

    The span is at most ``max_tokens`` long and ends no earlier than it starts; ``None``
    when no token is allowed.
    """
    positions = np.flatnonzero(allowed)
    if not len(positions):
        return None
    starts = start_logits[positions]
    ends = end_logits[positions]
    # scores[i, j]: a span from positions[i] to positions[j]; only j >= i, within the length limit.
    scores = starts[:, None] + ends[None, :]
    distance = positions[None, :] - positions[:, None]
    scores = np.where((distance >= 0) & (distance < max_tokens), scores, -np.inf)
    first, last = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(positions[first]), int(positions[last])


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(character for character in text.lower() if character not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_em_f1(prediction: str, references: list[str]) -> tuple[float, float]:
    """Exact match and F1 of ``prediction`` against the best of ``references`` ("" means no answer)."""
    return (
        max(float(normalize_answer(prediction) == normalize_answer(reference)) for reference in references),
        max(_f1(prediction, reference) for reference in references),
    )


def _f1(prediction: str, reference: str) -> float:
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(expected)
    return 2 * precision * recall / (precision + recall)
