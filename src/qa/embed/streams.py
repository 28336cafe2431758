"""Running an OpenVINO model for throughput: small batches on parallel streams, fixed shapes."""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from qa.cpus import usable_cpus
from qa.embed.models import FALLBACK_MAX_TOKENS
from qa.embed.runtime import cpu_precision, openvino_core

# Texts per inference of a StreamedRunner, and the step of the fixed token widths it pads to.
STREAM_BATCH = 8
STREAM_WIDTH_STEP = 64
# A text alone (a question) is padded to a multiple of this many tokens, up to QUESTION_MAX_WIDTH,
# and run by a model compiled for that one shape: embed_query took 1.93 ms p50 over 200 SciFact
# questions (21 tokens at the median) against 2.70 ms with the dynamic model, both on one thread,
# vectors agreeing to cosine 0.99999. Each width compiles in about 0.17 s when first asked for.
QUESTION_WIDTH_STEP = 16
QUESTION_MAX_WIDTH = 128


# A fixed (texts, tokens) shape a model is compiled for.
_Shape = tuple[int, int]


class StreamedRunner:
    """An OpenVINO model run for throughput: small batches on parallel streams, fixed shapes.

    On the project's 2-core machine, batches of 8 texts on two single-thread streams (two
    requests in flight) beat one batch of 32 on both threads, and a full batch padded to the
    next multiple of ``width_step`` tokens runs a model compiled for that fixed shape (made
    on first use, about 0.3 s each), which is faster than the dynamic one
    (``benchmarks/encoder.py``). A text alone (above all a question) is padded likewise to a
    multiple of ``QUESTION_WIDTH_STEP`` tokens and runs on a model compiled for that shape
    and for latency on every thread; other batches (the last of a call) run the dynamic
    model on one thread, beside the call's last full batch. Safe across threads: every
    call takes idle requests of its own.
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
        self._compiled: dict[_Shape | None, Any] = {None: core.compile_model(self._model, "CPU", self._latency)}
        self._idle: dict[_Shape | None, queue.SimpleQueue[Any]] = {None: queue.SimpleQueue()}
        self._lock = threading.Lock()

    def width(self, rows: int, longest: int) -> int:
        """Tokens a batch of ``rows`` texts is padded to: a fixed width for a full batch or a text alone."""
        widths = self.widths if rows == self.batch_size else self.question_widths if rows == 1 else ()
        return next((width for width in widths if width >= longest), longest)

    @property
    def fixed_shapes(self) -> list[tuple[int, int]]:
        """The fixed (texts, tokens) shapes compiled so far."""
        with self._lock:
            return sorted(key for key in self._compiled if key is not None)

    def run(self, batches: Iterable[dict[str, np.ndarray]]) -> Generator[np.ndarray, None, None]:
        """The first output of every batch, in order, with one batch in flight per stream."""
        in_flight: collections.deque[tuple[_Shape | None, Any]] = collections.deque()
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

    def _key(self, shape: tuple[int, ...]) -> _Shape | None:
        """The fixed shape a batch of this shape runs on, or ``None`` for the dynamic model."""
        rows, width = shape
        if (rows == self.batch_size and width in self.widths) or (rows == 1 and width in self.question_widths):
            return rows, width
        return None

    def _request(self, key: _Shape | None) -> Any:
        with self._lock:
            if key not in self._compiled:
                assert key is not None  # the dynamic model is compiled up front
                model = self._model.clone()
                model.reshape({node.get_any_name(): list(key) for node in model.inputs})
                config = self._config if key[0] == self.batch_size else self._question
                self._compiled[key] = openvino_core().compile_model(model, "CPU", config)
                self._idle[key] = queue.SimpleQueue()
            compiled, idle = self._compiled[key], self._idle[key]
        try:
            return idle.get_nowait()
        except queue.Empty:
            return compiled.create_infer_request()

    def _collect(self, key: _Shape | None, request: Any) -> np.ndarray:
        try:
            request.wait()
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request is reused
        finally:
            self._idle[key].put(request)
