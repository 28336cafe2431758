"""OpenVINO's runtime, shared by every model qa compiles: one ``Core``, imported without telemetry.

``compile_for_cpu`` compiles a model for latency and hands it out as a function that
threads may call at once.
"""

from __future__ import annotations

import contextlib
import importlib
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qa.cpus import usable_cpus


def cpu_precision(core: Any, precision: str) -> str:
    """``precision``, or ``f32`` where the CPU does not compute ``bf16`` natively."""
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return "f32"
    return precision


def compile_for_cpu(
    model_file: Path, *, precision: str, threads: int | None = None
) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """An OpenVINO model compiled for the CPU, as a function from inputs to outputs, safe across threads.

    ``precision`` is ``f32`` or ``bf16``; ``bf16`` runs as ``f32`` on CPUs that lack it.
    """
    core = openvino_core()
    config = {
        "INFERENCE_PRECISION_HINT": cpu_precision(core, precision),
        "PERFORMANCE_HINT": "LATENCY",  # one stream using every thread: a batch or one query alike
        "INFERENCE_NUM_THREADS": threads or usable_cpus(),
    }
    compiled = core.compile_model(core.read_model(str(model_file)), "CPU", config)
    # Idle requests, reused: making one waits for any inference in flight (20 ms and more
    # while a rebuild embeds), and each caller needs its own, so threads share the model.
    idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def infer(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            request = idle.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            # share_outputs=False: a copy, so the request can serve another caller at once.
            outputs = request.infer(feeds, share_outputs=False)
            return [np.asarray(outputs[index]) for index in range(len(outputs))]
        finally:
            idle.put(request)

    return infer


_core_lock = threading.Lock()
_cores: list[Any] = []


def openvino_core() -> Any:
    """The process's one OpenVINO ``Core``, made on first use and shared by every model compiled here.

    A new ``Core`` per model crashed the test suite (a segmentation fault after a few dozen
    loads in one process; openvinotoolkit/openvino#35338 and ultralytics#25864 report the same).
    """
    with _core_lock:
        if not _cores:
            _cores.append(import_openvino().Core())
        return _cores[0]


def import_openvino() -> Any:
    """``openvino``, imported without its usage telemetry, which would otherwise report every import."""
    with _telemetry_blocked():
        return importlib.import_module("openvino")


@contextlib.contextmanager
def _telemetry_blocked() -> Iterator[None]:
    # openvino falls back to a no-op stub when ``openvino_telemetry`` cannot be imported.
    blocked = "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules
    if blocked:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if blocked:
            del sys.modules["openvino_telemetry"]
