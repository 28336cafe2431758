"""The OpenVINO export of a sentence-transformers model, and running it without torch.

``ensure_export`` makes the export once (torch traces the transformer to ONNX, OpenVINO
converts it) and checks it against sentence-transformers' own vectors; ``load_openvino``
compiles it for the CPU. Tokenising, pooling and normalising are redone in NumPy from what
``qa-export.json`` records, so encoding with an export never imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.embed.models import FALLBACK_MAX_TOKENS
from qa.embed.runtime import compile_for_cpu, import_openvino, openvino_core
from qa.embed.streams import StreamedRunner

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
