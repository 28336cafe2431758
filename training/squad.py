"""SQuAD for the reader: the questions, the split by article, the training pairs, token windows, scores.

Used by ``training/reader.py`` (training) and ``benchmarks/reader.py`` (held-out figures).
Articles are split, never questions: ``held_out_articles`` draws ``HELD_OUT_PER_SPLIT`` dev and
as many test articles, all with unanswerable questions, which are never trained on.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from qa.reader.spans import squad_em_f1

# Eight of the 35 articles with unanswerable questions, held out of training; chosen by
# shuffling the sorted titles with seed 0 (see ``held_out_articles``).
HELD_OUT_PER_SPLIT = 4


MAX_TOKENS = 256


STRIDE = 96


MAX_QUESTION_TOKENS = 64


@dataclasses.dataclass(frozen=True)
class Question:
    """One SQuAD question, with its paragraph and reference answers."""

    id: str
    title: str
    paragraph: int
    context: str
    question: str
    answers: tuple[tuple[str, int], ...]

    @property
    def answerable(self) -> bool:
        """Whether the question has a reference answer in its paragraph."""
        return bool(self.answers)


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training pair: a question, a passage and the answer's character span (None: no answer)."""

    question: str
    passage: str
    answer: tuple[int, int] | None


def load_questions(folder: Path) -> list[Question]:
    """The distinct questions of both SQuAD dev files (v2.0's record wins for shared ids)."""
    questions: dict[str, Question] = {}
    for name in ("v1.1-dev.jsonl", "v2.0-dev.jsonl"):
        with (folder / name).open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                answers = tuple((answer["text"], int(answer["answer_start"])) for answer in row["answers"])
                questions[row["id"]] = Question(
                    row["id"], row["title"], int(row["paragraph"]), row["context"], row["question"], answers
                )
    return sorted(questions.values(), key=lambda question: question.id)


def held_out_articles(questions: list[Question], *, seed: int = 0) -> tuple[list[str], list[str]]:
    """Dev and test articles: drawn from the articles that have unanswerable questions."""
    with_unanswerable = sorted({question.title for question in questions if not question.answerable})
    random.Random(seed).shuffle(with_unanswerable)
    dev = sorted(with_unanswerable[:HELD_OUT_PER_SPLIT])
    test = sorted(with_unanswerable[HELD_OUT_PER_SPLIT : 2 * HELD_OUT_PER_SPLIT])
    return dev, test


def paragraphs_of(questions: list[Question]) -> dict[str, dict[int, str]]:
    """Each article's paragraphs by index."""
    articles: dict[str, dict[int, str]] = defaultdict(dict)
    for question in questions:
        articles[question.title][question.paragraph] = question.context
    return articles


def hard_negatives(questions: list[Question]) -> dict[str, str]:
    """For each answerable question, the other paragraph of its article that BM25 ranks highest."""
    import bm25s

    articles = paragraphs_of(questions)
    by_article: dict[str, list[Question]] = defaultdict(list)
    for question in questions:
        if question.answerable:
            by_article[question.title].append(question)
    negatives: dict[str, str] = {}
    for title, asked in by_article.items():
        numbers = sorted(articles[title])
        if len(numbers) < 2:
            continue
        retriever = bm25s.BM25()
        retriever.index(
            bm25s.tokenize([articles[title][n] for n in numbers], stopwords="en", show_progress=False),
            show_progress=False,
        )
        tokens = bm25s.tokenize([question.question for question in asked], stopwords="en", show_progress=False)
        ranked, _ = retriever.retrieve(tokens, k=min(2, len(numbers)), show_progress=False, n_threads=1)
        for question, rows in zip(asked, ranked, strict=True):
            other = next(numbers[row] for row in rows if numbers[row] != question.paragraph)
            negatives[question.id] = articles[title][other]
    return negatives


def training_pairs(questions: list[Question], *, seed: int) -> list[Pair]:
    """Positives, hard negatives and unanswerable questions, shuffled."""
    negatives = hard_negatives(questions)
    pairs: list[Pair] = []
    for question in questions:
        if not question.answerable:
            pairs.append(Pair(question.question, question.context, None))
            continue
        text, start = question.answers[0]
        pairs.append(Pair(question.question, question.context, (start, start + len(text))))
        if question.id in negatives:
            pairs.append(Pair(question.question, negatives[question.id], None))
    random.Random(seed).shuffle(pairs)
    return pairs


def tokenizer_of(model_folder: Path) -> Any:
    """The bundled model's fast tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_folder))


def encode_pairs(tokenizer: Any, pairs: list[Pair]) -> list[dict[str, Any]]:
    """Token windows of each pair, with start/end token targets (0, the [CLS], for no answer)."""
    questions = [clip_question(tokenizer, pair.question) for pair in pairs]
    encoded = tokenizer(
        questions,
        [pair.passage for pair in pairs],
        truncation="only_second",
        max_length=MAX_TOKENS,
        stride=STRIDE,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    windows = []
    for window, pair_index in enumerate(encoded["overflow_to_sample_mapping"]):
        pair = pairs[pair_index]
        sequence_ids = encoded.sequence_ids(window)
        offsets = encoded["offset_mapping"][window]
        start = end = 0
        if pair.answer is not None:
            start, end = _token_span(offsets, sequence_ids, pair.answer)
        windows.append(
            {
                "input_ids": encoded["input_ids"][window],
                "token_type_ids": encoded["token_type_ids"][window],
                "start": start,
                "end": end,
                "answerable": float(start > 0),
            }
        )
    return windows


def clip_question(tokenizer: Any, question: str) -> str:
    """The question cut to ``MAX_QUESTION_TOKENS`` word pieces."""
    ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    return question if len(ids) <= MAX_QUESTION_TOKENS else tokenizer.decode(ids[:MAX_QUESTION_TOKENS])


def _token_span(
    offsets: list[tuple[int, int]], sequence_ids: list[int | None], answer: tuple[int, int]
) -> tuple[int, int]:
    """The answer's first and last token in this window, or (0, 0) if the window does not hold all of it."""
    first = last = None
    for token, (span, sequence) in enumerate(zip(offsets, sequence_ids, strict=True)):
        if sequence != 1:
            continue
        if (first is None and span[0] <= answer[0] < span[1]) or (first is None and span[0] >= answer[0]):
            first = token
        if span[0] < answer[1]:
            last = token
    passage_tokens = [token for token, sequence in enumerate(sequence_ids) if sequence == 1]
    if first is None or last is None or last < first:
        return 0, 0
    window_start = offsets[passage_tokens[0]][0]
    window_end = offsets[passage_tokens[-1]][1]
    if answer[0] < window_start or answer[1] > window_end:
        return 0, 0
    return first, last


def held_out_scores(
    questions: list[Question], predictions: list[tuple[str, float]], *, threshold: float = 0.0
) -> dict[str, float]:
    """SQuAD 2.0 exact match and F1 (no answer when the score is below ``threshold``), and AUC of the score."""
    exact = f1 = refused_right = 0.0
    for question, (text, score) in zip(questions, predictions, strict=True):
        predicted = text if score >= threshold else ""
        references = [answer for answer, _ in question.answers] or [""]
        em, f = squad_em_f1(predicted, references)
        exact += em
        f1 += f
        refused_right += float((score < threshold) == (not question.answerable))
    labels = np.array([question.answerable for question in questions])
    scores = np.array([score for _, score in predictions])
    return {
        "exact": 100 * exact / len(questions),
        "f1": 100 * f1 / len(questions),
        "no_answer_accuracy": 100 * refused_right / len(questions),
        "answerable_auc": _auc(scores, labels),
        "questions": len(questions),
    }


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives):
        return float("nan")
    ranks = np.argsort(np.argsort(np.concatenate([positives, negatives]))) + 1
    return float(
        (ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives))
    )
