"""What a person typed, made into a question the index can take: one rule for every front end.

The command line, the chat, the ``search`` API and ``AnswerService.ask`` all
go through ``normalize_question``, so the same typed text is the same
question everywhere: invisible and control characters dropped, whitespace
collapsed, long questions cut, and an empty one refused with the same words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from qa.errors import QAError

# Longer questions are cut: the model reads at most 256 word pieces anyway,
# and a pasted article is not a question.
MAX_QUESTION_CHARS = 2_000
EMPTY_QUESTION = "the question is empty"
_CONSIDERED_CHARS = 8 * MAX_QUESTION_CHARS
# Terminal escape sequences (colours, cursor moves, window titles), pasted from a shell.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]?)")
# Characters no one means to ask about: C0/C1 controls other than whitespace, DEL,
# soft hyphen, zero-width space, word joiner and invisible operators, bidirectional
# marks, embeddings and isolates, byte-order marks, and lone surrogates (undecodable
# bytes in a command-line argument). Zero-width (non-)joiners stay: emoji and
# Persian, Arabic and Indic spelling need them.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)


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
    text = _INVISIBLE.sub("", _ESCAPE_SEQUENCE.sub("", considered))
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
