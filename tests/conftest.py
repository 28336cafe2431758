"""Shared fixtures: a small deterministic encoder and copies of the real corpus."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
WORDS = [
    "defector",
    "family",
    "border",
    "regime",
    "money",
    "school",
    "river",
    "bridge",
    "army",
    "letter",
    "phone",
    "market",
    "court",
    "prison",
]  # vocabulary for made-up passages
GOLD = json.loads((REPO / "tests" / "data" / "corpus_gold.json").read_text(encoding="utf-8"))


class FakeEncoder:
    """Hashed bag of words: texts sharing words get similar vectors. Records every call."""

    def __init__(self, name: str = "fake-encoder", dimension: int = 256) -> None:
        self.name = name
        self.dimension = dimension
        self.calls: list[list[str]] = []

    @property
    def encoded(self) -> list[str]:
        return [text for call in self.calls for text in call]

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.sha256(word.encode()).digest()
                vectors[row, digest[0] % self.dimension] += 1.0 if digest[1] % 2 else -1.0
        return vectors


class RefusingEncoder(FakeEncoder):
    """An encoder that fails the test if anything asks it to embed."""

    def encode(self, texts: list[str]) -> np.ndarray:
        raise AssertionError(f"the encoder was asked to embed {len(texts)} texts")


class FakeModelEncoder(FakeEncoder):
    """Stands in for SentenceTransformerEncoder: same constructor and passage-settings hooks."""

    def __init__(self, name: str = "fake-encoder") -> None:
        super().__init__(name)

    def max_tokens(self) -> int:
        return 254

    def token_counter(self) -> None:
        return None


@pytest.fixture
def encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A writable copy of the real corpus."""
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


# Questions people type that are not plain English: each must get an answer, never an error.
ODD_QUESTIONS = {
    "long": "why do defectors return to the north " * 3_000,  # 111,000 characters
    "controls": "\x00Why do\x1b[31m defectors\x1b[0m\r\n return?\u200b\r",
    "korean": "탈북민은 왜 북한으로 돌아가나요?",
    "arabic": "لماذا يعود المنشقون إلى كوريا الشمالية؟",
    "emoji": "🙂🙂",
    "markup": "<script>alert(1)</script> **Why** do [defectors](x) `return`?",
}
# ... and questions with nothing to ask once invisible characters and spaces are gone.
EMPTY_QUESTIONS = ["", "   ", "\x00\u200b", "\r\n\t", "\x1b[0m"]
