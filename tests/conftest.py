"""Shared fixtures: a small deterministic encoder and copies of the real corpus."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import pytest

from qa.records import Document

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


def make_documents(count: int, seed: int = 0) -> list[Document]:
    """``count`` made-up articles of 1 to 4 paragraphs drawn from ``WORDS``, the same for the same seed."""
    rng = np.random.default_rng(seed)
    documents = []
    for number in range(count):
        paragraphs = tuple(
            " ".join(rng.choice(WORDS, size=int(rng.integers(5, 15)))) + "." for _ in range(int(rng.integers(1, 5)))
        )
        documents.append(
            Document(doc_id=f"doc{number}", source=f"doc{number}.txt", paragraphs=paragraphs, title=f"T{number}")
        )
    return documents


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    """Write ``lines`` to ``path`` (folders made), one a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def json_lines(path: Path, rows: Sequence[object]) -> Path:
    """Write ``rows`` to ``path`` as JSON Lines."""
    return write_lines(path, [json.dumps(row) for row in rows])


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

    def __init__(self, name: str = "fake-encoder", *, backend: str | None = None) -> None:
        super().__init__(name)
        self.backend = backend
        FakeModelEncoder.made.append(self)

    made: ClassVar[list[FakeModelEncoder]] = []  # every instance, so tests can see how they were made

    def max_tokens(self) -> int:
        return 254

    def token_counter(self) -> None:
        return None


@pytest.fixture(scope="session")
def real_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The bundled corpus indexed with the bundled model, once per test run: ``(index, encoder)``, to read only."""
    from qa.embed.encoder import SentenceTransformerEncoder
    from qa.index.build import index_corpus, open_index, settings_for

    index_dir = tmp_path_factory.mktemp("real-index")
    encoder = SentenceTransformerEncoder("sentence-transformers/all-MiniLM-L6-v2")
    settings, count_tokens = settings_for(encoder)
    index_corpus(CORPUS, index_dir, encoder=encoder, settings=settings, count_tokens=count_tokens)
    return open_index(index_dir), encoder


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
    "sentences missing": "is missing",
    "manifest not JSON": "manifest.json is unreadable",
    "manifest count edited": "manifest.json was edited",
    "manifest dimension edited": "manifest.json was edited",
    "manifest file name edited": "manifest.json was edited",
    "manifest and checksum edited": "the manifest says",
}


def damage_index(index_dir: Path, kind: str) -> None:
    """Damage the saved index in ``index_dir`` in one of the ways ``DAMAGES`` names."""
    from qa.index.manifest import Manifest, manifest_text

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
    elif kind in {"bm25 missing", "sentences missing"}:
        shutil.rmtree(index_dir / files[kind.split(maxsplit=1)[0]])
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


class IndexWorker:
    """A real ``qa index`` process (``tests/index_worker.py``) that a test can hold at a point, let go or SIGKILL."""

    def __init__(self, corpus: Path, index: Path, *, pause: str = "none", options: tuple[str, ...] = ()) -> None:
        environment = {key: value for key, value in os.environ.items() if key != "QA_MODEL"}
        environment["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])
        command = [sys.executable, str(REPO / "tests" / "index_worker.py"), pause, "index"]
        self.process = subprocess.Popen(
            [*command, "--corpus", str(corpus), "--index", str(index), *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.output: list[str] = []  # stdout and stderr lines, as they come
        self._lines: queue.Queue[str] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.output.append(line)
            self._lines.put(line)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        """Return once the process has printed a line containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if text in self._lines.get(timeout=0.05):
                    return
            except queue.Empty:
                if self.process.poll() is not None and self._lines.empty():
                    break
        raise AssertionError(f"no {text!r} from the worker; it printed:\n{''.join(self.output)}")

    def let_go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def sigkill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def finish(self, timeout: float = 30) -> int:
        """The exit status, once the process has ended and all its output is read."""
        status = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return status


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


def rewrite_manifest(index_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``edit`` to the manifest's JSON and give it a matching checksum, as a bug or a careful hand would."""
    from qa.index.manifest import MANIFEST_CHECKSUM, MANIFEST_NAME

    path = index_dir / MANIFEST_NAME
    data = json.loads(path.read_text())
    del data[MANIFEST_CHECKSUM]
    edit(data)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    data[MANIFEST_CHECKSUM] = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    path.write_text(json.dumps(data, indent=2))


# Manifest fields of the wrong type or out of range (with a matching checksum), and what the error then names.
def _set(*keys: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _first_check(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        next(iter(data["file_checks"].values()))[field] = value

    return edit


WRONG_MANIFESTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "files as a list": (_set("files", value=["documents-1.jsonl"]), "files is"),
    "a size 'x'": (_first_check("size", "x"), "not an integer"),
    "model 123": (_set("model", value=123), "model is 123, not a string"),
    "dimension true": (_set("dimension", value=True), "dimension is true"),
    "passages -1": (_set("passages", value=-1), "passages is -1"),
    "max_tokens a string": (_set("settings", "max_tokens", value="254"), "max_tokens is"),
    "settings null": (_set("settings", value=None), "settings is null"),
    "a check outside the index": (
        lambda data: data["file_checks"].update({"../../etc/passwd": {"size": 1, "sha256": "0" * 64}}),
        "not a file of this index",
    ),
    "file_checks missing": (lambda data: data.pop("file_checks"), "file_checks"),
    "an unknown field": (_set("extra", value=1), "unknown fields"),
}
# Characters that can drive a terminal (escape sequences, controls, bidirectional overrides and isolates).
TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


@pytest.fixture(scope="session")
def llm_server() -> Any:
    """A real OpenAI-compatible chat-completions server on 127.0.0.1 (``tests/llm_server.py``), for the session."""
    from llm_server import serving

    with serving() as server:
        yield server


@pytest.fixture(autouse=True, scope="session")
def no_language_model_from_the_environment() -> Any:
    """A developer's ``$QA_LLM_*`` must not reach the tests (nor the apps they start): only tests that ask get one."""
    names = ("QA_LLM_URL", "QA_LLM_MODEL", "QA_LLM_API_KEY", "QA_LLM_TIMEOUT")
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    yield
    os.environ.update(saved)
