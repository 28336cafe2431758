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


# Ways an index on disk gets damaged (a crash, a full disk, a hand edit), and what the error then says.
DAMAGES = {
    "truncated vectors": "bytes; the manifest says",
    "vectors changed in place": "SHA-256 does not match",
    "passages missing": "is missing",
    "documents missing": "is missing",
    "bm25 missing": "is missing",
    "manifest not JSON": "manifest.json is unreadable",
    "manifest count edited": "manifest.json was edited",
    "manifest dimension edited": "manifest.json was edited",
    "manifest file name edited": "manifest.json was edited",
    "manifest and checksum edited": "the manifest says",
}


def damage_index(index_dir: Path, kind: str) -> None:
    """Damage the saved index in ``index_dir`` in one of the ways ``DAMAGES`` names."""
    from qa.index import Manifest, manifest_text

    path = index_dir / "manifest.json"
    data = json.loads(path.read_text())
    files = data["files"]
    vectors = index_dir / files["vectors"]
    if kind == "truncated vectors":
        vectors.write_bytes(vectors.read_bytes()[: vectors.stat().st_size // 2])
    elif kind == "vectors changed in place":
        raw = bytearray(vectors.read_bytes())
        raw[-5] ^= 0xFF
        vectors.write_bytes(bytes(raw))
    elif kind in {"passages missing", "documents missing"}:
        (index_dir / files[kind.split(maxsplit=1)[0]]).unlink()
    elif kind == "bm25 missing":
        shutil.rmtree(index_dir / files["bm25"])
    elif kind == "manifest not JSON":
        path.write_text(path.read_text()[:40])
    elif kind == "manifest and checksum edited":
        del data["manifest_sha256"]
        data["passages"] += 1
        path.write_text(manifest_text(Manifest.from_json(data)))
    else:
        edits = {"count": ("passages", data["passages"] + 1), "dimension": ("dimension", 3)}
        key, value = edits.get(kind.split()[1], ("files", {**files, "passages": "passages-other.jsonl"}))
        path.write_text(json.dumps({**data, key: value}, indent=2))
