"""The OpenVINO export of a sentence-transformers model, and running it without torch.

``ensure_export`` makes the export once (torch traces the transformer to ONNX, OpenVINO
converts it) and checks it against sentence-transformers' own vectors; ``load_openvino``
compiles it for the CPU. Tokenising, pooling and normalising are redone in NumPy from what
``qa-export.json`` records, so encoding with an export never imports torch.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.cpus import usable_cpus
from qa.embed.models import FALLBACK_MAX_TOKENS

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EXPORT_MANIFEST = "qa-export.json"
OPENVINO_XML = "openvino_model.xml"
TOKENIZER_FILE = "tokenizer.json"
# Bump when the export changes, so that old exports are made again.
EXPORT_FORMAT = 1
# Vectors of the export, in float32, must be this close to sentence-transformers' own.
EXPORT_MIN_COSINE = 0.9999
_POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
_PROBE_TEXTS = (
    "Why do defectors return to North Korea?",
    "The Ministry of Unification said 29 defectors had gone back since 2012.",
    "A",
    " ".join(["Long passages are cut at the model's window, exactly as sentence-transformers cuts them."] * 40),
)


class ExportError(RuntimeError):
    """The model cannot be exported, or its export does not reproduce sentence-transformers."""


@dataclasses.dataclass(frozen=True)
class ExportManifest:
    """What ``qa-export.json`` records: the model's source and the steps around the network."""

    source: str
    fingerprint: str
    inputs: tuple[str, ...]
    max_length: int
    lowercase: bool
    pad_id: int
    pooling: str
    normalize: bool
    dimension: int
    format: int = EXPORT_FORMAT

    @classmethod
    def read(cls, folder: Path) -> ExportManifest:
        """The manifest of the export in ``folder``."""
        data = json.loads((folder / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        data["inputs"] = tuple(data["inputs"])
        return cls(**data)

    def write(self, folder: Path) -> None:
        """Write this manifest into ``folder``."""
        text = json.dumps(dataclasses.asdict(self), indent=2) + "\n"
        (folder / EXPORT_MANIFEST).write_text(text, encoding="utf-8")


def source_fingerprint(source: Path) -> str:
    """Names, sizes and modification times of the model's files: changes when the model does."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}\0{source.resolve()}\n".encode())
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        stat = path.stat()
        digest.update(f"{relative.as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def export_is_current(folder: Path, fingerprint: str) -> bool:
    """Whether ``folder`` holds a complete export made from the model files with this fingerprint."""
    try:
        manifest = ExportManifest.read(folder)
    except (OSError, ValueError, TypeError, KeyError):
        return False
    complete = all((folder / name).is_file() for name in (OPENVINO_XML, "openvino_model.bin", TOKENIZER_FILE))
    return complete and manifest.fingerprint == fingerprint and manifest.format == EXPORT_FORMAT


def ensure_export(source: Path, target: Path) -> Path:
    """``target`` holding the OpenVINO export of the model in ``source``, exported only if not already there."""
    fingerprint = source_fingerprint(source)
    return build_once(
        target,
        is_current=lambda folder: export_is_current(folder, fingerprint),
        build=lambda scratch: export_openvino(source, scratch, fingerprint=fingerprint),
    )


def build_once(target: Path, *, is_current: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """``target`` as ``build`` makes it, built only if ``is_current`` says it is not already there.

    ``build`` writes into a temporary folder beside ``target``, which is then renamed into
    place, so a crash never leaves a half-written folder and concurrent builds do not collide.
    """
    if is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        build(scratch)
        if is_current(target):  # another process finished first
            return target
        if target.exists():  # a build of other files, or an incomplete one
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}-stale-", dir=target.parent))
            os.replace(target, stale / "export")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(scratch, target)
        except OSError:
            if not is_current(target):  # not just another process finishing first
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def export_openvino(source: Path, target: Path, *, fingerprint: str, keep_onnx: bool = False) -> None:
    """Write the OpenVINO model, tokenizer and ``qa-export.json`` of the model in ``source`` into ``target``.

    The transformer goes through ONNX (torch's exporter) into OpenVINO's format; tokenizer,
    pooling and normalisation are read from the sentence-transformers model and redone in
    NumPy. The result is checked against sentence-transformers on a few texts. ``keep_onnx``
    leaves the intermediate ``model.onnx`` beside it (for benchmarks of other runtimes).
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # Eager attention: plain matrix products, which every converter handles.
    st_model = SentenceTransformer(str(source), device="cpu", model_kwargs={"attn_implementation": "eager"})
    reference = np.asarray(
        st_model.encode(list(_PROBE_TEXTS), convert_to_numpy=True, show_progress_bar=False), dtype=np.float32
    )
    manifest, transformer = _pipeline_of(st_model, source=source, fingerprint=fingerprint, dimension=reference.shape[1])
    st_model.tokenizer.backend_tokenizer.save(str(target / TOKENIZER_FILE))

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model: Any = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            hidden: torch.Tensor = self.model(**dict(zip(manifest.inputs, inputs, strict=True))).last_hidden_state
            return hidden

    # Two rows, the second padded, so that the traced graph keeps the attention mask.
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    example = {"input_ids": torch.full((2, 8), 1000) * mask, "attention_mask": mask, "token_type_ids": 0 * mask}
    onnx_file = target / "model.onnx"
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notes about the TorchScript exporter
        torch.onnx.export(
            LastHiddenState(transformer).eval(),
            tuple(example[name] for name in manifest.inputs),
            str(onnx_file),
            dynamo=False,
            input_names=list(manifest.inputs),
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*manifest.inputs, "last_hidden_state")},
            opset_version=17,
        )
    ov = import_openvino()
    ov.save_model(openvino_core().read_model(str(onnx_file)), str(target / OPENVINO_XML), compress_to_fp16=False)
    if not keep_onnx:
        onnx_file.unlink()
    manifest.write(target)

    exported = load_openvino(target, precision="f32").encode(list(_PROBE_TEXTS))
    cosines = np.sum(_unit(reference) * _unit(exported), axis=1)
    if float(cosines.min()) < EXPORT_MIN_COSINE:
        raise ExportError(f"the export does not reproduce the model (cosine {float(cosines.min()):.5f})")


def _pipeline_of(
    st_model: SentenceTransformer, *, source: Path, fingerprint: str, dimension: int
) -> tuple[ExportManifest, Any]:
    """The manifest of a Transformer → Pooling (→ Normalize) model, and its transformers model."""
    modules: list[Any] = list(st_model)
    kinds = [type(module).__name__ for module in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportError(f"only Transformer, Pooling and Normalize modules can be exported, not {kinds}")
    transformer, pooling = modules[0], modules[1]
    modes = getattr(pooling, "pooling_mode", None)
    if modes is None and hasattr(pooling, "get_pooling_mode_str"):  # sentence-transformers before 6
        modes = pooling.get_pooling_mode_str()
    if not isinstance(modes, str) or modes not in _POOLING_MODES:
        raise ExportError(f"pooling {modes!r} cannot be exported")
    if getattr(st_model, "default_prompt_name", None) or not getattr(pooling, "include_prompt", True):
        raise ExportError("models with prompts cannot be exported")
    tokenizer = st_model.tokenizer
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise ExportError("the model has no fast tokenizer")
    auto_model = transformer.auto_model
    accepted = inspect.signature(auto_model.forward).parameters
    inputs = tuple(name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted)
    manifest = ExportManifest(
        source=str(source),
        fingerprint=fingerprint,
        inputs=inputs,
        max_length=int(st_model.max_seq_length or FALLBACK_MAX_TOKENS),
        lowercase=bool(getattr(transformer, "do_lower_case", False)),
        pad_id=int(tokenizer.pad_token_id or 0),
        pooling=modes,
        normalize=len(modules) == 3,
        dimension=dimension,
    )
    return manifest, auto_model


# ---------------------------------------------------------------- running an export


class ExportedModel:
    """sentence-transformers' pipeline without torch: tokenizer, a network given as a function, pooling.

    ``infer`` takes the network's inputs (int64 arrays named as in ``manifest.inputs``) and
    returns the last hidden state, shape (texts, tokens, dimension). A ``runner``
    (``StreamedRunner``) instead takes every batch of a call, several in flight at once, and
    decides the batch size and the padded width of each batch.
    """

    def __init__(
        self,
        folder: Path,
        infer: Callable[[dict[str, np.ndarray]], np.ndarray] | None,
        *,
        runner: StreamedRunner | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        if infer is None and runner is None:
            raise ValueError("an exported model needs infer or runner")
        self.manifest = ExportManifest.read(folder)
        self.infer = infer
        self.runner = runner
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.manifest.max_length)

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """One float32 vector per text, as sentence-transformers computes it.

        ``batch_size`` texts per inference, unless the runner has its own batch size.
        """
        vectors = np.zeros((len(texts), self.manifest.dimension), dtype=np.float32)
        if not texts:
            return vectors
        if self.manifest.lowercase:
            texts = [text.lower() for text in texts]
        token_ids = [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]
        # Texts of similar length share a batch, so little of any batch is padding.
        order = sorted(range(len(texts)), key=lambda i: -len(token_ids[i]))
        size = self.runner.batch_size if self.runner is not None else batch_size
        groups = [order[start : start + size] for start in range(0, len(order), size)]
        masks: list[np.ndarray] = []

        def batches() -> Iterator[dict[str, np.ndarray]]:
            for rows in groups:
                feeds, mask = self._feeds([token_ids[i] for i in rows])
                masks.append(mask)
                yield feeds

        if self.runner is not None:
            outputs = self.runner.run(batches())
        else:
            infer = self.infer
            assert infer is not None
            outputs = (infer(feeds) for feeds in batches())
        for index, hidden in enumerate(outputs):
            pooled = _pool(np.asarray(hidden, dtype=np.float32), masks[index], self.manifest.pooling)
            vectors[groups[index]] = _unit(pooled) if self.manifest.normalize else pooled
        return vectors

    def _feeds(self, token_ids: list[list[int]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The network's inputs for one batch, and its attention mask."""
        width = max(len(ids) for ids in token_ids)
        if self.runner is not None:
            width = self.runner.width(len(token_ids), width)
        input_ids = np.full((len(token_ids), width), self.manifest.pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        return {name: feeds[name] for name in self.manifest.inputs}, mask


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """sentence-transformers' Pooling of one mode, over the tokens the mask keeps."""
    weights = mask[:, :, None].astype(np.float32)
    if mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "max":
        pooled = np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    else:
        count = np.clip(weights.sum(axis=1), 1e-9, None)
        pooled = (hidden * weights).sum(axis=1) / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count)
    return np.asarray(pooled, dtype=np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    # torch.nn.functional.normalize's epsilon, as sentence-transformers' Normalize uses.
    norms = np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return np.asarray(vectors / norms, dtype=np.float32)


def load_openvino(
    folder: Path, *, precision: str = "bf16", threads: int | None = None, streamed: bool = False
) -> ExportedModel:
    """The export in ``folder``, compiled for the CPU.

    ``precision`` is ``f32`` or ``bf16``; ``bf16`` runs as ``f32`` on CPUs that lack it.
    ``streamed``: run it with a ``StreamedRunner`` (batches of ``STREAM_BATCH`` texts on
    parallel streams, fixed shapes) rather than one batch at a time on every thread.
    """
    if streamed:
        max_width = ExportManifest.read(folder).max_length
        runner = StreamedRunner(folder / OPENVINO_XML, precision=precision, threads=threads, max_width=max_width)
        return ExportedModel(folder, None, runner=runner)
    infer = compile_for_cpu(folder / OPENVINO_XML, precision=precision, threads=threads)
    return ExportedModel(folder, lambda feeds: infer(feeds)[0])


def _cpu_precision(core: Any, precision: str) -> str:
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
        "INFERENCE_PRECISION_HINT": _cpu_precision(core, precision),
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
    and for latency on one thread, leaving the other core to BM25; other batches (the last
    of a call) run the dynamic model, also on one thread. Safe across threads: every call
    takes idle requests of its own.
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
            "INFERENCE_PRECISION_HINT": _cpu_precision(core, precision),
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.streams,
            "INFERENCE_NUM_THREADS": threads,
        }
        # One thread for what is not a full batch: a question is embedded while BM25 searches in
        # a second thread (qa.search.retrieval), and at a million passages the two on their own
        # cores answered in 10.9 ms p50 against 13.2 with both threads given to the model.
        self._latency = {**self._config, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1}
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
                config = self._config if key[0] == self.batch_size else self._latency
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
