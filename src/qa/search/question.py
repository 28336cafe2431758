"""What a person typed, made into a question the index can take: one rule for every front end.

The command line, the chat, the ``search`` API and ``AnswerService.ask`` all
go through ``normalize_question``, so the same typed text is the same
question everywhere: invisible and control characters dropped, whitespace
collapsed, long questions cut, and an empty one refused with the same words.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from qa.errors import QAError
from qa.safe_text import ESCAPE_SEQUENCE, INVISIBLE

# Longer questions are cut: the model reads at most 256 word pieces anyway,
# and a pasted article is not a question.
MAX_QUESTION_CHARS = 2_000
EMPTY_QUESTION = "the question is empty"
_CONSIDERED_CHARS = 8 * MAX_QUESTION_CHARS


@dataclass(frozen=True)
class Question:
    """A normalised question; ``clipped`` when it had to be cut, ``typed_chars`` to say how long it was."""

    text: str
    typed_chars: int
    clipped: bool = False


class EmptyQuestionError(QAError):
    """Nothing is left of the question once invisible characters and spaces are taken out."""


def normalize_question(typed: str) -> Question:
    r"""The question in ``typed``, as every front end passes it to the index.

    Terminal escape sequences and invisible or control characters are
    dropped, the text is composed to NFC (as corpus text is), every run of
    whitespace (tabs, ``\\r``, line breaks) becomes one space, and text over
    ``MAX_QUESTION_CHARS`` is cut at the last space before the limit.
    Markup is left as it is: it is searched as text, and escaped where shown.

    Raises:
        EmptyQuestionError: Nothing is left to ask.
    """
    # Questions are cut anyway: no need to clean megabytes of a pasted file first.
    considered = typed[:_CONSIDERED_CHARS]
    text = INVISIBLE.sub("", ESCAPE_SEQUENCE.sub("", considered))
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if not text:
        raise EmptyQuestionError(EMPTY_QUESTION)
    clipped = len(text) > MAX_QUESTION_CHARS or len(typed) > len(considered)
    return Question(_clip(text), typed_chars=len(typed), clipped=clipped)


def _clip(text: str) -> str:
    if len(text) <= MAX_QUESTION_CHARS:
        return text
    cut = text[:MAX_QUESTION_CHARS]
    space = cut.rfind(" ")
    # At a word boundary, unless that would throw away much of the allowance (no spaces in Chinese).
    return (cut[:space] if space > MAX_QUESTION_CHARS * 0.9 else cut).rstrip()


def clipped_notice(question: Question) -> str:
    """One sentence telling the person their question was cut, or "" if it was not."""
    if not question.clipped:
        return ""
    used = len(question.text)
    return f"Your question was {question.typed_chars:,} characters long; only the first {used:,} were used."
