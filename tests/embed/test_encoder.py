"""The real encoder: the bundled model, offline, end to end through the command line; backends and their cache."""

from __future__ import annotations

import errno
import json
import re
import site
import socket
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from qa.cli import main
from qa.embed.encoder import (
    BACKEND_ENV_VAR,
    BACKENDS,
    DEFAULT_BACKEND,
    OPENVINO_BF16,
    OPENVINO_FP32,
    OPENVINO_STREAMS,
    TORCH,
    BackendFallbackWarning,
    SentenceTransformerEncoder,
)
from qa.embed.models import DEFAULT_MODEL, MODEL_CACHE_ENV_VAR, export_dir, resolve_model_location
from qa.embed.openvino import OPENVINO_XML, ExportedModel
from qa.embed.streams import (
    QUESTION_FIXED_WIDTHS,
    QUESTION_MAX_WIDTH,
    QUESTION_WIDTH_STEP,
    STREAM_BATCH,
    StreamedRunner,
)
from qa.errors import QAError
from qa.index.local import LocalIndex

QUESTION = "Why do defectors return to North Korea?"
THREE_GROUPS = "could be classified into three broad groups"


def test_default_model_resolves_to_the_bundled_folder() -> None:
    location = Path(resolve_model_location(DEFAULT_MODEL))
    assert (location / "model.safetensors").is_file()
    assert resolve_model_location("all-MiniLM-L6-v2") == str(location)
    assert resolve_model_location("someone/other-model") == "someone/other-model"


def test_window_and_token_counter_come_from_the_model_folder() -> None:
    encoder = SentenceTransformerEncoder()
    assert encoder.max_tokens() == 254  # 256 less [CLS] and [SEP]
    count = encoder.token_counter()
    assert count is not None
    assert count("defectors") > 1  # word pieces, not words
    assert count("the cat sat") == 3


@pytest.mark.slow
def test_real_model_embeds_offline_with_unit_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = SentenceTransformerEncoder().encode(
        ["Defectors return home.", "Why do defectors go back?", "Bread recipe"]
    )
    assert vectors.shape == (3, 384)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]


@pytest.mark.slow
def test_end_to_end_finds_the_three_groups_paragraph(
    corpus_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QA_MODEL", raising=False)
    index_dir = tmp_path / "index"
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index_dir)]) == 0
    capsys.readouterr()
    assert main(["search", QUESTION, "--k", "3", "--json", "--index", str(index_dir)]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    top = [hit for hit in hits if THREE_GROUPS in hit["text"]]
    assert top, [hit["text"][:80] for hit in hits]
    assert (top[0]["outlet"], top[0]["title"]) == ("The Korea Times", "Why do NK defectors flee to destitute North?")

    index = LocalIndex.load(index_dir)
    count = SentenceTransformerEncoder().token_counter()
    assert count is not None
    assert max(count(p.text) for p in index.passages) <= index.manifest.settings.max_tokens


# ---------------------------------------------------------------- backends and the export cache

SENTENCES = [
    "Why do defectors return to North Korea?",
    "Families of defectors in Hoeryong will receive alcohol, pork and snacks.",
    "Preheat the oven before the bread goes in.",
    "",
]


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _cache_outside_home(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Exports made by these tests go to one folder per test session, never to ~/.cache.
    monkeypatch.setenv(MODEL_CACHE_ENV_VAR, str(cache_root))
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)


@pytest.fixture(scope="session")
def exported(cache_root: Path) -> Path:
    """The bundled model's OpenVINO export, made once per test session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MODEL_CACHE_ENV_VAR, str(cache_root))
        encoder = SentenceTransformerEncoder(backend=OPENVINO_BF16)
        encoder.encode(["warm up"])
        assert encoder.active_backend == OPENVINO_BF16
        return export_dir(DEFAULT_MODEL)


def test_backend_is_chosen_by_keyword_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_BACKEND in BACKENDS
    assert SentenceTransformerEncoder().backend == DEFAULT_BACKEND
    monkeypatch.setenv(BACKEND_ENV_VAR, TORCH)
    assert SentenceTransformerEncoder().backend == TORCH
    assert SentenceTransformerEncoder(backend=OPENVINO_FP32).backend == OPENVINO_FP32
    # The backend is not part of the name: indexes built with any backend of a model stay compatible.
    assert {SentenceTransformerEncoder(backend=backend).name for backend in BACKENDS} == {DEFAULT_MODEL}


def test_unknown_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(QAError, match=r"unknown encoder backend 'onnx-int4': choose one of .*torch"):
        SentenceTransformerEncoder(backend="onnx-int4")
    monkeypatch.setenv(BACKEND_ENV_VAR, "cuda")
    with pytest.raises(QAError, match="unknown encoder backend 'cuda'"):
        SentenceTransformerEncoder()


MISSING_MODEL = "no-such-org/no-such-model"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a network: every connection fails at once, as when the cable is out."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)

    def unreachable(*_: object, **__: object) -> socket.socket:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)


@pytest.mark.usefixtures("no_network")
def test_a_model_neither_here_nor_reachable_fails_at_once_naming_the_fix(
    corpus_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with pytest.raises(QAError, match=r"not on this machine .* hub cannot be reached \(Network is unreachable\)"):
        SentenceTransformerEncoder(MISSING_MODEL, backend=TORCH).encode(["x"])
    assert time.monotonic() - started < 5  # the hub client alone retries for over a minute
    index = tmp_path / "index"
    assert main(["index", "--corpus", str(corpus_copy), "--index", str(index), "--model", MISSING_MODEL]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("qa: error: embedding model") and "give --model a local sentence-transformers folder" in line
    assert time.monotonic() - started < 10


def test_offline_mode_refuses_a_model_it_would_have_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(QAError, match=r"downloads are off \(HF_HUB_OFFLINE\): .*unset HF_HUB_OFFLINE"):
        SentenceTransformerEncoder(MISSING_MODEL, backend=TORCH).encode(["x"])


@pytest.mark.usefixtures("no_network")
def test_a_model_in_the_hub_cache_or_a_folder_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from qa.embed.models import check_model_obtainable

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--cached-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "modules.json").write_text("[]")
    check_model_obtainable("someone/cached-model", "someone/cached-model")
    check_model_obtainable("./model", str(tmp_path))
    with pytest.raises(QAError, match="cannot be reached"):
        check_model_obtainable("someone/other-model", "someone/other-model")


def test_export_folder_is_in_the_user_cache_outside_the_model_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_CACHE_ENV_VAR, str(tmp_path / "cache"))
    bundled = export_dir(DEFAULT_MODEL)
    assert bundled.parent == tmp_path / "cache" / "sentence-transformers_all-MiniLM-L6-v2"
    assert re.fullmatch(r"openvino-[0-9a-f]{8}", bundled.name)
    assert export_dir("all-MiniLM-L6-v2") == bundled
    folder = tmp_path / "my model"
    assert export_dir(str(folder)).parent.name == str(folder).strip("/").replace("/", "_").replace(" ", "_")

    monkeypatch.delenv(MODEL_CACHE_ENV_VAR)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "qa" / "models" / "sentence-transformers_all-MiniLM-L6-v2" / bundled.name
    assert export_dir(DEFAULT_MODEL) == expected


def test_two_installs_of_the_model_keep_an_export_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two checkouts' virtual environments hold the same model package in two places; one shared
    # export would be stale for each in turn and made again on every load.
    monkeypatch.setenv(MODEL_CACHE_ENV_VAR, str(tmp_path / "cache"))
    places = []
    for install in ("one", "two"):
        monkeypatch.setattr("qa.embed.models._bundled_model_dir", lambda install=install: tmp_path / install / "model")
        places.append(export_dir(DEFAULT_MODEL))
    monkeypatch.setattr("qa.embed.models._bundled_model_dir", lambda: tmp_path / "one" / "model")
    assert places[0] != places[1] and places[0].parent == places[1].parent
    assert export_dir(DEFAULT_MODEL) == places[0]  # the same install finds its export again


@pytest.mark.slow
def test_failed_export_falls_back_to_torch_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_CACHE_ENV_VAR, str(tmp_path / "cache"))

    def broken(source: Path, target: Path, *, fingerprint: str, keep_onnx: bool = False) -> None:
        raise RuntimeError("converter exploded")

    monkeypatch.setattr("qa.embed.openvino.export_openvino", broken)
    encoder = SentenceTransformerEncoder(backend=OPENVINO_BF16)
    with pytest.warns(BackendFallbackWarning, match=r"openvino-bf16 .*converter exploded.*using torch"):
        vectors = encoder.encode(SENTENCES)
    assert encoder.active_backend == TORCH
    assert vectors.shape == (len(SENTENCES), 384)
    assert list((tmp_path / "cache").rglob("*")) == [export_dir(DEFAULT_MODEL).parent]  # no partial export


@pytest.mark.slow
def test_second_load_reuses_the_export(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = (exported / "qa-export.json").stat().st_mtime_ns

    def must_not_export(source: Path, target: Path, *, fingerprint: str, keep_onnx: bool = False) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr("qa.embed.openvino.export_openvino", must_not_export)
    for backend in (OPENVINO_BF16, OPENVINO_STREAMS):  # one export serves both
        encoder = SentenceTransformerEncoder(backend=backend)
        with warnings.catch_warnings():
            warnings.simplefilter("error", BackendFallbackWarning)
            vectors = encoder.encode(SENTENCES)
        assert encoder.active_backend == backend
        assert vectors.shape == (len(SENTENCES), 384)
        assert vectors.dtype == np.float32
    assert (exported / "qa-export.json").stat().st_mtime_ns == made
    assert sorted(p.name for p in exported.parent.iterdir()) == [exported.name]  # no leftover scratch folder
    assert not any(Path(exported).resolve().is_relative_to(Path(p)) for p in site.getsitepackages())


@pytest.mark.slow
def test_fast_backends_give_torch_vectors(exported: Path) -> None:
    texts = [*SENTENCES, " ".join(SENTENCES * 60)]  # the last is cut at the model's window
    reference = SentenceTransformerEncoder(backend=TORCH).encode(texts)
    for backend, least in ((OPENVINO_BF16, 0.999), (OPENVINO_FP32, 0.99999)):
        encoder = SentenceTransformerEncoder(backend=backend, threads=1)
        vectors = encoder.encode(texts)
        assert encoder.active_backend == backend
        assert vectors.shape == reference.shape
        cosines = np.sum(vectors * reference, axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
        )
        assert cosines.min() > least, (backend, cosines)
        # Batched and one at a time agree: padding does not leak into the vectors.
        alone = np.concatenate([encoder.encode([text]) for text in texts])
        assert np.allclose(alone, vectors, atol=2e-3 if backend == OPENVINO_BF16 else 1e-5)
    assert SentenceTransformerEncoder(backend=OPENVINO_BF16).encode([]).shape == (0, 384)


@pytest.mark.slow
def test_threads_share_the_openvino_model_safely(exported: Path) -> None:
    encoder = SentenceTransformerEncoder(backend=OPENVINO_FP32)
    texts = [f"{sentence} ({number})" for number in range(12) for sentence in SENTENCES]
    batches = [texts[start : start + 1 + start % 5] for start in range(len(texts))]  # 1 to 5 texts, all shapes
    expected = [encoder.encode(batch) for batch in batches]
    failures: list[BaseException] = []

    def encode_all(order: list[int]) -> None:
        try:
            for i in order:
                assert np.allclose(encoder.encode(batches[i]), expected[i], atol=1e-5), batches[i]
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    rng = np.random.default_rng(0)
    threads = [threading.Thread(target=encode_all, args=(list(rng.permutation(len(batches))),)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures[:2]


# ---------------------------------------------------------------- openvino-bf16-streams

# Texts of many lengths: more than one full batch of STREAM_BATCH, and a partial one.
VARIED = [" ".join([sentence] * repeat) for repeat in (1, 2, 3, 5, 8, 13, 40) for sentence in SENTENCES[:3]]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cosines: np.ndarray = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return cosines


@pytest.mark.slow
def test_streamed_backend_gives_the_vectors_of_torch_and_bf16(exported: Path) -> None:
    assert len(VARIED) > 2 * STREAM_BATCH
    reference = SentenceTransformerEncoder(backend=TORCH).encode(VARIED)
    bf16 = SentenceTransformerEncoder(backend=OPENVINO_BF16).encode(VARIED)
    encoder = SentenceTransformerEncoder(backend=OPENVINO_STREAMS, threads=2)  # two streams, two batches in flight
    vectors = encoder.encode(VARIED)
    assert encoder.active_backend == OPENVINO_STREAMS
    assert vectors.shape == reference.shape
    # Measured on SciFact (benchmarks/encoder.py): mean 0.99998, least 0.99997, as openvino-bf16.
    assert _cosines(vectors, reference).min() > 0.9995
    assert _cosines(vectors, bf16).min() > 0.9999
    # Padding to a fixed width, batches of 8 and one text alone: the same vectors.
    alone = np.concatenate([encoder.encode([text]) for text in VARIED])
    assert np.allclose(alone, vectors, atol=2e-3)
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_streamed_runner_compiles_each_model_once(exported: Path) -> None:
    runner = StreamedRunner(exported / OPENVINO_XML, precision="bf16", threads=2)
    model = ExportedModel(exported, None, runner=runner)
    assert runner.width(STREAM_BATCH, 70) == 128  # a full batch: the next multiple of 64 tokens
    assert runner.width(STREAM_BATCH, 256) == 256
    assert runner.width(STREAM_BATCH - 1, 70) == 70  # a partial batch: the dynamic model, no padding
    assert runner.width(1, 21) == 2 * QUESTION_WIDTH_STEP  # a text alone: the next multiple of 16 tokens
    assert runner.width(1, QUESTION_MAX_WIDTH + 1) == QUESTION_MAX_WIDTH + 1  # a long one: the dynamic model
    first = model.encode(VARIED)
    compiled = runner.compiled
    batches = [name for name in compiled if name != "dynamic"]
    assert batches and all(name.startswith(f"{STREAM_BATCH}x") for name in batches)
    assert np.array_equal(model.encode(VARIED), first)  # the same shapes again: nothing compiled, same vectors
    assert runner.compiled == compiled
    question = "Why do defectors return to North Korea?"
    alone = model.encode([question])
    assert runner.compiled == sorted([*compiled, f"1x{QUESTION_WIDTH_STEP}"])  # a short question: its own width
    reference = ExportedModel(exported, None, runner=dynamic_runner(exported))
    assert np.allclose(alone, reference.encode([question]), atol=2e-3)
    # Longer questions, of whatever padded width, share one model: one more is compiled, once.
    for repeats in (3, 4, 6):
        longer = " ".join(["Why do defectors who reached the South go back to the North"] * repeats)
        assert runner.width(1, len(model.tokenizer.encode(longer).ids)) > max(QUESTION_FIXED_WIDTHS)
        assert np.allclose(model.encode([longer]), reference.encode([longer]), atol=2e-3)
    assert runner.compiled == sorted([*compiled, f"1x{QUESTION_WIDTH_STEP}", "question"])

    dynamic = dynamic_runner(exported)
    assert dynamic.width(STREAM_BATCH, 70) == 70
    assert dynamic.width(1, 21) == 21
    assert np.allclose(ExportedModel(exported, None, runner=dynamic).encode(VARIED), first, atol=2e-3)
    assert dynamic.compiled == ["dynamic"]


def dynamic_runner(exported: Path) -> StreamedRunner:
    return StreamedRunner(exported / OPENVINO_XML, precision="bf16", threads=2, fixed_shapes=False)


@pytest.mark.slow
def test_streamed_runner_survives_a_caller_that_stops_early(exported: Path) -> None:
    runner = StreamedRunner(exported / OPENVINO_XML, precision="bf16", threads=2)
    ids = np.full((STREAM_BATCH, 16), 1000, dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    outputs = runner.run(iter([feeds] * 5))
    first = next(outputs)
    outputs.close()  # two batches still in flight: waited for, their requests kept
    again = list(runner.run(iter([feeds] * 3)))
    assert len(again) == 3
    assert all(np.array_equal(output, first) for output in again)


@pytest.mark.slow
def test_threads_share_the_streamed_model_safely(exported: Path) -> None:
    encoder = SentenceTransformerEncoder(backend=OPENVINO_STREAMS, threads=2)
    texts = [f"{sentence} ({number})" for number in range(12) for sentence in VARIED[:6]]
    batches = [texts[start : start + 1 + start % 19] for start in range(0, len(texts), 3)]  # partial and full batches
    expected = [encoder.encode(batch) for batch in batches]
    failures: list[BaseException] = []

    def encode_all(order: list[int]) -> None:
        try:
            for i in order:
                assert np.array_equal(encoder.encode(batches[i]), expected[i]), batches[i]
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    rng = np.random.default_rng(0)
    threads = [threading.Thread(target=encode_all, args=(list(rng.permutation(len(batches))),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures[:2]
