"""Running an OpenVINO model for throughput: small batches on parallel streams, fixed shapes."""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qa.cpus import usable_cpus
from qa.embed.models import FALLBACK_MAX_TOKENS
from qa.embed.runtime import cpu_precision, import_openvino, openvino_core

# Texts per inference of a StreamedRunner, and the step of the fixed token widths it pads to.
STREAM_BATCH = 8
STREAM_WIDTH_STEP = 64
# A text alone (a question) is padded to a multiple of this many tokens, up to QUESTION_MAX_WIDTH:
# embed_query took 1.93 ms p50 over 200 SciFact questions (21 tokens at the median) against 2.70 ms
# unpadded on the dynamic model, both on one thread, vectors agreeing to cosine 0.99999.
QUESTION_WIDTH_STEP = 16
QUESTION_MAX_WIDTH = 128
# Question widths run by a model compiled for that one width; the longer ones share one model
# whose width is bounded by QUESTION_MAX_WIDTH. 88% of SciFact's questions and all of
# eval/questions.jsonl pad to 16 or 32 tokens.
QUESTION_FIXED_WIDTHS = (QUESTION_WIDTH_STEP, 2 * QUESTION_WIDTH_STEP)

# A fixed (texts, tokens) shape a batch is padded to, or None for anything else (unpadded).
_Shape = tuple[int, int] | None
# The models a runner compiles: one per fixed shape, one for the longer texts alone, and one for
# anything else.
_Model = tuple[int, int] | Literal["question", "dynamic"]


class StreamedRunner:
    """An OpenVINO model run for throughput: small batches on parallel streams, fixed shapes.

    On the project's 2-core machine, batches of 8 texts on two single-thread streams (two
    requests in flight) beat one batch of 32 on both threads, and a full batch padded to the
    next multiple of ``width_step`` tokens is faster than the same batch unpadded on the
    dynamic model (``benchmarks/encoder.py``). A text alone (above all a question) is padded
    likewise to a multiple of ``QUESTION_WIDTH_STEP`` tokens and runs for latency on every
    thread; other batches (the last of a call) run the dynamic model on one thread, beside
    the call's last full batch. A full batch runs a model compiled for its (texts, tokens)
    shape, on first use (about 0.3 s each): one model with a bounded width held 120 MB less
    after embedding 2,000 abstracts, but embedded 3-5% fewer texts a second. A text alone
    padded to one of ``QUESTION_FIXED_WIDTHS`` runs a model compiled for that width too; the
    longer ones share one model with a bounded width. Each compiled model holds its own
    copy of the weights, 54 MB, so a model per width of question held 380 MB more once
    questions of eight lengths had come; one bounded model for every question made the
    first stage about 1 ms slower at a million passages (``benchmarks/search_parts.py``, in
    turns). Safe across threads: every call takes idle requests of its own.
    """

    def __init__(
        self,
        model_file: Path,
        *,
        precision: str,
        threads: int | None = None,
        batch_size: int = STREAM_BATCH,
        width_step: int = STREAM_WIDTH_STEP,
        max_width: int = FALLBACK_MAX_TOKENS,
        fixed_shapes: bool = True,
    ) -> None:
        core = openvino_core()
        threads = threads or usable_cpus()
        self.streams = 2 if threads >= 2 else 1
        self.batch_size = batch_size
        self.widths = (*range(width_step, max_width, width_step), max_width) if fixed_shapes else ()
        longest_question = min(QUESTION_MAX_WIDTH, max_width)
        self.question_widths = tuple(range(QUESTION_WIDTH_STEP, longest_question + 1, QUESTION_WIDTH_STEP))
        if not fixed_shapes:
            self.question_widths = ()
        self._config = {
            "INFERENCE_PRECISION_HINT": cpu_precision(core, precision),
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.streams,
            "INFERENCE_NUM_THREADS": threads,
        }
        # One thread for the last, partial batch of a call: it runs beside a full one.
        self._latency = {**self._config, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1}
        # Every thread for a text alone: a question is embedded before anything else of its search
        # runs (qa.search.retrieval.both_candidates). Against one thread, question by question
        # (benchmarks/search_schedule.py INDEX threads), first stage and folding: 6.3 / 8.7 / 6.7
        # against 7.4 / 10.1 / 7.8 ms p50 at SciFact, 10.2 / 11.3 against 11.2 / 12.5 at a million
        # passages (runs on a busy machine).
        self._question = {**self._latency, "INFERENCE_NUM_THREADS": threads}
        self._model = core.read_model(str(model_file))
        self._compiled: dict[_Model, Any] = {"dynamic": core.compile_model(self._model, "CPU", self._latency)}
        self._idle: dict[_Shape, queue.SimpleQueue[Any]] = {}
        self._lock = threading.Lock()

    def width(self, rows: int, longest: int) -> int:
        """Tokens a batch of ``rows`` texts is padded to: a fixed width for a full batch or a text alone."""
        widths = self.widths if rows == self.batch_size else self.question_widths if rows == 1 else ()
        return next((width for width in widths if width >= longest), longest)

    @property
    def compiled(self) -> list[str]:
        """The models compiled: ``dynamic``, ``question`` (the longer texts alone), each fixed ``texts x tokens``."""
        with self._lock:
            return sorted(key if isinstance(key, str) else f"{key[0]}x{key[1]}" for key in self._compiled)

    def run(self, batches: Iterable[dict[str, np.ndarray]]) -> Generator[np.ndarray, None, None]:
        """The first output of every batch, in order, with one batch in flight per stream."""
        in_flight: collections.deque[tuple[_Shape, Any]] = collections.deque()
        try:
            for feeds in batches:
                if len(in_flight) == self.streams:
                    yield self._collect(*in_flight.popleft())
                key = self._key(next(iter(feeds.values())).shape)
                request = self._request(key)
                in_flight.append((key, request))
                request.start_async(feeds)
            while in_flight:
                yield self._collect(*in_flight.popleft())
        finally:  # a caller that stopped early: let the requests finish, keep them for reuse
            for key, request in in_flight:
                request.wait()
                self._idle[key].put(request)

    def _key(self, shape: tuple[int, ...]) -> _Shape:
        """The fixed shape a batch of this shape is, or ``None`` for the dynamic model."""
        rows, width = shape
        if (rows == self.batch_size and width in self.widths) or (rows == 1 and width in self.question_widths):
            return rows, width
        return None

    def _request(self, key: _Shape) -> Any:
        """An idle request for batches of shape ``key``, compiling its model on first use.

        Texts alone of the longer widths share one model, but each width keeps requests of
        its own: a request run at the width it ran at last does not prepare its layers again.
        """
        model = self._model_of(key)
        with self._lock:
            if model not in self._compiled:
                self._compiled[model] = self._compile(model)
            compiled = self._compiled[model]
            idle = self._idle.setdefault(key, queue.SimpleQueue())
        try:
            return idle.get_nowait()
        except queue.Empty:
            return compiled.create_infer_request()

    def _model_of(self, key: _Shape) -> _Model:
        """The model batches of shape ``key`` run on."""
        if key is None:
            return "dynamic"
        rows, width = key
        if rows != self.batch_size and width not in QUESTION_FIXED_WIDTHS:
            return "question"
        return key

    def _compile(self, key: _Model) -> Any:
        """The model for one fixed shape, or for the longer texts alone (their width bounded)."""
        openvino = import_openvino()
        model = self._model.clone()
        if key == "question":
            shape, config = openvino.PartialShape([1, openvino.Dimension(1, self.question_widths[-1])]), self._question
        else:
            assert key != "dynamic"  # compiled up front
            shape = openvino.PartialShape(list(key))
            config = self._config if key[0] == self.batch_size else self._question
        model.reshape({node.get_any_name(): shape for node in model.inputs})
        return openvino_core().compile_model(model, "CPU", config)

    def _collect(self, key: _Shape, request: Any) -> np.ndarray:
        try:
            request.wait()
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request is reused
        finally:
            self._idle[key].put(request)
