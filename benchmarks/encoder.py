"""Encoder backends on SciFact: passages/s, one-query latency, agreement with torch fp32, nDCG@10.

    .venv/bin/python benchmarks/encoder.py [../shared/benchmarks/scifact] [--passages 1000] [--rounds 3]
                                           [--quality] [--int8] [--ablation] [--threads N]

Every backend of ``qa.embed.encoder`` (torch, openvino-fp32, openvino-bf16, openvino-bf16-streams) embeds the first
``--passages`` abstracts (title + " " + text, as ``qa eval --beir`` indexes them) in calls of
``qa.index.embeddings.EMBED_BATCH_SIZE`` texts, as ``qa index`` makes them, after a warm-up. The backends
take turns for ``--rounds`` rounds and each keeps its best round, so that a burst of load from
other processes does not decide the comparison. Then 50 SciFact queries are embedded one at a
time (the latency of one question) and every backend's passage vectors are compared with torch's.

``--quality`` embeds all 5,183 abstracts and the 300 test queries with every backend and
scores exact dot-product retrieval with ``qa.evaluation.metrics`` (nDCG@10 of the test split).

``--int8`` adds two int8 candidates that ``qa`` does not ship, for comparison: ONNX Runtime
with dynamic int8 quantization (fused graph, per-channel weights; needs ``onnxruntime`` and
``onnx``) and OpenVINO with NNCF's static int8 quantization calibrated on 300 abstracts from
the end of the corpus (needs ``nncf``); both run the same tokenizer and pooling as the
OpenVINO backends. ``pip install -e '.[encoder-bench]'`` installs them. The NNCF model also
runs as ``openvino-int8-streams``, the way ``openvino-bf16-streams`` runs its model (batches of 8
on two streams, fixed shapes), bf16 for what is not int8.

``--ablation`` adds ``openvino-bf16-streams`` without its fixed shapes (every batch on the
dynamic model), to tell the gain of the streams and small batches from that of fixed shapes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# openvino and nncf report usage to Google Analytics unless this module is missing.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

from qa.cpus import usable_cpus  # noqa: E402
from qa.embed.encoder import (  # noqa: E402
    OPENVINO_BF16,
    OPENVINO_FP32,
    OPENVINO_STREAMS,
    TORCH,
    SentenceTransformerEncoder,
)
from qa.embed.models import DEFAULT_MODEL, export_dir, resolve_model_location  # noqa: E402
from qa.embed.openvino import (  # noqa: E402
    OPENVINO_XML,
    ExportedModel,
    ExportManifest,
    export_is_current,
    export_openvino,
    source_fingerprint,
)
from qa.embed.streams import StreamedRunner  # noqa: E402
from qa.evaluation.beir import BeirDataset, load_beir  # noqa: E402
from qa.evaluation.metrics import evaluate, mean_metrics  # noqa: E402
from qa.index.embeddings import EMBED_BATCH_SIZE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = REPO.parent / "shared" / "benchmarks" / "scifact"
LATENCY_QUERIES = 50
CALIBRATION_TEXTS = 300
RUN_DEPTH = 100
INT8_XML = "int8_model.xml"

Embed = Callable[[list[str]], np.ndarray]


@dataclass
class Candidate:
    name: str
    embed: Embed
    load_seconds: float
    note: str = ""
    rates: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--split", default="test")
    parser.add_argument("--passages", type=int, default=1000, help="abstracts timed per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per backend, best kept (default 3)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: every usable CPU)")
    parser.add_argument("--quality", action="store_true", help="also nDCG@10 of dense retrieval on the split")
    parser.add_argument("--int8", action="store_true", help="also ONNX Runtime and OpenVINO int8 candidates")
    parser.add_argument("--ablation", action="store_true", help="also openvino-bf16-streams without fixed shapes")
    args = parser.parse_args()

    dataset = load_beir(args.dataset, split=args.split)
    documents = [document.paragraphs[0] for document in dataset.documents]
    passages = documents[: args.passages]
    queries = list(dataset.queries.values())[:LATENCY_QUERIES]
    print(
        f"{usable_cpus()} usable CPUs; {len(passages)} abstracts in calls of {EMBED_BATCH_SIZE}, best of {args.rounds}"
    )

    with tempfile.TemporaryDirectory(prefix="qa-encoder-bench-") as scratch:
        backends = (TORCH, OPENVINO_FP32, OPENVINO_BF16, OPENVINO_STREAMS)
        candidates = [load_backend(backend, args.threads) for backend in backends]
        if args.ablation:
            candidates.append(streams_without_fixed_shapes(args.threads or usable_cpus()))
        if args.int8:
            candidates += int8_candidates(Path(scratch), documents[-CALIBRATION_TEXTS:], args.threads or usable_cpus())
        for candidate in candidates:
            candidate.embed(passages[: 2 * EMBED_BATCH_SIZE])  # warm-up
        for _ in range(args.rounds):
            for candidate in candidates:
                seconds, candidate.vectors = timed_embedding(candidate.embed, passages)
                candidate.rates.append(len(passages) / seconds)
        latencies = {candidate.name: query_latencies(candidate.embed, queries) for candidate in candidates}
        quality = {}
        if args.quality:
            quality = {candidate.name: dense_ndcg(candidate.embed, dataset, documents) for candidate in candidates}

    print_table(candidates, latencies, quality)


def load_backend(backend: str, threads: int | None) -> Candidate:
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL, backend=backend, threads=threads)
    exported = backend == TORCH or export_is_current(
        export_dir(DEFAULT_MODEL), source_fingerprint(Path(resolve_model_location(DEFAULT_MODEL)))
    )
    start = time.perf_counter()
    encoder.encode(["warm up"])
    seconds = time.perf_counter() - start
    notes = [] if exported else ["first load exported the model"]
    if encoder.active_backend != backend:
        notes.append(f"fell back to {encoder.active_backend}")
    return Candidate(backend, encoder.encode, seconds, "; ".join(notes))


def streams_without_fixed_shapes(threads: int) -> Candidate:
    """``openvino-bf16-streams`` with every batch on the dynamic model."""
    folder = export_dir(DEFAULT_MODEL)
    start = time.perf_counter()
    runner = StreamedRunner(folder / OPENVINO_XML, precision="bf16", threads=threads, fixed_shapes=False)
    model = ExportedModel(folder, None, runner=runner)
    model.encode(["warm up"])
    seconds = time.perf_counter() - start

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts)

    return Candidate("openvino-bf16-streams-dynamic", embed, seconds, "ablation: no fixed shapes")


def int8_candidates(folder: Path, calibration: list[str], threads: int) -> list[Candidate]:
    """ONNX Runtime and OpenVINO int8 versions of the default model, made in ``folder``."""
    source = Path(resolve_model_location(DEFAULT_MODEL))
    export_openvino(source, folder, fingerprint="benchmark", keep_onnx=True)
    candidates = []
    for make in (onnx_int8, openvino_int8, openvino_int8_streams):
        start = time.perf_counter()
        try:
            model = make(folder, calibration, threads)
        except ImportError as error:
            print(f"skipped {make.__name__}: {error}")
            continue
        model.encode(["warm up"])
        seconds = time.perf_counter() - start
        name = make.__name__.replace("_", "-")

        def embed(texts: list[str], model: ExportedModel = model) -> np.ndarray:
            return model.encode(texts, batch_size=EMBED_BATCH_SIZE)

        note = "not shipped; load includes quantization" if make is not openvino_int8_streams else "not shipped"
        candidates.append(Candidate(name, embed, seconds, note))
    return candidates


def onnx_int8(folder: Path, calibration: list[str], threads: int) -> ExportedModel:
    """ONNX Runtime's BERT fusions, then dynamic int8 quantization with per-channel weights."""
    import onnx

    ort = importlib.import_module("onnxruntime")
    quantization = importlib.import_module("onnxruntime.quantization")
    optimizer = importlib.import_module("onnxruntime.transformers.optimizer")

    config = json.loads((Path(ExportManifest.read(folder).source) / "config.json").read_text(encoding="utf-8"))
    fused = optimizer.optimize_model(
        str(folder / "model.onnx"),
        model_type="bert",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
        opt_level=1,
    )
    fused.save_model_to_file(str(folder / "fused.onnx"))
    quantization.quantize_dynamic(
        folder / "fused.onnx",
        folder / "int8.onnx",
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # types of the fused operators' outputs
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "int8.onnx"), options, providers=["CPUExecutionProvider"])
    names = {node.name for node in session.get_inputs()}

    def infer(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(None, {k: v for k, v in feeds.items() if k in names})[0])

    return ExportedModel(folder, infer)


def openvino_int8(folder: Path, calibration: list[str], threads: int) -> ExportedModel:
    """NNCF's post-training int8 quantization, calibrated on ``calibration``; other operations in OpenVINO's default."""
    nncf = importlib.import_module("nncf")
    ov = importlib.import_module("openvino")

    tokenize = ExportedModel(folder, lambda feeds: np.zeros(0))
    samples = []
    for text in calibration:
        ids = np.array([tokenize.tokenizer.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        samples.append({name: feeds[name] for name in tokenize.manifest.inputs})
    core = ov.Core()
    quantized = nncf.quantize(
        core.read_model(str(folder / OPENVINO_XML)),
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
    )
    ov.save_model(quantized, str(folder / INT8_XML), compress_to_fp16=False)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(quantized, "CPU", config)

    def infer(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(compiled.create_infer_request().infer(feeds)[0])

    return ExportedModel(folder, infer)


def openvino_int8_streams(folder: Path, calibration: list[str], threads: int) -> ExportedModel:
    """The model of ``openvino_int8`` (already made in ``folder``), run as ``openvino-bf16-streams`` runs its own."""
    if not (folder / INT8_XML).is_file():
        raise ImportError("openvino_int8 made no model")
    max_width = ExportManifest.read(folder).max_length
    runner = StreamedRunner(folder / INT8_XML, precision="bf16", threads=threads, max_width=max_width)
    return ExportedModel(folder, None, runner=runner)


def timed_embedding(embed: Embed, texts: list[str]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    parts = [embed(texts[i : i + EMBED_BATCH_SIZE]) for i in range(0, len(texts), EMBED_BATCH_SIZE)]
    return time.perf_counter() - start, unit(np.concatenate(parts))


def query_latencies(embed: Embed, queries: list[str]) -> list[float]:
    for query in queries[:5]:
        embed([query])
    seconds = []
    for query in queries:
        start = time.perf_counter()
        embed([query])
        seconds.append(time.perf_counter() - start)
    return seconds


def dense_ndcg(embed: Embed, dataset: BeirDataset, documents: list[str]) -> float:
    """nDCG@10 of exact dot-product retrieval over every document, as ``qa eval --beir --modes dense``."""
    vectors = unit(
        np.concatenate([embed(documents[i : i + EMBED_BATCH_SIZE]) for i in range(0, len(documents), EMBED_BATCH_SIZE)])
    )
    query_ids = list(dataset.queries)
    query_vectors = unit(embed([dataset.queries[q] for q in query_ids]))
    doc_ids = [document.doc_id for document in dataset.documents]
    run = {}
    for query_id, scores in zip(query_ids, query_vectors @ vectors.T, strict=True):
        top = np.argsort(-scores)[:RUN_DEPTH]
        run[query_id] = {doc_ids[row]: float(scores[row]) for row in top}
    return mean_metrics(evaluate(dataset.qrels, run))["ndcg@10"]


def unit(vectors: np.ndarray) -> np.ndarray:
    return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)


def print_table(candidates: list[Candidate], latencies: dict[str, list[float]], quality: dict[str, float]) -> None:
    reference = candidates[0]
    assert reference.vectors is not None
    base_rate = max(reference.rates)
    header = "| backend | passages/s | × torch | query p50 ms | query p90 ms | cosine to torch (mean / min) |"
    rule = "|---|---|---|---|---|---|"
    if quality:
        header += " nDCG@10 | Δ |"
        rule += "---|---|"
    print(header + " load s | note |")
    print(rule + "---|---|")
    for candidate in candidates:
        assert candidate.vectors is not None
        rate = max(candidate.rates)
        cosines = np.sum(candidate.vectors * reference.vectors, axis=1)
        p50 = 1000 * statistics.median(latencies[candidate.name])
        p90 = 1000 * float(np.percentile(latencies[candidate.name], 90))
        row = (
            f"| {candidate.name} | {rate:.1f} | {rate / base_rate:.2f} | {p50:.1f} | {p90:.1f} "
            f"| {cosines.mean():.5f} / {cosines.min():.5f} |"
        )
        if quality:
            delta = quality[candidate.name] - quality[reference.name]
            row += f" {quality[candidate.name]:.4f} | {delta:+.4f} |"
        print(row + f" {candidate.load_seconds:.1f} | {candidate.note} |")
    rounds = ", ".join(f"{c.name} " + "/".join(f"{r:.1f}" for r in c.rates) for c in candidates)
    print(f"\npassages/s of every round: {rounds}")


if __name__ == "__main__":
    main()
