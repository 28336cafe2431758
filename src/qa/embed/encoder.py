"""Sentence-transformers encoders, loaded lazily and offline when the model is bundled.

Everything in ``qa`` that embeds text takes an encoder argument: any object
with a ``name`` and ``encode(list[str]) -> ndarray``. This module provides the
real one; tests pass small deterministic fakes.

Backends (``SentenceTransformerEncoder(backend=...)`` or ``$QA_BACKEND``):

- ``openvino-bf16-streams`` (the default): the ``openvino-bf16`` model and precision, run for
  throughput (``qa.embed.streams.StreamedRunner``): a call's texts, sorted by length, go in
  batches of 8 to two streams at once (one thread each), and full batches are padded to a
  multiple of 64 tokens and run by a model compiled for that fixed shape. Same vectors as
  ``openvino-bf16``; more passages/s (``benchmarks/encoder.py``), each new fixed shape costs
  about 0.3 s of compiling the first time it is met.
- ``openvino-bf16``: the model exported once to OpenVINO and run in bfloat16
  where the CPU computes it natively (AMX, AVX512-BF16), else in float32, one batch at a time
  on every thread. On the project's
  2-core machine 3.5x torch's passages/s, with vectors at cosine 0.99998 to torch's and the
  same SciFact nDCG@10 (``benchmarks/encoder.py``); and no torch import at all once exported.
- ``openvino-fp32``: the same export, always run in float32.
- ``torch``: plain sentence-transformers on torch, float32.

The export (``qa.embed.openvino``) lives outside the model's folder (``$QA_MODEL_CACHE`` or
``~/.cache/qa/models``, then ``<model slug>/openvino-<install>/``, one per place the model is
installed), is written once, atomically, and is
checked against a fingerprint of the model's files on every load. When it cannot be made
or loaded, the encoder warns (``BackendFallbackWarning``) and runs on torch instead. The
backend does not change the encoder's ``name``: vectors of every backend agree to within
bf16 rounding, so an index built with one backend is searched with another.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from qa.cpus import usable_cpus
from qa.embed.models import (
    DEFAULT_MODEL,
    FALLBACK_MAX_TOKENS,
    check_model_obtainable,
    export_dir,
    local_model_folder,
    looks_like_path,
    resolve_model_location,
)
from qa.errors import QAError

if TYPE_CHECKING:
    # numpy is imported where vectors are made: a `qa index` that finds nothing changed never needs it.
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from qa.embed.openvino import ExportedModel


TORCH = "torch"
OPENVINO_FP32 = "openvino-fp32"
OPENVINO_BF16 = "openvino-bf16"
OPENVINO_STREAMS = "openvino-bf16-streams"
BACKENDS = (OPENVINO_STREAMS, OPENVINO_BF16, OPENVINO_FP32, TORCH)
# Fastest backend that keeps SciFact nDCG@10 within 0.003 of torch (benchmarks/encoder.py).
DEFAULT_BACKEND = OPENVINO_STREAMS
BACKEND_ENV_VAR = "QA_BACKEND"


class Encoder(Protocol):
    """Anything that turns texts into one vector each."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """One vector per text, as rows of a float32 array."""
        ...


class BackendFallbackWarning(UserWarning):
    """A fast backend could not be used; the encoder runs on torch instead."""


def backend_from_environment(explicit: str | None = None) -> str:
    """The backend asked for: ``explicit`` first, then ``$QA_BACKEND``, else ``DEFAULT_BACKEND``."""
    backend = explicit or os.environ.get(BACKEND_ENV_VAR) or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise QAError(f"unknown encoder backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


class SentenceTransformerEncoder:
    """A sentence-transformers model on the CPU, loaded on the first ``encode`` call.

    Loading takes seconds, so commands that find nothing to embed never pay for it.
    ``backend`` is one of ``BACKENDS`` (default ``$QA_BACKEND`` or ``DEFAULT_BACKEND``);
    ``threads`` is the intra-op thread count (default: every CPU this process may use;
    torch keeps its own default unless it is given).
    """

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        *,
        batch_size: int = 32,
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.name = name
        self.location = resolve_model_location(name)
        self.batch_size = batch_size
        self.backend = backend_from_environment(backend)
        self.threads = threads
        self._model: SentenceTransformer | None = None
        self._exported: ExportedModel | None = None
        self._active: str | None = None
        self._lock = threading.Lock()

    @property
    def active_backend(self) -> str | None:
        """The backend actually in use: ``backend``, or ``torch`` after a fallback; ``None`` before loading."""
        return self._active

    def encode(self, texts: list[str]) -> np.ndarray:
        """One vector per text (not normalised), loading the model on first use."""
        self._load()
        if self._exported is not None:
            return self._exported.encode(texts, batch_size=self.batch_size)
        assert self._model is not None
        import numpy as np

        vectors = self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def _load(self) -> None:
        with self._lock:
            if self._active is not None:
                return
            if looks_like_path(self.location) and not Path(self.location).expanduser().exists():
                raise QAError(f"embedding model folder not found: {self.location}")
            check_model_obtainable(self.name, self.location)
            if self.backend != TORCH:
                try:
                    self._exported = self._load_openvino()
                except Exception as error:  # any failure of the fast path leaves torch to do the work
                    warnings.warn(
                        f"the {self.backend} encoder backend is unavailable ({_describe(error)}); using torch",
                        BackendFallbackWarning,
                        stacklevel=3,
                    )
                else:
                    self._active = self.backend
                    return
            self._model = self._load_torch()
            self._active = TORCH

    def _load_openvino(self) -> ExportedModel:
        from qa.embed.openvino import ensure_export, load_openvino

        source = local_model_folder(self.location)
        folder = ensure_export(source, export_dir(self.name))
        precision = "f32" if self.backend == OPENVINO_FP32 else "bf16"
        streamed = self.backend == OPENVINO_STREAMS
        return load_openvino(folder, precision=precision, threads=self.threads or usable_cpus(), streamed=streamed)

    def _load_torch(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        # Loading a small local model needs no progress bar of its own.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            return SentenceTransformer(self.location, device="cpu")
        except (OSError, ValueError) as error:
            reason = " ".join(str(error).split()).rstrip(".")  # one line: the library's messages span several
            raise QAError(
                f"cannot load embedding model {self.name!r} ({reason})",
                fix="give a local sentence-transformers folder or a model name reachable online",
            ) from error

    def max_tokens(self) -> int:
        """Word pieces a passage may hold: the model's window less its two special tokens."""
        config = Path(self.location) / "sentence_bert_config.json"
        if config.is_file():
            window = int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", FALLBACK_MAX_TOKENS))
        else:
            window = FALLBACK_MAX_TOKENS
        return window - 2

    def token_counter(self) -> Callable[[str], int] | None:
        """Count word pieces with the model's own tokenizer when it is on disk (fast, no torch).

        The tokenizer is loaded by the first count: a build that finds nothing to read never loads it.
        """
        tokenizer_file = Path(self.location) / "tokenizer.json"
        if not tokenizer_file.is_file():
            return None

        @functools.cache
        def tokenizer() -> Tokenizer:
            from tokenizers import Tokenizer

            loaded = Tokenizer.from_file(str(tokenizer_file))
            loaded.no_truncation()
            loaded.no_padding()  # the saved tokenizer pads to a fixed length
            return loaded

        def count_tokens(text: str) -> int:
            return len(tokenizer().encode(text, add_special_tokens=False).ids)

        return count_tokens


def _describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows (zero rows stay zero), so inner product is cosine similarity."""
    import numpy as np

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)
