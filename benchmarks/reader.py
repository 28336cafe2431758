"""Measure the trained reader, and choose how it joins search (never on the project's questions or SciFact test).

    .venv/bin/python benchmarks/reader.py --squad ../shared/datasets/squad --scifact ../shared/benchmarks/scifact

1. Reading: exact match, F1 and no-answer accuracy of the reader on the held-out SQuAD
   articles (each question against its own paragraph), dev and test, as ``training/reader.py``
   splits them.
2. Fusion: nDCG@10, MRR@10 and R@1 of every way of combining the signals (dense weight in
   the fusion, best-sentence weight, reader weight), and of each signal alone, on three
   retrieval sets: SciFact train, and the paragraphs of the held-out SQuAD dev and test
   articles with their answerable questions as queries. Weights are chosen on SciFact
   train and SQuAD dev; SQuAD test is reported.
3. Abstention: with the chosen weights, the reader's best score over the top ``k`` hits of
   every held-out SQuAD question, answerable or not; ``min_reader_score`` is chosen on dev
   and reported on test.

Writes ``benchmarks/results/reader.json`` and prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

import reader as training
from qa.embed.encoder import SentenceTransformerEncoder
from qa.embed.models import DEFAULT_MODEL
from qa.evaluation.beir import BeirDataset, beir_index, load_beir
from qa.evaluation.metrics import evaluate, mean_metrics
from qa.index.build import settings_for
from qa.index.store import PassageStore
from qa.reader.model import TRAINED_FOLDER, PassageReader, Reader, Reading
from qa.records import Hit
from qa.search.duplicates import fold_duplicates
from qa.search.evidence import SentenceMemory, attach_evidence
from qa.search.fusion import convex_fusion
from qa.search.query import embed_query
from qa.search.reading import READ_DEPTH, read_hits, rerank_by_reader
from qa.search.rerank import rerank_by_evidence
from qa.search.retrieval import candidate_hits

DENSE_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
SENTENCE_WEIGHTS = (0.0, 0.5)
READER_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
ABSTENTION_DEPTH = 5


class MemoReader:
    """A reader that remembers its readings: the same question and passage are read once across the grid."""

    def __init__(self, reader: PassageReader) -> None:
        self.reader = reader
        self.name = reader.name
        self.readings: dict[tuple[str, str], Reading] = {}
        self.seconds = 0.0
        self.read_passages = 0

    def read(self, question: str, passages: Sequence[str]) -> list[Reading]:
        """Readings, reading only the passages not read before with this question."""
        missing = [p for p in dict.fromkeys(passages) if (question, p) not in self.readings]
        if missing:
            started = time.perf_counter()
            self.readings.update(
                zip(((question, p) for p in missing), self.reader.read(question, missing), strict=True)
            )
            self.seconds += time.perf_counter() - started
            self.read_passages += len(missing)
        return [self.readings[(question, p)] for p in passages]


def squad_beir(questions: list[training.Question], titles: list[str], folder: Path, *, answerable_only: bool) -> Path:
    """The paragraphs of ``titles`` as a BEIR corpus, their questions as queries (written once into ``folder``)."""
    chosen = [q for q in questions if q.title in titles and (q.answerable or not answerable_only)]
    if (folder / "qrels" / "test.tsv").is_file():
        return folder
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    paragraphs = training.paragraphs_of([q for q in questions if q.title in titles])
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for title in sorted(paragraphs):
            for number, text in sorted(paragraphs[title].items()):
                row = {"_id": f"{title}#{number}", "title": title.replace("_", " "), "text": text}
                corpus.write(json.dumps(row) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as queries:
        for q in chosen:
            queries.write(json.dumps({"_id": q.id, "text": q.question}) + "\n")
    lines = [f"{q.id}\t{q.title}#{q.paragraph}\t{1 if q.answerable else 0}" for q in chosen]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    return folder


@dataclasses.dataclass
class Pool:
    """A dataset's candidates: every query's fused candidates with both retrievers' scores."""

    name: str
    store: PassageStore
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    vectors: dict[str, np.ndarray]
    candidates: dict[str, list[Hit]]
    by_passage: bool = False  # judged by passage id (the project's questions), not document id (BEIR)

    def key(self, hit: Hit) -> str:
        """What the judgments name: the passage or its document."""
        return hit.passage.passage_id if self.by_passage else hit.passage.doc_id


def pool_of(dataset: BeirDataset, store: PassageStore, encoder: SentenceTransformerEncoder) -> Pool:
    """Candidates of every judged query, with dense and BM25 scores for each."""
    queries = {q: dataset.queries[q] for q in dataset.qrels if q in dataset.queries}
    return pool_from(dataset.name, store, queries, {q: dataset.qrels[q] for q in queries}, encoder)


def pool_from(
    name: str,
    store: PassageStore,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    encoder: SentenceTransformerEncoder,
    *,
    by_passage: bool = False,
) -> Pool:
    """Candidates of ``queries``, with dense and BM25 scores for each."""
    vectors = {q: embed_query(encoder, text) for q, text in queries.items()}
    candidates = {q: candidate_hits(store, vectors[q], queries[q], mode="hybrid", where=None) for q in queries}
    return Pool(name, store, queries, qrels, vectors, candidates, by_passage)


def project_pool(questions_file: Path, index_dir: Path, encoder: SentenceTransformerEncoder) -> Pool:
    """The project's answerable single questions (no earlier turns) over the seed index, judged by anchors."""
    from qa.evaluation.questions import judge, load_questions
    from qa.index.build import open_index

    store = open_index(index_dir)
    labelled = [q for q in load_questions(questions_file) if q.answerable and not q.history]
    qrels = judge(labelled, list(store.iter_passages()))
    queries = {q.question_id: q.question for q in labelled}
    return pool_from("questions", store, queries, qrels, encoder, by_passage=True)


def ranked(
    pool: Pool,
    query_id: str,
    *,
    signal: str,
    dense_weight: float,
    sentence_weight: float,
    reader_weight: float,
    encoder: SentenceTransformerEncoder,
    memory: SentenceMemory,
    reader: MemoReader,
) -> list[Hit]:
    """One query's hits under one way of combining the signals."""
    hits = pool.candidates[query_id]
    dense = np.array([h.dense_score or 0.0 for h in hits])
    bm25 = np.array([h.bm25_score or 0.0 for h in hits])
    if signal == "dense":
        score = dense
    elif signal == "bm25":
        score = bm25
    else:
        score = convex_fusion(dense, bm25, dense_weight=dense_weight)
    order = sorted(range(len(hits)), key=lambda i: (-score[i], i))
    hits = [dataclasses.replace(hits[i], rank=r, score=float(score[i])) for r, i in enumerate(order, start=1)]
    if signal in ("dense", "bm25"):
        return fold_duplicates(hits, limit=10)
    hits = fold_duplicates(hits, limit=READ_DEPTH)
    vector = pool.vectors[query_id]
    embed = lambda sentences: memory.embed(sentences, encoder)  # noqa: E731
    hits = rerank_by_evidence(attach_evidence(hits, vector, embed), weight=sentence_weight)
    if signal == "reader" or reader_weight > 0:
        hits = read_hits(hits, pool.queries[query_id], reader=reader, query_vector=vector, embed=embed)
        hits = rerank_by_reader(hits, weight=1.0 if signal == "reader" else reader_weight)
    return hits


def grid(pool: Pool, encoder: SentenceTransformerEncoder, reader: MemoReader) -> list[dict[str, Any]]:
    """Metrics of each signal alone and of every combination."""
    memory = SentenceMemory(capacity=2_000_000)
    settings = [("bm25", 0.5, 0.0, 0.0), ("dense", 0.5, 0.0, 0.0), ("reader", 0.5, 0.5, 1.0)]
    settings += [("hybrid", d, s, r) for d in DENSE_WEIGHTS for s in SENTENCE_WEIGHTS for r in READER_WEIGHTS]
    rows = []
    for signal, dense_weight, sentence_weight, reader_weight in settings:
        run = {}
        for query_id in pool.queries:
            hits = ranked(
                pool,
                query_id,
                signal=signal,
                dense_weight=dense_weight,
                sentence_weight=sentence_weight,
                reader_weight=reader_weight,
                encoder=encoder,
                memory=memory,
                reader=reader,
            )
            run[query_id] = {pool.key(hit): -float(rank) for rank, hit in enumerate(hits[:10], start=1)}
        metrics = mean_metrics(evaluate(pool.qrels, run))
        rows.append(
            {
                "signal": signal,
                "dense_weight": dense_weight,
                "sentence_weight": sentence_weight,
                "reader_weight": reader_weight,
                "ndcg@10": metrics["ndcg@10"],
                "mrr@10": metrics["mrr@10"],
                "recall@1": metrics["recall@1"],
            }
        )
        print(
            f"  {pool.name:14} {signal:6} d={dense_weight} s={sentence_weight} r={reader_weight}: "
            f"nDCG@10 {metrics['ndcg@10']:.4f}  MRR@10 {metrics['mrr@10']:.4f}  R@1 {metrics['recall@1']:.4f}",
            flush=True,
        )
    return rows


def reading_scores(reader: PassageReader, questions: list[training.Question], threshold: float) -> dict[str, float]:
    """Exact match, F1 and no-answer accuracy against each question's own paragraph."""
    predictions = []
    for q in questions:
        reading = reader.read(q.question, [q.context])[0]
        text = q.context[reading.span[0] : reading.span[1]] if reading.span else ""
        predictions.append((text, reading.score))
    return training.held_out_scores(questions, predictions, threshold=threshold)


def abstention_curve(
    pool: Pool,
    questions: list[training.Question],
    best: dict[str, float],
    encoder: SentenceTransformerEncoder,
    reader: MemoReader,
) -> list[tuple[str, bool, float]]:
    """Each question's best reader score over its top ``ABSTENTION_DEPTH`` hits, with whether it is answerable."""
    memory = SentenceMemory(capacity=2_000_000)
    rows = []
    for q in questions:
        vector = embed_query(encoder, q.question)
        one = dataclasses.replace(
            pool,
            queries={q.id: q.question},
            vectors={q.id: vector},
            candidates={q.id: candidate_hits(pool.store, vector, q.question, mode="hybrid", where=None)},
        )
        hits = ranked(one, q.id, signal="hybrid", encoder=encoder, memory=memory, reader=reader, **best)
        read = [h.reader_score for h in hits[:ABSTENTION_DEPTH] if h.reader_score is not None]
        rows.append((q.id, q.answerable, max(read) if read else float("-inf")))
    return rows


def abstention_at(rows: list[tuple[str, bool, float]], threshold: float) -> dict[str, float]:
    """Share of unanswerable questions refused, and of answerable ones refused, at ``threshold``."""
    unanswerable = [score for _, answerable, score in rows if not answerable]
    answerable = [score for _, answerable, score in rows if answerable]
    return {
        "threshold": threshold,
        "abstention_recall": float(np.mean([s < threshold for s in unanswerable])),
        "false_abstentions": float(np.mean([s < threshold for s in answerable])),
    }


def main() -> None:
    """Run the three measurements and write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", type=Path, default=Path("../shared/datasets/squad"))
    parser.add_argument("--scifact", type=Path, default=Path("../shared/benchmarks/scifact"))
    parser.add_argument("--reader", type=Path, default=TRAINED_FOLDER)
    parser.add_argument("--cache", type=Path, default=Path("index/beir"))
    parser.add_argument("--questions", type=Path, default=Path("eval/questions.jsonl"))
    parser.add_argument("--index", type=Path, default=Path("index"), help="the seed corpus's index (qa index)")
    parser.add_argument("--limit", type=int, default=0, help="queries per set (a quick look)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reader.json"))
    args = parser.parse_args()
    encoder = SentenceTransformerEncoder(DEFAULT_MODEL)
    reader = MemoReader(Reader(args.reader))
    questions = training.load_questions(args.squad)
    dev_titles, test_titles = training.held_out_articles(questions)
    dev = [q for q in questions if q.title in dev_titles]
    test = [q for q in questions if q.title in test_titles]
    if args.limit:
        dev, test = dev[: args.limit], test[: args.limit]
    results: dict[str, Any] = {"reader": reader.name, "dev_articles": dev_titles, "test_articles": test_titles}

    results["reading"] = {"dev": reading_scores(reader, dev, 0.0), "test": reading_scores(reader, test, 0.0)}
    print("reading (threshold 0):", json.dumps(results["reading"]), flush=True)

    sets = {
        "scifact-train": load_beir(args.scifact, split="train"),
        "squad-dev": load_beir(
            squad_beir(questions, dev_titles, args.cache.parent / "squad-beir" / "squad-dev", answerable_only=True)
        ),
        "squad-test": load_beir(
            squad_beir(questions, test_titles, args.cache.parent / "squad-beir" / "squad-test", answerable_only=True)
        ),
    }
    pools = {}
    results["fusion"] = {}
    for name, full in sets.items():
        keep = list(full.qrels)[: args.limit] if args.limit else list(full.qrels)
        dataset = dataclasses.replace(full, qrels={q: full.qrels[q] for q in keep})
        store = beir_index(dataset, args.cache, encoder=encoder, settings=settings_for(encoder)[0])
        pools[name] = pool_of(dataset, store, encoder)
        results["fusion"][name] = grid(pools[name], encoder, reader)

    # The project's own questions: measured, never chosen on.
    pools["questions"] = project_pool(args.questions, args.index, encoder)
    results["fusion"]["questions"] = grid(pools["questions"], encoder, reader)

    best = choose(results["fusion"], ("scifact-train", "squad-dev"))
    results["chosen"] = best
    print("chosen:", best, flush=True)

    curves = {}
    for split, held, name in (("dev", dev, "squad-dev"), ("test", test, "squad-test")):
        curves[split] = abstention_curve(pools[name], held, best, encoder, reader)
    thresholds = [round(t, 2) for t in np.arange(-6, 6.01, 0.25)]
    results["abstention"] = {split: [abstention_at(rows, t) for t in thresholds] for split, rows in curves.items()}
    results["reading_seconds_per_passage"] = reader.seconds / max(1, reader.read_passages)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


# A combination may rank below a set's best single signal by at most this much nDCG@10.
NOISE = 0.01


def choose(fusion: dict[str, list[dict[str, Any]]], sets: Sequence[str]) -> dict[str, float]:
    """The combination with the best mean gain in nDCG@10 over ``sets``, each gain against the set's best single signal.

    Only combinations within ``NOISE`` of the best single signal on every one of ``sets`` qualify.
    """

    def key(row: dict[str, Any]) -> tuple[float, float, float]:
        return (row["dense_weight"], row["sentence_weight"], row["reader_weight"])

    gains: dict[tuple[float, float, float], list[float]] = {}
    for name in sets:
        single = max(r["ndcg@10"] for r in fusion[name] if r["signal"] != "hybrid")
        for row in fusion[name]:
            if row["signal"] == "hybrid":
                gains.setdefault(key(row), []).append(row["ndcg@10"] - single)
    qualified = {k: g for k, g in gains.items() if min(g) >= -NOISE} or gains
    dense_weight, sentence_weight, reader_weight = max(qualified, key=lambda k: sum(qualified[k]))
    return {"dense_weight": dense_weight, "sentence_weight": sentence_weight, "reader_weight": reader_weight}


if __name__ == "__main__":
    main()
